"""Score pages at scale: ``python -m training.score INPUT --model MODEL --out OUTPUT``.

INPUT is a folder of ``.txt`` pages (page id = file stem, as ``training.corpus.read_folder``), a
``.jsonl``/``.csv``/``.parquet`` file (or a folder of ``.parquet`` files) with one page per row, or a
``datasets`` dataset saved with ``save_to_disk``. OUTPUT (``.parquet`` or ``.jsonl``) gets one row per
sentence: ``article_id, index, start, end, text, label, p_<label>..., model_name, model_version``,
the same sentences, labels and probabilities as ``training.predict.classify_articles``.

Pages stream through in chunks of ``--chunk-size``, so memory stays flat. Each finished chunk is
a part file in a staging folder next to the output (``.<output name>.staging/``) that also records
a fingerprint of the input, the model and the options; an interrupted run (Ctrl-C, SIGTERM, a
kill, a crash) run again continues after the last finished chunk, and the output is assembled and
renamed into place only at the end, byte for byte what an uninterrupted run writes. A staging
folder with another fingerprint is stale and is started afresh.

Bad rows (text missing, not a string, empty; a line that is not JSON; a file that is not UTF-8)
are skipped: the first few are printed, one line each, and all of them are listed in
``<output>.skipped.jsonl``. Bad usage is one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from training.core.errors import InputError
from training.core.system import atomic_write
from training.core.targets import reason, refused

FORMAT_VERSION = 1
OUTPUT_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl"}
TABLE_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
FAIL_AFTER_ENV = "TRAINING_SCORE_KILL_AFTER_CHUNK"  # tests: SIGKILL this process once chunk k is recorded
SHOWN_BAD_ROWS = 10


# ---------------------------------------------------------------------------------------------- input


@dataclass
class Page:
    """One input row: ``text`` is whatever the row holds (a ``Path`` for a .txt file not read yet)."""

    article_id: str
    text: Any
    where: str  # "line 7", "row 12", "file x.txt": how a report names the row
    problem: str = ""  # set by the reader when the row cannot even be read


def _stat_key(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class Source:
    kind = ""

    def __init__(self, path: Path, text_column: str, id_column: str | None, chunk_size: int = 500) -> None:
        self.path, self.text_column, self.id_column = path, text_column, id_column
        self.chunk_size = max(1, chunk_size)  # rows per batch read
        self.total: int | None = None

    def fingerprint(self) -> list:
        return [self.kind, _stat_key(self.path)]

    def pages(self) -> Iterator[Page]:
        raise NotImplementedError

    def materialise(self, page: Page) -> Page:
        return page

    def _article_id(self, value: Any, row: int) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return f"{self.path.stem}-{row:05d}"
        return str(value)

    def _missing_column(self, column: str, have: list[str]) -> InputError:
        return InputError(f"{self.path}: no column '{column}' (columns: {', '.join(map(str, have)) or 'none'})")

    @property
    def columns(self) -> list[str]:
        return [self.text_column] + ([self.id_column] if self.id_column else [])

    def _check_columns(self, have: list[str]) -> None:
        for column in self.columns:
            if column not in have:
                raise self._missing_column(column, have)

    def _rows(self, batches: Iterator[tuple[list, list | None]]) -> Iterator[Page]:
        """Pages from (texts, ids or None) column batches, numbered across batches."""
        row = 0
        for texts, ids in batches:
            for value, article in zip(texts, ids if ids is not None else [None] * len(texts)):
                yield Page(self._article_id(article, row), value, f"row {row + 1}")
                row += 1


class FolderSource(Source):
    """A folder of .txt pages, sorted by name; each file is read only when its chunk is scored."""

    kind = "folder"

    def __init__(self, path: Path, text_column: str, id_column: str | None) -> None:
        super().__init__(path, text_column, id_column)
        self.names = sorted(entry.name for entry in os.scandir(path)
                            if entry.name.endswith(".txt") and entry.is_file())
        if not self.names:
            raise InputError(f"{path}: no .txt pages in the folder (and not a saved datasets dataset)")
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

    def materialise(self, page: Page) -> Page:
        try:
            page.text = page.text.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            page.text, page.problem = None, f"not UTF-8 text (byte {exc.start}: {exc.reason})"
        except OSError as exc:
            page.text, page.problem = None, f"unreadable ({exc.strerror or exc})"
        return page


class JsonlSource(Source):
    """JSON Lines read line by line; a line that is not a JSON object is a bad row."""

    kind = "jsonl"

    def __init__(self, path: Path, text_column: str, id_column: str | None) -> None:
        super().__init__(path, text_column, id_column)
        for page in self._records():  # the first readable record decides whether the columns exist
            if isinstance(page.text, dict):
                self._check_columns(list(page.text))
                break

    def _records(self) -> Iterator[Page]:
        with open(self.path, "rb") as lines:
            row = 0
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                where = f"line {number}"
                try:
                    record = json.loads(raw.decode("utf-8"))
                    problem = "" if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"
                except UnicodeDecodeError as exc:
                    record, problem = None, f"not UTF-8 text (byte {exc.start}: {exc.reason})"
                except ValueError as exc:
                    record, problem = None, f"not valid JSON ({str(exc)[:80]})"
                yield Page(str(row), record, where, problem)
                row += 1

    def pages(self) -> Iterator[Page]:
        for row, page in enumerate(self._records()):
            if page.problem:
                yield Page(f"{self.path.stem}-{row:05d}", None, page.where, page.problem)
                continue
            record = page.text
            article = self._article_id(record.get(self.id_column), row) if self.id_column else \
                self._article_id(None, row)
            yield Page(article, record[self.text_column] if self.text_column in record else _MISSING, page.where)


class CsvSource(Source):
    kind = "csv"

    def __init__(self, path: Path, text_column: str, id_column: str | None, chunk_size: int) -> None:
        super().__init__(path, text_column, id_column, chunk_size)
        import pandas as pd

        try:
            header = pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        except Exception as exc:  # pandas raises many types for a damaged file
            raise InputError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
        self._check_columns(list(header.columns))

    def pages(self) -> Iterator[Page]:
        import pandas as pd

        reader = pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding="utf-8",
                             usecols=self.columns, chunksize=self.chunk_size)
        batches = ((frame[self.text_column].tolist(), frame[self.id_column].tolist() if self.id_column else None)
                   for frame in reader)
        try:
            yield from self._rows(batches)
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text") from None


class ParquetSource(Source):
    """A parquet file, or a folder of them (sorted by name), read one record batch at a time."""

    kind = "parquet"

    def __init__(self, path: Path, text_column: str, id_column: str | None, chunk_size: int) -> None:
        super().__init__(path, text_column, id_column, chunk_size)
        import pyarrow.parquet as pq

        self.files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        try:
            metas = [pq.ParquetFile(file) for file in self.files]
        except Exception as exc:  # pyarrow: ArrowInvalid, OSError, ...
            raise InputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0][:200]})") from None
        for meta in metas:
            self._check_columns(meta.schema_arrow.names)
        self.total = sum(meta.metadata.num_rows for meta in metas)

    def fingerprint(self) -> list:
        return [self.kind] + [_stat_key(file) for file in self.files]

    def pages(self) -> Iterator[Page]:
        import pyarrow.parquet as pq

        batches = ((batch.column(self.text_column).to_pylist(),
                    batch.column(self.id_column).to_pylist() if self.id_column else None)
                   for file in self.files
                   for batch in pq.ParquetFile(file).iter_batches(batch_size=self.chunk_size,
                                                                  columns=self.columns))
        yield from self._rows(batches)


class DatasetSource(Source):
    """A ``datasets.Dataset`` saved with ``save_to_disk`` (memory-mapped Arrow, read in batches)."""

    kind = "hf_disk"

    def __init__(self, path: Path, text_column: str, id_column: str | None, chunk_size: int) -> None:
        super().__init__(path, text_column, id_column, chunk_size)
        from datasets import Dataset, load_from_disk

        try:
            dataset = load_from_disk(str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a readable saved dataset ({str(exc).splitlines()[0][:200]})") from None
        if not isinstance(dataset, Dataset):
            raise InputError(f"{path}: a DatasetDict ({', '.join(dataset)}); pass one split's folder, "
                             f"e.g. {path / next(iter(dataset))}")
        self._check_columns(list(dataset.column_names))
        self.dataset, self.total = dataset, len(dataset)

    def fingerprint(self) -> list:
        return [self.kind] + [_stat_key(file) for file in sorted(self.path.rglob("*")) if file.is_file()]

    def pages(self) -> Iterator[Page]:
        batches = ((batch[self.text_column], batch[self.id_column] if self.id_column else None)
                   for batch in self.dataset.select_columns(self.columns).iter(batch_size=self.chunk_size))
        yield from self._rows(batches)


_MISSING = object()


def open_source(path: Path, text_column: str = "text", id_column: str | None = None,
                chunk_size: int = 500) -> Source:
    """The reader for ``path``; bad usage (missing path, unknown suffix, missing column) is an InputError."""
    if not path.exists():
        raise InputError(f"{path}: input not found")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file() \
                or (path / "dataset_dict.json").is_file():
            return DatasetSource(path, text_column, id_column, chunk_size)
        if not any(path.glob("*.txt")) and any(path.rglob("*.parquet")):
            return ParquetSource(path, text_column, id_column, chunk_size)
        return FolderSource(path, text_column, id_column)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind == "jsonl":
        return JsonlSource(path, text_column, id_column)
    if kind == "csv":
        return CsvSource(path, text_column, id_column, chunk_size)
    if kind == "parquet":
        return ParquetSource(path, text_column, id_column, chunk_size)
    raise InputError(f"{path}: unknown input suffix '{path.suffix}' (a folder of .txt pages, .jsonl, .csv, "
                     ".parquet, or a saved datasets folder)")


def problem_of(page: Page) -> str:
    """Why a row cannot be scored, or '' when it can."""
    if page.problem:
        return page.problem
    if page.text is _MISSING or page.text is None or (isinstance(page.text, float) and math.isnan(page.text)):
        return "text missing"
    if not isinstance(page.text, str):
        return f"text is {type(page.text).__name__}, not a string"
    if not page.text.strip():
        return "text empty"
    return ""


# ---------------------------------------------------------------------------------------------- model


def model_identity(spec: str, classifier) -> tuple[str, str]:
    """(model name, version): the registry's when known, else the manifest's config name and run id."""
    from training.serving.predict import is_mlflow_uri, resolve_alias

    if is_mlflow_uri(spec):
        resolved = resolve_alias(spec)
        if resolved.startswith("models:/"):
            name, _, version = resolved[len("models:/"):].partition("/")
            return name, version
    manifest = classifier.manifest
    config = manifest.get("config") or {}
    tracking = config.get("tracking") or {}
    name = tracking.get("registered_model") or config.get("name") or Path(classifier.path).name
    run_id = manifest.get("mlflow_run_id")
    from training.tracking.track import DEFAULT_TRACKING_URI

    uri = tracking.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    version = _registry_version(uri, name, run_id)
    return name, version or (f"run:{run_id}" if run_id else "")


def _registry_version(uri: str | None, name: str, run_id: str | None) -> str | None:
    """The registered version logged by ``run_id``, looked up only in a local sqlite store (never a network call)."""
    if not uri or not run_id or not uri.startswith("sqlite:///") or not Path(uri[len("sqlite:///"):]).is_file():
        return None
    try:
        from mlflow import MlflowClient

        found = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name='{name}'")
        versions = [v.version for v in found if v.run_id == run_id]
        return str(versions[0]) if versions else None
    except Exception:  # an old or locked store: fall back to the run id
        return None


def model_fingerprint(spec: str, classifier) -> str:
    from training.tracking.export import MANIFEST
    from training.serving.predict import is_mlflow_uri, resolve_alias

    folder = Path(classifier.path)
    manifest = (folder / MANIFEST).read_bytes() if (folder / MANIFEST).is_file() else \
        json.dumps(classifier.manifest, sort_keys=True, default=str).encode()
    where = resolve_alias(spec) if is_mlflow_uri(spec) else str(Path(spec).resolve())
    return hashlib.sha256(where.encode() + b"\0" + manifest).hexdigest()


# ---------------------------------------------------------------------------------------------- output


def output_schema(labels: list[str]):
    import pyarrow as pa

    return pa.schema([("article_id", pa.string()), ("index", pa.int64()), ("start", pa.int64()),
                      ("end", pa.int64()), ("text", pa.string()), ("label", pa.string())]
                     + [(f"p_{label}", pa.float64()) for label in labels]
                     + [("model_name", pa.string()), ("model_version", pa.string())])


def sentence_rows(classifier, pages: list[Page], name: str, version: str) -> list[dict]:
    """One row per sentence of each page, classified exactly as ``classify_articles`` does."""
    rows = []
    if not pages:
        return rows
    for page, sentences in zip(pages, classifier.classify_articles([p.text for p in pages])):
        for s in sentences:
            rows.append({"article_id": page.article_id, "index": s["index"], "start": s["start"], "end": s["end"],
                         "text": s["text"], "label": s["label"],
                         **{f"p_{label}": s["probabilities"][label] for label in classifier.labels},
                         "model_name": name, "model_version": version})
    return rows


def write_part(rows: list[dict], path: Path, fmt: str, schema) -> None:
    """Write a chunk's rows to ``path`` through a temporary name (a part is there whole or not at all)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_name(path.name + ".tmp")
        try:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
            os.replace(tmp, path)
        finally:  # a full disk leaves no half-written part behind
            tmp.unlink(missing_ok=True)
    else:
        atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, ensure_ascii=False, sort_keys=True))


