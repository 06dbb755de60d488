"""Ablation: grouped CV of one config with each context block switched off in turn (config keys).

    python benchmarks/ablation.py                                   # configs/default.yaml
    python benchmarks/ablation.py --config configs/x.yaml --variant none=model.params.C=8

Every variant uses the same labelled corpus, gold and article-grouped folds as the main job;
nothing is logged to MLflow and no model is written. Prints a table (macro-F1 and per-class F1).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.core.config import load_config  # noqa: E402
from training.labelling.stage import build  # noqa: E402
from training.evaluation.cv import evaluate  # noqa: E402
from training.models.families import new_model  # noqa: E402

CONTEXT_BLOCKS = ["neighbour_embeddings", "neighbour_votes", "page_embedding", "whole_sentence", "coherence", "position",
                  "shape", "recurrence"]
OFF = {block: 0 if block.startswith("neighbour") else "false" for block in CONTEXT_BLOCKS}
OTHER_BLOCKS = [("- char n-grams", ["model.params.char_ngram_max=0"]), ("- word n-grams", ["model.params.ngram_max=0"]),
                ("- rule votes", ["model.params.rules=''", "model.params.neighbour_votes=0"]),
                ("- inner layers", ["model.params.inner_layers=false"]),
                ("- perceptron bag", ["model.params.mlp_weight=0"]),
                ("- trees", ["model.params.tree_weight=0"])]
DEFAULT_VARIANTS = (
    [("all blocks", [])]
    + [(f"- {block}", [f"model.params.{block}={OFF[block]}"]) for block in CONTEXT_BLOCKS]
    + [("- all context", [f"model.params.{block}={OFF[block]}" for block in CONTEXT_BLOCKS])]
    + OTHER_BLOCKS
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=key=value[,key=value] (replaces the default variants)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    variants = [(v.split("=", 1)[0], v.split("=", 1)[1].split(",")) for v in args.variant] or DEFAULT_VARIANTS
    off = ["evaluation.find_label_issues=false", "evaluation.baseline=false", "evaluation.bootstrap=0"]
    base = load_config(args.config, off)
    labelled = build(base)
    labels = labelled.labels
    print(f"config {base.name}: {len(labelled.sentences)} sentences, {len(labelled.gold)} gold, "
          f"{base.evaluation.folds} grouped folds", flush=True)  # the plan every run uses
    header = f"{'variant':24} {'macro-F1':>8} " + " ".join(f"{label[:11]:>11}" for label in labels) + f" {'seconds':>8}"
    print(header, flush=True)
    for name, overrides in variants:
        config = load_config(args.config, [*off, *overrides])
        started = time.perf_counter()
        evaluation = evaluate(config, labelled, new_model(config.model.family, config.model.params, labels,
                                                          config.seed))
        model = evaluation.metrics["model"]
        print(f"{name:24} {model['macro_f1']:8.3f} "
              + " ".join(f"{model['per_class'][label]['f1']:11.3f}" for label in labels)
              + f" {time.perf_counter() - started:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
