"""Heads: the parts of a family that turn feature columns into class probabilities.

Kept apart from the feature blocks (:mod:`training.blocks`) so a family composes blocks and a head,
with scikit-learn's conventions: ``__init__`` stores parameters, ``fit`` sets the learned state.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import BaggingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

MIN_ROWS_PER_CLASS_TO_STOP_EARLY = 20  # below this, a 10% validation split cannot hold every class


class PerceptronBag(ClassifierMixin, BaseEstimator):
    """A bag of one-hidden-layer perceptrons that differ only in their seed; probabilities averaged.

    Each stops early on a held-out 10% of its training rows when there are enough rows for that
    split to hold every class (scikit-learn refuses a smaller one); otherwise it trains to ``max_iter``.
    """

    def __init__(self, hidden: int = 256, alpha: float = 0.01, bag: int = 3, max_iter: int = 200,
                 random_state: int | None = None) -> None:
        self.hidden, self.alpha, self.bag, self.max_iter, self.random_state = hidden, alpha, bag, max_iter, random_state

    def fit(self, X, y) -> "PerceptronBag":
        y = np.asarray(y)
        classes, counts = np.unique(y, return_counts=True)
        stop_early = len(y) >= MIN_ROWS_PER_CLASS_TO_STOP_EARLY * len(classes) and counts.min() >= 2
        mlp = MLPClassifier(hidden_layer_sizes=(self.hidden,), alpha=self.alpha, early_stopping=stop_early,
                            max_iter=self.max_iter)
        bag = BaggingClassifier(mlp, n_estimators=self.bag, bootstrap=False, random_state=self.random_state)
        with warnings.catch_warnings():
            if not stop_early:  # too few rows to hold some out: running to max_iter is the plan, not a fault
                warnings.simplefilter("ignore", ConvergenceWarning)
            self.bag_ = bag.fit(X, y)
        self.classes_ = self.bag_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.bag_.predict_proba(X)
