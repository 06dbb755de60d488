"""Page throughput of an exported model: ``training.predict.classify_articles`` on distinct real pages, cold.

    python benchmarks/bench_pages.py [--model models/default] [--pages FOLDER_OR_FILE] [-n 100]

``--pages`` is any page source the scorer reads (a folder of .txt pages, .jsonl, .csv, .parquet, a
``save_to_disk`` folder); by default ``../shared/corpus-2`` (else ``../shared/corpus``, else the seeds).
The first ``-n`` distinct pages are taken whole, pages the model's training sources do not hold
first; nothing is repeated (fewer pages if the source has fewer). The output says how many distinct
sentences were scored and how many of them (and of the pages) the model saw in training.

Cold: the persistent embedding cache is off for this process (``TRAINING_EMBEDDING_CACHE=off``) and
the in-process embedding cache is cleared before each timed call, so every sentence is encoded (a
sentence that occurs twice within one call is encoded once, as the encoder always does). Two ways:
all pages in one ``classify_articles`` call, then one page per call (only the calls are timed).

Run it on an idle machine (load below 0.5): torch threads spin-wait, so any other busy process skews
the figure; the output starts with the load average it found.
"""

from __future__ import annotations

import os

os.environ["TRAINING_EMBEDDING_CACHE"] = "off"  # before training is imported: no persistent cache, read or written
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_PAGES = (ROOT.parent / "shared" / "corpus-2", ROOT.parent / "shared" / "corpus", ROOT / "seeds")


@dataclass
class Seen:
    """What the model's training sources hold, to tell which benchmark pages and sentences it saw."""

    pages: set[str]  # page texts
    sentences: set[str]  # sentence texts
    missing: list[str]  # training sources not found here (not checked)


def training_material(model: Path) -> Seen:
    """The page and sentence texts of the sources a model folder's config trained on (as far as they are here)."""
    from training.core.config import PROJECT_ROOT
    from training.data.corpus import segment_article
    from training.data.sources import open_source

    config = json.loads((model / "model.json").read_text(encoding="utf-8")).get("config") or {}
    trains = config.get("train_sources")
    seen = Seen(set(), set(), [])
    for spec in config.get("sources") or []:
        if trains is not None and spec["name"] not in trains:
            continue
        path = Path(spec["path"]) if Path(spec["path"]).is_absolute() else PROJECT_ROOT / spec["path"]
        if not path.exists():
            seen.missing.append(f"{spec['name']} ({path})")
            continue
        source = open_source(path, spec.get("kind"), spec.get("text_column", "text"), spec.get("id_column"))
        for page in source.pages():
            page = source.load(page)
            if isinstance(page.text, str):
                seen.pages.add(page.text)
                seen.sentences.update(s.text for s in segment_article(page.article_id, page.text))
    return seen


def pick_pages(where: Path, count: int, seen: Seen) -> list[str]:
    """The first ``count`` distinct pages of ``where`` that hold a sentence, unseen pages before seen ones."""
    from training.data.corpus import segment_article
    from training.data.sources import open_source

    source = open_source(where)
    unseen, known, taken = [], [], set()
    for page in source.pages():
        text = source.load(page).text
        if not isinstance(text, str) or text in taken or not segment_article("p", text):
            continue
        taken.add(text)
        (known if text in seen.pages else unseen).append(text)
        if len(unseen) == count:
            break
    return (unseen + known)[:count]


def timed(classify, batches: list[list[str]]) -> tuple[float, int]:
    """(seconds in the calls, sentences labelled): one ``classify`` call per batch, the embedding cache cleared
    before each."""
    from training.models.encoder import clear_cache

    seconds, sentences = 0.0, 0
    for batch in batches:
        clear_cache()
        started = time.perf_counter()
        result = classify(batch)
        seconds += time.perf_counter() - started
        sentences += sum(len(page) for page in result)
    return seconds, sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default"))
    parser.add_argument("--pages", type=Path, default=next((p for p in DEFAULT_PAGES if p.exists()), DEFAULT_PAGES[-1]),
                        help="page source: folder of .txt pages, .jsonl, .csv, .parquet (default ../shared/corpus-2)")
    parser.add_argument("-n", "--count", type=int, default=100, help="distinct pages to score (default 100)")
    args = parser.parse_args(argv)
    problem = "-n/--count: at least 1" if args.count < 1 else \
        f"--pages {args.pages}: not found" if not args.pages.exists() else \
        f"--model {args.model}: no model.json (not a model folder)" if not (Path(args.model) / "model.json").is_file() \
        and "://" not in args.model and not args.model.startswith(("models:", "runs:")) else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from training.core.console import quiet_third_parties
    from training.data.corpus import segment_article
    from training.predict import classify_articles, load

    quiet_third_parties()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
          + ("" if os.getloadavg()[0] < 0.5 else ": the machine is busy, the figures below are not comparable"))
    model = Path(args.model)
    seen = training_material(model) if (model / "model.json").is_file() else Seen(set(), set(), [str(model)])
    pages = pick_pages(args.pages, args.count, seen)
    sentences = [s.text for n, page in enumerate(pages) for s in segment_article(f"p{n}", page)]
    distinct = set(sentences)
    seen_pages = sum(page in seen.pages for page in pages)
    print(f"pages: {len(pages)} distinct from {args.pages}" + (f" (asked for {args.count})" if len(pages) < args.count
                                                                else "")
          + f"; {len(sentences)} sentences, {len(distinct)} distinct")
    print(f"seen in training: {seen_pages} of the {len(pages)} pages, {len(distinct & seen.sentences)} of the "
          f"{len(distinct)} distinct sentences" + (f" (not checked against {', '.join(seen.missing)}: not found here)"
                                                   if seen.missing else ""))
    started = time.perf_counter()
    classifier = load(args.model)
    classify = lambda batch: classify_articles(batch, model=classifier)  # noqa: E731
    classify(["Warm-up page. It loads the encoder."])
    print(f"model {args.model} ({classifier.family}): load + warm-up {time.perf_counter() - started:.1f} s; "
          "persistent embedding cache off, in-process cache cleared before each call")
    for what, batches in (("one call", [pages]), ("one page per call", [[page] for page in pages])):
        seconds, labelled = timed(classify, batches)
        print(f"{what:>18}: {labelled} sentences of {len(pages)} pages in {seconds:.1f} s: "
              f"{labelled / seconds:,.0f} sentences/s, {len(pages) / seconds:.1f} pages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
