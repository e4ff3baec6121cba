"""Folders of Parquet part files (``part-00000.parquet``, ``part-00001.parquet``, …), the shape
Spark, Ray Data and pyarrow.dataset read and write; token tables (`encode --out DIR/`,
``token_folders``) and vector tables (`embed --out DIR/`, ``vectors``) are written so. Each part
holds the next run of the table's rows, with its schema and metadata.

A local folder is written beside its place and swapped in whole (``atomic.atomic_dir``), so a
reader sees the old parts or the new ones, never a mix; a folder at a URI is staged whole and its
parts then moved in one by one (``remote_writes.remote_folder``). A folder is replaced only when
it is new, empty, or holds nothing but parts of the same kind of table that hrqtok wrote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from hrqtok.atomic import atomic_dir
from hrqtok.errors import ArtifactError, OptionError, first_line
from hrqtok.locations import arrow_errors, filesystem_of, output_location
from hrqtok.remote_writes import PartPlace, is_remote, remote_folder

PART_NAME = re.compile(r"part-\d{5}\.parquet")


class TableKind(NamedTuple):
    """What a folder holds: its name in messages, and a test of a part's schema metadata keys
    that says whether hrqtok wrote it as such a table."""

    name: str  # "token table", "vector table"
    wrote: Callable[[list[bytes]], bool]


def part_files(folder: str | Path) -> list:
    """The part files of a folder, in order: Paths, or URIs for a folder at a URI."""
    if is_remote(str(folder)):
        base, _, query = str(folder).partition("?")
        names = sorted(entry.base_name for entry in _remote_entries(str(folder))
                       if PART_NAME.fullmatch(entry.base_name))
        return [f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "") for name in names]
    return sorted(p for p in Path(folder).iterdir() if PART_NAME.fullmatch(p.name))


def _remote_entries(uri: str, option: str | None = None) -> list:
    """The FileInfos of a folder at a URI (none when it does not exist); a failure to list it
    is a bad ``option``, or a damaged artefact when it is read."""
    from pyarrow import fs

    filesystem, inner = filesystem_of(uri)
    try:
        return filesystem.get_file_info(fs.FileSelector(inner.rstrip("/"), allow_not_found=True))
    except arrow_errors() as e:
        message = f"{uri}: cannot list it ({first_line(e)})"
        raise (OptionError(option, message) if option else ArtifactError(message)) from None


def check_replaceable(folder: str | Path, kind: TableKind, option: str = "--out") -> None:
    """A folder may receive a table of ``kind`` when it is new, empty, or holds only part files
    hrqtok wrote as that kind: anything else is the user's."""
    folder = output_location(str(folder))
    refusal = ("{entry}, which is not a " + kind.name + " part written by hrqtok; name a new "
               "or empty folder")
    if is_remote(folder):
        from pyarrow import fs

        filesystem, _ = filesystem_of(folder)
        for entry in sorted(_remote_entries(folder, option), key=lambda e: e.base_name):
            if not (entry.type == fs.FileType.File and _wrote(
                    kind, entry.base_name, {"where": entry.path, "filesystem": filesystem})):
                raise OptionError(option, f"{folder} holds " + refusal.format(entry=entry.base_name))
        return
    folder = Path(folder)  # "DIR/" as DIR: with the slash, a file at DIR would seem absent
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise OptionError(option, f"{folder} is a file; a folder of part files needs a new "
                                  f"path or a {kind.name} folder written by hrqtok")
    for entry in sorted(folder.iterdir()):
        if not (entry.is_file() and not entry.is_symlink()
                and _wrote(kind, entry.name, {"where": str(entry)})):
            raise OptionError(option, f"{folder} holds " + refusal.format(entry=entry.name))


def _wrote(kind: TableKind, name: str, where: dict) -> bool:
    """A part file's name, and a schema whose metadata ``kind`` recognises (``where``: the
    keyword arguments of pq.read_schema that find the file)."""
    import pyarrow.parquet as pq

    if not PART_NAME.fullmatch(name):
        return False
    try:
        keys = list((pq.read_schema(**where).metadata or {}).keys())
    except Exception:  # a damaged or foreign file: not ours to replace
        return False
    return kind.wrote(keys)


@contextmanager
def part_places(folder: str) -> Iterator[PartPlace]:
    """Where each part file of a folder being written goes: into a local folder swapped in
    whole, or staged for a folder at a URI. Leaving the block with an error writes nothing."""
    if is_remote(folder):
        with remote_folder(folder, PART_NAME.fullmatch) as place:
            yield place
        return
    with atomic_dir(folder) as target:
        yield lambda name: {"where": str(target / name)}


class PartWriter:
    """Appends Arrow tables (row groups) to part files of at most ``part_rows`` rows, cutting a
    table where its part is full. ``schema``: the parts' schema, or None to take the first
    table's. ``close`` writes one part without rows when nothing came and a schema is known, so
    the folder still says what it holds."""

    def __init__(self, place: PartPlace, part_rows: int, schema=None):
        self.place, self.part_rows, self.schema = place, part_rows, schema
        self.writer, self.part, self.in_part, self.rows = None, -1, 0, 0

    def write_table(self, table) -> None:
        import pyarrow.parquet as pq

        start = 0
        while start < table.num_rows:
            if self.writer is None or self.in_part == self.part_rows:
                if self.writer is not None:
                    self.writer.close()
                self.schema = self.schema or table.schema
                self.part, self.in_part = self.part + 1, 0
                self.writer = pq.ParquetWriter(schema=self.schema,
                                               **self.place(f"part-{self.part:05d}.parquet"))
            length = min(table.num_rows - start, self.part_rows - self.in_part)
            self.writer.write_table(table.slice(start, length))
            start, self.in_part, self.rows = start + length, self.in_part + length, self.rows + length

    def close(self) -> None:
        import pyarrow.parquet as pq

        if self.writer is None and self.schema is not None:
            self.writer = pq.ParquetWriter(schema=self.schema, **self.place("part-00000.parquet"))
        if self.writer is not None:
            self.writer.close()
            self.writer = None
