"""The evaluation plan: which fold holds out each page, frozen in a file, and its fingerprint.

Every config is scored on the same plan, so two runs compare only when they saw the same gold
under the same folds: the fingerprint (a hash of gold ids, labels and folds) says when they did.
Pages the frozen file does not list (a user's own pages) get a fold from a hash of their id:
stable from run to run, with one notice saying how many.

``python -m training.plan [--config FILE] [--folds 5]`` freezes the plan for a config's gold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from training.core.errors import InputError

log = logging.getLogger(__name__)
FORMAT = 1


@dataclass(frozen=True)
class Plan:
    folds: int
    frozen: dict[str, int] = field(default_factory=dict)  # article id → fold, from the plan file
    source: str = "hash"  # the plan file, or "hash" when there is none

    def fold_of(self, article_id: str) -> int:
        if article_id in self.frozen:
            return self.frozen[article_id]
        return int(hashlib.sha256(article_id.encode("utf-8")).hexdigest(), 16) % self.folds

    def assign(self, articles: Sequence[str]) -> np.ndarray:
        """The fold of each row's article; one notice for pages the plan file does not list."""
        unlisted = {a for a in articles if a not in self.frozen}
        if self.frozen and unlisted:
            log.info("%d page(s) not in the evaluation plan %s: folds from a hash of their id (stable); "
                     "python -m training.plan freezes a new plan", len(unlisted), self.source)
        return np.array([self.fold_of(a) for a in articles], dtype=int)


def load_plan(path: Path | None, folds: int) -> Plan:
    """The frozen plan at ``path``; without one, folds from a hash of each page id."""
    if path is None:
        return Plan(folds)
    if not path.exists():
        raise InputError(f"{path}: evaluation plan not found (key 'evaluation.plan'; "
                         "python -m training.plan writes one, or set it to null)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        plan = Plan(int(data["folds"]), {str(k): int(v) for k, v in data["articles"].items()}, str(path))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not an evaluation plan ({type(exc).__name__}: {exc})") from None
    if any(not 0 <= f < plan.folds for f in plan.frozen.values()):
        raise InputError(f"{path}: a fold number outside 0..{plan.folds - 1}")
    if plan.folds != folds:
        raise InputError(f"{path}: the plan has {plan.folds} folds but key 'evaluation.folds' is {folds}")
    return plan


def freeze(articles: Sequence[str], labels: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Folds over pages, stratified by the gold labels of their sentences (scikit-learn's StratifiedGroupKFold)."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if len(set(articles)) < folds:
        raise InputError(f"gold is on {len(set(articles))} pages: too few for {folds} folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assigned: dict[str, int] = {}
    with warnings.catch_warnings():  # "the least populated class has only N members": expected on small gold
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(labels)), labels, groups=articles))
    for number, (_, test) in enumerate(splits):
        assigned.update({articles[i]: number for i in test})
    return dict(sorted(assigned.items()))


def fingerprint(gold_ids: Sequence[str], gold_labels: Sequence[str], gold_folds: Sequence[int]) -> str:
    """12 hex digits naming the gold (ids and labels) and the fold each gold sentence is held out in."""
    rows = sorted(zip(gold_ids, gold_labels, (int(f) for f in gold_folds)))
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()[:12]


def write_plan(path: Path, assigned: dict[str, int], folds: int, seed: int) -> None:
    from training.core.system import atomic_write

    atomic_write(path, json.dumps({"format": FORMAT, "folds": folds, "seed": seed,
                                   "method": "StratifiedGroupKFold over gold pages (shuffle, seed)",
                                   "articles": assigned}, indent=0) + "\n")
