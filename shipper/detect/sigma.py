"""Sigma rules: parsed by pySigma, evaluated live by our own matcher.

pySigma parses the YAML, applies the value modifiers (contains, startswith, all,
re, cidr, gte, exists, ...) and resolves the condition (`1 of sel_*`, `and`,
`not`) into a tree whose leaves are "field equals value" or "keyword" tests.
Before that, the SigmaHQ pipeline (sigmahq.py) renames Sysmon-for-Linux fields to
ours. `compile_condition` turns the tree into nested closures over an event's
`Fields` (each field looked up and casefolded once per event), so matching costs no
parsing at run time. The same (mapped) rules are converted to
Lucene queries by pySigma's Elasticsearch backend; keeping both on pySigma's
model is what makes the live verdict and the Kibana search agree.

Matching follows the Sigma specification: strings compare case-insensitively as
whole values with `*`/`?` wildcards (`cased` makes them case-sensitive), a list of
values means any of them (all of them with `all`), a field holding a list matches
if any element does, keywords search the `message` field.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from ..errors import Problem
from ..model import Severity
from .sigmahq import sigmahq_pipeline

Document = dict[str, Any]

KEYWORD_FIELDS = ("message",)
_MISSING = object()
_COMPARE = {CompareOperators.LT: operator.lt, CompareOperators.LTE: operator.le,
            CompareOperators.GT: operator.gt, CompareOperators.GTE: operator.ge}
_TEXT = (str, int, float)  # the values strings compare with (as str(value))


class UnsupportedRule(Exception):
    """A construct the live evaluator does not implement (reported by lint)."""


class Fields:
    """One event's fields as the matchers read them: each field looked up, and folded, once."""

    __slots__ = ("document", "_values", "_folded")

    def __init__(self, document: Document):
        self.document = document
        self._values: dict[str, list[Any]] = {}
        self._folded: dict[str, list[str]] = {}

    def values(self, name: str) -> list[Any]:
        found = self._values.get(name)
        if found is None:
            found = self._values[name] = _values(lookup(self.document, name))
        return found

    def folded(self, name: str) -> list[str]:
        """The field's values that strings compare with, as casefolded text."""
        found = self._folded.get(name)
        if found is None:
            found = self._folded[name] = [str(v).casefold() for v in self.values(name) if isinstance(v, _TEXT)]
        return found


Matcher = Callable[[Fields], bool]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    description: str
    severity: Severity
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    path: Path
    check: Matcher = field(repr=False, compare=False)
    sigma: SigmaRule = field(repr=False, compare=False)
    # the condition as an OR of branches, each with the prefilter keys it requires (None: any),
    # so that RuleSet runs only the branches an event's executable or process name can satisfy
    branches: tuple[tuple[frozenset[Key] | None, Matcher], ...] = field(default=(), repr=False, compare=False)

    def matches(self, document: Document) -> bool:
        return self.check(Fields(document))


# ------------------------------------------------------------------ field access


def lookup(document: Document, dotted: str) -> Any:
    """`process.parent.name` in nested dicts (or a flat dotted key); _MISSING if absent."""
    if dotted in document:
        return document[dotted]
    node: Any = document
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _values(found: Any) -> list[Any]:
    if found is _MISSING or found is None:
        return []
    return list(found) if isinstance(found, (list, tuple)) else [found]


# ------------------------------------------------------------------ values


