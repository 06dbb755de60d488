"""Feature blocks: scikit-learn transformers that turn sentence records into feature columns.

Each block takes records (a DataFrame with ``text``, ``article_id``, ``index``; see
:mod:`training.records`) and returns a matrix with one row per record, in the order given.
``__init__`` only stores parameters; whatever a block learns (TF-IDF vocabulary, the rules it
votes with, lines that recur across training pages) is set in ``fit`` and saved with the model,
so a single new page gets the same features at predict time as the training corpus did.
Families compose blocks with a ``FeatureUnion`` and a head (see :mod:`training.families.minilm_hybrid`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer

from training.core.config import PROJECT_ROOT
from training.data.corpus import Sentence
from training.models.encoder import MODEL_BUNDLE, PACKAGED, copy_bundle, embed
from training.data.records import as_records, page_layout, texts_of
from training.labelling.rules import RuleSet, apply_rules, line_key, line_shape, load_rules, recurrence_table

MAX_VOTES = 3  # vote counts per label are capped and scaled to [0, 1]


def _neighbour_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` with zero rows where ``rows`` is -1 (page edge)."""
    out = np.zeros((len(rows), matrix.shape[1]), dtype=matrix.dtype)
    present = rows >= 0
    out[present] = matrix[rows[present]]
    return out


def _with_neighbours(records, matrix: np.ndarray, window: int = 1, pooling: str = "concat") -> np.ndarray:
    """``matrix`` with the rows of the ``window`` previous and next sentences of the same page beside it:
    each one (``pooling="concat"``) or their mean, zeros counted at the page edges (``"mean"``)."""
    layout = page_layout(records)
    parts = []
    for step in (layout.previous, layout.next):
        rows = np.arange(len(records))
        for _ in range(window):
            rows = np.where(rows >= 0, step[np.maximum(rows, 0)], -1)
            parts.append(_neighbour_rows(matrix, rows))
    if pooling == "mean":
        parts = [np.mean(parts, axis=0)]
    return np.hstack([matrix, *parts])


def _pages(records) -> list[np.ndarray]:
    """The rows of each page, in page order."""
    layout = page_layout(records)
    articles = records["article_id"].to_numpy(dtype=object)[layout.order]
    starts = np.flatnonzero(np.r_[True, articles[1:] != articles[:-1]]) if len(articles) else np.zeros(0, int)
    return np.split(layout.order, starts[1:])


def whole_sentences(records) -> list[str]:
    """Each record's text, or for a line that a page wraps mid-sentence (no sentence end, and the next
    line goes on in lower case) the whole sentence its lines make together: the guideline labels
    every piece as the whole sentence, so the model should read it."""
    texts = texts_of(records)
    whole = list(texts)
    for rows in _pages(records):
        start = 0
        while start < len(rows):
            end = start
            while (end + 1 < len(rows) and not line_shape(texts[rows[end]])[2]
                   and texts[rows[end + 1]].strip()[:1].islower()):
                end += 1
            if end > start:
                joined = " ".join(texts[r].strip() for r in rows[start:end + 1])
                for r in rows[start:end + 1]:
                    whole[r] = joined
            start = end + 1
    return whole


class _Embedding(BaseEstimator, TransformerMixin):
    """Shared by the embedding blocks: their parameters, the encoder call and its backend (see :mod:`training.encoder`).

    With an ONNX backend the graph comes from ``bundle_``: None while training (the cached export),
    the model folder's own copy once loaded (see :func:`save_encoder_files`, :func:`use_encoder_files`).
    Nothing is learned: ``fit`` returns the block as it is.
    """

    def __init__(self, encoder: str = PACKAGED, max_length: int = 128, batch_size: int = 32,
                 backend: str = "torch") -> None:
        self.encoder, self.max_length, self.batch_size, self.backend = encoder, max_length, batch_size, backend

    def fit(self, X, y=None) -> "_Embedding":
        return self

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # plain values only: a folder's graph path as text, if set
        if state.get("bundle_") is not None:
            state["bundle_"] = str(state["bundle_"])
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if getattr(self, "bundle_", None) is not None:
            self.bundle_ = Path(self.bundle_)

    def _vectors(self, records, texts: list[str] | None = None, layers: str = "last") -> np.ndarray:
        return embed(texts_of(records) if texts is None else texts, self.encoder, self.max_length, self.batch_size,
                     backend=self.backend, bundle=getattr(self, "bundle_", None), layers=layers)


