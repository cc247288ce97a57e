"""The detection stage: judge each event with the Sigma rules that apply to its kind.

A rule says what it looks at with `logsource.category`; an event's category comes
from its source and action (see `category_of`). Only the rules of that category run,
so a log line costs the few log rules, not the whole ruleset. Rules see the event's
ECS fields with the container's metadata joined, as the document will be indexed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from ..document import join_container
from ..config import DetectionConfig
from ..errors import ConfigError
from ..model import Event, Verdict
from ..sources.base import Batch
from .policy import Allowlist, Throttle
from .prefilter import LogPrefilter
from .sigma import Fields, Rule, RuleSet, load_rules
from .stateful import AnomalyDetector, Detector, MiningDetector, PortScanDetector

log = logging.getLogger(__name__)

BUILTIN_RULES = Path(__file__).resolve().parents[1] / "rules"

# logsource.category values the shipper produces
CONTAINER_LOG = "container_log"
CONTAINER_CONFIG = "container_config"
CONTAINER_EXEC = "container_exec"
CONTAINER_EVENT = "container_event"
# the Sigma categories of the sampled sources
PROCESS_CREATION = "process_creation"
NETWORK_CONNECTION = "network_connection"
FILE_EVENT = "file_event"
CONTAINER_STATS = "container_stats"
# the Docker host and its images: the engine's settings, an image's provenance, scanner findings
HOST_CONFIG = "host_config"
IMAGE_CONFIG = "image_config"
VULNERABILITY = "vulnerability"
# snapshots of a state, not streams of repeats: each audit or report is judged whole, never throttled
_SNAPSHOTS = frozenset({HOST_CONFIG, VULNERABILITY})
_SOURCE_CATEGORIES = {"processes": PROCESS_CREATION, "network": NETWORK_CONNECTION, "files": FILE_EVENT,
                      "stats": CONTAINER_STATS}
_DETECTOR_SOURCES = frozenset(_SOURCE_CATEGORIES)
# the rule categories that judge an event of a category: a `docker exec` command is a process creation too
RULES_FOR = {CONTAINER_EXEC: (CONTAINER_EXEC, PROCESS_CREATION), CONTAINER_CONFIG: (CONTAINER_CONFIG, IMAGE_CONFIG)}


def rule_categories(category: str) -> tuple[str, ...]:
    return RULES_FOR.get(category, (category,))
PRODUCED_CATEGORIES = frozenset({CONTAINER_LOG, CONTAINER_CONFIG, CONTAINER_EXEC, CONTAINER_EVENT, IMAGE_CONFIG,
                                 HOST_CONFIG, VULNERABILITY, *_SOURCE_CATEGORIES.values()})
# products whose logs the shipper sees: a rule for another product (windows, aws, ...) is ignored
_PRODUCTS = (None, "linux", "docker")


def category_of(event: Event) -> str:
    if event.source == "docker_logs":
        return CONTAINER_LOG
    if event.source == "docker_events":
        action = event.fields.get("event", {}).get("action")
        if action == "start":
            return CONTAINER_CONFIG
        if action == "exec_start":
            return CONTAINER_EXEC
        if action == "pull":
            return IMAGE_CONFIG
        return CONTAINER_EVENT
    return _SOURCE_CATEGORIES.get(event.source, event.source)


def route(rule: Rule) -> str | None:
    """The category whose events `rule` judges, or None when the shipper produces nothing it
    could match: a category or service we do not produce, another product. A rule with no
    category whose detection is only keywords searches container log lines, as on a syslog."""
    logsource = rule.sigma.logsource
    if logsource.product not in _PRODUCTS:
        return None
    if logsource.category is not None:
        return logsource.category if logsource.category in PRODUCED_CATEGORIES and logsource.service is None else None
    if logsource.service is None and only_keywords(rule):
        return CONTAINER_LOG
    return None


def only_keywords(rule: Rule) -> bool:
    def items(detection):
        for item in detection.detection_items:
            yield from items(item) if hasattr(item, "detection_items") else (item,)
    return all(item.field in (None, "message") for d in rule.sigma.detection.detections.values() for item in items(d))


def judged_categories(event: Event) -> tuple[str, ...]:
    """Whose rules judge the event (see RULES_FOR)."""
    return rule_categories(category_of(event))


class RulesEngine:
    """Rules by category, then stateful detectors, then allowlists and throttling."""

    def __init__(self, rules: Iterable[Rule], containers: Callable[[str], Any] | None = None, metrics=None, *,
                 detectors: Iterable[Detector] = (), allowlist: Allowlist | None = None,
                 throttle: Throttle | None = None):
        self.metrics = metrics
        self.by_category: dict[str, RuleSet] = defaultdict(RuleSet)
        for rule in rules:
            category = route(rule)
            if category is not None:  # `shipper rules lint` says which rules are ignored, and why
                self.by_category[category].add(rule)
        self._containers = containers
        self.detectors = list(detectors)
        self.allowlist = allowlist or Allowlist(())
        self.throttle = throttle or Throttle(0)

    @classmethod
    def from_paths(cls, paths: Iterable[Path], containers=None, *, builtin: bool = True, metrics=None,
                   **policy) -> "RulesEngine":
        rules, problems = load_rules(([BUILTIN_RULES] if builtin else []) + list(paths))
        if problems:
            raise ConfigError(problems)
        engine = cls(rules, containers, metrics, **policy)
        log.info("rules loaded", extra={"rules": len(engine.rules), "ignored": len(rules) - len(engine.rules),
                                        "categories": sorted(engine.by_category)})
        return engine

    @classmethod
    def from_config(cls, detection: DetectionConfig, containers=None, *, metrics=None,
                    model_dir: Path | None = None) -> "RulesEngine":
        detectors: list[Detector] = []
        if detection.port_scan.enabled:
            detectors.append(PortScanDetector(detection.port_scan))
        if detection.mining.enabled:
            detectors.append(MiningDetector(detection.mining))
        if detection.anomaly.enabled:
            detectors.append(AnomalyDetector(detection.anomaly, model_dir))
        return cls.from_paths([Path(p) for p in detection.rules], containers, builtin=detection.builtin_rules,
                              metrics=metrics, detectors=detectors, allowlist=Allowlist(detection.exceptions),
                              throttle=Throttle(detection.throttle_seconds))

    def log_prefilter(self) -> LogPrefilter:
        """Which raw log lines the log rules could flag (the json-file fast path judges the rest unflagged)."""
        prefilter = LogPrefilter(self.by_category.get(CONTAINER_LOG, ()))
        if prefilter.every_line:
            log.warning("a log rule names no literal its message must hold (a regex, a number, another field): "
                        "every log line takes the full path, at several times the CPU", extra={"rules": prefilter.forcing})
        return prefilter

    @property
    def rules(self) -> list[Rule]:
        return [rule for rules in self.by_category.values() for rule in rules]

    def view(self, event: Event) -> dict[str, Any]:
        """The event as rules see it: its fields, with the container's metadata joined."""
        doc = dict(event.fields)
        if event.container_id:
            join_container(doc, event, self._containers)
        return doc

    def judge(self, event: Event) -> Event:
        # a `docker exec` command is judged as a process creation too, even one gone at once; a container's
        # start by its image's rules too
        categories = judged_categories(event)
        rule_sets = [self.by_category[c] for c in categories if c in self.by_category]
        stateful = self.detectors and event.source in _DETECTOR_SOURCES
        if not any(rule_sets) and not stateful:
            return event
        doc = self.view(event)
        fields = Fields(doc)
        verdicts = self._rule_verdicts([pair for rules in rule_sets for pair in rules.candidates(fields)], fields)
        if self.detectors and (stateful or verdicts):  # a log line only matters to detectors once a rule flagged it
            verdicts += self._detector_verdicts(doc, event, verdicts)
        verdicts = self._apply_policy(verdicts, doc, event.container_id, throttled=categories[0] not in _SNAPSHOTS)
        # a detector annotated the event (shipper.anomaly); shipper.container is the metadata, joined again later
        before = event.fields.get("shipper") or {}
        annotated = {k: v for k, v in (doc.get("shipper") or {}).items() if k != "container" and before.get(k) is not v}
        if annotated:
            event = dataclasses.replace(event, fields={**event.fields, "shipper": {**before, **annotated}})
        if not verdicts:
            return event
        return dataclasses.replace(event, verdicts=event.verdicts + tuple(verdicts))

    def _rule_verdicts(self, candidates: Iterable[tuple[Rule, Callable]], fields: Fields) -> list[Verdict]:
        verdicts = []
        matched: set[str] = set()
        broken = []
        for rule, branch in candidates:  # a rule is several entries when its condition is an OR
            try:
                if rule.id not in matched and branch(fields):
                    matched.add(rule.id)
                    verdicts.append(_verdict(rule, fields.document))
            except Exception:  # a broken rule must not stop shipping
                log.exception("rule raised and is disabled; shipping goes on", extra={"rule_id": rule.id, "rule": rule.title})
                broken.append(rule)
        for rule in broken:  # not while iterating the list it is removed from
            self._disable(rule)
        return verdicts

    def _detector_verdicts(self, doc: dict[str, Any], event: Event, verdicts: list[Verdict]) -> list[Verdict]:
        found: list[Verdict] = []
        for detector in list(self.detectors):
            try:
                found += detector.observe(doc, event.source, event.container_id, verdicts)
            except Exception:
                log.exception("detector raised and is disabled; shipping goes on", extra={"detector": detector.info.key})
                self.detectors.remove(detector)
                if self.metrics is not None:
                    self.metrics.detector_errors.labels(detector.info.key).inc()
        return found

    def _apply_policy(self, verdicts: list[Verdict], doc: dict[str, Any], container_id: str | None,
                      throttled: bool = True) -> list[Verdict]:
        kept = []
        for verdict in verdicts:
            if self.allowlist.allows(verdict, doc) is not None:
                self._count("alerts_allowlisted", verdict)
                continue
            admitted = self.throttle.admit(verdict, container_id) if throttled else verdict
            if admitted is None:
                self._count("alerts_suppressed", verdict)
                continue
            self._count("alerts", verdict)
            kept.append(admitted)
        return kept

    def _count(self, counter: str, verdict: Verdict) -> None:
        if self.metrics is not None:
            getattr(self.metrics, counter).labels(verdict.rule_id).inc()

    def _disable(self, rule: Rule) -> None:
        for rules in self.by_category.values():
            if rule in rules:
                rules.remove(rule)
        if self.metrics is not None:
            self.metrics.detector_errors.labels(rule.id).inc()

    def process(self, batch: Batch) -> Batch:
        judge = self.judge
        batch.events = [judge(event) for event in batch.events]
        return batch