def _folded_string_test(values: Iterable[Any], anywhere: bool = False) -> Callable[[str], bool] | None:
    """One test on casefolded text for case-insensitive strings that are plain or only `*`-wrapped
    (`a`, `a*`, `*a`, `*a*`): a set lookup, startswith/endswith with tuples and substring tests,
    no regex. `anywhere` treats every value as `*a*` (keywords). None if any value is anything else."""
    exact, prefixes, suffixes, inner = set(), [], [], []
    for value in values:
        if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString):
            return None
        parts = value.s
        text = [p for p in parts if isinstance(p, str)]
        wild = [p for p in parts if not isinstance(p, str)]
        if any(w != SpecialChars.WILDCARD_MULTI for w in wild) or len(text) > 1:
            return None
        plain = (text[0] if text else "").casefold()
        if not plain:
            return None
        starts = anywhere or parts[0] == SpecialChars.WILDCARD_MULTI
        ends = anywhere or parts[-1] == SpecialChars.WILDCARD_MULTI
        if not anywhere and len(wild) != int(starts) + int(ends):
            return None
        if starts and ends:
            inner.append(plain)
        elif starts:
            suffixes.append(plain)
        elif ends:
            prefixes.append(plain)
        else:
            exact.add(plain)
    prefixes_t, suffixes_t, inner_t = tuple(prefixes), tuple(suffixes), tuple(inner)
    if not exact and not prefixes_t and not suffixes_t and len(inner_t) == 1:
        needle = inner_t[0]
        return lambda text: needle in text
    if not exact and not prefixes_t and not inner_t:
        return lambda text: text.endswith(suffixes_t)
    if not exact and not suffixes_t and not inner_t:
        return lambda text: text.startswith(prefixes_t)
    if not prefixes_t and not suffixes_t and not inner_t:
        return lambda text: text in exact
    return lambda text: (text in exact or (prefixes_t and text.startswith(prefixes_t))
                         or (suffixes_t and text.endswith(suffixes_t)) or any(i in text for i in inner_t))


def _value_test(value: Any, anywhere: bool = False) -> Callable[[Any], bool]:
    """A test of one field value against one Sigma value; `anywhere` for keywords (contains)."""
    if isinstance(value, SigmaExpansion):  # windash, base64offset: any of the variants
        tests = [_value_test(v, anywhere) for v in value.values]
        return lambda v: any(test(v) for test in tests)
    if isinstance(value, SigmaString):
        flags = 0 if isinstance(value, SigmaCasedString) else re.IGNORECASE
        if not value.contains_special():
            plain = value.to_plain()
            if flags:
                folded = plain.casefold()
                if anywhere:
                    return lambda v: isinstance(v, _TEXT) and folded in str(v).casefold()
                return lambda v: isinstance(v, _TEXT) and str(v).casefold() == folded
            if anywhere:
                return lambda v: isinstance(v, _TEXT) and plain in str(v)
            return lambda v: isinstance(v, _TEXT) and str(v) == plain
        pattern = re.compile(value.to_regex().regexp.to_plain(), flags | re.DOTALL)
        match = pattern.search if anywhere else pattern.fullmatch
        return lambda v: isinstance(v, _TEXT) and match(str(v)) is not None
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
        pattern = re.compile(value.regexp.to_plain() if isinstance(value.regexp, SigmaString) else str(value.regexp), flags)
        return lambda v: isinstance(v, _TEXT) and pattern.search(str(v)) is not None
    if isinstance(value, SigmaNumber):
        number = value.number
        return lambda v: _as_number(v) == number
    if isinstance(value, SigmaCompareExpression):
        compare, number = _COMPARE[value.op], value.number.number
        return lambda v: (n := _as_number(v)) is not None and compare(n, number)
    if isinstance(value, SigmaCIDRExpression):
        network = value.network
        return lambda v: _in_network(v, network)
    if isinstance(value, SigmaBool):
        wanted = value.boolean
        return lambda v: v is wanted or (isinstance(v, str) and v.lower() == str(wanted).lower())
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported by the live evaluator")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _in_network(value: Any, network) -> bool:
    try:
        return ipaddress.ip_address(str(value)) in network
    except ValueError:
        return False


# ------------------------------------------------------------------ condition tree


def compile_condition(node: Any, keyword_fields: Iterable[str] = KEYWORD_FIELDS) -> Matcher:
    keyword_fields = tuple(keyword_fields)
    if isinstance(node, ConditionAND):
        parts = [compile_condition(arg, keyword_fields) for arg in node.args]
        if len(parts) == 2:
            first, second = parts
            return lambda fields: first(fields) and second(fields)
        return lambda fields: all(part(fields) for part in parts)
    if isinstance(node, ConditionOR):
        return compile_any(node.args, keyword_fields)
    if isinstance(node, ConditionNOT):
        inner = compile_condition(node.args[0], keyword_fields)
        return lambda fields: not inner(fields)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_matcher(node.field, node.value)
    if isinstance(node, ConditionValueExpression):
        fast = _folded_string_test([node.value], anywhere=True)
        if fast is not None:
            return _any_folded(keyword_fields, fast)
        if _literal(node.value):
            return _any_pattern(keyword_fields, [node.value], anywhere=True)
        test = _value_test(node.value, anywhere=True)
        return lambda fields: any(test(v) for name in keyword_fields for v in fields.values(name))
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported by the live evaluator")


