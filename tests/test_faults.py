"""Fault injection: signals mid-run, a kill between the export renames, permissions, long input.

Child processes are watched line by line (conftest's ``spawn``): a test waits for the line that
shows the moment it needs (``fold 2/``), never for a fixed time; pytest-timeout guards hangs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from training.tracking import export
from training.serving.predict import load

from conftest import ROOT, Watched, write_config


def _start(spawn, config: Path) -> Watched:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return spawn([sys.executable, "-m", "training.train", "--config", str(config)], cwd=ROOT, env=env)


def _runs(folder: Path):
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = MlflowClient().get_experiment_by_name("tests")
    return [] if experiment is None else MlflowClient().search_runs([experiment.experiment_id])


def _slow_config(folder: Path, name: str) -> Path:
    """A config whose cross-validation takes a few seconds (MiniLM on the seeds), so a signal lands mid-CV."""
    return write_config(folder, name, model={"family": "minilm_head", "params": {"max_length": 32}},
                        evaluation={"folds": 5, "find_label_issues": False})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_mid_cv_ends_the_run_removes_staging_and_the_next_run_works(tmp_path, spawn):
    config = _slow_config(tmp_path, "term")
    child = _start(spawn, config)
    child.wait_for("fold 2/")
    child.process.send_signal(signal.SIGTERM)
    assert child.finish() == 143
    output = child.output
    assert "terminated (SIGTERM)" in output and "was not replaced" in output and "Traceback" not in output
    assert [r.info.status for r in _runs(tmp_path)] == ["FAILED"]
    models = tmp_path / "models"
    assert not models.exists() or not any(models.iterdir())  # no staging folder, no model
    again = _start(spawn, config)
    assert again.finish() == 0, again.output
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FAILED", "FINISHED"]
    assert load(models / "term").predict(["Troops arrived."])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_leftovers_are_cleaned_at_the_next_start(tmp_path, spawn):
    config = _slow_config(tmp_path, "kill")
    child = _start(spawn, config)
    child.wait_for("fold 2/")
    child.process.kill()
    child.finish()
    staged = list((tmp_path / "models").glob(".kill-staging-*"))
    assert len(staged) == 1  # SIGKILL cannot be caught: the folder stays ...
    assert [r.info.status for r in _runs(tmp_path)] == ["RUNNING"]  # ... and so does the run ...
    again = _start(spawn, config)  # ... until the next run starts
    assert again.finish() == 0, again.output
    assert not staged[0].exists()
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FINISHED", "KILLED"]


def test_a_kill_between_the_export_renames_leaves_a_loadable_model(trained_default, tmp_path):
    result, _ = trained_default
    dest = tmp_path / "models" / "swap"
    dest.parent.mkdir()
    import shutil

    shutil.copytree(result.model_dir, dest)
    dest.rename(dest.with_name(".swap-old-123"))  # the first rename of commit() happened, the second did not
    assert not dest.exists()
    staging = export.stage(dest)  # the next run recovers the previous model first
    assert (dest / "model.json").is_file() and load(dest).predict(["Troops arrived."])
    export.discard(staging)


def test_model_folders_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        staging = export.stage(tmp_path / "models" / "perm")
    finally:
        os.umask(previous)
    assert staging.stat().st_mode & 0o777 == 0o755
    export.discard(staging)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_first_runs_on_a_new_store_at_once_both_succeed(tmp_path, spawn):
    configs = [write_config(tmp_path, name) for name in ("first", "second")]  # same new sqlite store
    children = [_start(spawn, config) for config in configs]
    assert [child.finish() for child in children] == [0, 0], [child.output for child in children]
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FINISHED", "FINISHED"]
    third = _start(spawn, configs[0])  # and the store still works afterwards
    assert third.finish() == 0, third.output


@pytest.mark.timeout(120)
def test_champion_compare_and_set_is_serialised(tmp_path, monkeypatch):
    """Two runs promoting at the same moment: the worse one must not take the alias.

    The better run reads the (empty) champion, then waits until the worse run has arrived: at the
    store lock, or (were there none) at its own read of the champion, which then holds its answer
    until the better run is done. Without the lock both would read "no champion" and the worse run,
    setting the alias last, would take it.
    """
    from training.tracking import track

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.create_experiment("race")
    client.create_registered_model("race-model")
    versions = {}
    for name, score in (("better", 0.9), ("worse", 0.5)):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, track.PRIMARY_METRIC, score)
        versions[name] = client.create_model_version("race-model", source=str(tmp_path), run_id=run.info.run_id).version
        client.set_model_version_tag("race-model", versions[name], "fingerprint", "plan-a")
    better_read, worse_arrived, better_done = threading.Event(), threading.Event(), threading.Event()
    read, lock = track.champion_standing, track.store_lock

    def watched_lock(uri):
        if threading.current_thread().name == "worse":
            worse_arrived.set()  # about to wait for the lock the better run holds
        return lock(uri)

    def held_read(name):
        result = read(name)
        if threading.current_thread().name == "better":
            better_read.set()
            worse_arrived.wait()
        else:  # with the lock, only after the better run is done; without it, straight away
            worse_arrived.set()
            better_done.wait()
        return result

    monkeypatch.setattr(track, "store_lock", watched_lock)
    monkeypatch.setattr(track, "champion_standing", held_read)
    outcome = {}

    def promote(name, score):
        try:
            outcome[name] = track.promote_if_better("race-model", versions[name], {"macro_f1": score}, "plan-a")
        finally:
            if name == "better":
                better_done.set()

    threads = [threading.Thread(target=promote, args=(n, s), name=n, daemon=True)
               for n, s in (("better", 0.9), ("worse", 0.5))]
    threads[0].start()
    better_read.wait()  # the better run holds the lock and has read "no champion"
    threads[1].start()
    for thread in threads:
        thread.join()
    assert outcome["better"][0] and not outcome["worse"][0]
    assert "not below" in outcome["worse"][1]  # the worse run compared against the better one
    assert client.get_model_version_by_alias("race-model", track.CHAMPION).version == versions["better"]


@pytest.mark.slow
def test_load_notices_a_retrained_folder_and_a_moved_alias(tmp_path):
    from training.core.config import load_config
    from training.cli.job import train_one

    path = write_config(tmp_path, "cached")
    first = train_one(load_config(path))
    before = load(first.model_dir)
    assert load(first.model_dir) is before  # cached while nothing changed
    by_alias = load("models:/test-cached@champion")
    second = train_one(load_config(path, ["model.params.C=64"]))  # retrained into the same folder
    after = load(second.model_dir)
    assert after is not before and after.manifest["params"]["C"] == 64
    client = MlflowClient()
    client.set_registered_model_alias("test-cached", "champion", second.registered_version)
    moved = load("models:/test-cached@champion")
    assert moved is not by_alias and moved.manifest["params"]["C"] == 64


@pytest.mark.slow
def test_folds_are_clamped_with_a_warning_and_the_number_run_is_reported(tmp_path, caplog):
    from training.core.config import load_config
    from training.cli.job import summary, train_one

    result = train_one(load_config(write_config(tmp_path, "folds", evaluation={"folds": 50,
                                                                             "find_label_issues": False})))
    assert "evaluation.folds=50 but gold is on only 5 pages: running 5 folds" in caplog.text
    assert result.metrics["model"]["folds"] == 5 and "grouped 5-fold CV" in summary(result)


@pytest.mark.slow
def test_ctrl_c_after_registration_says_what_was_written(tmp_path, monkeypatch, capsys):
    import training.cli.job as job_module
    import training.cli.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job_module.track, "promote_if_better", interrupted)
    path = write_config(tmp_path, "ctrlc")
    assert train_module.main(["--config", str(path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "was not replaced" in err and "registry version 1 of 'test-ctrlc' was created" in err
    assert not (tmp_path / "models" / "ctrlc").exists()
    assert [r.info.status for r in _runs(tmp_path)] == ["FAILED"]
