"""The persistent embedding cache: looking vectors up against encoding them.

    python benchmarks/bench_embedding_store.py [--sentences 6000] [--max-length 128] [--repeats 3]

Sentences are the first ``--sentences`` distinct ones of the main job's pages: the seeds, ``../shared/corpus``
and ``../shared/corpus-2`` (those present; 5,919 distinct sentences in all). In a temporary store
(``TRAINING_EMBEDDING_CACHE``, so the user's cache is untouched): encoding them with both caches off
(torch, the packaged MiniLM); writing their vectors (both layer choices, as ``embed`` does) into the
empty store; looking them up; and, in a new process each time, ``embed`` of all of them answered from
the store: the first call (importing torch for the device, hashing the encoder's files and opening the
store, once per process) and, after clearing the in-process cache, a second one. Lookups must not encode: the child
refuses to. Reports the best repeat (other processes can only slow a run down) and the load average
before: run on an idle machine (load < 0.5) for figures worth quoting; torch threads spin-wait.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
from training.models import encoder

def refuse(*args, **kwargs):
    raise AssertionError("encoded: the store should hold every vector")

encoder._encode = refuse
texts = json.loads(open(sys.argv[1], encoding="utf-8").read())
max_length = int(sys.argv[2])
start = time.perf_counter()
first = encoder.embed(texts, max_length=max_length)
cold = time.perf_counter() - start
encoder.clear_cache()
start = time.perf_counter()
encoder.embed(texts, max_length=max_length)
warm = time.perf_counter() - start
print(json.dumps({"cold_s": cold, "warm_s": warm, "rows": len(first), "encoder_loaded":
                  encoder.load_encoder.cache_info().currsize}))
"""


def sentences(count: int) -> tuple[list[str], list[str]]:
    from training.data.corpus import read_folder

    folders = [f for f in (ROOT / "seeds", ROOT.parent / "shared" / "corpus", ROOT.parent / "shared" / "corpus-2")
               if f.is_dir()]
    texts = list(dict.fromkeys(s.text for folder in folders for s in read_folder(folder)))
    return texts[:count], [str(f) for f in folders]


def best(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=6000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="of the store timings (encoding runs once)")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TRAINING_EMBEDDING_CACHE"] = folder
        from training.models import embedding_store, encoder

        texts, sources = sentences(args.sentences)
        encoder.embed(texts[:8], max_length=args.max_length, use_cache=False)  # load the encoder
        start = time.perf_counter()
        encoded = encoder._encode(texts, str(encoder.encoder_path(encoder.PACKAGED)), args.max_length, 32)
        encode_s = time.perf_counter() - start
        spaces = encoder.store_spaces("torch", str(encoder.encoder_path(encoder.PACKAGED)), args.max_length)
        store = embedding_store.active()

        def write() -> None:
            for kind, vectors in encoded.items():
                store.put(spaces[kind], texts, vectors)

        write_s = best(args.repeats, write)  # the first into an empty file, the others over the same keys
        get_s = best(args.repeats, lambda: store.get(spaces["last"], texts))
        store.close()  # the last connection: the write-ahead log is folded into the file
        size_mb = (Path(folder) / embedding_store.DB_NAME).stat().st_size / (1 << 20)
        source = Path(folder) / "texts.json"
        source.write_text(json.dumps(texts), encoding="utf-8")
        children = []
        for _ in range(args.repeats):
            result = subprocess.run([sys.executable, "-c", CHILD, str(source), str(args.max_length)],
                                    capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
                return 1
            children.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(json.dumps({
        "sentences": len(texts), "sources": sources, "max_length": args.max_length, "load_before": round(load, 2),
        "cpus": os.cpu_count(), "encode_s": round(encode_s, 2), "encode_sent_per_s": round(len(texts) / encode_s, 1),
        "store_write_both_layers_s": round(write_s, 3), "store_get_s": round(get_s, 3), "store_file_mb": round(size_mb, 1),
        "new_process_embed_first_call_s": round(min(c["cold_s"] for c in children), 3),
        "new_process_embed_again_s": round(min(c["warm_s"] for c in children), 3),
        "encoder_loaded_in_child": max(c["encoder_loaded"] for c in children),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
