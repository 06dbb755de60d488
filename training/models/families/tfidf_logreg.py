"""TF-IDF n-grams + logistic regression, one scikit-learn ``Pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from training.data.records import texts_of
from training.models import storage
from training.models.families.base import FamilyEstimator


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ngram_max: int = Field(2, ge=1, le=4)  # word n-grams from 1 to this
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)  # inverse regularisation strength
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(2000, ge=10)


class TfidfLogReg(FamilyEstimator):
    """Learned state: ``pipeline_`` (TF-IDF → logistic regression over the sentence texts), ``classes_``."""

    Params = Params
    FILE = "pipeline.skops"

    def _fit(self, records, y, params: Params) -> None:
        self.pipeline_ = Pipeline([
            ("tfidf", TfidfVectorizer(ngram_range=(1, params.ngram_max), min_df=params.min_df,
                                      sublinear_tf=params.sublinear_tf, strip_accents="unicode")),
            ("clf", LogisticRegression(C=params.C, class_weight=params.class_weight,
                                       max_iter=params.max_iter, random_state=self.random_state)),
        ]).fit(texts_of(records), y)

    def _class_proba(self, records):
        return self.pipeline_.predict_proba(texts_of(records)), self.pipeline_.classes_

    def save(self, folder: Path) -> None:
        storage.dump(self.pipeline_, Path(folder) / self.FILE)

    def _load(self, folder: Path) -> None:
        self.pipeline_ = storage.load(folder / self.FILE)


Model = TfidfLogReg
