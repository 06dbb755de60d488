"""Sentences per second of ``segment_article`` on whole pages: plain pysbd vs the fast path.

    python benchmarks/bench_segmentation.py [--repeat 3]

Pages are every ``.txt`` of ``seeds/``, ``../shared/corpus`` and ``../shared/corpus-2`` that
exists, read into memory first (file reading is not timed). "pysbd only" is the old path
(``training.corpus.PYSBD_ONLY = True``: stock pysbd for every line); "fast" is the default. Each
path runs ``--repeat`` times in alternation, the best run counts; both must give identical
sentences. Wall-clock and CPU time (``time.process_time``) are both shown: on a busy machine (the
load average is printed) wall-clock rates drop, CPU-time rates much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pages() -> dict[str, list[tuple[str, str]]]:
    folders = {"seeds": ROOT / "seeds", "corpus": ROOT.parent / "shared" / "corpus",
               "corpus-2": ROOT.parent / "shared" / "corpus-2"}
    return {name: [(path.stem, path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.txt"))]
            for name, folder in folders.items() if folder.is_dir()}


def segment_all(page_list, pysbd_only: bool):
    from training.data import corpus

    corpus.PYSBD_ONLY = pysbd_only
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        out = [corpus.segment_article(article_id, text) for article_id, text in page_list]
        return (time.perf_counter() - wall, time.process_time() - cpu), out
    finally:
        corpus.PYSBD_ONLY = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sources = pages()
    everything = [page for page_list in sources.values() for page in page_list]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'pages':<10}{'path':<12}{'n pages':>8}{'sentences':>10}{'wall s':>8}{'sent/s':>8}"
          f"{'cpu s':>8}{'sent/cpu-s':>11}{'speed-up':>9}")
    for name, page_list in [*sources.items(), ("all", everything)]:
        best = {True: [float("inf")] * 2, False: [float("inf")] * 2}  # path -> [wall, cpu]
        results = {}
        for _ in range(args.repeat):
            for pysbd_only in (True, False):
                times, results[pysbd_only] = segment_all(page_list, pysbd_only)
                best[pysbd_only] = [min(pair) for pair in zip(best[pysbd_only], times)]
        if results[True] != results[False]:
            raise SystemExit(f"{name}: the fast path changed the sentences")
        count = sum(map(len, results[False]))
        for pysbd_only, label in ((True, "pysbd only"), (False, "fast")):
            wall, cpu = best[pysbd_only]
            speed = "" if pysbd_only else f"{best[True][1] / cpu:.1f}x"
            print(f"{name:<10}{label:<12}{len(page_list):>8}{count:>10}{wall:>8.2f}{count / wall:>8.0f}"
                  f"{cpu:>8.2f}{count / cpu:>11.0f}{speed:>9}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
