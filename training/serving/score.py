"""Score pages at scale: ``python -m training.score INPUT --model MODEL --out OUTPUT``.

INPUT is read by the readers training uses (:mod:`training.data.sources`): a folder of ``.txt`` pages
(page id = file stem), a ``.jsonl``/``.csv``/``.parquet`` file (or a folder of ``.parquet`` files) with
one page per row, or a ``datasets`` dataset saved with ``save_to_disk``. Rows without an id are
``<source name>-<row>`` (``--source-name``, default the input's file stem), as training names the rows
of a source of that name. OUTPUT (``.parquet`` or ``.jsonl``) gets one row per sentence:
``article_id, index, start, end, text, label, p_<label>..., model_name, model_version``, the same
sentences, labels and probabilities as ``training.predict.classify_articles``.

Pages stream through in chunks of ``--chunk-size``, so memory stays flat. Each finished chunk is
a part file in a staging folder next to the output (``.<output name>.staging/``) that also records
a fingerprint of the input, the model and the options; an interrupted run (Ctrl-C, SIGTERM, a
kill, a crash) run again continues after the last finished chunk, and the output is assembled and
renamed into place only at the end, byte for byte what an uninterrupted run writes (a sentence's
embedding does not depend on what else is encoded with it: :mod:`training.models.encoder`). A
staging folder with another fingerprint is stale and is started afresh.

A page id that occurs more than once is refused before any scoring (one ``error:`` line showing the
first ones), or with ``--duplicate-ids suffix`` its later occurrences are scored as ``<id>~2``,
``<id>~3``, ...; either way all of them are listed in ``<output>.duplicates.jsonl``. Bad rows (text
missing, not a string, empty; a line that is not JSON; a file that is not UTF-8) are skipped: the
first few are printed, one line each, and all of them are listed in ``<output>.skipped.jsonl``. Bad
usage is one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from training.core.errors import InputError
from training.core.system import atomic_write, replacing
from training.core.targets import reason, refused
from training.data.sources import Page, PageSource, open_source, problem_of, repeated_ids

FORMAT_VERSION = 1
OUTPUT_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl"}
DUPLICATE_POLICIES = ("refuse", "suffix")
SHOWN_BAD_ROWS = 10
SHOWN_REPEATED_IDS = 10


# ---------------------------------------------------------------------------------------------- input


def open_input(path: Path, text_column: str = "text", id_column: str | None = None, chunk_size: int = 500,
               source_name: str | None = None) -> PageSource:
    """The reader for ``path`` (kind from its suffix or contents); bad usage is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    try:
        return open_source(path, None, text_column, id_column, name=source_name, batch_rows=chunk_size)
    except InputError as exc:
        if path.is_dir() and "no .txt pages" in str(exc):
            raise InputError(f"{exc} (and not a saved datasets dataset or a folder of .parquet files)") from None
        raise


def duplicates_path(out: Path) -> Path:
    return out.with_name(out.name + ".duplicates.jsonl")


def unique_ids(source: PageSource, policy: str, out: Path, log) -> tuple[dict[int, str], int]:
    """Repeated page ids: refused (an InputError naming the first ones) or, with ``policy`` "suffix", the 2nd, 3rd
    ... occurrence of an id renamed ``<id>~2``, ``<id>~3`` (skipping names the input already uses). Returns
    {row position: new id} and how many ids repeat; all of them are listed in :func:`duplicates_path`."""
    report = duplicates_path(out)
    # file names are unique, and so are the <name>-<row> ids of a table without an id column
    repeats = repeated_ids(source) if source.kind != "folder" and source.id_column else None
    if repeats is None or not repeats.rows:
        report.unlink(missing_ok=True)
        return {}, 0
    renamed: dict[int, str] = {}
    taken: set[str] = set()
    listed = []
    for article, seen in repeats.rows.items():
        names, number = [article], 1
        for position, _ in seen[1:]:
            number += 1
            while repeats.may_exist(f"{article}~{number}") or f"{article}~{number}" in taken:
                number += 1
            names.append(f"{article}~{number}")
            taken.add(names[-1])
            renamed[position] = names[-1]
        item = {"article_id": article, "where": [where for _, where in seen]}
        listed.append({**item, "scored_as": names} if policy == "suffix" else item)
    atomic_write(report, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in listed))
    shown = [f"'{item['article_id']}' ({_some(item['where'])})" for item in listed[:SHOWN_REPEATED_IDS]]
    if policy != "suffix":
        raise InputError(f"{source.path}: {len(listed)} page id(s) occur more than once: {'; '.join(shown)}"
                         f"{'; ...' if len(listed) > len(shown) else ''}; all listed in {report}; give each page "
                         "its own id, or pass --duplicate-ids suffix to score them as <id>~2, <id>~3, ...")
    for item in listed[:SHOWN_REPEATED_IDS]:
        log(f"repeated page id in {source.path}: '{item['article_id']}' at {_some(item['where'])}: scored as "
            + _some([f"'{name}'" for name in item["scored_as"]]))
    return renamed, len(listed)


