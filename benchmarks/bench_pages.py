"""Page throughput of an exported model: ``classify_articles`` on real pages, cold caches.

    python benchmarks/bench_pages.py [--model models/default] [--pages 100] [--sentences 20]

Pages are real development pages (``../shared/corpus-2``, else ``../shared/corpus``, else the
seeds) cut to about ``--sentences`` sentences each; every batch is ``--pages`` pages scored in one
``classify_articles`` call, from a fresh process (no embedding cached). Run on an idle machine:
torch threads spin-wait, so any other busy process skews the figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pages(count: int, sentences: int) -> list[str]:
    from training.data.corpus import segment_article

    for folder in (ROOT.parent / "shared" / "corpus-2", ROOT.parent / "shared" / "corpus", ROOT / "seeds"):
        if folder.is_dir():
            break
    out = []
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        units = segment_article(path.stem, text)
        if len(units) >= sentences:
            out.append(text[:units[sentences - 1].end])
        if len(out) == count:
            break
    while len(out) < count:  # a small corpus: repeat pages with a suffix so nothing is cached
        out.append(out[len(out) % max(len(out), 1)] + f"\nPage copy {len(out)}.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default"))
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--sentences", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from training.serving.predict import load

    batch = pages(args.pages, args.sentences)
    started = time.perf_counter()
    clf = load(args.model)
    clf.classify_articles(["Warm-up page. It loads the encoder."])
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    result = clf.classify_articles(batch)
    seconds = time.perf_counter() - started
    n = sum(len(page) for page in result)
    print(f"model {args.model} ({clf.family}): load + warm-up {loaded:.1f} s; {len(batch)} pages, {n} sentences "
          f"in {seconds:.1f} s: {n / seconds:.0f} sentences/s, {len(batch) / seconds:.1f} pages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
