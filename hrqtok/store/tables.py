"""Token tables: one multitoken per item, the disambiguation token, Parquet/JSONL/CSV I/O.

A multitoken is ``[t_0, …, t_{k-1}, d]``: k codes, then ``d`` which tells apart items that share
all k codes (0, 1, 2, … in id order within a group; 0 for unique items).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrqtok.errors import ArtifactError, OptionError, first_line
from hrqtok.sources.records import read_bytes_or_path

TABLE_FORMAT_VERSION = 1
OUTPUT_FORMATS = ("parquet", "jsonl", "csv", "strings")
META_PREFIX = "hrqtok."


@dataclass(frozen=True)
class TokenTable:
    ids: list[str]
    tokens: np.ndarray  # (n, k+1) int32: k codes, then the disambiguation token
    metadata: dict = field(default_factory=dict)  # fingerprint, geometry, levels, sizes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def codes(self) -> np.ndarray:
        return self.tokens[:, :-1]

    @property
    def disambiguation_size(self) -> int:
        """Vocabulary of the disambiguation token (largest index + 1)."""
        return int(self.tokens[:, -1].max()) + 1 if len(self) else 0

    def with_metadata(self, metadata: dict) -> TokenTable:
        """The same multitokens with ``metadata`` (a model's fingerprint, geometry, sizes)."""
        return TokenTable(self.ids, self.tokens,
                          {**metadata, "disambiguation_size": self.disambiguation_size})

    def lookup(self) -> dict[tuple[int, ...], str]:
        """multitoken -> id."""
        return {tuple(row): item_id for item_id, row in zip(self.ids, self.tokens.tolist())}

    def ids_of(self, multitokens: list[list[int]], levels: int) -> list[str | None]:
        """The id holding each multitoken (None where no item does); ``levels`` codes alone
        mean disambiguation token 0."""
        lookup = self.lookup()
        return [lookup.get(tuple(tokens) + ((0,) if len(tokens) == levels else ()))
                for tokens in multitokens]

    def to_arrow(self):
        """A pyarrow Table: "id" (string) and "tokens" (list<int32>), with this table's
        metadata on the schema, as `hrqtok encode` writes it to Parquet."""
        return _arrow_table(self)

    def to_pandas(self):
        """A pandas DataFrame with columns "id" and "tokens" (needs pandas)."""
        return self.to_arrow().to_pandas()


def build_table(ids: list[str], codes: np.ndarray, metadata: dict,
                existing: TokenTable | None = None) -> TokenTable:
    """Add the disambiguation token to ``codes`` (n, k).

    With ``existing``, an id found there keeps its earlier multitoken whole, and new items that
    share k codes with any earlier item get the smallest indices no earlier item holds, so a
    growing catalogue never renumbers old items.
    """
    codes = np.asarray(codes, dtype=np.int32)
    tokens = np.zeros((len(ids), codes.shape[1] + 1), dtype=np.int32)
    tokens[:, :-1] = codes
    taken: dict[tuple, set[int]] = defaultdict(set)
    kept: dict[str, np.ndarray] = {}
    if existing is not None:
        if existing.codes.shape[1] != codes.shape[1]:
            raise ArtifactError(
                f"the existing table has {existing.codes.shape[1]} levels but the model has "
                f"{codes.shape[1]}; it belongs to another model")
        for item_id, row in zip(existing.ids, existing.tokens):
            taken[tuple(row[:-1].tolist())].add(int(row[-1]))
            kept[item_id] = row
    groups: dict[tuple, list[int]] = defaultdict(list)
    for position, item_id in enumerate(ids):
        if item_id in kept:
            tokens[position] = kept[item_id]
        else:
            groups[tuple(codes[position].tolist())].append(position)
    for key, positions in groups.items():
        used = taken[key]
        index = 0
        for position in sorted(positions, key=lambda p: ids[p]):
            while index in used:
                index += 1
            tokens[position, -1] = index
            index += 1
    meta = {**metadata, "disambiguation_size": int(tokens[:, -1].max()) + 1 if len(ids) else 0}
    return TokenTable(list(ids), tokens, meta)


def token_string(tokens: list[int]) -> str:
    """``<a_12><b_40><c_7><d_0>``: the string form LLM-based recommenders add to a vocabulary."""
    return "".join(f"<{chr(ord('a') + i)}_{t}>" for i, t in enumerate(tokens))


def _arrow_table(table: TokenTable):
    import pyarrow as pa

    columns = [pa.array(table.ids, type=pa.string()), _tokens_array(table.tokens)]
    return pa.Table.from_arrays(columns, schema=_schema(table.metadata))


def _schema(metadata: dict):
    import pyarrow as pa

    return pa.schema(
        [pa.field("id", pa.string(), nullable=False),
         pa.field("tokens", pa.list_(pa.int32()), nullable=False)],
        metadata={
            f"{META_PREFIX}{k}": json.dumps(v)
            for k, v in {"format_version": TABLE_FORMAT_VERSION, **metadata}.items()
        },
    )


def _tokens_array(tokens: np.ndarray):
    import pyarrow as pa

    width = tokens.shape[1]
    flat = pa.array(tokens.reshape(-1), type=pa.int32())
    offsets = pa.array(np.arange(0, len(tokens) * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _write_body(rows: Iterable[tuple[list[str], np.ndarray]], fmt: str, handle) -> None:
    if fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "tokens"])
    for ids, tokens in rows:
        pairs = zip(ids, tokens.tolist())
        if fmt == "jsonl":
            handle.writelines(json.dumps({"id": item_id, "tokens": t}) + "\n" for item_id, t in pairs)
        elif fmt == "csv":
            writer.writerows((item_id, " ".join(map(str, t))) for item_id, t in pairs)
        elif fmt == "strings":
            handle.writelines(f"{item_id}\t{token_string(t)}\n" for item_id, t in pairs)
        else:
            raise ValueError(f"unknown format {fmt!r}")


def _write_parquet(chunks: Iterable[tuple[list[str], np.ndarray]], metadata: dict, handle) -> None:
    """One row group per chunk: a table of one chunk is the file ``pq.write_table`` makes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(metadata)
    with pq.ParquetWriter(handle, schema) as writer:
        for ids, tokens in chunks:
            writer.write_table(pa.Table.from_arrays(
                [pa.array(ids, type=pa.string()), _tokens_array(tokens)], schema=schema))


def write_table(table: TokenTable, path: str, fmt: str = "parquet") -> None:
    """Write a table to ``path`` ('-' is stdout): atomically for files; written through for
    special targets (``/dev/stdout``, FIFOs, ``>(…)``)."""
    write_chunks([(table.ids, table.tokens)], table.metadata, path, fmt)


def write_chunks(chunks: Iterable[tuple[list[str], np.ndarray]], metadata: dict, path: str,
                 fmt: str = "parquet") -> None:
    """``write_table`` for a table that comes as (ids, tokens) chunks, in order, with its
    ``metadata`` known up front; Parquet gets a row group per chunk. Atomic like
    ``write_table``: a failure part way leaves no file. A ``path`` ending in ``/`` (or an
    existing folder) gets Parquet part files (``store.token_folders``). A URI is written
    through its store (``remote_writes``)."""
    from hrqtok.locations import output_location
    from hrqtok.remote_writes import output_file
    from hrqtok.store.token_folders import write_folder
    from hrqtok.targets import names_a_folder

    path = output_location(path)
    if path != "-" and names_a_folder(path):
        if fmt != "parquet":
            raise OptionError("--out", f"{path} names a folder, which holds Parquet part "
                                       f"files, not {fmt}; name a file for {fmt}")
        write_folder(chunks, metadata, path)
        return
    if path == "-":
        if fmt == "parquet":  # Parquet writers seek back: the file is built in memory first
            buffer = io.BytesIO()
            _write_parquet(chunks, metadata, buffer)
            sys.stdout.buffer.write(buffer.getvalue())
            sys.stdout.buffer.flush()
        else:
            _write_body(chunks, fmt, sys.stdout)
            sys.stdout.flush()
        return
    with output_file(path) as stream:
        if fmt == "parquet":
            _write_parquet(chunks, metadata, stream)
        else:
            with io.TextIOWrapper(stream, encoding="utf-8", newline="") as handle:
                _write_body(chunks, fmt, handle)


def _fail(path, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}")


def _metadata(arrow, path) -> dict:
    meta = {}
    for key, value in (arrow.schema.metadata or {}).items():
        try:
            name, text = key.decode("utf-8"), value.decode("utf-8")
            if name.startswith(META_PREFIX):
                meta[name[len(META_PREFIX):]] = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _fail(path, f"damaged metadata key {key[:40]!r}; re-encode the table") from None
    return meta


def _ids_column(arrow, path) -> list[str]:
    import pyarrow as pa

    column = arrow.column("id")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise _fail(path, f"column 'id' must hold strings, found {column.type}")
    if column.null_count:
        row = next(i for i, v in enumerate(column.to_pylist()) if v is None)
        raise _fail(path, f"row {row + 1} has no id")
    ids = column.to_pylist()
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise _fail(path, f"id {duplicate!r} appears more than once; ids must be unique")
    return ids


def _tokens_column(arrow, path, meta: dict) -> np.ndarray:
    import pyarrow as pa

    column = arrow.column("tokens").combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or not (
            pa.types.is_integer(column.type.value_type)):
        raise _fail(path, f"column 'tokens' must hold lists of integers, found {column.type}")
    if column.null_count or column.flatten().null_count:
        raise _fail(path, "column 'tokens' has missing values")
    lengths = np.diff(column.offsets.to_numpy())
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise _fail(path, f"row {row + 1} has {lengths[row]} tokens but row 1 has {lengths[0]}; "
                          "every multitoken needs the same length")
    levels = meta.get("levels")
    width = int(lengths[0]) if len(lengths) else (levels + 1 if isinstance(levels, int) else 0)
    if width < 2:
        raise _fail(path, f"multitokens of {width} tokens; expected codes and a disambiguation token")
    if isinstance(levels, int) and width != levels + 1:
        raise _fail(path, f"multitokens of {width} tokens, but its metadata says {levels} levels")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, width)
    outside = (values < 0) | (values > np.iinfo(np.int32).max)
    if outside.any():
        row, column = (int(i) for i in np.argwhere(outside)[0])
        raise _fail(path, f"row {row + 1} holds token {values[row, column]}; tokens are integers "
                          "from 0 to 2^31-1")
    sizes = meta.get("codebook_sizes")
    if isinstance(sizes, list) and len(sizes) == width - 1 and len(values):
        bad = values[:, :-1] >= np.asarray(sizes, dtype=np.int64)
        if bad.any():
            row, level = (int(i) for i in np.argwhere(bad)[0])
            raise _fail(path, f"row {row + 1} has code {values[row, level]} at level {level}, "
                              f"outside its {sizes[level]} codes")
    return values.astype(np.int32)


def read_table(path: str | Path, *, data: bytes | None = None) -> TokenTable:
    """Read and check a Parquet token table written by hrqtok (a file, ``-`` or a FIFO; or
    ``data`` already read, named ``path`` in messages; or a folder of part files that
    `encode --out DIR/` wrote; either also at a URI). Every problem is an ArtifactError naming the file and, where
    there is one, the row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hrqtok.locations import is_uri, kind, output_location

    path = output_location(path) if isinstance(path, str) else path  # file:// as its path
    folder = (kind(path) == "folder") if is_uri(path) else Path(path).is_dir()
    if data is None and str(path) != "-" and folder:
        from hrqtok.store.token_folders import read_folder

        return read_folder(path)
    try:
        arrow = pq.read_table(pa.BufferReader(data) if data is not None else read_bytes_or_path(path))
        return _from_arrow(arrow, path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # damaged bytes deep inside
        raise _fail(path, f"not a readable Parquet token table ({first_line(e)})") from None


def _from_arrow(arrow, path) -> TokenTable:
    if arrow.column_names[:2] != ["id", "tokens"]:
        raise _fail(path, f"a token table needs columns 'id' and 'tokens', found {arrow.column_names}")
    meta = _metadata(arrow, path)
    version = meta.pop("format_version", None)
    if version != TABLE_FORMAT_VERSION:
        raise _fail(path, f"token table format version {version}, this hrqtok reads "
                          f"{TABLE_FORMAT_VERSION}; re-encode it with this version")
    ids = _ids_column(arrow, path)
    tokens = _tokens_column(arrow, path, meta)
    return TokenTable(ids, tokens, meta)
