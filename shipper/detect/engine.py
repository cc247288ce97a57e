"""The detection stage: judge each event with the Sigma rules that apply to its kind.

A rule says what it looks at with `logsource.category`; an event's category comes
from its source and action (see `category_of`). Only the rules of that category run,
so a log line costs the few log rules, not the whole ruleset. Rules see the event's
ECS fields with the container's metadata joined, as the document will be indexed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import kinds
from ..config import DetectionConfig
from ..document import join_container
from ..errors import ConfigError
from ..model import Event, Verdict
from ..sources.base import Batch
from .policy import Allowlist, Throttle
from .prefilter import LogPrefilter
from .sigma import Fields, Rule, RuleSet, load_rules
from .stateful import AnomalyDetector, Detector, MiningDetector, PortScanDetector

log = logging.getLogger(__name__)

BUILTIN_RULES = Path(__file__).resolve().parents[1] / "rules"

# the logsource.category values the shipper produces are declared with their sources in kinds.py
PRODUCED_CATEGORIES = frozenset(kinds.CATEGORY)
# snapshots of a state, not streams of repeats: each audit or report is judged whole, never throttled
_SNAPSHOTS = frozenset(c.name for c in kinds.CATEGORIES if c.snapshot)
_DETECTOR_SOURCES = frozenset(s.name for s in kinds.SOURCES if s.sampled)
# products whose logs the shipper sees: a rule for another product (windows, aws, ...) is ignored
_PRODUCTS = (None, "linux", "docker")


def rule_categories(category: str) -> tuple[str, ...]:
    """The rule categories that judge an event of `category`: a `docker exec` command is a process creation too."""
    return kinds.judging(category)


def category_of(event: Event) -> str:
    return kinds.category_name(event.source, event.fields.get("event", {}).get("action"))


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
        return kinds.CONTAINER_LOG.name
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
    """Rules by category, then stateful detectors, then allowlists and throttling.

    `judge` runs on every source's thread. The rules by category and the detectors are
    published as immutable values (a mapping of RuleSets never changed once published, a
    tuple): disabling a rule or removing a detector builds new ones and swaps the
    reference, under a lock only writers take, so a reader takes one reference and judges
    the whole event with one consistent set.
    """

    def __init__(self, rules: Iterable[Rule], containers: Callable[[str], Any] | None = None, metrics=None, *,
                 detectors: Iterable[Detector] = (), allowlist: Allowlist | None = None,
                 throttle: Throttle | None = None):
        self.metrics = metrics
        by_category: dict[str, list[Rule]] = {}
        for rule in rules:
            category = route(rule)
            if category is not None:  # `shipper rules lint` says which rules are ignored, and why
                by_category.setdefault(category, []).append(rule)
        self._by_category: Mapping[str, RuleSet] = MappingProxyType(
            {category: RuleSet(listed) for category, listed in by_category.items()})
        self._containers = containers
        self._detectors: tuple[Detector, ...] = tuple(detectors)
        self._writing = threading.Lock()  # writers only: two changes at once must not lose one
        self._log_prefilter: tuple[RuleSet | None, LogPrefilter] | None = None
        self.allowlist = allowlist or Allowlist(())
        self.throttle = throttle or Throttle(0)

    @classmethod
    def from_paths(cls, paths: Iterable[Path], containers=None, *, builtin: bool = True, metrics=None,
                   **policy) -> RulesEngine:
        rules, problems = load_rules(([BUILTIN_RULES] if builtin else []) + list(paths))
        if problems:
            raise ConfigError(problems)
        engine = cls(rules, containers, metrics, **policy)
        log.info("rules loaded", extra={"rules": len(engine.rules), "ignored": len(rules) - len(engine.rules),
                                        "categories": sorted(engine.by_category)})
        return engine

    @classmethod
    def from_config(cls, detection: DetectionConfig, containers=None, *, metrics=None,
                    model_dir: Path | None = None) -> RulesEngine:
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

    @property
    def log_prefilter(self) -> LogPrefilter:
        """Which raw log lines the log rules in force could flag (the json-file fast path takes the others
        as unflagged). Built again when the log rules change: a published RuleSet never changes."""
        rules = self._by_category.get(kinds.CONTAINER_LOG.name)
        built = self._log_prefilter
        if built is None or built[0] is not rules:
            prefilter = LogPrefilter(rules or ())
            if prefilter.every_line:
                log.warning("a log rule names no literal its message must hold (a regex, a number, another "
                            "field): every log line takes the full path, at several times the CPU",
                            extra={"rules": prefilter.forcing})
            built = self._log_prefilter = (rules, prefilter)
        return built[1]

    @property
    def by_category(self) -> Mapping[str, RuleSet]:
        """The rules in force, by the category they judge; read-only, replaced whole on a change."""
        return self._by_category

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self._detectors

    @property
    def rules(self) -> list[Rule]:
        return [rule for rules in self._by_category.values() for rule in rules]

    def disable_rule(self, rule: Rule) -> bool:
        """Stop running `rule`; False if it was not running."""
        with self._writing:
            current = self._by_category
            if not any(rule in rules for rules in current.values()):
                return False
            self._by_category = MappingProxyType({
                category: RuleSet(r for r in rules if r is not rule) if rule in rules else rules
                for category, rules in current.items()})
            return True

    def enable_rule(self, rule: Rule) -> bool:
        """Run `rule` again (or for the first time); False if it already runs or judges nothing here."""
        category = route(rule)
        with self._writing:
            current = self._by_category
            if category is None or rule in current.get(category, ()):
                return False
            self._by_category = MappingProxyType({**current, category: RuleSet([*current.get(category, ()), rule])})
            return True

    def remove_detector(self, detector: Detector) -> bool:
        """Stop calling `detector`; False if it was not called."""
        with self._writing:
            if detector not in self._detectors:
                return False
            self._detectors = tuple(d for d in self._detectors if d is not detector)
            return True

    def view(self, event: Event) -> dict[str, Any]:
        """The event as rules see it: its fields, with the container's metadata joined."""
        doc = dict(event.fields)
        if event.container_id:
            join_container(doc, event, self._containers)
        return doc

    def judge(self, event: Event) -> Event:
        by_category, detectors = self._by_category, self._detectors  # one consistent set for the whole event
        # a `docker exec` command is judged as a process creation too, even one gone at once; a container's
        # start by its image's rules too
        categories = judged_categories(event)
        rule_sets = [by_category[c] for c in categories if c in by_category]
        stateful = detectors and event.source in _DETECTOR_SOURCES
        if not any(rule_sets) and not stateful:
            return event
        doc = self.view(event)
        fields = Fields(doc)
        verdicts = self._rule_verdicts([pair for rules in rule_sets for pair in rules.candidates(fields)], fields)
        added: dict[str, Any] = {}
        if detectors and (stateful or verdicts):  # a log line only matters to detectors once a rule flagged it
            found, added = self._detector_verdicts(detectors, doc, event, verdicts)
            verdicts += found
        verdicts = self._apply_policy(verdicts, doc, event.container_id, throttled=categories[0] not in _SNAPSHOTS)
        if added:  # what detectors add to the event under `shipper.` (the anomaly score)
            event = dataclasses.replace(event, fields={**event.fields,
                                                       "shipper": {**(event.fields.get("shipper") or {}), **added}})
        if not verdicts:
            return event
        return dataclasses.replace(event, verdicts=event.verdicts + tuple(verdicts))

    def _rule_verdicts(self, candidates: Iterable[tuple[Rule, Callable]], fields: Fields) -> list[Verdict]:
        verdicts = []
        matched: set[str] = set()
        for rule, branch in candidates:  # a rule is several entries when its condition is an OR
            try:
                if rule.id not in matched and branch(fields):
                    matched.add(rule.id)
                    verdicts.append(_verdict(rule, fields.document))
            except Exception:  # a broken rule must not stop shipping
                matched.add(rule.id)
                if self.disable_rule(rule):  # once, however many threads saw it raise
                    log.exception("rule raised and is disabled; shipping goes on",
                                  extra={"rule_id": rule.id, "rule": rule.title})
                    if self.metrics is not None:
                        self.metrics.detector_errors.labels(rule.id).inc()
        return verdicts

    def _detector_verdicts(self, detectors: tuple[Detector, ...], doc: dict[str, Any], event: Event,
                           verdicts: list[Verdict]) -> tuple[list[Verdict], dict[str, Any]]:
        found: list[Verdict] = []
        added: dict[str, Any] = {}
        for detector in detectors:
            try:
                observed = detector.observe(doc, event.source, event.container_id, verdicts)
            except Exception:
                if self.remove_detector(detector):
                    log.exception("detector raised and is disabled; shipping goes on",
                                  extra={"detector": detector.info.key})
                    if self.metrics is not None:
                        self.metrics.detector_errors.labels(detector.info.key).inc()
                continue
            found += observed.verdicts
            added.update(observed.fields)
        return found, added

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
