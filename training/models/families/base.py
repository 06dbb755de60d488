"""The shared base of the model families: scikit-learn classifiers over sentence records.

A family's parameters are its config keys (the fields of its pydantic ``Params``, which stay the
config schema) plus ``labels`` (the columns of ``predict_proba``, in order; None: the classes seen in
``fit``) and ``random_state``. The base derives the family's keyword-only ``__init__`` from ``Params``,
so every default lives in one place, and stores the values as given: ``get_params``, ``set_params``
and ``sklearn.base.clone`` work as for any scikit-learn estimator. ``fit`` validates them with
``Params`` and sets the learned state (names ending in ``_``).

A family implements ``_fit(records, y, params)``, ``_class_proba(records)`` (probabilities and the
classes their columns follow), ``save(folder)`` and ``_load(folder)``; records are a DataFrame of
``text``, ``article_id`` and ``index`` (see :mod:`training.data.records`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from training.core.seeding import seed_everything
from training.data.records import as_records


def full_proba(proba: np.ndarray, known: Sequence, labels: Sequence) -> np.ndarray:
    """Spread probabilities over ``known`` classes into columns for every label (absent ones 0)."""
    labels = list(labels)
    out = np.zeros((proba.shape[0], len(labels)))
    for column, name in enumerate(known):
        out[:, labels.index(name)] = proba[:, column]
    return out


def _derived_init(cls: type) -> Any:
    """A keyword-only ``__init__`` whose parameters are ``cls.Params``' fields, ``cls.hooks``, ``labels`` and
    ``random_state``, with their defaults; it stores each value as given (scikit-learn's rule for estimators)."""
    defaults = {name: field.default for name, field in cls.Params.model_fields.items()}
    defaults.update(cls.hooks, labels=None, random_state=None)

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument '{unknown[0]}'")
        for name, default in defaults.items():
            setattr(self, name, params.get(name, default))

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__signature__ = inspect.Signature(  # what get_params reads
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default) for name, default in defaults.items()])
    return __init__


class FamilyEstimator(ClassifierMixin, BaseEstimator):
    """A model family as a scikit-learn classifier: records (or a list of one-sentence strings) in, probabilities out."""

    Params: ClassVar[type[BaseModel]]  # the family's config keys: set by each family
    hooks: ClassVar[dict[str, Any]] = {}  # parameters that are not config keys (callbacks), with their defaults

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in vars(cls):
            cls.__init__ = _derived_init(cls)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # sentence records or strings, not a numeric matrix
        tags.input_tags.string = True
        return tags

    def _params(self) -> BaseModel:
        """The config parameters as they are now, validated by the family's ``Params``."""
        return self.Params.model_validate({name: getattr(self, name) for name in self.Params.model_fields})

    def fit(self, X, y) -> "FamilyEstimator":
        # every fit starts from the same process-wide random state (what the training job used to set
        # before building each model), so a fit never depends on what ran before it in the process
        if self.random_state is not None:
            seed_everything(self.random_state)
        records, y = as_records(X), list(y)
        if len(records) != len(y):
            raise ValueError(f"{len(records)} records but {len(y)} labels")
        self.classes_ = np.asarray(list(self.labels) if self.labels is not None else sorted(set(y)))
        unknown = set(y) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(f"labels {sorted(map(str, unknown))} are not among labels={self.classes_.tolist()}")
        self._fit(records, y, self._params())
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities, one column per class of ``classes_`` (0 for a class the fit never saw)."""
        check_is_fitted(self, "classes_")
        records = as_records(X)
        if len(records) == 0:
            return np.zeros((0, len(self.classes_)))
        proba, known = self._class_proba(records)
        return full_proba(proba, known, self.classes_)

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    @classmethod
    def load(cls, folder: Path, params: dict[str, Any], labels: Sequence, random_state: int | None = None,
             ) -> "FamilyEstimator":
        """A fitted model from an exported folder (``params`` as the manifest keeps them)."""
        model = cls(**cls.Params.model_validate(params).model_dump(), labels=list(labels), random_state=random_state)
        model.classes_ = np.asarray(model.labels)
        model._load(Path(folder))
        return model

    def _fit(self, records, y: list, params: BaseModel) -> None:
        raise NotImplementedError

    def _class_proba(self, records) -> tuple[np.ndarray, Sequence]:
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def _load(self, folder: Path) -> None:
        raise NotImplementedError
