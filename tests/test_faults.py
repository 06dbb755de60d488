"""Fault injection: signals mid-run, a kill between the export renames, permissions, long input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from training.tracking import export
from training.serving.predict import load

from conftest import ROOT, write_config


def _start(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(process: subprocess.Popen, marker: str, timeout: float = 180) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"'{marker}' never appeared:\n{''.join(lines)}")


def _runs(folder: Path):
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = MlflowClient().get_experiment_by_name("tests")
    return [] if experiment is None else MlflowClient().search_runs([experiment.experiment_id])


def _slow_config(folder: Path, name: str) -> Path:
    """A config whose cross-validation takes a few seconds (MiniLM on the seeds), so a signal lands mid-CV."""
    return write_config(folder, name, model={"family": "minilm_head", "params": {"max_length": 32}},
                        evaluation={"folds": 5, "find_label_issues": False})


def test_sigterm_mid_cv_ends_the_run_removes_staging_and_the_next_run_works(tmp_path):
    config = _slow_config(tmp_path, "term")
    process = _start(config)
    _wait_for(process, "fold 2/")
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143
    assert "terminated (SIGTERM)" in output and "was not replaced" in output and "Traceback" not in output
    assert [r.info.status for r in _runs(tmp_path)] == ["FAILED"]
    models = tmp_path / "models"
    assert not models.exists() or not any(models.iterdir())  # no staging folder, no model
    again = _start(config)
    assert again.wait(timeout=300) == 0
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FAILED", "FINISHED"]
    assert load(models / "term").predict(["Troops arrived."])


def test_sigkill_leftovers_are_cleaned_at_the_next_start(tmp_path):
    config = _slow_config(tmp_path, "kill")
    process = _start(config)
    _wait_for(process, "fold 2/")
    process.kill()
    process.wait(timeout=60)
    staged = list((tmp_path / "models").glob(".kill-staging-*"))
    assert len(staged) == 1  # SIGKILL cannot be caught: the folder stays ...
    assert [r.info.status for r in _runs(tmp_path)] == ["RUNNING"]  # ... and so does the run ...
    again = _start(config)  # ... until the next run starts
    assert again.wait(timeout=300) == 0
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


def test_two_first_runs_on_a_new_store_at_once_both_succeed(tmp_path):
    configs = [write_config(tmp_path, name) for name in ("first", "second")]  # same new sqlite store
    processes = [_start(config) for config in configs]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sorted(r.info.status for r in _runs(tmp_path)) == ["FINISHED", "FINISHED"]
    third = _start(configs[0])  # and the store still works afterwards
    assert third.wait(timeout=300) == 0


def test_champion_compare_and_set_is_serialised(tmp_path, monkeypatch):
    """Two runs promoting at the same moment: the worse one must not take the alias."""
    import threading

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
    read = track.champion_standing

    def slow_read(name):  # widen the gap between reading the champion and setting the alias
        result = read(name)
        time.sleep(0.5)
        return result

    monkeypatch.setattr(track, "champion_standing", slow_read)
    threads = [threading.Thread(target=track.promote_if_better, args=("race-model", versions[n], {"macro_f1": s},
                                                                      "plan-a"))
               for n, s in (("better", 0.9), ("worse", 0.5))]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert client.get_model_version_by_alias("race-model", track.CHAMPION).version == versions["better"]


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


def test_folds_are_clamped_with_a_warning_and_the_number_run_is_reported(tmp_path, caplog):
    from training.core.config import load_config
    from training.cli.job import summary, train_one

    result = train_one(load_config(write_config(tmp_path, "folds", evaluation={"folds": 50,
                                                                             "find_label_issues": False})))
    assert "evaluation.folds=50 but gold is on only 5 pages: running 5 folds" in caplog.text
    assert result.metrics["model"]["folds"] == 5 and "grouped 5-fold CV" in summary(result)


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
