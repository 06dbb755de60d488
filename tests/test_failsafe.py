"""Fail safe: a new store's races, full disks and read-only targets, and targets checked before any work.

As root, chmod cannot make a folder read-only, so most tests simulate the operating system's refusal
where it would come (the write raises ENOSPC or EROFS, ``os.access`` says no). Where this process may
mount filesystems, the ``read_only_mount`` and ``full_mount`` tests repeat the cases on real ones.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from training.core.errors import InputError

from conftest import ROOT, write_config

def _one_line_error(capsys, main, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _refuse(monkeypatch, *paths: Path) -> None:
    """The OS says these paths cannot be written (a read-only mount, for root too)."""
    real = os.access
    refused = {Path(p) for p in paths}
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if (mode & os.W_OK and Path(path) in refused)
                        else real(path, mode, **kw))


def _mount(folder: Path, options: str) -> None:
    """A tmpfs with ``options`` at ``folder``; the test is skipped where mounting is not allowed."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "none", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")


@pytest.fixture
def read_only_mount(tmp_path):
    """A real read-only filesystem (root cannot write it either); skipped where mounting is not allowed."""
    folder = tmp_path / "ro"
    _mount(folder, "size=1m,ro")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_mount(tmp_path):
    """A real filesystem with no space left; skipped where mounting is not allowed."""
    folder = tmp_path / "full"
    _mount(folder, "size=256k")
    try:
        with open(folder / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


# ------------------------------------------------------------------ case 6: two first runs, one new store


@pytest.mark.parametrize("lock", ["store lock", "no lock (another machine)"])
def test_two_runs_logging_the_same_dataset_at_once_both_succeed(tmp_path, monkeypatch, lock):
    """Both runs look for the dataset before either inserts it: the interleaving that broke the datasets table.

    A hook on the store's SQL holds a run's INSERT of the dataset until the other run has looked for it
    too, or waits for the store lock the first one holds. Without the lock (runs on other machines) the
    second INSERT meets the UNIQUE constraint, and logging it again must link the run to the row it found.
    """
    import datasets
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from training.core.config import load_config
    from training.tracking import track

    config = load_config(write_config(tmp_path, "race"))
    uri = track.configure(config)
    labels = ["diplomatic_contact", "other"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=labels),
                                  "source": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict({"text": ["Shoigu met Austin.", "The weather was mild."], "label": [0, 1],
                                          "source": ["seeds", "seeds"]}, features=features)
    seen = threading.Condition()
    looked, waiting = set(), set()

    def sql(statement: str) -> str:
        return " ".join(statement.split()).upper()

    def looked_up(conn, cursor, statement, parameters, context, executemany):  # after the SELECT ran: not there
        if sql(statement).startswith("SELECT") and "FROM DATASETS WHERE DATASETS.EXPERIMENT_ID" in sql(statement):
            with seen:
                looked.add(threading.get_ident())
                seen.notify_all()

    def hold_inserts(conn, cursor, statement, parameters, context, executemany):
        if sql(statement).startswith("INSERT INTO DATASETS"):
            me = threading.get_ident()
            with seen:
                assert seen.wait_for(lambda: (looked | waiting) - {me}, timeout=120), "the other run never came"

    real_lock = track.store_lock

    class Announced:
        def __init__(self, inner):
            self.inner = inner

        def __enter__(self):
            with seen:
                waiting.add(threading.get_ident())
                seen.notify_all()
            return self.inner.__enter__()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    if lock == "store lock":
        monkeypatch.setattr(track, "store_lock", lambda u: Announced(real_lock(u)))
    else:
        from contextlib import nullcontext

        monkeypatch.setattr(track, "store_lock", lambda u: nullcontext())
    run_ids, errors = [], []

    def one_run():
        try:
            with mlflow.start_run() as run:
                run_ids.append(run.info.run_id)
                track.log_datasets(dataset, config)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    event.listen(Engine, "after_cursor_execute", looked_up)
    event.listen(Engine, "before_cursor_execute", hold_inserts)
    try:
        threads = [threading.Thread(target=one_run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        event.remove(Engine, "before_cursor_execute", hold_inserts)
        event.remove(Engine, "after_cursor_execute", looked_up)
    assert errors == [], errors
    client = MlflowClient(tracking_uri=uri)
    for run_id in run_ids:
        assert client.get_run(run_id).info.status == "FINISHED"
        assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["race:seeds"]


# ------------------------------------------------------------------ case 7: full disk, read-only targets


def test_a_full_disk_while_writing_the_model_is_one_line_naming_its_folder(tmp_path):
    from training.tracking import export

    class FullDisk:
        def save(self, folder):
            (Path(folder) / "pipeline.joblib").write_bytes(b"half a pickle")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    staging = export.stage(tmp_path / "models" / "m")
    with pytest.raises(InputError, match=rf"output_dir {tmp_path / 'models'}: cannot write the model "
                                         r"\(No space left on device"):
        export.write(staging, FullDisk(), "tfidf_logreg", ["a"], {"model": {"params": {}}, "seed": 1}, {})
    export.discard(staging)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_a_model_folder_that_refuses_the_staging_folder_is_one_line(tmp_path, monkeypatch, code):
    from training.core import system
    from training.tracking import export

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "models" / ".m-staging-1"))

    monkeypatch.setattr(system.tempfile, "mkdtemp", refuse)
    with pytest.raises(InputError, match=rf"output_dir {tmp_path / 'models'}: not writable "
                                         rf"\({os.strerror(code).lower()}\)"):
        export.stage(tmp_path / "models" / "m")


@pytest.mark.slow
def test_a_full_disk_at_export_fails_the_run_and_keeps_the_previous_model(trained_default, tmp_path, monkeypatch,
                                                                          capsys):
    """The whole job: the one line, exit 2, the run FAILED, the previous model untouched, no staging left."""
    from training.cli.train import main
    from training.models.families import family_module

    result, folder = trained_default
    path = write_config(tmp_path, "tfidf")  # the same config, so the out-of-fold store copied below is used
    shutil.copytree(folder / "out_of_fold", tmp_path / "out_of_fold")
    previous = tmp_path / "models" / "tfidf"
    shutil.copytree(result.model_dir, previous)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}

    def full_disk(self, target):
        (Path(target) / "pipeline.joblib").write_bytes(b"half a pickle")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(family_module("tfidf_logreg").Model, "save", full_disk)
    line = _one_line_error(capsys, main, ["--config", str(path)])
    assert line.startswith(f"error: output_dir {tmp_path / 'models'}: cannot write the model "
                           "(No space left on device)"), line
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tfidf"]
    experiment = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("tests")
    runs = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_an_artifact_store_that_refuses_a_write_is_one_line(tmp_path, monkeypatch):
    from training.core.config import load_config
    from training.tracking import track

    config = load_config(write_config(tmp_path, "artifacts"))
    track.configure(config)
    (tmp_path / "note.txt").write_text("x")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/somewhere/artifacts/note.txt")

    monkeypatch.setattr(mlflow, "log_artifact", read_only)
    with pytest.raises(InputError, match=r"MLflow artifact store .*: cannot write \(Read-only file system at "
                                         r"/somewhere/artifacts/note.txt\)"):
        with track.start_run(config):
            track.log_file(tmp_path / "note.txt")
    assert MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])[0].info.status \
        == "FAILED"


