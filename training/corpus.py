"""Sources → sentence records.

Every non-blank line of an article is segmented with pysbd (a rule-based segmenter that knows
abbreviations such as "U.S." and "Gen."); a line break always ends a unit, because headlines,
captions and page chrome sit on lines of their own. Each sentence keeps its character offsets in
the article text so predictions can be mapped back onto the page.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from training.errors import InputError


@dataclass(frozen=True)
class Sentence:
    """One segmented unit of an article."""

    id: str  # "<article id>:<index>"
    article_id: str
    index: int  # position in the article, 0-based
    start: int  # character offsets into the article text: text == article[start:end]
    end: int
    text: str
    source: str = ""  # name of the corpus source it came from

    def to_dict(self) -> dict:
        return asdict(self)


_NON_BLANK = re.compile(r"\S")


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


MAX_UNIT = 4000  # the longest stretch pysbd sees at once (its time grows with the square of it)
CHUNK = 2000  # longer lines are cut into pieces of at most this many characters at safe points
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")
_SPACE = re.compile(r"\s+")


def safe_pieces(line: str) -> Iterable[tuple[int, int]]:
    """(start, end) pieces of a line, each short enough for the segmenter.

    A line up to ``MAX_UNIT`` characters is one piece (every line of every gold page is, so
    their sentences never change); a longer one is cut after the last sentence end in the second
    half of each ``CHUNK``, else at the last whitespace there, else hard at ``CHUNK``. Time stays
    linear in the input size.
    """
    start = 0
    while len(line) - start > MAX_UNIT:
        low, high = start + CHUNK // 2, start + CHUNK
        ends = [m.end() for m in _SENTENCE_END.finditer(line, low, high)]
        spaces = [m.end() for m in _SPACE.finditer(line, low, high)] if not ends else []
        cut = ends[-1] if ends else spaces[-1] if spaces else high
        yield start, cut
        start = cut
    yield start, len(line)


def _spans_in_line(line: str) -> Iterable[tuple[int, int]]:
    """Yield (start, end) of each sentence in one line, trimmed of surrounding whitespace."""
    for piece_start, piece_end in safe_pieces(line):
        for start, end in _spans_in_piece(line[piece_start:piece_end]):
            yield piece_start + start, piece_start + end


def _spans_in_piece(line: str) -> Iterable[tuple[int, int]]:
    cursor = 0
    for piece in _segmenter().segment(line):
        stripped = piece.strip()
        if not stripped:
            continue
        found = line.find(stripped, cursor)
        if found < 0:  # pysbd altered the text; fall back to the rest of the line as one unit
            rest = line[cursor:]
            if rest.strip():
                lead = len(rest) - len(rest.lstrip())
                yield cursor + lead, cursor + len(rest.rstrip())
            return
        cursor = found + len(stripped)
        yield found, cursor


def segment_article(article_id: str, text: str, source: str = "") -> list[Sentence]:
    """Split an article into sentences; blank lines and whitespace-only fragments are dropped."""
    sentences: list[Sentence] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        if _NON_BLANK.search(line):
            for start, end in _spans_in_line(line):
                sentences.append(
                    Sentence(
                        id=f"{article_id}:{len(sentences)}",
                        article_id=article_id,
                        index=len(sentences),
                        start=offset + start,
                        end=offset + end,
                        text=text[offset + start : offset + end],
                        source=source,
                    )
                )
        offset += len(line)
    return sentences


def read_text_file(path: Path) -> str:
    """Read a UTF-8 article; a file that is not UTF-8 is an :class:`InputError` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def read_folder(folder: Path, source: str = "", pattern: str = "*.txt") -> list[Sentence]:
    """Read every ``.txt`` article of a folder (article id = file stem), sorted by name."""
    if not folder.is_dir():
        raise InputError(f"{folder}: corpus folder not found")
    files = sorted(folder.glob(pattern))
    if not files:
        raise InputError(f"{folder}: no {pattern} articles in corpus folder")
    sentences: list[Sentence] = []
    for path in files:
        sentences.extend(segment_article(path.stem, read_text_file(path), source=source))
    return sentences


def _read_table(kind: str, path: Path):
    """A tabular source as a pandas DataFrame."""
    import pandas as pd

    if kind == "jsonl":
        try:
            return pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON Lines ({exc})") from None
    if kind == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind == "hf_disk":
        from datasets import load_from_disk

        return load_from_disk(str(path)).to_pandas()
    raise InputError(f"{path}: unknown source kind '{kind}'")


def read_table(kind: str, path: Path, text_column: str, id_column: str | None, source: str) -> list[Sentence]:
    """One article per row: its text column is segmented like a .txt article."""
    if not path.exists():
        raise InputError(f"{path}: corpus source not found")
    try:
        frame = _read_table(kind, path)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except InputError:
        raise
    except Exception as exc:  # pandas/pyarrow/datasets raise many types for a damaged file
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable {kind} source ({detail})") from None
    if text_column not in frame.columns:
        raise InputError(f"{path}: no column '{text_column}' (columns: {', '.join(map(str, frame.columns))})")
    if id_column is not None and id_column not in frame.columns:
        raise InputError(f"{path}: no id column '{id_column}'")
    if frame.empty:
        raise InputError(f"{path}: corpus source has no rows")
    sentences: list[Sentence] = []
    seen: set[str] = set()
    for row, record in enumerate(frame.to_dict("records")):
        article_id = str(record[id_column]) if id_column else f"{source}-{row:05d}"
        if article_id in seen or ":" in article_id:
            raise InputError(f"{path}: row {row + 1}: article id '{article_id}' is duplicated or contains ':'")
        seen.add(article_id)
        text = record[text_column]
        if not isinstance(text, str):
            raise InputError(f"{path}: row {row + 1}: '{text_column}' is not text")
        sentences.extend(segment_article(article_id, text, source=source))
    return sentences


def load_sources(sources, resolve) -> list[Sentence]:
    """Sentences of every configured source, in order; a missing optional source is skipped.

    ``sources`` are :class:`training.config.SourceConfig`; ``resolve`` makes their paths absolute.
    Skipped sources are reported in one line that also says what the run is left with.
    """
    import logging

    log = logging.getLogger(__name__)
    sentences: list[Sentence] = []
    read, skipped = [], []
    for spec in sources:
        path = resolve(spec.path)
        if not path.exists() and spec.optional:
            skipped.append(f"'{spec.name}' ({path})")
            continue
        before = len(sentences)
        if spec.kind == "folder":
            sentences.extend(read_folder(path, source=spec.name))
        else:
            sentences.extend(read_table(spec.kind, path, spec.text_column, spec.id_column, spec.name))
        pages = len({s.article_id for s in sentences[before:]})
        read.append(f"{spec.name} ({pages} pages)")
    if skipped:
        log.warning("optional source%s not found, skipped: %s; using %s", "s" if len(skipped) > 1 else "",
                    ", ".join(skipped), ", ".join(read) or "nothing")
    ids = [s.id for s in sentences]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"sentence id '{dup}' occurs in two sources: give the articles distinct ids")
    if not sentences:
        raise InputError("no corpus source could be read: every source is missing or empty")
    return sentences
