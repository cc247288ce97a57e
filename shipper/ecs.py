"""Where the fields ECS does not define live: under `shipper.*`, never inside an ECS field set.

The sources describe what they see in the terms closest to it (a process's host pid next
to its pid, a container's capabilities next to its id); this is the one place that moves
what ECS 8.11 does not define to `shipper.<same path>`, before detection, so that rules,
detectors, documents and Kibana all use the same names. tests/unit/test_ecs.py checks
every field of every document kind, and of the index template, against ECS itself.
"""

from __future__ import annotations

from typing import Any

ECS_VERSION = "8.11.0"

# dotted name as a source writes it -> dotted name in the document
RELOCATED: dict[str, str] = {
    "stream": "shipper.log.stream",
    "log.offset": "shipper.log.offset",
    "log.flags": "shipper.log.flags",
    "container.security": "shipper.container.security",
    "container.restart_count": "shipper.container.restart_count",
    "container.compose": "shipper.container.compose",
    "container.cpu.cores": "shipper.container.cpu.cores",
    "container.cpu.limit_cores": "shipper.container.cpu.limit_cores",
    "container.memory.usage": "shipper.container.memory.bytes",
    "container.memory.limit": "shipper.container.memory.limit",
    "container.pids": "shipper.container.pids",
    "container.network.ingress.rate": "shipper.container.network.ingress.rate",
    "container.network.egress.rate": "shipper.container.network.egress.rate",
    "container.disk.read.rate": "shipper.container.disk.read.rate",
    "container.disk.write.rate": "shipper.container.disk.write.rate",
    "process.host_pid": "shipper.process.host_pid",
    "process.parent.host_pid": "shipper.process.parent.host_pid",
    "process.upper_layer": "shipper.process.upper_layer",
    "process.memfd": "shipper.process.memfd",
    "process.executable_deleted": "shipper.process.executable_deleted",
    "process.stdin_socket": "shipper.process.stdin_socket",
    "process.stdout_socket": "shipper.process.stdout_socket",
    "process.stderr_socket": "shipper.process.stderr_socket",
    "network.state": "shipper.network.state",
    "file.previous_path": "shipper.file.previous_path",
    "file.executable": "shipper.file.executable",
    "docker": "shipper.docker",
}
# (ECS's container.memory.usage is a ratio; the bytes the stats source reads are not one.)

_BY_ROOT: dict[str, list[tuple[list[str], list[str]]]] = {}
for _old, _new in RELOCATED.items():
    _path = _old.split(".")
    _BY_ROOT.setdefault(_path[0], []).append((_path, _new.split(".")))


def relocate(fields: dict[str, Any]) -> dict[str, Any]:
    """Move, in place, every field of RELOCATED that `fields` holds; returns `fields`."""
    for root in _BY_ROOT.keys() & fields.keys():
        for old, new in _BY_ROOT[root]:
            parent: Any = fields
            for key in old[:-1]:
                parent = parent.get(key)
                if not isinstance(parent, dict):
                    break
            else:
                if old[-1] in parent:
                    _put(fields, new, parent.pop(old[-1]))
                    _prune(fields, old[:-1])
    return fields


def _put(fields: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        fields = fields.setdefault(key, {})
    existing = fields.get(path[-1])
    # what is already there (an event's own fields) wins over what joins it (container metadata)
    fields[path[-1]] = {**value, **existing} if isinstance(existing, dict) and isinstance(value, dict) else value


def _prune(fields: dict[str, Any], path: list[str]) -> None:
    """Drop the objects the move left empty, innermost first."""
    for depth in range(len(path), 0, -1):
        parent = fields
        for key in path[:depth - 1]:
            parent = parent[key]
        if parent.get(path[depth - 1]) == {}:
            del parent[path[depth - 1]]
        else:
            return
