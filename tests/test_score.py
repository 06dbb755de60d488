"""The batch scorer: every input kind, page-aware labels, resume after a kill, bad rows, bad usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.serving.predict import classify_articles
from training.cli.score import main
from training.serving.score import FAIL_AFTER_ENV, score, staging_folder

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))


@pytest.fixture(scope="module")
def model(trained_default):
    result, _ = trained_default
    return str(result.model_dir)


@pytest.fixture(scope="module")
def pages():
    return {path.stem: path.read_text(encoding="utf-8") for path in SEEDS}


def _check_against_classify_articles(frame: pd.DataFrame, pages: dict[str, str], model: str) -> None:
    expected = classify_articles(list(pages.values()), model)
    assert list(dict.fromkeys(frame["article_id"])) == list(pages)
    labels = [f"p_{name}" for name in expected[0][0]["probabilities"]]
    for (article, page), sentences in zip(pages.items(), expected):
        rows = frame[frame["article_id"] == article]
        assert rows["index"].tolist() == [s["index"] for s in sentences]
        assert rows["label"].tolist() == [s["label"] for s in sentences]
        assert rows["text"].tolist() == [page[s["start"]:s["end"]] for s in sentences]
        assert rows["start"].tolist() == [s["start"] for s in sentences]
        want = np.array([[s["probabilities"][c[2:]] for c in labels] for s in sentences])
        assert np.allclose(rows[labels].to_numpy(), want, rtol=0, atol=1e-12)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True, dtype=False)


@pytest.mark.parametrize("kind", ["folder", "jsonl", "csv", "parquet", "hf_disk"])
def test_every_input_kind_matches_classify_articles(kind, model, pages, tmp_path):
    frame = pd.DataFrame({"url": list(pages), "body": list(pages.values())})
    if kind == "folder":
        source, columns = ROOT / "seeds", {}
    else:
        source, columns = tmp_path / f"pages.{kind}", {"text_column": "body", "id_column": "url"}
        if kind == "jsonl":
            frame.to_json(source, orient="records", lines=True, force_ascii=False)
        elif kind == "csv":
            frame.to_csv(source, index=False)
        elif kind == "parquet":
            frame.to_parquet(source)
        else:
            from datasets import Dataset

            Dataset.from_pandas(frame).save_to_disk(str(source))
    out = tmp_path / ("out.jsonl" if kind in ("jsonl", "csv") else "out.parquet")
    result = score(source, model, out, chunk_size=2, progress=False, **columns)
    assert (result.pages, result.bad) == (5, [])
    frame = _read(out)
    assert list(frame.columns[:6]) == ["article_id", "index", "start", "end", "text", "label"]
    assert list(frame.columns[-2:]) == ["model_name", "model_version"]
    assert set(frame["model_name"]) == {"test-tfidf"} and frame["model_version"].nunique() == 1
    _check_against_classify_articles(frame, pages, model)
    assert not staging_folder(out).exists()


def test_killed_run_resumes_to_a_byte_identical_file(model, tmp_path):
    """SIGKILL after chunk 1 of 3 is recorded; the rerun scores only chunk 2 and writes the same bytes."""
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    score(ROOT / "seeds", model, whole, chunk_size=2, progress=False)
    command = [sys.executable, "-m", "training.score", str(ROOT / "seeds"), "--model", model,
               "--out", str(resumed), "--chunk-size", "2", "--no-progress"]
    killed = subprocess.run(command, cwd=ROOT, env={**os.environ, FAIL_AFTER_ENV: "1"},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert not resumed.exists()
    assert sorted(p.name for p in staging_folder(resumed).glob("*.done.json")) == [
        "part-000000.done.json", "part-000001.done.json"]
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "2 chunk(s) from an earlier run" in again.stderr
    assert resumed.read_bytes() == whole.read_bytes()
    assert not staging_folder(resumed).exists()


def test_interrupted_jsonl_resumes_and_a_stale_staging_is_not_reused(model, pages, tmp_path, monkeypatch):
    import training.serving.score as scorer

    source = tmp_path / "pages.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in pages.values()), encoding="utf-8")
    whole, out = tmp_path / "whole.jsonl", tmp_path / "out.jsonl"
    score(source, model, whole, chunk_size=2, progress=False)

    real, calls = scorer.sentence_rows, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(scorer, "sentence_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score(source, model, out, chunk_size=2, progress=False)
    monkeypatch.setattr(scorer, "sentence_rows", real)
    assert not out.exists() and len(list(staging_folder(out).glob("*.done.json"))) == 1
    result = score(source, model, out, chunk_size=2, progress=False)
    assert result.resumed_chunks == 1
    assert out.read_bytes() == whole.read_bytes()

    # a staging folder left for another input (here: the file changed since) is started afresh
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(scorer, "sentence_rows", interrupted)
        calls.clear()
        score(source, model, out, chunk_size=2, progress=False)
    monkeypatch.setattr(scorer, "sentence_rows", real)
    first = list(pages.values())[0]
    source.write_text(json.dumps({"text": first}) + "\n", encoding="utf-8")
    messages = []
    result = score(source, model, out, chunk_size=2, progress=False, log=messages.append)
    assert result.resumed_chunks == 0 and result.pages == 1
    assert any("starting afresh" in line for line in messages)
    assert set(_read(out)["article_id"]) == {"pages-00000"}


def test_bad_rows_are_skipped_and_reported(model, pages, tmp_path, capsys):
    good = list(pages.values())[:2]
    lines = [json.dumps({"id": "good-1", "text": good[0]}), json.dumps({"id": "number", "text": 5}),
             json.dumps({"id": "empty", "text": "  \n"}), json.dumps({"id": "missing"}),
             "{not json", json.dumps({"id": "null", "text": None}), json.dumps(["a", "list"]),
             json.dumps({"id": "good-2", "text": good[1]})]
    source, out = tmp_path / "pages.jsonl", tmp_path / "out.parquet"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main([str(source), "--model", model, "--out", str(out), "--id-column", "id", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "6 bad row(s) skipped" in err
    for where in ("line 2", "line 3", "line 4", "line 5", "line 6", "line 7"):
        assert f"pages.jsonl: {where} " in err
    report = [json.loads(line) for line in (tmp_path / "out.parquet.skipped.jsonl").read_text().splitlines()]
    assert [r["problem"].split(" (")[0] for r in report] == [
        "text is int, not a string", "text empty", "text missing", "not valid JSON", "text missing",
        "a JSON list, not an object"]
    _check_against_classify_articles(_read(out), {"good-1": good[0], "good-2": good[1]}, model)

    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "a.txt").write_text(good[0], encoding="utf-8")
    (folder / "b.txt").write_bytes(b"caf\xe9 au lait\n")
    (folder / "c.txt").write_text("", encoding="utf-8")
    result = score(folder, model, tmp_path / "folder.jsonl", progress=False)
    assert (result.pages, [(r["article_id"], r["problem"].split(" (")[0]) for r in result.bad]) == (
        1, [("b", "not UTF-8 text"), ("c", "text empty")])


def test_bad_usage_is_one_line_and_exit_2(model, pages, tmp_path, capsys):
    jsonl, csv, parquet = tmp_path / "p.jsonl", tmp_path / "p.csv", tmp_path / "p.parquet"
    jsonl.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    pd.DataFrame({"body": ["x"]}).to_csv(csv, index=False)
    pd.DataFrame({"body": ["x"]}).to_parquet(parquet)
    (tmp_path / "p.xml").write_text("<p/>", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "out.parquet")
    cases = [
        ([str(tmp_path / "missing"), "--model", model, "--out", out], "missing: input not found"),
        ([str(tmp_path / "p.xml"), "--model", model, "--out", out], "unknown input suffix '.xml'"),
        ([str(jsonl), "--model", model, "--out", str(tmp_path / "out.csv")], "unknown output suffix '.csv'"),
        ([str(jsonl), "--model", model, "--out", out], "p.jsonl: no column 'text'"),
        ([str(csv), "--model", model, "--out", out], "p.csv: no column 'text'"),
        ([str(parquet), "--model", model, "--out", out, "--text-column", "body", "--id-column", "url"],
         "p.parquet: no column 'url'"),
        ([str(jsonl), "--model", str(tmp_path / "nomodel"), "--out", out, "--text-column", "body"],
         "nomodel"),
        ([str(empty), "--model", model, "--out", out], "no .txt pages"),
    ]
    for argv, needle in cases:
        assert main(argv + ["--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, (argv, err)
    assert not (tmp_path / "out.parquet").exists() and not staging_folder(tmp_path / "out.parquet").exists()
    cli = subprocess.run([sys.executable, "-m", "training.score", str(tmp_path / "missing"), "--model", model,
                          "--out", out], cwd=ROOT, capture_output=True, text=True)  # pytest-timeout guards
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
