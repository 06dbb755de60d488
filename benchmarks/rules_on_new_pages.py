"""Rules earn their keep: each rule's precision and recall on one gold set only, and the combiners there.

    python benchmarks/rules_on_new_pages.py                      # gold file corpus-2.jsonl (the new pages)
    python benchmarks/rules_on_new_pages.py --gold corpus.jsonl  # or any other gold file of the config

The rules were written while looking at the first gold sets, so their figures on pages labelled
later are the honest ones. Labelling runs over the whole corpus (recurrence counts every page);
only the scoring is restricted to the chosen gold file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.core.config import load_config  # noqa: E402
from training.labelling.diagnostics import format_report, rule_report  # noqa: E402
from training.core.metrics import classification_metrics  # noqa: E402
from training.labelling.stage import build  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--gold", default="corpus-2.jsonl", help="gold file name to score on (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    labelled = build(load_config(args.config, ["evaluation.find_label_issues=false"]))
    rows = [(int(row), g) for row, g in zip(labelled.gold_index, labelled.gold) if g.source == args.gold]
    if not rows:
        print(f"error: no gold from '{args.gold}' in this config's corpus", file=sys.stderr)
        return 2
    gold_rows = {row: g.label for row, g in rows}
    weights = labelled.combiners["label_model"].rule_weights
    report = rule_report(labelled.ruleset, labelled.matrix, gold_rows, weights)
    print(f"{len(rows)} gold sentences from {args.gold}, on {len({g.id.split(':')[0] for _, g in rows})} pages\n")
    print(format_report(sorted(report, key=lambda r: (r["label"], -r["gold_fires"]))))
    truth = [g.label for _, g in rows]
    print(f"\n{'combiner':14} {'macro-F1':>8} " + " ".join(f"{label[:11]:>11}" for label in labelled.labels))
    for name, combined in labelled.combiners.items():
        predicted = [labelled.labels[combined.labels[row]] for row, _ in rows]
        metrics = classification_metrics(truth, predicted, labelled.labels)
        print(f"{name:14} {metrics['macro_f1']:8.3f} "
              + " ".join(f"{metrics['per_class'][label]['f1']:11.3f}" for label in labelled.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
