"""Sentence records: the one shape every family, evaluation and prediction take.

A record is a sentence that keeps its page: ``text``, ``article_id`` and ``index`` (position in
the page, 0-based). Records travel as a pandas DataFrame with those three columns. Bare strings
become one-sentence pages, so a context-aware model sees no neighbours for them.

A text longer than ``corpus.MAX_UNIT`` (4,000) characters, longer than any sentence segmentation
makes, is read as the first piece segmentation would cut it into (:func:`readable`), by every
block of every family: that keeps the time per record bounded whatever is sent, and changes
nothing for the sentences of pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from training.data.corpus import MAX_UNIT, safe_pieces

_CHECKED = "sentence_records"  # DataFrame.attrs flag: already checked and normalised here


def as_records(data: Any) -> pd.DataFrame:
    """Records from a DataFrame, a ``datasets.Dataset``, sentences or a list of strings.

    A table needs a ``text`` column; without ``article_id`` every row is its own page; without
    ``index`` the rows of a page are taken in the order given.
    """
    if isinstance(data, pd.DataFrame) and data.attrs.get(_CHECKED):
        return data  # every block of a pipeline receives the same records: check them once
    if isinstance(data, str):
        raise TypeError("expected a list of sentences or a table of records, not a single string")
    if hasattr(data, "to_pandas") and not isinstance(data, pd.DataFrame):  # datasets.Dataset
        data = data.to_pandas()
    if isinstance(data, pd.DataFrame):
        out = _from_frame(data)
    else:
        out = _from_items(list(data))
    out.attrs[_CHECKED] = True
    return out


def readable(text: str) -> str:
    """What a model reads of one record's text: all of it up to ``MAX_UNIT`` characters.

    A longer text (a whole page sent as one "sentence", a run of 64,000 digits) is cut where a
    page line of that length is cut before segmentation (``corpus.safe_pieces``): after the last
    sentence end within its first 2,000 characters, else at the last space there, else at 2,000.
    """
    if len(text) <= MAX_UNIT:
        return text
    _, end = next(iter(safe_pieces(text)))
    return text[:end]


def _from_items(items: list) -> pd.DataFrame:
    if items and hasattr(items[0], "article_id") and hasattr(items[0], "text"):  # corpus.Sentence
        return pd.DataFrame({"text": [readable(s.text) for s in items],
                             "article_id": [str(s.article_id) for s in items],
                             "index": np.array([s.index for s in items], dtype=np.int64)})
    for position, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, not str")
    return pd.DataFrame({"text": [readable(t) for t in items],
                         "article_id": [f"_sentence-{i}" for i in range(len(items))],
                         "index": np.zeros(len(items), dtype=np.int64)})


def _from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    if "text" not in frame.columns:
        raise ValueError(f"records need a 'text' column (columns: {', '.join(map(str, frame.columns))})")
    texts = frame["text"].tolist()
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"row {position}: 'text' is {type(text).__name__}, not str")
    if "article_id" in frame.columns and frame["article_id"].notna().all():
        articles = frame["article_id"].astype(str).tolist()
    else:
        articles = [f"_sentence-{i}" for i in range(len(texts))]
    if "index" in frame.columns and frame["index"].notna().all():
        index = frame["index"].astype(np.int64).to_numpy()
    else:
        index = pd.Series(articles).groupby(articles, sort=False).cumcount().to_numpy(dtype=np.int64)
    return pd.DataFrame({"text": [readable(t) for t in texts], "article_id": articles, "index": index})


@dataclass(frozen=True)
class PageLayout:
    """Where each record sits on its page; neighbours are -1 at the page edges."""

    order: np.ndarray  # rows sorted by (article, index): rows of a page are contiguous, in order
    previous: np.ndarray
    next: np.ndarray
    index: np.ndarray  # position from the start, 0-based, counted over the records given
    from_end: np.ndarray  # position from the end, 0 = last
    size: np.ndarray  # sentences on the page


def page_layout(records: pd.DataFrame) -> PageLayout:
    articles = records["article_id"].to_numpy(dtype=object)
    n = len(records)
    order = np.lexsort((records["index"].to_numpy(), pd.factorize(articles)[0])) if n else np.zeros(0, dtype=int)
    previous = np.full(n, -1, dtype=np.int64)
    following = np.full(n, -1, dtype=np.int64)
    if n > 1:
        same = articles[order[1:]] == articles[order[:-1]]
        previous[order[1:][same]] = order[:-1][same]
        following[order[:-1][same]] = order[1:][same]
    codes = pd.factorize(articles)[0]
    size = np.bincount(codes, minlength=codes.max() + 1 if n else 0)[codes] if n else np.zeros(0, dtype=int)
    position = np.zeros(n, dtype=np.int64)
    if n:
        starts = np.r_[True, articles[order[1:]] != articles[order[:-1]]]
        run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        position[order] = np.arange(n) - run_start
    return PageLayout(order, previous, following, position, size - 1 - position, size)


def texts_of(records: pd.DataFrame) -> list[str]:
    return records["text"].tolist()


def take(records: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """The given rows, re-indexed 0..n-1."""
    return records.iloc[np.asarray(rows, dtype=np.int64)].reset_index(drop=True)
