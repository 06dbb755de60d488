"""How every command ends: bad input as one line and exit 2, Ctrl-C and SIGTERM as one line and 130 / 143.

Each ``main`` parses its arguments and hands the work to :func:`guarded`. An :class:`InputError`
(or a failure the command names in ``failures``) prints ``error: <message>`` on stderr and returns
2; Ctrl-C or SIGTERM (raised as :class:`Terminated` once :func:`end_on_sigterm` is installed) prints
what was stopped and what was kept, and returns 130 or 143 like a shell would. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Mapping

from training.core.console import Terminated, end_on_sigterm, stop_if_terminated
from training.core.errors import InputError

INPUT_ERROR = 2
KEPT = "files are replaced whole or not at all, so none was left half-written"


def error(message: str) -> int:
    """Print ``error: <message>`` as one line on stderr; the exit code for bad input."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return INPUT_ERROR


def guarded(work: Callable[[], int | None], *,
            stopped: Callable[[KeyboardInterrupt], str] | None = None,
            failures: Mapping[type[Exception], Callable[[Exception], str]] | None = None) -> int:
    """Run ``work`` (it returns the exit code, None for 0) under the shared handling; returns the exit code.

    ``stopped(exc)`` says what an interruption left behind (default: :data:`KEPT`); ``failures`` maps
    other exception types the command expects (e.g. MLflow's) to the one-line message for them.
    """
    failures = dict(failures or {})
    end_on_sigterm()
    try:
        code = work()
        stop_if_terminated()  # a SIGTERM swallowed inside third-party code still ends the command as one
        return code or 0
    except InputError as exc:
        return error(str(exc))
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{what}: {stopped(exc) if stopped else KEPT}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:
        for kind, describe in failures.items():
            if isinstance(exc, kind):
                return error(describe(exc))
        raise


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