def assemble(parts: list[Path], out: Path, fmt: str, schema) -> None:
    """Concatenate the parts into ``out`` via a temporary sibling and one rename; memory stays one part."""
    tmp = out.with_name(f".{out.name}.assembling-{os.getpid()}")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    table = pq.read_table(part, schema=schema)
                    if table.num_rows:
                        writer.write_table(table)
        else:
            with open(tmp, "wb") as target:
                for part in parts:
                    with open(part, "rb") as source:
                        shutil.copyfileobj(source, target, 1 << 20)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class ScoreResult:
    out: Path
    pages: int
    sentences: int
    bad: list[dict]
    seconds: float
    resumed_chunks: int
    report: Path | None

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else float("nan")


def staging_folder(out: Path) -> Path:
    return out.with_name(f".{out.name}.staging")


def report_path(out: Path) -> Path:
    return out.with_name(out.name + ".skipped.jsonl")


def _prepare_staging(staging: Path, fingerprint: dict, log) -> None:
    state = staging / "state.json"
    if state.is_file():
        try:
            same = json.loads(state.read_text(encoding="utf-8")) == fingerprint
        except (OSError, ValueError):
            same = False
        if same:
            return
        log(f"{staging}: left by a run on another input, model or options; starting afresh")
    for entry in staging.iterdir():
        if entry.name != "lock":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    _write_json(state, fingerprint)


