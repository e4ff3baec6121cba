"""Reading user–item interactions (user, item, timestamp) from TSV, CSV or Parquet.

Column names may carry RecBole's type suffix (``item_id:token``); it is ignored, so RecBole's
atomic ``.inter`` files read as they are. Every problem is an InputError naming the file, the
line (TSV/CSV, counting the header as line 1) or row (Parquet) and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from hrqtok.errors import InputError, first_line
from hrqtok.sources.records import check_readable, read_bytes_or_path

FORMATS = ("tsv", "csv", "parquet")
SUFFIXES = {".tsv": "tsv", ".tab": "tsv", ".inter": "tsv", ".csv": "csv", ".parquet": "parquet",
            ".pq": "parquet"}


@dataclass(frozen=True)
class InteractionFields:
    user_field: str = "user_id"
    item_field: str = "item_id"
    time_field: str = "timestamp"


@dataclass
class Interactions:
    users: np.ndarray  # (m,) int64: dense user index, in order of first appearance
    items: pa.Array  # (m,) item ids as strings
    times: np.ndarray  # (m,) float64; ties keep file order
    source: str
    row_offset: int  # add to a 0-based row index to get its line (TSV/CSV) or row (Parquet)

    def __len__(self) -> int:
        return len(self.times)

    def location(self, index: int) -> str:
        """Where a 0-based row sits in the file, for messages: "line 12" or "row 11"."""
        return f"{'row' if self.row_offset == 1 else 'line'} {index + self.row_offset}"


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"cannot tell the format from the suffix '{suffix}'; "
                         f"name it with --interactions-format ({', '.join(FORMATS)})", source=path)
    return SUFFIXES[suffix]


def _bare(name: str) -> str:
    """'item_id:token' -> 'item_id' (RecBole's atomic-file headers)."""
    return name.split(":", 1)[0]


def read_delimited(path: str, delimiter: str) -> pa.Table:
    """Every column as strings, named without type suffixes. A FIFO or ``<(…)`` is read once
    into memory (the header and the body come from the same bytes)."""
    source = read_bytes_or_path(path)
    if isinstance(source, str):
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\r\n")
    else:
        header = source.read().split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        source.seek(0)
    if not header:
        raise InputError("empty file: expected a header line", source=path)
    names = [_bare(n.strip()) for n in header.split(delimiter)]
    try:
        return pcsv.read_csv(
            source,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            # no quoting in tab-separated files: RecBole titles contain bare quotes
            parse_options=pcsv.ParseOptions(delimiter=delimiter,
                                            quote_char=False if delimiter == "\t" else '"'),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}))
    except (pa.ArrowException, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse: {first_line(e)}", source=path) from None


def _column(table: pa.Table, field: str, source: str) -> pa.ChunkedArray:
    if field not in table.column_names:
        raise InputError(f"field '{field}' is missing (columns: {', '.join(table.column_names)}); "
                         "name it with --user-field / --item-field / --time-field", source=source)
    return table.column(field)


def _first(mask: pa.Array | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _ids(column: pa.ChunkedArray, field: str, source: str, offset: int) -> pa.Array:
    """Non-empty id strings."""
    values = pc.cast(column, pa.string()).combine_chunks()
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
    if pc.any(empty).as_py():
        raise InputError(f"field '{field}' is empty", source=source,
                         line=_first(empty.to_numpy(zero_copy_only=False)) + offset)
    return values


def _times(column: pa.ChunkedArray, field: str, source: str, offset: int) -> np.ndarray:
    """Timestamps as float64: numbers, numeric strings or Arrow timestamps (as seconds)."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.utf8_trim_whitespace(column.combine_chunks())
        numeric = pc.match_substring_regex(text, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        bad = pc.invert(pc.fill_null(numeric, False))
        if not pc.any(bad).as_py():
            column = text
        else:
            try:  # ISO 8601 dates and times
                column = pc.cast(pc.cast(text, pa.timestamp("s")), pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                row = _first(bad.to_numpy(zero_copy_only=False))
                raise InputError(f"field '{field}' must be a number or an ISO 8601 time, "
                                 f"found {text[row].as_py()!r}", source=source,
                                 line=row + offset) from None
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"field '{field}' must hold numbers or timestamps, found {column.type}",
                         source=source)
    times = pc.cast(column, pa.float64())
    missing = pc.is_null(times)
    if isinstance(missing, pa.ChunkedArray):
        missing = missing.combine_chunks()
    if pc.any(missing).as_py():
        raise InputError(f"field '{field}' is empty", source=source,
                         line=_first(missing.to_numpy(zero_copy_only=False)) + offset)
    times = times.to_numpy() if isinstance(times, pa.ChunkedArray) else times.to_numpy(zero_copy_only=False)
    if not np.isfinite(times).all():
        raise InputError(f"field '{field}' is not finite", source=source,
                         line=_first(~np.isfinite(times)) + offset)
    return np.ascontiguousarray(times, dtype=np.float64)


def read_interactions(path: str, fields: InteractionFields = InteractionFields(), *,
                      fmt: str | None = None) -> Interactions:
    """Read and validate (user, item, timestamp) rows."""
    check_readable(path, path)
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        try:
            table = pq.read_table(read_bytes_or_path(path))
            names = table.column_names  # decoded here: a damaged name is not UTF-8
        except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
            raise InputError(f"not a readable Parquet file ({first_line(e)})", source=path) from None
        table = table.rename_columns([_bare(n) for n in names])
        offset = 1  # rows count from 1
    else:
        table = read_delimited(path, "\t" if fmt == "tsv" else ",")
        offset = 2  # the header is line 1
    if table.num_rows == 0:
        raise InputError("no interactions found", source=path)
    try:
        users = _ids(_column(table, fields.user_field, path), fields.user_field, path, offset)
        items = _ids(_column(table, fields.item_field, path), fields.item_field, path, offset)
        times = _times(_column(table, fields.time_field, path), fields.time_field, path, offset)
        user_index = pc.dictionary_encode(users).indices.to_numpy(zero_copy_only=False)
    except (pa.ArrowException, UnicodeDecodeError) as e:  # values no column type can hold
        raise InputError(f"cannot read the columns ({first_line(e)})", source=path) from None
    return Interactions(users=user_index.astype(np.int64), items=items, times=times, source=path,
                        row_offset=offset)
