"""Label model (Snorkel) and rule diagnostics (LFAnalysis) on a tiny gold set."""

import numpy as np
import pytest

from training.labelling.combine import combine
from training.labelling.diagnostics import rule_report, warnings_for
from training.labelling.rules import RuleSet

NAMES = ["a", "b", "c"]


def synthetic(n: int = 600, seed: int = 0):
    """Three good rules (90% right) and one bad rule (35% right) voting on 3 classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    matrix = np.full((n, 4), -1)
    for j, accuracy in enumerate([0.9, 0.9, 0.9, 0.35]):
        fires = rng.random(n) < 0.7
        right = rng.random(n) < accuracy
        wrong = (truth + rng.integers(1, 3, n)) % 3
        matrix[fires, j] = np.where(right, truth, wrong)[fires]
    return matrix, truth


def test_label_model_weights_good_rules_above_bad():
    matrix, truth = synthetic()
    out = combine(matrix, NAMES, NAMES, "c", "label_model", epochs=300, seed=1)
    assert out.method == "snorkel"
    assert out.rule_weights[:3].min() > out.rule_weights[3] + 0.2
    voted = (matrix >= 0).any(axis=1)
    accuracy = (out.labels[voted] == truth[voted]).mean()
    majority = combine(matrix, NAMES, NAMES, "c", "majority")
    assert accuracy >= (majority.labels[voted] == truth[voted]).mean() - 0.01
    assert accuracy > 0.85
    confidence, right = out.probabilities[voted].max(axis=1), out.labels[voted] == truth[voted]
    assert confidence[right].mean() > confidence[~right].mean() + 0.1  # surer where it is right
    assert (out.labels[~voted] == NAMES.index("c")).all()
    assert np.array_equal(out.probabilities[~voted], np.tile([0.0, 0.0, 1.0], ((~voted).sum(), 1)))  # the default


def test_class_balance_reaches_snorkel_and_moves_uncertain_sentences():
    matrix, _ = synthetic()
    conflicted = np.array([[0, 1, -1, -1]] * 20)  # one vote each for a and b: only the prior decides
    free = combine(np.vstack([matrix, conflicted]), NAMES, NAMES, "c", "label_model", epochs=300, seed=1)
    towards_b = combine(np.vstack([matrix, conflicted]), NAMES, NAMES, "c", "label_model", epochs=300, seed=1,
                        class_balance=np.array([0.05, 0.9, 0.05]))
    assert (towards_b.probabilities[-20:, 1] > free.probabilities[-20:, 1]).all()


def test_a_missing_snorkel_is_a_clear_error_not_a_fallback(monkeypatch):
    import builtins

    from training.core.errors import InputError

    real_import = builtins.__import__

    def no_snorkel(name, *args, **kwargs):
        if name.startswith("snorkel"):
            raise ImportError("No module named 'snorkel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_snorkel)
    with pytest.raises(InputError, match=r"pip install -e '\.\[labelmodel\]'"):
        combine(synthetic()[0], NAMES, NAMES, "c", "label_model", epochs=10)


def test_diagnostics_on_a_tiny_gold_set():
    rs = RuleSet.model_validate({"default": "c", "tie_order": NAMES, "labels": {
        "a": {"description": "A", "rules": [{"name": "r_a", "keywords": ["x"]}, {"name": "never", "keywords": ["zz"]}]},
        "b": {"description": "B", "rules": [{"name": "r_b", "keywords": ["y"]}]},
        "c": {"description": "C", "rules": []}}})
    matrix = np.array([[0, -1, -1], [0, -1, 1], [0, -1, -1], [-1, -1, 1], [-1, -1, -1]])
    gold = {0: "a", 1: "b", 2: "b", 3: "b"}  # row 4 has no gold
    report = {r["rule"]: r for r in rule_report(rs, matrix, gold, np.array([0.9, 0.0, 0.8]))}
    assert report["r_a"]["fires"] == 3 and report["r_a"]["coverage"] == pytest.approx(3 / 5)
    assert report["r_a"]["overlap"] == pytest.approx(1 / 5) and report["r_a"]["conflict"] == pytest.approx(1 / 5)
    assert report["r_a"]["precision"] == pytest.approx(1 / 3) and report["r_a"]["recall"] == 1.0
    assert report["r_b"]["precision"] == 1.0 and report["r_b"]["recall"] == pytest.approx(2 / 3)
    assert report["r_a"]["weight"] == 0.9
    assert report["never"]["fires"] == 0 and np.isnan(report["never"]["precision"])
    warnings = warnings_for(list(report.values()), 0.6)
    assert "rule 'never' never fires" in warnings
    assert any(w.startswith("rule 'r_a' has precision 0.33") for w in warnings)
