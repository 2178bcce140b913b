"""Atomic writes: readers see either the old content or the complete new one, never a partial file.

Every file and folder cascade produces goes through here, so an interrupted run (Ctrl-C, kill) leaves at most
a `.tmp-*` entry, which the next write of the same name removes. Everything is created with the user's umask
(as `open` would), not the 0600/0700 of `mkstemp`/`mkdtemp`, so a web server can publish a report.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cascade.core.errors import CascadeError

TMP_MARK = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path) -> None:
    """Give a temp file or folder tree the modes the user's umask gives new files and folders."""
    mask = _umask()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temp file beside `path`; rename it onto `path` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publishable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; it becomes `path` only on success.

    For folders whose writers are already serialised (the artifact store holds a per-key lock); run folders,
    which several processes may write at once and which may hold a user's files, use `replace_dir`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent))
    try:
        yield tmp
        _publishable(tmp)
        if path.exists():
            _exchange_or_move(tmp, path)
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (flock on its descriptor): no lock file is left in a user's folder."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sweep_leftovers(path: Path) -> None:
    """Remove `.NAME.tmp-*` entries that killed writers of `path` left beside it (call under `_locked`)."""
    for leftover in path.parent.glob(f".{path.name}{TMP_MARK}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def replace_dir(path: str | Path, ours: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a temp folder to fill; it then replaces `path` in one step, if `path` is absent or `ours(path)`.

    Anything else at `path` (a user's folder or file) is never touched: CascadeError naming it. Writers of one
    parent folder are serialised by a lock on that folder, so concurrent runs that finish the same folder each
    leave a complete one and nothing else; leftovers of killed writers are swept first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        sweep_leftovers(path)
        refuse_unless_ours(path, ours)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent))
        try:
            yield tmp
            _publishable(tmp)
            if path.exists() or path.is_symlink():
                _exchange_or_move(tmp, path)
            else:
                os.rename(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the old folder


def refuse_unless_ours(path: Path, ours: Callable[[Path], bool]) -> None:
    if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_dir() or not ours(path)):
        what = "a file" if path.is_file() else "a folder cascade did not write"
        raise CascadeError(f"is {what}; refusing to replace it (choose another --out or name)", where=str(path))


_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _exchange_or_move(tmp: Path, path: Path) -> None:
    """Swap `tmp` and `path` atomically (Linux renameat2 RENAME_EXCHANGE): `path` is never missing, and a kill
    leaves the old folder in `tmp`, a leftover the next write sweeps. Elsewhere: move the old one aside first."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(path), _RENAME_EXCHANGE) == 0:
            return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}old-", dir=path.parent))
    os.replace(path, aside / "old")
    os.replace(tmp, path)
    os.replace(aside / "old", tmp)
    aside.rmdir()
