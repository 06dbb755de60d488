"""Heads: the parts of a family that turn feature columns into class probabilities.

Kept apart from the feature blocks (:mod:`training.blocks`) so a family composes blocks and heads,
with scikit-learn's conventions: ``__init__`` stores parameters, ``fit`` sets the learned state.
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import BaggingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

log = logging.getLogger(__name__)
MIN_ROWS_PER_CLASS_TO_STOP_EARLY = 20  # below this, a 10% validation split cannot hold every class
PROGRESS_ROWS = 1000  # a head fitted on this many rows or more gets a progress line
TRAINING_ONLY = ("_optimizer", "_best_coefs", "_best_intercepts")  # MLPClassifier state that predict never reads


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
        for perceptron in self.bag_.estimators_:
            # what only further training reads (the optimiser's moment estimates, a copy of the best weights
            # seen): a stored bag then holds each weight matrix once, not up to four times, and no optimiser
            for name in TRAINING_ONLY:
                vars(perceptron).pop(name, None)
        self.classes_ = self.bag_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.bag_.predict_proba(X)


def _columns(outputs: dict, names: Sequence[str]):
    """The named blocks' outputs side by side: sparse if any of them is, else dense."""
    parts = [outputs[name] for name in names]
    if any(sp.issparse(part) for part in parts):
        return sp.hstack([sp.csr_matrix(part) for part in parts]).tocsr()
    return np.hstack(parts)


class BlendedClassifier(ClassifierMixin, BaseEstimator):
    """Feature blocks computed once, several heads: each head reads the blocks it names, and their
    probabilities are averaged with the heads' weights.

    ``blocks`` is a list of ``(name, transformer)``, which read the input, or ``(name, transformer, block
    names)``, which read earlier blocks' outputs (a projection of the embeddings, say, without computing
    them again); ``heads`` a list of ``(name, classifier, block names)``; ``weights`` one weight per head.
    Like scikit-learn's soft ``VotingClassifier``, but the feature blocks (rule votes, coherence, the
    encoder calls) run once per fit or predict instead of once per head.
    """

    def __init__(self, blocks, heads, weights) -> None:
        self.blocks, self.heads, self.weights = blocks, heads, weights

    def _outputs(self, X, fit: bool = False, y=None) -> dict:
        if fit:
            self.blocks_ = [(name, clone(block), *reads) for name, block, *reads in self.blocks]
        outputs: dict = {}
        for name, block, *reads in self.blocks_:
            source = _columns(outputs, reads[0]) if reads else X
            outputs[name] = block.fit_transform(source, y) if fit else block.transform(source)
        return outputs

    def fit(self, X, y) -> "BlendedClassifier":
        if len(self.weights) != len(self.heads):
            raise ValueError(f"{len(self.heads)} heads but {len(self.weights)} weights")
        outputs = self._outputs(X, fit=True, y=y)
        self.heads_ = []
        for name, head, reads in self.heads:
            columns = _columns(outputs, reads)
            level = logging.INFO if columns.shape[0] >= PROGRESS_ROWS else logging.DEBUG  # a line where it takes seconds
            log.log(level, "fitting the %s head: %d rows x %d columns", name, *columns.shape)
            self.heads_.append((name, clone(head).fit(columns, y), tuple(reads)))
        self.classes_ = self.heads_[0][1].classes_
        if any(list(head.classes_) != list(self.classes_) for _, head, _ in self.heads_):
            raise ValueError("the heads learned different classes")
        return self

    def predict_proba(self, X) -> np.ndarray:
        outputs = self._outputs(X)
        weights = np.asarray(self.weights, dtype=float) / float(np.sum(self.weights))
        return sum(weight * head.predict_proba(_columns(outputs, reads))
                   for weight, (_, head, reads) in zip(weights, self.heads_))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
