"""Probabilities a user can threshold: calibration error, the reliability diagram, temperature scaling.

The expected calibration error (ECE) of the top label: each prediction's confidence (its largest
probability) falls in one of ``bins`` equal-width bins of [0, 1]; a bin's gap is the difference
between its mean confidence and the share of its predictions that are right, and the ECE is the
mean gap weighted by the bins' sizes. The bins are scikit-learn's ``calibration_curve`` bins
(``(lo, hi]``), so the diagram plots exactly what the figure sums.

Temperature scaling divides the log-probabilities by one scalar ``T`` and renormalises
(``softmax(log p / T)``, which is ``p ** (1 / T)`` normalised): ``T > 1`` softens over-confident
probabilities, ``T < 1`` sharpens timid ones. It never changes the order of a row's probabilities,
so labels (and every label metric) stay exactly as they were. ``T`` is fitted by minimising the
negative log-likelihood of the out-of-fold probabilities; the calibrated ECE is estimated honestly
by cross-fitting over the plan's folds (each fold's rows tempered by a ``T`` fitted on the others).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

BOUNDS = (0.05, 20.0)  # the temperatures a fit may choose
_FLOOR = 1e-12  # a probability of 0 on the true label would make the likelihood -inf at every T


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row by row: same order within each row, zeros stay zero; ``T == 1`` is the identity."""
    proba = np.asarray(probabilities, dtype=float)
    if temperature == 1.0 or proba.size == 0:
        return proba
    with np.errstate(divide="ignore"):
        logits = np.log(proba) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def _clean(probabilities: np.ndarray, truth: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    proba, truth = np.asarray(probabilities, dtype=float), np.asarray(truth, dtype=int)
    if proba.ndim != 2 or len(proba) != len(truth):
        raise ValueError(f"expected (rows, labels) probabilities and one true label per row, got {proba.shape} "
                         f"and {truth.shape}")
    return proba, truth


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each confidence, as ``calibration_curve`` assigns them (``(lo, hi]``; 0 in the first)."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence)


def _ece(hits: np.ndarray, scores: np.ndarray, bins: int) -> float:
    """Weighted mean |accuracy - confidence| over equal-width bins of ``scores`` (``hits``: 1 right, 0 wrong)."""
    from sklearn.calibration import calibration_curve

    if len(scores) == 0:
        return float("nan")
    scores = np.clip(scores, 0.0, 1.0)  # a renormalised row may sum to 1 + 1e-16
    accuracy, confidence = calibration_curve(hits.astype(int), scores, n_bins=bins, strategy="uniform")
    counts = np.bincount(_bin_of(scores, bins), minlength=bins)
    counts = counts[counts > 0]  # calibration_curve leaves out the empty bins, in the same order
    return float(np.sum(counts / counts.sum() * np.abs(accuracy - confidence)))


def expected_calibration_error(probabilities: np.ndarray, truth: Sequence[int], bins: int = 15) -> float:
    """Top-label ECE of ``probabilities`` (rows, labels) against ``truth`` (column of the true label per row)."""
    proba, truth = _clean(probabilities, truth)
    return _ece(proba.argmax(axis=1) == truth, proba.max(axis=1), bins)


def classwise_ece(probabilities: np.ndarray, truth: Sequence[int], labels: Sequence[str],
                  bins: int = 15) -> dict[str, float]:
    """One-vs-rest ECE per label: is ``p(label)`` the share of rows of that label, bin by bin?"""
    proba, truth = _clean(probabilities, truth)
    return {name: _ece(truth == column, proba[:, column], bins) for column, name in enumerate(labels)}


def negative_log_likelihood(probabilities: np.ndarray, truth: Sequence[int], temperature: float = 1.0) -> float:
    """Mean ``-log p(true label)`` after tempering (probabilities floored at 1e-12)."""
    proba, truth = _clean(probabilities, truth)
    logits = np.log(np.clip(proba, _FLOOR, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(truth)), truth]))


def fit_temperature(probabilities: np.ndarray, truth: Sequence[int]) -> float:
    """The ``T`` in :data:`BOUNDS` that minimises the negative log-likelihood (SciPy's bounded Brent search).

    The likelihood is convex in ``1 / T`` (a logistic loss of scaled logits), so the search is over
    ``1 / T`` and its minimum is the global one.
    """
    from scipy.optimize import minimize_scalar

    proba, truth = _clean(probabilities, truth)
    if len(proba) == 0:
        return 1.0
    result = minimize_scalar(lambda inverse: negative_log_likelihood(proba, truth, 1.0 / inverse),
                             bounds=(1.0 / BOUNDS[1], 1.0 / BOUNDS[0]), method="bounded",
                             options={"xatol": 1e-6})
    return float(1.0 / result.x)


def cross_fitted(probabilities: np.ndarray, truth: Sequence[int], folds: Sequence[int]
                 ) -> tuple[np.ndarray, dict[int, float]]:
    """Each fold's rows tempered by a ``T`` fitted on the other folds' rows: (probabilities, ``T`` per fold).

    What temperature scaling would give on rows it was not fitted on; needs at least two folds.
    """
    proba, truth = _clean(probabilities, truth)
    folds = np.asarray(folds)
    out, temperatures = proba.copy(), {}
    for fold in np.unique(folds):
        held_out = folds == fold
        temperatures[int(fold)] = fit_temperature(proba[~held_out], truth[~held_out])
        out[held_out] = temper(proba[held_out], temperatures[int(fold)])
    return out, temperatures


