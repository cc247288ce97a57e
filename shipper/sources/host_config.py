"""Source `host_config`: the Docker engine's own configuration, audited at start, every
`interval` seconds and whenever the engine reloads its configuration (SIGHUP: a `daemon reload` event)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import docker
import docker.errors

from .. import hostaudit, kinds
from ..model import Event, event_id
from .base import Batch, Emit, Source, close_quietly, iso_time

log = logging.getLogger(__name__)

NAME = kinds.HOST_CONFIG.name


def audit_event(client: docker.DockerClient, proc_root: str = "/proc", config_file: str | None = None,
                now: float | None = None) -> Event:
    """One audit of the engine `client` talks to, as an event the host_config rules judge."""
    info = client.info()
    engine = hostaudit.engine_fields(hostaudit.gather(info, proc_root, config_file))
    now = time.time() if now is None else now
    return Event(
        id=event_id(NAME, info.get("ID"), now),
        timestamp=iso_time(now),
        source=NAME,
        fields={
            "event": {"kind": "event", "module": "docker", "dataset": kinds.HOST_CONFIG.dataset, "category": ["configuration"],
                      "type": ["info"], "action": "engine-audit"},
            "message": hostaudit.summary(engine),
            "shipper": {"engine": engine},
        },
    )


class HostConfigSource(Source):
    name = NAME

    def __init__(self, client: docker.DockerClient, interval: float = 3600.0, proc_root: str = "/proc",
                 config_file: str | None = None):
        self.client = client
        self.interval = interval
        self.proc_root = proc_root
        self.config_file = config_file
        self._closed = threading.Event()
        self._due = threading.Event()  # set by a reload: audit now
        self._stream: Any = None  # the engine's event stream, closed from another thread
        self.audits = 0

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        watcher = threading.Thread(target=self._watch_reloads, name="host-config-reloads", daemon=True)
        watcher.start()
        while not self._closed.is_set():
            try:
                emit(Batch(self.name, [audit_event(self.client, self.proc_root, self.config_file)]))
                self.audits += 1
            except docker.errors.DockerException as exc:
                log.warning("host_config: the engine did not answer, auditing again later", extra={"error": str(exc)})
            self._due.wait(self.interval)
            self._due.clear()

    def _watch_reloads(self) -> None:
        while not self._closed.is_set():
            try:
                self._stream = self.client.events(decode=True, filters={"type": "daemon", "event": "reload"})
                for _ in self._stream:
                    self._due.set()
            except Exception as exc:
                if self._closed.is_set():
                    return
                log.warning("host_config: engine event stream broke, reconnecting", extra={"error": str(exc)})
            self._closed.wait(1.0)

    def close(self) -> None:
        self._closed.set()
        self._due.set()
        close_quietly(self._stream)

    def status(self) -> dict[str, Any]:
        return {"host_audits": self.audits}
