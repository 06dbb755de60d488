"""Page sources: one streaming reader per input kind, for training and for the batch scorer alike.

Kinds: ``folder`` (``.txt`` pages, sorted by name; page id = file stem), ``jsonl``, ``csv``,
``parquet`` (a file or a folder of them) and ``hf_disk`` (a ``datasets.Dataset`` saved with
``save_to_disk``), one page per row. A row's page id is its ``id_column`` value as a string; rows
without one (no id column, or an empty value) are ``<name>-<row:05d>``, rows counted from 0 over
the rows that are there (blank JSONL and CSV lines are no rows). Training names a source in its
config (``sources[].name``), the scorer after the input file unless told otherwise, so the same input
under the same name gives the same page ids everywhere.

Readers stream: tables are read ``batch_rows`` rows at a time, JSONL line by line, and a folder's
files only when :meth:`PageSource.load` is called for their page. A row that cannot be read (not
UTF-8, not JSON, text missing or not a string) is a page with a ``problem``; what to do with it is
the caller's choice (training refuses it, the scorer skips and lists it). Problems with the source
as a whole (unreadable file, missing column) are one :class:`InputError` line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from training.core.errors import InputError

KINDS = ("folder", "jsonl", "csv", "parquet", "hf_disk")
SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MISSING = object()  # a JSONL record without the text key


@dataclass
class Page:
    """One input row. ``text`` is whatever the row holds (a ``Path`` for a .txt page not loaded yet)."""

    article_id: str
    text: Any
    where: str  # "line 7", "row 12", "file x.txt": how a message names the row
    problem: str = ""  # set by the reader when the row cannot even be read


def problem_of(page: Page, empty_ok: bool = False) -> str:
    """Why a loaded page cannot be segmented, or '' when it can (blank text only when ``empty_ok``)."""
    if page.problem:
        return page.problem
    text = page.text
    if text is MISSING or text is None or (isinstance(text, float) and math.isnan(text)):
        return "text missing"
    if not isinstance(text, str):
        return f"text is {type(text).__name__}, not a string"
    if not empty_ok and not text.strip():
        return "text empty"
    return ""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _stat_key(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class PageSource:
    """The pages of one input, in order. Subclasses set ``kind`` and implement :meth:`_batches`."""

    kind = ""

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        self.path, self.text_column, self.id_column = Path(path), text_column, id_column
        self.name = name or self.path.stem  # rows without an id are "<name>-<row>"
        self.batch_rows = max(1, batch_rows)
        self.total: int | None = None  # number of pages, where known without reading them

    @property
    def columns(self) -> list[str]:
        return [self.text_column] + ([self.id_column] if self.id_column else [])

    def _check_columns(self, have: list[str]) -> None:
        for column in self.columns:
            if column not in have:
                raise InputError(f"{self.path}: no column '{column}' (columns: {', '.join(map(str, have)) or 'none'})")

    def article_id(self, value: Any, row: int) -> str:
        """The page id of row ``row`` whose id column holds ``value`` (see the module docstring)."""
        if value is None or value is MISSING or value == "" or (isinstance(value, float) and math.isnan(value)):
            return f"{self.name}-{row:05d}"
        return str(value)

    def fingerprint(self) -> list:
        """What identifies this input's content (paths, sizes, modification times), for resumable work."""
        return [self.kind, _stat_key(self.path)]

    def pages(self) -> Iterator[Page]:
        """Every row as a :class:`Page`, in order."""
        row = 0
        for batch in self._batches(self.columns):
            texts = batch[self.text_column]
            ids = batch[self.id_column] if self.id_column else [None] * len(texts)
            for text, value in zip(texts, ids):
                yield Page(self.article_id(value, row), text, f"row {row + 1}")
                row += 1

    def ids(self) -> Iterator[tuple[str, str]]:
        """(page id, where) of every row, reading no more than the id column where the format allows."""
        if not self.id_column:
            for page in self.pages():
                yield page.article_id, page.where
            return
        row = 0
        for batch in self._batches([self.id_column]):
            for value in batch[self.id_column]:
                yield self.article_id(value, row), f"row {row + 1}"
                row += 1

    def load(self, page: Page) -> Page:
        """The page with its text read (only folder pages are read late)."""
        return page

    def _batches(self, columns: list[str]) -> Iterator[dict[str, list]]:
        raise NotImplementedError


