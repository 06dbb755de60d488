"""Fail safe: a new store's races, full disks and read-only targets, and targets checked before any work.

As root, chmod cannot make a folder read-only, so most tests simulate the operating system's refusal
where it would come (the write raises ENOSPC or EROFS, ``os.access`` says no). Where this process may
mount filesystems, the ``read_only_mount`` and ``full_mount`` tests repeat the cases on real ones.
"""

from __future__ import annotations

import threading

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import write_config


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