def or_branches(node: Any, distribute: bool = False) -> list[Any]:
    """The operands of an OR, nested ORs (`1 of selection_*`, value lists) flattened. With
    `distribute`, an AND over ORs is spread into an OR of ANDs (`1 of sel_* and not filter` is
    `(sel_a and not filter) or (sel_b and not filter)`), up to a few branches, so that each
    branch can be grouped by the executable it requires."""
    if isinstance(node, ConditionOR):
        return [branch for arg in node.args for branch in or_branches(arg, distribute)]
    if distribute and isinstance(node, ConditionAND):
        combined: list[list[Any]] = [[]]
        for arg in node.args:
            options = _by_keys(or_branches(arg, distribute))
            if len(combined) * len(options) > _MAX_BRANCHES:
                return [node]
            combined = [done + [option] for done in combined for option in options]
        if len(combined) > 1:
            return [ConditionAND(args=parts) for parts in combined]
    return [node]


_MAX_BRANCHES = 32


def _by_keys(options: list[Any]) -> list[Any]:
    """OR operands regrouped into one per distinct required key set: spreading a value list
    over an AND only pays where it lets the prefilter skip branches."""
    groups: dict[frozenset[Key] | None, list[Any]] = {}
    for option in options:
        groups.setdefault(required_keys(option), []).append(option)
    return [group[0] if len(group) == 1 else ConditionOR(args=group) for group in groups.values()]


def compile_any(nodes: Iterable[Any], keyword_fields: tuple[str, ...] = KEYWORD_FIELDS) -> Matcher:
    """An OR. Its plain or `*`-wrapped strings are gathered per field, and its keywords, across
    selections, into one fold and one test each (see _folded_string_test): a list of values
    costs one field access, not one per value, and no regex."""
    # (field names, keyword?) -> values; keywords search, field values match whole
    strings: dict[tuple[tuple[str, ...], bool], list[Any]] = {}
    patterns: dict[tuple[tuple[str, ...], bool], list[Any]] = {}  # strings with inner wildcards: regexes
    rest: list[Any] = []
    for node in (branch for each in nodes for branch in or_branches(each)):
        keyword = isinstance(node, ConditionValueExpression)
        if not keyword and not isinstance(node, ConditionFieldEqualsValueExpression):
            rest.append(node)
            continue
        group = (keyword_fields if keyword else (node.field,), keyword)
        if _folded_string_test([node.value], anywhere=keyword):
            strings.setdefault(group, []).append(node.value)
        elif _literal(node.value):
            patterns.setdefault(group, []).append(node.value)
        else:
            rest.append(node)
    parts = [_any_folded(names, test) for (names, anywhere), values in strings.items()
             if (test := _folded_string_test(values, anywhere)) is not None]
    parts += [_any_pattern(names, values, anywhere) for (names, anywhere), values in patterns.items()]
    parts += [compile_condition(node, keyword_fields) for node in rest]
    if len(parts) == 1:
        return parts[0]
    return lambda fields: any(part(fields) for part in parts)


def _any_folded(names: tuple[str, ...], test: Callable[[str], bool]) -> Matcher:
    if len(names) == 1:
        name = names[0]

        def any_value(fields: Fields) -> bool:
            for text in fields.folded(name):
                if test(text):
                    return True
            return False

        return any_value
    return lambda fields: any(test(text) for name in names for text in fields.folded(name))


def _field_matcher(name: str, value: Any) -> Matcher:
    if isinstance(value, SigmaExists):
        wanted = value.exists  # as Elasticsearch's `exists`: null and [] do not exist
        return lambda fields: bool(fields.values(name)) is wanted
    if isinstance(value, SigmaNull):
        return lambda fields: lookup(fields.document, name) in (_MISSING, None)
    if isinstance(value, SigmaFieldReference):
        other = value.field
        return lambda fields: bool(set(map(str, fields.values(name))) & set(map(str, fields.values(other))))
    fast = _folded_string_test(value.values if isinstance(value, SigmaExpansion) else [value])
    if fast is not None:
        return _any_folded((name,), fast)
    if _literal(value):
        return _any_pattern((name,), [value])
    test = _value_test(value)
    return lambda fields: any(test(v) for v in fields.values(name))


