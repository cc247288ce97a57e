"""Source `docker_events`: what the engine reports about containers and images.

Lifecycle (create, start, die with its exit code, oom, kill, destroy, rename,
health status), exec sessions (command, tty, user, privileged, from exec
inspect), image pull/delete, and the rest as generic events. Resumes from the
last acknowledged event time; replayed events keep their ids (409, not duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import docker
import docker.errors

from .. import kinds
from ..containers import ContainerCache
from ..images import ImageChecker
from ..model import Event, event_id
from ..timefmt import NANOS, nano_time
from .base import Batch, Emit, Source, close_quietly

log = logging.getLogger(__name__)

POSITION_KEY = "engine"

# docker action -> (ECS event.category, event.type)
_CONTAINER_KINDS: dict[str, tuple[list[str], list[str]]] = {
    # ECS: a category's types must be among its expected_event_types (process: access,
    # change, end, info, start), so creating and removing a container is configuration
    "create": (["configuration"], ["creation"]),
    "start": (["process"], ["start"]),
    "restart": (["process"], ["start"]),
    "die": (["process"], ["end"]),
    "stop": (["process"], ["end"]),
    "kill": (["process"], ["end"]),
    "oom": (["process"], ["end"]),
    "destroy": (["configuration"], ["deletion"]),
    "rename": (["process"], ["change"]),
    "update": (["configuration"], ["change"]),
    "health_status": (["process"], ["info"]),
    "exec_create": (["process"], ["info"]),
    "exec_start": (["process"], ["start"]),
    "exec_die": (["process"], ["end"]),
    "extract-to-dir": (["file"], ["creation"]),  # docker cp into the container
    "archive-path": (["file"], ["access"]),  # docker cp out of the container
}
_IMAGE_KINDS = {"pull": ["installation"], "delete": ["deletion"], "untag": ["deletion"], "tag": ["change"],
                "import": ["installation"], "load": ["installation"], "push": ["info"], "save": ["access"]}


def _timestamp(event: dict[str, Any]) -> str:
    return nano_time(int(event.get("timeNano") or int(event.get("time", 0)) * NANOS))


class DockerEventsSource(Source):
    name = kinds.DOCKER_EVENTS.name

    def __init__(self, client: docker.DockerClient, cache: ContainerCache, images: ImageChecker | None = None):
        self.client = client
        self.cache = cache
        self.images = images  # provenance facts of started and pulled images (None: not checked)
        self._closed = threading.Event()
        self._stream: Any = None  # the engine's event stream, closed from another thread
        self.seen = 0

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        since_nano = (positions.get(POSITION_KEY) or {}).get("time_nano")
        since: float = since_nano / 1e9 if since_nano else time.time()
        while not self._closed.is_set():
            try:
                self._stream = self.client.events(decode=True, since=since)
                for raw in self._stream:
                    since = raw.get("time", since)
                    self.cache.on_engine_event(raw)
                    event = self.to_event(raw)
                    self.seen += 1
                    emit(Batch(self.name, [event], {POSITION_KEY: {"time_nano": raw.get("timeNano")}}))
            except Exception as exc:
                if self._closed.is_set():
                    return
                log.warning("docker_events: event stream broke, reconnecting", extra={"error": str(exc)})
                self._closed.wait(1.0)

    def close(self) -> None:
        self._closed.set()
        close_quietly(self._stream)

    def status(self) -> dict[str, Any]:
        return {"engine_events": self.seen}

    # ------------------------------------------------------------ mapping

    def to_event(self, raw: dict[str, Any]) -> Event:
        kind = raw.get("Type", "")
        full_action = raw.get("Action", "")
        action, _, detail = full_action.partition(": ")
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        fields: dict[str, Any] = {
            "event": {"kind": "event", "module": "docker", "dataset": kinds.DOCKER_EVENTS.dataset, "action": action},
            "message": f"{kind} {full_action} {attributes.get('name', actor.get('ID', ''))}".strip(),
            "docker": {"event": {"type": kind, "action": full_action, "attributes": attributes}},
        }
        container_id = None
        if kind == "container":
            container_id = actor.get("ID")
            category, types = _CONTAINER_KINDS.get(action, (["process"], ["info"]))
            fields["event"].update(category=category, type=types)
            self._container_details(action, detail, attributes, fields, container_id)
        elif kind == "image":
            fields["event"].update(category=["package"], type=_IMAGE_KINDS.get(action, ["info"]))
            fields["package"] = {"name": attributes.get("name") or actor.get("ID", "")}
            if action == "pull" and self.images is not None:
                fields["shipper"] = {"image": self.images.facts(actor.get("ID", ""))}
        else:
            fields["event"].update(category=["host"], type=["info"])
        return Event(
            id=event_id("docker_events", raw.get("timeNano"), kind, actor.get("ID"), full_action),
            timestamp=_timestamp(raw),
            source=self.name,
            fields=fields,
            container_id=container_id,
            raw=raw,
        )

    def _container_details(self, action: str, detail: str, attributes: dict, fields: dict[str, Any],
                           container_id: str | None = None) -> None:
        if action == "start" and container_id:
            meta = self.cache.get(container_id)
            if meta is not None:
                fields["container"] = {"security": meta.audit}
                if self.images is not None:
                    fields["shipper"] = {"image": self.images.facts(meta.image, meta.attrs.get("Image"))}
        elif action in ("die", "exec_die") and "exitCode" in attributes:
            fields["process"] = {"exit_code": int(attributes["exitCode"])}
        elif action == "kill" and "signal" in attributes:
            fields["docker"]["signal"] = attributes["signal"]
        elif action == "rename" and "oldName" in attributes:
            fields["docker"]["old_name"] = attributes["oldName"].lstrip("/")
        elif action == "health_status":
            fields["docker"]["health_status"] = detail
        elif action in ("exec_create", "exec_start"):
            words = detail.split()  # the engine joins argv with spaces: the exec inspect below has the real argv
            fields["process"] = {"command_line": detail, "args": words,
                                 "name": words[0].rsplit("/", 1)[-1] if words else ""}
            exec_id = attributes.get("execID")
            if exec_id:
                self._exec_details(exec_id, fields, container_id)

    def _exec_details(self, exec_id: str, fields: dict[str, Any], container_id: str | None) -> None:
        try:
            info = self.client.api.exec_inspect(exec_id)
        except docker.errors.APIError:
            return  # the exec is already gone; the command line is all we have
        config = info.get("ProcessConfig") or {}
        process = fields["process"]
        process["executable"] = config.get("entrypoint")
        process["args"] = [config.get("entrypoint", "")] + list(config.get("arguments") or [])
        process["name"] = (config.get("entrypoint") or "").rsplit("/", 1)[-1] or process["name"]
        process["interactive"] = bool(config.get("tty"))
        meta = self.cache.get(container_id) if container_id else None
        container_config = (meta.attrs.get("Config") or {}) if meta else {}
        user = config.get("user") or ""
        # without -u an exec runs as the container's user
        effective = user or container_config.get("User") or "root"
        process["user"] = {"name": "root" if effective.split(":")[0] in ("root", "0") else effective}
        health = (container_config.get("Healthcheck") or {}).get("Test") or []
        command = [config.get("entrypoint", "")] + list(config.get("arguments") or [])
        fields["shipper"] = {"exec": {
            "id": exec_id,
            "tty": bool(config.get("tty")),
            "privileged": bool(config.get("privileged")),
            "user": user,
            "health_check": _is_health_check(health, command),
        }}


def _is_health_check(test: list[str], command: list[str]) -> bool:
    """Docker runs a HEALTHCHECK as an exec: CMD runs the words as given, CMD-SHELL under `/bin/sh -c`."""
    if not test or test[0] == "NONE":
        return False
    if test[0] == "CMD":
        return command == test[1:]
    if test[0] == "CMD-SHELL":
        return command == ["/bin/sh", "-c", *test[1:]]
    return False
