"""Kibana saved objects, generated: data views, one saved search per rule, category searches, a dashboard.

Each rule's search is the rule itself, converted to a Lucene query by pySigma's
Elasticsearch backend, scoped to the kind of event the rule judges (its
`logsource.category`), so the search in Kibana and the verdict at the edge agree:
a test runs every query against the real Elasticsearch and compares. Keywords
(Sigma's unbound values) become phrases on `message`: `message` is full text, where
a `*keyword*` wildcard would only ever see single tokens.

`shipper kibana generate` writes kibana/shipper.ndjson; the committed file must
equal what it generates. `shipper setup --kibana URL` imports it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigma.backends.elasticsearch import LuceneBackend
from sigma.collection import SigmaCollection
from sigma.types import SigmaRegularExpression

from . import kinds
from .detect.engine import BUILTIN_RULES, route
from .detect.sigma import Rule, load_rules
from .detect.stateful import AnomalyDetector, MiningDetector, PortScanDetector
from .document import DEADLETTER_DATASET, EVENTS_DATASET

EVENTS_VIEW = "shipper-events"
DEADLETTER_VIEW = "shipper-deadletter"
DASHBOARD = "shipper-security"
OUTPUT = "shipper.ndjson"

# the events a category's rules judge, and the columns of its searches (declared in kinds.py)
CATEGORY_SCOPE = {category.name: kinds.scope(category) for category in kinds.CATEGORIES}
COLUMNS = {category.name: list(category.columns) for category in kinds.CATEGORIES}
ALERT_COLUMNS = ["container.name", "rule.name", "event.severity", "event.reason"]


class _Lucene(LuceneBackend):
    unbound_value_str_expression = 'message:"{value}"'
    field_not_exists_expression = "(*:* NOT _exists_:{field})"

    def convert_condition_field_eq_val_re(self, cond, state):
        value = cond.value
        lucene = SigmaRegularExpression(lucene_regex(value.regexp.to_plain()), set(value.flags))
        return super().convert_condition_field_eq_val_re(dataclasses.replace(cond, value=lucene), state)

    def convert_condition_not(self, cond, state):
        # Lucene reads `a OR NOT b` as "a, and never b": a negation stands alone only
        # as "everything except", so it is spelled out.
        converted = super().convert_condition_not(cond, state)
        return f"(*:* {converted})" if isinstance(converted, str) else converted


_CLASSES = {"s": " \t\n\r\f\v", "d": "0-9", "w": "a-zA-Z0-9_"}
_LUCENE_OPERATORS = set('"<>#@&~')  # literal in Python's syntax, operators in Lucene's


def lucene_regex(pattern: str) -> str:
    """A Sigma (Python) regex as Lucene's regex syntax with the same meaning: Sigma searches
    anywhere in the value where Lucene matches the whole value; Lucene has no `(?:` or `\\s`
    and reads `"<>#@&~` as operators."""
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[int(start):len(pattern) - int(end)]
    out, index, in_class = [], 0, False
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            escaped = body[index + 1]
            if escaped in _CLASSES:
                out.append(_CLASSES[escaped] if in_class else f"[{_CLASSES[escaped]}]")
            else:
                out.append(char + escaped)
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif body.startswith("(?:", index):
            out.append("(")
            index += 3
            continue
        if char in _LUCENE_OPERATORS:
            char = "\\" + char
        out.append(char)
        index += 1
    return ("" if start else ".*") + "(" + "".join(out) + ")" + ("" if end else ".*")


@dataclass(frozen=True)
class SavedSearch:
    id: str
    title: str
    description: str
    query: str
    columns: list[str]
    view: str = EVENTS_VIEW


def rule_query(rule: Rule) -> str:
    """The rule as a Lucene query over the events its category judges. `rule.sigma` is the rule
    as loaded, SigmaHQ field mapping applied (detect/sigmahq.py), as the live evaluator sees it."""
    converted = _Lucene().convert(SigmaCollection([rule.sigma]))
    return f"({CATEGORY_SCOPE[route(rule)]}) AND ({converted[0]})"


def _id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"shipper:kibana:{key}"))


def rule_searches(rules: list[Rule]) -> list[SavedSearch]:
    return [SavedSearch(_id(f"rule:{rule.id}"), f"Rule: {rule.title}", rule.description, rule_query(rule),
                        COLUMNS[route(rule)])
            for rule in sorted(rules, key=lambda r: r.title) if route(rule) is not None]


def _ids(*ids: str) -> str:
    return "rule.id:(" + " OR ".join(f'"{i}"' for i in ids) + ")"


def category_searches(rules: list[Rule]) -> list[SavedSearch]:
    by_name = {rule.path.stem: rule.id for rule in rules}
    alert = "event.kind:alert"
    searches = [
        ("all-alerts", "All alerts", "Every event a rule or detector flagged, most recent first.", alert, ALERT_COLUMNS),
        ("process-alerts", "Process alerts", "Alerts on processes started in containers.",
         f"{alert} AND event.dataset:{kinds.PROCESSES.dataset}", ALERT_COLUMNS + ["process.command_line"]),
        ("network-and-scans", "Network and scans", "Alerts on connections and port scans, and scanner output in logs.",
         f"{alert} AND (event.dataset:{kinds.NETWORK.dataset} OR "
         f"shipper.verdicts.{_ids(PortScanDetector.info.id, by_name['log_port_scanner'])})",
         ALERT_COLUMNS + ["destination.ip", "destination.port"]),
        ("crypto-mining", "Crypto-mining", "Mining detected from CPU and miner signals, miner processes and miner output.",
         f"{alert} AND shipper.verdicts."
         + _ids(MiningDetector.info.id, by_name["proc_crypto_miner"], by_name["log_crypto_miner"]),
         ALERT_COLUMNS + ["process.command_line", "shipper.container.cpu.cores"]),
        ("file-tampering", "File tampering", "Alerts on files written, deleted or linked in containers.",
         f"{alert} AND event.dataset:{kinds.FILES.dataset}", ALERT_COLUMNS + ["event.action", "file.path"]),
        ("container-misconfiguration", "Container misconfiguration",
         "Containers started privileged, as root, with dangerous mounts, capabilities or namespaces.",
         f"{alert} AND {kinds.scope(kinds.CONTAINER_CONFIG)}",
         ALERT_COLUMNS + ["container.image.name"]),
        ("exec-sessions", "Exec sessions", "Every docker exec, flagged or not.",
         kinds.scope(kinds.CONTAINER_EXEC), COLUMNS[kinds.CONTAINER_EXEC.name] + ["rule.name"]),
        ("host-configuration", "Host configuration",
         "Findings of the Docker engine audit (listeners and TLS, socket, daemon defaults), with what to do.",
         f"{alert} AND {kinds.scope(kinds.HOST_CONFIG_CATEGORY)}",
         ["host.name", "rule.name", "event.severity", "shipper.remediation", "shipper.engine.listeners"]),
        ("vulnerable-running-images", "Vulnerable running images",
         "Critical and high vulnerabilities with a fix, in the images of running containers (Trivy reports).",
         f"{kinds.scope(kinds.VULNERABILITY_CATEGORY)} AND vulnerability.severity:(CRITICAL OR HIGH) "
         "AND shipper.vulnerability.fix_available:true AND _exists_:container.id",
         COLUMNS[kinds.VULNERABILITY_CATEGORY.name]),
        ("anomalies", "Resource anomalies", "Stats samples the anomaly model scored as unlike the image's baseline.",
         f"{alert} AND shipper.verdicts.{_ids(AnomalyDetector.info.id)}",
         ALERT_COLUMNS + ["shipper.anomaly.score", "shipper.container.cpu.cores", "shipper.container.pids"]),
    ]
    out = [SavedSearch(_id(f"category:{key}"), f"Shipper: {title}", description, query, columns)
           for key, title, description, query, columns in searches]
    out.append(SavedSearch(_id("category:dead-letters"), "Shipper: Dead letters",
                           "Documents Elasticsearch refused for good, with the reason and the original.",
                           "*", ["error.type", "error.message", "shipper.deadletter.index"], DEADLETTER_VIEW))
    return out


def _view(view_id: str, title: str, name: str) -> dict[str, Any]:
    return {"id": view_id, "type": "index-pattern", "attributes": {"title": title, "name": name,
                                                                  "timeFieldName": "@timestamp"}, "references": []}


def _search(search: SavedSearch) -> dict[str, Any]:
    source = {"query": {"query": search.query, "language": "lucene"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {
        "id": search.id, "type": "search",
        "attributes": {"title": search.title, "description": search.description, "columns": search.columns,
                       "sort": [["@timestamp", "desc"]],
                       "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)}},
        "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                        "id": search.view}],
    }


def _dashboard(searches: list[SavedSearch]) -> dict[str, Any]:
    panels, references = [], []
    for number, search in enumerate(searches):
        ref = f"panel_{number}"
        panels.append({"panelIndex": str(number), "gridData": {"x": 24 * (number % 2), "y": 15 * (number // 2),
                                                               "w": 24, "h": 15, "i": str(number)},
                       "embeddableConfig": {}, "panelRefName": ref, "type": "search"})
        references.append({"name": ref, "type": "search", "id": search.id})
    return {"id": DASHBOARD, "type": "dashboard",
            "attributes": {"title": "Shipper: container security", "description": "The category searches side by side.",
                           "panelsJSON": json.dumps(panels),
                           # opens on the last 7 days, not Kibana's default 15 minutes
                           "timeRestore": True, "timeFrom": "now-7d", "timeTo": "now",
                           "refreshInterval": {"pause": True, "value": 0},
                           "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "",
                                                                                               "language": "lucene"},
                                                                                     "filter": []})}},
            "references": references}


def saved_objects(rules: list[Rule] | None = None) -> list[dict[str, Any]]:
    if rules is None:
        rules, problems = load_rules([BUILTIN_RULES])
        assert not problems, problems
    categories = category_searches(rules)
    return ([_view(EVENTS_VIEW, f"logs-{EVENTS_DATASET}-*", "Shipper events"),
             _view(DEADLETTER_VIEW, f"logs-{DEADLETTER_DATASET}-*", "Shipper dead letters")]
            + [_search(s) for s in categories + rule_searches(rules)] + [_dashboard(categories)])


def render(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


def generate(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / OUTPUT
    path.write_text(render(saved_objects()))
    return path
