"""Export → edit → import round trips, including bad files."""

import csv
import json

import pytest

from training.core.config import load_config
from training.core.errors import InputError
from training.data.corpus import read_folder
from training.data.gold import text_hash
from training.labelling.stage import build
from training.cli.review import candidates, import_reviews, main

from conftest import ROOT, write_config


@pytest.fixture(scope="module")
def first_sentence():
    """The first sentence of the seed pages (the config's only source): a real id and text to review."""
    return read_folder(ROOT / "seeds")[0]


@pytest.fixture()
def config(tmp_path):
    path = write_config(tmp_path, "review", labelling={"use_reviewed": True,
                                                        "reviewed": [str(tmp_path / "reviewed.jsonl")]},
                        evaluation={"folds": 3, "find_label_issues": True})
    return load_config(path)


def test_export_edit_import_jsonl_and_reviews_override_rule_labels(config, tmp_path):
    assert main(["--config", str(tmp_path / "review.yaml"), "-n", "6", "--out", str(tmp_path / "batch")]) == 0
    rows = [json.loads(l) for l in (tmp_path / "batch/to_review.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["label"] == "" and r["reasons"] for r in rows)
    tasks = json.loads((tmp_path / "batch/label_studio_tasks.json").read_text())
    assert [t["data"]["sentence_id"] for t in tasks] == [r["id"] for r in rows]
    with (tmp_path / "batch/to_review.csv").open() as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == [r["id"] for r in rows]
    # a person labels the first three, leaves the rest empty
    flip = {"other": "drill"}
    for r in rows[:3]:
        r["label"] = flip.get(r["current"], "other")
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--config", str(tmp_path / "review.yaml"), "--import", str(edited)]) == 0
    reviewed = [json.loads(l) for l in (tmp_path / "reviewed.jsonl").read_text().splitlines()]
    assert {r["id"]: r["label"] for r in reviewed} == {r["id"]: r["label"] for r in rows[:3]}
    labelled = build(config)
    row_of = {s.id: i for i, s in enumerate(labelled.sentences)}
    for r in rows[:3]:
        assert labelled.train_labels[row_of[r["id"]]] == r["label"]
    # already reviewed sentences are not proposed again
    again = candidates(config, labelled, 50, {r["id"] for r in reviewed})
    assert not {r["id"] for r in again} & {r["id"] for r in reviewed}


def test_import_never_loses_earlier_reviews_and_reads_csv_and_label_studio(config, tmp_path):
    labelled = build(config)
    s0, s1, s2 = labelled.sentences[:3]
    first = tmp_path / "first.csv"
    first.write_text(f"id,label\n{s0.id},boilerplate\n{s1.id},other\n")
    import_reviews(config, first)
    studio = tmp_path / "export.json"
    studio.write_text(json.dumps([
        {"data": {"sentence_id": s1.id, "text": s1.text}, "annotations": [
            {"result": [{"value": {"choices": ["drill"]}}]}]},
        {"data": {"sentence_id": s2.id, "text": s2.text}, "annotations": [
            {"result": [{"value": {"choices": ["deployment"]}}]}]},
    ]))
    target, new, updated = import_reviews(config, studio)
    assert (new, updated) == (1, 1)
    merged = {json.loads(l)["id"]: json.loads(l)["label"] for l in target.read_text().splitlines()}
    assert merged == {s0.id: "boilerplate", s1.id: "drill", s2.id: "deployment"}


@pytest.mark.parametrize("content, message", [
    ('{"id": "nope:1", "label": "other"}\n', "line 1: unknown sentence id 'nope:1'"),
    ('{"id": "SID", "label": "other"}\n{"id": "SID", "label": "weather"}\n', "line 2: unknown label 'weather'"),
    ('{"id": "SID", "label": "other"}\n{"id": "SID", "label": "drill"}\n', "line 2: duplicate id"),
    ('{"id": "SID", "label": "other", "sha": "ffff"}\n', "line 1: id 'SID' no longer matches"),
    ('{"id": "SID", "label": \n', "line 1: invalid JSON"),
    ('{"id": "SID", "label": 3}\n', "line 1: 'label' is int 3, not a label name"),
    ('', "no rows to import"),
    ('{"id": "SID", "label": ""}\n', "none of its 1 rows has a label yet; nothing merged"),
])
def test_bad_review_files_name_the_line_and_change_nothing(config, tmp_path, first_sentence, content, message):
    sid = first_sentence.id
    target = tmp_path / "reviewed.jsonl"
    target.write_text(json.dumps({"id": sid, "sha": text_hash(first_sentence.text), "label": "other"}) + "\n")
    before = target.read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content.replace("SID", sid))
    with pytest.raises(InputError, match=message.replace("SID", sid)):
        import_reviews(config, bad)
    assert target.read_text() == before


def test_bad_csv_header(config, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\nx,other\n")
    with pytest.raises(InputError, match="line 1: the header needs 'id' and 'label'"):
        import_reviews(config, bad)


@pytest.mark.parametrize("name, content, message", [
    ("short.csv", "id,label,text\nSID\n", "line 2: its fields do not match the header's 3 columns"),
    ("studio.json", '[{"data": {"sentence_id": "SID"}, "annotations": ["drill"]}]', "task 0: not a Label Studio task"),
    ("studio2.json", '["just a string"]', "task 0: not a Label Studio task"),
])
def test_malformed_csv_rows_and_label_studio_tasks_are_one_line_errors(config, tmp_path, first_sentence, name,
                                                                      content, message):
    sid = first_sentence.id
    bad = tmp_path / name
    bad.write_text(content.replace("SID", sid))
    with pytest.raises(InputError, match=message):
        import_reviews(config, bad)


def test_import_keeps_the_reviewed_files_mode(config, tmp_path, first_sentence):
    import os

    sentence = first_sentence
    target = tmp_path / "reviewed.jsonl"
    target.write_text(json.dumps({"id": sentence.id, "sha": text_hash(sentence.text), "label": "other"}) + "\n")
    target.chmod(0o644)
    edited = tmp_path / "edited.jsonl"
    edited.write_text(json.dumps({"id": sentence.id, "label": "drill"}) + "\n")
    import_reviews(config, edited)
    assert target.stat().st_mode & 0o777 == 0o644
    fresh = tmp_path / "new" / "reviewed.jsonl"
    previous = os.umask(0o022)
    try:
        import_reviews(config, edited, into=fresh)
    finally:
        os.umask(previous)
    assert fresh.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