def test_any_other_refused_write_in_a_run_is_one_line_and_fails_the_run(tmp_path):
    """Writes this project does not wrap (the out-of-fold store, temp files): still one line, run FAILED."""
    from training.core.config import load_config
    from training.tracking import track

    config = load_config(write_config(tmp_path, "other"))
    track.configure(config)
    with pytest.raises(InputError, match=r"cannot write \(No space left on device\)"):
        with track.start_run(config):
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])[0].info.status \
        == "FAILED"


def test_a_new_store_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    """Creating the store's tables meets a full disk: sqlite's own words, not SQLAlchemy's 90-line traceback."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from training.core.config import load_config
    from training.tracking import track

    def full(name):
        raise OperationalError("CREATE TABLE experiments (...)", {},
                               sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(mlflow, "set_experiment", full)
    with pytest.raises(InputError, match=r"MLflow store sqlite:///.*mlflow.db: cannot create or open it "
                                         r"\(database or disk is full\)$"):
        track.configure(load_config(write_config(tmp_path, "full")))


def test_a_new_store_on_a_real_full_disk_is_one_line(tmp_path, full_mount):
    from training.core.config import load_config
    from training.tracking import track

    config = load_config(write_config(tmp_path, "full", tracking={"tracking_uri": f"sqlite:///{full_mount / 'm.db'}"}))
    with pytest.raises(InputError, match=r"MLflow store .*: cannot create or open it \(database or disk is full\)"):
        track.configure(config)


@pytest.fixture
def scored(trained_default, tmp_path):
    """Ten seed-like pages in a .jsonl and their scores, written once without fault."""
    import json

    from training.serving.score import score

    result, _ = trained_default
    pages = tmp_path / "pages.jsonl"
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.txt"))]
    pages.write_text("".join(json.dumps({"text": texts[i % len(texts)], "id": f"p{i}"}) + "\n" for i in range(10)))
    return pages, result.model_dir, score


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_the_scorer_on_a_full_or_read_only_disk_is_one_line_and_loses_nothing(scored, tmp_path, monkeypatch,
                                                                               capsys, suffix, code):
    from training.cli.score import main
    import training.serving.score as score_module

    pages, model, score = scored
    out = tmp_path / f"scored{suffix}"
    score(pages, str(model), out, id_column="id", chunk_size=3, progress=False, log=lambda line: None)
    first = out.read_bytes()
    out.write_bytes(b"the previous output")
    calls = {"n": 0}
    import pyarrow.parquet as pq

    real_write = pq.write_table if suffix == ".parquet" else score_module.atomic_write

    def fails_second(*args, **kwargs):  # the second chunk's part file: the first is finished and kept
        name = Path(args[1] if suffix == ".parquet" else args[0]).name
        if "part-" in name and ".done." not in name:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(code, os.strerror(code))
        return real_write(*args, **kwargs)

    if suffix == ".parquet":
        monkeypatch.setattr(pq, "write_table", fails_second)
    else:
        monkeypatch.setattr(score_module, "atomic_write", fails_second)
    argv = [str(pages), "--model", str(model), "--out", str(out), "--id-column", "id", "--chunk-size", "3",
            "--no-progress"]
    line = _one_line_error(capsys, main, argv)
    assert line.startswith(f"error: {out}: cannot write ({os.strerror(code)}"), line
    assert "run the same command again" in line
    assert out.read_bytes() == b"the previous output"  # not replaced by half an output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.assembling")]
    staging = score_module.staging_folder(out)
    assert not [p for p in staging.iterdir() if p.name.endswith(".tmp")]  # no half-written part either
    monkeypatch.undo()
    again = score(pages, str(model), out, id_column="id", chunk_size=3, progress=False, log=lambda line: None)
    assert again.resumed_chunks == 1 and out.read_bytes() == first


def test_the_scorer_into_a_real_read_only_folder(scored, read_only_mount, capsys):
    from training.cli.score import main

    pages, model, _ = scored
    out = read_only_mount / "scored.parquet"
    line = _one_line_error(capsys, main, [str(pages), "--model", str(model), "--out", str(out), "--no-progress"])
    assert "Read-only file system" in line and str(read_only_mount) in line, line


def test_the_scorer_onto_a_real_full_disk(scored, full_mount, capsys):
    from training.cli.score import main

    pages, model, _ = scored
    out = full_mount / "scored.parquet"
    line = _one_line_error(capsys, main, [str(pages), "--model", str(model), "--out", str(out), "--no-progress"])
    assert line.startswith(f"error: {out}: cannot write (No space left on device"), line
    assert not out.exists()


# ------------------------------------------------------------------ case 8: targets checked before any work


@pytest.fixture
def no_labelling(monkeypatch):
    """Labelling raises if reached: whatever is reported came before it."""
    import training.cli.job as job

    def reached(config):
        raise AssertionError("labelling started before the targets were checked")

    monkeypatch.setattr(job, "build", reached)


@pytest.mark.parametrize("case", ["output_dir is a file", "model folder is a file", "folds above the plan's",
                                  "output_dir read-only", "out-of-fold store read-only", "MLflow store read-only",
                                  "MLflow artifacts read-only"])
def test_bad_targets_are_reported_before_labelling(tmp_path, capsys, monkeypatch, no_labelling, case):
    from training.cli.train import main

    sections, expected = {}, ""
    if case == "output_dir is a file":
        (tmp_path / "taken").write_text("not a folder")
        sections, expected = {"output_dir": str(tmp_path / "taken")}, f"output_dir {tmp_path / 'taken'}: exists but"
    elif case == "model folder is a file":
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "target").write_text("not a model")
        expected = f"output_dir {tmp_path / 'models' / 'target'}: exists but is not a folder"
    elif case == "folds above the plan's":
        sections = {"evaluation": {"folds": 7, "plan": str(ROOT / "data/gold/folds.json")}}
        expected = "the plan has 5 folds but key 'evaluation.folds' is 7"
    elif case == "output_dir read-only":
        _refuse(monkeypatch, tmp_path)  # models/ does not exist yet: its nearest folder decides
        expected = f"output_dir {tmp_path / 'models'}: not writable"
    elif case == "out-of-fold store read-only":
        (tmp_path / "out_of_fold").mkdir()
        _refuse(monkeypatch, tmp_path / "out_of_fold")
        expected = f"evaluation.store {tmp_path / 'out_of_fold'}: not writable"
    elif case == "MLflow store read-only":
        MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the store exists
        _refuse(monkeypatch, tmp_path / "mlflow.db")
        expected = f"MLflow store {tmp_path / 'mlflow.db'}: not writable"
    else:
        MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment(
            "tests", artifact_location=str(tmp_path / "artifacts"))
        (tmp_path / "artifacts").mkdir()
        _refuse(monkeypatch, tmp_path / "artifacts")
        expected = f"MLflow artifact store {tmp_path / 'artifacts'}: not writable"
    path = write_config(tmp_path, "target", **sections)
    assert expected in _one_line_error(capsys, main, ["--config", str(path)])


@pytest.mark.parametrize("target", ["output_dir", "MLflow store"])
def test_a_real_read_only_target_is_reported_before_labelling(tmp_path, capsys, no_labelling, read_only_mount,
                                                              target):
    from training.cli.train import main

    if target == "output_dir":
        path = write_config(tmp_path, "ro", output_dir=str(read_only_mount / "models"))
        expected = f"output_dir {read_only_mount / 'models'}: not writable (read-only file system"
    else:
        path = write_config(tmp_path, "ro", tracking={"tracking_uri": f"sqlite:///{read_only_mount / 'mlflow.db'}",
                                                      "experiment": "tests", "registered_model": None})
        expected = f"MLflow store {read_only_mount / 'mlflow.db'}: not writable (read-only file system"
    assert expected in _one_line_error(capsys, main, ["--config", str(path)])


@pytest.fixture
def no_tracking_uri(tmp_path, monkeypatch):
    """A fresh process's MLflow: no tracking URI set anywhere, the working folder empty."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri mirrors itself into the environment
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    yield tmp_path
    mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("uri", ["models:/sentence-classifier@champion", "models:/sentence-classifier/1"])
def test_a_registry_lookup_without_a_store_creates_none(no_tracking_uri, uri):
    from training.serving.predict import ModelNotFoundError, load

    store = re.escape(str(no_tracking_uri / "mlflow.db"))
    with pytest.raises(ModelNotFoundError,
                       match=rf"no MLflow store at {store} for {re.escape(uri)}.*MLFLOW_TRACKING_URI"):
        load(uri)
    assert list(no_tracking_uri.iterdir()) == []


def test_the_scorer_with_an_alias_and_no_store_creates_none(no_tracking_uri, capsys):
    from training.cli.score import main

    (no_tracking_uri / "pages").mkdir()
    (no_tracking_uri / "pages" / "a.txt").write_text("Shoigu met Austin.")
    line = _one_line_error(capsys, main, ["pages", "--model", "models:/m@champion", "--out", "out.parquet"])
    assert line.startswith("error: --model models:/m@champion: no MLflow store at"), line
    assert sorted(p.name for p in no_tracking_uri.iterdir()) == ["pages"]
