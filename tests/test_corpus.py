import json
from pathlib import Path

import pandas as pd
import pytest

from training.core.config import SourceConfig
from training.data.corpus import load_sources, read_folder, segment_article
from training.core.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_line_breaks_end_units_and_abbreviations_do_not():
    text = ("Pittsburgh Post-Gazette\n\n- By Lolita C. Baldor\n"
            "Gen. Mark Milley spoke with his U.S. and Russian counterparts on Friday. Mr. Austin agreed.\n"
            "   \n\t\nRead more")
    sentences = segment_article("a1", text)
    assert [s.text for s in sentences] == [
        "Pittsburgh Post-Gazette",
        "- By Lolita C. Baldor",
        "Gen. Mark Milley spoke with his U.S. and Russian counterparts on Friday.",
        "Mr. Austin agreed.",
        "Read more",
    ]


def test_offsets_ids_and_whitespace():
    text = "  Headline without stop  \r\nFirst one. Second one!\n\n \u00a0\nLast"
    sentences = segment_article("art", text)
    assert [s.id for s in sentences] == ["art:0", "art:1", "art:2", "art:3"]
    for s in sentences:
        assert text[s.start:s.end] == s.text
        assert s.text == s.text.strip() and s.text
    assert sentences[0].text == "Headline without stop"


def test_seed_folder_is_segmented_stably():
    first = read_folder(ROOT / "seeds")
    second = read_folder(ROOT / "seeds")
    assert [s.to_dict() for s in first] == [s.to_dict() for s in second]
    assert len({s.article_id for s in first}) == 5
    raw = (ROOT / "seeds" / f"{first[0].article_id}.txt").read_text(encoding="utf-8")
    assert all(raw[s.start:s.end] == s.text for s in first if s.article_id == first[0].article_id)


def test_bad_folders_and_encodings(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_folder(tmp_path / "missing")
    with pytest.raises(InputError, match="no .txt pages"):
        read_folder(tmp_path)
    (tmp_path / "latin.txt").write_bytes("Caf\xe9 talks".encode("latin-1"))
    with pytest.raises(InputError, match="latin.txt: not UTF-8"):
        read_folder(tmp_path)


def _articles():
    return [{"doc": "x1", "body": "Troops moved north. Talks began.\nRead more"},
            {"doc": "x2", "body": "The drill ended."}]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "hf_disk"])
def test_table_sources(tmp_path, kind):
    frame = pd.DataFrame(_articles())
    path = tmp_path / f"src.{kind}"
    if kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in _articles()), encoding="utf-8")
    elif kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        frame.to_parquet(path)
    else:
        from datasets import Dataset

        Dataset.from_pandas(frame).save_to_disk(str(path))
    spec = SourceConfig(name="t", kind=kind, path=path, text_column="body", id_column="doc")
    sentences = load_sources([spec], lambda p: p)
    assert [s.id for s in sentences] == ["x1:0", "x1:1", "x1:2", "x2:0"]
    assert sentences[2].text == "Read more" and sentences[0].source == "t"


def test_table_without_id_column_and_bad_column(tmp_path):
    path = tmp_path / "src.jsonl"
    path.write_text('{"text": "One. Two."}\n{"text": "Three."}\n', encoding="utf-8")
    sentences = load_sources([SourceConfig(name="news", kind="jsonl", path=path)], lambda p: p)
    assert [s.id for s in sentences] == ["news-00000:0", "news-00000:1", "news-00001:0"]
    with pytest.raises(InputError, match="no column 'body'"):
        load_sources([SourceConfig(name="n", kind="jsonl", path=path, text_column="body")], lambda p: p)


def test_missing_optional_source_is_skipped_with_notice(tmp_path, caplog):
    specs = [SourceConfig(name="seeds", path=ROOT / "seeds"),
             SourceConfig(name="extra", path=tmp_path / "nope", optional=True)]
    sentences = load_sources(specs, lambda p: p)
    assert len({s.article_id for s in sentences}) == 5
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "'extra'" in notices[0] and "skipped" in notices[0]
    assert notices[0].endswith("using seeds (5 pages)")  # and what the run is left with
    with pytest.raises(InputError, match="not found"):
        load_sources([SourceConfig(name="extra", path=tmp_path / "nope")], lambda p: p)


@pytest.mark.timeout(120)  # quadratic segmentation took minutes here; about 2 s on 2 cores now
def test_one_megabyte_without_line_breaks_segments_in_linear_time_with_exact_offsets(monkeypatch):
    from training.data import corpus
    from training.data.corpus import MAX_UNIT, safe_pieces

    text = "Troops moved north on Monday and the talks went on " * 20_000  # ~1 MB, no line break, no stop
    seen = []  # what the segmenter is given: pysbd's time grows with the square of each piece
    pieces = corpus._spans_in_piece
    monkeypatch.setattr(corpus, "_spans_in_piece", lambda piece: (seen.append(len(piece)), pieces(piece))[1])
    sentences = segment_article("long", text)
    assert max(seen) <= MAX_UNIT and sum(seen) == len(text)  # bounded pieces, each character once: linear
    assert all(text[s.start:s.end] == s.text for s in sentences)
    assert "".join(text[a:b] for a, b in safe_pieces(text)) == text
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert len(sentences) > 1  # it was cut, not returned as one 1 MB sentence


def test_every_line_of_the_gold_pages_is_one_segmenter_unit():
    """Long-line splitting never touches a gold page, so no gold sentence id or hash can move."""
    from training.data.corpus import safe_pieces

    folders = [ROOT / "seeds", ROOT.parent / "shared" / "corpus", ROOT.parent / "shared" / "corpus-2"]
    lines = [line for folder in folders if folder.is_dir() for path in folder.glob("*.txt")
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines
    assert all(len(list(safe_pieces(line))) == 1 for line in lines)