def _refused_writes_are_one_line(score_function):
    """A full disk or a read-only folder while scoring is one line naming the output, which is left as it was.

    The output is renamed into place only at the end, so it is never half written; finished chunks stay
    in the staging folder and the same command, run again once there is room, continues after them.
    """
    @functools.wraps(score_function)
    def scoring(input_path: Path, model: str, out: Path, *args, **kwargs) -> "ScoreResult":
        try:
            return score_function(input_path, model, out, *args, **kwargs)
        except OSError as exc:
            if not refused(exc):
                raise
            out, name = Path(out), exc.filename
            staging = staging_folder(out)
            if name is not None and exc.errno in (errno.EACCES, errno.EPERM) \
                    and Path(name).resolve().parent not in (out.resolve().parent, staging.resolve()):
                raise InputError(f"{name}: {reason(exc)}") from None  # reading the input, not writing
            at = f" at {name}" if name is not None and Path(name) != out else ""
            kept = len(list(staging.glob("part-*.done.json"))) if staging.is_dir() else 0
            raise InputError(f"{out}: cannot write ({reason(exc)}{at}); it was not written or replaced"
                             + (f"; {kept} finished chunk(s) are kept in {staging}" if kept else "")
                             + "; make room (or make it writable) and run the same command again") from None
    return scoring


