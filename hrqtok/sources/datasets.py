"""Inputs that are folders: a Parquet dataset's part files, read as one catalogue."""

from __future__ import annotations

import os
from pathlib import Path

from hrqtok.errors import InputError


def input_files(path: str) -> list[str]:
    """The files an input names: itself, or for a folder its Parquet files (``*.parquet`` at
    any depth, in path order: a Parquet dataset's part files)."""
    if path == "-" or not os.path.isdir(path):
        return [path]
    files = sorted(str(p) for p in Path(path).rglob("*.parquet") if p.is_file())
    if not files:
        raise InputError("is a folder without .parquet files; name a file or a Parquet "
                         "dataset folder", source=path)
    return files