TACTICS = {
    "reconnaissance": "TA0043", "resource_development": "TA0042", "initial_access": "TA0001",
    "execution": "TA0002", "persistence": "TA0003", "privilege_escalation": "TA0004",
    "defense_evasion": "TA0005", "credential_access": "TA0006", "discovery": "TA0007",
    "lateral_movement": "TA0008", "collection": "TA0009", "command_and_control": "TA0011",
    "exfiltration": "TA0010", "impact": "TA0040",
}


def _verdict(rule: Rule, doc: dict[str, Any]) -> Verdict:
    tactic = next((t for t in rule.tactics if t in TACTICS), None)
    return Verdict(
        rule_id=rule.id,
        rule_name=rule.title,
        severity=rule.severity,
        reason=f"{rule.title}: {_subject(doc)}",
        tactic=f"{TACTICS[tactic]} {tactic.replace('_', ' ').title()}" if tactic else None,
        technique=rule.techniques[0] if rule.techniques else None,
        remediation=rule.sigma.custom_attributes.get("remediation"),
        benchmark=_text(rule.sigma.custom_attributes.get("docker_bench")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _subject(doc: dict[str, Any]) -> str:
    container = doc.get("container", {})
    if not container:  # the host or an image: the event's message says which
        return doc.get("message", "")[:300]
    name = container.get("name") or container.get("id", "")[:12] or "host"
    what = doc.get("process", {}).get("command_line") or doc.get("message") or ""
    return f"container {name}" + (f": {what[:200]}" if what else "")
