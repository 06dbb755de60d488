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
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import BaggingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from training.core.console import stop_if_terminated

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
        stop_if_terminated()  # scikit-learn's perceptron swallows Ctrl-C and SIGTERM (it stops early, quietly)
        for perceptron in self.bag_.estimators_:
            # what only further training reads (the optimiser's moment estimates, a copy of the best weights
            # seen): a stored bag then holds each weight matrix once, not up to four times, and no optimiser
            for name in TRAINING_ONLY:
                vars(perceptron).pop(name, None)
        self.classes_ = self.bag_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.bag_.predict_proba(X)


def _page_runs(codes: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
    """The rows of each page (rows with the same code), ordered by position; pages in code order."""
    order = np.lexsort((positions, codes))
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]]) if len(order) else np.zeros(0, int)
    return np.split(order, starts[1:])


class PageSequenceHead(ClassifierMixin, BaseEstimator):
    """A one-layer bidirectional GRU over each page's sentences in page order: a class distribution per sentence
    that can depend on anything before or after it on the page, not only on its neighbours' features.

    Reads a matrix whose first two columns are a page code and the position on the page (a
    :class:`~training.models.blocks.PageOrder` block's output) and whose other columns are the sentence's features,
    standardised with the training rows' means and deviations. Rows come back in the order given.

    Trained with Adam on cross-entropy (class weights ``"balanced"`` like the other heads', or None) for a fixed
    number of ``epochs``, on mini-batches of ``batch_pages`` whole pages shuffled by a generator seeded with
    ``random_state``: same seed, bit-identical probabilities (torch runs it on one thread, whatever the machine's
    cores: see :func:`training.models.sequence_torch.one_thread`). At predict time each page runs
    alone (no padding), so a page gets the same probabilities alone or in any batch. The learned weights are kept
    as numpy arrays (``network_weights_``; a stored model holds plain data) and the torch network is rebuilt from
    them on first use: torch is imported only when the head is fitted or predicts (:mod:`.sequence_torch`).
    """

    def __init__(self, hidden: int = 128, epochs: int = 20, dropout: float = 0.2, learning_rate: float = 2e-3,
                 batch_pages: int = 16, class_weight: str | None = "balanced", random_state: int | None = None,
                 ) -> None:
        self.hidden, self.epochs, self.dropout, self.learning_rate = hidden, epochs, dropout, learning_rate
        self.batch_pages, self.class_weight, self.random_state = batch_pages, class_weight, random_state

    @staticmethod
    def _matrix(X) -> np.ndarray:
        X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] < 3:
            raise ValueError(f"expected columns page code, position, features...; got shape {X.shape}")
        return X

    def fit(self, X, y) -> "PageSequenceHead":
        from training.models import sequence_torch

        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight {self.class_weight!r}: expected 'balanced' or None")
        X, y = self._matrix(X), np.asarray(y)
        self.classes_, targets = np.unique(y, return_inverse=True)
        self.scaler_ = StandardScaler().fit(X[:, 2:])
        features = self.scaler_.transform(X[:, 2:]).astype(np.float32)
        weights = (compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=targets)
                   if self.class_weight == "balanced" else np.ones(len(self.classes_)))
        pages = _page_runs(X[:, 0], X[:, 1])
        self.network_weights_ = sequence_torch.train(
            [features[rows] for rows in pages], [targets[rows] for rows in pages], weights, self.hidden, self.epochs,
            self.dropout, self.learning_rate, self.batch_pages, self.random_state)
        vars(self).pop("_network", None)
        return self

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # the weights as arrays, not the torch network built from them
        state.pop("_network", None)
        return state

    def predict_proba(self, X) -> np.ndarray:
        from training.models import sequence_torch

        check_is_fitted(self, "network_weights_")
        X = self._matrix(X)
        out = np.zeros((len(X), len(self.classes_)))
        if not len(X):
            return out
        if getattr(self, "_network", None) is None:
            self._network = sequence_torch.network(self.network_weights_)
        features = self.scaler_.transform(X[:, 2:]).astype(np.float32)
        pages = _page_runs(X[:, 0], X[:, 1])
        for rows, logits in zip(pages, sequence_torch.page_logits(self._network, [features[rows] for rows in pages])):
            out[rows] = softmax(logits.astype(np.float64), axis=1)
        return out

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


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
            stop_if_terminated()
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
