"""Segmentation stays exactly what the gold files record, and the fast path equals plain pysbd."""

import json
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest

from training.data import corpus
from training.data.corpus import segment_article
from training.data.gold import text_hash

ROOT = Path(__file__).resolve().parent.parent
GOLD = [("seeds.jsonl", ROOT / "seeds"), ("corpus.jsonl", ROOT.parent / "shared" / "corpus"),
        ("corpus-2.jsonl", ROOT.parent / "shared" / "corpus-2")]


@pytest.mark.parametrize("gold_name, folder", GOLD, ids=[name for name, _ in GOLD])
def test_gold_pages_segment_to_exactly_the_gold_sentences(gold_name, folder):
    if not folder.is_dir():
        assert folder.parent.name == "shared", "the seeds always run"
        pytest.skip(f"{folder} is absent")
    gold = defaultdict(dict)  # article id -> {sentence id: sha}
    for line in (ROOT / "data" / "gold" / gold_name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            gold[row["id"].rsplit(":", 1)[0]][row["id"]] = row["sha"]
    assert gold
    for article_id, expected in gold.items():
        text = (folder / f"{article_id}.txt").read_text(encoding="utf-8")
        produced = {s.id: text_hash(s.text) for s in segment_article(article_id, text)}
        assert set(produced) == set(expected), f"{article_id}: sentence ids differ from the gold file"
        changed = [i for i, sha in expected.items() if not produced[i].startswith(sha)]
        assert not changed, f"{article_id}: text changed for {changed[:5]}"


def _both_paths(monkeypatch, function, *args):
    """(plain pysbd result, fast path result) of ``function(*args)``."""
    monkeypatch.setattr(corpus, "PYSBD_ONLY", True)
    stock = function(*args)
    monkeypatch.setattr(corpus, "PYSBD_ONLY", False)
    return stock, function(*args)


def _spans(line):
    return list(corpus._spans_in_line(line))


def _sentences(text):
    return [s.to_dict() for s in segment_article("page", text)]


TRICKY = [
    "Gen. Mark Milley spoke with his U.S. counterpart on Friday.",
    "The U.S. and the U.K. agreed. Mr. Austin said so.",
    "The U.S. Army moved 3.5 tons of gear, up 2.5% from 1.5 in Jan. 2023.",
    "Talks resume at 10 a.m. The minister arrives at 3 P.M. on Monday.",
    "He waited... And then he left… Nobody knew. . . . Really.",
    'He said "Go now." Then he left.',
    "“We will stay,” he said. “Not now.” Officials agreed.",
    "'Iron Dome' Systems work.",
    '"Quoted" Start of a line.',
    "The talks -\" Next part",
    "No. 5 was hit. Art. 7 applies. St. Louis and Ft. Worth.",
    "a) first item b) second item c) third",
    "1. One thing 2. Two things 3. Three things",
    "(i) the plan (ii) the rest (iii) more",
    "Troops moved north",
    "Headline without any punctuation at all",
    "Pittsburgh Post-Gazette — Read more › Share",
    "Write to foo@bar.com or visit www.site.org. The file.pdf is attached.",
    "Yahoo! News reported it. What?! Really!! No?? Yes!?",
    "He is 6 ft. tall. Ph.D. students, e.g. this one, i.e. that one, etc. left.",
    "İstanbul hosted talks. The Kelvin K sign. The long ſ. Dotless ı.",
    "A. Smith wrote it.",
    "A.",
    "x.",
    "Co. KG sold it.",
    "The report said: (see p. 5) more.",
    "Dr. Smith's plan [1]. Next sentence [2] here.",
    "Officials met.[3] Then more.",
    "\u00a0\tIndented with odd whitespace.\u00a0 ",
    "Trailing spaces after the stop.   ",
    "Ends without stop but has U.S. inside",
    "“A quote that ends the line.”",
    "Placeholders ∯ ☝ ♨ ȸ &⎋& in text. Fine.",
    "Full-width stops。 And ！ and ？ too.",
    "Back\\slash text. More.",
]


@pytest.mark.parametrize("line", TRICKY)
@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_fast_path_equals_pysbd_on_tricky_lines(monkeypatch, line, ending):
    stock, fast = _both_paths(monkeypatch, _spans, line + ending)
    assert fast == stock


def test_fast_path_equals_pysbd_on_random_lines(monkeypatch):
    words = ("The troops moved north said officials talks began in Moscow he She It We They However "
             "a b i ii v I A US Gen Mr No St p Inc Co Jan Col Sgt is me al pm AM 3 12 1 2 - -- — "
             "' \" “ ” ‘ ’ « » ( [ ] & , ; : 's KG pdf İ K Gen. Mr. U.S. a.m. 3.5 1. 2. a) b) (i) "
             "... … ! ? . ?! Yahoo!").split(" ")
    rng = random.Random(7)
    lines = []
    for _ in range(400):
        text = "".join(rng.choice(words) + rng.choice(["  ", "\t", "\u00a0"] + [" "] * 12)
                       for _ in range(rng.randint(1, 9))).rstrip()
        text = rng.choice(["", "", "", "  ", "\"", "“", "'", "(", "- "]) + text
        text += rng.choice(["", ".", ".", ".", ". ", ".”", "!", "?"])
        lines.append(text + rng.choice(["\n", "\r\n", ""]))
    stock, fast = _both_paths(monkeypatch, lambda: [_spans(line) for line in lines])
    assert fast == stock
    assert sum(map(corpus._one_unit, lines)) > 40  # the fast path is actually exercised


def test_fast_path_equals_pysbd_on_whole_pages(monkeypatch):
    lines = TRICKY + ["", "   ", "Read more"]
    pages = {
        "crlf": "\r\n".join(lines) + "\r\n",
        "lf": "\n".join(lines),
        "no line breaks": " ".join(lines),
        "long line": "The talks went on. Gen. Smith agreed. " * 150 + "no stop " * 700,
        "odd breaks": "Troops moved.\x0cTalks began\u2028Next line.\x85Last\rOld Mac line.\vEnd",
    }
    for name, text in pages.items():
        stock, fast = _both_paths(monkeypatch, _sentences, text)
        assert fast == stock, name
        assert all(text[s["start"]:s["end"]] == s["text"] for s in fast)


def test_fast_path_takes_only_lines_pysbd_keeps_whole():
    one_unit = corpus._one_unit
    if not corpus._fast_ok():
        assert not one_unit("Troops moved north")
        pytest.skip("pysbd is not 0.3.4: stock pysbd everywhere")
    assert one_unit("Troops moved north\n") and one_unit("  Troops moved north.  \r\n")
    assert one_unit("The “Iron Dome” system works, officials said.")
    for line in ["U.S. troops moved.", "Troops moved. Talks began.", "Really?", "a) one b) two",
                 "'Iron Dome' Systems work.", '"Quoted" Start.', "The talks -\" Next", "A line\nwith a break",
                 "Ends with a quote.”", "A ∯ placeholder", "Back\\slash."]:
        assert not one_unit(line), line


def test_fast_path_guards_match_the_installed_pysbd():
    """The character list and regex copied from pysbd still cover its source (an upgrade fails here)."""
    import pysbd
    from pysbd.lang.common import Common

    if not corpus._fast_ok():
        pytest.skip("pysbd is not 0.3.4: the fast path is off")
    assert corpus._QUOTE_SPLIT == Common.QUOTATION_AT_END_OF_SENTENCE_REGEX
    source = Path(pysbd.__file__).parent
    files = [*source.glob("*.py"), *source.glob("lang/common/*.py"), source / "lang" / "english.py"]
    special = {char for path in files for char in path.read_text(encoding="utf-8") if ord(char) > 127}
    assert special - set(corpus._PYSBD_CHARS) == set("‘’“”«»")
    # the characters that case-insensitive regexes or lower() map onto ASCII letters
    everything = "".join(chr(code) for code in range(128, 0x110000) if not 0xD800 <= code < 0xE000)
    odd = set(re.findall("(?i)[a-z]", everything))
    odd |= {char for char in everything if len(char.lower()) != 1 or char.lower().isascii()}
    assert odd == set(corpus._ODD_CASE)