class FolderSource(PageSource):
    """A folder of .txt pages, sorted by name; a file is read only when its page is loaded."""

    kind = "folder"

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        super().__init__(path, text_column, id_column, name, batch_rows)
        if not self.path.is_dir():
            raise InputError(f"{self.path}: not a folder of .txt pages")
        self.names = sorted(entry.name for entry in os.scandir(self.path)
                            if entry.name.endswith(".txt") and entry.is_file())
        if not self.names:
            raise InputError(f"{self.path}: no .txt pages in the folder")
        self.total = len(self.names)

    def fingerprint(self) -> list:
        digest = hashlib.sha256()
        for name in self.names:
            stat = (self.path / name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return [self.kind, str(self.path.resolve()), digest.hexdigest()]

    def pages(self) -> Iterator[Page]:
        for name in self.names:
            yield Page(Path(name).stem, self.path / name, f"file {name}")

    def ids(self) -> Iterator[tuple[str, str]]:
        for page in self.pages():
            yield page.article_id, page.where

    def load(self, page: Page) -> Page:
        if isinstance(page.text, Path):
            try:
                page.text = page.text.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                page.text, page.problem = None, f"not UTF-8 text (byte {exc.start}: {exc.reason})"
            except OSError as exc:
                page.text, page.problem = None, f"unreadable ({exc.strerror or exc})"
        return page


class JsonlSource(PageSource):
    """JSON Lines, read line by line; a line that is not a JSON object is a page with a problem."""

    kind = "jsonl"

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        super().__init__(path, text_column, id_column, name, batch_rows)
        for record, _, problem in self._records():  # the first readable record decides whether the columns exist
            if not problem:
                self._check_columns(list(record))
                break

    def _records(self) -> Iterator[tuple[Any, str, str]]:
        """(record, where, problem) per non-blank line."""
        try:
            lines = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.path}: unreadable ({exc.strerror or exc})") from None
        with lines:
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                    problem = "" if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"
                except UnicodeDecodeError as exc:
                    record, problem = None, f"not UTF-8 text (byte {exc.start}: {exc.reason})"
                except ValueError as exc:
                    record, problem = None, f"not valid JSON ({str(exc)[:80]})"
                yield record, f"line {number}", problem

    def pages(self) -> Iterator[Page]:
        for row, (record, where, problem) in enumerate(self._records()):
            if problem:
                yield Page(self.article_id(None, row), None, where, problem)
                continue
            value = record.get(self.id_column) if self.id_column else None
            yield Page(self.article_id(value, row), record.get(self.text_column, MISSING), where)

    def ids(self) -> Iterator[tuple[str, str]]:
        for page in self.pages():
            yield page.article_id, page.where


class CsvSource(PageSource):
    """CSV with a header row, every value read as a string, ``batch_rows`` rows at a time."""

    kind = "csv"

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        super().__init__(path, text_column, id_column, name, batch_rows)
        import pandas as pd

        try:
            header = pd.read_csv(self.path, dtype=str, nrows=0, encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text") from None
        except Exception as exc:  # pandas raises many types for a damaged file
            raise InputError(f"{self.path}: not a readable CSV file ({_first_line(exc)})") from None
        self._check_columns(list(header.columns))

    def _batches(self, columns: list[str]) -> Iterator[dict[str, list]]:
        import pandas as pd

        try:
            for frame in pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding="utf-8",
                                     usecols=columns, chunksize=self.batch_rows):
                yield {column: frame[column].tolist() for column in columns}
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text") from None
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"{self.path}: not a readable CSV file ({_first_line(exc)})") from None


class ParquetSource(PageSource):
    """A parquet file, or a folder of them (sorted by path), read one record batch at a time."""

    kind = "parquet"

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        super().__init__(path, text_column, id_column, name, batch_rows)
        import pyarrow.parquet as pq

        self.files = sorted(self.path.rglob("*.parquet")) if self.path.is_dir() else [self.path]
        if not self.files:
            raise InputError(f"{self.path}: no .parquet files in the folder")
        try:
            metas = [pq.ParquetFile(file) for file in self.files]
        except Exception as exc:  # pyarrow: ArrowInvalid, OSError, ...
            raise InputError(f"{self.path}: not a readable parquet file ({_first_line(exc)})") from None
        for meta in metas:
            self._check_columns(meta.schema_arrow.names)
        self.total = sum(meta.metadata.num_rows for meta in metas)

    def fingerprint(self) -> list:
        return [self.kind] + [_stat_key(file) for file in self.files]

    def _batches(self, columns: list[str]) -> Iterator[dict[str, list]]:
        import pyarrow.parquet as pq

        for file in self.files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=self.batch_rows, columns=columns):
                yield {column: batch.column(column).to_pylist() for column in columns}


