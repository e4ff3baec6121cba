"""Reading items (id + text or precomputed vector) from the records of JSONL, Parquet or CSV
inputs (``sources.records``).

Every problem is an InputError naming the file, the line (JSONL, CSV) or row (Parquet) and the
field, so the CLI can print one line and exit 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from hrqtok.errors import InputError
from hrqtok.sources.datasets import input_files
from hrqtok.sources.records import detect_format, records, source_name
from hrqtok.sources.sample import Reservoir
from hrqtok.sources.vector_values import parse_vector

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
    read: int = 0  # items read from the input so far (more than len(ids) in a sample or a chunk)

    def __len__(self) -> int:
        return len(self.ids)


def read_items(path: str, fields: ItemFields = ItemFields(), *, fmt: str | None = None,
               sample: int | None = None, seed: int = 0) -> Items:
    """Read and validate items. ``path`` may be '-' for stdin, a URI (``hrqtok.locations``),
    or a folder of Parquet files (local or a URI), read in path order as one input.
    ``sample``: keep a seeded uniform sample of that many items (all of them when there are
    no more), in input order; every record is still read
    and validated, and ids are unique over the whole input, but only the sample's texts or
    vectors are held (a reservoir)."""
    files = input_files(path)
    reader = _Collector(source_name(path), fields, Reservoir(sample, seed) if sample is not None else None)
    for file in files:
        reader.source = source_name(file)  # messages name the file the record is in
        reader.csv = detect_format(file, fmt) == "csv"
        for line, record in records(file, fmt):
            reader.add(line, record)
    reader.source = source_name(path)  # an input without items is named as it was given
    return reader.finish(detect_format(files[-1], fmt))


def item_chunks(path: str, fields: ItemFields = ItemFields(), *, fmt: str | None = None,
                size: int = 4096, unique_ids: bool = True) -> Iterator[Items]:
    """The items of ``path`` in chunks of ``size``, read and validated as they come, so that
    only one chunk's texts or vectors are held. ``unique_ids``: ids are checked to be unique
    over the whole input here (a set that grows with it); without, only within a chunk, for
    callers that check the whole input on disk (``store.bulk``)."""
    fmt = detect_format(path, fmt)
    yield from record_chunks(records(path, fmt), source_name(path), fields, fmt=fmt, size=size,
                             unique_ids=unique_ids)


def record_chunks(numbered: Iterable[tuple[int, dict]], source: str, fields: ItemFields, *,
                  fmt: str, size: int = 4096, unique_ids: bool = True,
                  part: bool = False) -> Iterator[Items]:
    """``item_chunks`` over (line, record) pairs. ``part``: the records are one part of an
    input (``sources.splits``): no records is no chunk rather than an error. Without
    ``unique_ids`` the chunk read so far is yielded before a bad record's error, so that the
    caller's id check sees a repeated id on an earlier line first, as a whole read would."""
    reader = _Collector(source, fields, track_ids=unique_ids)
    reader.csv = fmt == "csv"
    try:
        for line, record in numbered:
            reader.add(line, record)
            if len(reader.ids) == size:
                yield reader.take()
    except InputError:
        if not unique_ids and reader.ids:
            yield reader.take()
        raise
    if reader.ids or not (reader.read or part):  # an empty input is the usual error
        yield reader.finish(fmt)


class IdRegister:
    """The ids seen so far, each with where it first was: the duplicate-id check over an input
    read a chunk at a time (one file or several)."""

    def __init__(self, id_field: str):
        self.id_field = id_field
        self.first: dict[str, tuple[str, int]] = {}  # id -> (source, line)

    def add(self, item_id: str, source: str, line: int) -> None:
        if item_id in self.first:
            first_source, first_at = self.first[item_id]
            where = f"line {first_at}" if first_source == source else \
                f"{first_source} line {first_at}"
            raise InputError(f"duplicate id {item_id!r} in field '{self.id_field}' (first on "
                             f"{where}); ids must be unique", source=source, line=line)
        self.first[item_id] = (source, line)

    def add_all(self, ids: list[str], source: str, lines: list[int]) -> None:
        for item_id, line in zip(ids, lines):
            self.add(item_id, source, line)


