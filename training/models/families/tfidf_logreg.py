"""TF-IDF n-grams + logistic regression, one scikit-learn ``Pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from training.models.families import full_proba
from training.data.records import as_records, texts_of


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

    def fit(self, records, labels) -> "Model":
        self.pipeline.fit(texts_of(as_records(records)), list(labels))
        return self

    def predict_proba(self, records) -> np.ndarray:
        if len(records) == 0:
            return np.zeros((0, len(self.labels)))
        proba = self.pipeline.predict_proba(texts_of(as_records(records)))
        return full_proba(proba, list(self.pipeline.classes_), self.labels)

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / self.FILE)

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        model = cls(params, labels, seed)
        model.pipeline = joblib.load(Path(folder) / cls.FILE)
        return model
