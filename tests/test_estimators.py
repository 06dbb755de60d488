"""Families are scikit-learn estimators: parameters, clone, the checks that apply to text-in classifiers,
cross-validation through cross_val_predict over the plan's folds, sweeps through ParameterGrid."""

from __future__ import annotations

import random

import grimp
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks

from training.evaluation import cv as cv_module
from training.evaluation.cv import cross_validate
from training.models.families import FAMILIES, family_module, new_model

from conftest import SAMPLE_TEXTS

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TINY = {  # small, non-default settings: a clone must carry them
    "tfidf_logreg": {"ngram_max": 1, "C": 2.0},
    "minilm_head": {"max_length": 32, "C": 2.0},
    "minilm_hybrid": {"max_length": 32, "min_df": 1, "mlp_bag": 2},
    "minilm_finetune": {"epochs": 1, "max_length": 32, "batch_size": 8},
}
TRAIN = SAMPLE_TEXTS * 2
TRAIN_LABELS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"] * 2


def test_every_family_is_covered_here():
    assert set(TINY) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_config_keys_labels_and_seed_are_the_parameters(family):
    estimator = new_model(family, TINY[family], LABELS, 11)
    params = estimator.get_params()
    assert set(family_module(family).Params.model_fields) | {"labels", "random_state"} <= set(params)
    assert params["labels"] == LABELS and params["random_state"] == 11
    for key, value in TINY[family].items():
        assert params[key] == value
    default = family_module(family).Model()  # defaults come from the family's Params
    assert default.get_params()["labels"] is None
    assert {k: default.get_params()[k] for k in family_module(family).Params.model_fields} == \
        family_module(family).Params().model_dump()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_clone_keeps_every_parameter_and_no_fitted_state(family):
    estimator = new_model(family, TINY[family], LABELS, 5)
    copy = clone(estimator)
    assert type(copy) is type(estimator) and copy is not estimator
    assert copy.get_params() == estimator.get_params()
    assert not hasattr(copy, "classes_")


def test_set_params_round_trip_changes_what_fit_builds():
    estimator = new_model("tfidf_logreg", {}, LABELS, 0)
    assert estimator.set_params(ngram_max=1, C=0.5) is estimator
    assert estimator.get_params()["ngram_max"] == 1 and estimator.get_params()["C"] == 0.5
    estimator.fit(TRAIN, TRAIN_LABELS)
    vocabulary = estimator.pipeline_.named_steps["tfidf"].vocabulary_
    assert vocabulary and not [term for term in vocabulary if " " in term]  # unigrams only
    assert estimator.pipeline_.named_steps["clf"].C == 0.5
    estimator.set_params(ngram_max=2).fit(TRAIN, TRAIN_LABELS)
    assert [term for term in estimator.pipeline_.named_steps["tfidf"].vocabulary_ if " " in term]
    with pytest.raises(ValueError, match="Invalid parameter"):
        estimator.set_params(ngram=3)
    with pytest.raises(ValueError, match="C"):  # Params still validates: at fit, as scikit-learn does
        estimator.set_params(C=-1.0).fit(TRAIN, TRAIN_LABELS)


def test_classes_follow_labels_with_zero_columns_for_absent_ones():
    labels = ["other", "drill", "boilerplate"]  # not sorted; "boilerplate" never seen in fit
    texts = ["Troops held a drill near the border.", "Wheat prices rose.", "Sailors drilled at sea.", "Rain fell."]
    estimator = new_model("tfidf_logreg", {}, labels, 0).fit(texts, ["drill", "other", "drill", "other"])
    assert estimator.classes_.tolist() == labels
    proba = estimator.predict_proba(["A drill began at dawn.", "Prices fell."])
    assert proba.shape == (2, 3) and np.all(proba[:, 2] == 0)
    assert estimator.predict(["A drill began at dawn."]).tolist() == ["drill"]
    unlabelled = new_model("tfidf_logreg", {}, None, 0).fit(texts, ["drill", "other", "drill", "other"])
    assert unlabelled.classes_.tolist() == ["drill", "other"]
    with pytest.raises(ValueError, match="not among labels"):
        new_model("tfidf_logreg", {}, labels, 0).fit(texts, ["drill", "other", "drill", "deployment"])


def _disturb_global_random_state():
    random.random()
    np.random.random(7)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].rand(3)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_clone_fitted_on_the_same_data_gives_identical_probabilities(family):
    from training.models import encoder

    original = new_model(family, TINY[family], LABELS, 3)
    copy = clone(original)
    expected = original.fit(TRAIN, TRAIN_LABELS).predict_proba(SAMPLE_TEXTS)
    _disturb_global_random_state()  # a fit must not depend on what ran before it
    encoder.clear_cache()
    assert np.array_equal(copy.fit(TRAIN, TRAIN_LABELS).predict_proba(SAMPLE_TEXTS), expected)
    assert expected.shape == (len(SAMPLE_TEXTS), len(LABELS))


