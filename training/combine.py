"""Combiners: the label matrix → one training label per sentence.

``majority`` counts votes, breaks ties by the declared tie order and gives unvoted sentences the
default label. ``label_model`` weighs each rule by its estimated accuracy: Snorkel's
``LabelModel`` when it imports and fits, otherwise a small one-coin Dawid–Skene EM here
(the same idea: rules agreeing with the consensus earn weight).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from training.rules import ABSTAIN

log = logging.getLogger(__name__)


@dataclass
class Combined:
    labels: np.ndarray  # label index per sentence
    probabilities: np.ndarray  # (sentences, labels)
    rule_weights: np.ndarray  # estimated accuracy per rule (majority: NaN)
    method: str  # "majority", "snorkel" or "em"


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


def _em_label_model(matrix: np.ndarray, n_labels: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """One-coin Dawid–Skene: each rule is right with probability a_j, wrong uniformly otherwise."""
    n_rules = matrix.shape[1]
    accuracy = np.full(n_rules, 0.7)
    prior = np.full(n_labels, 1.0 / n_labels)
    voted = matrix != ABSTAIN
    posterior = np.tile(prior, (matrix.shape[0], 1))
    for _ in range(min(epochs, 100)):
        log_post = np.tile(np.log(prior), (matrix.shape[0], 1))
        for j in range(n_rules):
            rows = np.flatnonzero(voted[:, j])
            if rows.size == 0:
                continue
            right = np.log(accuracy[j])
            wrong = np.log((1 - accuracy[j]) / max(n_labels - 1, 1))
            contribution = np.full((rows.size, n_labels), wrong)
            contribution[np.arange(rows.size), matrix[rows, j]] = right
            log_post[rows] += contribution
        log_post -= log_post.max(axis=1, keepdims=True)
        posterior = np.exp(log_post)
        posterior /= posterior.sum(axis=1, keepdims=True)
        for j in range(n_rules):
            rows = np.flatnonzero(voted[:, j])
            if rows.size:
                hit = posterior[rows, matrix[rows, j]].mean()
                accuracy[j] = np.clip(hit, 0.05, 0.99)
        prior = np.clip(posterior.mean(axis=0), 1e-3, None)
        prior /= prior.sum()
    return posterior, accuracy


def _snorkel_label_model(matrix: np.ndarray, n_labels: int, epochs: int, seed: int):
    from snorkel.labeling.model import LabelModel

    model = LabelModel(cardinality=n_labels, verbose=False, device="cpu")
    with np.errstate(divide="ignore", invalid="ignore"):  # rules that never fire have zero coverage
        model.fit(L_train=matrix, n_epochs=epochs, seed=seed, log_freq=max(epochs, 1), progress_bar=False)
        return model.predict_proba(matrix), np.nan_to_num(np.asarray(model.get_weights()), nan=0.0)


def label_model(
    matrix: np.ndarray, n_labels: int, tie_rank: np.ndarray, default: int, epochs: int, seed: int,
    use_snorkel: bool = True,
) -> Combined:
    """Learned combiner; falls back to the EM model if Snorkel is missing or fails."""
    method = "em"
    probabilities = weights = None
    if use_snorkel:
        try:
            probabilities, weights = _snorkel_label_model(matrix, n_labels, epochs, seed)
            method = "snorkel"
        except Exception as exc:  # ImportError, or a fit that breaks on degenerate input
            log.warning("Snorkel LabelModel unavailable (%s); using the built-in EM label model", exc)
    if probabilities is None:
        probabilities, weights = _em_label_model(matrix, n_labels, epochs)
    probabilities = np.nan_to_num(np.asarray(probabilities, dtype=float), nan=1.0 / n_labels)
    labels = _argmax_with_ties(probabilities, tie_rank)
    unvoted = (matrix == ABSTAIN).all(axis=1)
    labels[unvoted] = default
    probabilities[unvoted] = 0.0
    probabilities[unvoted, default] = 1.0
    return Combined(labels, probabilities, np.asarray(weights, dtype=float), method)


def combine(matrix: np.ndarray, label_names: list[str], tie_order: list[str], default: str,
            method: str = "majority", epochs: int = 500, seed: int = 0) -> Combined:
    n_labels = len(label_names)
    tie_rank = np.array([tie_order.index(name) for name in label_names])
    default_index = label_names.index(default)
    if method == "majority":
        return majority_vote(matrix, n_labels, tie_rank, default_index)
    if method == "label_model":
        return label_model(matrix, n_labels, tie_rank, default_index, epochs, seed)
    raise ValueError(f"unknown combiner '{method}'")
