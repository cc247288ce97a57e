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
# The Docker host and image audits and the scanner findings (issue 14).
HOST_AUDIT_FIELDS: dict[str, Any] = {
    "event.provider": KW, "shipper.remediation": KW,
    "shipper.verdicts.remediation": KW, "shipper.verdicts.benchmark": KW,
    **{f"shipper.engine.{name}": KW for name in ("id", "version", "config_file", "listeners", "tcp_listeners",
                                                 "log_driver", "authorization_plugins", "problems")},
    "shipper.engine.pid": "long",
    **{f"shipper.engine.{name}": "boolean" for name in (
        "tls", "tls_verify", "tcp_without_tls", "tcp_tls_without_verify", "userns_remap", "rootless", "live_restore",
        "icc_on_default_bridge", "no_new_privileges", "log_size_limited", "authorization", "experimental",
        "socket_world_writable", "socket_foreign_group_writable", "sockets.world_writable",
        "sockets.foreign_group_writable", "root_dir.too_open")},
    **{f"shipper.engine.{where}.{name}": KW for where in ("sockets", "root_dir")
       for name in ("path", "mode", "owner", "group")},
    **{f"shipper.engine.{where}.{name}": "long" for where in ("sockets", "root_dir") for name in ("uid", "gid")},
    **{f"shipper.image.{name}": KW for name in ("reference", "registry", "repo_digests", "id", "user")},
    **{f"shipper.image.{name}": "boolean" for name in ("pinned", "registry_allowed", "runs_as_root", "healthcheck",
                                                       "outdated")},
    "shipper.image.created": "date", "shipper.image.age_days": "float",
    "vulnerability.id": KW, "vulnerability.severity": KW, "vulnerability.description": {"type": KW, "ignore_above": 8191},  # ECS: keyword
    "vulnerability.reference": KW, "vulnerability.scanner.vendor": KW, "vulnerability.category": KW,
    "vulnerability.enumeration": KW, "vulnerability.report_id": KW, "vulnerability.classification": KW,
    "vulnerability.score.base": "float", "vulnerability.score.version": KW,
    "package.version": KW, "package.type": KW, "package.reference": KW,
    **{f"shipper.vulnerability.{name}": KW for name in ("fixed_version", "status", "target", "image.id", "image.name",
                                                        "image.repo_digests", "report")},
    "shipper.vulnerability.fix_available": "boolean", "shipper.vulnerability.scanned_at": "date",
}
# ECS fields the shipper writes, dotted name -> type. Everything else dynamic: strings as keyword.
EVENT_FIELDS: dict[str, Any] = {
    "@timestamp": "date_nanos",
    "message": "match_only_text",
    "tags": KW,
    "shipper.log.stream": KW,
    "labels": "flattened",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    "ecs.version": KW,
    "event.kind": KW, "event.category": KW, "event.type": KW, "event.action": KW,
    "event.dataset": KW, "event.module": KW, "event.outcome": KW, "event.reason": KW,
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
    "log.file.path": KW, "shipper.log.offset": "long", "shipper.log.flags": KW, "log.level": KW,
    "process.pid": "long", "process.name": KW, "process.executable": KW,
    "process.command_line": "wildcard", "process.args": KW, "process.exit_code": "long",
    "process.interactive": "boolean", "process.user.name": KW, "process.working_directory": KW,
    "shipper.process.host_pid": "long", "process.start": "date", "process.user.id": KW,
    "shipper.process.upper_layer": "boolean", "shipper.process.memfd": "boolean", "shipper.process.executable_deleted": "boolean",
    "shipper.process.stdin_socket": "boolean", "shipper.process.stdout_socket": "boolean", "shipper.process.stderr_socket": "boolean",
    "process.parent.pid": "long", "process.parent.name": KW, "process.parent.executable": KW,
    "process.parent.command_line": "wildcard",
    "source.ip": "ip", "source.port": "long", "destination.ip": "ip", "destination.port": "long",
    "network.transport": KW, "network.type": KW, "network.direction": KW, "shipper.network.state": KW,
    "file.path": KW, "file.name": KW, "file.directory": KW, "file.extension": KW, "shipper.file.previous_path": KW,
    "file.type": KW, "file.size": "long", "file.mode": KW, "file.uid": KW, "file.gid": KW, "file.mtime": "date",
    "file.target_path": KW, "shipper.file.executable": "boolean", "file.hash.sha256": KW,
    "container.cpu.usage": "float", "shipper.container.cpu.cores": "float", "shipper.container.cpu.limit_cores": "float",
    "shipper.host.cpu_idle_cores": "float",
    "shipper.process.script.path": KW, "shipper.process.script.name": KW, "shipper.process.script.directory": KW,
    "shipper.process.script.upper_layer": "boolean", "shipper.process.script.hash.sha256": KW,
    "shipper.process.login_uid": "long",
    "shipper.file.setuid": "boolean", "shipper.file.setgid": "boolean", "shipper.file.during_startup": "boolean",
    "shipper.network.socket_family": KW,
    "shipper.container.memory.bytes": "long", "shipper.container.memory.limit": "long", "shipper.container.pids": "long",
    "container.network.ingress.bytes": "long", "shipper.container.network.ingress.rate": "float",
    "container.network.egress.bytes": "long", "shipper.container.network.egress.rate": "float",
    "container.disk.read.bytes": "long", "shipper.container.disk.read.rate": "float",
    "container.disk.write.bytes": "long", "shipper.container.disk.write.rate": "float",
    "shipper.anomaly.score": "float", "shipper.anomaly.model": KW,
    **{f"shipper.anomaly.features.{name}": "float" for name in ANOMALY_FEATURES},
    "user.name": KW,
    "package.name": KW,
    "error.type": KW, "error.message": "match_only_text", "error.code": KW,
    "rule.id": KW, "rule.name": KW,
    "threat.framework": KW, "threat.tactic.id": KW, "threat.tactic.name": KW,
    "threat.technique.id": KW, "threat.technique.name": KW,
    "shipper.verdicts.rule.id": KW, "shipper.verdicts.rule.name": KW,
    "shipper.verdicts.severity": "long", "shipper.verdicts.level": KW, "shipper.verdicts.reason": KW,
    "shipper.verdicts.tactic": KW, "shipper.verdicts.technique": KW, "shipper.verdicts.risk_score": "float",
    "shipper.verdicts.suppressed": "long", "shipper.exec.health_check": "boolean",
    "shipper.exec.id": KW, "shipper.exec.tty": "boolean", "shipper.exec.privileged": "boolean", "shipper.exec.user": KW,
    "shipper.deadletter.index": KW,
    "shipper.deadletter.error": {"type": "object", "enabled": False},
    "shipper.docker.event.type": KW, "shipper.docker.event.action": KW, "shipper.docker.event.attributes": "flattened",
    "shipper.docker.signal": KW, "shipper.docker.old_name": KW, "shipper.docker.health_status": KW,
    **HOST_AUDIT_FIELDS,
}
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
        name = f"logs-{dataset}"
        client.indices.put_index_template(
            name=name, index_patterns=[f"logs-{dataset}-*"], data_stream={}, priority=PRIORITY,
            composed_of=[component, "shipper@mappings"],
            meta={"managed_by": "shipper", "description": f"shipper {dataset} data streams"},
        )
        report.installed.append(f"index template {name} (data streams logs-{dataset}-*)")
    return report