class SentenceEmbedding(_Embedding):
    """The sentence's MiniLM embedding and those of the ``neighbours`` previous and next sentences."""

    def __init__(self, encoder: str = PACKAGED, max_length: int = 128, batch_size: int = 32,
                 neighbours: int = 0, backend: str = "torch", pooling: str = "concat") -> None:
        self.encoder, self.max_length, self.batch_size, self.neighbours = encoder, max_length, batch_size, neighbours
        self.backend, self.pooling = backend, pooling

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        vectors = self._vectors(records)
        return _with_neighbours(records, vectors, self.neighbours, self.pooling) if self.neighbours else vectors


class InnerLayersEmbedding(_Embedding):
    """The sentence's embedding pooled from the encoder's inner layers (see :mod:`training.encoder`):
    closer to the line's surface (wording, fragments, markup) than the last layer's meaning, which is
    much of what tells page chrome from prose."""

    def transform(self, X) -> np.ndarray:
        return self._vectors(as_records(X), layers="inner")


class WholeSentenceEmbedding(_Embedding):
    """The embedding of the whole sentence a wrapped line belongs to (its own text when not wrapped)."""

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        return self._vectors(records, whole_sentences(records))


class PageCoherence(_Embedding):
    """How well the sentence fits its page's story: cosine similarity of its embedding to the page's
    mean, to the mean of the page's prose lines (10+ words ending like a sentence), to the previous and
    next sentence, its rank on the page, and the same averaged over 3 lines either side. Related-article
    teasers, comments and other chrome read like prose but stray from the story."""

    WINDOW = 3

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        vectors = self._vectors(records).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        texts = texts_of(records)
        out = np.zeros((len(records), 8))
        for rows in _pages(records):
            page = vectors[rows]
            prose = np.array([words >= 10 and terminal for words, _, terminal in map(line_shape, (texts[r] for r in rows))])
            to_page = page @ _unit(page.mean(axis=0))
            to_prose = page @ _unit(page[prose].mean(axis=0)) if prose.sum() >= 2 else to_page
            adjacent = (page[1:] * page[:-1]).sum(axis=1)
            rank = (np.argsort(np.argsort(to_prose)) + 0.5) / len(rows)
            window = np.array([to_prose[max(0, j - self.WINDOW):j + self.WINDOW + 1].mean() for j in range(len(rows))])
            out[rows] = np.column_stack([to_page, to_prose, np.r_[0.0, adjacent], np.r_[adjacent, 0.0], rank, window,
                                         to_prose - window, np.full(len(rows), to_prose.mean())])
        return out


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


class PageEmbedding(_Embedding):
    """The mean embedding of the sentence's page (what the page is about), L2-normalised."""

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        vectors = self._vectors(records)
        codes, _ = pd.factorize(records["article_id"])
        sums = np.zeros((codes.max() + 1 if len(codes) else 0, vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, codes, vectors)
        means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-9)
        return means[codes].astype(np.float32)


def _parts(value) -> list:
    """The estimators in a fitted attribute: itself, or those in a list of estimators or of (name, estimator, ...)."""
    if hasattr(value, "fit"):
        return [value]
    if isinstance(value, (list, tuple)):
        return [part for item in value for part in (item if isinstance(item, tuple) else (item,)) if hasattr(part, "fit")]
    return []


def find_blocks(estimator, kind: type) -> list:
    """The blocks of type ``kind`` anywhere inside pipelines, feature unions and fitted composites (their
    ``name_`` estimator attributes, not the unfitted templates among their parameters), in order."""
    found, stack = [], [estimator]
    while stack:
        node = stack.pop(0)
        if isinstance(node, kind):
            found.append(node)
        children = [child for _, child, *_ in getattr(node, "steps", []) + getattr(node, "transformer_list", [])]
        if isinstance(node, BaseEstimator) and not children:  # any other composite: its fitted parts
            children = [part for name, value in vars(node).items() if name.endswith("_") for part in _parts(value)]
        stack.extend(children)
    return found


