"""TF-IDF n-grams + logistic regression, one scikit-learn ``Pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from training.families import full_proba


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ngram_max: int = Field(2, ge=1, le=4)  # word n-grams from 1 to this
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)  # inverse regularisation strength
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(2000, ge=10)


class Model:
    FILE = "pipeline.joblib"

    def __init__(self, params: Params, labels: list[str], seed: int) -> None:
        self.params, self.labels, self.seed = params, labels, seed
        self.pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(ngram_range=(1, params.ngram_max), min_df=params.min_df,
                                      sublinear_tf=params.sublinear_tf, strip_accents="unicode")),
            ("clf", LogisticRegression(C=params.C, class_weight=params.class_weight,
                                       max_iter=params.max_iter, random_state=seed)),
        ])

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "Model":
        self.pipeline.fit(list(texts), list(labels))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        proba = self.pipeline.predict_proba(list(texts))
        return full_proba(proba, list(self.pipeline.classes_), self.labels)

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / self.FILE)

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        model = cls(params, labels, seed)
        model.pipeline = joblib.load(Path(folder) / cls.FILE)
        return model
