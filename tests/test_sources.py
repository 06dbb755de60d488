"""One reader set: training and the batch scorer read the same pages with the same ids from every kind of input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from training.core.config import SourceConfig
from training.core.errors import InputError
from training.data.corpus import load_sources
from training.data.sources import open_source, problem_of, repeated_ids
from training.serving.score import open_input

ROWS = [{"doc": "x1", "body": "Troops moved north. Talks began."}, {"doc": "", "body": "The drill ended."},
        {"doc": "x3", "body": "Read more"}]


def _write(kind: str, folder: Path) -> Path:
    frame = pd.DataFrame(ROWS)
    if kind == "folder":
        path = folder / "pages"
        path.mkdir()
        for row in ROWS:
            (path / f"{row['doc'] or 'untitled'}.txt").write_text(row["body"], encoding="utf-8")
    elif kind == "jsonl":  # a blank line is no row
        path = folder / "pages.jsonl"
        path.write_text("\n\n".join(json.dumps(row) for row in ROWS) + "\n", encoding="utf-8")
    elif kind == "csv":
        path = folder / "pages.csv"
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        path = folder / "pages.parquet"
        frame.to_parquet(path)
    else:
        from datasets import Dataset

        path = folder / "pages.hf"
        Dataset.from_pandas(frame).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["folder", "jsonl", "csv", "parquet", "hf_disk"])
@pytest.mark.parametrize("id_column", ["doc", None])
def test_training_and_scoring_give_the_same_page_ids(tmp_path, kind, id_column):
    path = _write(kind, tmp_path)
    spec = SourceConfig(name="news", kind=kind, path=path, text_column="body", id_column=id_column)
    trained = list(dict.fromkeys(s.article_id for s in load_sources([spec], lambda p: p)))
    scored = open_input(path, "body", id_column, source_name="news")
    assert scored.kind == kind
    assert [page.article_id for page in scored.pages()] == trained
    if kind == "folder":  # file stems, whatever the columns
        assert trained == ["untitled", "x1", "x3"]
    else:
        assert trained == (["x1", "news-00001", "x3"] if id_column else ["news-00000", "news-00001", "news-00002"])
        # without a source name the scorer names rows after the input file
        assert [p.article_id for p in open_input(path, "body", None).pages()][0] == f"{path.stem}-00000"


def test_rows_that_cannot_be_read_are_pages_with_a_problem(tmp_path):
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"id": "a", "text": "Fine."}\n{"id": "b", "text": 5}\n{nope\n[1]\n{"id": "c"}\n'
                     b'{"id": "d", "text": "caf\xe9"}\n{"id": "e", "text": "  "}\n')
    source = open_source(path, "jsonl", id_column="id")
    problems = [(page.article_id, page.where, problem_of(page)) for page in source.pages()]
    assert [(article, where, problem.split(" (")[0]) for article, where, problem in problems] == [
        ("a", "line 1", ""), ("b", "line 2", "text is int, not a string"), ("pages-00002", "line 3", "not valid JSON"),
        ("pages-00003", "line 4", "a JSON list, not an object"), ("c", "line 5", "text missing"),
        ("pages-00005", "line 6", "not UTF-8 text"), ("e", "line 7", "text empty")]
    with pytest.raises(InputError, match=r"pages.jsonl: line 2: text is int, not a string"):
        load_sources([SourceConfig(name="n", kind="jsonl", path=path, id_column="id")], lambda p: p)


def test_repeated_ids_are_found_with_every_occurrence(tmp_path):
    path = tmp_path / "pages.csv"
    pd.DataFrame({"id": ["a", "b", "a", "c", "b", "a", ""], "text": ["x"] * 7}).to_csv(path, index=False)
    repeats = repeated_ids(open_source(path, "csv", id_column="id", name="n"))
    assert repeats.rows == {"a": [(0, "row 1"), (2, "row 3"), (5, "row 6")], "b": [(1, "row 2"), (4, "row 5")]}
    assert repeats.may_exist("c") and repeats.may_exist("n-00006") and not repeats.may_exist("a~2")
