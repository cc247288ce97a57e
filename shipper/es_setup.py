"""`shipper setup`: index templates, component templates and a lifecycle policy.

What a cluster supports differs: the full distribution has `constant_keyword`,
`match_only_text`, `wildcard` and ILM; a minimal server may have none of them.
Setup asks the cluster without writing to it (the user's privileges through
`_has_privileges`, each mapping type through `_index_template/_simulate`, ILM
through its status), uses the best type available, and reports what it replaced
or skipped. Running it again changes nothing that is already right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, AuthenticationException, Elasticsearch

from . import kinds
from .detect.stateful import FEATURES as ANOMALY_FEATURES
from .document import DEADLETTER_DATASET, EVENTS_DATASET
from .errors import AccessDenied

log = logging.getLogger(__name__)

POLICY = "shipper"
# What setup needs (cluster privileges), and the role the README tells users to run it with.
TEMPLATES_PRIVILEGE = "manage_index_templates"
ILM_PRIVILEGE = "manage_ilm"
SETUP_ROLE_HINT = (f"run `shipper setup` as a user whose role grants the cluster privileges {TEMPLATES_PRIVILEGE} "
                   f"and {ILM_PRIVILEGE} (e.g. the built-in superuser elastic), then ship with the writer role")
PRIORITY = 250  # above the stock `logs` template (100) of the full distribution
# Preferred mapping types, and what to use where a cluster lacks them.
FALLBACKS = {"constant_keyword": "keyword", "match_only_text": "text", "wildcard": "keyword"}

KW = "keyword"
# What every event may carry: the container's metadata, the verdicts, the dead-letter record and the
# detectors' annotations. What each kind of event adds is declared with its source (kinds.py).
COMMON_FIELDS: dict[str, Any] = {
    "@timestamp": "date_nanos",
    "message": "match_only_text",
    "tags": KW,
    "labels": "flattened",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    "ecs.version": KW,
    "event.kind": KW, "event.category": KW, "event.type": KW, "event.action": KW,
    "event.dataset": KW, "event.module": KW, "event.outcome": KW, "event.reason": KW, "event.provider": KW,
    "event.severity": "long", "event.risk_score": "float",
    "event.original": {"type": KW, "index": False, "doc_values": False},
    "host.name": KW, "host.hostname": KW,
    "agent.type": KW, "agent.name": KW, "agent.version": KW,
    "container.id": KW, "container.name": KW, "container.runtime": KW,
    "container.image.name": KW, "container.image.tag": KW, "container.image.hash.all": KW,
    "container.labels": "flattened",
    "shipper.container.security.privileged": "boolean", "shipper.container.security.user": KW,
    "shipper.container.restart_count": "long",
    "shipper.container.compose.project": KW, "shipper.container.compose.service": KW,
    "shipper.container.security.capabilities_added": KW, "shipper.container.security.host_namespaces": KW,
    "shipper.container.security.mounts": KW, "shipper.container.security.writable_mounts": KW,
    "shipper.container.security.seccomp": KW, "shipper.container.security.apparmor": KW,
    "shipper.container.security.read_only_rootfs": "boolean", "shipper.container.security.unlimited": KW,
    "shipper.container.security.limits.memory": "long", "shipper.container.security.limits.cpu": "long",
    "shipper.container.security.limits.pids": "long",
    "log.level": KW, "user.name": KW,
    "shipper.anomaly.score": "float", "shipper.anomaly.model": KW,
    **{f"shipper.anomaly.features.{name}": "float" for name in ANOMALY_FEATURES},
    "error.type": KW, "error.message": "match_only_text", "error.code": KW,
    "rule.id": KW, "rule.name": KW,
    "threat.framework": KW, "threat.tactic.id": KW, "threat.tactic.name": KW,
    "threat.technique.id": KW, "threat.technique.name": KW,
    "shipper.verdicts.rule.id": KW, "shipper.verdicts.rule.name": KW,
    "shipper.verdicts.severity": "long", "shipper.verdicts.level": KW, "shipper.verdicts.reason": KW,
    "shipper.verdicts.tactic": KW, "shipper.verdicts.technique": KW, "shipper.verdicts.risk_score": "float",
    "shipper.verdicts.suppressed": "long", "shipper.verdicts.remediation": KW, "shipper.verdicts.benchmark": KW,
    "shipper.remediation": KW,
    "shipper.deadletter.index": KW,
    "shipper.deadletter.error": {"type": "object", "enabled": False},
}
# ECS fields the shipper writes, dotted name -> type. Everything else dynamic: strings as keyword.
EVENT_FIELDS: dict[str, Any] = {**COMMON_FIELDS, **kinds.template_fields()}
DYNAMIC_TEMPLATES = [{"strings_as_keyword": {"match_mapping_type": "string",
                                             "mapping": {"type": "keyword", "ignore_above": 1024}}}]


def mapping_properties(fields: dict[str, Any], available: set[str]) -> dict[str, Any]:
    """Dotted names -> nested `properties`, with unavailable types replaced."""
    root: dict[str, Any] = {}
    for dotted, spec in fields.items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        if spec["type"] in FALLBACKS and spec["type"] not in available:
            spec["type"] = FALLBACKS[spec["type"]]
        if spec["type"] == "keyword" and "ignore_above" not in spec and spec.get("index", True):
            spec["ignore_above"] = 8191 if dotted in ("message", "error.message") else 1024
        *parents, leaf = dotted.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = spec
    return root


@dataclass
class SetupReport:
    version: str = "unknown"
    installed: list[str] = field(default_factory=list)
    replaced_types: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Elasticsearch {self.version}"]
        out += [f"  installed  {name}" for name in self.installed]
        out += [f"  replaced   mapping type {a} -> {b} (not available on this cluster)" for a, b in self.replaced_types.items()]
        out += [f"  skipped    {what}" for what in self.skipped]
        return out


def missing_privileges(client: Elasticsearch) -> tuple[str, set[str]] | None:
    """(user, the setup privileges it lacks), or None when the cluster has no security to ask."""
    try:
        answer = client.security.has_privileges(cluster=[TEMPLATES_PRIVILEGE, ILM_PRIVILEGE]).body
    except AuthenticationException:
        raise
    except ApiError as exc:
        if exc.status_code in (400, 404, 405, 410, 501):  # security disabled: no such endpoint
            return None
        raise
    granted = answer.get("cluster") or {}
    return answer.get("username", "?"), {name for name, ok in granted.items() if not ok}


def _probe_types(client: Elasticsearch) -> set[str]:
    """Which preferred mapping types the cluster knows: simulated templates, nothing written."""
    available = set()
    for kind in FALLBACKS:
        try:
            client.indices.simulate_template(
                index_patterns=["shipper-setup-probe-*"], priority=PRIORITY,
                template={"mappings": {"properties": {"f": {"type": kind}}}})
            available.add(kind)
        except ApiError as exc:
            if exc.status_code != 400:  # 400: "the mapper type [...] does not exist"
                raise
    return available


def _has_ilm(client: Elasticsearch) -> bool:
    try:
        client.ilm.get_status()
        return True
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise
        return False


def _version(client: Elasticsearch) -> str:
    try:
        nodes = client.nodes.info(node_id="_local", filter_path="nodes.*.version").body
        return next(iter(nodes["nodes"].values()))["version"]
    except AuthenticationException:
        raise
    except (ApiError, KeyError, StopIteration):  # 403 without `monitor`: the version is only shown
        return "unknown"


def template_name(dataset: str) -> str:
    return f"logs-{dataset}"


def template_names() -> list[str]:
    return [template_name(dataset) for dataset in (EVENTS_DATASET, DEADLETTER_DATASET)]


def run_setup(client: Elasticsearch, *, retention_days: int = 90) -> SetupReport:
    privileges = missing_privileges(client)
    user, missing = privileges if privileges else ("", set())
    if TEMPLATES_PRIVILEGE in missing:
        raise AccessDenied(f"Elasticsearch user {user} lacks the cluster privilege {TEMPLATES_PRIVILEGE}, which "
                           f"installing index templates needs; {SETUP_ROLE_HINT}")
    report = SetupReport(version=_version(client))
    available = _probe_types(client)
    report.replaced_types = {k: v for k, v in FALLBACKS.items() if k not in available}

    settings: dict[str, Any] = {"index": {"auto_expand_replicas": "0-1", "mapping": {"total_fields": {"limit": 2000}}}}
    if ILM_PRIVILEGE in missing:
        report.skipped.append(f"lifecycle policy: user {user} lacks the cluster privilege {ILM_PRIVILEGE}; "
                              "indices are kept until deleted by hand (run setup again with it to add the policy)")
    elif _has_ilm(client):
        client.ilm.put_lifecycle(name=POLICY, policy={"phases": {
            "hot": {"actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "7d"}}},
            "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
        }})
        report.installed.append(f"lifecycle policy {POLICY} (rollover 50gb/7d, delete after {retention_days}d)")
        settings["index"]["lifecycle"] = {"name": POLICY}
    else:
        report.skipped.append("lifecycle policy: this cluster has no ILM (_ilm); indices are kept until deleted by hand")

    component = "shipper@settings"
    client.cluster.put_component_template(name=component, template={"settings": settings})
    report.installed.append(f"component template {component}")

    mappings = {"dynamic_templates": DYNAMIC_TEMPLATES, "properties": mapping_properties(EVENT_FIELDS, available)}
    client.cluster.put_component_template(name="shipper@mappings", template={"mappings": mappings})
    report.installed.append("component template shipper@mappings")

    for dataset in (EVENTS_DATASET, DEADLETTER_DATASET):
        name = template_name(dataset)
        client.indices.put_index_template(
            name=name, index_patterns=[f"logs-{dataset}-*"], data_stream={}, priority=PRIORITY,
            composed_of=[component, "shipper@mappings"],
            meta={"managed_by": "shipper", "description": f"shipper {dataset} data streams"},
        )
        report.installed.append(f"index template {name} (data streams logs-{dataset}-*)")
    return report
