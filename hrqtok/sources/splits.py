"""An input file cut into parts that separate workers read on their own (the Ray engine): a
JSONL file at line starts, a Parquet file at row-group boundaries, a CSV file whole (a quoted
field may hold line breaks, so only its reader knows where records start). Every part knows
the line or row number of its first record, so messages name the same line as a whole read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from hrqtok.atomic import is_special
from hrqtok.errors import InputError, OptionError, first_line
from hrqtok.locations import is_uri, open_binary, parquet_source
from hrqtok.sources.items import ItemFields, Items, record_chunks
from hrqtok.sources.records import (
    check_readable,
    csv_records,
    decode_lines,
    detect_format,
    jsonl_records,
    parquet_records,
    source_name,
)


@dataclass(frozen=True)
class Split:
    """Records ``start``..``stop`` of ``path``: bytes for JSONL, row groups for Parquet, the
    whole file for CSV (0, 0). ``before``: lines (JSONL) or rows (Parquet) before the part."""

    path: str  # absolute (or a URI): workers need not share the driver's working folder
    source: str  # how messages name the input (the path as the user gave it)
    fmt: str
    start: int
    stop: int
    before: int

    def as_row(self) -> dict:
        return asdict(self)


def check_cuttable(path: str) -> None:
    """Only regular files can be cut: stdin and pipes are read once, in order."""
    if path == "-" or is_special(path):
        raise OptionError("--engine", f"ray reads files on its workers, not "
                                      f"{source_name(path)}; use --engine local for stdin and "
                                      "pipes")
    check_readable(path, source_name(path))


def plan_splits(path: str, fmt: str | None, rows: int) -> list[Split]:
    """``path`` cut into parts of about ``rows`` records (Parquet: whole row groups, at least
    one per part)."""
    fmt = detect_format(path, fmt)
    source = source_name(path)
    check_cuttable(path)
    path = path if is_uri(path) else os.path.abspath(path)
    if fmt == "parquet":
        return _parquet_splits(path, source, rows)
    if fmt == "csv":
        return [Split(path, source, fmt, 0, 0, 0)]
    return _jsonl_splits(path, source, rows)


def _parquet_splits(path: str, source: str, rows: int) -> list[Split]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(parquet_source(path)).metadata
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"not a readable Parquet file ({first_line(e)})", source=source) from None
    splits, first, before, held = [], 0, 0, 0
    for group in range(metadata.num_row_groups):
        held += metadata.row_group(group).num_rows
        if held >= rows or group == metadata.num_row_groups - 1:
            splits.append(Split(path, source, "parquet", first, group + 1, before))
            first, before, held = group + 1, before + held, 0
    return splits or [Split(path, source, "parquet", 0, 0, 0)]  # no row groups: an empty file


def _jsonl_splits(path: str, source: str, rows: int) -> list[Split]:
    """Cut at every ``rows``-th line start; one pass over the bytes, nothing held."""
    splits, start, offset, lines = [], 0, 0, 0
    with open_binary(path) as handle:
        for raw in handle:
            offset += len(raw)
            lines += 1
            if lines % rows == 0:
                splits.append(Split(path, source, "jsonl", start, offset, lines - rows))
                start = offset
    if start < offset or not splits:
        splits.append(Split(path, source, "jsonl", start, offset, lines - lines % rows))
    return splits


def split_records(split: Split) -> Iterator[tuple[int, dict]]:
    """(line or row number, record) of the part: the numbers a whole read gives them."""
    source = split.source
    if split.fmt == "parquet":
        yield from parquet_records(parquet_source(split.path), source,
                                   range(split.start, split.stop), split.before)
    elif split.fmt == "csv":
        yield from csv_records(split.path, source)
    else:
        yield from jsonl_records(decode_lines(_byte_lines(split), source, split.before + 1),
                                 source)


def _byte_lines(split: Split) -> Iterator[bytes]:
    with open_binary(split.path) as handle:
        handle.seek(split.start)
        left = split.stop - split.start
        for raw in handle:
            if left <= 0:
                break
            left -= len(raw)
            yield raw


def split_chunks(split: Split, fields: ItemFields, size: int) -> Iterator[Items]:
    """The part's items in chunks of ``size``, checked as ``item_chunks`` checks them (ids
    within a chunk only: the caller checks them over the whole input). A part without
    records gives no chunk; whether its file held any is the caller's to say."""
    yield from record_chunks(split_records(split), split.source, fields,
                             fmt=split.fmt, size=size, unique_ids=False, part=True)
