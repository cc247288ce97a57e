"""From `Event` to the ECS document indexed in Elasticsearch, encoded for a sink.

Every event is one document in the data stream `logs-shipper.events-<namespace>`.
Container metadata and the host/agent fields are joined here, once per event,
from objects built once per container and once per process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from . import __version__
from .ecs import ECS_VERSION, relocate
from .model import Event
from .sinks.base import Documents
from .timefmt import now_iso

EVENTS_DATASET = "shipper.events"
DEADLETTER_DATASET = "shipper.deadletter"


def events_stream(namespace: str) -> str:
    return f"logs-{EVENTS_DATASET}-{namespace}"


def deadletter_stream(namespace: str) -> str:
    return f"logs-{DEADLETTER_DATASET}-{namespace}"


def host_fields(namespace: str, dataset: str = EVENTS_DATASET) -> dict[str, Any]:
    hostname = socket.gethostname()
    return {
        "host": {"name": hostname, "hostname": hostname},
        "agent": {"type": "shipper", "name": hostname, "version": __version__},
        "ecs": {"version": ECS_VERSION},
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": namespace},
    }


ContainerLookup = Callable[[str], Any]  # container id -> ContainerMeta | None


def container_fields(event: Event, containers: ContainerLookup | None) -> dict[str, Any]:
    """The `container` object of an event (a copy): the shared metadata, with the event's own
    container fields merged over it. Custom fields in it go to shipper.container (ecs.py)."""
    meta = containers(event.container_id) if containers and event.container_id else None
    base = meta.ecs if meta is not None else {"id": event.container_id}
    return {**base, **(event.fields.get("container") or {})}


def join_container(doc: dict[str, Any], event: Event, containers: ContainerLookup | None) -> None:
    """Set `doc`'s container object; the metadata's custom fields (security audit, restart
    count, compose) join shipper.container, under the event's own. Shared dicts stay as they were."""
    moved = relocate({"container": container_fields(event, containers)})
    doc["container"] = moved.pop("container", {})
    if moved:
        shipper = doc.get("shipper") or {}
        joined = dict(moved["shipper"]["container"])
        for key, value in (shipper.get("container") or {}).items():  # the event's own win, object by object
            joined[key] = {**joined[key], **value} if isinstance(value, dict) and isinstance(joined.get(key), dict) else value
        doc["shipper"] = {**shipper, "container": joined}


class DocumentWriter:
    """Builds the documents of one namespace."""

    def __init__(self, namespace: str, containers: ContainerLookup | None = None):
        self.namespace = namespace
        self.index = events_stream(namespace)
        self._static = host_fields(namespace)
        self._containers = containers

    def document(self, event: Event) -> dict[str, Any]:
        doc = {"@timestamp": event.timestamp, **event.fields, **self._static}
        if event.container_id:
            join_container(doc, event, self._containers)
        if event.verdicts:
            _add_verdicts(doc, event)
        return doc

    def encode(self, events: Iterable[Event]) -> Documents:
        """Each event's `_id` and its document as JSON, for a sink."""
        dumps, document = orjson.dumps, self.document
        encoded = Documents()
        for event in events:
            encoded.ids.append(event.id.encode())
            encoded.bodies.append(dumps(document(event)))
        return encoded


def _add_verdicts(doc: dict[str, Any], event: Event) -> None:
    verdicts = sorted(event.verdicts, key=lambda v: (-v.severity, v.rule_id))
    top = verdicts[0]
    doc["event"] = {
        **doc.get("event", {}),
        "kind": "alert",
        "severity": int(top.severity),
        "risk_score": top.risk_score if top.risk_score is not None else float(top.severity),
        "reason": top.reason,
    }
    doc["rule"] = {"id": top.rule_id, "name": top.rule_name}
    if top.tactic or top.technique:
        threat: dict[str, Any] = {"framework": "MITRE ATT&CK"}
        if top.tactic:
            tactic_id, _, tactic_name = top.tactic.partition(" ")
            threat["tactic"] = {"id": tactic_id, "name": tactic_name or tactic_id}
        if top.technique:
            threat["technique"] = {"id": top.technique}
        doc["threat"] = threat
    doc.setdefault("shipper", {})
    doc["shipper"] = {**doc["shipper"], "verdicts": [v.as_dict() for v in verdicts]}
    if top.remediation:
        doc["shipper"]["remediation"] = top.remediation


def deadletter_document(original: bytes, status: int, error: dict[str, Any], namespace: str, index: str) -> dict[str, Any]:
    """What Elasticsearch refused for good, kept escaped (as a string) with the reason."""
    try:
        timestamp = orjson.loads(original).get("@timestamp")
    except orjson.JSONDecodeError:
        timestamp = None
    doc = {
        "@timestamp": timestamp,
        "message": f"Elasticsearch refused a document: {error.get('type', 'error')}: {error.get('reason', '')}"[:2000],
        "event": {"kind": "pipeline_error", "dataset": DEADLETTER_DATASET, "original": original.decode("utf-8", "replace")},
        "error": {"type": error.get("type"), "message": error.get("reason"), "code": str(status)},
        "shipper": {"deadletter": {"index": index, "error": error}},
        **host_fields(namespace, DEADLETTER_DATASET),
    }
    if not doc["@timestamp"]:
        doc["@timestamp"] = now_iso()
    return doc
