"""Serving at scale, side by side: each model family and encoder backend, the batch scorer, a peer encoder.

    python benchmarks/bench_scale.py [--sentences 5000] [--only tfidf_logreg minilm_head:onnx-int8 ...]
                                     [--skip-scorer] [--skip-peer]

The N sentences are the first N distinct ones of ``../shared/corpus-2`` then ``../shared/corpus``
(read with :func:`training.corpus.read_folder`; the seeds, repeated with numbered suffixes, when
``../shared`` is absent). Each model is fitted on the first 500 of them with their rule labels
(majority vote; cheap, and not what is measured), exported to a temporary folder as
``training.train`` does (stage, write, commit) and measured in a fresh subprocess: cold start
(interpreter + imports + ``training.predict.load`` + the first prediction), ``predict_proba``
sentences/s in calls of 1 (the first 300 sentences; p50/p95 latency per call), 32 and 256 sentences
(all N), peak RSS and the folder's size. The embedding cache is cleared before each measurement.
Then ``python -m training.score`` on corpus-2 (the tfidf model always; ``models/default`` when a
hybrid row is selected and it exists), and sentence-transformers against ``training.encoder.embed``
(torch, batch 32). ``busy`` is how many cores other processes kept busy just before each measurement:
run on an idle machine. Results also go to ``benchmarks/results/bench_scale.json``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from bench_families import _folder_mb, _peak_rss_mb, _texts, _throughput, busy_cores  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = ["tfidf_logreg", "minilm_head:torch", "minilm_head:onnx", "minilm_head:onnx-int8",
          "minilm_hybrid:torch", "minilm_hybrid:onnx-int8"]
CONFIGS = {"tfidf_logreg": "tfidf.yaml", "minilm_head": "minilm-head.yaml", "minilm_hybrid": "default.yaml"}
TRAIN_SENTENCES = 500
BATCH1_SENTENCES = 300
RESULTS = ROOT / "benchmarks" / "results" / "bench_scale.json"


def corpus_sentences():
    """(distinct sentences of real pages, where they came from); the seeds when ../shared is absent."""
    from training.data.corpus import read_folder

    folders = [f for f in (SHARED / "corpus-2", SHARED / "corpus") if f.is_dir()] or [ROOT / "seeds"]
    distinct = {}
    for folder in folders:
        for sentence in read_folder(folder, source=folder.name):
            distinct.setdefault(sentence.text, sentence)
    return list(distinct.values()), ", ".join(str(f) for f in folders)


def export_model(name: str, train: list, dest: Path) -> Path:
    """Fit ``family[:backend]`` on ``train`` (rule labels) and export it to ``dest`` as training.train does."""
    from training.tracking import export
    from training.labelling.combine import combine
    from training.core.config import load_config
    from training.models.families import new_model
    from training.data.records import as_records
    from training.labelling.rules import apply_rules, load_rules

    family, _, backend = name.partition(":")
    config = load_config(ROOT / "configs" / CONFIGS[family], [f"model.params.backend={backend}"] if backend else [])
    ruleset = load_rules(config.resolve(config.labelling.rules))
    names = ruleset.label_names
    votes = combine(apply_rules(ruleset, train), names, ruleset.tie_order, ruleset.default, "majority")
    model = new_model(family, config.model.params, names, config.seed)  # fit seeds itself
    model.fit(as_records(train), [names[i] for i in votes.labels])
    staging = export.stage(dest)
    try:
        export.write(staging, model, family, names, config.model_dump(mode="json"), metrics={},
                     extra={"note": f"bench_scale: fitted on {len(train)} sentences' rule labels"})
        return export.commit(staging, dest)
    except BaseException:
        export.discard(staging)
        raise


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM first: getrusage's ru_maxrss survives exec, so a child of a big parent
    would report the parent's peak (Linux); ru_maxrss where /proc is missing."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return _peak_rss_mb()


def worker(folder: str, texts_file: str, spawned: float) -> dict:
    """In a fresh process: cold start, then predict_proba at batch 1, 32 and 256."""
    import numpy as np

    from training.models import encoder
    from training.serving.predict import load

    clf = load(folder)
    clf.predict_proba(["Cold start: the first sentence this process classifies."])
    cold = time.time() - spawned
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    encoder.clear_cache()
    latencies = []
    for text in texts[:BATCH1_SENTENCES]:
        started = time.perf_counter()
        clf.predict_proba([text])
        latencies.append(time.perf_counter() - started)
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    rates = {"1": len(latencies) / sum(latencies), **{str(b): _throughput(clf, texts, b) for b in (32, 256)}}
    return {"cold_start_s": cold, "sent_per_s": rates, "p50_ms": p50, "p95_ms": p95, "peak_rss_mb": peak_rss_mb()}


def peer_worker(which: str, texts_file: str) -> dict:
    """In a fresh process: sentence-transformers' encode or our torch embed, batch 32, after a warm-up."""
    from training.models.encoder import PACKAGED, embed, encoder_path

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    if which == "sentence-transformers":
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar
        model = SentenceTransformer(str(encoder_path(PACKAGED)), device="cpu")
        run = lambda batch: model.encode(batch, batch_size=32, show_progress_bar=False)  # noqa: E731
    else:
        run = lambda batch: embed(batch, PACKAGED, batch_size=32, use_cache=False, backend="torch")  # noqa: E731
    run(texts[:32])
    started = time.perf_counter()
    run(texts)
    return {"sent_per_s": len(texts) / (time.perf_counter() - started), "peak_rss_mb": peak_rss_mb()}


