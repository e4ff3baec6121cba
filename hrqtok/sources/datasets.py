"""Inputs that are folders: a Parquet dataset's part files, read as one catalogue."""

from __future__ import annotations

from hrqtok.errors import InputError
from hrqtok.locations import kind, parquet_files


def input_files(path: str) -> list[str]:
    """The files an input names: itself, or for a folder (local or a URI) its Parquet files
    (``*.parquet`` at any depth, in path order, hidden names left out: a Parquet dataset's part
    files)."""
    if path == "-" or kind(path) != "folder":
        return [path]
    files = parquet_files(path)
    if not files:
        raise InputError("is a folder without .parquet files; name a file or a Parquet "
                         "dataset folder", source=path)
    return files