def _literal(value: Any) -> str:
    """The longest plain piece of a case-insensitive string with inner wildcards, casefolded
    ("" for anything else): a value without it cannot match."""
    if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString) or not value.contains_special():
        return ""
    return max((part.casefold() for part in value.s if isinstance(part, str)), key=len, default="")


def _any_pattern(names: tuple[str, ...], values: list[Any], anywhere: bool = False) -> Matcher:
    """Strings like `a*b?c` (regexes), each tried only on a value holding its longest plain
    piece: one fold per value, then substring tests, a fraction of a regex each (keyword rules
    run on every log line)."""
    guarded = [(_literal(value), _value_test(value, anywhere)) for value in values]

    def any_value(fields: Fields) -> bool:
        for name in names:
            for value in fields.values(name):
                if isinstance(value, _TEXT):
                    folded = str(value).casefold()
                    for needle, test in guarded:
                        if needle in folded and test(value):
                            return True
        return False

    return any_value


# ------------------------------------------------------------------ prefilter


EXECUTABLE = "process.executable"
NAME = "process.name"
Key = tuple[str, str]  # (EXECUTABLE, casefolded basename) or (NAME, casefolded name)


def executable_basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def event_keys(fields: Fields) -> list[Key]:
    """What the prefilter knows of an event: its executable's basename and its process name."""
    return ([(EXECUTABLE, executable_basename(path)) for path in fields.folded(EXECUTABLE)]
            + [(NAME, name) for name in fields.folded(NAME)])


def required_keys(node: Any) -> frozenset[Key] | None:
    """Keys one of which an event must have for the condition to hold (from `Image|endswith:
    '/curl'` or `process.name: nc`-like tests), or None when the condition does not say."""
    if isinstance(node, ConditionAND):
        found = [keys for keys in map(required_keys, node.args) if keys is not None]
        return min(found, key=len) if found else None
    if isinstance(node, ConditionOR):
        every = [required_keys(arg) for arg in node.args]
        known = [keys for keys in every if keys is not None]
        return None if len(known) < len(every) else frozenset().union(*known)
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field in (EXECUTABLE, NAME):
        values = node.value.values if isinstance(node.value, SigmaExpansion) else [node.value]
        keys = set()
        for value in values:
            if not isinstance(value, SigmaString):
                return None
            parts = value.s
            if node.field == NAME:  # only a whole name: `nc`, not `nc*`
                if len(parts) != 1 or not isinstance(parts[0], str):
                    return None
                keys.add((NAME, parts[0].casefold()))
                continue
            text = parts[1:] if parts and parts[0] == SpecialChars.WILDCARD_MULTI else parts
            if len(text) != 1 or not isinstance(text[0], str) or (len(text) != len(parts) and "/" not in text[0]):
                return None  # wildcards inside, or an endswith that does not reach a slash
            keys.add((EXECUTABLE, executable_basename(text[0].casefold())))
        return frozenset(keys)
    return None


class RuleSet:
    """One category's rules, their OR branches grouped by the keys they require, so that an
    event costs the branches that could match it: those that name its executable or process
    name, and those that name none."""

    def __init__(self, rules: Iterable[Rule] = ()):
        self._rules: list[Rule] = []
        self._unkeyed: list[tuple[Rule, Matcher]] = []
        self._keyed: dict[Key, list[tuple[Rule, Matcher]]] = {}
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        self._rules.append(rule)
        for keys, branch in rule.branches:
            if keys is None:
                self._unkeyed.append((rule, branch))
            for key in keys or ():
                self._keyed.setdefault(key, []).append((rule, branch))

    def remove(self, rule: Rule) -> None:
        self._rules.remove(rule)
        for entries in [self._unkeyed, *self._keyed.values()]:
            entries[:] = [entry for entry in entries if entry[0] is not rule]

    def __iter__(self):
        return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def candidates(self, fields: Fields) -> list[tuple[Rule, Matcher]]:
        """(rule, branch) to run on the event: a rule matches if any of its branches does."""
        if not self._keyed:
            return self._unkeyed
        found = [entries for entries in map(self._keyed.get, event_keys(fields)) if entries]
        if not found:
            return self._unkeyed
        keyed = found[0] if len(found) == 1 else list(dict.fromkeys(e for entries in found for e in entries))
        return self._unkeyed + keyed


