"""The page-aware hybrid: feature blocks composed into one scikit-learn pipeline with a linear head.

Blocks (see :mod:`training.blocks`): MiniLM sentence embeddings, TF-IDF word and character
n-grams and the labelling rules' votes, plus page context that the config switches on or off
block by block: the neighbours' embeddings and votes, the page's mean embedding (what the page is
about), the position on the page, the line's shape and how many training pages repeat the line. The whole fitted pipeline (with the rules it votes with and the
recurrence it learned) is saved with the model, so later rule edits never change an exported model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import joblib
import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from training.blocks import (LineShape, PageEmbedding, PagePosition, Recurrence, RuleVotes, SentenceEmbedding, WordNgrams,
                             save_encoder_files, use_encoder_files)
from training.encoder import EncoderParams
from training.families import full_proba
from training.records import as_records


class Params(EncoderParams):
    rules: str = "configs/rules/default.yaml"  # rule file whose votes become features ("" = none)
    ngram_max: int = Field(2, ge=0, le=4)  # TF-IDF word n-grams 1..ngram_max (0 = no TF-IDF)
    min_df: int = Field(2, ge=1)
    char_ngram_max: int = Field(4, ge=0, le=6)  # TF-IDF character n-grams 2..char_ngram_max (0 = none)
    neighbour_embeddings: int = Field(1, ge=0, le=5)  # embeddings of this many previous/next sentences (0 = off)
    neighbour_votes: int = Field(1, ge=0, le=5)  # rule votes of this many previous/next sentences (0 = off)
    page_embedding: bool = True  # the mean embedding of the whole page (what the page is about)
    position: bool = True  # position from the start and from the end of the page
    shape: bool = True  # line length, terminal punctuation, capitalisation, digits
    recurrence: bool = True  # how many training pages carry the same line
    C: float = Field(2.0, gt=0)
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(3000, ge=10)


def build_pipeline(params: Params, seed: int) -> Pipeline:
    """The unfitted pipeline: records → FeatureUnion of blocks → logistic regression."""
    blocks = [("embedding", SentenceEmbedding(params.encoder, params.max_length, params.batch_size,
                                               neighbours=params.neighbour_embeddings, backend=params.backend))]
    if params.page_embedding:
        blocks.append(("page", PageEmbedding(params.encoder, params.max_length, params.batch_size,
                                             backend=params.backend)))
    if params.ngram_max:
        blocks.append(("ngrams", WordNgrams(params.ngram_max, params.min_df)))
    if params.char_ngram_max:
        blocks.append(("chars", WordNgrams(params.char_ngram_max, params.min_df, analyzer="char_wb")))
    if params.rules:
        blocks.append(("votes", RuleVotes(params.rules, neighbours=params.neighbour_votes)))
    if params.position:
        blocks.append(("position", PagePosition()))
    if params.shape:
        blocks.append(("shape", LineShape()))
    if params.recurrence:
        blocks.append(("recurrence", Recurrence()))
    head = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter,
                              random_state=seed)
    return Pipeline([("features", FeatureUnion(blocks)), ("head", head)])


class Model:
    FILE = "pipeline.joblib"
    RULES_FILE = "rules.yaml"  # a readable copy of the rules the saved pipeline votes with

    def __init__(self, params: Params, labels: list[str], seed: int) -> None:
        self.params, self.labels, self.seed = params, labels, seed
        self.pipeline = build_pipeline(params, seed)

    def fit(self, records, labels) -> "Model":
        self.pipeline.fit(as_records(records), list(labels))
        return self

    def predict_proba(self, records) -> np.ndarray:
        if len(records) == 0:
            return np.zeros((0, len(self.labels)))
        proba = self.pipeline.predict_proba(as_records(records))
        return full_proba(proba, list(self.pipeline.classes_), self.labels)

    @property
    def rule_votes(self) -> Optional[RuleVotes]:
        return dict(self.pipeline.named_steps["features"].transformer_list).get("votes")

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / self.FILE)
        save_encoder_files(self.pipeline, folder)  # an ONNX backend's graph, so the folder is self-contained
        if self.rule_votes is not None:
            (Path(folder) / self.RULES_FILE).write_text(self.rule_votes.rules_text_, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        model = cls(params, labels, seed)
        model.pipeline = joblib.load(Path(folder) / cls.FILE)
        use_encoder_files(model.pipeline, folder)
        return model
