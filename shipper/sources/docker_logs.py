"""Source `docker_logs`: every line every selected container writes.

Two modes:
- `file`: read `<root>/containers/<id>/<id>-json.log*` directly (fast, exact
  positions, survives rotation); the default when that directory is readable.
- `api`: the Engine API log stream (remote engines, other log drivers),
  resumed with `since=` the last acknowledged timestamp.

Containers are discovered through the engine's event stream (a new container is
followed as soon as it is created), and stopped containers are drained.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import datetime
from typing import Any

import docker
import docker.errors

from ..containers import ContainerCache, ContainerMeta, Selector
from ..model import Event, IdPrefix, event_id
from .base import Batch, Emit, Source, close_quietly
from .fastpath import JsonFileDocuments
from .jsonfile import JsonFileChain, Line

log = logging.getLogger(__name__)

# Shared, never mutated: the document writer copies before changing anything.
# no event.category: ECS has none for an application's own log line
LOG_EVENT = {"kind": "event", "dataset": "shipper.docker_logs", "module": "docker"}
FOLLOW_ACTIONS = {"create", "start", "restart"}


def _line_event(container_id: str, ids: IdPrefix, path: str, line: Line) -> Event:
    # the hot path: written where ecs.py would move them (shipper.log.*), not moved per line
    own: dict[str, Any] = {"stream": line.stream, "offset": line.offset}
    fields: dict[str, Any] = {
        "message": line.text,
        "event": LOG_EVENT,
        "log": {"file": {"path": path}},
        "shipper": {"log": own},
    }
    if line.truncated or line.malformed:
        own["flags"] = ["truncated"] if line.truncated else ["malformed"]
        fields["tags"] = own["flags"]
    return Event(
        # Not the inode: inodes are reused once Docker deletes a rotated file.
        id=ids.id(line.time, line.offset),
        timestamp=line.time or _now(),
        source="docker_logs",
        fields=fields,
        container_id=container_id,
    )


def template_event(container_id: str, path: str, time_: str, stream: str, text: str, offset: int) -> Event:
    """A line's event from its parts: what the fast path renders its per-container template from."""
    return _line_event(container_id, IdPrefix(container_id), path, Line(offset, 0, time_, stream, text, False, False))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


QUIET_AFTER_DIE = 2.0  # seconds: the engine may still be writing a dead container's last lines