def _onnx_blocks(estimator) -> list[_Embedding]:
    """The embedding blocks with an ONNX backend anywhere inside the model."""
    return [block for block in find_blocks(estimator, _Embedding) if block.backend != "torch"]


def save_encoder_files(estimator, folder: Path) -> None:
    """Copy the ONNX graph (and tokenizer) its embedding blocks run into ``folder/encoder-onnx``: a
    model folder then embeds with its own files, wherever it is moved."""
    for block in _onnx_blocks(estimator):
        copy_bundle(block.encoder, block.backend, Path(folder) / MODEL_BUNDLE, source=getattr(block, "bundle_", None))


def use_encoder_files(estimator, folder: Path) -> None:
    """Point the loaded embedding blocks with an ONNX backend at the model folder's own copy."""
    for block in _onnx_blocks(estimator):
        block.bundle_ = Path(folder) / MODEL_BUNDLE


class PrincipalComponents(BaseEstimator, TransformerMixin):
    """scikit-learn's PCA with at most ``components`` components: fewer when the training rows or
    columns are fewer (a tiny training set still fits)."""

    def __init__(self, components: int = 32, random_state: int | None = None) -> None:
        self.components, self.random_state = components, random_state

    def fit(self, X, y=None) -> "PrincipalComponents":
        self.pca_ = PCA(min(self.components, *np.shape(X)), random_state=self.random_state).fit(X)
        return self

    def transform(self, X) -> np.ndarray:
        return self.pca_.transform(X)


class WordNgrams(BaseEstimator, TransformerMixin):
    """TF-IDF n-grams of the sentence text: words 1..``ngram_max`` (``analyzer="word"``) or
    characters 2..``ngram_max`` inside word boundaries (``analyzer="char_wb"``: markup, symbols, dates)."""

    def __init__(self, ngram_max: int = 2, min_df: int = 2, analyzer: str = "word") -> None:
        self.ngram_max, self.min_df, self.analyzer = ngram_max, min_df, analyzer

    def _vectorizer(self) -> TfidfVectorizer:
        low = 1 if self.analyzer == "word" else 2
        return TfidfVectorizer(ngram_range=(low, self.ngram_max), min_df=self.min_df, sublinear_tf=True,
                               strip_accents="unicode", analyzer=self.analyzer, lowercase=True)

    def fit(self, X, y=None) -> "WordNgrams":
        self.vectorizer_ = self._vectorizer().fit(texts_of(as_records(X)))
        return self

    def transform(self, X):
        return self.vectorizer_.transform(texts_of(as_records(X)))


def _sentences(records) -> tuple[list[Sentence], np.ndarray]:
    """Records as corpus sentences in page order, and the page-order position of each record."""
    layout = page_layout(records)
    texts, articles, index = texts_of(records), records["article_id"].tolist(), layout.index
    ordered = [Sentence(f"{articles[r]}:{index[r]}", articles[r], int(index[r]), 0, len(texts[r]), texts[r])
               for r in layout.order]
    position = np.empty(len(records), dtype=np.int64)
    position[layout.order] = np.arange(len(records))
    return ordered, position


