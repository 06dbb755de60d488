"""One evaluation plan for every config: the champion compares like with like, the baseline and the
out-of-fold store are the evaluation's own."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.base import BaseEstimator, ClassifierMixin

from training.core.config import load_config
from training.core.errors import InputError
from training.evaluation.cv import out_of_fold, store_path
from training.labelling.stage import build
from training.cli.job import train_one

from conftest import ROOT, write_config

WIRE_PAGES = [  # a second source of pages without gold: trains one config, not the other
    "Troops were deployed to the border on Monday.\nThe ministers met in Geneva for talks.\n"
    "Subscribe to our newsletter.\nNaval drills began in the strait.",
    "The president spoke by phone with his counterpart.\nTanks moved towards the frontier.\n"
    "The air force held joint exercises.\nShare this article.",
]


def _two_source_configs(tmp_path):
    wire = tmp_path / "wire.jsonl"
    wire.write_text("".join(json.dumps({"id": f"wire{k}", "text": t}) + "\n" for k, t in enumerate(WIRE_PAGES)))
    sources = [{"name": "seeds", "path": str(ROOT / "seeds")},
               {"name": "wire", "kind": "jsonl", "path": str(wire), "id_column": "id"}]
    reviewed = {"use_reviewed": True, "reviewed": [str(ROOT / "data/gold/seeds.jsonl")]}
    seeds_only = write_config(tmp_path, "seeds-only", sources=sources, train_sources=["seeds"], labelling=reviewed)
    weak = write_config(tmp_path, "with-wire", sources=sources)  # rule labels only: far worse on the seeds' gold
    return seeds_only, weak


@pytest.mark.slow
def test_configs_on_different_sources_share_a_fingerprint_and_a_worse_one_never_takes_champion(tmp_path):
    seeds_only, weak = _two_source_configs(tmp_path)
    shared = ["tracking.registered_model=shared"]  # both register under one name
    first = train_one(load_config(seeds_only, shared))
    second = train_one(load_config(weak, shared))
    assert second.config.train_sources is None and first.config.train_sources == ["seeds"]
    assert first.fingerprint == second.fingerprint  # same gold, same folds
    assert second.macro_f1 < first.macro_f1
    client = MlflowClient()
    versions = {v.tags["config"]: v for v in client.search_model_versions("name='shared'")}
    champion = client.get_model_version_by_alias("shared", "champion")
    assert champion.version == versions["seeds-only"].version
    worse = versions["with-wire"]
    assert "Champion stays on version" in worse.description and f"on plan {first.fingerprint}" in worse.description
    assert versions["seeds-only"].tags["macro_f1_interval"] in worse.description  # both scores and intervals
    contexts = {i.dataset.name: {t.value for t in i.tags if t.key == "mlflow.data.context"}
                for i in client.get_run(first.run_id).inputs.dataset_inputs}
    assert contexts == {"seeds-only:seeds": {"training"}, "seeds-only:wire": {"evaluation"}}  # read, not trained on


@pytest.mark.slow
def test_a_run_on_another_plan_never_moves_the_champion(tmp_path):
    config = write_config(tmp_path, "plans")
    first = train_one(load_config(config))
    other = train_one(load_config(config, ["evaluation.folds=4", "model.params.C=64"]))  # other folds
    assert other.fingerprint != first.fingerprint
    assert str(MlflowClient().get_model_version_by_alias("test-plans", "champion").version) == first.registered_version
    assert "the scores do not compare" in other.champion


@pytest.mark.slow
def test_the_baseline_trains_on_gold_labels_alone_unless_the_model_already_does(trained_default, tmp_path):
    result, folder = trained_default  # trained on rule labels: the baseline is a second cross-validation
    assert "gold-labelled training sentences alone" in result.baseline_note
    assert result.metrics["baseline"]["macro_f1"] != result.metrics["model"]["macro_f1"]
    gold_files = [str(ROOT / "data/gold/seeds.jsonl")]
    reviewed = train_one(load_config(write_config(tmp_path, "reviewed", labelling={"use_reviewed": True,
                                                                                   "reviewed": gold_files})))
    assert reviewed.baseline_note.startswith("every training sentence already carries its gold label")
    assert reviewed.metrics["baseline"] == reviewed.metrics["model"]
    # a model trained on the gold labels under the same plan is what the first run's baseline was
    assert reviewed.fingerprint == result.fingerprint
    assert reviewed.metrics["model"]["per_class"] == result.metrics["baseline"]["per_class"]
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    logged = MlflowClient().get_run(result.run_id).data.metrics["baseline.macro_f1"]
    assert logged == pytest.approx(reviewed.macro_f1, abs=5e-5)  # as logged: rounded to 4 places


def test_the_review_queue_reads_the_out_of_fold_store_the_run_wrote(trained_default):
    result, _ = trained_default
    config = result.config
    labelled = build(config)

    class NoModel(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            raise AssertionError("the store was not used: a second cross-validation started")

    no_model = NoModel()

    stored = out_of_fold(config, labelled, no_model)
    assert store_path(config).exists()
    predictions = stored.gold_predictions(labelled.labels)
    assert np.mean(np.array(predictions) == np.array(labelled.gold_labels)) == pytest.approx(
        result.metrics["model"]["accuracy"])
    other = config.model_copy(update={"model": config.model.model_copy(update={"params": {**config.model.params,
                                                                                        "C": 64.0}})})
    with pytest.raises(AssertionError, match="the store was not used"):  # another model: the store is not reused
        out_of_fold(other, build(other), no_model)


def test_unknown_train_source_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="key 'train_sources': no source named 'wire'"):
        load_config(write_config(tmp_path, "bad", train_sources=["wire"]))


def test_a_tie_at_the_shown_precision_keeps_the_holder(tmp_path):
    from training.tracking import track

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    client.create_registered_model("tie")
    versions = [client.create_model_version("tie", source=str(tmp_path)).version for _ in range(3)]
    first = {"macro_f1": 0.85320, "macro_f1_ci_low": 0.84, "macro_f1_ci_high": 0.87}
    assert track.promote_if_better("tie", versions[0], first, "plan")[0]
    client.set_model_version_tag("tie", versions[0], "macro_f1", "0.8532")  # as tag_version writes it
    client.set_model_version_tag("tie", versions[0], "fingerprint", "plan")
    moved, why = track.promote_if_better("tie", versions[1], {**first, "macro_f1": 0.853204}, "plan")
    assert not moved and "not below" in why
    assert track.promote_if_better("tie", versions[2], {**first, "macro_f1": 0.8533}, "plan")[0]


def test_the_plan_command_freezes_every_gold_page_and_configs_use_it(tmp_path):
    from training.evaluation.cv import fold_assignment
    from training.cli.plan import main
    from training.evaluation.plan import load_plan

    config = write_config(tmp_path, "planned")
    out = tmp_path / "folds.json"
    assert main(["--config", str(config), "--out", str(out), "evaluation.folds=3"]) == 0
    plan = load_plan(out, 3)
    labelled = build(load_config(config))
    assert set(plan.frozen) == {s.article_id for s in labelled.sentences} and set(plan.frozen.values()) == {0, 1, 2}
    planned = load_config(config, [f"evaluation.plan={out}"])
    fold_of, fingerprint, source = fold_assignment(planned, labelled)
    assert [fold_of[row] for row in range(len(labelled.sentences))] == \
        [plan.frozen[s.article_id] for s in labelled.sentences]
    assert source == str(out) and fingerprint == fold_assignment(load_config(config), labelled)[1]  # same method, seed
    assert main(["--config", str(config)]) == 2  # no plan file named anywhere: one clear error