@_refused_writes_are_one_line
def score(input_path: Path, model: str, out: Path, text_column: str = "text", id_column: str | None = None,
          chunk_size: int = 500, progress: bool | None = None, log=None) -> ScoreResult:
    """Score every page of ``input_path`` into ``out``; see the module docstring. Usage problems raise InputError."""
    from filelock import FileLock, Timeout
    from tqdm import tqdm

    log = log or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    if chunk_size < 1:
        raise InputError(f"--chunk-size: must be at least 1, not {chunk_size}")
    fmt = OUTPUT_SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"{out}: unknown output suffix '{out.suffix}' (use .parquet or .jsonl)")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder not found")
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not an output file")
    source = open_source(Path(input_path), text_column, id_column, chunk_size)
    classifier = _load_model(model)
    name, version = model_identity(str(model), classifier)
    schema = output_schema(classifier.labels)
    fingerprint = {"format": FORMAT_VERSION, "input": source.fingerprint(), "text_column": text_column,
                   "id_column": id_column, "chunk_size": chunk_size, "output": fmt,
                   "model": model_fingerprint(str(model), classifier), "model_name": name, "model_version": version}

    staging = staging_folder(out)
    staging.mkdir(exist_ok=True)
    lock = FileLock(str(staging / "lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(f"{out}: another scorer is writing it (lock {staging / 'lock'})") from None
    try:
        _prepare_staging(staging, fingerprint, log)
        kill_after = os.environ.get(FAIL_AFTER_ENV)
        parts, bad, pages_done, sentences_done, resumed = [], [], 0, 0, 0
        suffix = ".parquet" if fmt == "parquet" else ".jsonl"
        quiet = None if progress is None else not progress  # None: a bar only on a terminal
        bar = tqdm(total=source.total, unit="page", desc="scoring", disable=quiet, file=sys.stderr, smoothing=0.1)
        with bar:
            for number, chunk in enumerate(_chunks(source.pages(), chunk_size)):
                part = staging / f"part-{number:06d}{suffix}"
                marker = staging / f"part-{number:06d}.done.json"
                parts.append(part)
                if marker.is_file() and part.is_file():
                    done = json.loads(marker.read_text(encoding="utf-8"))
                    resumed += 1
                else:
                    good, skipped = [], []
                    for page in chunk:
                        page = source.materialise(page)
                        problem = problem_of(page)
                        if problem:
                            skipped.append({"where": page.where, "article_id": page.article_id, "problem": problem})
                        else:
                            good.append(page)
                    rows = sentence_rows(classifier, good, name, version)
                    write_part(rows, part, fmt, schema)
                    done = {"pages": len(good), "sentences": len(rows), "bad": skipped}
                    _write_json(marker, done)
                    for item in skipped[:max(0, SHOWN_BAD_ROWS - len(bad))]:
                        bar.write(f"skipped {source.path}: {item['where']} ({item['article_id']}): {item['problem']}",
                                  file=sys.stderr)
                    if kill_after is not None and int(kill_after) == number:
                        os.kill(os.getpid(), signal.SIGKILL)
                bad.extend(done["bad"])
                pages_done += done["pages"]
                sentences_done += done["sentences"]
                bar.update(len(chunk))
        report = report_path(out)
        if bad:
            atomic_write(report, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in bad))
        else:
            report.unlink(missing_ok=True)
        assemble(parts, out, fmt, schema)
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return ScoreResult(out, pages_done, sentences_done, bad, time.perf_counter() - started, resumed,
                       report if bad else None)


def _chunks(pages: Iterator[Page], size: int) -> Iterator[list[Page]]:
    chunk: list[Page] = []
    for page in pages:
        chunk.append(page)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _load_model(model: str):
    from training.tracking.export import DamagedModelError
    from training.serving.predict import ModelNotFoundError, load

    try:
        return load(model)
    except (ModelNotFoundError, DamagedModelError, FileNotFoundError) as exc:
        raise InputError(f"--model {model}: {exc}") from None
    except Exception as exc:  # MlflowException: unknown name/alias/version, unreachable store
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model {model}: {first}") from None
