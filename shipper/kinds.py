"""The kinds of event the shipper produces, declared once.

A `Source` is where events come from: its name is `Event.source`, its dataset is the
documents' `event.dataset`, and `fields` are the index-template mappings of what its
documents carry beyond the fields every event has (those stay in es_setup.py). A
`Category` is a Sigma `logsource.category`: which events its rules judge (one source,
optionally only some `event.action` values), which other categories' rules judge those
events too, and the columns of its Kibana searches.

Everything else is derived from here: the engine's routing (detect/engine.py), the
Kibana scopes and columns (kibana.py), setup's template mapping (es_setup.py), the
fields `shipper rules lint` knows a category carries (detect/lint.py), and the sources'
`event.dataset`. A unit test checks the lists in the README and the example config.

Adding a kind of event means declaring its Source and Category here, and writing the
source that produces it (which takes its name and dataset from here). Nothing else in
the code names it; the README and the example config list it for users, and a unit
test (tests/unit/test_kinds.py) fails until they do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KW = "keyword"


@dataclass(frozen=True, eq=False)  # one object per source: compared and hashed by identity
class Source:
    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    # the stateful detectors see all of its events (others only once a rule flagged them)
    sampled: bool = False
    # `fields` lists everything its documents carry, so lint can warn on a rule testing anything else
    complete: bool = True

    @property
    def dataset(self) -> str:
        return f"shipper.{self.name}"


@dataclass(frozen=True)
class Category:
    name: str
    source: Source
    # only the source's events with these event.action values; () = the source's events no other category claims
    actions: tuple[str, ...] = ()
    # the rules of these categories judge its events too
    also_judged_by: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    # each event is a whole state (an audit, a report), never a repeat to throttle
    snapshot: bool = False


_PROCESS = {"process.pid": "long", "process.name": KW, "process.executable": KW, "process.command_line": "wildcard"}

DOCKER_LOGS = Source("docker_logs", {
    "shipper.log.stream": KW, "shipper.log.driver": KW, "log.file.path": KW, "shipper.log.offset": "long",
    "shipper.log.flags": KW,
})
DOCKER_EVENTS = Source("docker_events", {
    "process.exit_code": "long",
    "shipper.exec.health_check": "boolean", "shipper.exec.id": KW, "shipper.exec.tty": "boolean",
    "shipper.exec.privileged": "boolean", "shipper.exec.user": KW,
    "shipper.docker.event.type": KW, "shipper.docker.event.action": KW, "shipper.docker.event.attributes": "flattened",
    "shipper.docker.signal": KW, "shipper.docker.old_name": KW, "shipper.docker.health_status": KW,
    "package.name": KW,
    # an image's provenance, on pulls and container starts
    **{f"shipper.image.{name}": KW for name in ("reference", "registry", "repo_digests", "id", "user")},
    **{f"shipper.image.{name}": "boolean" for name in ("pinned", "registry_allowed", "runs_as_root", "healthcheck",
                                                       "outdated")},
    "shipper.image.created": "date", "shipper.image.age_days": "float",
}, complete=False)  # the Engine API's shapes: not checked field by field
PROCESSES = Source("processes", {
    **_PROCESS,
    "process.args": KW, "process.interactive": "boolean", "process.user.name": KW, "process.working_directory": KW,
    "shipper.process.host_pid": "long", "process.start": "date", "process.user.id": KW,
    "shipper.process.upper_layer": "boolean", "shipper.process.memfd": "boolean",
    "shipper.process.executable_deleted": "boolean", "shipper.process.stdin_socket": "boolean",
    "shipper.process.stdout_socket": "boolean", "shipper.process.stderr_socket": "boolean",
    "process.parent.pid": "long", "process.parent.name": KW, "process.parent.executable": KW,
    "process.parent.command_line": "wildcard",
    "shipper.process.script.path": KW, "shipper.process.script.name": KW, "shipper.process.script.directory": KW,
    "shipper.process.script.upper_layer": "boolean", "shipper.process.script.hash.sha256": KW,
    "shipper.process.login_uid": "long",
}, sampled=True)
NETWORK = Source("network", {
    **_PROCESS,  # the owning process, where it is known
    "shipper.process.host_pid": "long",
    "source.ip": "ip", "source.port": "long", "destination.ip": "ip", "destination.port": "long",
    "network.transport": KW, "network.type": KW, "network.direction": KW, "shipper.network.state": KW,
    "shipper.network.socket_family": KW,
}, sampled=True)
FILES = Source("files", {
    "file.path": KW, "file.name": KW, "file.directory": KW, "file.extension": KW, "shipper.file.previous_path": KW,
    "file.type": KW, "file.size": "long", "file.mode": KW, "file.uid": KW, "file.gid": KW, "file.mtime": "date",
    "file.target_path": KW, "shipper.file.executable": "boolean", "file.hash.sha256": KW,
    "shipper.file.setuid": "boolean", "shipper.file.setgid": "boolean", "shipper.file.during_startup": "boolean",
    "shipper.file.entries_gone": "boolean",
}, sampled=True)
STATS = Source("stats", {
    "container.cpu.usage": "float", "shipper.container.cpu.cores": "float", "shipper.container.cpu.limit_cores": "float",
    "shipper.host.cpu_idle_cores": "float",
    "shipper.container.memory.bytes": "long", "shipper.container.memory.limit": "long", "shipper.container.pids": "long",
    "container.network.ingress.bytes": "long", "shipper.container.network.ingress.rate": "float",
    "container.network.egress.bytes": "long", "shipper.container.network.egress.rate": "float",
    "container.disk.read.bytes": "long", "shipper.container.disk.read.rate": "float",
    "container.disk.write.bytes": "long", "shipper.container.disk.write.rate": "float",
}, sampled=True)
HOST_CONFIG = Source("host_config", {
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
})
VULNERABILITY = Source("vulnerability", {
    "vulnerability.id": KW, "vulnerability.severity": KW,
    "vulnerability.description": {"type": KW, "ignore_above": 8191},  # ECS: keyword
    "vulnerability.reference": KW, "vulnerability.scanner.vendor": KW, "vulnerability.category": KW,
    "vulnerability.enumeration": KW, "vulnerability.report_id": KW, "vulnerability.classification": KW,
    "vulnerability.score.base": "float", "vulnerability.score.version": KW,
    "package.name": KW, "package.version": KW, "package.type": KW, "package.reference": KW,
    **{f"shipper.vulnerability.{name}": KW for name in ("fixed_version", "status", "target", "image.id", "image.name",
                                                        "image.repo_digests", "report")},
    "shipper.vulnerability.fix_available": "boolean", "shipper.vulnerability.scanned_at": "date",
})
SOURCES: tuple[Source, ...] = (DOCKER_LOGS, DOCKER_EVENTS, PROCESSES, NETWORK, FILES, STATS, HOST_CONFIG, VULNERABILITY)

# The order matters where a source's events are split by action: an action-less category takes
# what its siblings leave, and Kibana lists the actions in this order.
CONTAINER_LOG = Category("container_log", DOCKER_LOGS, columns=("container.name", "message"))
CONTAINER_CONFIG = Category(
    "container_config", DOCKER_EVENTS, ("start",), also_judged_by=("image_config",),
    columns=("container.name", "container.image.name", "shipper.container.security.user", "event.reason"))
CONTAINER_EXEC = Category(
    "container_exec", DOCKER_EVENTS, ("exec_start",), also_judged_by=("process_creation",),
    columns=("container.name", "process.command_line", "process.user.name", "shipper.exec.tty"))
CONTAINER_EVENT = Category("container_event", DOCKER_EVENTS, columns=("container.name", "event.action", "message"))
IMAGE_CONFIG = Category(
    "image_config", DOCKER_EVENTS, ("pull",),
    columns=("container.name", "shipper.image.reference", "shipper.image.registry", "event.reason"))
PROCESS_CREATION = Category(
    "process_creation", PROCESSES,
    columns=("container.name", "process.command_line", "process.parent.name", "process.user.name"))
NETWORK_CONNECTION = Category(
    "network_connection", NETWORK, columns=("container.name", "process.name", "destination.ip", "destination.port"))
FILE_EVENT = Category("file_event", FILES, columns=("container.name", "event.action", "file.path", "file.hash.sha256"))
CONTAINER_STATS = Category(
    "container_stats", STATS,
    columns=("container.name", "shipper.container.cpu.cores", "shipper.container.pids", "shipper.anomaly.score"))
HOST_CONFIG_CATEGORY = Category(
    "host_config", HOST_CONFIG, snapshot=True,
    columns=("host.name", "shipper.engine.listeners", "event.reason", "shipper.remediation"))
VULNERABILITY_CATEGORY = Category(
    "vulnerability", VULNERABILITY, snapshot=True,
    columns=("container.name", "vulnerability.id", "vulnerability.severity", "package.name", "package.version",
             "shipper.vulnerability.fixed_version"))
CATEGORIES: tuple[Category, ...] = (
    CONTAINER_LOG, CONTAINER_CONFIG, CONTAINER_EXEC, CONTAINER_EVENT, IMAGE_CONFIG, HOST_CONFIG_CATEGORY,
    VULNERABILITY_CATEGORY, PROCESS_CREATION, NETWORK_CONNECTION, FILE_EVENT, CONTAINER_STATS)

CATEGORY: dict[str, Category] = {c.name: c for c in CATEGORIES}
SOURCE: dict[str, Source] = {s.name: s for s in SOURCES}
SOURCE_OF_DATASET: dict[str, str] = {s.dataset: s.name for s in SOURCES}
_BY_ACTION: dict[tuple[str, str], Category] = {(c.source.name, a): c for c in CATEGORIES for a in c.actions}
_REST: dict[str, Category] = {c.source.name: c for c in CATEGORIES if not c.actions}


def category_name(source: str, action: str | None) -> str:
    """The category of an event of `source` with `event.action` `action`; an unknown source is its own."""
    category = _BY_ACTION.get((source, action or "")) or _REST.get(source)
    return category.name if category is not None else source


def judging(name: str) -> tuple[str, ...]:
    """The categories whose rules judge an event of category `name`: its own first."""
    category = CATEGORY.get(name)
    return (name, *category.also_judged_by) if category is not None else (name,)


def scope(category: Category) -> str:
    """A Lucene query for the events `category`'s rules judge: its own, and those of the
    categories it also judges, one clause per source."""
    judged = [category] + [c for c in CATEGORIES if category.name in c.also_judged_by]
    sources = list(dict.fromkeys(c.source for c in judged))
    clauses = [_selector(source, [c for c in judged if c.source == source]) for source in sources]
    if len(clauses) == 1:
        return clauses[0]
    return " OR ".join(f"({clause})" if " AND " in clause else clause for clause in clauses)


def _selector(source: Source, chosen: list[Category]) -> str:
    siblings = [c for c in CATEGORIES if c.source == source]
    dataset = f"event.dataset:{source.dataset}"
    if len(siblings) == 1:
        return dataset
    if all(c.actions for c in chosen):
        return f"{dataset} AND event.action:{_any([a for c in siblings if c in chosen for a in c.actions])}"
    left = [a for c in siblings if c not in chosen for a in c.actions]
    return f"{dataset} AND NOT event.action:{_any(left)}" if left else dataset


def _any(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "(" + " OR ".join(values) + ")"


def template_fields(sources: tuple[Source, ...] = SOURCES) -> dict[str, Any]:
    """Every source's fields, for the index template; a field two sources carry must have one type."""
    merged: dict[str, Any] = {}
    for source in sources:
        for name, spec in source.fields.items():
            if merged.setdefault(name, spec) != spec:
                raise ValueError(f"{name} is {merged[name]} in one source and {spec} in {source.name}")
    return merged


def carried(category: Category) -> frozenset[str] | None:
    """The fields the events of `category` carry beyond the common ones, or None where that is not known."""
    return frozenset(category.source.fields) if category.source.complete else None
