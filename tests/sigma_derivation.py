"""Events derived from a Sigma rule's own condition, in our document format, and a slow
reference evaluator to confirm them (used by tests/unit/test_sigmahq.py and the Kibana
agreement test in tests/integration/test_sigmahq_searches.py).

The derivation walks the (mapped) rule's condition tree for an assignment of its tests
(field test true/false) and builds field values that satisfy it: strings from the Sigma
patterns, regexes from their parse, numbers, addresses in the CIDR. The reference evaluator
uses pySigma's own regex for every string, no fast path, so a wrong derivation is told
apart from a wrong engine.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import re._parser as sre_parse
from pathlib import Path

from sigma.conditions import ConditionAND, ConditionNOT, ConditionOR, ConditionValueExpression
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "sigmahq" / "rules" / "linux"
CATEGORIES = {"process_creation": "processes", "file_event": "files", "network_connection": "network"}


def judged_rules(rules):
    """The SigmaHQ rules of the categories our sampled sources produce."""
    return [rule for rule in rules if rule.sigma.logsource.category in CATEGORIES]


# ------------------------------------------------------------------ reference evaluator


def _lookup(doc, name):
    if name in doc:
        found = doc[name]
    else:
        found = doc
        for part in name.split("."):
            if not isinstance(found, dict) or part not in found:
                return []
            found = found[part]
    if found is None:
        return []
    return list(found) if isinstance(found, list) else [found]


def _value_holds(value, found, anywhere=False) -> bool:
    if isinstance(value, SigmaExpansion):
        return any(_value_holds(v, found, anywhere) for v in value.values)
    if isinstance(value, SigmaString):
        flags = re.DOTALL | (0 if isinstance(value, SigmaCasedString) else re.IGNORECASE)
        pattern = value.to_regex().regexp.to_plain()
        test = re.search if anywhere else re.fullmatch
        return isinstance(found, (str, int, float)) and test(pattern, str(found), flags) is not None
    if isinstance(value, SigmaRegularExpression):
        flags = sum(SigmaRegularExpression.sigma_to_python_flags[f] for f in value.flags)
        return isinstance(found, (str, int, float)) and re.search(value.regexp.to_plain(), str(found), flags) is not None
    if isinstance(value, SigmaNumber):
        try:
            return float(found) == value.number
        except (TypeError, ValueError):
            return False
    if isinstance(value, SigmaCIDRExpression):
        try:
            return ipaddress.ip_address(str(found)) in value.network
        except ValueError:
            return False
    if isinstance(value, SigmaBool):
        return found is value.boolean or str(found).lower() == str(value.boolean).lower()
    raise AssertionError(f"reference evaluator: {type(value).__name__}")


def leaf_holds(leaf, doc) -> bool:
    if isinstance(leaf, ConditionValueExpression):
        return any(_value_holds(leaf.value, v, anywhere=True) for v in _lookup(doc, "message"))
    if isinstance(leaf.value, SigmaExists):
        return bool(_lookup(doc, leaf.field)) is leaf.value.exists
    if isinstance(leaf.value, SigmaNull):
        return not _lookup(doc, leaf.field)
    return any(_value_holds(leaf.value, v) for v in _lookup(doc, leaf.field))


def holds(node, doc) -> bool:
    if isinstance(node, ConditionAND):
        return all(holds(arg, doc) for arg in node.args)
    if isinstance(node, ConditionOR):
        return any(holds(arg, doc) for arg in node.args)
    if isinstance(node, ConditionNOT):
        return not holds(node.args[0], doc)
    return leaf_holds(node, doc)


def rule_holds(rule, doc) -> bool:
    return any(holds(condition.parsed, doc) for condition in rule.sigma.detection.parsed_condition)


# ------------------------------------------------------------------ derivation


def assignments(node, want: bool):
    """Lists of (leaf, truth) that make `node` evaluate to `want`, lazily, simplest first."""
    if isinstance(node, ConditionNOT):
        yield from assignments(node.args[0], not want)
    elif isinstance(node, (ConditionAND, ConditionOR)):
        every = isinstance(node, ConditionAND) == want  # AND true, OR false: all operands
        if every:
            yield from _all_of([lambda arg=arg: assignments(arg, want) for arg in node.args])
        else:
            for arg in node.args:
                yield from assignments(arg, want)
    else:
        yield [(node, want)]


def _all_of(makers):
    if not makers:
        yield []
        return
    for first in makers[0]():
        for rest in _all_of(makers[1:]):
            yield first + rest


def _regex_sample(pattern: str) -> str:
    """A shortest string the regex matches (enough for the rules' patterns)."""
    def walk(parsed) -> str:
        out = ""
        for op, arg in parsed:
            name = str(op)
            if name == "LITERAL":
                out += chr(arg)
            elif name == "NOT_LITERAL":
                out += "a" if chr(arg) != "a" else "b"
            elif name == "ANY":
                out += "a"
            elif name == "IN":
                out += _in_sample(arg)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _, inner = arg
                out += walk(inner) * max(low, 0)
            elif name == "SUBPATTERN":
                out += walk(arg[-1])
            elif name == "BRANCH":
                out += walk(arg[1][0])
            elif name == "AT":
                continue
            else:
                raise ValueError(f"regex element {name}")
        return out
    return walk(sre_parse.parse(pattern))


def _in_sample(items) -> str:
    negate = any(str(op) == "NEGATE" for op, _ in items)
    if not negate:
        op, arg = items[0]
        if str(op) == "LITERAL":
            return chr(arg)
        if str(op) == "RANGE":
            return chr(arg[0])
        if str(op) == "CATEGORY":
            return {"CATEGORY_SPACE": " ", "CATEGORY_DIGIT": "0"}.get(str(arg), "a")
    candidates = "aZ0x_"
    return next(c for c in candidates if re.fullmatch(f"[{''.join(_class_text(items))}]", c))


def _class_text(items):
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            yield "^"
        elif name == "LITERAL":
            yield re.escape(chr(arg))
        elif name == "RANGE":
            yield f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}"
        elif name == "CATEGORY":
            yield {"CATEGORY_SPACE": r"\s", "CATEGORY_DIGIT": r"\d", "CATEGORY_WORD": r"\w"}[str(arg)]


