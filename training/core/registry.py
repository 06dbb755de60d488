"""The model families by name: config keys name a family, this maps the name to its module.

Families are plugins: the config layer validates ``model.params`` with the family's ``Params`` by
looking the module up here at run time, so no lower layer imports model code, and adding a family
is one module under :mod:`training.models.families` plus one line here. Modules load lazily, so the
TF-IDF family never imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import BaseModel

FAMILIES: dict[str, str] = {
    "tfidf_logreg": "training.models.families.tfidf_logreg",
    "minilm_head": "training.models.families.minilm_head",
    "minilm_finetune": "training.models.families.minilm_finetune",
    "minilm_hybrid": "training.models.families.minilm_hybrid",
}


def family_module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}' (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name])


def validate_params(name: str, params: dict[str, Any]) -> BaseModel:
    return family_module(name).Params.model_validate(params)
