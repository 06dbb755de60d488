import json
from pathlib import Path

import pytest

from training.data.corpus import read_folder, segment_article
from training.core.errors import InputError
from training.data.gold import load_gold, text_hash

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]


@pytest.fixture(scope="module")
def seeds():
    return {s.id: s for s in read_folder(ROOT / "seeds")}


def test_seed_gold_covers_every_seed_sentence(seeds):
    gold = load_gold(ROOT / "data/gold/seeds.jsonl", seeds, LABELS)
    assert {g.id for g in gold} == set(seeds)
    assert all(g.label in LABELS and g.label not in g.secondary for g in gold)


def _write(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_changed_text_fails_loudly(tmp_path):
    original = {s.id: s for s in segment_article("a", "Talks began.\nTroops moved.")}
    path = _write(tmp_path / "g.jsonl", [{"id": s.id, "sha": text_hash(s.text), "label": "other"}
                                         for s in original.values()])
    assert len(load_gold(path, original, LABELS)) == 2
    edited = {s.id: s for s in segment_article("a", "Talks began.\nTanks moved.")}
    with pytest.raises(InputError, match=r"g.jsonl: line 2: id 'a:1' no longer matches its text"):
        load_gold(path, edited, LABELS)
    shorter = {s.id: s for s in segment_article("a", "Talks began.")}
    with pytest.raises(InputError, match=r"line 2: id 'a:1' is not a sentence of the corpus"):
        load_gold(path, shorter, LABELS)


@pytest.mark.parametrize("line, message", [
    ('{"id": "a:0", "sha": "x", "label": "weather"}', "line 1: unknown label 'weather'"),
    ('{"id": "a:0", "label": "other"}', "line 1: missing key 'sha'"),
    ('{"id": "a:0", "sha": ', "line 1: invalid JSON"),
])
def test_bad_gold_lines(tmp_path, line, message):
    sentences = {s.id: s for s in segment_article("a", "Talks began.")}
    path = tmp_path / "g.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_gold(path, sentences, LABELS)


def test_optional_gold_for_an_absent_corpus_is_skipped(tmp_path, seeds, caplog):
    caplog.set_level("DEBUG")
    gold = load_gold(ROOT / "data/gold/corpus.jsonl", seeds, LABELS, optional=True)
    assert gold == [] and "not in the corpus" in caplog.text and "not used" in caplog.text
    with pytest.raises(InputError):
        load_gold(ROOT / "data/gold/corpus.jsonl", seeds, LABELS, optional=False)


@pytest.mark.parametrize("sample, gold_file", [("corpus-2-sample.jsonl", "corpus-2.jsonl"),
                                               ("corpus-relabel.jsonl", "corpus.jsonl")])
def test_gold_carries_the_agreed_or_adjudicated_label_of_each_double_labelled_sentence(sample, gold_file):
    """The agreement files are the record of how disagreements were settled; the gold must follow them."""
    gold = {row["id"]: row for row in map(json.loads, (ROOT / "data/gold" / gold_file).read_text().splitlines())}
    rows = [json.loads(line) for line in (ROOT / "data/gold/agreement" / sample).read_text().splitlines()]
    assert rows and all(row["id"] in gold and row["sha"] == gold[row["id"]]["sha"] for row in rows)
    for row in rows:
        assert ("adjudicated" in row) == (row["first"] != row["second"]), row["id"]  # every disagreement settled
        assert gold[row["id"]]["label"] == row.get("adjudicated", row["first"]), row["id"]
        assert row.get("adjudicated", row["first"]) in LABELS and row.get("reason", "x"), row["id"]
