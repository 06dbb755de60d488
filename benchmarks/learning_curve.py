"""Learning curve: the default family trained on 25/50/75/100% of the gold pages, grouped CV, several seeds.

    python benchmarks/learning_curve.py [--config FILE] [--fractions 0.25 0.5 0.75 1] [--seeds 3]

For every seed and fold (article-grouped, the main job's folds) the training side keeps a random
share of its gold pages (pages without gold always train; each fold draws its share with the seed),
the model is fitted and scored on the held-out pages, so every fraction is scored on the same sentences. Prints macro-F1 and per-class
F1 as mean ± standard deviation over seeds, and writes the rows to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.core.config import PROJECT_ROOT, load_config  # noqa: E402
from training.core.metrics import classification_metrics  # noqa: E402
from training.evaluation.cv import cross_validate, fold_assignment, trainable_rows  # noqa: E402
from training.models.families import new_model  # noqa: E402
from training.labelling.stage import build  # noqa: E402
from training.data.records import take  # noqa: E402


class GoldPageShare(ClassifierMixin, BaseEstimator):
    """``estimator`` trained on a random share of the gold pages it is given (other pages always train).

    The share is drawn in ``fit`` from ``random_state``, so a clone fitted on the same pages keeps the same ones.
    """

    def __init__(self, estimator=None, fraction: float = 1.0, gold_pages: tuple[str, ...] = (),
                 random_state: int | None = None) -> None:
        self.estimator, self.fraction, self.gold_pages, self.random_state = estimator, fraction, gold_pages, random_state

    def fit(self, records, labels) -> "GoldPageShare":
        gold_pages = set(self.gold_pages)
        pages = sorted(set(records["article_id"]) & gold_pages)
        rng = np.random.default_rng(self.random_state)
        keep = set(rng.choice(pages, size=max(1, round(self.fraction * len(pages))), replace=False))
        rows = np.flatnonzero([a in keep or a not in gold_pages for a in records["article_id"]])
        self.estimator_ = clone(self.estimator).fit(take(records, rows), list(np.asarray(labels, dtype=object)[rows]))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, records) -> np.ndarray:
        return self.estimator_.predict_proba(records)

    def predict(self, records) -> np.ndarray:
        return self.classes_[self.predict_proba(records).argmax(axis=1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config, ["evaluation.find_label_issues=false"])
    labelled = build(config)
    labels = labelled.labels
    gold_pages = {labelled.sentences[int(i)].article_id for i in labelled.gold_index}
    fold_of, fingerprint, _ = fold_assignment(config, labelled)  # the same plan as every training run
    trainable = trainable_rows(config, labelled)
    print(f"config {config.name} ({config.model.family}): {len(gold_pages)} gold pages, "
          f"{len(labelled.gold)} gold sentences, {config.evaluation.folds} folds (plan {fingerprint}), {args.seeds} seeds", flush=True)
    results = []
    for fraction in args.fractions:
        scores = []
        for seed in range(args.seeds):
            share = GoldPageShare(new_model(config.model.family, config.model.params, labels, config.seed),
                                  fraction, tuple(sorted(gold_pages)), random_state=seed)
            cv = cross_validate(labelled.records, labelled.train_labels, fold_of, trainable, labelled.gold_index,
                                labelled.gold_labels, labels, share)
            metrics = classification_metrics(labelled.gold_labels, cv.gold_predictions(labels), labels)
            scores.append([metrics["macro_f1"]] + [metrics["per_class"][label]["f1"] for label in labels])
            print(f"  {fraction:.0%} seed {seed}: macro-F1 {metrics['macro_f1']:.3f} ({cv.seconds:.0f} s)", flush=True)
        scores = np.asarray(scores)
        folds = len(cv.fold_macro_f1)
        results.append({"fraction": fraction, "pages": round(fraction * len(gold_pages) * (folds - 1) / folds),
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
