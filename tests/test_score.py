"""The batch scorer: every input kind, page-aware labels, resume after a kill, bad rows, bad usage."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.serving.predict import classify_articles
from training.cli.score import main
from training.serving.score import duplicates_path, score, staging_folder

from conftest import SAMPLE_TEXTS

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


def _write_pages(path: Path, pages: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": key, "text": text}) + "\n" for key, text in pages.items()),
                    encoding="utf-8")
    return path


def _command(source: Path, model: str, out: Path, chunk_size: int) -> list[str]:
    return [sys.executable, "-m", "training.score", str(source), "--model", model, "--out", str(out),
            "--id-column", "id", "--chunk-size", str(chunk_size), "--no-progress"]


def _stop_after_first_part(command: list[str], out: Path, how: int, limit: float = 300) -> subprocess.CompletedProcess:
    """Start the scorer, wait until its first chunk is recorded in the staging folder (the file system is
    polled, at most ``limit`` seconds), then send ``how``; returns the finished process."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = staging_folder(out) / "part-000000.done.json"
    deadline = time.monotonic() + limit
    while not marker.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no finished chunk in {staging_folder(out)}: {process.communicate()[1][-2000:]}")
        time.sleep(0.005)  # a polling interval, not a wait for something to happen by itself
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=limit)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_killed_run_resumes_to_a_byte_identical_file(model, pages, tmp_path):
    """SIGKILL once the first chunk is recorded; the rerun scores only the chunks left and writes the same bytes."""
    many = {f"{key}-{copy}": text for copy in range(40) for key, text in pages.items()}  # 200 one-page chunks
    source = _write_pages(tmp_path / "pages.jsonl", many)
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    score(source, model, whole, id_column="id", chunk_size=1, progress=False)
    command = _command(source, model, resumed, chunk_size=1)
    killed = _stop_after_first_part(command, resumed, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not resumed.exists()
    finished = len(list(staging_folder(resumed).glob("*.done.json")))
    assert 1 <= finished < len(many)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{finished} chunk(s) from an earlier run" in again.stderr
    assert resumed.read_bytes() == whole.read_bytes()
    assert not staging_folder(resumed).exists()


def _minilm_model(tmp_path: Path) -> str:
    """The default family (page-aware MiniLM hybrid), fitted on a few sentences and exported."""
    import shutil

    from training.core.config import PROJECT_ROOT
    from training.models.families import new_model
    from training.tracking.export import write

    labels = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
    rules = tmp_path / "rules.yaml"
    shutil.copyfile(PROJECT_ROOT / "configs/rules/default.yaml", rules)
    params = {"rules": str(rules), "max_length": 64, "min_df": 1}
    answers = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]
    fitted = new_model("minilm_hybrid", params, labels, seed=0).fit(SAMPLE_TEXTS * 2, answers * 2)
    folder = tmp_path / "hybrid"
    folder.mkdir()
    write(folder, fitted, "minilm_hybrid", labels, {"model": {"family": "minilm_hybrid", "params": params}, "seed": 0}, {})
    return str(folder)


@pytest.mark.slow
def test_a_minilm_model_resumes_to_a_byte_identical_file(pages, tmp_path):
    """The issue's case: SIGTERM mid-run, then the same command. Pages share lines (bylines, "Read more"), so the
    uninterrupted run takes some of a later chunk's sentences from its embedding cache while the resumed run
    encodes them again beside other sentences; every probability must still come out bit for bit the same."""
    model = _minilm_model(tmp_path)
    chrome = ["By Staff Reporter", "Read more", "Share this article", SAMPLE_TEXTS[1]]
    many = {}
    for copy in range(3):
        for number, (key, text) in enumerate(pages.items()):
            lines = text.splitlines()[:12 + 3 * copy]
            many[f"{key}-{copy}"] = "\n".join([chrome[(number + copy) % 4], *lines, *chrome[:1 + copy]])
    source = _write_pages(tmp_path / "pages.jsonl", many)
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    uninterrupted = subprocess.run(_command(source, model, whole, chunk_size=3), cwd=ROOT, capture_output=True,
                                   text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    command = _command(source, model, resumed, chunk_size=3)
    stopped = _stop_after_first_part(command, resumed, signal.SIGTERM)
    assert stopped.returncode == 143 and "run the same command again" in stopped.stderr, stopped.stderr
    assert not resumed.exists() and len(list(staging_folder(resumed).glob("*.done.json"))) < 5
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "from an earlier run" in again.stderr, again.stderr
    assert resumed.read_bytes() == whole.read_bytes()


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


def test_repeated_page_ids_are_refused_with_one_line_and_all_listed(model, pages, tmp_path, capsys):
    texts = list(pages.values())
    ids = [f"p{n}" for n in range(12)] * 2 + ["once"]  # twelve ids twice each
    source = tmp_path / "pages.jsonl"
    source.write_text("".join(json.dumps({"id": key, "text": texts[n % 5]}) + "\n" for n, key in enumerate(ids)),
                      encoding="utf-8")
    out = tmp_path / "out.parquet"
    assert main([str(source), "--model", model, "--out", str(out), "--id-column", "id", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "12 page id(s) occur more than once" in err[0]
    shown = [key for key in dict.fromkeys(ids) if f"'{key}' (line" in err[0]]
    assert shown == [f"p{n}" for n in range(10)] and "--duplicate-ids suffix" in err[0]  # the first ten
    listed = [json.loads(line) for line in duplicates_path(out).read_text(encoding="utf-8").splitlines()]
    assert [item["article_id"] for item in listed] == [f"p{n}" for n in range(12)]
    assert listed[11]["where"] == ["line 12", "line 24"]
    assert not out.exists() and not staging_folder(out).exists()


def test_repeated_page_ids_can_be_made_unique(model, pages, tmp_path, capsys):
    texts = list(pages.values())
    rows = [("a", texts[0]), ("b", texts[1]), ("a", texts[2]), ("a~2", texts[3]), ("a", texts[4]), ("b", texts[2])]
    source = tmp_path / "pages.csv"
    pd.DataFrame(rows, columns=["id", "text"]).to_csv(source, index=False)
    out = tmp_path / "out.jsonl"
    argv = [str(source), "--model", model, "--out", str(out), "--id-column", "id", "--no-progress", "--chunk-size", "2"]
    assert main(argv + ["--duplicate-ids", "suffix"]) == 0
    err = capsys.readouterr().err
    assert "2 repeated page id(s) made unique" in err
    assert "'a' at row 1, row 3, row 5: scored as 'a', 'a~3', 'a~4'" in err  # a~2 is taken by the input
    frame = _read(out)
    assert list(dict.fromkeys(frame["article_id"])) == ["a", "b", "a~3", "a~2", "a~4", "b~2"]
    expected = {"a": texts[0], "b": texts[1], "a~3": texts[2], "a~2": texts[3], "a~4": texts[4], "b~2": texts[2]}
    _check_against_classify_articles(frame, expected, model)
    listed = [json.loads(line) for line in duplicates_path(out).read_text(encoding="utf-8").splitlines()]
    assert listed == [{"article_id": "a", "where": ["row 1", "row 3", "row 5"], "scored_as": ["a", "a~3", "a~4"]},
                      {"article_id": "b", "where": ["row 2", "row 6"], "scored_as": ["b", "b~2"]}]
    # the same input without the flag is refused, and the earlier output stays as it was
    before = out.read_bytes()
    assert main(argv) == 2 and "2 page id(s) occur more than once" in capsys.readouterr().err
    assert out.read_bytes() == before
