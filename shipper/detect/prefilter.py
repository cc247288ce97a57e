"""One prefilter for every log line: which lines could any log rule flag?

Built from the rules themselves (so it follows the ruleset): for each log rule, the
literals one of which `message` must contain for the rule to match (keywords, values,
the plain pieces of wildcard strings). It runs over the *raw* json-file bytes of a
whole chunk, lower-cased (ASCII), with one Aho-Corasick automaton, and answers the
positions of possible hits; only the lines holding one take the full path (Event,
Sigma evaluation). It may say yes too often, never no wrongly:

- A literal is searched by its longest piece of ASCII that Docker never escapes in a
  json-file entry (no quote, backslash, `<`, `>`, `&`, control character).
- Rules compare casefolded text, and a few non-ASCII characters casefold to ASCII
  (`ß` -> `ss`, the Kelvin sign -> `k`); a line holding one of those is a candidate.
- A rule that does not say which literal a message must hold (a regex, a number, a
  test of another field only, a `not` alone) makes every line a candidate: with such a
  rule loaded, every log line takes the full path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import ahocorasick_rs
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import SigmaExpansion, SigmaString

from .sigma import KEYWORD_FIELDS, Rule

MIN_PIECE = 3  # shorter literals would flag most lines: then the rule makes every line a candidate
_UNSAFE = frozenset('"\\<>&')


@functools.cache
def _folds_to_ascii() -> list[bytes]:
    """Non-ASCII characters whose casefold holds an ASCII character, UTF-8 encoded."""
    found = []
    for code in range(0x80, 0x10000):  # none beyond the BMP (19 in Unicode 15: ß, ſ, K, ﬁ, ...)
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        folded = char.casefold()
        if folded != char and any(ord(c) < 0x80 for c in folded):
            found.append(char.encode())
    return found


def _piece(text: str) -> str:
    """The longest run of `text` (casefolded) that appears verbatim in Docker's escaping, lower-cased."""
    best, run = "", []
    for char in text.casefold() + "\0":
        if " " <= char < "\x7f" and char not in _UNSAFE:
            run.append(char)
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    return best


def _value_literals(value: Any) -> frozenset[str] | None:
    """The literals one of which a text matching `value` holds; None when the value does not say."""
    if isinstance(value, SigmaExpansion):
        return _any_of([_value_literals(v) for v in value.values])
    if not isinstance(value, SigmaString):
        return None
    pieces = [_piece(part) for part in value.s if isinstance(part, str)]
    best = max(pieces, key=len, default="")
    return frozenset({best}) if len(best) >= MIN_PIECE else None


def required_literals(node: Any) -> frozenset[str] | None:
    """Literals one of which `message` must hold for the condition to hold; None: no such set."""
    if isinstance(node, ConditionAND):
        known = [f for f in map(required_literals, node.args) if f is not None]
        return min(known, key=len) if known else None
    if isinstance(node, ConditionOR):
        return _any_of([required_literals(arg) for arg in node.args])
    if isinstance(node, ConditionNOT):
        return None
    if isinstance(node, ConditionValueExpression):
        return _value_literals(node.value)
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field in KEYWORD_FIELDS:
        return _value_literals(node.value)
    return None


def rule_literals(rule: Rule) -> frozenset[str] | None:
    return _any_of([required_literals(condition.parsed) for condition in rule.sigma.detection.parsed_condition])


def _any_of(options: list[frozenset[str] | None]) -> frozenset[str] | None:
    """One of several conditions holds: the union of their literals, if each names some."""
    union: frozenset[str] = frozenset()
    for literals in options:
        if literals is None:
            return None
        union |= literals
    return union


class LogPrefilter:
    """`prefilter(lowered_chunk)`: sorted positions of possible hits, or None when every line is a candidate."""

    def __init__(self, rules: Iterable[Rule]):
        literals: set[str] = set()
        self.every_line = False
        self.forcing: list[str] = []  # the rules that make every line a candidate
        for rule in rules:
            found = rule_literals(rule)
            if found is None:
                self.every_line = True
                self.forcing.append(rule.id)
            else:
                literals |= found
        self.literals = sorted(literals)
        self._automaton = None
        if literals and not self.every_line:
            patterns = [literal.encode() for literal in self.literals] + _folds_to_ascii()
            # Leftmost-first lets the automaton use its SIMD searcher (~10x faster than the
            # standard, overlapping kind, which reports every hit). One hit per line is all a
            # prefilter needs, and it still gets one: no pattern holds a newline or NUL (the
            # bytes between lines), so a match never runs from one line into the next.
            assert not any(b"\n" in p or b"\0" in p for p in patterns)
            self._automaton = ahocorasick_rs.BytesAhoCorasick(patterns, matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_FIRST)

    def __call__(self, lowered: bytes) -> list[int] | None:
        if self.every_line:
            return None
        if self._automaton is None:
            return []
        return [start for _, start, _ in self._automaton.find_matches_as_indexes(lowered)]
