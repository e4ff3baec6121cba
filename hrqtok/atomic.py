"""Writing outputs so that a crash never costs the user a file.

- A regular file (or a path that does not exist yet) is written to a temporary sibling and
  renamed into place; a symlink is followed and its target replaced.
- A special target (``/dev/stdout``, a FIFO, ``>(…)``, a character device) is written through.
- A directory is replaced by swapping the new one in with one ``renameat2(RENAME_EXCHANGE)``
  (Linux): at every instant the old or the new directory is at the path. Where the swap is not
  supported, the old directory is first renamed to a ``.old`` sibling; a crash between the two
  renames leaves that sibling, and the next command puts it back (``recover``).
- Temporary siblings are named ``.NAME.PID.RANDOM.tmp`` / ``.old``, so a later command can tell
  the leftovers of a dead process from those of one still running, and clean them.
- Outputs honour the umask, like any Unix tool; a replaced file keeps its permissions.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RENAME_EXCHANGE = 2  # linux/fs.h


def _fault(step: str) -> None:
    """Fault-injection point between the steps of a replacement (the tests stop here)."""


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_special(path: str | Path) -> bool:
    """A target that is written through rather than replaced: anything that exists and is
    neither a regular file nor a directory (FIFO, character device, socket), symlinks followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _leftovers(path: Path) -> Iterator[tuple[Path, str]]:
    """Temporary siblings of ``path`` left by processes that are no longer running."""
    prefix = f".{path.name}."
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith((".tmp", ".old")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            yield entry, name.rsplit(".", 1)[1]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(path: str | Path) -> None:
    """Undo what a crashed replacement of ``path`` left: put a ``.old`` directory back when
    nothing is at ``path``, and remove the other leftovers of dead processes."""
    path = Path(os.path.realpath(path))
    found = sorted(_leftovers(path), key=lambda e: e[1] != "old")
    for entry, kind in found:
        if kind == "old" and not os.path.lexists(path):
            os.rename(entry, path)  # the crash came between the two renames: restore the old
        else:
            _remove(entry)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _temporary(path: Path, *, directory: bool) -> Path:
    prefix = f".{path.name}.{os.getpid()}."
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~current_umask())
        return tmp
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its permissions
    except OSError:
        mode = 0o666 & ~current_umask()
    os.chmod(name, mode)
    return Path(name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield where to write ``path``: a temporary sibling of the file (a symlink's target) that
    replaces it on success and goes on error; or, for a special target, ``path`` itself."""
    if is_special(path):
        yield Path(path)
        return
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = _temporary(path, directory=False)
    try:
        yield tmp
        _fsync(tmp)
        _fault("file-written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)


def _libc_exchange():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    return function


_RENAMEAT2 = _libc_exchange()
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one atomic step (Linux renameat2); OSError where the system
    or the filesystem cannot."""
    if _RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the finished directory ``tmp`` at ``path``; the old one (if any) goes."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    try:
        exchange(tmp, path)  # now ``path`` is new and ``tmp`` holds the old
        _fault("exchanged")
        old = tmp
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
            raise
        old = Path(str(tmp)[: -len(".tmp")] + ".old")
        os.rename(path, old)
        try:
            _fault("old-moved")  # a crash here leaves ``path`` empty: recover() restores ``old``
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        _fault("new-moved")
    _remove(old)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it takes the place of ``path`` (whose old
    contents go), on error it goes. Checking that ``path`` may be replaced is the caller's."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = _temporary(path, directory=True)
    try:
        yield tmp
        mode = 0o666 & ~current_umask()
        for entry in tmp.iterdir():
            if entry.is_file():
                os.chmod(entry, mode)  # some writers (safetensors) create files 0600
            _fsync(entry, directory=entry.is_dir())
        _fsync(tmp, directory=True)
        _fault("dir-written")
        _swap_in(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent, directory=True)
