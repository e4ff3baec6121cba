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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrqtok.atomic import atomic_path
from hrqtok.errors import ArtifactError

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

    def lookup(self) -> dict[tuple[int, ...], str]:
        """multitoken -> id."""
        return {tuple(row): item_id for item_id, row in zip(self.ids, self.tokens.tolist())}


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

    width = table.tokens.shape[1]
    flat = pa.array(table.tokens.reshape(-1), type=pa.int32())
    offsets = pa.array(np.arange(0, len(table) * width + 1, width, dtype=np.int32))
    schema = pa.schema(
        [pa.field("id", pa.string(), nullable=False),
         pa.field("tokens", pa.list_(pa.int32()), nullable=False)],
        metadata={
            f"{META_PREFIX}{k}": json.dumps(v)
            for k, v in {"format_version": TABLE_FORMAT_VERSION, **table.metadata}.items()
        },
    )
    columns = [pa.array(table.ids, type=pa.string()), pa.ListArray.from_arrays(offsets, flat)]
    return pa.Table.from_arrays(columns, schema=schema)


def _write_body(table: TokenTable, fmt: str, handle) -> None:
    rows = zip(table.ids, table.tokens.tolist())
    if fmt == "jsonl":
        for item_id, tokens in rows:
            handle.write(json.dumps({"id": item_id, "tokens": tokens}) + "\n")
    elif fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "tokens"])
        writer.writerows((item_id, " ".join(map(str, tokens))) for item_id, tokens in rows)
    elif fmt == "strings":
        for item_id, tokens in rows:
            handle.write(f"{item_id}\t{token_string(tokens)}\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def write_table(table: TokenTable, path: str, fmt: str = "parquet") -> None:
    """Write a table to ``path`` ('-' is stdout), atomically for files."""
    import pyarrow.parquet as pq

    if path == "-":
        if fmt == "parquet":
            buffer = io.BytesIO()
            pq.write_table(_arrow_table(table), buffer)
            sys.stdout.buffer.write(buffer.getvalue())
            sys.stdout.buffer.flush()
        else:
            _write_body(table, fmt, sys.stdout)
            sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            pq.write_table(_arrow_table(table), tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                _write_body(table, fmt, handle)


def read_table(path: str | Path) -> TokenTable:
    """Read a Parquet token table written by hrqtok; other files are an ArtifactError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ArtifactError(f"{path}: not a readable Parquet token table ({e})") from None
    if arrow.column_names[:2] != ["id", "tokens"]:
        raise ArtifactError(f"{path}: a token table needs columns 'id' and 'tokens', found "
                            f"{arrow.column_names}")
    raw = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
    meta = {k[len(META_PREFIX):]: json.loads(v) for k, v in raw.items()
            if k.startswith(META_PREFIX)}
    version = meta.pop("format_version", None)
    if version != TABLE_FORMAT_VERSION:
        raise ArtifactError(f"{path}: token table format version {version}, this hrqtok reads "
                            f"{TABLE_FORMAT_VERSION}; re-encode it with this version")
    column = arrow.column("tokens").combine_chunks()
    lengths = np.diff(column.offsets.to_numpy())
    if len(lengths) and (lengths != lengths[0]).any():
        raise ArtifactError(f"{path}: rows have multitokens of different lengths")
    width = int(lengths[0]) if len(lengths) else int(meta.get("levels", 0)) + 1
    tokens = column.flatten().to_numpy().astype(np.int32).reshape(-1, width)
    return TokenTable(arrow.column("id").to_pylist(), tokens, meta)
