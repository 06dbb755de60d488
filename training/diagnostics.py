"""Per-rule diagnostics: coverage, overlap, conflict, precision/recall against gold, weight."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from training.rules import ABSTAIN, RuleSet


def rule_report(
    ruleset: RuleSet, matrix: np.ndarray, gold_rows: Mapping[int, str], weights: np.ndarray | None = None,
) -> list[dict]:
    """One row per rule. ``gold_rows`` maps a sentence row to its gold primary label.

    coverage: share of sentences the rule votes on; overlap: share where it and another rule vote;
    conflict: share where another rule votes for a different label; precision: on gold sentences it
    votes on, share whose gold label is its label; recall: share of gold sentences of its label it votes on.
    """
    names = ruleset.label_names
    n = max(matrix.shape[0], 1)
    voted = matrix != ABSTAIN
    n_votes = voted.sum(axis=1)
    gold_idx = np.array(sorted(gold_rows), dtype=int)
    gold_lab = np.array([gold_rows[i] for i in gold_idx], dtype=object)
    rows = []
    for col, (label, rule) in enumerate(ruleset.rules):
        fires = voted[:, col]
        label_id = names.index(label)
        others_vote = n_votes - fires.astype(int) > 0
        disagree = ((matrix != ABSTAIN) & (matrix != label_id)).any(axis=1)
        fired_gold = fires[gold_idx] if gold_idx.size else np.zeros(0, dtype=bool)
        hits = int((gold_lab[fired_gold] == label).sum()) if gold_idx.size else 0
        of_label = int((gold_lab == label).sum()) if gold_idx.size else 0
        rows.append({
            "rule": rule.name,
            "label": label,
            "fires": int(fires.sum()),
            "coverage": float(fires.sum() / n),
            "overlap": float((fires & others_vote).sum() / n),
            "conflict": float((fires & disagree).sum() / n),
            "gold_fires": int(fired_gold.sum()),
            "precision": hits / int(fired_gold.sum()) if fired_gold.sum() else math.nan,
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
