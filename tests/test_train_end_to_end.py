"""Train into a temp folder with a temp sqlite MLflow store, then check every output."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from training.core.config import load_config
from training.serving.predict import load
from training.cli.job import train_one
from training.cli.train import main

from conftest import ROOT, scored_by_hand, write_config


def test_export_folder_describes_itself(trained_default):
    result, folder = trained_default
    manifest = json.loads((result.model_dir / "model.json").read_text())
    assert manifest["family"] == "tfidf_logreg"
    assert manifest["labels"] == ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
    assert manifest["config"]["name"] == "tfidf"
    model = manifest["metrics"]["model"]
    per_class, macro_f1 = scored_by_hand(result)  # from the gold file and the run's misclassified sentences
    assert {label: figures["f1"] for label, figures in model["per_class"].items()} == pytest.approx(per_class)
    assert model["macro_f1"] == pytest.approx(macro_f1)
    assert sum(c["support"] for c in model["per_class"].values()) == 133  # every seed gold sentence scored
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    run = MlflowClient().get_run(manifest["mlflow_run_id"])  # the run it names is this config's training
    assert run.info.run_name == "tfidf" and run.data.tags["model_family"] == manifest["family"]
    assert run.data.params["model.params.C"] == str(manifest["params"]["C"])
    assert not [p for p in result.model_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_mlflow_run_has_params_metrics_artifacts_dataset_and_model(trained_default):
    result, folder = trained_default
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tfidf"
    assert run.data.tags["model_family"] == "tfidf_logreg" and run.data.tags["config_name"] == "tfidf"
    assert "git_commit" in run.data.tags
    assert run.data.params["model.params.C"] == "4.0"
    for key in ("model.macro_f1", "model.f1.drill", "model.precision.boilerplate", "rules_majority.macro_f1",
                "rules_label_model.macro_f1", "model.macro_f1_fold_std"):
        assert key in run.data.metrics
    per_class, macro_f1 = scored_by_hand(result)
    assert run.data.metrics["model.macro_f1"] == pytest.approx(macro_f1, abs=5e-5)  # rounded for people to read
    assert run.data.metrics["model.f1.drill"] == pytest.approx(per_class["drill"], abs=5e-5)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"plots", "tables", "config.yaml", "metrics.json"} <= artifacts
    tables = {a.path for a in client.list_artifacts(result.run_id, "tables")}
    assert {"tables/rule_report.csv", "tables/misclassified_gold.csv"} <= tables
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/confusion_model.png" in plots
    inputs = [i.dataset for i in run.inputs.dataset_inputs]
    assert [d.name for d in inputs] == ["tfidf:seeds"]
    assert json.loads(inputs[0].source) == {"uri": str(ROOT / "seeds")} and inputs[0].source_type == "local"
    versions = client.search_model_versions("name='test-tfidf'")
    assert [v.run_id for v in versions] == [result.run_id]
    # readable: few metrics, no list-index params, a description, a tagged and described version
    assert len(run.data.metrics) <= 42 and not any(k.startswith("rule.") for k in run.data.metrics)
    assert not any(part.isdigit() for key in run.data.params for part in key.split("."))
    assert json.loads(run.data.params["sources"])[0]["name"] == "seeds"
    assert "macro-F1" in run.data.tags["mlflow.note.content"]
    version = versions[0]
    model = result.metrics["model"]
    interval = f"{model['macro_f1_ci_low']:.3f}–{model['macro_f1_ci_high']:.3f}"
    assert model["macro_f1_ci_low"] <= result.macro_f1 <= model["macro_f1_ci_high"]
    assert version.tags == {"config": "tfidf", "family": "tfidf_logreg", "macro_f1": f"{macro_f1:.4f}",
                            "macro_f1_interval": interval, "fingerprint": result.fingerprint}
    assert run.data.tags["eval.fingerprint"] == result.fingerprint and len(result.fingerprint) == 12
    assert "config tfidf (tfidf_logreg)" in version.description and interval in version.description
    assert "no champion before" in version.description
    assert client.get_model_version_by_alias("test-tfidf", "champion").version == versions[0].version


def test_save_load_predict_round_trip(trained_default):
    result, folder = trained_default
    clf = load(result.model_dir)
    texts = ["Shoigu held a telephone conversation with Austin.", "Your support makes a difference.",
             "Russia has massed troops near the border."]
    labels = clf.predict(texts)
    probas = clf.predict_proba(texts)
    assert labels == ["diplomatic_contact", "boilerplate", "deployment"]  # worded as on the seed pages
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/{result.config.name}")
    frame = pyfunc.predict(pd.DataFrame({"text": texts}))
    assert list(frame["label"]) == labels
    expected = np.array([[p[name] for name in clf.labels] for p in probas])
    assert np.allclose(frame[[f"p_{name}" for name in clf.labels]].to_numpy(), expected)
    by_alias = load("models:/test-tfidf@champion")
    assert by_alias.predict(texts) == labels


@pytest.mark.slow
def test_same_config_same_metrics(trained_default, tmp_path):
    result, _ = trained_default
    again = train_one(load_config(write_config(tmp_path, "tfidf")), promote=False)
    assert again.metrics == result.metrics


def _runs(folder: Path):
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = MlflowClient().get_experiment_by_name("tests")
    return [] if experiment is None else MlflowClient().search_runs([experiment.experiment_id])


def test_failed_run_is_marked_failed_and_writes_no_model(tmp_path, capsys):
    bad_gold = tmp_path / "gold.jsonl"
    lines = (ROOT / "data/gold/seeds.jsonl").read_text().splitlines()
    record = json.loads(lines[5])
    record["sha"] = "0" * 16
    bad_gold.write_text("\n".join(lines[:5] + [json.dumps(record)] + lines[6:]) + "\n")
    path = write_config(tmp_path, "broken", gold=[{"path": str(bad_gold)}])
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gold.jsonl: line 6" in err[0] and "no longer matches" in err[0]
    assert not (tmp_path / "models" / "broken").exists()
    assert all(r.info.status != "RUNNING" for r in _runs(tmp_path))


@pytest.mark.slow
def test_error_inside_a_run_leaves_it_failed_and_keeps_previous_model(tmp_path, monkeypatch):
    path = write_config(tmp_path, "keep")
    first = train_one(load_config(path))
    before = (first.model_dir / "model.json").read_text()

    import training.cli.job as job_module

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(job_module.track, "log_model", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        train_one(load_config(path))
    statuses = sorted(r.info.status for r in _runs(tmp_path))
    assert statuses == ["FAILED", "FINISHED"]
    assert (first.model_dir / "model.json").read_text() == before
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["keep"]


@pytest.mark.parametrize("setup, message", [
    ("empty_seeds", "source 'seeds': {tmp}/empty: no .txt pages in the folder"),
    ("missing_seeds", "source 'seeds': {tmp}/absent: not found"),
    ("latin1", "not UTF-8"),
    ("unknown_key", "key 'evaluation.fold': unknown key"),
    ("bad_regex", "invalid regular expression"),
    ("unknown_rule_label", "next_to_label 'weather' is not a declared label"),
])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, capsys, setup, message):
    import shutil

    import yaml

    sources = [{"name": "seeds", "path": str(ROOT / "seeds")}]
    extra = {}
    if setup == "empty_seeds":
        (tmp_path / "empty").mkdir()
        sources = [{"name": "seeds", "path": str(tmp_path / "empty")}]
    elif setup == "missing_seeds":
        sources = [{"name": "seeds", "path": str(tmp_path / "absent")}]
    elif setup == "latin1":
        folder = tmp_path / "seeds"
        shutil.copytree(ROOT / "seeds", folder)
        (folder / "zz.txt").write_bytes("Caf\xe9".encode("latin-1"))
        sources = [{"name": "seeds", "path": str(folder)}]
    elif setup == "unknown_key":
        extra = {"evaluation": {"fold": 3}}
    elif setup in ("bad_regex", "unknown_rule_label"):
        rules = yaml.safe_load((ROOT / "configs/rules/default.yaml").read_text())
        if setup == "bad_regex":
            rules["labels"]["drill"]["rules"][0]["pattern"] = "[unclosed"
        else:
            rules["labels"]["drill"]["rules"].append({"name": "rain", "max_words": 3, "next_to_label": "weather"})
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
        extra = {"labelling": {"rules": str(tmp_path / "rules.yaml")}}
    path = write_config(tmp_path, "bad", sources=sources, **extra)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(tmp=tmp_path) in err[0], err
    assert not (tmp_path / "models").exists()
    assert all(r.info.status != "RUNNING" for r in _runs(tmp_path))
