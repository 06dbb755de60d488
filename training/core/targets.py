"""Where a run writes: folders checked before the work starts, and a write the system refuses told in one line.

A full disk or a read-only mount is not bad input, but it is the user's to fix and no traceback
helps with it: it becomes an :class:`InputError` naming the place, which the CLIs print as one
``error:`` line with exit code 2.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
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