# ------------------------------------------------------------------ loading and lint


SEVERITIES = {"informational": Severity.INFORMATIONAL, "low": Severity.LOW, "medium": Severity.MEDIUM,
              "high": Severity.HIGH, "critical": Severity.CRITICAL}


def rule_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
        else:
            files.append(path)
    return files


def load_rules(paths: Iterable[Path]) -> tuple[list[Rule], list[Problem]]:
    """Every rule in `paths` (files or directories), and every problem found, with file:line."""
    rules: list[Rule] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for path in rule_files(paths):
        text = path.read_text(encoding="utf-8")
        rule, found = _load_one(path, text)
        problems += found
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(Problem(_where(path, text, "id"), "id",
                                    f"duplicate rule id {rule.id} (first in {seen[rule.id]})"))
            continue
        seen[rule.id] = path
        rules.append(rule)
    return rules, problems


def _load_one(path: Path, text: str) -> tuple[Rule | None, list[Problem]]:
    try:
        sigma = SigmaRule.from_yaml(text, collect_errors=True)
    except yaml.YAMLError as exc:
        return None, [Problem(_where(path, text, None, exc), "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    except Exception as exc:  # structure errors pySigma raises outright
        return None, [Problem(_where(path, text, None, exc), "", f"not a valid Sigma rule: {exc}")]
    problems = [Problem(_where(path, text, None, error), "", str(error)) for error in sigma.errors]
    if not problems:
        try:
            sigmahq_pipeline().apply(sigma)
        except SigmaError as exc:
            problems.append(Problem(_where(path, text, None, exc), "", str(exc)))
    if sigma.id is None:
        problems.append(Problem(f"{path}:1", "id", "every rule needs an id (a UUID)"))
    if sigma.level is None:
        problems.append(Problem(f"{path}:1", "level", "every rule needs a level"))
    if problems or sigma.level is None:
        return None, problems
    try:
        by_keys: dict[frozenset[Key] | None, list[Any]] = {}
        for condition in sigma.detection.parsed_condition:
            for branch in or_branches(condition.parsed, distribute=True):
                by_keys.setdefault(required_keys(branch), []).append(branch)
        branches = tuple((keys, compile_any(nodes)) for keys, nodes in by_keys.items())
    except (SigmaError, UnsupportedRule) as exc:
        return None, [Problem(_where(path, text, "condition", exc), "detection", str(exc))]
    tags = [f"{t.namespace}.{t.name}" for t in sigma.tags]
    techniques = tuple(t.split(".", 1)[1].upper() for t in tags if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t))
    tactics = tuple(t.split(".", 1)[1] for t in tags if t.startswith("attack.") and not re.fullmatch(r"attack\.[gst]\d{4}.*", t))
    rule = Rule(
        id=str(sigma.id), title=sigma.title, description=sigma.description or "",
        severity=SEVERITIES[sigma.level.name.lower()], tactics=tactics, techniques=techniques, path=path,
        check=(branches[0][1] if len(branches) == 1 else lambda fields: any(b(fields) for _, b in branches)),
        sigma=sigma,
        branches=branches,
    )
    return rule, []


def _where(path: Path, text: str, key: str | None, error: Exception | None = None) -> str:
    """file:line of the problem: pySigma's own line if it knows it, else the best guess from the text."""
    source = getattr(error, "source", None)
    if source is not None and getattr(source, "line", None):
        return f"{path}:{source.line}"
    lines = text.splitlines()
    needles = re.findall(r"'([^']+)'", str(error)) if error is not None else []
    for needle in needles:
        for number, line in enumerate(lines, 1):
            if needle in line:
                return f"{path}:{number}"
    mark = getattr(error, "problem_mark", None)  # a YAML syntax error's place
    if mark is not None:
        return f"{path}:{mark.line + 1}"
    if key:
        for number, line in enumerate(lines, 1):
            if re.match(rf"\s*{re.escape(key)}\s*:", line):
                return f"{path}:{number}"
    return f"{path}:1"


def explain(rule: Rule, document: Document) -> dict[str, bool]:
    """Which of the rule's named detections (selections, filters, keywords) match `document`."""
    detections = rule.sigma.detection
    fields = Fields(document)
    return {name: compile_condition(ConditionIdentifier([name]).postprocess(detections))(fields)
            for name in detections.detections}
