"""Hand-labelled gold sets, keyed by sentence id plus a hash of the sentence text.

A gold line is ``{"id": "<article>:<index>", "sha": "<hash of text>", "label": ..., "secondary": [...]}``.
The text itself is not stored: the hash proves the id still points at the same sentence, so a
changed seed or segmenter fails loudly instead of silently mislabelling.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from training.data.corpus import Sentence
from training.core.errors import InputError
from training.core.system import atomic_write

log = logging.getLogger(__name__)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class GoldLabel:
    id: str
    label: str
    secondary: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""  # the gold file it came from


def read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, object) for each non-blank line; bad JSON names the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number}: expected a JSON object")
        yield number, record


def load_gold(
    path: Path, sentences: Mapping[str, Sentence], labels: Sequence[str], optional: bool = False
) -> list[GoldLabel]:
    """Load one gold file and check every line against the corpus.

    An ``optional`` file none of whose articles is in the corpus (its source is absent) is
    skipped with a notice; any other mismatch is an :class:`InputError` naming the line.
    """
    if not path.is_file():
        if optional:
            log.warning("gold file %s not found; skipped", path)
            return []
        raise InputError(f"{path}: gold file not found")
    records = list(read_jsonl(path))
    articles = {s.article_id for s in sentences.values()}
    if optional and records and not any(r.get("id", "").split(":")[0] in articles for _, r in records):
        log.debug("gold file %s: its pages are not in the corpus (source skipped); not used", path.name)
        return []
    gold: list[GoldLabel] = []
    seen: set[str] = set()
    for number, record in records:
        where = f"{path}: line {number}"
        missing = [k for k in ("id", "sha", "label") if k not in record]
        if missing:
            raise InputError(f"{where}: missing key '{missing[0]}'")
        sid, label = record["id"], record["label"]
        secondary = record.get("secondary") or []
        if sid in seen:
            raise InputError(f"{where}: duplicate id '{sid}'")
        seen.add(sid)
        for name in [label, *secondary]:
            if name not in labels:
                raise InputError(f"{where}: unknown label '{name}'")
        sentence = sentences.get(sid)
        if sentence is None:
            raise InputError(f"{where}: id '{sid}' is not a sentence of the corpus (seed or segmenter changed?)")
        if text_hash(sentence.text) != record["sha"]:
            raise InputError(
                f"{where}: id '{sid}' no longer matches its text (hash differs; seed or segmenter changed?)"
            )
        gold.append(GoldLabel(sid, label, tuple(s for s in secondary if s != label), source=path.name))
    return gold


def write_gold(path: Path, gold: Iterable[GoldLabel], sentences: Mapping[str, Sentence]) -> None:
    """Write gold labels with the hash of each sentence's current text (in one rename)."""
    records = ({"id": item.id, "sha": text_hash(sentences[item.id].text), "label": item.label,
                "secondary": list(item.secondary)} for item in gold)
    atomic_write(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
