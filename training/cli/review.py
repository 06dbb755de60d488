"""The review loop: pick the sentences most worth a person's look, and merge their verdicts.

``python -m training.review [--config FILE] [-n 50]`` writes ``data/review/to_review.{jsonl,csv}``
and ``label_studio_tasks.json`` (+ a Label Studio labelling config): suspect labels first, then
rule conflicts, then the least confident labels; sentences already reviewed are left out.
Fill in ``label`` (JSONL/CSV) or annotate in Label Studio, then
``python -m training.review --import FILE`` validates the file and merges it into the reviewed
file (the last of ``labelling.reviewed``, the one that wins), keeping every earlier review.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from training.cli.guard import guarded
from training.core.config import Config, load_config
from training.core.errors import InputError
from training.data.gold import read_jsonl, text_hash
from training.core.system import atomic_write
from training.labelling.stage import Labelled, build

log = logging.getLogger(__name__)
FIELDS = ["id", "sha", "text", "current", "suggested", "reasons", "score", "label"]


def candidates(config: Config, labelled: Labelled, n: int, already: set[str]) -> list[dict]:
    """The ``n`` sentences most worth reviewing, most urgent first."""
    from training.evaluation.cv import out_of_fold, trainable_rows
    from training.models.families import new_model
    from training.evaluation.suspects import label_issues

    sentences = labelled.sentences
    train_labels = labelled.train_labels
    cv = out_of_fold(config, labelled, new_model(config.model.family, config.model.params, labelled.labels,
                                                 config.seed), progress=log.info)
    issues = label_issues(labelled, cv, trainable_rows(config, labelled))
    suspects = {r["id"] for r in issues}
    proba = np.nan_to_num(cv.probabilities, nan=1.0 / len(labelled.labels))
    votes = labelled.matrix
    conflicted = np.array([len(set(row[row >= 0])) > 1 for row in votes])
    confidence = proba.max(axis=1)
    rows = []
    for i, s in enumerate(sentences):
        if s.id in already:
            continue
        reasons = [name for name, hit in (("suspect_label", s.id in suspects), ("rule_conflict", conflicted[i]))
                   if hit]
        urgency = 2 * (s.id in suspects) + int(conflicted[i]) + (1 - confidence[i])
        rows.append({"id": s.id, "sha": text_hash(s.text), "text": s.text, "current": train_labels[i],
                     "suggested": labelled.labels[int(proba[i].argmax())],
                     "reasons": ",".join(reasons or ["low_confidence"]),
                     "score": round(float(urgency), 4), "label": ""})
    rows.sort(key=lambda r: -r["score"])
    return rows[:n]


def label_studio_config(labels: list[str]) -> str:
    choices = "\n".join(f'    <Choice value="{name}"/>' for name in labels)
    return (f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text" choice="single">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def export(rows: list[dict], labels: list[str], folder: Path) -> list[Path]:
    """Write the review batch as JSONL, CSV and Label Studio tasks."""
    import io

    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    tasks = [{"data": {"text": r["text"], "sentence_id": r["id"], "sha": r["sha"], "reasons": r["reasons"]},
              "predictions": [{"model_version": "rules", "score": r["score"], "result": [
                  {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [r["current"]]}}]}]}
             for r in rows]
    outputs = {"to_review.jsonl": jsonl, "to_review.csv": buffer.getvalue(),
               "label_studio_tasks.json": json.dumps(tasks, indent=1, ensure_ascii=False),
               "label_studio_config.xml": label_studio_config(labels)}
    for name, text in outputs.items():
        atomic_write(folder / name, text)
    return [folder / name for name in outputs]


def _records(path: Path) -> list[tuple[str, dict]]:
    """(where, {id, label, sha?}) for every reviewed row of a JSONL, CSV or Label Studio export."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or not {"id", "label"} <= set(reader.fieldnames):
                    raise InputError(f"{path}: line 1: the header needs 'id' and 'label' columns")
                rows = []
                for n, row in enumerate(reader, start=2):
                    if None in row or None in row.values():
                        raise InputError(f"{path}: line {n}: its fields do not match the header's "
                                         f"{len(reader.fieldnames)} columns")
                    rows.append((f"{path}: line {n}", row))
                return rows
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
    if suffix == ".json":
        try:
            tasks = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(tasks, list):
            raise InputError(f"{path}: expected a Label Studio export (a JSON list of tasks)")
        out = []
        for n, task in enumerate(tasks):
            where = f"{path}: task {n}"
            try:
                data = task.get("data", {})
                annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
                choices = [c for a in annotations[-1:] for r in a.get("result", [])
                           for c in r.get("value", {}).get("choices", [])]
                out.append((where, {"id": data.get("sentence_id"), "sha": data.get("sha"),
                                    "label": choices[0] if choices else ""}))
            except (AttributeError, TypeError):
                raise InputError(f"{where}: not a Label Studio task (expected data.sentence_id and "
                                 "annotations[].result[].value.choices)") from None
        return out
    return [(f"{path}: line {n}", record) for n, record in read_jsonl(path)]


