"""The input formats as records: (line or row number, record dict) from JSONL, CSV or Parquet,
in a file, a remote file (a URI, ``hrqtok.locations``), stdin, a FIFO or ``<(…)``. Every problem
is an InputError naming the file and the line (JSONL, CSV) or row (Parquet)."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from hrqtok.atomic import is_special
from hrqtok.errors import InputError, first_line
from hrqtok.locations import is_uri, kind, open_binary, parquet_source, suffix

FORMATS = ("jsonl", "parquet", "csv")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
            ".pq": "parquet", ".csv": "csv"}
PARQUET_BATCH = 4096  # rows read from Parquet at a time


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "jsonl"
    return SUFFIXES.get(suffix(path), "jsonl")


def count_records(path: str, fmt: str | None = None) -> int | None:
    """At most how many records a regular file holds (for a progress bar), read cheaply:
    Parquet's row count, or the lines of a JSONL or CSV file; None for stdin, a FIFO or a
    file that cannot be read (reading it then says why)."""
    fmt = detect_format(path, fmt)
    if path == "-" or is_special(path) or (not is_uri(path) and not os.path.isfile(path)):
        return None
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(parquet_source(path)).metadata.num_rows
        if is_uri(path):  # counting lines would fetch the whole file once more
            return None
        with open(path, "rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        return lines + 1  # a last line without a newline
    except Exception:  # noqa: BLE001 - only a progress hint; the reader reports the problem
        return None


def source_name(path: str) -> str:
    """How messages name an input."""
    return "<stdin>" if path == "-" else path


def records(path: str, fmt: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line or row number, record) of every record of a JSONL, Parquet or CSV input: a file,
    ``-`` (stdin), a FIFO or ``<(…)``; ``/dev/null`` is an empty input."""
    fmt = detect_format(path, fmt)
    source = source_name(path)
    check_readable(path, source)
    reader = {"jsonl": _jsonl_records, "parquet": _parquet_records, "csv": csv_records}[fmt]
    yield from reader(path, source)


def check_readable(path: str, source: str) -> None:
    if path == "-":
        return
    found = kind(path)
    if found is None:
        raise InputError("no such file", source=source)
    if found == "folder":
        raise InputError("is a folder; name a file", source=source)
    if not is_uri(path) and not os.access(path, os.R_OK):
        raise InputError("no permission to read it", source=source)


def text_lines(path: str, source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 input, decoded line by line so that a bad byte is
    reported with its line; a byte-order mark at the start is dropped."""
    handle = sys.stdin.buffer if path == "-" else open_binary(path)
    try:
        yield from decode_lines(handle, source)
    finally:
        if path != "-":
            handle.close()


def decode_lines(raw_lines: Iterable[bytes], source: str,
                 start: int = 1) -> Iterator[tuple[int, str]]:
    """(line number, text) of UTF-8 byte lines, the first numbered ``start``; a bad byte is an
    InputError naming its line."""
    for number, raw in enumerate(raw_lines, start=start):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text (byte {e.start + 1} of the line); convert it "
                             "with iconv", source=source, line=number) from None
        yield number, text


def _jsonl_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    yield from jsonl_records(text_lines(path, source), source)


def jsonl_records(numbered: Iterable[tuple[int, str]], source: str) -> Iterator[tuple[int, dict]]:
    """(line number, record) of numbered JSONL lines; blank lines are skipped."""
    for number, text in numbered:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(
                f"malformed JSON ({e.msg} at column {e.colno}); each line must hold one "
                "JSON object", source=source, line=number,
            ) from None
        except RecursionError:
            raise InputError("JSON nested too deeply", source=source, line=number) from None
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, found {type(record).__name__}",
                             source=source, line=number)
        yield number, record


CSV_FIELD_LIMIT = 2**31 - 1  # long descriptions are fine; the default limit is 128 KB


def csv_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    numbers: list[int] = [0]

    def lines():
        for number, text in text_lines(path, source):
            numbers[0] = number
            yield text

    reader = csv.reader(lines())
    try:
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            raise InputError("the header names a column twice", source=source, line=1)
        for row in reader:
            line = numbers[0]
            if not row or row == [""]:
                continue
            if len(row) > len(header):
                raise InputError(f"{len(row)} fields but the header has {len(header)}; quote "
                                 "fields that contain commas", source=source, line=line)
            yield line, dict(zip(header, row))
    except csv.Error as e:
        raise InputError(f"malformed CSV ({e})", source=source, line=numbers[0]) from None


def _parquet_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    yield from parquet_records(read_bytes_or_path(path), source)


def parquet_records(readable, source: str, row_groups: range | None = None,
                    first_row: int = 0) -> Iterator[tuple[int, dict]]:
    """(row number, record) of a Parquet file's rows (of ``row_groups`` only, the first of
    them row ``first_row + 1``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = first_row
    try:  # record batch by record batch: memory stays that of one batch (pre-buffering
        # would keep every row group read so far: 3 GB for 10^6 768-d vectors)
        parquet = pq.ParquetFile(readable, pre_buffer=False)
        for batch in parquet.iter_batches(PARQUET_BATCH, row_groups=row_groups):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"not a readable Parquet file ({first_line(e)})", source=source) from None


def read_bytes_or_path(path: str | Path):
    """What pyarrow reads: the path of a regular file, a remote file (a URI), or the bytes of
    stdin, a FIFO or ``<(…)`` (Parquet readers need to seek)."""
    import pyarrow as pa

    if str(path) == "-":
        return pa.BufferReader(sys.stdin.buffer.read())
    if is_uri(path):
        return parquet_source(path)
    if is_special(path):
        with open(path, "rb") as handle:
            return pa.BufferReader(handle.read())
    return str(path)
