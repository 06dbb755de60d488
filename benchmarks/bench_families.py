"""Benchmark the model families: final-fit time, prediction throughput, size on disk, peak memory.

    python benchmarks/bench_families.py [--families seeds-tfidf seeds-minilm-head seeds-minilm-finetune] [--out FILE.json]

Each config runs in its own subprocess (this script with ``--worker CONFIG``) so memory peaks do not
mix. The fit is the final fit of ``training.train`` (all seed sentences, their training labels);
throughput is ``predict_proba`` over ``--sentences`` sentences in chunks of 1, 32 and 256. Seed
sentences are repeated with a numbered suffix so every text is distinct and no embedding cache
helps. Numbers are wall-clock on this machine: run it on an otherwise idle machine. Torch's
OpenMP threads spin-wait, so another busy process can make the MiniLM numbers several times worse;
the ``busy`` column says how many cores other processes kept busy just before each config ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["seeds-tfidf", "seeds-minilm-head", "seeds-minilm-finetune"]
BATCH_SIZES = [1, 32, 256]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy (by anything) over ``seconds``, from /proc/stat; None off Linux."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)  # busy = all but idle and iowait

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return None
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _texts(sentences: list[str], n: int) -> list[str]:
    """``n`` distinct texts: the sentences, then repeats with a numbered suffix."""
    return [s if k < len(sentences) else f"{s} ({k // len(sentences)})"
            for k, s in ((k, sentences[k % len(sentences)]) for k in range(n))]


def _throughput(model, texts: list[str], batch_size: int) -> float:
    from training.models import encoder

    encoder.clear_cache()  # a no-op unless the family caches embeddings
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        model.predict_proba(texts[start:start + batch_size])
    return len(texts) / (time.perf_counter() - started)


def worker(name: str, n_sentences: int) -> dict:
    """Benchmark one config in this process; returns one result row."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from training.core.config import load_config
    from training.models.families import new_model
    from training.labelling.stage import build

    config = load_config(ROOT / "configs" / f"{name}.yaml")
    labelled = build(config)
    texts = [s.text for s in labelled.sentences]  # throughput: one-sentence pages, as predict(texts) sends them
    data_rss = _peak_rss_mb()
    model = new_model(config.model.family, config.model.params, labelled.labels, config.seed)  # fit seeds itself
    started = time.perf_counter()
    model.fit(labelled.records, labelled.train_labels)
    fit_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        size_mb = _folder_mb(Path(tmp))
    bench = _texts(texts, n_sentences)
    model.predict_proba(bench[:8])  # warm-up
    throughput = {str(b): _throughput(model, bench, b) for b in BATCH_SIZES}
    return {"config": name, "family": config.model.family, "train_sentences": len(texts),
            "fit_seconds": fit_seconds, "throughput": throughput, "predict_sentences": n_sentences,
            "size_mb": size_mb, "peak_rss_mb": _peak_rss_mb(), "rss_after_data_mb": data_rss}


def run(name: str, n_sentences: int, threads: int | None) -> dict:
    """Benchmark one config in a fresh subprocess (``threads``: OpenMP/MKL threads, None for torch's default)."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    busy = busy_cores()
    done = subprocess.run([sys.executable, __file__, "--worker", name, "--sentences", str(n_sentences)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "threads": threads, "busy_before": busy}


def table(rows: list[dict]) -> str:
    header = (f"{'config':16} {'family':16} {'fit s':>7} " + " ".join(f"{f'sent/s @{b}':>11}" for b in BATCH_SIZES)
              + f" {'size MB':>8} {'peak RSS MB':>12} {'(data MB)':>10} {'busy':>5}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['config']:16} {r['family']:16} {r['fit_seconds']:7.1f} "
                     + " ".join(f"{r['throughput'][str(b)]:11.1f}" for b in BATCH_SIZES)
                     + f" {r['size_mb']:8.1f} {r['peak_rss_mb']:12.0f} {r['rss_after_data_mb']:10.0f}"
                     + (f" {r['busy_before']:5.1f}" if r["busy_before"] is not None else f" {'?':>5}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=CONFIGS, metavar="CONFIG",
                        help="config names under configs/ (default: %(default)s)")
    parser.add_argument("--sentences", type=int, default=512, help="sentences per throughput measurement")
    parser.add_argument("--threads", type=int, help="OpenMP/MKL threads per worker (default: torch's default)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.sentences)))
        return 0
    rows = []
    for name in args.families:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        rows.append(run(name, args.sentences, args.threads))
    print(table(rows))
    print(f"\nfit: final fit on all {rows[0]['train_sentences']} seed sentences (minilm_head includes loading the "
          f"encoder and embedding); throughput: predict_proba over {args.sentences} distinct sentences in chunks "
          "of 1/32/256; size: the saved family files (minilm_head references the packaged encoder, ~87 MB, "
          "rather than copying it); peak RSS: process high-water mark (data MB: after labelling, before the model); "
          f"busy: cores busy just before the config ran (of {os.cpu_count()}; anything above ~0.2 skews the numbers).")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
