"""Honest evaluation: one plan of page-grouped folds for every config, metrics, intervals, plots.

Each page belongs to one fold (``training.plan``: the frozen plan file, else folds computed from
the gold). Fold k's model trains on the (rule or reviewed) labels of the trainable sentences of
every page outside fold k and predicts fold k's pages, so no page is ever on both sides. The
out-of-fold probabilities are kept as one store that the metrics, the suspect-label search and
the review queue share.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score
from sklearn.model_selection import cross_val_predict

from training.core.errors import InputError
from training.core.metrics import classification_metrics
from training.evaluation.calibration import Calibration, calibrate
from training.models.families.base import full_proba

if TYPE_CHECKING:
    from training.core.config import Config
    from training.labelling.stage import Labelled

log = logging.getLogger(__name__)


def flat_metrics(metrics: dict, prefix: str, detail: bool = True) -> dict[str, float]:
    """Metric dict → flat MLflow metric names, e.g. ``model.f1.drill``.

    ``detail=False`` keeps macro-F1 and per-class F1 only (for the combiners, so a run stays
    within ~40 metrics; their full figures are in ``metrics.json``).
    """
    out = {f"{prefix}.macro_f1": metrics["macro_f1"]}
    for name, values in metrics["per_class"].items():
        for key in ("precision", "recall", "f1") if detail else ("f1",):
            out[f"{prefix}.{key}.{name}"] = values[key]
    for key in ("macro_f1_fold_mean", "macro_f1_fold_std", "macro_f1_ci_low", "macro_f1_ci_high"):
        if detail and key in metrics and np.isfinite(metrics[key]):
            out[f"{prefix}.{key}"] = metrics[key]
    return out


@dataclass
class CrossValidation:
    """The store of out-of-fold predictions: every sentence predicted by a model that never saw its page.

    Metrics, the suspect-label search and the review queue all read this one store.
    """

    probabilities: np.ndarray  # (sentences, labels); NaN rows: pages of a fold that had no training data
    fold_of: np.ndarray  # fold per sentence
    gold_index: np.ndarray  # sentence rows of the gold labels, in gold order
    fold_macro_f1: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def gold_probabilities(self) -> np.ndarray:
        return self.probabilities[self.gold_index]

    def gold_predictions(self, labels: Sequence[str]) -> list[str]:
        return [labels[k] for k in np.nan_to_num(self.gold_probabilities, nan=0.0).argmax(axis=1)]


class _FoldFit(ClassifierMixin, BaseEstimator):
    """What ``cross_val_predict`` fits on one fold: a clone of ``estimator``, trained on the label names.

    ``cross_val_predict`` hands ``fit`` the labels encoded as positions in ``names`` (sorted) and reads the
    ``predict_proba`` columns in that order: the estimator is trained on the names themselves, as everywhere
    else, and its columns are put in that order. A fold given no training rows is a fold that is not run
    (no gold, or fewer than two labels to learn): its pages stay unpredicted (NaN). ``on_fit`` is called
    before each fit that runs (the progress line).
    """

    def __init__(self, estimator=None, names=(), on_fit=None) -> None:
        self.estimator, self.names, self.on_fit = estimator, names, on_fit

    def fit(self, X, y) -> "_FoldFit":
        self.classes_ = np.arange(len(self.names))
        self.estimator_ = None
        if len(y):
            if self.on_fit is not None:
                self.on_fit()
            self.estimator_ = clone(self.estimator).fit(X.reset_index(drop=True), [self.names[code] for code in y])
        return self

    def predict_proba(self, X) -> np.ndarray:
        if self.estimator_ is None:
            return np.full((len(X), len(self.names)), np.nan)
        proba = self.estimator_.predict_proba(X.reset_index(drop=True))
        known = list(self.estimator_.classes_)  # may hold labels no fold trains on: their columns are 0, left out
        out = np.zeros((len(proba), len(self.names)))
        for column, name in enumerate(self.names):
            if name in known:
                out[:, column] = proba[:, known.index(name)]
        return out

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def cross_validate(
    records, train_labels: Sequence[str], fold_of: np.ndarray, trainable: np.ndarray, gold_index: np.ndarray,
    gold_labels: Sequence[str], labels: Sequence[str], estimator: BaseEstimator,
    progress: Callable[[str], None] = lambda _: None,
) -> CrossValidation:
    """Out-of-fold probabilities for every sentence under a fixed fold assignment.

    ``records`` are all sentences (text, article_id, index) and ``fold_of`` their page's fold. Fold
    k's model (a clone of the unfitted ``estimator``) trains on the ``trainable`` sentences of pages
    outside fold k and predicts every sentence of fold k's pages (whole pages, so context-aware models
    see the neighbours); its macro-F1 is scored on fold k's gold sentences. Folds without gold are not
    run, nor folds with fewer than two labels to train on: their sentences stay NaN. The folds are
    scikit-learn's ``cross_val_predict`` over explicit (train, test) splits, one per fold of the plan.
    """
    started = time.perf_counter()
    articles = records["article_id"].to_numpy(dtype=object)
    train_labels = np.asarray(train_labels, dtype=object)
    gold_index = np.asarray(gold_index, dtype=int)
    gold_fold = fold_of[gold_index]
    scored = [int(k) for k in np.unique(gold_fold)]  # folds without gold score nothing: not run
    splits, run, lines = [], [], []
    for k in np.unique(fold_of):  # every sentence is in one fold: the test sides partition the rows
        held_out = np.flatnonzero(fold_of == k)
        train = np.flatnonzero(trainable & (fold_of != k))
        if k in scored:
            number = scored.index(k) + 1
            line = (f"fold {number}/{len(scored)}: train {len(train)} sentences, "
                    f"test {int((gold_fold == k).sum())} gold")
            if len(set(train_labels[train])) < 2:
                progress(line)
                log.warning("fold %d: fewer than two labels to train on; its pages stay unpredicted", number)
            else:
                assert not set(articles[train]) & set(articles[held_out]), "a page leaked across a fold"
                splits.append((train, held_out))
                run.append(int(k))
                lines.append(line)
                continue
        splits.append((train[:0], held_out))
    probabilities = np.full((len(records), len(labels)), np.nan)
    if run:
        trained = np.zeros(len(records), dtype=bool)
        for train, _ in splits:
            trained[train] = True
        names = sorted(set(train_labels[trained]))
        # cross_val_predict wants a label on every row; rows no fold trains on get one that is never read
        y = np.where(trained, train_labels, names[0])
        announce = iter(lines)
        fold = _FoldFit(estimator, names, on_fit=lambda: progress(next(announce)))
        predicted = cross_val_predict(fold, records, y, cv=splits, method="predict_proba")
        rows = np.concatenate([test for train, test in splits if len(train)])
        probabilities[rows] = full_proba(predicted[rows], names, labels)
    fold_scores = []
    for k in run:
        in_fold = np.flatnonzero(gold_fold == k)
        predicted_labels = [labels[i] for i in probabilities[gold_index[in_fold]].argmax(axis=1)]
        fold_scores.append(float(f1_score([gold_labels[i] for i in in_fold], predicted_labels, labels=list(labels),
                                          average="macro", zero_division=0)))
    return CrossValidation(probabilities, fold_of, gold_index, fold_scores, time.perf_counter() - started)


def macro_f1_interval(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str], labels: Sequence[str],
                      resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of macro-F1 from resampling whole pages (SciPy's ``bootstrap``).

    Each resample draws pages with replacement and scores the union of their sentences, so
    sentences of one page (which are not independent) move together.
    """
    from scipy.stats import bootstrap

    labels = list(labels)
    pages = sorted(set(groups))
    if len(pages) < 2 or resamples < 1:
        return float("nan"), float("nan")
    page_of = {page: k for k, page in enumerate(pages)}
    confusion = np.zeros((len(pages), len(labels), len(labels)))
    index = {label: k for k, label in enumerate(labels)}
    for truth, predicted, page in zip(y_true, y_pred, groups):
        confusion[page_of[page], index[truth], index[predicted]] += 1

    def macro_f1(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        summed = confusion[sample.astype(int)].sum(axis=-3)  # (..., labels, labels)
        tp = np.diagonal(summed, axis1=-2, axis2=-1)
        denominator = summed.sum(axis=-1) + summed.sum(axis=-2)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * tp / denominator, 0.0)
        return f1.mean(axis=-1)

    result = bootstrap((np.arange(len(pages)),), macro_f1, n_resamples=resamples, vectorized=True,
                       method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def plot_confusion(metrics: dict, path: Path, title: str) -> Path:
    """Save a confusion-matrix heat map (rows: gold, columns: predicted) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = metrics["labels"]
    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(np.asarray(metrics["confusion"]), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=30)
    ax.set_title(f"{title}\nmacro-F1 {metrics['macro_f1']:.3f}")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class Evaluation:
    """One config scored under the evaluation plan: metrics, the out-of-fold store, the plan's fingerprint."""

    metrics: dict  # "model", "baseline", "rules_majority", "rules_label_model" → classification metrics
    cv: CrossValidation
    fingerprint: str
    plan: str  # where the folds came from
    baseline_note: str = ""  # how the gold-only baseline was obtained
    misclassified: list[dict] = field(default_factory=list)
    calibration: Calibration | None = None  # of the model's out-of-fold probabilities (also in metrics)


def fold_assignment(config: "Config", labelled: "Labelled") -> tuple[np.ndarray, str, str]:
    """(fold per sentence, fingerprint, plan source) under the config's evaluation plan."""
    from training.evaluation.plan import Plan, fingerprint, freeze, load_plan

    articles = [s.article_id for s in labelled.sentences]
    gold_articles = [articles[row] for row in labelled.gold_index]
    n_pages = len(set(gold_articles))
    if n_pages < 2:
        raise InputError(f"config '{config.name}': grouped cross-validation needs gold on at least 2 pages, "
                         f"found {n_pages}")
    if config.evaluation.plan is not None:
        plan = load_plan(config.resolve(config.evaluation.plan), config.evaluation.folds)
    else:
        folds = min(config.evaluation.folds, n_pages)
        if folds < config.evaluation.folds:
            log.warning("evaluation.folds=%d but gold is on only %d pages: running %d folds",
                        config.evaluation.folds, n_pages, folds)
        plan = Plan(folds, freeze(gold_articles, labelled.gold_labels, folds, config.seed),
                    "computed from the gold (no evaluation.plan)")
    fold_of = plan.assign(articles)
    source = str(config.evaluation.plan) if config.evaluation.plan is not None else plan.source  # as configured
    return fold_of, fingerprint([g.id for g in labelled.gold], labelled.gold_labels, fold_of[labelled.gold_index]), \
        source


def trainable_rows(config: "Config", labelled: "Labelled") -> np.ndarray:
    """Sentences the model may train on: those of ``train_sources`` (all when unset)."""
    if config.train_sources is None:
        return np.ones(len(labelled.sentences), dtype=bool)
    return np.array([s.source in config.train_sources for s in labelled.sentences])


def _misclassified(labelled: "Labelled", cv: CrossValidation, predictions: list[str]) -> list[dict]:
    rows = []
    for k, (gold, row) in enumerate(zip(labelled.gold, labelled.gold_index)):
        if predictions[k] != gold.label:
            rows.append({"id": gold.id, "text": labelled.sentences[row].text, "gold": gold.label,
                         "secondary": ",".join(gold.secondary), "predicted": predictions[k],
                         "probability": round(float(np.nan_to_num(cv.probabilities[row]).max()), 4),
                         "fold": int(cv.fold_of[row]), "rule_label": labelled.rule_labels[row]})
    return rows


def _scored(labelled: "Labelled", cv: CrossValidation, config: "Config") -> dict:
    labels = labelled.labels
    predictions = cv.gold_predictions(labels)
    metrics = classification_metrics(labelled.gold_labels, predictions, labels)
    metrics["macro_f1_fold_mean"] = float(np.mean(cv.fold_macro_f1))
    metrics["macro_f1_fold_std"] = float(np.std(cv.fold_macro_f1))
    metrics["folds"] = len(cv.fold_macro_f1)
    pages = [labelled.sentences[row].article_id for row in labelled.gold_index]
    low, high = macro_f1_interval(labelled.gold_labels, predictions, pages, labels, config.evaluation.bootstrap,
                                  config.seed)
    metrics["macro_f1_ci_low"], metrics["macro_f1_ci_high"] = low, high
    return metrics


def calibration_of(cv: CrossValidation, gold_labels: Sequence[str], labels: Sequence[str], method: str,
                   bins: int) -> Calibration:
    """The calibration of the out-of-fold probabilities of the gold sentences (see :mod:`.calibration`); the
    temperature is cross-fitted over the plan's folds, so its ECE is measured on rows it was not fitted on."""
    column = {label: k for k, label in enumerate(labels)}
    return calibrate(cv.gold_probabilities, [column[label] for label in gold_labels], cv.fold_of[cv.gold_index],
                     labels, method, bins)


def evaluate(config: "Config", labelled: "Labelled", estimator: BaseEstimator,
             progress: Callable[[str], None] = lambda _: None) -> Evaluation:
    """Grouped CV of the (unfitted) estimator under the plan, the gold-only baseline and the rules, on the same gold."""
    fold_of, fingerprint, source = fold_assignment(config, labelled)
    trainable = trainable_rows(config, labelled)
    labels = labelled.labels
    cv = cross_validate(labelled.records, labelled.train_labels, fold_of, trainable, labelled.gold_index,
                        labelled.gold_labels, labels, estimator, progress)
    save_store(store_path(config), store_key(config, labelled, fold_of), cv)  # for the review queue
    metrics = {"model": _scored(labelled, cv, config)}
    calibration = calibration_of(cv, labelled.gold_labels, labels, config.evaluation.calibration,
                                 config.evaluation.ece_bins)
    metrics["calibration"] = calibration.as_dict()
    if config.evaluation.baseline:
        gold_only = np.full(len(labelled.sentences), None, dtype=object)
        gold_only[labelled.gold_index] = labelled.gold_labels
        baseline_rows = trainable & (gold_only != None)  # noqa: E711  (elementwise)
        if np.array_equal(baseline_rows, trainable) and \
                list(gold_only[trainable]) == list(np.asarray(labelled.train_labels, dtype=object)[trainable]):
            note, baseline = "every training sentence already carries its gold label: the baseline is the model", cv
        else:
            progress("the baseline: the same family trained on gold labels alone")
            baseline = cross_validate(labelled.records, gold_only, fold_of, baseline_rows, labelled.gold_index,
                                      labelled.gold_labels, labels, estimator, progress)
            note = f"the same family trained on the {int(baseline_rows.sum())} gold-labelled training sentences alone"
        metrics["baseline"] = _scored(labelled, baseline, config)
    else:
        note = "baseline off (evaluation.baseline: false)"
    for name, value in labelled.combiner_metrics().items():
        metrics[f"rules_{name}"] = value
    return Evaluation(metrics, cv, fingerprint, source, note,
                      _misclassified(labelled, cv, cv.gold_predictions(labels)), calibration)


def store_key(config: "Config", labelled: "Labelled", fold_of: np.ndarray) -> str:
    """What the out-of-fold store depends on: the model, the data, the labels it trained on, the folds."""
    import hashlib
    import json

    what = {"model": config.model.model_dump(mode="json"), "seed": config.seed, "train_sources": config.train_sources,
            "ids": [s.id for s in labelled.sentences], "texts": hashlib.sha256(
                "\n".join(s.text for s in labelled.sentences).encode("utf-8")).hexdigest(),
            "labels": list(labelled.train_labels), "folds": fold_of.tolist()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def store_path(config: "Config") -> Path:
    return config.resolve(config.evaluation.store) / f"{config.name}.npz"


def save_store(path: Path, key: str, cv: CrossValidation) -> None:
    """Write the store in one rename (a reader never sees half a file)."""
    import io

    from training.core.system import atomic_write

    buffer = io.BytesIO()
    np.savez_compressed(buffer, key=key, probabilities=cv.probabilities, fold_of=cv.fold_of,
                        gold_index=cv.gold_index, fold_macro_f1=np.asarray(cv.fold_macro_f1))
    atomic_write(path, buffer.getvalue())


def load_store(path: Path, key: str) -> CrossValidation | None:
    """The stored out-of-fold predictions, if they were made from exactly this model, data and plan."""
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                return None
            return CrossValidation(data["probabilities"], data["fold_of"], data["gold_index"],
                                   data["fold_macro_f1"].tolist())
    except (OSError, ValueError, KeyError):  # damaged: it is made again
        return None


def out_of_fold(config: "Config", labelled: "Labelled", estimator: BaseEstimator,
                progress: Callable[[str], None] = lambda _: None) -> CrossValidation:
    """The model's out-of-fold store: read when the last training run left one for this data, else made."""
    fold_of, _, _ = fold_assignment(config, labelled)
    key, path = store_key(config, labelled, fold_of), store_path(config)
    stored = load_store(path, key)
    if stored is not None:
        progress(f"out-of-fold predictions from {path}")
        return stored
    progress("no stored out-of-fold predictions for this model and data: cross-validating")
    cv = cross_validate(labelled.records, labelled.train_labels, fold_of, trainable_rows(config, labelled),
                        labelled.gold_index, labelled.gold_labels, labelled.labels, estimator, progress)
    save_store(path, key, cv)
    return cv