def _string_sample(value: SigmaString) -> tuple[str, bool, bool]:
    """The pattern's text with wildcards filled, and whether it is open at its start / end."""
    parts = value.s
    text = "".join(p if isinstance(p, str) else ("" if p == SpecialChars.WILDCARD_MULTI else "x") for p in parts)
    return text, parts[0] == SpecialChars.WILDCARD_MULTI, parts[-1] == SpecialChars.WILDCARD_MULTI


def _positive_value(values: list, keyword: bool):
    """A value satisfying every Sigma value in `values` (one field), or None."""
    numbers = [v for v in values if isinstance(v, SigmaNumber)]
    if numbers:
        return numbers[0].number
    cidrs = [v for v in values if isinstance(v, SigmaCIDRExpression)]
    if cidrs:
        return str(next(cidrs[0].network.hosts(), cidrs[0].network.network_address))
    bools = [v for v in values if isinstance(v, SigmaBool)]
    if bools:
        return bools[0].boolean
    exact, starts, middle, ends = [], [], [], []
    for value in values:
        if isinstance(value, SigmaExpansion):
            value = value.values[0]
        if isinstance(value, SigmaRegularExpression):
            middle.append(_regex_sample(value.regexp.to_plain()))
        elif isinstance(value, SigmaString):
            text, open_start, open_end = _string_sample(value)
            if keyword or (open_start and open_end):
                middle.append(text)
            elif open_start:
                ends.append(text)
            elif open_end:
                starts.append(text)
            else:
                exact.append(text)
        elif isinstance(value, SigmaExists):
            middle.append("present")
    if exact:
        return exact[0]
    head = max(starts, key=len) if starts else ""
    tail = max(ends, key=len) if ends else ""
    if not middle and not head and tail.startswith("/"):
        return "/usr/bin" + tail  # `Image|endswith: '/curl'`: a whole path
    if not middle and not tail and head:
        return head + "payload"
    if middle and not head and not tail:  # searched-for text inside a longer value, as in real life
        return " ".join(["run", *middle, "--now"])
    return " ".join(part for part in [head, *middle, tail] if part) if (middle or head or tail) else "x"


