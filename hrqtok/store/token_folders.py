"""A token table as a folder of Parquet part files (`encode --out tokens/`), the shape Spark,
Ray Data and pyarrow.dataset read and write: ``part-00000.parquet``, ``part-00001.parquet``, …,
each with the table's schema and metadata and at most ``PART_ROWS`` rows, the rows in order
across the parts. A local folder is written beside its place and swapped in whole
(``atomic.atomic_dir``), so a reader sees the old parts or the new ones, never a mix; a folder at
a URI is staged whole and its parts then moved in one by one (``remote_writes.remote_folder``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hrqtok.atomic import atomic_dir
from hrqtok.errors import ArtifactError, OptionError, first_line
from hrqtok.locations import arrow_errors, filesystem_of, output_location, parquet_source
from hrqtok.remote_writes import PartPlace, is_remote, remote_folder

PART_ROWS = 1 << 20  # rows per part file (16 row groups of encode's 65,536)
PART_NAME = re.compile(r"part-\d{5}\.parquet")


def part_files(folder: str | Path) -> list:
    """The part files of a token folder, in order: Paths, or URIs for a folder at a URI."""
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


def check_replaceable(folder: str | Path, option: str = "--out") -> None:
    """A folder may receive a token table when it is new, empty, or a token folder hrqtok
    wrote (only part files with hrqtok's metadata): anything else is the user's."""
    folder = output_location(str(folder))
    if is_remote(folder):
        _check_remote_replaceable(folder, option)
        return
    folder = Path(folder)  # "DIR/" as DIR: with the slash, a file at DIR would seem absent
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise OptionError(option, f"{folder} is a file; a folder of part files needs a new "
                                  "path or a token folder written by hrqtok")
    for entry in sorted(Path(folder).iterdir()):
        ours = (entry.is_file() and not entry.is_symlink()
                and _is_hrqtok_part(entry.name, {"where": str(entry)}))
        if not ours:
            raise OptionError(option, f"{folder} holds {entry.name}, which is not a token "
                                      "table part written by hrqtok; name a new or empty folder")


def _is_hrqtok_part(name: str, where: dict) -> bool:
    """A part file's name with hrqtok's metadata keys in its schema (``where``: the keyword
    arguments of pq.read_schema that find it)."""
    import pyarrow.parquet as pq

    from hrqtok.store.tables import META_PREFIX

    if not PART_NAME.fullmatch(name):
        return False
    try:
        keys = pq.read_schema(**where).metadata or {}
    except Exception:  # a damaged or foreign file: not ours to replace
        return False
    return any(k.decode("utf-8", "replace").startswith(META_PREFIX) for k in keys)


def _check_remote_replaceable(uri: str, option: str) -> None:
    """``check_replaceable`` of a folder at a URI; its hidden staging leftovers do not count."""
    from pyarrow import fs

    filesystem, _ = filesystem_of(uri)
    for entry in sorted(_remote_entries(uri, option), key=lambda e: e.base_name):
        ours = entry.type == fs.FileType.File and _is_hrqtok_part(
            entry.base_name, {"where": entry.path, "filesystem": filesystem})
        if not ours:
            raise OptionError(option, f"{uri} holds {entry.base_name}, which is not a token "
                                      "table part written by hrqtok; name a new or empty folder")


def write_folder(chunks: Iterable[tuple[list[str], np.ndarray]], metadata: dict,
                 folder: str | Path, *, part_rows: int | None = None) -> None:
    """Write (ids, tokens) chunks as part files of at most ``part_rows`` rows, a row group
    per chunk (cut where a part is full), then swap the folder in. An empty table is one
    part without rows, so the folder still says what it holds. ``part_rows``: default
    ``PART_ROWS``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hrqtok.store.tables import _schema, _tokens_array

    folder = output_location(str(folder))
    check_replaceable(folder)
    schema = _schema(metadata)
    with _part_places(folder) as place:
        writer, current = None, -1
        try:
            for part, ids, tokens in _pieces(chunks, part_rows or PART_ROWS):
                if part != current:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(schema=schema, **place(f"part-{part:05d}.parquet"))
                    current = part
                writer.write_table(pa.Table.from_arrays(
                    [pa.array(ids, type=pa.string()), _tokens_array(tokens)], schema=schema))
            if writer is None:
                writer = pq.ParquetWriter(schema=schema, **place("part-00000.parquet"))
        finally:
            if writer is not None:
                writer.close()


@contextmanager
def _part_places(folder: str) -> Iterator[PartPlace]:
    """Where each part file of a folder being written goes: in a local folder swapped in whole,
    or staged for a folder at a URI."""
    if is_remote(folder):
        with remote_folder(folder, PART_NAME.fullmatch) as place:
            yield place
        return
    with atomic_dir(folder) as target:
        yield lambda name: {"where": str(target / name)}


def _pieces(chunks: Iterable[tuple[list[str], np.ndarray]], part_rows: int):
    """(part number, ids, tokens) of the chunks, each cut where its part is full."""
    part, in_part = 0, 0
    for ids, tokens in chunks:
        start = 0
        while start < len(ids):
            if in_part == part_rows:
                part, in_part = part + 1, 0
            stop = min(len(ids), start + part_rows - in_part)
            yield part, ids[start:stop], tokens[start:stop]
            in_part += stop - start
            start = stop


def read_folder(folder: str | Path):
    """The token table of a folder of part files, checked as one table (``tables.read_table``
    checks each row and the ids over all parts); the parts must share their metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hrqtok.store.tables import _from_arrow

    parts = part_files(folder)
    if not parts:
        raise ArtifactError(f"{folder}: a folder without part-NNNNN.parquet files; name a "
                            "token table file or a folder written by `hrqtok encode --out DIR/`")
    tables = []
    for part in parts:
        try:
            tables.append(pq.read_table(parquet_source(part)))
        except (pa.ArrowException, OSError) as e:
            raise ArtifactError(f"{part}: not a readable Parquet token table "
                                f"({first_line(e)})") from None
        if tables[-1].schema.metadata != tables[0].schema.metadata:
            first = str(parts[0]).partition("?")[0].rsplit("/", 1)[-1]
            raise ArtifactError(f"{part}: its metadata differs from {first}'s; the "
                                "parts come from different encodes: encode again")
    try:
        whole = pa.concat_tables(tables)
    except pa.ArrowException as e:
        raise ArtifactError(f"{folder}: parts with different columns ({first_line(e)})") from None
    return _from_arrow(whole, folder)
