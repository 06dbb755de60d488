"""Learning curve: the default family trained on 25/50/75/100% of the gold pages, grouped CV, several seeds.

    python benchmarks/learning_curve.py [--config FILE] [--fractions 0.25 0.5 0.75 1] [--seeds 3]

For every seed and fold (article-grouped, the main job's folds) the training side keeps a random
share of its gold pages (pages without gold always train), the model is fitted and scored on the
held-out pages, so every fraction is scored on the same sentences. Prints macro-F1 and per-class
F1 as mean ± standard deviation over seeds, and writes the rows to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import PROJECT_ROOT, load_config  # noqa: E402
from training.evaluate import classification_metrics, grouped_folds  # noqa: E402
from training.families import new_model  # noqa: E402
from training.label import build  # noqa: E402
from training.records import take  # noqa: E402
from training.train import set_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config, ["evaluation.find_label_issues=false"])
    labelled = build(config)
    records, labels = labelled.records, labelled.labels
    articles = records["article_id"].to_numpy(dtype=object)
    gold_articles = sorted({articles[i] for i in labelled.gold_index})
    folds = grouped_folds(articles, labelled.gold_index, config.evaluation.folds)
    train_labels = np.asarray(labelled.train_labels, dtype=object)
    gold_of = dict(zip(map(int, labelled.gold_index), labelled.gold_labels))
    print(f"config {config.name} ({config.model.family}): {len(gold_articles)} gold pages, "
          f"{len(labelled.gold)} gold sentences, {len(folds)} folds, {args.seeds} seeds", flush=True)
    results = []
    for fraction in args.fractions:
        scores = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            predicted, truth = [], []
            started = time.perf_counter()
            for fold in folds:
                train_pages = sorted({articles[i] for i in fold.train} & set(gold_articles))
                keep = set(rng.choice(train_pages, size=max(1, round(fraction * len(train_pages))), replace=False))
                rows = [i for i in fold.train if articles[i] in keep or articles[i] not in gold_articles]
                set_seed(config.seed)
                model = new_model(config.model.family, config.model.params, labels, config.seed)
                model.fit(take(records, rows), list(train_labels[rows]))
                held_out = np.flatnonzero(np.isin(articles, list({articles[i] for i in fold.test})))
                proba = model.predict_proba(take(records, held_out))
                position = {int(r): k for k, r in enumerate(held_out)}
                predicted += [labels[int(proba[position[int(i)]].argmax())] for i in fold.test]
                truth += [gold_of[int(i)] for i in fold.test]
            metrics = classification_metrics(truth, predicted, labels)
            scores.append([metrics["macro_f1"]] + [metrics["per_class"][label]["f1"] for label in labels])
            print(f"  {fraction:.0%} seed {seed}: macro-F1 {metrics['macro_f1']:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        scores = np.asarray(scores)
        results.append({"fraction": fraction, "pages": round(fraction * len(gold_articles) * (len(folds) - 1) / len(folds)),
                        "mean": scores.mean(axis=0).tolist(), "std": scores.std(axis=0).tolist()})
    names = ["macro-F1", *labels]
    print("\n| share of gold pages | training pages per fold | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in results:
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(row["mean"], row["std"])]
        print(f"| {row['fraction']:.0%} | ~{row['pages']} | " + " | ".join(cells) + " |")
    out = PROJECT_ROOT / "benchmarks" / "results" / f"learning_curve_{config.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config.name, "labels": names, "rows": results}, indent=2), encoding="utf-8")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