def _some(values: list[str], shown: int = 3) -> str:
    """The first few of ``values``, comma-separated ("..." when there are more): one line stays short."""
    return ", ".join(values[:shown]) + (", ..." if len(values) > shown else "")


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
    """Write a chunk's rows to ``path`` (a part is there whole or not at all)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with replacing(path) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    else:
        atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, ensure_ascii=False, sort_keys=True))


def assemble(parts: list[Path], out: Path, fmt: str, schema) -> None:
    """Concatenate the parts into ``out`` in one rename; memory stays one part."""
    with replacing(out) as tmp:
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


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class ScoreResult:
    out: Path
    pages: int
    sentences: int
    bad: list[dict]
    seconds: float
    resumed_chunks: int
    report: Path | None  # the skipped rows, if any
    repeated_ids: int = 0  # page ids that occurred more than once (made unique)
    duplicates: Path | None = None  # where they are listed

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
          chunk_size: int = 500, progress: bool | None = None, log=None, source_name: str | None = None,
          duplicate_ids: str = "refuse") -> ScoreResult:
    """Score every page of ``input_path`` into ``out``; see the module docstring. Usage problems raise InputError."""
    from filelock import FileLock, Timeout
    from tqdm import tqdm

    log = log or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    if chunk_size < 1:
        raise InputError(f"--chunk-size: must be at least 1, not {chunk_size}")
    if duplicate_ids not in DUPLICATE_POLICIES:
        raise InputError(f"--duplicate-ids: '{duplicate_ids}' is not one of {', '.join(DUPLICATE_POLICIES)}")
    fmt = OUTPUT_SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"{out}: unknown output suffix '{out.suffix}' (use .parquet or .jsonl)")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder not found")
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not an output file")
    source = open_input(Path(input_path), text_column, id_column, chunk_size, source_name)
    renamed, repeated = unique_ids(source, duplicate_ids, out, log)
    classifier = _load_model(model)
    name, version = model_identity(str(model), classifier)
    schema = output_schema(classifier.labels)
    fingerprint = {"format": FORMAT_VERSION, "input": source.fingerprint(), "text_column": text_column,
                   "id_column": id_column, "source_name": source.name, "duplicate_ids": duplicate_ids,
                   "chunk_size": chunk_size, "output": fmt, "model": model_fingerprint(str(model), classifier),
                   "model_name": name, "model_version": version}

    staging = staging_folder(out)
    staging.mkdir(exist_ok=True)
    lock = FileLock(str(staging / "lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(f"{out}: another scorer is writing it (lock {staging / 'lock'})") from None
    try:
        _prepare_staging(staging, fingerprint, log)
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
                    for position, page in chunk:
                        page = source.load(page)
                        page.article_id = renamed.get(position, page.article_id)
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
                       report if bad else None, repeated, duplicates_path(out) if repeated else None)


def _chunks(pages: Iterator[Page], size: int) -> Iterator[list[tuple[int, Page]]]:
    """(position in the input, page) in lists of ``size``."""
    chunk: list[tuple[int, Page]] = []
    for position, page in enumerate(pages):
        chunk.append((position, page))
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
