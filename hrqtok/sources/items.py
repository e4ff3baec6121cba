"""Reading items (id + text or precomputed vector) from JSONL, Parquet or CSV files or stdin.

Every problem is an InputError naming the file, the line (JSONL, CSV) or row (Parquet) and the
field, so the CLI can print one line and exit 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrqtok.errors import InputError

FORMATS = ("jsonl", "parquet", "csv")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
            ".pq": "parquet", ".csv": "csv"}
TEXT_SEPARATOR = ". "  # between the values of several --text-field options


@dataclass(frozen=True)
class ItemFields:
    id_field: str = "id"
    text_fields: tuple[str, ...] = ("text",)
    embedding_field: str | None = None  # when set, vectors are read and texts ignored


@dataclass
class Items:
    ids: list[str]
    texts: list[str] | None  # None when vectors were given
    vectors: np.ndarray | None  # (n, dim) float32, None when texts were given
    source: str  # file name for messages ("<stdin>" for -)
    lines: list[int]  # line (JSONL/CSV) or row (Parquet) of each item, for messages

    def __len__(self) -> int:
        return len(self.ids)


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "jsonl"
    return SUFFIXES.get(Path(path).suffix.lower(), "jsonl")


def read_items(path: str, fields: ItemFields = ItemFields(), *, fmt: str | None = None) -> Items:
    """Read and validate items. ``path`` may be '-' for stdin."""
    fmt = detect_format(path, fmt)
    source = source_name(path)
    reader = _Collector(source, fields)
    for line, record in records(path, fmt):
        reader.add(line, record)
    return reader.finish(fmt)


def source_name(path: str) -> str:
    """How messages name an input."""
    return "<stdin>" if path == "-" else path


def records(path: str, fmt: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line or row number, record) of every record of a JSONL, Parquet or CSV input."""
    fmt = detect_format(path, fmt)
    source = source_name(path)
    if path != "-" and not Path(path).is_file():
        raise InputError("no such file", source=source)
    reader = {"jsonl": _jsonl_records, "parquet": _parquet_records, "csv": _csv_records}[fmt]
    yield from reader(path, source)


def _open_text(path: str):
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    handle = _open_text(path)
    try:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"malformed JSON ({e.msg} at column {e.colno}); each line must hold one "
                    "JSON object", source=source, line=number,
                ) from None
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, found {type(record).__name__}",
                                 source=source, line=number)
            yield number, record
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason})", source=source) from None
    finally:
        if path != "-":
            handle.close()


def _csv_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    handle = _open_text(path)
    try:
        reader = csv.DictReader(handle)
        for record in reader:
            yield reader.line_num, record
    finally:
        if path != "-":
            handle.close()


def _parquet_records(path: str, source: str) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        data = pa.BufferReader(sys.stdin.buffer.read()) if path == "-" else path
        table = pq.read_table(data)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", source=source) from None
    for number, record in enumerate(table.to_pylist(), start=1):
        yield number, record


class _Collector:
    """Validates records one by one and gathers ids, texts or vectors."""

    def __init__(self, source: str, fields: ItemFields):
        self.source, self.fields = source, fields
        self.ids: list[str] = []
        self.lines: list[int] = []
        self.texts: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.first_line: dict[str, int] = {}
        self.dim_line = 0

    def _error(self, message: str, line: int) -> InputError:
        return InputError(message, source=self.source, line=line)

    def add(self, line: int, record: dict) -> None:
        item_id = self._id(line, record)
        if item_id in self.first_line:
            raise self._error(
                f"duplicate id {item_id!r} in field '{self.fields.id_field}' (first on line "
                f"{self.first_line[item_id]}); ids must be unique", line)
        self.first_line[item_id] = line
        self.ids.append(item_id)
        self.lines.append(line)
        if self.fields.embedding_field:
            self.vectors.append(self._vector(line, record))
        else:
            self.texts.append(self._text(line, record))

    def _id(self, line: int, record: dict) -> str:
        field = self.fields.id_field
        value = record.get(field)
        if value is None or value == "":
            raise self._error(f"field '{field}' is missing; name the id field with --id-field",
                              line)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._error(f"field '{field}' must be a string or an integer, found "
                              f"{type(value).__name__}", line)
        return str(value)

    def _text(self, line: int, record: dict) -> str:
        parts = []
        for field in self.fields.text_fields:
            value = record.get(field)
            if value is None:
                raise self._error(
                    f"field '{field}' is missing; name text fields with --text-field or give "
                    "vectors with --embedding-field", line)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise self._error(f"field '{field}' must be text, found {type(value).__name__}",
                                  line)
            if str(value).strip():
                parts.append(str(value).strip())
        if not parts:
            raise self._error(f"field '{self.fields.text_fields[0]}' is empty", line)
        return TEXT_SEPARATOR.join(parts)

    def _vector(self, line: int, record: dict) -> np.ndarray:
        field = self.fields.embedding_field
        value = record.get(field)
        if value is None:
            raise self._error(f"field '{field}' is missing; every item needs a vector", line)
        if isinstance(value, str):  # CSV cells: "[0.1, 0.2]" or "0.1 0.2"
            text = value.strip()
            try:
                value = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
            except json.JSONDecodeError:
                raise self._error(f"field '{field}' is not a list of numbers", line) from None
        try:
            vector = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._error(f"field '{field}' is not a list of numbers", line) from None
        if vector.ndim != 1 or vector.size == 0:
            raise self._error(f"field '{field}' must be a non-empty flat list of numbers", line)
        if not np.isfinite(vector).all():
            bad = next(i for i, v in enumerate(vector) if not math.isfinite(v))
            raise self._error(f"field '{field}' holds NaN or infinity (at position {bad})", line)
        if self.vectors and vector.size != self.vectors[0].size:
            raise self._error(
                f"field '{field}' has {vector.size} values, but line {self.dim_line} has "
                f"{self.vectors[0].size}; all vectors need the same length", line)
        if not self.vectors:
            self.dim_line = line
        return vector.astype(np.float32)

    def finish(self, fmt: str) -> Items:
        if not self.ids:
            hint = {"jsonl": "one JSON object per line", "csv": "a header row and rows",
                    "parquet": "rows"}[fmt]
            raise InputError(f"no items found; expected {hint}", source=self.source)
        vectors = np.stack(self.vectors) if self.fields.embedding_field else None
        texts = None if self.fields.embedding_field else self.texts
        return Items(self.ids, texts, vectors, self.source, self.lines)
