"""Suspect training labels: sentences whose label a model, trained without their article,
confidently disagrees with (confident learning: cleanlab's ``find_label_issues`` on out-of-fold
probabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from training.core.errors import InputError

if TYPE_CHECKING:
    from training.evaluation.cv import CrossValidation
    from training.labelling.stage import Labelled


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
    # n_jobs=1: its process pool forks a process whose other threads (torch, tqdm) may hold locks: a deadlock
    mask = find_label_issues(labels=given, pred_probs=proba, filter_by="prune_by_noise_rate", n_jobs=1)
    self_confidence = proba[np.arange(len(given)), given]
    rows = [{"id": ids[i], "text": texts[i], "label": labels[i], "suggested": names[int(proba[i].argmax())],
             "score": round(float(self_confidence[i]), 4), "method": "cleanlab"}
            for i in np.flatnonzero(mask)]
    return sorted(rows, key=lambda r: r["score"])


def label_issues(labelled: "Labelled", cv: "CrossValidation", trainable: np.ndarray) -> list[dict]:
    """Suspect training labels, from the evaluation's out-of-fold store (no second cross-validation).

    Only sentences that train the model and have an out-of-fold prediction are judged.
    """
    rows = np.flatnonzero(trainable & ~np.isnan(cv.probabilities).any(axis=1))
    return find_suspects([labelled.sentences[i].id for i in rows], [labelled.sentences[i].text for i in rows],
                         [labelled.train_labels[i] for i in rows], cv.probabilities[rows], labelled.labels)
