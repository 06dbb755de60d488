"""Sweeps against a real ``mlflow server``, the champion alias, and an unreachable server."""

import os
import signal
import socket
import sys
import urllib.request

import mlflow
import pytest
from mlflow import MlflowClient

from training.core.config import load_config
from training.cli.job import train_one
from training.cli.train import main

from conftest import ROOT, Watched, write_config

SERVER_READY = "Uvicorn running on"  # the line the server prints once it listens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVERS: dict[str, Watched] = {}  # uri → server process, for tests that stop it mid-run


@pytest.fixture()
def mlflow_server(tmp_path, spawn):
    """A real tracking server on a free loopback port, ready once it says it listens; stopped at teardown."""
    port = free_port()
    server = spawn([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                    "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                    "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"])
    server.wait_for(f"{SERVER_READY} http://127.0.0.1:{port}")
    uri = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(uri + "/health") as response:
        assert response.status == 200, server.output
    SERVERS[uri] = server
    yield uri
    SERVERS.pop(uri)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sweep_against_a_real_server(mlflow_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    common = {"tracking": {"tracking_uri": None, "experiment": "server-sweep", "registered_model": "sweep-model"}}
    first = write_config(tmp_path, "wide", **common)
    second = write_config(tmp_path, "narrow", model={"family": "tfidf_logreg", "params": {"ngram_max": 1, "C": 0.5}},
                          **common)
    assert main(["--config", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "macro_f1" in out and "parent run:" in out

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("server-sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert set(children[0].data.metrics) == set(children[1].data.metrics)
    assert set(children[0].data.params) == set(children[1].data.params)
    assert {r.info.run_name for r in children} == {"wide", "narrow"}
    best = max(children, key=lambda r: r.data.metrics["model.macro_f1"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert "comparison.txt" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    versions = client.search_model_versions("name='sweep-model'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in children)
    champion = client.get_model_version_by_alias("sweep-model", "champion")
    assert champion.run_id == best.info.run_id

    from training.serving.predict import load

    clf = load("models:/sweep-model@champion")
    assert clf.manifest["mlflow_run_id"] == best.info.run_id  # the alias's model, not just any model


@pytest.mark.slow
def test_a_worse_model_does_not_take_the_alias(tmp_path):
    good = train_one(load_config(write_config(tmp_path, "good", tracking={"registered_model": "shared"})))
    bad = train_one(load_config(write_config(
        tmp_path, "bad", tracking={"registered_model": "shared"},
        model={"family": "tfidf_logreg", "params": {"C": 0.0001, "class_weight": None}})))
    assert bad.macro_f1 < good.macro_f1
    assert "champion stays on version 1" in bad.champion
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert MlflowClient().get_model_version_by_alias("shared", "champion").run_id == good.run_id
    skipped = train_one(load_config(write_config(tmp_path, "good", tracking={"registered_model": "shared"})),
                        promote=False)
    assert "turned off" in skipped.champion


@pytest.mark.timeout(60)
def test_unreachable_server_fails_fast_and_writes_no_model(tmp_path, capsys, monkeypatch):
    """One probe of the server, before any call of MLflow's client (which retries for minutes)."""
    import mlflow as mlflow_module

    def retrying_client(*args, **kwargs):
        raise AssertionError("MLflow's client was called: the unreachable server was not caught first")

    monkeypatch.setattr(mlflow_module, "set_experiment", retrying_client)
    monkeypatch.setattr(mlflow_module, "start_run", retrying_client)
    uri = f"http://127.0.0.1:{free_port()}"
    path = write_config(tmp_path, "offline", tracking={"tracking_uri": uri})
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreachable" in err[0] and uri in err[0]
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_server_lost_mid_run_is_one_line_after_brief_retries(mlflow_server, tmp_path, spawn):
    path = write_config(tmp_path, "lost", model={"family": "minilm_head", "params": {"max_length": 32}},
                        evaluation={"folds": 5, "find_label_issues": False},
                        tracking={"tracking_uri": mlflow_server, "experiment": "tests", "registered_model": "lost"})
    run = spawn([sys.executable, "-m", "training.train", "--config", str(path)], cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    run.wait_for("fold 2/")
    os.killpg(SERVERS[mlflow_server].process.pid, signal.SIGKILL)  # the server dies mid-run
    assert run.finish() == 2, run.output
    output = run.output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MLflow tracking" in errors[0] and "Traceback" not in output
    assert not (tmp_path / "models" / "lost").exists()
