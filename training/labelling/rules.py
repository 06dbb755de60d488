"""Declarative labelling rules: schema, validation and application (Snorkel-style).

A rules file declares the labels (with a one-line description each), the default label for a
sentence no rule votes on, the tie order, and per label a list of named rules. A rule votes for
its label when *all* of its conditions hold, and abstains otherwise. Conditions look at the words
(``keywords``, ``pattern``, ``unless``) and at the line's shape and place (length, terminal
punctuation, share of capitalised words, position in the article, how many articles repeat the
same line, whether a neighbour is voted boilerplate by the other rules).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.data.corpus import Sentence
from training.core.errors import InputError
from training.labelling.patterns import ambiguity

ABSTAIN = -1
_TERMINAL = re.compile(r"[.!?…:][\"'”’)\]]*$")
_WORD = re.compile(r"[^\W\d_][\w'’\-]*")


class Rule(BaseModel):
    """One named rule; every condition given must hold for it to vote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    keywords: list[str] = Field(default_factory=list)  # any of these words/phrases
    pattern: Optional[str] = None  # a regular expression that must match
    unless: Optional[str] = None  # a regular expression that vetoes the vote
    case_sensitive: bool = False
    min_words: Optional[int] = None
    max_words: Optional[int] = None
    terminal_punctuation: Optional[bool] = None  # True: ends like a sentence; False: does not
    min_capitalised: Optional[float] = Field(None, ge=0, le=1)  # share of Capitalised words
    max_capitalised: Optional[float] = Field(None, ge=0, le=1)
    max_index: Optional[int] = None  # within the first N+1 sentences of the article
    max_from_end: Optional[int] = None  # within the last N+1 sentences of the article
    min_recurrence: Optional[int] = None  # the same line appears in at least N articles
    next_to_label: Optional[str] = None  # a neighbour got a vote for this label from other rules

    @field_validator("pattern", "unless")
    @classmethod
    def _compiles(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _linear(self) -> "Rule":
        """Refuse patterns that can backtrack catastrophically (one sentence would hang labelling)."""
        flags = 0 if self.case_sensitive else re.IGNORECASE
        for key in ("pattern", "unless"):
            value = getattr(self, key)
            problem = ambiguity(value, flags) if value else None
            if problem:
                raise ValueError(f"rule '{self.name}': {key} '{value}': {problem}, so one sentence could take "
                                 "exponential time; bound the inner repeat or make it possessive ('x++') or "
                                 "atomic ('(?>...)')")
        return self

    @model_validator(mode="after")
    def _has_condition(self) -> "Rule":
        fields = set(type(self).model_fields) - {"name", "case_sensitive", "unless"}
        if not any(getattr(self, f) not in (None, []) for f in fields):
            raise ValueError(f"rule '{self.name}' has no condition")
        return self


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    rules: list[Rule] = Field(default_factory=list)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    tie_order: list[str]
    labels: dict[str, LabelSpec] = Field(min_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> "RuleSet":
        names = list(self.labels)
        if self.default not in self.labels:
            raise ValueError(f"default '{self.default}' is not a declared label")
        unknown = [t for t in self.tie_order if t not in self.labels]
        if unknown:
            raise ValueError(f"tie_order names unknown label '{unknown[0]}'")
        if sorted(self.tie_order) != sorted(names):
            raise ValueError("tie_order must list every label exactly once")
        seen: set[str] = set()
        for label, spec in self.labels.items():
            for rule in spec.rules:
                if rule.name in seen:
                    raise ValueError(f"rule name '{rule.name}' is used twice")
                seen.add(rule.name)
                if rule.next_to_label is not None and rule.next_to_label not in self.labels:
                    raise ValueError(
                        f"rule '{rule.name}': next_to_label '{rule.next_to_label}' is not a declared label"
                    )
        return self

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    @property
    def rules(self) -> list[tuple[str, Rule]]:
        """(label, rule) pairs in declaration order: the columns of the label matrix."""
        return [(label, rule) for label, spec in self.labels.items() for rule in spec.rules]


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file; errors name the file and the key at fault."""
    from training.core.config import read_yaml

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with 'default', 'tie_order' and 'labels'")
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        message = message.removeprefix("Value error, ")
        raise InputError(f"{path}: key '{key}': {message}") from None


@dataclass(frozen=True)
class LineFeatures:
    """Shape and place of every sentence, computed once per corpus."""

    words: np.ndarray
    capitalised: np.ndarray
    terminal: np.ndarray
    index: np.ndarray
    from_end: np.ndarray
    recurrence: np.ndarray
    article: np.ndarray


def line_key(text: str) -> str:
    """The form under which a line counts as "the same line" on another page."""
    return text.strip().lower()


def recurrence_table(sentences: Sequence[Sentence], min_pages: int = 2) -> dict[str, int]:
    """Lines that occur on at least ``min_pages`` pages → on how many pages they occur."""
    pages: dict[str, set[str]] = {}
    for s in sentences:
        pages.setdefault(line_key(s.text), set()).add(s.article_id)
    return {line: len(ids) for line, ids in pages.items() if len(ids) >= min_pages}


def line_shape(text: str) -> tuple[int, float, bool]:
    """(words, share of capitalised words, ends like a sentence) of one line."""
    tokens = _WORD.findall(text)
    capitalised = sum(t[0].isupper() for t in tokens) / len(tokens) if tokens else 0.0
    return len(tokens), capitalised, bool(_TERMINAL.search(text.strip()))


def line_features(sentences: Sequence[Sentence], known_recurrence: Optional[dict[str, int]] = None) -> LineFeatures:
    """Shape and place of every sentence.

    Recurrence is the number of pages of ``sentences`` that carry the line; given
    ``known_recurrence`` (a :func:`recurrence_table` learned on training pages) it is that count
    instead (1 for a line it does not hold), so a page's votes never depend on the other pages
    scored with it, and the training corpus gets exactly the labelling stage's counts.
    """
    sizes = Counter(s.article_id for s in sentences)
    pages = recurrence_table(sentences, min_pages=1) if known_recurrence is None else known_recurrence
    shapes = [line_shape(s.text) for s in sentences]
    return LineFeatures(
        words=np.array([w for w, _, _ in shapes], dtype=int),
        capitalised=np.array([c for _, c, _ in shapes], dtype=float),
        terminal=np.array([t for _, _, t in shapes], dtype=bool),
        index=np.array([s.index for s in sentences], dtype=int),
        from_end=np.array([sizes[s.article_id] - 1 - s.index for s in sentences], dtype=int),
        recurrence=np.array([pages.get(line_key(s.text), 1) for s in sentences], dtype=int),
        article=np.array([s.article_id for s in sentences], dtype=object),
    )


def _keyword_regex(keywords: list[str], flags: int) -> re.Pattern:
    alternatives = "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags)


def _rule_mask(rule: Rule, texts: Sequence[str], feats: LineFeatures) -> np.ndarray:
    """Boolean mask of sentences on which every condition of ``rule`` except next_to_label holds."""
    flags = 0 if rule.case_sensitive else re.IGNORECASE
    mask = np.ones(len(texts), dtype=bool)
    if rule.min_words is not None:
        mask &= feats.words >= rule.min_words
    if rule.max_words is not None:
        mask &= feats.words <= rule.max_words
    if rule.terminal_punctuation is not None:
        mask &= feats.terminal == rule.terminal_punctuation
    if rule.min_capitalised is not None:
        mask &= feats.capitalised >= rule.min_capitalised
    if rule.max_capitalised is not None:
        mask &= feats.capitalised <= rule.max_capitalised
    if rule.max_index is not None:
        mask &= feats.index <= rule.max_index
    if rule.max_from_end is not None:
        mask &= feats.from_end <= rule.max_from_end
    if rule.min_recurrence is not None:
        mask &= feats.recurrence >= rule.min_recurrence
    regexes = []
    if rule.keywords:
        regexes.append((_keyword_regex(rule.keywords, flags), True))
    if rule.pattern:
        regexes.append((re.compile(rule.pattern, flags), True))
    if rule.unless:
        regexes.append((re.compile(rule.unless, flags), False))
    for regex, wanted in regexes:
        for i in np.flatnonzero(mask):
            if (regex.search(texts[i]) is not None) != wanted:
                mask[i] = False
    return mask


def _neighbour_has(votes: np.ndarray, article: np.ndarray) -> np.ndarray:
    """True where the previous or next sentence of the same article has ``votes`` True."""
    out = np.zeros_like(votes)
    same_prev = np.r_[False, article[1:] == article[:-1]]
    same_next = np.r_[article[:-1] == article[1:], False]
    out |= np.r_[False, votes[:-1]] & same_prev
    out |= np.r_[votes[1:], False] & same_next
    return out


def apply_rules(ruleset: RuleSet, sentences: Sequence[Sentence],
                known_recurrence: Optional[dict[str, int]] = None) -> np.ndarray:
    """The label matrix: shape (sentences, rules), label index or ABSTAIN (-1).

    Sentences must be in article order (as the corpus stage returns them) for neighbour rules.
    ``known_recurrence``: lines counted on training pages (see :func:`line_features`).
    """
    texts = [s.text for s in sentences]
    feats = line_features(sentences, known_recurrence)
    names = ruleset.label_names
    pairs = ruleset.rules
    matrix = np.full((len(sentences), len(pairs)), ABSTAIN, dtype=int)
    deferred = []
    for col, (label, rule) in enumerate(pairs):
        mask = _rule_mask(rule, texts, feats) if len(texts) else np.zeros(0, dtype=bool)
        if rule.next_to_label is None:
            matrix[mask, col] = names.index(label)
        else:
            deferred.append((col, label, rule, mask))
    for col, label, rule, mask in deferred:  # context rules see the votes of the word rules
        target = names.index(rule.next_to_label)
        voted = (matrix == target).any(axis=1)
        matrix[mask & _neighbour_has(voted, feats.article), col] = names.index(label)
    return matrix
