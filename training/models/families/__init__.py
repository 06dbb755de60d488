"""Model families behind one small interface.

A family is a module exposing ``Params`` (a pydantic model of its config keys, importable
without torch) and ``Model`` with ``Model(params, labels, seed)``, ``fit(records, labels) -> self``,
``predict_proba(records)`` (an array whose columns follow ``labels``), ``save(folder)`` and
``Model.load(folder, params, labels, seed)``. Records are sentences that keep their page (a
DataFrame with ``text``, ``article_id``, ``index``; see :mod:`training.records`); a list of
strings is taken as one-sentence pages. Adding a family is one new module plus one line in
:data:`FAMILIES`; its parts (encoder, feature blocks, head) come from :mod:`training.encoder`
and :mod:`training.blocks`. Modules load lazily so the TF-IDF family never imports torch.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
from training.core.registry import FAMILIES, family_module, validate_params  # noqa: F401


class FamilyModel(Protocol):
    labels: list[str]

    def fit(self, records: Any, labels: Sequence[str]) -> "FamilyModel": ...

    def predict_proba(self, records: Any) -> np.ndarray: ...

    def save(self, folder) -> None: ...


def new_model(name: str, params: dict[str, Any], labels: Sequence[str], seed: int) -> FamilyModel:
    module = family_module(name)
    return module.Model(module.Params.model_validate(params), list(labels), seed)


def full_proba(proba: np.ndarray, known: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Spread probabilities over ``known`` classes into columns for every label (absent ones 0)."""
    out = np.zeros((proba.shape[0], len(labels)))
    for column, name in enumerate(known):
        out[:, list(labels).index(name)] = proba[:, column]
    return out