def subprocess_json(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process; its last stdout line is JSON (or an error row)."""
    done = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        return {"error": f"exit code {done.returncode} (see stderr above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def score(folder: Path, pages: Path, out: Path) -> dict:
    import pyarrow.parquet as pq

    busy = busy_cores()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training.score", str(pages), "--model", str(folder), "--out", str(out),
                           "--no-progress"], cwd=ROOT, stdout=sys.stderr)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"model": str(folder), "error": f"exit code {done.returncode}", "busy_before": busy}
    n_pages, n_sentences = len(list(pages.glob("*.txt"))), pq.read_metadata(out).num_rows
    return {"model": str(folder), "pages": n_pages, "sentences": n_sentences, "wall_s": wall,
            "pages_per_s": n_pages / wall, "sent_per_s": n_sentences / wall, "busy_before": busy}


def fmt(value, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| model/backend | sent/s @1 | sent/s @32 | sent/s @256 | p50 ms @1 | p95 ms @1 | cold start s "
             "| peak RSS MB | folder MB | busy cores |", "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |" + " |" * 8 + f" {fmt(r['busy_before'], '.1f')} |")
            continue
        rate = r["sent_per_s"]
        lines.append(f"| {r['name']} | {rate['1']:.1f} | {rate['32']:.1f} | {rate['256']:.1f} | {r['p50_ms']:.1f} "
                     f"| {r['p95_ms']:.1f} | {r['cold_start_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['folder_mb']:.1f} "
                     f"| {fmt(r['busy_before'], '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=5000, help="sentences per measurement (default: 5000)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"rows to run: a name or family of {MODELS}")
    parser.add_argument("--skip-scorer", action="store_true", help="do not run python -m training.score")
    parser.add_argument("--skip-peer", action="store_true", help="do not compare with sentence-transformers")
    parser.add_argument("--worker", nargs=3, metavar=("FOLDER", "TEXTS", "SPAWNED"), help=argparse.SUPPRESS)
    parser.add_argument("--peer", nargs=2, metavar=("WHICH", "TEXTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.peer:
        print(json.dumps(worker(*args.worker[:2], float(args.worker[2])) if args.worker else peer_worker(*args.peer)))
        return 0
    names = [m for m in MODELS if not args.only or any(m == o or m.startswith(o + ":") for o in args.only)]
    if args.only and not names:
        parser.error(f"--only: none of {args.only} is one of {MODELS}")
    sentences, source = corpus_sentences()
    texts = _texts([s.text for s in sentences], args.sentences)
    train = sentences[:TRAIN_SENTENCES]
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
              "python": platform.python_version(), "cpus": os.cpu_count(), "sentences": len(texts),
              "source": source, "train_sentences": len(train), "models": [], "scorer": [], "peer": {}}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        texts_file = tmp / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        folders = {}
        for name in names:
            print(f"fitting and exporting {name} ...", file=sys.stderr, flush=True)
            folders[name] = export_model(name, train, tmp / name.replace(":", "-"))
        for name in names:
            print(f"measuring {name} in a fresh process ...", file=sys.stderr, flush=True)
            busy = busy_cores()
            row = subprocess_json(["--worker", str(folders[name]), str(texts_file), repr(time.time())])
            report["models"].append({"name": name, **row, "folder_mb": _folder_mb(folders[name]), "busy_before": busy})
        if not args.skip_scorer:
            pages = SHARED / "corpus-2" if (SHARED / "corpus-2").is_dir() else ROOT / "seeds"
            scored = [folders.get("tfidf_logreg") or export_model("tfidf_logreg", train, tmp / "tfidf_logreg")]
            if any(n.startswith("minilm_hybrid") for n in names) and (ROOT / "models/default/model.json").is_file():
                scored.append(ROOT / "models" / "default")
            for folder in scored:
                print(f"scoring {pages} with {folder} ...", file=sys.stderr, flush=True)
                report["scorer"].append(score(folder, pages, tmp / f"scored-{len(report['scorer'])}.parquet"))
        if not args.skip_peer:
            for which in ("sentence-transformers", "training.models.encoder.embed"):
                if which == "sentence-transformers" and importlib.util.find_spec("sentence_transformers") is None:
                    report["peer"][which] = {"error": "not installed (pip install -e '.[bench]')", "busy_before": None}
                    continue
                print(f"embedding with {which} ...", file=sys.stderr, flush=True)
                busy = busy_cores()
                report["peer"][which] = {**subprocess_json(["--peer", which, str(texts_file)]), "busy_before": busy}
    print(f"# bench_scale {report['date']}: {report['platform']}, {report['cpus']} CPUs, Python {report['python']}\n\n"
          f"{len(texts)} distinct sentences from {source}; models fitted on the first {len(train)} corpus sentences (rule labels).\n")
    print(table(report["models"]))
    print("\nsent/s @1 over the first {0} sentences, one call each; @32/@256 over all; cold start: process start to "
          "first prediction; torch rows reference the encoder (~88 MB) instead of copying it.".format(
              min(BATCH1_SENTENCES, len(texts))))
    for s in report["scorer"]:
        print(f"- scorer `{s['model']}`: " + (s["error"] if "error" in s else
              f"{s['pages']} pages, {s['sentences']} sentences in {s['wall_s']:.1f} s: {s['pages_per_s']:.1f} pages/s, "
              f"{s['sent_per_s']:.0f} sent/s") + f" (busy {fmt(s['busy_before'], '.1f')})")
    for which, p in report["peer"].items():
        print(f"- peer `{which}` batch 32: " + (p["error"] if "error" in p else
              f"{p['sent_per_s']:.1f} sent/s, peak RSS {p['peak_rss_mb']:.0f} MB") + f" (busy {fmt(p['busy_before'], '.1f')})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nJSON: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
