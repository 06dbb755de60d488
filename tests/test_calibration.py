"""Probabilities a user can threshold: the calibration error, temperature scaling and where it is applied.

Fast: synthetic probability arrays, tiny TF-IDF models exported here, and the session's tiny trained run
(``trained_default``) for what a training run logs and exports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import SAMPLE_TEXTS
from training.core.config import load_config
from training.core.errors import InputError
from training.core.metrics import classification_metrics
from training.evaluation.calibration import (calibrate, classwise_ece, cross_fitted, expected_calibration_error,
                                             fit_temperature, temper)
from training.serving.predict import load
from training.serving.pyfunc import SentenceClassifierModel
from training.tracking import export
from training.tracking.export import DamagedModelError

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TRAIN_LABELS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]
PAGE = "Shoigu held a telephone conversation with Austin.\nTanks moved to the border. Your support matters."


def _synthetic(rows: int = 20_000, labels: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction of the labels, not of the figure."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(rows, labels))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (rng.random(rows)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)  # one draw per row
    return proba, np.minimum(truth, labels - 1)


def test_ece_counted_by_hand_on_four_predictions_in_two_bins():
    proba = np.array([[0.40, 0.35, 0.25],   # confidence 0.40, label 0: right
                      [0.45, 0.30, 0.25],   # 0.45, predicts 0, truth 1: wrong
                      [0.10, 0.80, 0.10],   # 0.80, right
                      [0.90, 0.05, 0.05]])  # 0.90, predicts 0, truth 2: wrong
    truth = [0, 1, 1, 2]
    # bin (0, 0.5]: confidence 0.425, accuracy 1/2; bin (0.5, 1]: confidence 0.85, accuracy 1/2; 2 rows each
    assert expected_calibration_error(proba, truth, bins=2) == pytest.approx(0.5 * 0.075 + 0.5 * 0.35)
    # label 0 one-vs-rest: p = .40 .45 .10 in the low bin (mean 0.95/3, one of three is label 0), .90 high (none)
    assert classwise_ece(proba, truth, ["a", "b", "c"], bins=2)["a"] == pytest.approx(
        0.75 * abs(0.95 / 3 - 1 / 3) + 0.25 * 0.9)
    # one bin: mean confidence - accuracy
    assert expected_calibration_error(proba, truth, bins=1) == pytest.approx(2.55 / 4 - 0.5)


def test_calibrated_probabilities_have_ece_near_zero_and_over_confident_ones_do_not():
    proba, truth = _synthetic()
    assert expected_calibration_error(proba, truth) < 0.02
    over = temper(proba, 0.5)  # the same ranking, sharpened
    assert expected_calibration_error(over, truth) > 0.1
    assert max(classwise_ece(over, truth, LABELS).values()) > 0.04 > max(classwise_ece(proba, truth, LABELS).values())


def test_temperature_fitted_on_over_confident_data_is_above_one_and_lowers_ece_out_of_fold():
    proba, truth = _synthetic()
    over, under = temper(proba, 0.5), temper(proba, 2.0)
    fitted = fit_temperature(over, truth)
    assert fitted > 1.5 and fit_temperature(under, truth) < 0.75  # over-confident: soften; timid: sharpen
    assert fit_temperature(proba, truth) == pytest.approx(1.0, abs=0.1)
    folds = np.arange(len(truth)) % 5
    tempered, per_fold = cross_fitted(over, truth, folds)
    assert sorted(per_fold) == [0, 1, 2, 3, 4] and all(t > 1.5 for t in per_fold.values())
    assert expected_calibration_error(tempered, truth) < 0.02 < expected_calibration_error(over, truth)
    result = calibrate(over, truth, folds, LABELS)
    assert result.temperature == pytest.approx(fitted)
    assert result.ece_calibrated == pytest.approx(expected_calibration_error(tempered, truth))
    assert [curve.name for curve in result.curves] == ["out of fold", "temperature, cross-fitted"]
    assert sum(result.curves[0].counts) == len(truth)


def test_calibrate_leaves_out_unpredicted_rows_and_none_fits_nothing():
    proba, truth = _synthetic(rows=200)
    proba[:10] = np.nan  # a fold that was not run
    none = calibrate(proba, truth, np.arange(200) % 4, LABELS, method="none")
    assert none.rows == 190 and none.temperature == 1.0 and np.isnan(none.ece_calibrated)
    assert none.ece == pytest.approx(expected_calibration_error(proba[10:], truth[10:]))
    assert len(none.curves) == 1
    nothing = calibrate(np.full((4, 5), np.nan), [0, 1, 2, 3], [0, 0, 1, 1], LABELS)  # no fold run at all
    assert nothing.rows == 0 and nothing.temperature == 1.0 and np.isnan(nothing.ece)


def test_temper_keeps_each_rows_order_and_zeros():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.full(5, 0.3), size=2000)
    proba[:50, 2] = 0.0  # a label the model never gives
    proba[50:60] = [0.3, 0.3, 0.2, 0.1, 0.1]  # a tie stays a tie
    proba /= proba.sum(axis=1, keepdims=True)
    for t in (0.2, 0.7, 1.0, 1.6, 9.0):
        tempered = temper(proba, t)
        assert np.array_equal(np.argsort(tempered, axis=1, kind="stable"), np.argsort(proba, axis=1, kind="stable"))
        assert np.allclose(tempered.sum(axis=1), 1.0) and (tempered[:50, 2] == 0).all()
        powered = proba ** (1 / t)  # softmax(log p / T) written the other way round
        assert np.allclose(tempered, powered / powered.sum(axis=1, keepdims=True))


def _export(folder: Path, temperature: float | None) -> Path:
    from training.models.families import new_model

    model = new_model("tfidf_logreg", {}, LABELS, 0).fit(SAMPLE_TEXTS, TRAIN_LABELS)
    config = {"model": {"params": {}}, "seed": 0}
    folder.mkdir()
    if temperature is None:  # as a folder written before calibration: no key at all
        export.write(folder, model, "tfidf_logreg", LABELS, config, {})
        manifest = json.loads((folder / "model.json").read_text())
        del manifest["temperature"]
        (folder / "model.json").write_text(json.dumps(manifest))
        return folder
    return export.write(folder, model, "tfidf_logreg", LABELS, config, {}, temperature=temperature)


def test_an_exported_temperature_tempers_every_served_probability_and_keeps_the_labels(tmp_path):
    plain, hot = _export(tmp_path / "plain", 1.0), _export(tmp_path / "hot", 2.5)
    old = _export(tmp_path / "old", None)
    assert json.loads((hot / "model.json").read_text())["temperature"] == 2.5
    texts = SAMPLE_TEXTS + ["Russia rolled its tanks across Belarus for drills.", "Read more"]
    raw, tempered = load(plain).proba_matrix(texts), load(hot).proba_matrix(texts)
    assert np.allclose(load(old).proba_matrix(texts), raw)  # no key: loaded unchanged (T = 1)
    expected = raw ** (1 / 2.5) / (raw ** (1 / 2.5)).sum(axis=1, keepdims=True)
    assert np.allclose(tempered, expected) and not np.allclose(tempered, raw)
    assert load(hot).predict(texts) == load(plain).predict(texts)
    page_hot, page_plain = load(hot).classify_article(PAGE), load(plain).classify_article(PAGE)
    assert [s["label"] for s in page_hot] == [s["label"] for s in page_plain]
    assert [s["probability"] for s in page_hot] == pytest.approx(
        [max(row) for row in load(hot).proba_matrix(pd.DataFrame(
            {"text": [s["text"] for s in page_hot], "article_id": "p", "index": range(len(page_hot))}))])
    wrapper = SentenceClassifierModel()  # the MLflow pyfunc (REST, Spark, the scorer's rows) reads the same
    wrapper.load_context(type("Context", (), {"artifacts": {"model": str(hot)}, "model_config": None})())
    answer = wrapper.predict(None, pd.DataFrame({"text": texts}))
    assert np.allclose(answer[[f"p_{label}" for label in LABELS]].to_numpy(dtype=float), tempered)


@pytest.mark.parametrize("value", [0, -1.5, "hot", None, float("inf"), True])
def test_a_temperature_that_is_no_positive_number_is_a_damaged_manifest(tmp_path, value):
    folder = _export(tmp_path / "model", 2.0)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["temperature"] = value
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(DamagedModelError, match="'temperature' is .*not a positive number"):
        load(folder)


def test_calibration_is_a_config_key_with_a_one_line_error(tmp_path):
    from conftest import write_config

    path = write_config(tmp_path)
    assert load_config(path).evaluation.calibration == "temperature"
    assert load_config(path, ["evaluation.calibration=none"]).evaluation.calibration == "none"
    with pytest.raises(InputError, match="override 'evaluation.calibration=platt': key 'evaluation.calibration'"):
        load_config(path, ["evaluation.calibration=platt"])


def test_a_run_logs_its_calibration_and_exports_its_temperature(trained_default):
    """The session's tiny run: ECE metrics and the reliability PNG on the run, T in model.json; recomputed here
    from the run's out-of-fold store and the gold, tempering with the fold-wise T leaves macro-F1 as logged."""
    from training.evaluation.cv import load_store, store_key, fold_assignment, store_path
    from training.labelling.stage import build

    result, folder = trained_default
    mlflow.set_tracking_uri(result.config.tracking.tracking_uri)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert {"cv_ece", "cv_ece_calibrated"} <= set(run.data.metrics)
    png = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="plots/reliability.png",
                                                   dst_path=str(folder / "downloaded")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "calibration error" in run.data.tags["mlflow.note.content"]

    labelled = build(result.config)
    fold_of, _, _ = fold_assignment(result.config, labelled)
    cv = load_store(store_path(result.config), store_key(result.config, labelled, fold_of))
    assert cv is not None
    truth = [labelled.labels.index(label) for label in labelled.gold_labels]
    proba, folds = cv.gold_probabilities, cv.fold_of[cv.gold_index]
    assert run.data.metrics["cv_ece"] == pytest.approx(expected_calibration_error(proba, truth), abs=5e-5)
    tempered, _ = cross_fitted(proba, truth, folds)
    assert run.data.metrics["cv_ece_calibrated"] == pytest.approx(expected_calibration_error(tempered, truth),
                                                                  abs=5e-5)
    predicted = [labelled.labels[k] for k in tempered.argmax(axis=1)]
    assert classification_metrics(labelled.gold_labels, predicted, labelled.labels)["macro_f1"] == \
        pytest.approx(result.macro_f1, abs=1e-12)

    manifest = json.loads((result.model_dir / "model.json").read_text())
    assert manifest["temperature"] == pytest.approx(fit_temperature(proba, truth))
    assert manifest["temperature"] != pytest.approx(1.0)
    assert manifest["metrics"]["calibration"]["temperature"] == manifest["temperature"]
    copy = Path(shutil.copytree(result.model_dir, folder / "untempered"))
    untempered = {**manifest, "temperature": 1.0}
    (copy / "model.json").write_text(json.dumps(untempered))
    texts = [labelled.sentences[row].text for row in labelled.gold_index[:40]]
    assert load(result.model_dir).predict(texts) == load(copy).predict(texts)
    assert np.allclose(load(result.model_dir).proba_matrix(texts),
                       temper(load(copy).proba_matrix(texts), manifest["temperature"]))
