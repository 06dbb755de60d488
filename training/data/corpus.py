"""Sources → sentence records.

Every non-blank line of an article is segmented with pysbd (a rule-based segmenter that knows
abbreviations such as "U.S." and "Gen."); a line break always ends a unit, because headlines,
captions and page chrome sit on lines of their own. Each sentence keeps its character offsets in
the article text so predictions can be mapped back onto the page.

Speed without changing a sentence (pysbd 0.3.4 only; any other version gets stock pysbd): a line
that pysbd provably keeps whole skips it (:func:`_one_unit`), and the others go through a pysbd
subclass whose two overrides return exactly what stock pysbd returns, without its per-sentence and
per-abbreviation regex compiles (:func:`_fast_segmenter`). ``PYSBD_ONLY = True`` restores the old
path: stock pysbd for every line.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from training.core.errors import InputError
from training.data.sources import open_source, problem_of


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


PYSBD_ONLY = False  # True: stock pysbd for every line, no fast path (the old path, for comparison)
_PYSBD_VERSION = "0.3.4"  # the version whose code the fast path was proven against


@lru_cache(maxsize=2)
def _segmenter(stock: bool = False):
    """The pysbd segmenter, built once: stock, or the exact-output fast subclass."""
    import pysbd

    if stock or not _fast_ok():
        return pysbd.Segmenter(language="en", clean=False)
    return _fast_segmenter()


@lru_cache(maxsize=1)
def _fast_ok() -> bool:
    from pysbd.about import __version__

    return __version__ == _PYSBD_VERSION


# Characters that let pysbd split or rewrite a line: its sentence punctuation, ")" (list items
# "a)", "1)" and parentheses between quotes) and every non-ASCII character in its 0.3.4 source
# (placeholders such as "∯" that it turns back into punctuation, list and quote marks) except the
# typographic quotes ‘’“”«», which only matter next to punctuation. "-" followed by a quote, a
# space and a capital is its one split point without punctuation (QUOTATION_AT_END_OF_SENTENCE).
_PYSBD_CHARS = ".!?。．！？)°ûũƪǃȸȹʼ،ᓰᓱᓳᓴᓷᓸ⁃∮∯⌬⎋☄☇☈☉☏☝♝♟♨♬♭✂「」（）"
_QUOTE_SPLIT = r'[!?\.-][\"\'“”]\s{1}[A-Z]'  # pysbd's QUOTATION_AT_END_OF_SENTENCE_REGEX, verbatim
_PYSBD_CHAR = re.compile("[" + re.escape(_PYSBD_CHARS) + "]")
_QUOTE_SPLIT_AT = re.compile(_QUOTE_SPLIT)
_OPENERS = "'\"“”‘’«»(\\"  # a sentence starting with one may be cut at its closing quote


def _one_unit(piece: str) -> bool:
    """True when pysbd 0.3.4 provably returns ``piece`` as one sentence, ``piece.strip()``.

    Every pysbd rule that splits, drops or rewrites text needs a character of ``_PYSBD_CHARS``
    ("." "!" "?" for the abbreviation, number, list, ellipsis and boundary rules; ")" for list and
    parenthesis rules; placeholders for the symbol rules), the quotation-split pattern or a line
    break inside the piece. Without any, its processing is the identity: one sentence.

    One such character is also safe when it is a single "." ending the text (after the strip),
    the text not starting with a quote or "(" nor holding a backslash: each rule that may touch
    that period either needs a character after it (digits, letters, a quote, a second period) or
    turns it into the placeholder "∯", which comes back as "."; list rules need two items; and the
    boundary regex then matches from the first non-space character to that period (its quoted-
    and bracketed-span alternatives need an opening quote or parenthesis at that start).
    """
    if not _fast_ok():
        return False
    body = piece.rstrip("\r\n")  # pysbd splits at "\r" and "\n" inside a piece
    if "\n" in body or "\r" in body or _QUOTE_SPLIT_AT.search(piece):
        return False
    text = piece.strip()
    if not _PYSBD_CHAR.search(text):
        return True
    return (len(text) >= 2 and text[-1] == "." and text[0] not in _OPENERS and "\\" not in text
            and not _PYSBD_CHAR.search(text, 0, len(text) - 1))


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
    """Yield (start, end) of each sentence pysbd finds in ``line``, trimmed of whitespace.

    A piece that pysbd provably keeps whole (:func:`_one_unit`) skips pysbd: the result is the
    same single span, without pysbd's ~80 regex passes.
    """
    if not PYSBD_ONLY and _one_unit(line):
        stripped = line.strip()
        if stripped:  # pysbd returns nothing for a blank piece
            lead = len(line) - len(line.lstrip())
            yield lead, lead + len(stripped)
        return
    cursor = 0
    for piece in _segmenter(PYSBD_ONLY).segment(line):
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


_ODD_CASE = "\u0130\u0131\u017f\u212a"  # İ ı ſ K: all non-ASCII that (?i) or lower() make ASCII letters


@lru_cache(maxsize=1)
def _fast_segmenter():
    """pysbd 0.3.4's English segmenter with two exact-output overrides.

    * ``sentences_with_char_spans`` finds each sentence with ``str.find`` plus a ``\\s*`` match
      instead of compiling ``re.escape(sentence) + "\\s*"`` per sentence: the same leftmost,
      non-overlapping literal matches, the same first one ending past the previous sentence.
    * ``search_for_abbreviations_in_string`` skips an abbreviation without "." when the lowered
      line never has it right before a "." (found by looking back from each "."): each of its
      replacements turns a "." that directly follows the abbreviation (as matched,
      case-insensitively) into "∯", so there is nothing to replace, and the skipped regexes (two
      compiled per abbreviation and line, thrashing ``re``'s cache) only feed those replacements.
      Lines with one of the four non-ASCII characters that case-insensitive matching or
      ``lower()`` map onto ASCII letters (İ ı ſ K) keep the stock loop.
    """
    import pysbd
    from pysbd.lang.english import English
    from pysbd.processor import Processor
    from pysbd.utils import TextSpan

    odd_case = re.compile("[" + _ODD_CASE + "]")
    spaces = re.compile(r"\s*")

    longest = max(len(abbr.strip()) for abbr in English.Abbreviation.ABBREVIATIONS)

    class AbbreviationReplacer(English.AbbreviationReplacer):
        def search_for_abbreviations_in_string(self, text):
            if odd_case.search(text):
                return super().search_for_abbreviations_in_string(text)
            lowered = text.lower()
            # the dot-free abbreviations that occur right before a "." of the line
            before_period = {lowered[max(at - size, 0):at] for at, char in enumerate(lowered) if char == "."
                             for size in range(1, longest + 1)}
            if not before_period:
                return text
            for abbr in self.lang.Abbreviation.ABBREVIATIONS:
                stripped = abbr.strip()
                if "." in stripped:
                    if stripped not in lowered:
                        continue
                elif stripped not in before_period:
                    continue
                # from here on pysbd 0.3.4's loop body, unchanged
                abbrev_match = re.findall(r"(?:^|\s|\r|\n){}".format(stripped), text, flags=re.IGNORECASE)
                if not abbrev_match:
                    continue
                next_word_start = r"(?<={" + str(re.escape(stripped)) + "} ).{1}"
                char_array = re.findall(next_word_start, text)
                for ind, match in enumerate(abbrev_match):
                    text = self.scan_for_replacements(text, match, ind, char_array)
            return text

    class FastProcessor(Processor):
        def abbreviations_replacer(self):
            return AbbreviationReplacer(self.text, self.lang)

    class FastSegmenter(pysbd.Segmenter):
        def processor(self, text):
            return FastProcessor(text, self.language_module, char_span=self.char_span)

        def sentences_with_char_spans(self, sentences):
            if not all(sentences):  # an empty sentence matches everywhere: stock code
                return super().sentences_with_char_spans(sentences)
            text = self.original_text
            spans, prior_end = [], 0
            for sent in sentences:
                position = text.find(sent)
                while position >= 0:
                    end = spaces.match(text, position + len(sent)).end()
                    if end > prior_end:
                        spans.append(TextSpan(text[position:end], position, end))
                        prior_end = end
                        break
                    position = text.find(sent, end)
            return spans

    segmenter = FastSegmenter(language="en", clean=False)
    if hasattr(segmenter.language_module, "Processor"):  # the stock class would not use ours
        return pysbd.Segmenter(language="en", clean=False)
    return segmenter


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


def read_source(kind: str, path: Path, text_column: str = "text", id_column: str | None = None,
                source: str = "") -> list[Sentence]:
    """The sentences of one source (see :mod:`training.data.sources` for its kinds and page ids).

    Training is strict: a row that cannot be read, a page id used twice or one holding ':' (sentence
    ids are ``<page id>:<index>``) is an :class:`InputError` naming the file and row.
    """
    reader = open_source(path, kind, text_column, id_column, name=source or None)
    sentences: list[Sentence] = []
    seen: set[str] = set()
    for page in reader.pages():
        page = reader.load(page)
        problem = problem_of(page, empty_ok=True)
        if problem:
            raise InputError(f"{reader.path}: {page.where}: {problem}")
        if page.article_id in seen or ":" in page.article_id:
            raise InputError(f"{reader.path}: {page.where}: article id '{page.article_id}' is duplicated or "
                             "contains ':'")
        seen.add(page.article_id)
        sentences.extend(segment_article(page.article_id, page.text, source=source))
    if not seen:
        raise InputError(f"{reader.path}: corpus source has no rows")
    return sentences


def read_folder(folder: Path, source: str = "") -> list[Sentence]:
    """Every ``.txt`` article of a folder (article id = file stem), sorted by name."""
    return read_source("folder", folder, source=source)


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
        try:
            sentences.extend(read_source(spec.kind, path, spec.text_column, spec.id_column, spec.name))
        except InputError as exc:  # name the config entry as well as the file
            raise InputError(f"source '{spec.name}': {exc}") from None
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