class DockerLogsSource(Source):
    name = "docker_logs"

    def __init__(
        self,
        client: docker.DockerClient,
        cache: ContainerCache,
        *,
        selector: Selector,
        mode: str = "auto",
        root_dir: str = "/var/lib/docker",
        batch_size: int = 2000,
        batch_bytes: int = 8 << 20,
        max_message_length: int = 1 << 20,
        poll_interval: float = 0.05,
        start_at: str = "beginning",
        documents: JsonFileDocuments | None = None,
    ):
        self.client = client
        self.cache = cache
        self.selector = selector
        self.root_dir = root_dir
        readable = os.access(os.path.join(root_dir, "containers"), os.R_OK | os.X_OK)
        self.mode = mode if mode != "auto" else ("file" if readable else "api")
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.max_message_length = max_message_length
        self.poll_interval = poll_interval
        self.start_at_end = start_at == "end"
        self.documents = documents  # the json-file fast path; None: every line as an Event
        self._closed = threading.Event()
        self._events_stream = None
        self._changes: queue.SimpleQueue = queue.SimpleQueue()
        self._followed: dict[str, Any] = {}  # container id -> JsonFileChain or _ApiFollower
        self._stopping: dict[str, tuple[str, float]] = {}  # id -> ("die"|"destroy", when)
        self._dormant: set[str] = set()  # stopped and read to the end: not polled until restarted
        self._ids: dict[str, IdPrefix] = {}

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        log.info("docker_logs: following containers", extra={"mode": self.mode})
        threading.Thread(target=self._watch_engine, name="docker_logs-events", daemon=True).start()
        if self.mode == "file":
            threading.Thread(target=self._guard_rotation, name="docker_logs-rotation", daemon=True).start()
        for container in self.client.api.containers(all=True):
            self._follow(container["Id"], positions)
            if container.get("State") != "running":
                self._stopping[container["Id"]] = ("die", 0.0)
        forget = [cid for cid in positions if cid not in self._followed]
        if forget:  # removed while we were down: nothing left to resume
            emit(Batch(self.name, [], {cid: None for cid in forget}))
        try:
            while not self._closed.is_set():
                self._apply_changes(positions)
                full = self._read_round(emit)
                if not full:
                    self._closed.wait(self.poll_interval)
        finally:
            for follower in self._followed.values():
                follower.close()

    def close(self) -> None:
        self._closed.set()
        close_quietly(self._events_stream)

    def status(self) -> dict[str, Any]:
        return {"containers_followed": len(self._followed) - len(self._dormant), "mode": self.mode}

    def _watch_engine(self) -> None:
        since = time.time()
        while not self._closed.is_set():
            try:
                self._events_stream = self.client.events(decode=True, since=since, filters={"type": "container"})
                for event in self._events_stream:
                    since = event.get("time", since)
                    self.cache.on_engine_event(event)
                    action = event.get("Action", "")
                    if action in FOLLOW_ACTIONS or action in ("destroy", "die"):
                        self._changes.put((action, event["Actor"]["ID"], time.monotonic()))
            except Exception as exc:
                if self._closed.is_set():
                    return
                log.warning("docker_logs: engine event stream broke, reconnecting", extra={"error": str(exc)})
                self._closed.wait(1.0)

    def _guard_rotation(self) -> None:
        """Open each new log file as soon as it appears, even while emit() blocks."""
        while not self._closed.wait(self.poll_interval):
            try:
                chains = list(self._followed.values())
            except RuntimeError:  # changed while we copied; next round
                continue
            for chain in chains:
                chain.discover()

    def _apply_changes(self, positions: dict[str, Any]) -> None:
        while True:
            try:
                action, container_id, when = self._changes.get_nowait()
            except queue.Empty:
                return
            if action in FOLLOW_ACTIONS:
                self._stopping.pop(container_id, None)
                self._dormant.discard(container_id)
                self._follow(container_id, positions)
            elif container_id in self._followed:
                self._stopping[container_id] = (action, when)
                self._dormant.discard(container_id)

    def _follow(self, container_id: str, positions: dict[str, Any]) -> None:
        follower = self._followed.get(container_id)
        if follower is not None:
            if self.mode == "api" and follower.finished:
                follower.start()  # restarted container: new streams from where we are
            return
        meta = self.cache.get(container_id)
        if meta is None or not self.selector.wants(meta):
            return
        if self.mode == "file":
            if meta.log_driver != "json-file":
                log.warning("docker_logs: container does not log to json-file; use mode api to follow it",
                            extra={"container": meta.name, "log_driver": meta.log_driver})
                return
            # LogPath is only filled in at start; the json-file driver's path is fixed.
            path = meta.log_path or os.path.join(self.root_dir, "containers", meta.id, f"{meta.id}-json.log")
            follower = JsonFileChain(
                path, max_message_length=self.max_message_length, position=positions.get(container_id),
                start_at_end=self.start_at_end and container_id not in positions,
            )
        else:
            follower = _ApiFollower(self.client, meta, positions.get(container_id), self.max_message_length)
            follower.start()
        self._followed[container_id] = follower
        log.info("docker_logs: following", extra={"container": meta.name, "container_id": container_id[:12]})

    def _read_round(self, emit: Emit) -> bool:
        """One pass over the followed containers; True when the batch filled up."""
        events: list[Event] = []
        doc_ids: list[bytes] = []
        bodies: list[bytes] = []
        moved: dict[str, Any] = {}
        for container_id, follower in list(self._followed.items()):
            if container_id in self._dormant:
                continue
            room = self.batch_size - len(events) - len(bodies)
            rendered = 0
            if self.mode == "file":
                docs = self.documents.for_container(container_id, follower.base) if self.documents else None
                lines = follower.read(room, self.batch_bytes, docs)
                ids = self._ids.get(container_id) or self._ids.setdefault(container_id, IdPrefix(container_id))
                got = [_line_event(container_id, ids, follower.base, line) for line in lines]
                if docs is not None and len(docs):
                    more_ids, more_bodies = docs.take()
                    doc_ids += more_ids
                    bodies += more_bodies
                    rendered = len(more_bodies)
            else:
                got = follower.drain(room)
            if got or rendered:
                events.extend(got)
                moved[container_id] = follower.position
            elif container_id in self._stopping:
                self._settle(container_id, moved)
            if len(events) + len(bodies) >= self.batch_size:
                break
        if events or bodies or moved:
            emit(Batch(self.name, events, moved, ids=doc_ids, bodies=bodies))
        return len(events) + len(bodies) >= self.batch_size

    def _settle(self, container_id: str, moved: dict[str, Any]) -> None:
        """A stopped container has nothing more to read right now."""
        action, when = self._stopping[container_id]
        if time.monotonic() - when < QUIET_AFTER_DIE:
            return
        if self.mode == "api":
            follower = self._followed[container_id]
            if not follower.finished:
                return  # the API stream is still delivering what the container wrote
            if not follower.caught_up:
                # A follow stream opened while the container was exiting can end before the
                # engine has written its last lines; one more pass picks them up.
                follower.start(follow=False)
                return
        del self._stopping[container_id]
        if action == "destroy":
            self._followed.pop(container_id).close()
            self.cache.forget(container_id)
            if self.documents is not None:
                self.documents.forget(container_id)
            moved[container_id] = None  # its files are gone: nothing to resume
        else:
            self._dormant.add(container_id)


