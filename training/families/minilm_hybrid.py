"""Frozen MiniLM embeddings + TF-IDF n-grams + the labelling rules' votes, one logistic regression.

The embedding knows paraphrases, the n-grams know exact wording, and the rule votes carry what
the rules know about page chrome and keywords. The rules see the texts of one ``fit`` or
``predict_proba`` call as one sequence (neighbour rules look at the previous/next text), so
pass the sentences of an article in page order, as ``classify_article`` does. The rules file is
copied into the saved model, so later rule edits never change an exported model's predictions.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal, Optional, Sequence

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from training.config import PROJECT_ROOT
from training.corpus import Sentence
from training.families import full_proba
from training.families.minilm_head import PACKAGED, embed
from training.rules import RuleSet, apply_rules, load_rules

MAX_VOTES = 3  # vote counts per label are capped and scaled to [0, 1]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str = PACKAGED  # the packaged all-MiniLM-L6-v2, or a local model folder
    max_length: int = Field(128, ge=8, le=512)
    batch_size: int = Field(32, ge=1)
    rules: str = "configs/rules/default.yaml"  # rule file whose votes become features ("" = none)
    ngram_max: int = Field(2, ge=0, le=4)  # TF-IDF word n-grams 1..ngram_max (0 = no TF-IDF)
    min_df: int = Field(2, ge=1)
    C: float = Field(4.0, gt=0)
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(3000, ge=10)


class Model:
    FILE = "hybrid.joblib"
    RULES_FILE = "rules.yaml"

    def __init__(self, params: Params, labels: list[str], seed: int) -> None:
        self.params, self.labels, self.seed = params, labels, seed
        self.rules_path: Optional[Path] = None
        if params.rules:
            path = Path(params.rules)
            self.rules_path = path if path.is_absolute() else PROJECT_ROOT / path
        self.ruleset: Optional[RuleSet] = load_rules(self.rules_path) if self.rules_path else None
        self.tfidf = (TfidfVectorizer(ngram_range=(1, params.ngram_max), min_df=params.min_df, sublinear_tf=True,
                                      strip_accents="unicode") if params.ngram_max else None)
        self.head = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter,
                                       random_state=seed)

    def _votes(self, texts: list[str]) -> np.ndarray:
        """Capped vote counts per label, the texts taken as the sentences of one article in order."""
        sentences = [Sentence(f"batch:{i}", "batch", i, 0, len(t), t) for i, t in enumerate(texts)]
        matrix = apply_rules(self.ruleset, sentences)
        counts = np.stack([(matrix == k).sum(axis=1) for k in range(len(self.ruleset.label_names))], axis=1)
        return np.minimum(counts, MAX_VOTES) / MAX_VOTES

    def _features(self, texts: Sequence[str], fit: bool = False):
        texts = list(texts)
        blocks = [sparse.csr_matrix(embed(texts, self.params.encoder, self.params.max_length, self.params.batch_size))]
        if self.tfidf is not None:
            blocks.append(self.tfidf.fit_transform(texts) if fit else self.tfidf.transform(texts))
        if self.ruleset is not None:
            blocks.append(sparse.csr_matrix(self._votes(texts)))
        return sparse.hstack(blocks).tocsr()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "Model":
        self.head.fit(self._features(texts, fit=True), list(labels))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        return full_proba(self.head.predict_proba(self._features(texts)), list(self.head.classes_), self.labels)

    def save(self, folder: Path) -> None:
        joblib.dump({"tfidf": self.tfidf, "head": self.head}, Path(folder) / self.FILE)
        if self.rules_path is not None:
            shutil.copyfile(self.rules_path, Path(folder) / self.RULES_FILE)

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        copied = Path(folder) / cls.RULES_FILE
        params = params.model_copy(update={"rules": str(copied) if copied.is_file() else ""})
        model = cls(params, labels, seed)
        parts = joblib.load(Path(folder) / cls.FILE)
        model.tfidf, model.head = parts["tfidf"], parts["head"]
        return model
