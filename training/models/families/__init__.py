"""Model families: scikit-learn classifiers over sentence records, one module each.

A family module exposes ``Params`` (a pydantic model of its config keys, importable without torch)
and ``Model``, its estimator class (a :class:`~training.models.families.base.FamilyEstimator`):
the config keys plus ``labels`` and ``random_state`` are its parameters, ``fit(records, labels)``
learns, ``predict_proba(records)`` answers with one column per class of ``classes_`` (= ``labels``),
``save(folder)`` and ``Model.load(folder, params, labels, random_state)`` keep it in a model folder.
Records are sentences that keep their page (a DataFrame with ``text``, ``article_id``, ``index``; see
:mod:`training.data.records`); a list of strings is taken as one-sentence pages. Adding a family is
one new module plus one line in :data:`FAMILIES`; its parts (encoder, feature blocks, head) come from
:mod:`training.models.encoder`, :mod:`training.models.blocks` and :mod:`training.models.heads`.
Modules load lazily so the TF-IDF family never imports torch.
"""

from __future__ import annotations

from typing import Any, Sequence

from training.core.registry import FAMILIES, family_module, validate_params  # noqa: F401
from training.models.families.base import FamilyEstimator, full_proba  # noqa: F401


def new_model(name: str, params: dict[str, Any], labels: Sequence[str] | None, seed: int | None) -> FamilyEstimator:
    """An unfitted estimator of family ``name`` from a config's ``model.params`` (validated here)."""
    module = family_module(name)
    return module.Model(**module.Params.model_validate(params).model_dump(),
                        labels=None if labels is None else list(labels), random_state=seed)
