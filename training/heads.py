"""Heads: the parts of a family that turn feature columns into class probabilities.

Kept apart from the feature blocks (:mod:`training.blocks`) so a family composes blocks and a head,
with scikit-learn's conventions: ``__init__`` stores parameters, ``fit`` sets the learned state.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
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


class BlendedClassifier(ClassifierMixin, BaseEstimator):
    """Features computed once, two heads: ``linear`` reads the dense and the sparse blocks, ``perceptrons``
    the dense ones only; their probabilities are averaged with ``weight`` on the perceptrons.

    Like scikit-learn's soft ``VotingClassifier``, but the feature blocks (rule votes, coherence, the
    encoder calls) run once per fit or predict instead of once per head.
    """

    def __init__(self, dense, sparse, linear, perceptrons, weight: float = 0.5) -> None:
        self.dense, self.sparse, self.linear, self.perceptrons, self.weight = dense, sparse, linear, perceptrons, weight

    def _features(self, X, fit: bool = False, y=None):
        dense = self.dense_.fit_transform(X, y) if fit else self.dense_.transform(X)
        if self.sparse_ is None:
            return dense, dense
        sparse = self.sparse_.fit_transform(X, y) if fit else self.sparse_.transform(X)
        return dense, sp.hstack([sp.csr_matrix(dense), sparse]).tocsr()

    def fit(self, X, y) -> "BlendedClassifier":
        self.dense_ = clone(self.dense)
        self.sparse_ = None if self.sparse is None else clone(self.sparse)
        dense, everything = self._features(X, fit=True, y=y)
        self.linear_ = clone(self.linear).fit(everything, y)
        self.perceptrons_ = clone(self.perceptrons).fit(dense, y)
        self.classes_ = self.linear_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        dense, everything = self._features(X)
        return ((1 - self.weight) * self.linear_.predict_proba(everything)
                + self.weight * self.perceptrons_.predict_proba(dense))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
