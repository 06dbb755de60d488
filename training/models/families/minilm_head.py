"""Frozen MiniLM sentence embeddings (mean-pooled, L2-normalised) + a logistic regression head.

Sees each sentence alone (no page context); the encoder is referenced, never copied (see
:mod:`training.encoder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import joblib
import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression

from training.models.encoder import MODEL_BUNDLE, EncoderParams, copy_bundle, embed
from training.models.families import full_proba
from training.data.records import as_records, texts_of


class Params(EncoderParams):
    C: float = Field(4.0, gt=0)  # inverse regularisation strength
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(2000, ge=10)


class Model:
    FILE = "head.joblib"
    ENCODER_FILE = "encoder.json"

    def __init__(self, params: Params, labels: list[str], seed: int) -> None:
        self.params, self.labels, self.seed = params, labels, seed
        self.bundle: Optional[Path] = None  # ONNX backends: the graph's folder (None: the cached export)
        self.head = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter,
                                       random_state=seed)

    def _embed(self, records) -> np.ndarray:
        return embed(texts_of(as_records(records)), self.params.encoder, self.params.max_length,
                     self.params.batch_size, backend=self.params.backend, bundle=self.bundle)

    def fit(self, records, labels) -> "Model":
        self.head.fit(self._embed(records), list(labels))
        return self

    def predict_proba(self, records) -> np.ndarray:
        if len(records) == 0:
            return np.zeros((0, len(self.labels)))
        proba = self.head.predict_proba(self._embed(records))
        return full_proba(proba, list(self.head.classes_), self.labels)

    def save(self, folder: Path) -> None:
        joblib.dump(self.head, Path(folder) / self.FILE)
        reference = {"encoder": self.params.encoder, "max_length": self.params.max_length,
                     "dimension": int(self.head.coef_.shape[1]), "backend": self.params.backend}
        if self.params.backend != "torch":  # the graph goes into the folder: it embeds with its own copy
            copy_bundle(self.params.encoder, self.params.backend, Path(folder) / MODEL_BUNDLE, source=self.bundle)
            reference["bundle"] = MODEL_BUNDLE
        (Path(folder) / self.ENCODER_FILE).write_text(json.dumps(reference, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        reference = json.loads((Path(folder) / cls.ENCODER_FILE).read_text(encoding="utf-8"))
        params = params.model_copy(update={"encoder": reference["encoder"], "max_length": reference["max_length"],
                                           "backend": reference.get("backend", "torch")})
        model = cls(params, labels, seed)
        if reference.get("bundle"):
            model.bundle = Path(folder) / reference["bundle"]
        model.head = joblib.load(Path(folder) / cls.FILE)
        return model
