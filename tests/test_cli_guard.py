"""Every command ends the same way: bad input one line and exit 2, Ctrl-C 130, SIGTERM 143, bugs keep their traceback."""

from __future__ import annotations

import importlib
import os
import signal

import pytest

from training.cli.guard import guarded
from training.core.console import Terminated
from training.core.errors import InputError


@pytest.fixture
def sigterm_restored(monkeypatch):
    """guarded() installs the SIGTERM handler a command needs, and a SIGTERM is remembered for good: the test
    process gets its own handler back and forgets the signal."""
    from training.core import console

    monkeypatch.setattr(console, "_terminated", False)
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_and_2(capsys, sigterm_restored):
    def work():
        raise InputError("configs/x.yaml: key 'seed':\n  must be a number")

    assert guarded(work) == 2
    assert _one_line(capsys) == "error: configs/x.yaml: key 'seed': must be a number"


def test_a_real_sigterm_and_ctrl_c_end_with_what_was_kept(capsys, sigterm_restored):
    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread: raises Terminated here
        raise AssertionError("SIGTERM did not stop the work")

    assert guarded(terminated, stopped=lambda exc: f"kept the parts ({type(exc).__name__})") == 143
    assert _one_line(capsys) == "terminated (SIGTERM): kept the parts (Terminated)"

    def interrupted():
        raise KeyboardInterrupt

    assert guarded(interrupted) == 130
    assert _one_line(capsys).startswith("interrupted: ")


def test_named_failures_are_one_line_and_others_keep_their_traceback(capsys, sigterm_restored):
    class StoreGone(RuntimeError):
        pass

    def store_gone():
        raise StoreGone("HTTP 503\nmore detail")

    assert guarded(store_gone, failures={StoreGone: lambda exc: f"tracking: {str(exc).splitlines()[0]}"}) == 2
    assert _one_line(capsys) == "error: tracking: HTTP 503"
    with pytest.raises(ZeroDivisionError):
        guarded(lambda: 1 / 0, failures={StoreGone: str})


def test_a_swallowed_sigterm_still_ends_the_command(capsys, sigterm_restored):
    def swallowing():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Terminated:  # third-party code with a broad except
            pass

    assert guarded(swallowing) == 143
    assert _one_line(capsys).startswith("terminated (SIGTERM): ")


@pytest.mark.parametrize("command, argv", [
    ("train", ["--config", "{missing}"]), ("label", ["--config", "{missing}"]), ("plan", ["--config", "{missing}"]),
    ("review", ["--config", "{missing}"]), ("score", ["{missing}", "--model", "m", "--out", "{tmp}/o.jsonl"]),
])
def test_every_command_reports_bad_input_through_the_guard(command, argv, tmp_path, capsys, sigterm_restored):
    main = importlib.import_module(f"training.cli.{command}").main
    missing = tmp_path / "missing.yaml"
    assert main([part.format(missing=missing, tmp=tmp_path) for part in argv]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: ") and str(missing) in line
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM now ends the command like Ctrl-C
