"""Combiners: the label matrix → one training label per sentence.

``majority`` counts votes, breaks ties by the declared tie order and gives unvoted sentences the
default label. ``label_model`` weighs each rule by its estimated accuracy with Snorkel's
``LabelModel`` (the ``labelmodel`` extra; a clear error when it is missing, never a fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.core.errors import InputError
from training.labelling.rules import ABSTAIN



@dataclass
class Combined:
    labels: np.ndarray  # label index per sentence
    probabilities: np.ndarray  # (sentences, labels)
    rule_weights: np.ndarray  # estimated accuracy per rule (majority: NaN)
    method: str  # "majority" or "snorkel"
    model: object = None  # the fitted Snorkel LabelModel (saved with the run), None for majority


def _vote_counts(matrix: np.ndarray, n_labels: int) -> np.ndarray:
    counts = np.zeros((matrix.shape[0], n_labels), dtype=float)
    for label in range(n_labels):
        counts[:, label] = (matrix == label).sum(axis=1)
    return counts


def _argmax_with_ties(scores: np.ndarray, tie_rank: np.ndarray) -> np.ndarray:
    """Row-wise argmax; among (near-)equal maxima the label earliest in the tie order wins."""
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best, rtol=1e-9, atol=1e-12)
    ranked = np.where(tied, tie_rank[None, :], np.iinfo(int).max)
    return ranked.argmin(axis=1)


def majority_vote(matrix: np.ndarray, n_labels: int, tie_rank: np.ndarray, default: int) -> Combined:
    counts = _vote_counts(matrix, n_labels)
    labels = _argmax_with_ties(counts, tie_rank)
    unvoted = counts.sum(axis=1) == 0
    labels[unvoted] = default
    probabilities = np.zeros_like(counts)
    voted = ~unvoted
    probabilities[voted] = counts[voted] / counts[voted].sum(axis=1, keepdims=True)
    probabilities[unvoted, default] = 1.0
    return Combined(labels, probabilities, np.full(matrix.shape[1], np.nan), "majority")


def _snorkel_label_model(matrix: np.ndarray, n_labels: int, epochs: int, seed: int,
                         class_balance: np.ndarray | None):
    try:
        from snorkel.labeling.model import LabelModel
    except ImportError:
        raise InputError("the label model needs Snorkel, which is not installed: "
                         "pip install -e '.[labelmodel]'") from None

    model = LabelModel(cardinality=n_labels, verbose=False, device="cpu")
    with np.errstate(divide="ignore", invalid="ignore"):  # rules that never fire have zero coverage
        model.fit(L_train=matrix, n_epochs=epochs, seed=seed, log_freq=max(epochs, 1), progress_bar=False,
                  class_balance=class_balance)
        return model.predict_proba(matrix), np.nan_to_num(np.asarray(model.get_weights()), nan=0.0), model


def label_model(
    matrix: np.ndarray, n_labels: int, tie_rank: np.ndarray, default: int, epochs: int, seed: int,
    class_balance: np.ndarray | None = None,
) -> Combined:
    """Snorkel's ``LabelModel``: rules weighted by their estimated accuracy (no hand-written fallback)."""
    probabilities, weights, fitted = _snorkel_label_model(matrix, n_labels, epochs, seed, class_balance)
    probabilities = np.nan_to_num(np.asarray(probabilities, dtype=float), nan=1.0 / n_labels)
    labels = _argmax_with_ties(probabilities, tie_rank)
    unvoted = (matrix == ABSTAIN).all(axis=1)
    labels[unvoted] = default
    probabilities[unvoted] = 0.0
    probabilities[unvoted, default] = 1.0
    return Combined(labels, probabilities, np.asarray(weights, dtype=float), "snorkel", fitted)


def combine(matrix: np.ndarray, label_names: list[str], tie_order: list[str], default: str,
            method: str = "majority", epochs: int = 500, seed: int = 0,
            class_balance: np.ndarray | None = None) -> Combined:
    """``class_balance``: the label model's class prior (e.g. the gold labels' shares); None lets it estimate."""
    n_labels = len(label_names)
    tie_rank = np.array([tie_order.index(name) for name in label_names])
    default_index = label_names.index(default)
    if method == "majority":
        return majority_vote(matrix, n_labels, tie_rank, default_index)
    if method == "label_model":
        return label_model(matrix, n_labels, tie_rank, default_index, epochs, seed, class_balance)
    raise ValueError(f"unknown combiner '{method}'")