def import_reviews(config: Config, path: Path, into: Path | None = None) -> tuple[Path, int, int]:
    """Validate ``path`` and merge it into the reviewed file; returns (file, new, updated)."""
    labelled = build(config)
    names = labelled.labels
    by_id = {s.id: s for s in labelled.sentences}
    target = into or config.resolve(config.labelling.reviewed[-1])
    incoming: dict[str, dict] = {}
    records = _records(path)
    if not records:
        raise InputError(f"{path}: no rows to import")
    for where, record in records:
        label = record.get("label")
        if label is not None and not isinstance(label, str):
            raise InputError(f"{where}: 'label' is {type(label).__name__} {label!r}, not a label name")
        sid, label = record.get("id"), (label or "").strip()
        if not label:
            continue  # not reviewed yet
        if not sid:
            raise InputError(f"{where}: missing 'id'")
        if sid not in by_id:
            raise InputError(f"{where}: unknown sentence id '{sid}'")
        if label not in names:
            raise InputError(f"{where}: unknown label '{label}' (labels: {', '.join(names)})")
        if sid in incoming:
            raise InputError(f"{where}: duplicate id '{sid}'")
        if record.get("sha") and record["sha"] != text_hash(by_id[sid].text):
            raise InputError(f"{where}: id '{sid}' no longer matches its text (hash differs)")
        incoming[sid] = {"id": sid, "sha": text_hash(by_id[sid].text), "label": label, "secondary": [],
                         "reviewed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if not incoming:
        raise InputError(f"{path}: none of its {len(records)} rows has a label yet; nothing merged")
    existing: dict[str, dict] = {}
    if target.exists():
        for _, record in read_jsonl(target):
            existing[record["id"]] = record
    updated = sum(1 for sid in incoming if sid in existing)
    merged = {**existing, **incoming}
    atomic_write(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged.values()))
    return target, len(incoming) - updated, updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.review", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("-n", type=int, default=50, help="how many sentences to export")
    parser.add_argument("--out", type=Path, default=None, help="export folder (default: data/review)")
    parser.add_argument("--import", dest="import_file", type=Path, default=None,
                        help="a reviewed JSONL/CSV file or Label Studio JSON export to merge")
    parser.add_argument("--into", type=Path, default=None, help="reviewed file to merge into")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    def work() -> None:
        config = load_config(args.config, args.overrides)
        if args.import_file:
            target, new, updated = import_reviews(config, args.import_file, args.into)
            print(f"merged {new} new and {updated} updated reviews into {target}")
            return
        target = config.resolve(config.labelling.reviewed[-1])
        already = {r["id"] for _, r in read_jsonl(target)} if target.exists() else set()
        labelled = build(config)
        rows = candidates(config, labelled, args.n, already)
        paths = export(rows, labelled.labels, args.out or config.resolve(Path("data/review")))
        print(f"{len(rows)} sentences to review:\n" + "\n".join(f"  {p}" for p in paths))

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
