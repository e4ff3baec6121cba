"""Where inputs are: local paths, or URIs of the filesystems pyarrow reads (``s3://``, ``gs://``,
``hdfs://``, ``abfs://``, ``file://``; credentials and regions come from the environment, as
pyarrow takes them). Readers ask here what a location is and for a stream of it, so that every
reader of items takes both. Outputs at URIs are written by ``remote_writes``.
"""

from __future__ import annotations

import io
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from hrqtok.errors import InputError, first_line

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str | Path) -> bool:
    """Whether ``path`` is ``scheme://…`` rather than a local path."""
    return isinstance(path, str) and bool(SCHEME.match(path))


def suffix(path: str | Path) -> str:
    """The file name's suffix, lower-case; a URI's query (``?endpoint_override=…``, pyarrow's
    filesystem options) is not part of its name."""
    name = str(path).partition("?")[0] if is_uri(path) else str(path)
    return Path(name).suffix.lower()


def local_path(path: str | Path) -> str | None:
    """The local path a location names: itself, the path of a ``file://`` URI, or None for a
    remote URI (which no local output can overwrite)."""
    if not is_uri(path):
        return str(path)
    if str(path).lower().startswith("file://"):
        return filesystem_of(str(path))[1]
    return None


def output_location(path: str) -> str:
    """An output as the writers take it: a ``file://`` URI as its local path (keeping a final
    ``/``, which asks for a folder); anything else as it is."""
    if not is_uri(path) or (local := local_path(path)) is None:
        return path
    folder = path.partition("?")[0].endswith("/") and not local.endswith("/")
    return local + ("/" if folder else "")


def arrow_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow's filesystems raise."""
    import pyarrow as pa

    return (pa.ArrowException, OSError, ValueError)


@lru_cache(maxsize=32)
def filesystem_of(uri: str):
    """(pyarrow filesystem, path inside it) of a URI; made once per URI (``cache_clear`` after
    a change of the environment that configures it)."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except arrow_errors() as e:
        raise InputError(f"cannot open this URI ({first_line(e)})", source=uri) from None


def kind(path: str | Path) -> str | None:
    """"file", "folder", "other" (a FIFO, a device: local only) or None when nothing is there."""
    if not is_uri(path):
        if os.path.isdir(path):
            return "folder"
        if os.path.isfile(path):
            return "file"
        return "other" if os.path.exists(path) else None
    from pyarrow import fs

    filesystem, inner = filesystem_of(str(path))
    try:
        info = filesystem.get_file_info(inner)
    except arrow_errors() as e:
        raise InputError(f"cannot read it ({first_line(e)})", source=str(path)) from None
    return {fs.FileType.File: "file", fs.FileType.Directory: "folder"}.get(info.type)


def open_binary(path: str | Path) -> BinaryIO:
    """A buffered binary stream of a file, local or remote (remote ones are read as they are
    consumed, not fetched whole)."""
    if not is_uri(path):
        return open(path, "rb")
    filesystem, inner = filesystem_of(str(path))
    try:
        return io.BufferedReader(filesystem.open_input_file(inner))
    except arrow_errors() as e:
        raise InputError(f"cannot read it ({first_line(e)})", source=str(path)) from None


def parquet_source(path: str | Path):
    """What pyarrow's Parquet reader takes: the path of a local file, or a random-access file
    of a remote one (its footer and row groups are fetched as they are read)."""
    if not is_uri(path):
        return str(path)
    filesystem, inner = filesystem_of(str(path))
    try:
        return filesystem.open_input_file(inner)
    except arrow_errors() as e:
        raise InputError(f"cannot read it ({first_line(e)})", source=str(path)) from None


def _hidden(relative: str) -> bool:
    """A path below a dataset's folder that readers skip, as pyarrow.dataset, Spark and Ray
    do: one of its names starts with ``.`` or ``_`` (staging leftovers, ``_SUCCESS`` files)."""
    return any(name.startswith((".", "_")) for name in relative.split("/"))


def parquet_files(folder: str | Path) -> list[str]:
    """The ``*.parquet`` files at any depth under a folder, in path order, as locations of the
    same kind (URIs under a URI); hidden ones (``_hidden``) are left out."""
    if not is_uri(folder):
        root = Path(folder)
        return sorted(str(p) for p in root.rglob("*.parquet")
                      if p.is_file() and not _hidden(p.relative_to(root).as_posix()))
    from pyarrow import fs

    uri = str(folder)
    filesystem, inner = filesystem_of(uri)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(inner, recursive=True))
    except arrow_errors() as e:
        raise InputError(f"cannot list it ({first_line(e)})", source=uri) from None
    # a file's URI: the folder's, with the part of the path below the folder appended
    base, _, query = uri.partition("?")
    base, inner = base.rstrip("/"), inner.rstrip("/")
    return sorted(base + info.path[len(inner):] + (f"?{query}" if query else "")
                  for info in infos
                  if info.type == fs.FileType.File and info.path.endswith(".parquet")
                  and not _hidden(info.path[len(inner):].lstrip("/")))
