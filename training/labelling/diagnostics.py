"""Per-rule diagnostics (Snorkel's ``LFAnalysis``): coverage, overlap, conflict, precision/recall on gold, weight."""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np

from training.labelling.rules import ABSTAIN, RuleSet


def rule_report(
    ruleset: RuleSet, matrix: np.ndarray, gold_rows: Mapping[int, str], weights: np.ndarray | None = None,
) -> list[dict]:
    """One row per rule. ``gold_rows`` maps a sentence row to its gold primary label.

    Snorkel's ``LFAnalysis`` computes coverage (share of sentences the rule votes on), overlap
    (share where it and another rule vote), conflict (share where another rule votes for a
    different label) and, on the gold sentences, precision (its empirical accuracy); recall is the
    share of gold sentences of its label it votes on.
    """
    from snorkel.labeling import LFAnalysis

    names = ruleset.label_names
    gold_idx = np.array(sorted(gold_rows), dtype=int)
    gold_lab = np.array([gold_rows[i] for i in gold_idx], dtype=object)
    voted = matrix != ABSTAIN
    n_rules = matrix.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scipy's dtype notice inside LFAnalysis
        if matrix.shape[0]:
            analysis = LFAnalysis(matrix)
            coverage, overlap, conflict = analysis.lf_coverages(), analysis.lf_overlaps(), analysis.lf_conflicts()
        else:
            coverage = overlap = conflict = np.zeros(n_rules)
        gold_ids = np.array([names.index(label) for label in gold_lab], dtype=int)
        precision = (LFAnalysis(matrix[gold_idx]).lf_empirical_accuracies(gold_ids) if gold_idx.size
                     else np.full(n_rules, math.nan))
    rows = []
    for col, (label, rule) in enumerate(ruleset.rules):
        fired_gold = voted[gold_idx, col] if gold_idx.size else np.zeros(0, dtype=bool)
        of_label = int((gold_lab == label).sum()) if gold_idx.size else 0
        hits = int((gold_lab[fired_gold] == label).sum()) if gold_idx.size else 0
        rows.append({
            "rule": rule.name,
            "label": label,
            "fires": int(voted[:, col].sum()),
            "coverage": float(coverage[col]),
            "overlap": float(overlap[col]),
            "conflict": float(conflict[col]),
            "gold_fires": int(fired_gold.sum()),
            "precision": float(precision[col]) if fired_gold.sum() else math.nan,
            "recall": hits / of_label if of_label else math.nan,
            "weight": float(weights[col]) if weights is not None and col < len(weights) else math.nan,
        })
    return rows


def warnings_for(report: Sequence[dict], min_precision: float) -> list[str]:
    out = []
    for row in report:
        if row["fires"] == 0:
            out.append(f"rule '{row['rule']}' never fires")
        elif not math.isnan(row["precision"]) and row["precision"] < min_precision and row["gold_fires"] >= 3:
            out.append(f"rule '{row['rule']}' has precision {row['precision']:.2f} on gold "
                       f"({row['gold_fires']} votes), below {min_precision:.2f}")
    return out


def format_report(report: Sequence[dict]) -> str:
    """A fixed-width text table of the rule report."""
    def num(value: float, digits: int = 2) -> str:
        return "   -" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"

    header = f"{'rule':34} {'label':18} {'fires':>5} {'cover':>5} {'overl':>5} {'confl':>5} {'gold':>4} {'prec':>5} {'recall':>6} {'weight':>6}"
    lines = [header, "-" * len(header)]
    for r in report:
        lines.append(
            f"{r['rule'][:34]:34} {r['label'][:18]:18} {r['fires']:5d} {num(r['coverage']):>5} {num(r['overlap']):>5} "
            f"{num(r['conflict']):>5} {r['gold_fires']:4d} {num(r['precision']):>5} {num(r['recall']):>6} {num(r['weight']):>6}"
        )
    return "\n".join(lines)
