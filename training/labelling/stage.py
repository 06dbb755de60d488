"""Labelling stage: corpus → rule votes → combined training labels, gold, diagnostics.

``python -m training.label [--config FILE] [key=value ...]`` writes the labelled sentences as a
Hugging Face dataset under ``data/labelled/<config name>/`` and prints the per-rule report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from training.labelling.combine import Combined, combine
from training.core.config import Config
from training.data.corpus import Sentence, load_sources
from training.labelling.diagnostics import format_report, rule_report, warnings_for
from training.core.errors import InputError
from training.core.metrics import classification_metrics
from training.data.gold import GoldLabel, load_gold
from training.labelling.rules import RuleSet, apply_rules, load_rules

log = logging.getLogger(__name__)


@dataclass
class Labelled:
    """Everything the later stages need, as plain data."""

    sentences: list[Sentence]
    ruleset: RuleSet
    matrix: np.ndarray  # (sentences, rules) label index or -1
    combiners: dict[str, Combined]  # "majority" and "label_model"
    chosen: str  # the configured combiner
    gold: list[GoldLabel]
    gold_index: np.ndarray  # sentence rows of the gold labels, in gold order
    reviewed: dict[int, str] = field(default_factory=dict)  # row → reviewed label
    report: list[dict] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return self.ruleset.label_names

    @cached_property
    def rule_labels(self) -> list[str]:
        """The configured combiner's label per sentence."""
        return [self.labels[i] for i in self.combiners[self.chosen].labels]

    @cached_property
    def train_labels(self) -> list[str]:
        """Rule labels, with reviewed labels taking precedence where present."""
        labels = list(self.rule_labels)
        for row, label in self.reviewed.items():
            labels[row] = label
        return labels

    @cached_property
    def records(self):
        """The sentences as records (text, article_id, index) for the families."""
        from training.data.records import as_records

        return as_records(self.sentences)

    @property
    def gold_labels(self) -> list[str]:
        return [g.label for g in self.gold]

    def combiner_metrics(self) -> dict[str, dict]:
        """Each combiner's labels scored against the gold sentences."""
        out = {}
        for name, result in self.combiners.items():
            predicted = [self.labels[result.labels[i]] for i in self.gold_index]
            out[name] = classification_metrics(self.gold_labels, predicted, self.labels)
        return out


def load_reviewed(config: Config, by_id: dict[str, Sentence], labels: list[str]) -> dict[str, str]:
    """Reviewed labels by sentence id (files in order, later ones win); {} unless use_reviewed."""
    if not config.labelling.use_reviewed:
        return {}
    reviewed: dict[str, str] = {}
    for path in map(config.resolve, config.labelling.reviewed):
        if not path.exists():
            log.debug("reviewed-labels file %s does not exist; skipped", path)
            continue
        reviewed.update({item.id: item.label for item in load_gold(path, by_id, labels, optional=True)})
    return reviewed


def build(config: Config) -> Labelled:
    """Read the sources, vote with the rules, combine the votes, attach gold and reviewed labels."""
    log.info("reading %d source(s) and segmenting pages", len(config.sources))
    sentences = load_sources(config.sources, config.resolve)
    ruleset = load_rules(config.resolve(config.labelling.rules))
    log.info("%d sentences on %d pages; applying %d rules and fitting the label model", len(sentences),
             len({s.article_id for s in sentences}), len(ruleset.rules))
    matrix = apply_rules(ruleset, sentences)
    names = ruleset.label_names
    by_id = {s.id: s for s in sentences}
    row_of = {s.id: row for row, s in enumerate(sentences)}
    gold: list[GoldLabel] = []
    seen: set[str] = set()
    for spec in config.gold:
        for item in load_gold(config.resolve(spec.path), by_id, names, optional=spec.optional):
            if item.id in seen:
                raise InputError(f"{spec.path}: id '{item.id}' is already labelled in another gold file")
            seen.add(item.id)
            gold.append(item)
    gold_index = np.array([row_of[g.id] for g in gold], dtype=int)
    counts = np.array([sum(g.label == name for g in gold) for name in names], dtype=float) + 1.0
    combiners = {  # the label model's class prior comes from the gold labels (add-one smoothed)
        method: combine(matrix, names, ruleset.tie_order, ruleset.default, method,
                        epochs=config.labelling.label_model_epochs, seed=config.seed,
                        class_balance=counts / counts.sum())
        for method in ("majority", "label_model")
    }
    reviewed = {row_of[sid]: label for sid, label in load_reviewed(config, by_id, names).items()}
    report = rule_report(ruleset, matrix, {int(r): g.label for r, g in zip(gold_index, gold)},
                         combiners["label_model"].rule_weights)
    return Labelled(sentences, ruleset, matrix, combiners, config.labelling.combiner, gold, gold_index,
                    reviewed, report)


def to_dataset(labelled: Labelled):
    """The labelled sentences as a ``datasets.Dataset`` (one row per sentence)."""
    from datasets import ClassLabel, Dataset, Features, Sequence as Seq, Value

    gold_of = {g.id: g for g in labelled.gold}
    names = labelled.labels
    combined = labelled.combiners[labelled.chosen]
    features = Features({
        "id": Value("string"), "article_id": Value("string"), "index": Value("int32"),
        "start": Value("int32"), "end": Value("int32"), "text": Value("string"), "source": Value("string"),
        "label": ClassLabel(names=names), "label_confidence": Value("float32"),
        "rule_votes": Seq(Value("string")), "gold": Value("string"),
    })
    rule_names = [rule.name for _, rule in labelled.ruleset.rules]
    train_labels = labelled.train_labels
    rows = {key: [] for key in features}
    for row, sentence in enumerate(labelled.sentences):
        for key in ("id", "article_id", "index", "start", "end", "text", "source"):
            rows[key].append(getattr(sentence, key))
        rows["label"].append(names.index(train_labels[row]))
        rows["label_confidence"].append(float(combined.probabilities[row].max()))
        rows["rule_votes"].append([rule_names[c] for c in np.flatnonzero(labelled.matrix[row] >= 0)])
        rows["gold"].append(gold_of[sentence.id].label if sentence.id in gold_of else "")
    return Dataset.from_dict(rows, features=features)


def save_dataset(labelled: Labelled, folder: Path) -> Path:
    """Write the dataset atomically (built in a staging folder, swapped into place)."""
    import shutil

    from training.core.system import staging_folder, swap_in

    staging = staging_folder(folder)
    try:
        to_dataset(labelled).save_to_disk(str(staging))
        swap_in(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def summary(labelled: Labelled, min_precision: float) -> str:
    lines = [f"{len(labelled.sentences)} sentences from {len({s.article_id for s in labelled.sentences})} articles, "
             f"{len(labelled.ruleset.rules)} rules, {len(labelled.gold)} gold labels", "",
             format_report(labelled.report), ""]
    counts = np.bincount(labelled.combiners[labelled.chosen].labels, minlength=len(labelled.labels))
    lines.append("training labels (" + labelled.chosen + "): " +
                 ", ".join(f"{n} {c}" for n, c in zip(labelled.labels, counts)))
    if labelled.gold:
        for name, metrics in labelled.combiner_metrics().items():
            per = ", ".join(f"{k} {v['f1']:.2f}" for k, v in metrics["per_class"].items())
            lines.append(f"rules + {name} vs gold: macro-F1 {metrics['macro_f1']:.3f} ({per})")
    for warning in warnings_for(labelled.report, min_precision):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