class RuleVotes(BaseEstimator, TransformerMixin):
    """The labelling rules' votes per label (capped counts in [0, 1]), run over whole pages.

    ``fit`` reads the rules file and learns which lines recur across training pages, so the
    recurrence rules fire on one new page as they did on the training corpus (and a page's votes
    never depend on the other pages in the batch). The ``neighbours`` previous and next
    sentences' votes are added beside the sentence's own.
    """

    def __init__(self, rules: str = "configs/rules/default.yaml", neighbours: int = 0) -> None:
        self.rules, self.neighbours = rules, neighbours

    def fit(self, X, y=None) -> "RuleVotes":
        path = Path(self.rules)
        path = path if path.is_absolute() else PROJECT_ROOT / path
        self.ruleset_ = load_rules(path)
        self.rules_text_ = path.read_text(encoding="utf-8")
        sentences, _ = _sentences(as_records(X))
        self.recurrence_ = recurrence_table(sentences)
        return self

    def __getstate__(self) -> dict:
        """The rules as their text, not the parsed rule set: a stored model holds plain data only."""
        state = dict(super().__getstate__())
        state.pop("ruleset_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if hasattr(self, "rules_text_"):  # fitted: parse the rules it was fitted with again
            self.ruleset_ = RuleSet.model_validate(yaml.safe_load(self.rules_text_))

    def label_matrix(self, X) -> np.ndarray:
        """The rules' label matrix (records, rules) in the order given, as :func:`apply_rules` makes it."""
        sentences, position = _sentences(as_records(X))
        return apply_rules(self.ruleset_, sentences, self.recurrence_)[position]

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        matrix = self.label_matrix(records)
        counts = np.stack([(matrix == k).sum(axis=1) for k in range(len(self.ruleset_.label_names))], axis=1)
        votes = np.minimum(counts, MAX_VOTES) / MAX_VOTES
        return _with_neighbours(records, votes, self.neighbours) if self.neighbours else votes


class PagePosition(BaseEstimator, TransformerMixin):
    """Where the sentence sits: first/last, relative position, distance from start and end, page size."""

    def fit(self, X, y=None) -> "PagePosition":
        return self

    def transform(self, X) -> np.ndarray:
        layout = page_layout(as_records(X))
        span = np.maximum(layout.size - 1, 1)
        return np.column_stack([
            layout.index == 0, layout.from_end == 0, layout.index / span,
            np.minimum(layout.index, 10) / 10, np.minimum(layout.from_end, 10) / 10,
            np.log1p(layout.size) / math.log(100),
        ]).astype(float)


class PageOrder(BaseEstimator, TransformerMixin):
    """Which page each record is on and where: a page code and the position on the page (0-based, in ``index``
    order), for a head that reads pages as sequences (:class:`~training.models.heads.PageSequenceHead`).

    The codes number the pages of the records given (in order of first appearance): exact and collision-free,
    unlike a hash of the id, and enough, since they only have to tell apart the pages of one call, whose
    blocks and heads run together. Nothing is learned.
    """

    def fit(self, X, y=None) -> "PageOrder":
        return self

    def transform(self, X) -> np.ndarray:
        records = as_records(X)
        codes, _ = pd.factorize(records["article_id"])
        return np.column_stack([codes, page_layout(records).index]).astype(np.float64).reshape(-1, 2)


class LineShape(BaseEstimator, TransformerMixin):
    """The line's shape: length, terminal punctuation, capitalisation, digits, list/byline marks."""

    def fit(self, X, y=None) -> "LineShape":
        return self

    def transform(self, X) -> np.ndarray:
        rows = []
        for text in texts_of(as_records(X)):
            words, capitalised, terminal = line_shape(text)
            stripped = text.strip()
            rows.append([
                min(words, 60) / 60, words <= 3, words <= 8, terminal, capitalised,
                sum(c.isdigit() for c in stripped) / max(len(stripped), 1),
                stripped[:1] in "-–—•*|>", stripped.endswith(":"), stripped.isupper(),
                "|" in stripped or "»" in stripped or "›" in stripped,
            ])
        return np.asarray(rows, dtype=float).reshape(-1, 10)


class Recurrence(BaseEstimator, TransformerMixin):
    """On how many training pages the line occurs (learned in ``fit``; 1 for an unseen line).

    Pages scored together never change each other's features, so a page gets the same answer
    alone or in any batch.
    """

    def fit(self, X, y=None) -> "Recurrence":
        sentences, _ = _sentences(as_records(X))
        self.recurrence_ = recurrence_table(sentences)
        return self

    def transform(self, X) -> np.ndarray:
        counts = np.array([max(1, self.recurrence_.get(line_key(t), 0)) for t in texts_of(as_records(X))],
                          dtype=float)
        return np.column_stack([np.log(counts) / math.log(50), counts >= 2, counts >= 3]).astype(float)
