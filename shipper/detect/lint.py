"""Warnings for rules that load but cannot do what they say on this shipper.

A rule can be valid Sigma and still never fire here: its logsource is one the
shipper does not produce (auditd, sshd, windows), or it tests a field its kind of
event never carries (after the SigmaHQ mapping: `LogonId`, a process on a file
event). `shipper rules lint` prints these as warnings next to the errors, and says
where each rule without a category is routed.

CARRIED lists the fields each category's events carry, as their source declares them
(shipper/kinds.py); the container's metadata (`container.*`), the shipper's own
annotations (`shipper.*`) and the common ECS fields are on every event. Categories
whose source follows the Engine API's shapes (container_config, _exec, _event,
image_config) are not checked field by field.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import kinds
from ..errors import Problem
from .engine import route
from .sigma import Rule
from .sigmahq import FIELD_MAPPING

_EVERY_EVENT_PREFIXES = ("container.", "shipper.", "event.", "host.", "agent.", "ecs.", "labels.")
_EVERY_EVENT = {"@timestamp", "message", "tags", "labels"}
CARRIED: dict[str, frozenset[str]] = {category.name: fields for category in kinds.CATEGORIES
                                      if (fields := kinds.carried(category)) is not None}


def rule_warnings(rule: Rule) -> list[Problem]:
    """What stops `rule` from firing as written, each at the rule file's line; [] if nothing."""
    text = rule.path.read_text(encoding="utf-8")
    logsource = rule.sigma.logsource
    category = route(rule)
    if category is None:
        described = "/".join(part or "-" for part in (logsource.product, logsource.category, logsource.service))
        return [Problem(_line(rule.path, text, r"logsource\s*:"), "logsource",
                        f"warning: the shipper produces no {described} events; the rule is ignored")]
    carried = CARRIED.get(category)
    if carried is None:
        return []
    renamed = {ecs: sysmon for sysmon, ecs in FIELD_MAPPING.get(category, {}).items()}
    warnings = []
    for name in sorted(_fields(rule)):
        if name in carried or name in _EVERY_EVENT or name.startswith(_EVERY_EVENT_PREFIXES):
            continue
        written = renamed.get(name, name)
        shown = f"{written} ({name})" if written != name else name
        warnings.append(Problem(_line(rule.path, text, rf"{re.escape(written)}\s*(\|[^:]*)?:"), "detection",
                                f"warning: {category} events never carry {shown}; tests on it never match"))
    return warnings


def routing_note(rule: Rule) -> str | None:
    """Where a rule without a category goes, for lint to say."""
    if rule.sigma.logsource.category is not None:
        return None
    category = route(rule)
    if category == kinds.CONTAINER_LOG.name:
        return f"{rule.path}: note: no logsource category: its keywords are searched in container log lines"
    return None


def _fields(rule: Rule) -> set[str]:
    def items(detection):
        for item in detection.detection_items:
            yield from items(item) if hasattr(item, "detection_items") else (item,)
    return {item.field for detection in rule.sigma.detection.detections.values() for item in items(detection)
            if item.field is not None}


def _line(path: Path, text: str, pattern: str) -> str:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*-?\s*{pattern}", line):
            return f"{path}:{number}"
    return f"{path}:1"
