"""Honest evaluation: cross-validation grouped by article, metrics, confusion-matrix plots.

Folds are drawn over the articles that have gold labels; a fold's model trains on the (rule or
reviewed) labels of every sentence whose article is *not* in that fold's test articles, so no
article is ever on both sides. Articles without gold are always training data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold

log = logging.getLogger(__name__)


@dataclass
class Fold:
    train: np.ndarray  # indices into the sentence list
    test: np.ndarray  # indices into the sentence list (gold sentences of held-out articles)


def grouped_folds(articles: Sequence[str], gold_index: np.ndarray, n_folds: int) -> list[Fold]:
    """Folds over the gold sentences grouped by article; training is every other article's sentences."""
    articles = np.asarray(articles, dtype=object)
    gold_articles = articles[gold_index]
    n_groups = len(set(gold_articles))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs gold in at least 2 articles, found {n_groups}")
    if n_folds > n_groups:
        log.warning("evaluation.folds=%d but gold is on only %d pages: running %d folds", n_folds, n_groups, n_groups)
    splitter = GroupKFold(n_splits=min(n_folds, n_groups))
    folds = []
    for _, test_pos in splitter.split(gold_index, groups=gold_articles):
        held_out = set(gold_articles[test_pos])
        train = np.flatnonzero([a not in held_out for a in articles])
        test = gold_index[test_pos]
        assert not set(articles[train]) & set(articles[test]), "article leaked across a fold"
        folds.append(Fold(train=train, test=test))
    return folds


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """macro-F1, accuracy, per-class precision/recall/F1/support and the confusion matrix."""
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
    }


def flat_metrics(metrics: dict, prefix: str, detail: bool = True) -> dict[str, float]:
    """Metric dict → flat MLflow metric names, e.g. ``model.f1.drill``.

    ``detail=False`` keeps macro-F1 and per-class F1 only (for the combiners, so a run stays
    within ~40 metrics; their full figures are in ``metrics.json``).
    """
    out = {f"{prefix}.macro_f1": metrics["macro_f1"]}
    if detail:
        out[f"{prefix}.accuracy"] = metrics["accuracy"]
    for name, values in metrics["per_class"].items():
        for key in ("precision", "recall", "f1") if detail else ("f1",):
            out[f"{prefix}.{key}.{name}"] = values[key]
    for key in ("macro_f1_fold_mean", "macro_f1_fold_std"):
        if key in metrics:
            out[f"{prefix}.{key}"] = metrics[key]
    return out


@dataclass
class CrossValidation:
    predictions: np.ndarray  # predicted label per gold sentence, in gold order
    probabilities: np.ndarray  # (gold sentences, labels)
    fold_of: np.ndarray  # fold number per gold sentence
    fold_macro_f1: list[float] = field(default_factory=list)
    seconds: float = 0.0


def cross_validate(
    records, train_labels: Sequence[str], gold_index: np.ndarray, gold_labels: Sequence[str],
    labels: Sequence[str], n_folds: int, make_model: Callable[[], object],
    progress: Callable[[str], None] = lambda _: None,
) -> CrossValidation:
    """Out-of-fold predictions on every gold sentence from models trained on the other articles.

    ``records`` are all sentences (text, article_id, index); a fold's model sees whole pages on
    both sides: it trains on every sentence of the other articles and predicts every sentence of
    the held-out articles (so context-aware models see the neighbours), scored on their gold.
    """
    from training.records import take

    started = time.perf_counter()
    articles = records["article_id"].to_numpy(dtype=object)
    train_labels = np.asarray(train_labels, dtype=object)
    position = {int(i): p for p, i in enumerate(gold_index)}
    predictions = np.empty(len(gold_index), dtype=object)
    probabilities = np.zeros((len(gold_index), len(labels)))
    fold_of = np.zeros(len(gold_index), dtype=int)
    fold_scores = []
    folds = grouped_folds(articles, np.asarray(gold_index), n_folds)
    for number, fold in enumerate(folds):
        progress(f"fold {number + 1}/{len(folds)}: train {len(fold.train)} sentences, test {len(fold.test)}")
        model = make_model()
        model.fit(take(records, fold.train), list(train_labels[fold.train]))
        held_out = np.flatnonzero(np.isin(articles, list(set(articles[fold.test]))))
        page_proba = model.predict_proba(take(records, held_out))
        row_in_pages = {int(r): k for k, r in enumerate(held_out)}
        proba = page_proba[[row_in_pages[int(i)] for i in fold.test]]
        rows = [position[int(i)] for i in fold.test]
        probabilities[rows] = proba
        predictions[rows] = [labels[k] for k in proba.argmax(axis=1)]
        fold_of[rows] = number
        truth = [gold_labels[r] for r in rows]
        fold_scores.append(float(f1_score(truth, predictions[rows], labels=list(labels), average="macro",
                                          zero_division=0)))
    return CrossValidation(predictions, probabilities, fold_of, fold_scores, time.perf_counter() - started)


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