@dataclass
class Curve:
    """A reliability curve: per non-empty bin its mean confidence and accuracy; the count of every bin."""

    name: str
    confidence: list[float]  # non-empty bins only, in order
    accuracy: list[float]
    counts: list[int]  # every bin, empty ones included
    ece: float


def reliability_curve(probabilities: np.ndarray, truth: Sequence[int], bins: int = 15, name: str = "") -> Curve:
    """The top-label reliability curve (scikit-learn's ``calibration_curve`` of correct-or-not vs confidence)."""
    from sklearn.calibration import calibration_curve

    proba, truth = _clean(probabilities, truth)
    if len(proba) == 0:
        return Curve(name, [], [], [0] * bins, float("nan"))
    scores = np.clip(proba.max(axis=1), 0.0, 1.0)
    hits = (proba.argmax(axis=1) == truth).astype(int)
    accuracy, confidence = calibration_curve(hits, scores, n_bins=bins, strategy="uniform")
    counts = np.bincount(_bin_of(scores, bins), minlength=bins)
    return Curve(name, confidence.tolist(), accuracy.tolist(), counts.tolist(), _ece(hits, scores, bins))


@dataclass
class Calibration:
    """How well a run's out-of-fold probabilities can be thresholded, and the temperature the model gets."""

    method: str  # "none" | "temperature"
    bins: int
    rows: int  # out-of-fold gold predictions scored
    ece: float  # top-label ECE of the out-of-fold probabilities as the model gives them
    ece_per_class: dict[str, float]
    temperature: float = 1.0  # fitted on every out-of-fold row; what the exported model applies (1: none)
    ece_calibrated: float = float("nan")  # top-label ECE after cross-fitted temperature scaling
    ece_per_class_calibrated: dict[str, float] = field(default_factory=dict)
    fold_temperatures: dict[int, float] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)  # for the diagram: as given, then calibrated

    def as_dict(self) -> dict:
        """The figures (not the curves) for ``metrics.json`` and the model's manifest."""
        return {"method": self.method, "bins": self.bins, "rows": self.rows, "ece": self.ece,
                "ece_per_class": self.ece_per_class, "temperature": self.temperature,
                "ece_calibrated": self.ece_calibrated, "ece_per_class_calibrated": self.ece_per_class_calibrated,
                "fold_temperatures": {str(k): v for k, v in self.fold_temperatures.items()}}


def calibrate(probabilities: np.ndarray, truth: Sequence[int], folds: Sequence[int], labels: Sequence[str],
              method: str = "temperature", bins: int = 15) -> Calibration:
    """ECE of out-of-fold ``probabilities`` and, for ``method="temperature"``, the model's ``T`` and the
    cross-fitted ECE after it. Rows without a prediction (NaN: folds that were not run) are left out."""
    proba, truth = _clean(probabilities, truth)
    folds = np.asarray(folds)
    predicted = ~np.isnan(proba).any(axis=1)
    proba, truth, folds = proba[predicted], truth[predicted], folds[predicted]
    result = Calibration(method, bins, len(proba), expected_calibration_error(proba, truth, bins),
                         classwise_ece(proba, truth, labels, bins),
                         curves=[reliability_curve(proba, truth, bins, "out of fold")])
    if method == "temperature" and len(proba):
        result.temperature = fit_temperature(proba, truth)
        if len(np.unique(folds)) > 1:
            tempered, result.fold_temperatures = cross_fitted(proba, truth, folds)
            result.ece_calibrated = expected_calibration_error(tempered, truth, bins)
            result.ece_per_class_calibrated = classwise_ece(tempered, truth, labels, bins)
            result.curves.append(reliability_curve(tempered, truth, bins, "temperature, cross-fitted"))
    return result


def plot_reliability(calibration: Calibration, path: Path, title: str) -> Path:
    """Save the reliability diagram as PNG: accuracy against confidence per bin (the diagonal is perfect
    calibration) above a histogram of the confidences; the ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration.bins
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins
    shown = list(zip(calibration.curves, ("tab:blue", "tab:orange")))
    for number, (curve, colour) in enumerate(shown):
        top.plot(curve.confidence, curve.accuracy, marker="o", color=colour,
                 label=f"{curve.name} (ECE {curve.ece:.3f})")
        bar = width / len(shown)  # the curves' histograms side by side within each bin
        bottom.bar(edges[:-1] + number * bar, curve.counts, width=bar, align="edge", color=colour, alpha=0.8)
    top.set_ylabel("accuracy (share right)")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    headline = f"top-label ECE {calibration.ece:.3f} ({bins} bins, {calibration.rows} out-of-fold gold sentences)"
    if calibration.method == "temperature" and np.isfinite(calibration.ece_calibrated):
        headline += f"\ntemperature {calibration.temperature:.2f}: ECE {calibration.ece_calibrated:.3f} cross-fitted"
    top.set_title(f"{title}\n{headline}", fontsize=9)
    bottom.set_xlabel("confidence (largest probability)")
    bottom.set_ylabel("sentences")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
