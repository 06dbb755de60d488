"""Suspect training labels: sentences whose label a model, trained without their article,
confidently disagrees with (confident learning: cleanlab's ``find_label_issues`` on out-of-fold
probabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

from training.errors import InputError

if TYPE_CHECKING:
    from training.config import Config
    from training.label import Labelled



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


def find_suspects(ids: Sequence[str], texts: Sequence[str], labels: Sequence[str], proba: np.ndarray,
                  label_names: Sequence[str]) -> list[dict]:
    """Rows (id, text, label, suggested, score) ranked most suspect first; score = self-confidence.

    cleanlab's ``find_label_issues`` (the ``labelmodel`` extra; a clear error when it is missing).
    """
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise InputError("the suspect-label search needs cleanlab, which is not installed: "
                         "pip install -e '.[labelmodel]' (or set evaluation.find_label_issues: false)") from None
    names = list(label_names)
    given = np.array([names.index(label) for label in labels])
    proba = np.clip(proba, 1e-9, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    if len(np.unique(given)) < 2:  # one class: nothing can be mislabelled as another
        return []
    mask = find_label_issues(labels=given, pred_probs=proba, filter_by="prune_by_noise_rate")
    self_confidence = proba[np.arange(len(given)), given]
    rows = [{"id": ids[i], "text": texts[i], "label": labels[i], "suggested": names[int(proba[i].argmax())],
             "score": round(float(self_confidence[i]), 4), "method": "cleanlab"}
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