class _ApiFollower:
    """Two Engine API streams (stdout, stderr) of one container, read by background threads.

    Position, per stream: the (fixed-width) timestamp of the last message handed out
    and how many messages carried exactly that timestamp. `since=` is inclusive, so
    on resume those are skipped; their ids would only produce 409s anyway.
    """

    STREAMS = ("stdout", "stderr")

    def __init__(self, client: docker.DockerClient, meta: ContainerMeta, position: dict | None, max_message_length: int):
        self.client = client
        self.meta = meta
        self.max_message_length = max_message_length
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._last = {name: dict(position[name]) for name in self.STREAMS if position and position.get(name)}
        self._skip: dict[str, dict] = {}
        self.caught_up = False

    @property
    def position(self) -> dict | None:
        return {name: dict(value) for name, value in self._last.items()} or None

    @property
    def finished(self) -> bool:
        return all(not t.is_alive() for t in self._threads) and self._lines.empty()

    def start(self, follow: bool = True) -> None:
        """(Re)open both streams from the last position; lines already handed out are skipped."""
        self.caught_up = not follow
        self._skip = {name: dict(value) for name, value in self._last.items()}
        for name in self.STREAMS:
            since = _since_arg(self._last[name]["time"]) if name in self._last else None
            thread = threading.Thread(target=self._read, args=(name, since, follow), daemon=True,
                                      name=f"logs-{self.meta.name}-{name}")
            self._threads.append(thread)
            thread.start()

    def _read(self, stream_name: str, since: float | None, follow: bool) -> None:
        try:
            stream = self.client.api.logs(
                self.meta.id, stdout=stream_name == "stdout", stderr=stream_name == "stderr",
                stream=True, follow=follow, timestamps=True, since=since,
            )
            self._streams.append(stream)
            parts: list[bytes] = []
            first_stamp = b""
            for frame in stream:
                # "<RFC3339Nano, fixed width> <text>"; a frame without "\n" is part of a split line.
                stamp, _, text = frame.partition(b" ")
                if not parts:
                    first_stamp = stamp
                parts.append(text)
                if text.endswith(b"\n"):
                    self._lines.put((first_stamp.decode(), stream_name, b"".join(parts)[:-1]))
                    parts = []
        except Exception as exc:
            if not self._closed:
                log.warning("docker_logs: API log stream ended with an error",
                            extra={"container": self.meta.name, "error": str(exc)})

    def drain(self, limit: int) -> list[Event]:
        out: list[Event] = []
        limit_len = self.max_message_length
        while len(out) < limit:
            try:
                stamp, stream_name, data = self._lines.get_nowait()
            except queue.Empty:
                break
            skip = self._skip.get(stream_name)
            if skip is not None:
                if stamp < skip["time"] or (stamp == skip["time"] and skip["count"] > 0):
                    skip["count"] -= stamp == skip["time"]
                    continue  # acknowledged before the restart
                del self._skip[stream_name]
            last = self._last.get(stream_name)
            if last is not None and last["time"] == stamp:
                last["count"] += 1
            else:
                last = self._last[stream_name] = {"time": stamp, "count": 1}
            text = data.decode("utf-8", "replace")
            own: dict[str, Any] = {"stream": stream_name}
            fields: dict[str, Any] = {"message": text, "event": LOG_EVENT, "shipper": {"log": own}}
            if len(text) > limit_len:
                fields["message"] = text[:limit_len]
                own["flags"] = ["truncated"]
                fields["tags"] = ["truncated"]
            out.append(Event(
                id=event_id(self.meta.id, stream_name, stamp, last["count"]),
                timestamp=stamp, source="docker_logs", fields=fields, container_id=self.meta.id,
            ))
        return out

    def close(self) -> None:
        self._closed = True
        for stream in self._streams:
            close_quietly(stream)


def _since_arg(stamp: str) -> float:
    """Fixed-width RFC 3339 nano timestamp -> the float seconds `since=` takes, a little early."""
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    base = datetime.fromisoformat(seconds + "+00:00").timestamp()
    return base + float("0." + (fraction or "0")) - 1e-3