class _Collector:
    """Validates records one by one and gathers ids, texts or vectors."""

    def __init__(self, source: str, fields: ItemFields, reservoir: Reservoir | None = None,
                 *, track_ids: bool = True):
        self.source, self.fields, self.reservoir = source, fields, reservoir
        self.track_ids, self.read = track_ids, 0  # read: records so far
        self.ids: list[str] = []
        self.lines: list[int] = []
        self.sources: list[str] = []  # the file of each item (a folder input has several)
        self.positions: list[int] = []  # each item's place in the input, for the sample's order
        self.texts: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.seen = IdRegister(fields.id_field)
        self.dim_line, self.dim = 0, 0  # the first vector's line and length
        self.dim_source = source  # and its file
        self.csv = False  # whether records are CSV rows, whose cells spell vectors as text

    def _error(self, message: str, line: int) -> InputError:
        return InputError(message, source=self.source, line=line)

    def add(self, line: int, record: dict) -> None:
        item_id = self._id(line, record)
        self.seen.add(item_id, self.source, line)
        self.read += 1
        if self.fields.embedding_field:
            value, kept = self._vector(line, record), self.vectors
        else:
            value, kept = self._text(line, record), self.texts
        slot = self.reservoir.slot() if self.reservoir else len(self.ids)
        if slot == len(self.ids):
            for held, entry in zip((self.ids, self.lines, self.sources, self.positions, kept),
                                   (item_id, line, self.source, self.read, value)):
                held.append(entry)
        elif slot is not None:
            self.ids[slot], self.lines[slot], kept[slot] = item_id, line, value
            self.sources[slot], self.positions[slot] = self.source, self.read

    def _id(self, line: int, record: dict) -> str:
        field = self.fields.id_field
        value = record.get(field)
        if field not in record:
            raise self._error(f"field '{field}' is missing; name the id field with --id-field",
                              line)
        if value is None:
            raise self._error(f"field '{field}' is null; every item needs an id", line)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._error(f"field '{field}' must be a string or an integer, found "
                              f"{type(value).__name__}", line)
        value = str(value)
        if not value.strip():
            raise self._error(f"field '{field}' is empty or only whitespace", line)
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise self._error(f"field '{field}' holds a line break or another control "
                              f"character ({value[:30]!r}); ids must be one line", line)
        return value

    def _text(self, line: int, record: dict) -> str:
        parts = []
        for field in self.fields.text_fields:
            value = record.get(field)
            if field not in record:
                raise self._error(
                    f"field '{field}' is missing; name text fields with --text-field or give "
                    "vectors with --embedding-field", line)
            if value is None:
                raise self._error(f"field '{field}' is null; every item needs a text", line)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise self._error(f"field '{field}' must be text, found {type(value).__name__}",
                                  line)
            if isinstance(value, float) and not math.isfinite(value):
                raise self._error(f"field '{field}' is {value}, not a text", line)
            if str(value).strip():
                parts.append(str(value).strip())
        if not parts:
            raise self._error(f"field '{self.fields.text_fields[0]}' is empty", line)
        return TEXT_SEPARATOR.join(parts)

    def _vector(self, line: int, record: dict) -> np.ndarray:
        field = self.fields.embedding_field
        value = record.get(field)
        if value is None:
            what = "is null" if field in record else "is missing"
            raise self._error(f"field '{field}' {what}; every item needs a vector", line)
        vector = parse_vector(value, lambda message: self._error(f"field '{field}' {message}", line),
                              text=self.csv)
        if self.dim_line and vector.size != self.dim:
            where = f"line {self.dim_line}" if self.dim_source == self.source else \
                f"{self.dim_source} line {self.dim_line}"
            raise self._error(
                f"field '{field}' has {vector.size} values, but {where} has "
                f"{self.dim}; all vectors need the same length", line)
        if not self.dim_line:
            self.dim_line, self.dim, self.dim_source = line, vector.size, self.source
        return vector

    def take(self) -> Items:
        """The items gathered since the last take, in input order; the id check goes on."""
        items = self.finish("jsonl")
        self.ids, self.lines, self.texts, self.vectors = [], [], [], []
        self.sources, self.positions = [], []
        if not self.track_ids:  # ids were checked within this chunk only
            self.seen = IdRegister(self.fields.id_field)
        return items

    def finish(self, fmt: str) -> Items:
        if not self.ids:
            hint = {"jsonl": "one JSON object per line", "csv": "a header row and rows",
                    "parquet": "rows"}[fmt]
            raise InputError(f"no items found; expected {hint}", source=self.source)
        ids, lines, texts, vectors = self.ids, self.lines, self.texts, self.vectors
        sources = self.sources
        if self.reservoir:  # replaced slots: back to input order
            order = np.argsort(self.positions, kind="stable")
            ids, lines, sources, texts, vectors = ([kept[i] for i in order] if kept else kept
                                                   for kept in (ids, lines, sources, texts, vectors))
        # messages about the items name the first one's file and line
        if self.fields.embedding_field:
            return Items(ids, None, np.stack(vectors), sources[0], lines, self.read)
        return Items(ids, texts, None, sources[0], lines, self.read)

