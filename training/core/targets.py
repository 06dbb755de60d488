"""Where a run writes: folders checked before the work starts, and a write the system refuses told in one line.

A full disk or a read-only mount is not bad input, but it is the user's to fix and no traceback
helps with it: it becomes an :class:`InputError` naming the place, which the CLIs print as one
``error:`` line with exit code 2.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from training.core.errors import InputError

REFUSED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the system refusing a write (no space, quota, read-only, permission, file too big)."""
    return isinstance(exc, OSError) and exc.errno in REFUSED


def reason(exc: OSError) -> str:
    """'No space left on device': the system's words, without what a library wrapped around them."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


@contextmanager
def refused_writes(where: str, what: str = "cannot write", then: str = "") -> Iterator[None]:
    """A refused write inside the block becomes ``<where>: <what> (<reason> at <file>); <then>``."""
    try:
        yield
    except OSError as exc:
        if not refused(exc):
            raise
        at = f" at {exc.filename}" if exc.filename and str(exc.filename) != where else ""
        raise InputError(f"{where}: {what} ({reason(exc)}{at})" + (f"; {then}" if then else "")) from None


def check_writable_folder(path: Path, key: str) -> None:
    """``path`` can take new files: it is a folder (or will be made one) and the system lets us write there."""
    problem = _problem(Path(path), Path(path))
    if problem:
        raise InputError(f"{key} {path}: {problem}")


def check_writable_file(path: Path, key: str) -> None:
    """A file this run creates or changes (a sqlite store): it and the folder beside it (its journal) take writes."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{key} {path}: is a folder, not a file")
    problem = _problem(path.parent, path)
    if not problem and path.exists() and not os.access(path, os.W_OK):
        problem = f"not writable ({_why_not(path)})"
    if problem:
        raise InputError(f"{key} {path}: {problem}")


def _problem(folder: Path, named: Path) -> str:
    """Why new files cannot go into ``folder`` ('' when they can), said of ``named``.

    Nothing is written to find out: parts still missing will be created, so the nearest existing one
    decides; ``os.access`` answers for this process (a read-only mount refuses root too).
    """
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return "exists but is not a folder" if existing == named else f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"not writable ({_why_not(existing)}" + ("" if existing == named else f" at {existing}") + ")"
    return ""


def _why_not(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"
