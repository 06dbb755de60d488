"""The page-aware hybrid: feature blocks composed into scikit-learn pipelines with a blended head.

Blocks (see :mod:`training.blocks`): MiniLM sentence embeddings (last and inner layers), TF-IDF word and character
n-grams and the labelling rules' votes, plus page context that the config switches on or off
block by block: the neighbours' embeddings and votes, the page's mean embedding (what the page is
about), the whole sentence of a wrapped line, how well the sentence fits the page's story
(coherence), the position on the page, the line's shape and how many training pages repeat the line.

The heads: a logistic regression over every block, and, each with a weight relative to its 1, a
bag of multi-layer perceptrons over the dense blocks, gradient-boosted trees over the small
context blocks plus a PCA summary of the embeddings, and (off by default) a bidirectional GRU over
each page's sequence of sentence vectors. Their probabilities are averaged (like
scikit-learn's soft ``VotingClassifier``, but the blocks run once). The perceptrons and the trees
can combine context (a short line *and* off the story *and* near the page end) where the linear head
can only add it up. The whole fitted model (with the rules it votes with and the recurrence it
learned) is saved, so later rule edits never change an exported model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from training.models import storage
from training.models.blocks import (InnerLayersEmbedding, LineShape, PageCoherence, PageEmbedding, PageOrder,
                                    PagePosition, PrincipalComponents, Recurrence, RuleVotes, SentenceEmbedding,
                                    WholeSentenceEmbedding, WordNgrams, find_blocks, save_encoder_files,
                                    use_encoder_files)
from training.models.encoder import EncoderParams
from training.models.families.base import FamilyEstimator
from training.models.heads import BlendedClassifier, PageSequenceHead, PerceptronBag


class Params(EncoderParams):
    rules: str = "configs/rules/default.yaml"  # rule file whose votes become features ("" = none)
    ngram_max: int = Field(2, ge=0, le=4)  # TF-IDF word n-grams 1..ngram_max (0 = no TF-IDF)
    min_df: int = Field(2, ge=1)
    char_ngram_max: int = Field(4, ge=0, le=6)  # TF-IDF character n-grams 2..char_ngram_max (0 = none)
    neighbour_embeddings: int = Field(1, ge=0, le=5)  # embeddings of this many previous/next sentences (0 = off)
    neighbour_pooling: Literal["concat", "mean"] = "mean"  # neighbours' embeddings side by side, or their mean
    neighbour_votes: int = Field(1, ge=0, le=5)  # rule votes of this many previous/next sentences (0 = off)
    page_embedding: bool = True  # the mean embedding of the whole page (what the page is about)
    inner_layers: bool = True  # the sentence's embedding pooled from the encoder's inner layers (surface form)
    whole_sentence: bool = True  # a wrapped line also reads the embedding of its whole sentence
    coherence: bool = True  # cosine similarity to the page's story and neighbours
    position: bool = True  # position from the start and from the end of the page
    shape: bool = True  # line length, terminal punctuation, capitalisation, digits
    recurrence: bool = True  # how many training pages carry the same line
    C: float = Field(2.0, gt=0)
    class_weight: Optional[Literal["balanced"]] = "balanced"
    max_iter: int = Field(3000, ge=10)
    mlp_weight: float = Field(1.0, ge=0)  # weight of the perceptron bag's probabilities, relative to the linear head's 1 (0 = off)
    mlp_hidden: int = Field(256, ge=8)  # hidden units of each perceptron
    mlp_alpha: float = Field(0.01, ge=0)  # L2 penalty of each perceptron
    mlp_bag: int = Field(3, ge=1, le=10)  # perceptrons trained with different seeds, probabilities averaged
    tree_weight: float = Field(1.0, ge=0)  # weight of the gradient-boosted trees, relative to the linear head's 1 (0 = off)
    tree_components: int = Field(32, ge=1)  # PCA components of the embeddings that the trees read
    sequence_weight: float = Field(0.0, ge=0)  # weight of the page-sequence head (a BiGRU over each page) (0 = off)
    sequence_hidden: int = Field(128, ge=8)  # GRU units per direction
    sequence_epochs: int = Field(20, ge=1)  # passes over the training pages
    sequence_dropout: float = Field(0.2, ge=0, lt=1)  # dropout on the GRU's inputs and outputs while training


def _encoder(params: Params) -> dict:
    return dict(encoder=params.encoder, max_length=params.max_length, batch_size=params.batch_size,
                backend=params.backend)


def _embedding_blocks(params: Params) -> list[tuple[str, object]]:
    """The wide blocks: embedding vectors of the sentence, its neighbours, its page, its whole sentence."""
    encoder = _encoder(params)
    blocks = [("embedding", SentenceEmbedding(**encoder, neighbours=params.neighbour_embeddings,
                                              pooling=params.neighbour_pooling))]
    if params.inner_layers:
        blocks.append(("inner_layers", InnerLayersEmbedding(**encoder)))
    if params.page_embedding:
        blocks.append(("page", PageEmbedding(**encoder)))
    if params.whole_sentence:
        blocks.append(("whole_sentence", WholeSentenceEmbedding(**encoder)))
    return blocks


def _context_blocks(params: Params) -> list[tuple[str, object]]:
    """The narrow blocks: a handful of columns each (coherence, votes, position, shape, recurrence)."""
    blocks = []
    if params.coherence:
        blocks.append(("coherence", PageCoherence(**_encoder(params))))
    if params.rules:
        blocks.append(("votes", RuleVotes(params.rules, neighbours=params.neighbour_votes)))
    if params.position:
        blocks.append(("position", PagePosition()))
    if params.shape:
        blocks.append(("shape", LineShape()))
    if params.recurrence:
        blocks.append(("recurrence", Recurrence()))
    return blocks


def _sparse_blocks(params: Params) -> list[tuple[str, object]]:
    """The TF-IDF blocks (their width is learned): only the linear head reads them."""
    blocks = []
    if params.ngram_max:
        blocks.append(("ngrams", WordNgrams(params.ngram_max, params.min_df)))
    if params.char_ngram_max:
        blocks.append(("chars", WordNgrams(params.char_ngram_max, params.min_df, analyzer="char_wb")))
    return blocks


def _sequence_inputs(params: Params, names: list[str]) -> tuple[list[tuple[str, object]], list[str]]:
    """The blocks the page-sequence head needs beyond ``names`` (the dense blocks), and what it reads: the page
    order, the sentence's own embedding (not its neighbours': the GRU reads the page itself), and the inner
    layers, position and shape where the config has them."""
    blocks: list[tuple[str, object]] = [("page_order", PageOrder())]
    vector = "embedding"
    if params.neighbour_embeddings:  # that block holds the neighbours' vectors too; the encoder's cache has the own
        vector = "sentence_vector"
        blocks.append((vector, SentenceEmbedding(**_encoder(params))))
    return blocks, ["page_order", vector] + [name for name in ("inner_layers", "position", "shape") if name in names]


def build_pipeline(params: Params, seed: int | None):
    """The unfitted model over records: every block → logistic regression, or, with ``mlp_weight``,
    ``tree_weight`` or ``sequence_weight`` > 0, that blended with perceptrons, trees and/or the page-sequence
    head (blocks computed once for all heads)."""
    linear = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter,
                                random_state=seed)
    embeddings, context, sparse = _embedding_blocks(params), _context_blocks(params), _sparse_blocks(params)
    dense = embeddings + context  # fixed, dense width: what the perceptrons read
    if not params.mlp_weight and not params.tree_weight and not params.sequence_weight:
        return Pipeline([("features", FeatureUnion(dense + sparse)), ("head", linear)])
    names = [name for name, _ in dense]
    blocks, heads, weights = dense + sparse, [("linear", linear, names + [name for name, _ in sparse])], [1.0]
    if params.mlp_weight:
        perceptrons = Pipeline([("scale", StandardScaler()),
                                ("bag", PerceptronBag(params.mlp_hidden, params.mlp_alpha, params.mlp_bag,
                                                      random_state=seed))])
        heads.append(("perceptron", perceptrons, names))
        weights.append(params.mlp_weight)
    if params.tree_weight:  # the trees read a PCA of the embedding blocks' outputs (not computed again) + the context
        summarised = [name for name, _ in embeddings if name != "whole_sentence"]
        blocks.append(("embedding_summary", PrincipalComponents(params.tree_components, random_state=seed),
                       summarised))
        trees = HistGradientBoostingClassifier(class_weight=params.class_weight, random_state=seed)
        heads.append(("tree", trees, ["embedding_summary"] + [name for name, _ in context]))
        weights.append(params.tree_weight)
    if params.sequence_weight:
        needed, reads = _sequence_inputs(params, names)
        blocks.extend(needed)
        sequence = PageSequenceHead(params.sequence_hidden, params.sequence_epochs, params.sequence_dropout,
                                    class_weight=params.class_weight, random_state=seed)
        heads.append(("sequence", sequence, reads))
        weights.append(params.sequence_weight)
    return BlendedClassifier(blocks, heads, weights)


class MiniLMHybrid(FamilyEstimator):
    """Learned state: ``pipeline_`` (the blocks and heads of :func:`build_pipeline`, fitted), ``classes_``."""

    Params = Params
    FILE = "pipeline.skops"
    RULES_FILE = "rules.yaml"  # a readable copy of the rules the saved pipeline votes with

    def _fit(self, records, y, params: Params) -> None:
        self.pipeline_ = build_pipeline(params, self.random_state).fit(records, y)

    def _class_proba(self, records):
        return self.pipeline_.predict_proba(records), self.pipeline_.classes_

    @property
    def rule_votes(self) -> Optional[RuleVotes]:
        """The fitted rule-votes block (None before ``fit`` or without rules)."""
        found = find_blocks(self.pipeline_, RuleVotes) if hasattr(self, "pipeline_") else []
        return found[0] if found else None

    def save(self, folder: Path) -> None:
        storage.dump(self.pipeline_, Path(folder) / self.FILE)
        save_encoder_files(self.pipeline_, folder)  # an ONNX backend's graph, so the folder is self-contained
        if self.rule_votes is not None:
            (Path(folder) / self.RULES_FILE).write_text(self.rule_votes.rules_text_, encoding="utf-8")

    def _load(self, folder: Path) -> None:
        self.pipeline_ = storage.load(folder / self.FILE)
        use_encoder_files(self.pipeline_, folder)


Model = MiniLMHybrid
