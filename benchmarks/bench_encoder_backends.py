"""Encoder throughput per backend: torch, onnx (fp32) and onnx-int8 on the same real sentences.

    python benchmarks/bench_encoder_backends.py [--sentences 2000] [--batch-size 32] [--threads 2] [--repeats 3]

Sentences are the first ``--sentences`` distinct ones of ``../shared/corpus`` (else the seeds),
read with :func:`training.corpus.read_folder`. Each backend embeds all of them ``--repeats`` times
with the embedding cache off, after a warm-up that loads (and on first use exports) its model;
the best repeat is reported, since other processes can only slow a run down. torch runs with
``torch.set_num_threads(threads)``, ONNX Runtime with ``threads`` intra-op threads. Run on an idle
machine for figures worth comparing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sentences(count: int) -> tuple[list[str], Path]:
    from training.data.corpus import read_folder

    folder = ROOT.parent / "shared" / "corpus"
    folder = folder if folder.is_dir() else ROOT / "seeds"
    texts = list(dict.fromkeys(s.text for s in read_folder(folder)))
    return texts[:count], folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TRAINING_ONNX_THREADS"] = str(args.threads)
    import torch

    from training.models.encoder import embed

    torch.set_num_threads(args.threads)
    texts, folder = sentences(args.sentences)
    print(f"{len(texts)} sentences from {folder}, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.threads} threads, best of {args.repeats}")
    results = []
    for backend in args.backends.split(","):
        started = time.perf_counter()
        embed(texts[:args.batch_size], max_length=args.max_length, batch_size=args.batch_size, backend=backend,
              use_cache=False)
        warm = time.perf_counter() - started
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            embed(texts, max_length=args.max_length, batch_size=args.batch_size, backend=backend, use_cache=False)
            runs.append(time.perf_counter() - started)
        best = min(runs)
        results.append({"backend": backend, "sentences": len(texts), "seconds": runs, "best_seconds": best,
                        "sentences_per_second": len(texts) / best, "warm_up_seconds": warm})
        print(f"{backend:10s} {len(texts) / best:8.1f} sent/s (best of {', '.join(f'{r:.1f}' for r in runs)} s; "
              f"load/export + warm-up {warm:.1f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