class DatasetSource(PageSource):
    """A ``datasets.Dataset`` saved with ``save_to_disk`` (memory-mapped Arrow, read in batches)."""

    kind = "hf_disk"

    def __init__(self, path: Path, text_column: str = "text", id_column: str | None = None,
                 name: str | None = None, batch_rows: int = 500) -> None:
        super().__init__(path, text_column, id_column, name, batch_rows)
        from datasets import Dataset, load_from_disk

        try:
            dataset = load_from_disk(str(self.path))
        except Exception as exc:
            raise InputError(f"{self.path}: not a readable saved dataset ({_first_line(exc)})") from None
        if not isinstance(dataset, Dataset):
            raise InputError(f"{self.path}: a DatasetDict ({', '.join(dataset)}); pass one split's folder, "
                             f"e.g. {self.path / next(iter(dataset))}")
        self._check_columns(list(dataset.column_names))
        self.dataset, self.total = dataset, len(dataset)

    def fingerprint(self) -> list:
        return [self.kind] + [_stat_key(file) for file in sorted(self.path.rglob("*")) if file.is_file()]

    def _batches(self, columns: list[str]) -> Iterator[dict[str, list]]:
        yield from self.dataset.select_columns(columns).iter(batch_size=self.batch_rows)


READERS: dict[str, type[PageSource]] = {reader.kind: reader for reader in
                                         (FolderSource, JsonlSource, CsvSource, ParquetSource, DatasetSource)}


def infer_kind(path: Path) -> str:
    """The kind of an existing input from its suffix or, for a folder, what it holds."""
    if path.is_dir():
        if any((path / marker).is_file() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf_disk"
        if not any(path.glob("*.txt")) and any(path.rglob("*.parquet")):
            return "parquet"
        return "folder"
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown input suffix '{path.suffix}' (a folder of .txt pages, .jsonl, .csv, "
                         ".parquet, or a saved datasets folder)")
    return kind


def open_source(path: Path, kind: str | None = None, text_column: str = "text", id_column: str | None = None,
                name: str | None = None, batch_rows: int = 500) -> PageSource:
    """The reader for ``path`` (``kind`` None: inferred by :func:`infer_kind`); bad input is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    kind = kind or infer_kind(path)
    if kind not in READERS:
        raise InputError(f"{path}: unknown source kind '{kind}' (known: {', '.join(KINDS)})")
    return READERS[kind](path, text_column, id_column, name, batch_rows)


def _digest(article_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(article_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass
class Repeats:
    """Page ids that occur more than once in a source, and a test for whether an id occurs at all."""

    rows: dict[str, list[tuple[int, str]]]  # id -> (position, where) of every occurrence, in order
    digests: Any  # sorted 64-bit digests of every id (numpy array)

    def may_exist(self, article_id: str) -> bool:
        """False when ``article_id`` is surely not an id of the source (True may be a digest collision)."""
        import numpy as np

        value = np.uint64(_digest(article_id))
        at = int(np.searchsorted(self.digests, value))
        return at < len(self.digests) and self.digests[at] == value


def repeated_ids(source: PageSource) -> Repeats:
    """Every page id of ``source`` that occurs more than once, with where each occurrence is.

    Two passes over the ids; memory is 8 bytes per page (a digest each) plus the repeated ids.
    """
    import numpy as np

    digests = np.sort(np.fromiter((_digest(article) for article, _ in source.ids()), dtype=np.uint64))
    twice = set(digests[1:][digests[1:] == digests[:-1]].tolist())
    rows: dict[str, list[tuple[int, str]]] = {}
    if twice:
        for position, (article, where) in enumerate(source.ids()):
            if _digest(article) in twice:
                rows.setdefault(article, []).append((position, where))
    return Repeats({article: seen for article, seen in rows.items() if len(seen) > 1}, digests)
