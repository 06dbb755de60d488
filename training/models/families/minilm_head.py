"""Frozen MiniLM sentence embeddings (mean-pooled, L2-normalised) + a logistic regression head.

Sees each sentence alone (no page context); the encoder is referenced, never copied (see
:mod:`training.models.encoder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression

from training.data.records import texts_of
from training.models import storage
from training.models.encoder import MODEL_BUNDLE, EncoderParams, copy_bundle, embed
from training.models.families.base import FamilyEstimator


class Params(EncoderParams):
    C: float = Field(4.0, gt=0)  # inverse regularisation strength
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(2000, ge=10)


class MiniLMHead(FamilyEstimator):
    """Learned state: ``head_`` (the logistic regression over embeddings), ``classes_``; once loaded from a
    folder with an ONNX backend, ``bundle_`` (the folder's own copy of the graph; unset: the cached export)."""

    Params = Params
    FILE = "head.skops"
    ENCODER_FILE = "encoder.json"

    def _embed(self, records) -> np.ndarray:
        params = self._params()
        return embed(texts_of(records), params.encoder, params.max_length, params.batch_size,
                     backend=params.backend, bundle=getattr(self, "bundle_", None))

    def _fit(self, records, y, params: Params) -> None:
        head = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter,
                                  random_state=self.random_state)
        self.head_ = head.fit(self._embed(records), y)

    def _class_proba(self, records):
        return self.head_.predict_proba(self._embed(records)), self.head_.classes_

    def save(self, folder: Path) -> None:
        params = self._params()
        storage.dump(self.head_, Path(folder) / self.FILE)
        reference = {"encoder": params.encoder, "max_length": params.max_length,
                     "dimension": int(self.head_.coef_.shape[1]), "backend": params.backend}
        if params.backend != "torch":  # the graph goes into the folder: it embeds with its own copy
            copy_bundle(params.encoder, params.backend, Path(folder) / MODEL_BUNDLE,
                        source=getattr(self, "bundle_", None))
            reference["bundle"] = MODEL_BUNDLE
        (Path(folder) / self.ENCODER_FILE).write_text(json.dumps(reference, indent=2), encoding="utf-8")

    def _load(self, folder: Path) -> None:
        reference = json.loads((folder / self.ENCODER_FILE).read_text(encoding="utf-8"))
        # the encoder the head was fitted on, as the folder records it
        self.encoder, self.max_length = reference["encoder"], reference["max_length"]
        self.backend = reference.get("backend", "torch")
        if reference.get("bundle"):  # always the folder's own copy, whatever path the file names
            self.bundle_ = folder / MODEL_BUNDLE
        self.head_ = storage.load(folder / self.FILE)


Model = MiniLMHead