# The scikit-learn checks that apply to estimators reading sentences. The others feed numeric arrays
# (make_blobs, sparse matrices, NaN/inf, 1-D or complex data, sample weights) to fit: these families
# read text records, so those checks would test input they are not meant to take.
STRUCTURAL_CHECKS = [
    estimator_checks.check_estimator_cloneable,  # clone works, unfitted
    estimator_checks.check_parameters_default_constructible,  # every parameter has a default of a plain type
    estimator_checks.check_no_attributes_set_in_init,  # __init__ stores the parameters and nothing else
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,  # validation waits for fit
    estimator_checks.check_get_params_invariance,  # get_params(deep=False) ⊆ get_params()
    estimator_checks.check_set_params,  # set_params(get_params()) is a round trip, odd values kept as given
    estimator_checks.check_estimator_repr,
    estimator_checks.check_mixin_order,  # ClassifierMixin before BaseEstimator
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimators_unfitted,  # predict/predict_proba before fit: NotFittedError
]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("check", STRUCTURAL_CHECKS, ids=lambda check: check.__name__)
def test_scikit_learn_checks(family, check):
    estimator = family_module(family).Model(**TINY[family], labels=LABELS, random_state=0)
    check(type(estimator).__name__, estimator)


def test_model_code_never_imports_mlflow():
    graph = grimp.build_graph("training", include_external_packages=True, cache_dir=None)
    importers = graph.find_modules_that_directly_import("mlflow")
    assert not [name for name in importers if name.startswith("training.models")]
    assert importers  # the graph does see mlflow where tracking uses it


def _pages(n_pages: int, per_page: int = 4) -> pd.DataFrame:
    words = {"drill": "Troops drilled with tanks", "other": "Prices of wheat rose", "deployment": "Brigade sent north"}
    rows = []
    for page in range(n_pages):
        for index in range(per_page):
            label = list(words)[(page + index) % 3]
            rows.append({"text": f"{words[label]} {page} {index}.", "article_id": f"p{page}", "index": index,
                         "label": label})
    return pd.DataFrame(rows)


def test_cross_validation_runs_scikit_learns_cross_val_predict_over_the_plans_folds(monkeypatch):
    frame = _pages(8)
    records, train_labels = frame[["text", "article_id", "index"]], frame["label"].tolist()
    fold_of = np.array([int(a[1:]) % 4 for a in frame["article_id"]])  # fold 3: pages p3 and p7
    trainable = np.array([a != "p5" for a in frame["article_id"]])  # p5 is predicted, never trained on
    gold_index = np.flatnonzero(fold_of != 3)  # fold 3 has no gold: not run
    gold_labels = [train_labels[i] for i in gold_index]
    labels = ["other", "drill", "boilerplate", "deployment"]  # not sorted, and one label never trained on
    seen = []

    def spy(estimator, X, y, *, cv, method):
        seen.append([(list(train), list(test)) for train, test in cv])
        return real(estimator, X, y, cv=cv, method=method)

    real = cv_module.cross_val_predict
    monkeypatch.setattr(cv_module, "cross_val_predict", spy)
    estimator = new_model("tfidf_logreg", {}, labels, 0)
    result = cross_validate(records, train_labels, fold_of, trainable, gold_index, gold_labels, labels, estimator)

    assert len(seen) == 1
    for k, (train, test) in enumerate(seen[0]):  # one split per fold; the test sides partition the rows
        assert test == list(np.flatnonzero(fold_of == k))
        expected_train = np.flatnonzero(trainable & (fold_of != k)) if k != 3 else []
        assert train == list(expected_train)
    assert np.isnan(result.probabilities[fold_of == 3]).all()
    assert len(result.fold_macro_f1) == 3
    for k in range(3):  # each fold's rows: what a fresh model fitted on that fold's training rows says
        train = np.flatnonzero(trainable & (fold_of != k))
        alone = clone(estimator).fit(records.iloc[train].reset_index(drop=True), [train_labels[i] for i in train])
        held_out = fold_of == k
        assert np.array_equal(result.probabilities[held_out], alone.predict_proba(records[held_out]))
    assert np.all(result.probabilities[fold_of != 3][:, labels.index("boilerplate")] == 0)


def test_a_fold_with_fewer_than_two_labels_stays_unpredicted():
    frame = _pages(6)
    records = frame[["text", "article_id", "index"]]
    fold_of = np.array([int(a[1:]) % 3 for a in frame["article_id"]])
    train_labels = np.where(fold_of == 1, "other", "drill")  # fold 1 alone says "other"
    # folds 0 and 2 train on fold 1 and another: two labels; fold 1 trains on folds 0 and 2: "drill" only
    everything = np.arange(len(frame))
    result = cross_validate(records, list(train_labels), fold_of, np.ones(len(frame), dtype=bool), everything,
                            list(train_labels), ["drill", "other"], new_model("tfidf_logreg", {}, None, 0))
    assert np.isnan(result.probabilities[fold_of == 1]).all()
    assert not np.isnan(result.probabilities[fold_of != 1]).any()
    assert len(result.fold_macro_f1) == 2


def test_sweep_grid_combinations_come_in_file_order(tmp_path):
    from training.cli.sweep import expand
    from training.core.errors import InputError

    from conftest import write_config

    base = write_config(tmp_path, "tfidf")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"sweep: grid\ngrid:\n  - config: {base}\n"
                     "    params: {model.params.min_df: [1, 2], model.params.C: [4.0, 0.5]}\n")
    configs = expand([sweep], [])
    assert [c.name for c in configs] == ["tfidf-min_df1-C4p0", "tfidf-min_df1-C0p5", "tfidf-min_df2-C4p0",
                                         "tfidf-min_df2-C0p5"]
    assert [(c.model.params["min_df"], c.model.params["C"]) for c in configs] == [(1, 4.0), (1, 0.5), (2, 4.0),
                                                                                  (2, 0.5)]
    sweep.write_text(f"sweep: grid\ngrid:\n  - config: {base}\n    params: {{model.params.C: []}}\n")
    with pytest.raises(InputError, match=r"grid\.0\.params\.model\.params\.C': an empty list"):
        expand([sweep], [])
