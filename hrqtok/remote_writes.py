"""Outputs at the URI of a store pyarrow writes (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``):
what ``atomic`` does for local paths, on stores that cannot rename a folder and, for object
stores, cannot rename at all.

- A file is written to a hidden staging object beside it (``.NAME.PID.RANDOM.tmp``) and moved
  into place once complete. On an object store the move is a server-side copy, which readers
  see whole or not at all; a failure deletes the staging object and leaves the old file.
  S3 copies one object of at most 5 GiB: a larger file fails at the move, old file intact.
  Where a store has no move at all (Azure storage without a hierarchical namespace), the copy
  and the staging object's deletion are made here.
- A folder of part files is staged whole under a hidden sibling prefix. Once every part is
  written the parts move in one by one, then the old parts that the new table lacks go. Until
  then the old folder is untouched; while the parts move, a reader can see old and new parts
  together, which a store without a folder rename cannot avoid.
- Readers (pyarrow.dataset, Spark, Ray Data, hrqtok's folder reader) skip names that start with
  ``.``, so what a killed writer leaves is never read as data. A later run does not remove it:
  it cannot tell a dead writer from a live one on another machine.
- Before any work, ``check_remote_output`` writes and deletes an empty probe object there, so
  a missing bucket or a denied write is found before a long encode, not after it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from hrqtok.errors import InputError, OptionError, OutputError, first_line
from hrqtok.locations import arrow_errors, filesystem_of, is_uri, local_path

# (where, filesystem) keyword arguments of pq.ParquetWriter for a file in a folder being written
PartPlace = Callable[[str], dict]


def is_remote(path: str) -> bool:
    """Whether an output names a remote store (a URI other than ``file://``)."""
    return is_uri(path) and local_path(path) is None


def _split(inner: str) -> tuple[str, str]:
    parent, _, name = inner.rstrip("/").rpartition("/")
    return parent, name


def _hidden(inner: str, kind: str) -> str:
    """A hidden sibling of ``inner`` that names this process: ``PARENT/.NAME.PID.RANDOM.kind``."""
    parent, name = _split(inner)
    return f"{parent}/.{name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _place(uri: str, option: str = "--out"):
    """(filesystem, path inside it) of an output URI; an unusable URI is a bad option."""
    try:
        return filesystem_of(uri)
    except InputError as e:
        raise OptionError(option, str(e)) from None


def _discard(filesystem, inner: str, *, folder: bool = False) -> None:
    """Remove a staging object or prefix, ignoring what is already gone: its removal must not
    hide the error that made it a leftover."""
    try:
        (filesystem.delete_dir if folder else filesystem.delete_file)(inner)
    except arrow_errors():
        pass


def check_remote_output(uri: str, *, option: str = "--out", folders: bool = False,
                        inputs: Iterable[str | None] = ()) -> None:
    """Refuse, before any work, a remote output that is one of the remote ``inputs`` (or, for a
    folder, holds one), that names a folder where a file is asked for (or the reverse), or that
    cannot be written: an empty probe object is written beside it and deleted. ``folders``: a
    folder may be asked for (a path ending in ``/``, or an existing folder)."""
    from pyarrow import fs

    filesystem, inner = _place(uri, option)
    if "/" not in inner.strip("/"):  # staging goes beside the output, and a root has no beside
        raise OptionError(option, f"{uri} is the root of its bucket or store; name a file or "
                                  "a folder inside it")
    slash = uri.partition("?")[0].endswith("/")
    if slash and not folders:
        raise OptionError(option, f"{uri} names a folder; name a file")
    inner = inner.rstrip("/")
    try:
        found = filesystem.get_file_info(inner).type
    except arrow_errors() as e:
        raise OptionError(option, f"{uri}: cannot reach it ({first_line(e)})") from None
    folder = slash or (folders and found == fs.FileType.Directory)
    for given in inputs:
        if given is None or not is_remote(str(given)):
            continue
        other = _place(str(given), option)[1].rstrip("/")
        if other == inner or (folder and other.startswith(inner + "/")):
            raise OptionError(option, f"{uri} {'holds' if other != inner else 'is'} {given}, "
                                      "an input of this command; writing it would destroy "
                                      "that input: name another location")
    if folder and found == fs.FileType.File:
        raise OptionError(option, f"{uri} is a file; a folder of part files needs a new "
                                  "location or a token folder written by hrqtok")
    if not folder and found == fs.FileType.Directory:
        raise OptionError(option, f"{uri} is a folder; name a file (e.g. "
                                  f"{uri.partition('?')[0].rstrip('/')}/tokens.parquet)")
    probe = _hidden(inner, "probe")
    try:
        filesystem.open_output_stream(probe).close()
    except arrow_errors() as e:
        raise OptionError(option, f"cannot write {uri} ({first_line(e)})") from None
    _discard(filesystem, probe)


@contextmanager
def remote_file(uri: str) -> Iterator:
    """Yield a binary output stream; what is written there takes the place of the file at
    ``uri`` when the block ends without error, and goes when it raises."""
    filesystem, inner = _place(uri)
    staging = _hidden(inner, "tmp")
    try:
        stream = filesystem.open_output_stream(staging)
    except arrow_errors() as e:
        raise OutputError(f"{uri}: cannot write it ({first_line(e)})") from None
    try:
        try:
            yield stream
        finally:
            if not stream.closed:
                stream.close()  # a failed block's upload completes as a staging object only
        _move(filesystem, staging, inner, uri, "the old one is unchanged")
    except BaseException:
        _discard(filesystem, staging)
        raise


@contextmanager
def output_file(path: str) -> Iterator:
    """A binary stream for a file output, local (a temporary sibling, ``atomic.atomic_path``)
    or at a URI (``remote_file``); what is written takes the old file's place only when the
    block ends without error."""
    from hrqtok.atomic import atomic_path
    from hrqtok.locations import output_location

    path = output_location(path)
    if is_remote(path):
        with remote_file(path) as stream:
            yield stream
        return
    with atomic_path(path) as target, open(target, "wb") as stream:
        yield stream


def _move(filesystem, source: str, target: str, uri: str, after: str) -> None:
    try:
        try:
            filesystem.move(source, target)
        except NotImplementedError:  # pyarrow's ArrowNotImplementedError is one too
            # Azure storage without a hierarchical namespace cannot move (Arrow's Move needs
            # one): a server-side copy, what S3's move is as well, then the staging goes
            filesystem.copy_file(source, target)
            _discard(filesystem, source)
    except arrow_errors() as e:
        raise OutputError(f"{uri}: a finished file could not take its place "
                          f"({first_line(e)}); {after}") from None


@contextmanager
def remote_folder(uri: str, is_part: Callable[[str], bool]) -> Iterator[PartPlace]:
    """Yield ``place(name)``: where pq.ParquetWriter writes the part file ``name`` (keyword
    arguments ``where`` and ``filesystem``). The parts are staged, then moved into the folder at
    ``uri`` when the block ends without error; the folder's old files that ``is_part`` accepts
    and the new table lacks go after. On error the staged parts go and the folder is as it was."""
    from pyarrow import fs

    filesystem, inner = _place(uri)
    inner = inner.rstrip("/")
    staging = _hidden(inner, "tmp")
    written: list[str] = []

    def place(name: str) -> dict:
        written.append(name)
        return {"where": f"{staging}/{name}", "filesystem": filesystem}

    try:
        yield place
    except BaseException:
        _discard(filesystem, staging, folder=True)
        raise
    try:
        old = filesystem.get_file_info(fs.FileSelector(inner, allow_not_found=True))
    except arrow_errors() as e:
        _discard(filesystem, staging, folder=True)
        raise OutputError(f"{uri}: cannot list it ({first_line(e)}); nothing was replaced") from None
    try:
        filesystem.create_dir(inner)  # stores with real folders need it; S3 keeps a marker
    except arrow_errors():
        pass  # the moves say what is wrong
    for done, name in enumerate(written):
        _move(filesystem, f"{staging}/{name}", f"{inner}/{name}", uri,
              f"{done} of {len(written)} new parts are in place and the rest old: write it again"
              if done else "the old parts are unchanged")
    new = set(written)
    for info in old:
        if info.type == fs.FileType.File and info.base_name not in new and is_part(info.base_name):
            _discard(filesystem, info.path)
    _discard(filesystem, staging, folder=True)
