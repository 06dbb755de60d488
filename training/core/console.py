"""What every command-line entry point shares: quiet third-party output, and SIGTERM ended like Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import warnings


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, CI cancel, docker stop, systemd): unwound like Ctrl-C, so runs end and staging goes."""


_terminated = False


def _raise_terminated(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


def stop_if_terminated() -> None:
    """A checkpoint before each lasting step: the handler's exception can be swallowed when it lands inside
    third-party code (a ``__del__``, a library's broad ``except``), the flag cannot."""
    if _terminated:
        raise Terminated()


def end_on_sigterm() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread (call from the entry point)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def quiet_third_parties(level: int = logging.INFO) -> None:
    """Our progress lines at ``level``; MLflow, transformers and friends only when something is wrong."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no "Downloading artifacts" bars
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them after)

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("mlflow", "alembic", "urllib3", "datasets", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # the TF-IDF-only install
        pass
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=FutureWarning)