NEUTRAL = ["/opt/app/bin/worker", "worker --serve", 7, "198.51.100.7", "neutral"]
NEUTRAL_BY_FIELD = {"network.direction": ["ingress"], "process.user.name": ["app"]}


def build(base: dict, assignment) -> dict | None:
    """`base` with the fields of `assignment` set so that each of its tests has the wanted truth."""
    doc = copy.deepcopy(base)
    by_field: dict[str, list] = {}
    for leaf, truth in assignment:
        name = "message" if isinstance(leaf, ConditionValueExpression) else leaf.field
        by_field.setdefault(name, []).append((leaf, truth))
    for name, tests in by_field.items():
        wanted = [leaf.value for leaf, truth in tests if truth]
        absent_wanted = any(isinstance(v, (SigmaNull,)) or (isinstance(v, SigmaExists) and not v.exists)
                            for v in wanted)
        if absent_wanted:
            _set(doc, name, None)
        elif wanted:
            keyword = any(isinstance(leaf, ConditionValueExpression) for leaf, truth in tests if truth)
            value = _positive_value(wanted, keyword)
            if isinstance(value, str) and name == "message":
                value = f"{value}"
            _set(doc, name, value)
        if not all(leaf_holds(leaf, doc) is truth for leaf, truth in tests):
            if wanted:
                return None
            for neutral in NEUTRAL_BY_FIELD.get(name, []) + NEUTRAL:  # only tests that must fail: a value none of them accepts
                _set(doc, name, neutral)
                if all(leaf_holds(leaf, doc) is truth for leaf, truth in tests):
                    break
            else:
                return None
    _complete(doc)
    return doc


def _set(doc: dict, dotted: str, value) -> None:
    if "." not in dotted or dotted in doc:  # Sysmon names the mapping has no counterpart for stay flat
        doc[dotted] = value
        return
    node = doc
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _complete(doc: dict) -> None:
    """Keep the derived document consistent the way our sources fill it."""
    process = doc.get("process")
    if isinstance(process, dict) and isinstance(process.get("executable"), str):
        process["name"] = process["executable"].rsplit("/", 1)[-1][:15]
        if isinstance(process.get("command_line"), str):
            process["args"] = process["command_line"].split()
    file = doc.get("file")
    if isinstance(file, dict) and isinstance(file.get("path"), str):
        directory, _, name = file["path"].rpartition("/")
        file.update(name=name, directory=directory or "/")


BASE = {
    "process_creation": {
        "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "process_started",
                  "module": "shipper", "dataset": "shipper.processes"},
        "message": "process started",
        "process": {"pid": 42, "executable": "/usr/bin/env", "command_line": "env", "working_directory": "/srv",
                    "user": {"id": "1000", "name": "app"},
                    "parent": {"pid": 7, "name": "sh", "executable": "/bin/sh", "command_line": "sh -c run"}},
    },
    "file_event": {
        "event": {"kind": "event", "category": ["file"], "type": ["creation"], "action": "creation",
                  "module": "shipper", "dataset": "shipper.files"},
        "message": "file creation",
        "file": {"path": "/srv/data/report.csv", "type": "file", "size": 12},
    },
    "network_connection": {
        "event": {"kind": "event", "category": ["network"], "type": ["connection", "start"],
                  "action": "connection_established", "module": "shipper", "dataset": "shipper.network"},
        "message": "outbound tcp",
        "source": {"ip": "172.17.0.2", "port": 40000}, "destination": {"ip": "198.51.100.20", "port": 8443},
        "network": {"transport": "tcp", "type": "ipv4", "direction": "egress", "state": "ESTABLISHED"},
        "process": {"pid": 42, "name": "worker", "executable": "/opt/app/bin/worker", "command_line": "worker"},
    },
}
ATTEMPTS = 400


def derive(rule, want: bool, base: dict) -> dict | None:
    tree = rule.sigma.detection.parsed_condition[0].parsed
    for number, assignment in enumerate(assignments(tree, want)):
        if number >= ATTEMPTS:
            return None
        doc = build(base, assignment)
        if doc is not None and rule_holds(rule, doc) is want:
            return doc
    return None
