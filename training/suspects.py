"""Suspect training labels: sentences whose label a model, trained without their article,
confidently disagrees with (confident learning: cleanlab's ``find_label_issues`` on out-of-fold
probabilities; a small built-in version of the same test when cleanlab is not installed)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

if TYPE_CHECKING:
    from training.config import Config
    from training.label import Labelled

log = logging.getLogger(__name__)


def out_of_fold_proba(records, labels: Sequence[str], label_names: Sequence[str],
                      make_model: Callable[[], object], folds: int) -> np.ndarray:
    """Probabilities for every sentence (records: text, article_id, index) from a model that never saw its page."""
    from training.records import take

    labels = np.asarray(labels, dtype=object)
    proba = np.zeros((len(records), len(label_names)))
    groups = records["article_id"].to_numpy(dtype=object)
    splitter = GroupKFold(n_splits=min(folds, len(set(groups))))
    for train, test in splitter.split(np.zeros(len(records)), groups=groups):
        model = make_model().fit(take(records, train), list(labels[train]))
        proba[test] = model.predict_proba(take(records, test))
    return proba


def _builtin_issues(given: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Confident-learning core: a label is suspect when another class clears its own per-class
    threshold (mean self-confidence of that class) and beats the given label's probability."""
    n_classes = proba.shape[1]
    thresholds = np.array([proba[given == k, k].mean() if (given == k).any() else 1.0 for k in range(n_classes)])
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -1.0)
    best = masked.argmax(axis=1)
    return (masked.max(axis=1) > 0) & (best != given) & (proba[np.arange(len(given)), best] > proba[np.arange(len(given)), given])


def find_suspects(ids: Sequence[str], texts: Sequence[str], labels: Sequence[str], proba: np.ndarray,
                  label_names: Sequence[str], use_cleanlab: bool = True) -> list[dict]:
    """Rows (id, text, label, suggested, score) ranked most suspect first; score = self-confidence."""
    names = list(label_names)
    given = np.array([names.index(label) for label in labels])
    proba = np.clip(proba, 1e-9, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    method = "builtin"
    mask = None
    if use_cleanlab:
        try:
            from cleanlab.filter import find_label_issues

            present = np.unique(given)
            if len(present) >= 2:
                mask = find_label_issues(labels=given, pred_probs=proba, filter_by="prune_by_noise_rate")
                method = "cleanlab"
        except Exception as exc:  # ImportError or a degenerate input cleanlab refuses
            log.warning("cleanlab unavailable (%s); using the built-in label-issue finder", exc)
    if mask is None:
        mask = _builtin_issues(given, proba)
    self_confidence = proba[np.arange(len(given)), given]
    rows = [{"id": ids[i], "text": texts[i], "label": labels[i], "suggested": names[int(proba[i].argmax())],
             "score": round(float(self_confidence[i]), 4), "method": method}
            for i in np.flatnonzero(mask)]
    return sorted(rows, key=lambda r: r["score"])


def label_issues(config: "Config", labelled: "Labelled") -> tuple[list[dict], np.ndarray]:
    """Suspect training labels of a labelled corpus, and the out-of-fold probabilities behind them.

    The probabilities come from ``evaluation.label_issues_family`` (a cheap family), folded by article.
    """
    from training.families import new_model

    family = config.evaluation.label_issues_family
    params = config.model.params if family == config.model.family else {}
    ids = [s.id for s in labelled.sentences]
    texts = [s.text for s in labelled.sentences]
    proba = out_of_fold_proba(labelled.records, labelled.train_labels, labelled.labels, lambda: new_model(family, params, labelled.labels, config.seed),
                              config.evaluation.folds)
    return find_suspects(ids, texts, labelled.train_labels, proba, labelled.labels), proba
