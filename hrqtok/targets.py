"""Where a command may write, checked before any work: never over one of its inputs, never
inside a model directory it does not own, never at a folder or under a regular file, and never
where it cannot write (a read-only folder is found before a long fit, not after it). Outputs
at URIs are checked by ``remote_writes``; an option that takes only local paths refuses them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from hrqtok.atomic import is_special
from hrqtok.errors import OptionError
from hrqtok.locations import is_uri, kind, local_path, output_location

# what a Path makes of a URI: "s3://bucket/key" becomes "s3:/bucket/key"
COLLAPSED_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")

STDIO = "-"


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through symlinks and hard links)."""
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _local_inputs(inputs: Iterable[str | Path | None]) -> list[str]:
    """The inputs that are local files (a ``file://`` URI by its path): a remote input cannot
    be overwritten by a local output."""
    return [local for given in inputs
            if given is not None and (local := local_path(given)) is not None]


def check_writable_folder(path: Path, option: str) -> None:
    """``path`` can be created: its nearest existing ancestor is a folder this process may
    write into."""
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OptionError(option, f"cannot write {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OptionError(option, f"cannot write {path}: no permission to write in {ancestor} "
                                  "(or it is on a read-only filesystem)")


def names_a_folder(path: str | Path) -> bool:
    """Whether an output path asks for a folder: it ends in ``/``, or is an existing folder
    (a URI: its path, before any ``?`` options)."""
    from hrqtok.remote_writes import is_remote

    path = output_location(str(path))
    if is_remote(path):
        return path.partition("?")[0].endswith("/") or kind(path) == "folder"
    return path.endswith(("/", os.sep)) or os.path.isdir(path)


def refuse_uri(path: str | Path, option: str) -> None:
    """Refuse a URI where ``option`` takes a local path: given as text (``s3://…``) or as a Path,
    which has already made it ``s3:/…`` (a local path that really starts so is given whole,
    from ``/``)."""
    text = str(path)
    if (is_uri(text) and local_path(text) is None) or (not is_uri(text) and COLLAPSED_URI.match(text)):
        shown = COLLAPSED_URI.sub(lambda m: m.group(0) + "/", text) if not is_uri(text) else text
        raise OptionError(option, f"{shown} is a URI; {option} takes a local path (a local "
                                  "one that starts so: give it from /)")


def check_output(path: str | Path, *, option: str = "--out",
                 inputs: Iterable[str | Path | None] = (),
                 managed: Iterable[str | Path | None] = (), folders: bool = False,
                 remote: bool = False) -> None:
    """Refuse an output path that would replace an input or a file inside a ``managed`` folder
    (a model directory), that names a folder, or that cannot be written. ``-`` and special
    targets (``/dev/stdout``, FIFOs, ``>(…)``) are written through and always allowed.
    ``folders``: a path ending in ``/`` or naming a folder asks for a folder of files, which
    must hold no input and not overlap a managed folder (what it may already hold is the
    writer's to check: ``store.token_folders.check_replaceable``). ``remote``: the output may be
    a URI (``remote_writes``); otherwise a URI is refused."""
    from hrqtok.remote_writes import check_remote_output, is_remote

    if str(path) == STDIO or is_special(path):
        return
    path = output_location(path) if isinstance(path, str) else path
    if remote and is_remote(str(path)):
        inputs = [str(given) for given in inputs if given is not None]
        check_remote_output(str(path), option=option, inputs=inputs, folders=folders)
        return
    refuse_uri(path, option)
    real = _real(path)
    inputs = _local_inputs(inputs)
    if folders and names_a_folder(path):
        check_inputs_outside(path, inputs, option)
        for folder in managed:
            if folder is not None and (_inside(real, _real(folder)) or
                                       _inside(_real(folder), real)):
                raise OptionError(option, f"{path} and the model directory {folder} overlap; "
                                          "write the tokens somewhere else")
        check_writable_folder(real, option)
        return
    if real.is_dir():
        raise OptionError(option, f"{path} is a folder; name a file (e.g. {Path(path) / 'tokens.parquet'})")
    for given in inputs:
        if str(given) != STDIO and same_file(path, given):
            raise OptionError(option, f"{path} is also an input of this command ({given}); "
                                      "writing it would destroy that input: name another file")
    for folder in managed:
        if folder is not None and _inside(real, _real(folder)):
            raise OptionError(option, f"{path} is inside the model directory {folder}, whose "
                                      "files belong to the model: write somewhere else")
    check_writable_folder(real, option)


def check_inputs_outside(folder: str | Path, inputs: Iterable[str | Path | None], option: str) -> None:
    """Refuse to replace ``folder`` while a command reads an input from inside it."""
    root = _real(folder)
    for given in _local_inputs(inputs):
        if str(given) != STDIO and _inside(_real(given), root):
            raise OptionError(option, f"{folder} holds {given}, an input of this command; "
                                      "replacing it would destroy that input: name another folder")
