"""A load-time guard against rule patterns that backtrack catastrophically.

Python's ``re`` backtracks: a pattern such as ``(a+)+$`` tries exponentially many ways to split
a run of ``a`` before it gives up, so one sentence can hang labelling. :func:`ambiguity` reads a
pattern's parse tree (``re``'s own parser) and finds the two shapes behind that blow-up:

* a quantifier inside a repeated group (``(a+)+``, ``(\\d+,?)*``, ``(.*x){20}``) whose characters
  can also begin what follows it in the group or the group's next round, so one text splits
  between the rounds in many ways;
* alternatives inside a repeated group that can begin with the same character (``(a|a)+``).

A repeat that is followed by something it cannot match is unambiguous and passes, e.g. the
"up to two words" idiom ``(\\w+\\s+){0,2}``: each ``\\w+`` must stop where the spaces start.
Possessive repeats (``a++``) and atomic groups (``(?>...)``) never give text back and pass too.
The check is conservative (it may refuse a pattern that would in fact be fast); characters are
compared on a sample of Unicode (ASCII, Latin-1, Latin Extended and a few other scripts'
letters, digits, spaces and quotes).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

try:  # Python 3.11+
    from re import _constants as sre, _parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

# ASCII, Latin-1, Latin Extended; Cyrillic, Greek, Hebrew letters; Arabic-Indic and Devanagari digits;
# thin and ideographic spaces; typographic quotes and the ellipsis; a CJK character
_SAMPLE = "".join(map(chr, range(0x250))) + ("\u0430\u0431\u03b1\u05d0\u0661\u0966"
                                              "\u2009\u3000\u2019\u201c\u201d\u2026\u4e2d")
_ALL = frozenset(_SAMPLE)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)


@lru_cache(maxsize=None)
def _category(name: str) -> frozenset[str]:
    escape = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
              "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}.get(name)
    if escape is None:  # line-break categories of verbose patterns and the like: assume anything
        return _ALL
    found = re.compile(escape)
    return frozenset(c for c in _SAMPLE if found.fullmatch(c))


class _Reader:
    """First-character sets of parsed (sub)patterns under one pattern's flags."""

    def __init__(self, flags: int) -> None:
        self.ignore_case = bool(flags & re.IGNORECASE)
        self.dot_all = bool(flags & re.DOTALL)

    def _chars(self, chars: set[str] | frozenset[str]) -> frozenset[str]:
        if not self.ignore_case:
            return frozenset(chars)
        return frozenset(chars) | {c.lower() for c in chars} | {c.upper() for c in chars if len(c.upper()) == 1}

    def _set(self, items) -> frozenset[str]:
        chars: set[str] = set()
        negate = False
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                chars.add(chr(av))
            elif op is sre.RANGE:
                chars.update(c for c in _SAMPLE if av[0] <= ord(c) <= av[1])
            elif op is sre.CATEGORY:
                chars |= _category(getattr(av, "name", str(av)))
            else:
                chars |= _ALL
        chars = set(self._chars(chars))
        return _ALL - chars if negate else frozenset(chars)

    def first(self, items, start: int = 0) -> tuple[frozenset[str], bool]:
        """(characters a match of ``items[start:]`` can begin with, whether it can match empty)."""
        found: set[str] = set()
        for op, av in list(items)[start:]:
            chars, empty = self.first_of(op, av)
            found |= chars
            if not empty:
                return frozenset(found), False
        return frozenset(found), True

    def first_of(self, op, av) -> tuple[frozenset[str], bool]:
        if op is sre.LITERAL:
            return self._chars({chr(av)}), False
        if op is sre.NOT_LITERAL:
            return _ALL - self._chars({chr(av)}), False
        if op is sre.ANY:
            return (_ALL if self.dot_all else _ALL - {"\n"}), False
        if op is sre.IN:
            return self._set(av), False
        if op in _ZERO_WIDTH:
            return frozenset(), True
        if op is sre.SUBPATTERN:
            return self.first(av[3])
        if op is sre.ATOMIC_GROUP:
            return self.first(av)
        if op is sre.BRANCH:
            parts = [self.first(branch) for branch in av[1]]
            return frozenset().union(*(chars for chars, _ in parts)), any(empty for _, empty in parts)
        if op in _REPEATS or op is sre.POSSESSIVE_REPEAT:
            chars, empty = self.first(av[2])
            return chars, empty or av[0] == 0
        return _ALL, True  # back-references and conditionals: anything


def ambiguity(pattern: str, flags: int = 0) -> Optional[str]:
    """Why ``pattern`` (compiled with ``flags``) can backtrack catastrophically, or None (see the module doc)."""
    parsed = sre_parse.parse(pattern, flags)
    return _Checker(_Reader(parsed.state.flags)).sequence(list(parsed), None)


class _Checker:
    def __init__(self, reader: _Reader) -> None:
        self.reader = reader

    def sequence(self, items: list, follow: Optional[frozenset[str]]) -> Optional[str]:
        """Check ``items``; ``follow``: what may come after them inside a repeated group (None: outside any)."""
        for position, (op, av) in enumerate(items):
            after = None
            if follow is not None:
                rest, empty = self.reader.first(items, position + 1)
                after = rest | follow if empty else rest
            problem = self.node(op, av, after)
            if problem:
                return problem
        return None

    def node(self, op, av, after: Optional[frozenset[str]]) -> Optional[str]:
        if op in _REPEATS:
            low, high, body = av
            starts, _ = self.reader.first(body)
            if after is not None and low != high and starts & after:
                return "a quantifier inside a repeated group can match what follows it"
            if high > 1:  # the body runs again: what it starts with may follow any round
                return self.sequence(list(body), starts | (after or frozenset()))
            return self.sequence(list(body), after)
        if op is sre.POSSESSIVE_REPEAT:  # gives nothing back: no other split to try
            return self.sequence(list(av[2]), None)
        if op is sre.ATOMIC_GROUP:
            return self.sequence(list(av), None)
        if op in (sre.ASSERT, sre.ASSERT_NOT):  # lookarounds are atomic too
            return self.sequence(list(av[1]), None)
        if op is sre.SUBPATTERN:
            return self.sequence(list(av[3]), after)
        if op is sre.BRANCH:
            return self.branches(av[1], after)
        if op is sre.GROUPREF_EXISTS:
            return self.branches([av[1]] + ([av[2]] if av[2] else [[]]), after)
        return None

    def branches(self, branches, after: Optional[frozenset[str]]) -> Optional[str]:
        if after is not None:
            seen: set[str] = set()
            for branch in branches:
                chars, empty = self.reader.first(branch)
                starts = chars | after if empty else chars
                if starts & seen:
                    return "alternatives inside a repeated group can match the same text"
                seen |= starts
        for branch in branches:
            problem = self.sequence(list(branch), after)
            if problem:
                return problem
        return None
