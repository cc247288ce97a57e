"""Source `docker_logs`: every line every selected container writes.

How each container is read is decided per container, from its log driver
(`HostConfig.LogConfig.Type`), by `reader_for`:
- `json-file` (`<id>-json.log*`) and `local` (`local-logs/container.log*`) are read
  from disk: fast, exact positions, survives rotation;
- every other driver the engine can read back (journald, and any driver while the
  engine's dual-logging cache is on) through the Engine API log stream, resumed
  with `since=` the last acknowledged timestamp;
- `none`, and drivers the engine cannot read back, are reported once per container
  and counted in `shipper_containers_unreadable`.
`mode: file` and `mode: api` override this for every container.

Containers are discovered through the engine's event stream (a new container is
followed as soon as it is created), and stopped containers are drained.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

import docker
import docker.errors

from ..containers import BothSelectors, ContainerCache, ContainerMeta, Selector
from ..model import Event, LineIds, event_id
from ..timefmt import NANOS, nano_time, parse_time
from .base import Batch, Emit, Source, close_quietly
from .cadence import Cadence
from .fastpath import JsonFileDocuments
from .jsonfile import JsonFileChain, Line
from .localfile import LocalLogChain
from .logwatch import LogDirectoryWatch

log = logging.getLogger(__name__)

# Shared, never mutated: the document writer copies before changing anything.
# no event.category: ECS has none for an application's own log line
LOG_EVENT = {"kind": "event", "dataset": "shipper.docker_logs", "module": "docker"}
FOLLOW_ACTIONS = {"create", "start", "restart"}
FILE_DRIVERS = ("json-file", "local")
# The engine reads these back itself, without its dual-logging cache.
NATIVE_READ_BACK = FILE_DRIVERS + ("journald",)
CACHE_MIN_API = (1, 41)  # Engine 20.10: dual logging, `docker logs` for every driver


def reader_for(meta: ContainerMeta, mode: str, files_readable: bool, api_version: str) -> tuple[str, str]:
    """How one container's logs are read: ("json-file" | "local" | "api" | "none", why)."""
    driver = meta.log_driver
    if driver == "none":
        return "none", "its log driver is none: the engine keeps no logs to read"
    if mode == "api":
        return "api", "mode api"
    if driver in FILE_DRIVERS and mode == "file":
        return driver, "mode file"
    if driver in FILE_DRIVERS and files_readable:
        return driver, "its log files are readable"
    if mode == "file":
        return "none", f"mode file reads json-file and local only; set mode auto to follow {driver} through the API"
    if driver in NATIVE_READ_BACK:
        return "api", "the engine reads this driver back"
    options = (meta.attrs.get("HostConfig") or {}).get("LogConfig", {}).get("Config") or {}
    if str(options.get("cache-disabled", "false")).lower() == "true":
        return "none", f"log driver {driver} with cache-disabled=true: the engine keeps no copy to read back"
    if _api_tuple(api_version) < CACHE_MIN_API:
        return "none", (f"log driver {driver} on an engine older than 20.10 (API {api_version}): "
                        "no dual-logging cache to read back")
    return "api", "read back through the engine's dual-logging cache"


def _api_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def _line_event(container_id: str, ids: LineIds, path: str, line: Line, driver: str) -> Event:
    # the hot path: written where ecs.py would move them (shipper.log.*), not moved per line
    own: dict[str, Any] = {"stream": line.stream, "offset": line.offset, "driver": driver}
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


def template_event(container_id: str, path: str, time_: str, stream: str, text: str, offset: int,
                   driver: str = "json-file") -> Event:
    """A line's event from its parts: what the fast path renders its per-container template from."""
    return _line_event(container_id, LineIds(container_id), path, Line(offset, 0, time_, stream, text, False, False),
                       driver)


def _now() -> str:
    return nano_time(int(time.time()) * NANOS)


QUIET_GRID = 0.25  # seconds: quiet logs (at the slowest wait) fall due together on this grid
QUIET_WAIT = 1.0  # seconds: the longest a quiet log goes unread
QUIET_WAIT_WATCHED = 5.0  # the same while inotify tells of changes to the logs' directories (the net for a lost one)
QUIET_AFTER_DIE = 2.0  # seconds: the engine may still be writing a dead container's last lines


class DockerLogsSource(Source):
    name = "docker_logs"

    def __init__(
        self,
        client: docker.DockerClient,
        cache: ContainerCache,
        *,
        selector: Selector | BothSelectors,
        mode: str = "auto",
        root_dir: str = "/var/lib/docker",
        batch_size: int = 2000,
        batch_bytes: int = 8 << 20,
        max_message_length: int = 1 << 20,
        poll_interval: float = 0.05,
        start_at: str = "beginning",
        metrics: Any = None,
        documents: JsonFileDocuments | None = None,
    ):
        self.client = client
        self.cache = cache
        self.selector = selector
        self.root_dir = root_dir
        self.files_readable = os.access(os.path.join(root_dir, "containers"), os.R_OK | os.X_OK)
        self.mode = mode
        self.metrics = metrics
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.max_message_length = max_message_length
        self.poll_interval = poll_interval
        # a quiet log is looked at less often, and quiet logs all at once (4 moments a second): the loops sleep between
        self._cadence = Cadence(poll_interval, max(poll_interval, QUIET_WAIT), grid=QUIET_GRID)
        self._log_watch: LogDirectoryWatch | None = None  # inotify on the followed logs' directories
        self._round_start = 0  # where the next read round begins in the followed logs
        self._rounds = 0  # read rounds done: the rotation guard acts only when they stop (emit() blocks)
        self.start_at_end = start_at == "end"
        self.documents = documents  # the json-file fast path; None: every line as an Event
        self._closed = threading.Event()
        self._events_stream: Any = None  # the engine's event stream, closed from another thread
        self._changes: queue.SimpleQueue = queue.SimpleQueue()
        self._followed: dict[str, Any] = {}  # container id -> JsonFileChain or _ApiFollower
        self._stopping: dict[str, tuple[str, float]] = {}  # id -> ("die"|"destroy", when)
        self._dormant: set[str] = set()  # stopped and read to the end: not polled until restarted
        self._ids: dict[str, LineIds] = {}
        self._drivers: dict[str, str] = {}  # container id -> log driver, for the documents
        self._unreadable: set[str] = set()  # reported once each
        self._api_version = ""

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        log.info("docker_logs: following containers", extra={"mode": self.mode})
        try:  # the engine's own API version: the dual-logging cache came with 1.41 (20.10)
            self._api_version = self.client.version().get("ApiVersion", "")
        except docker.errors.DockerException:
            self._api_version = self.client.api.api_version
        threading.Thread(target=self._watch_engine, name="docker_logs-events", daemon=True).start()
        threading.Thread(target=self._guard_rotation, name="docker_logs-rotation", daemon=True).start()
        self._start_log_watch()
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
                self._rounds += 1
                if not full:
                    self._wait_for_due(positions)
        finally:
            for follower in self._followed.values():
                follower.close()
            if self._log_watch is not None:
                self._log_watch.close()

    def close(self) -> None:
        self._closed.set()
        self._changes.put(None)  # wakes the read loop
        close_quietly(self._events_stream)

    def _start_log_watch(self) -> None:
        try:
            self._log_watch = LogDirectoryWatch(self._log_changed, pace=self.poll_interval).start()
        except OSError as exc:  # EMFILE: fs.inotify.max_user_instances reached
            log.warning("docker_logs: no inotify instance for the log directories (%s); quiet logs are looked at "
                        "every second", exc, extra={"fix": "raise fs.inotify.max_user_instances"})
            return
        self._cadence.slowest = max(self._cadence.slowest, QUIET_WAIT_WATCHED)

    def _log_changed(self, container_id: str | None) -> None:
        """From the inotify thread: a log's directory changed (None: changes were lost, look at every log)."""
        if container_id is not None:
            self._cadence.wake(container_id)
        else:
            if self._log_watch is not None and self._log_watch.failed:
                self._cadence.slowest = max(self.poll_interval, QUIET_WAIT)
            for followed in list(self._followed):
                self._cadence.wake(followed)
        self._changes.put(None)  # wakes the read loop

    def _watch_log_directory(self, container_id: str, directory: str) -> None:
        if self._log_watch is None:
            return
        try:
            self._log_watch.watch(container_id, directory)
        except (FileNotFoundError, NotADirectoryError):
            return  # the container was removed meanwhile: nothing to read there
        except OSError as exc:  # ENOSPC: fs.inotify.max_user_watches reached
            log.warning("docker_logs: cannot watch a log directory (%s); quiet logs are looked at every second",
                        exc, extra={"directory": directory, "fix": "raise fs.inotify.max_user_watches"})
            self._log_watch.close()
            self._log_watch = None
            self._cadence.slowest = max(self.poll_interval, QUIET_WAIT)

    def _wait_for_due(self, positions: dict[str, Any]) -> None:
        """Sleep until a followed log is due (at least `poll_interval`) or the engine tells of a change."""
        try:
            change = self._changes.get(timeout=max(self.poll_interval, self._cadence.next_due(self._cadence.slowest)))
        except queue.Empty:
            return
        if change is not None:
            self._apply_change(change, positions)

    def status(self) -> dict[str, Any]:
        return {"containers_followed": len(self._followed) - len(self._dormant), "mode": self.mode,
                "containers_unreadable": len(self._unreadable)}

    def _watch_engine(self) -> None:
        since = time.time()
        while not self._closed.is_set():
            try:
                self._events_stream = self.client.events(decode=True, since=since, filters={"type": "container"})
                self.cache.listening(self, True)
                for event in self._events_stream:
                    since = event.get("time", since)
                    self.cache.on_engine_event(event)
                    action = event.get("Action", "")
                    if action in FOLLOW_ACTIONS or action in ("destroy", "die"):
                        self._changes.put((action, event["Actor"]["ID"], time.monotonic()))
                self.cache.listening(self, False)
            except Exception as exc:
                self.cache.listening(self, False)
                if self._closed.is_set():
                    return
                log.warning("docker_logs: engine event stream broke, reconnecting", extra={"error": str(exc)})
                self._closed.wait(1.0)

    def _guard_rotation(self) -> None:
        """Open each new log file as soon as it appears, even while emit() blocks. While the read loop goes
        round, its reads open them (each read of a log looks for a newer file first): nothing to do."""
        rounds = -1
        while not self._closed.wait(max(self.poll_interval, self._cadence.next_due(self._cadence.slowest))):
            if self._rounds != rounds:
                rounds = self._rounds
                continue
            try:
                chains = list(self._followed.items())
            except RuntimeError:  # changed while we copied; next round
                continue
            for container_id, chain in chains:
                if not isinstance(chain, _ApiFollower) and self._cadence.due(container_id):
                    chain.discover()

    def _apply_changes(self, positions: dict[str, Any]) -> None:
        while True:
            try:
                change = self._changes.get_nowait()
            except queue.Empty:
                return
            if change is not None:
                self._apply_change(change, positions)

    def _apply_change(self, change: tuple[str, str, float], positions: dict[str, Any]) -> None:
        action, container_id, when = change
        self._cadence.wake(container_id)
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
            if isinstance(follower, _ApiFollower) and follower.finished:
                follower.start()  # restarted container: new streams from where we are
            return
        meta = self.cache.get(container_id)
        if meta is None or not self.selector.wants(meta):
            return
        reader, why = reader_for(meta, self.mode, self.files_readable, self._api_version)
        if reader == "none":
            self._report_unreadable(meta, why)
            return
        position = positions.get(container_id)
        if position is not None and (reader == "api") == ("offset" in position):
            log.warning("docker_logs: the checkpoint was written by another reader (the mode changed); reading "
                        "this container's logs from the start, lines already shipped get new ids",
                        extra={"container": meta.name, "read_by": reader})
            position = None
        start_at_end = self.start_at_end and container_id not in positions
        directory = os.path.join(self.root_dir, "containers", meta.id)
        if reader == "json-file":
            # LogPath is only filled in at start; the json-file driver's path is fixed.
            path = meta.log_path or os.path.join(directory, f"{meta.id}-json.log")
            follower = JsonFileChain(path, max_message_length=self.max_message_length, position=position,
                                     start_at_end=start_at_end)
            self._watch_log_directory(container_id, os.path.dirname(path))
        elif reader == "local":
            follower = LocalLogChain(os.path.join(directory, "local-logs"), max_message_length=self.max_message_length,
                                     position=position, start_at_end=start_at_end)
            self._watch_log_directory(container_id, os.path.join(directory, "local-logs"))
        else:
            follower = _ApiFollower(self.client, meta, position, self.max_message_length)
            follower.start()
        self._followed[container_id] = follower
        self._drivers[container_id] = meta.log_driver
        log.info("docker_logs: following", extra={"container": meta.name, "container_id": container_id[:12],
                                                  "log_driver": meta.log_driver, "read_by": reader, "why": why})

    def _report_unreadable(self, meta: ContainerMeta, why: str) -> None:
        if meta.id in self._unreadable:
            return
        self._unreadable.add(meta.id)
        log.warning("docker_logs: cannot read this container's logs: %s", why,
                    extra={"container": meta.name, "container_id": meta.id[:12], "log_driver": meta.log_driver})
        if self.metrics is not None:
            self.metrics.containers_unreadable.labels(driver=meta.log_driver).inc()

    def _read_round(self, emit: Emit) -> bool:
        """One pass over the followed containers; True when the batch filled up."""
        events: list[Event] = []
        doc_ids: list[bytes] = []
        bodies: list[bytes] = []
        moved: dict[str, Any] = {}
        followed = list(self._followed.items())
        start = self._round_start % len(followed) if followed else 0
        # each round begins where the last one filled its batch: no log waits behind another's backlog
        for number, (container_id, follower) in enumerate(followed[start:] + followed[:start], start + 1):
            if container_id in self._dormant or not self._cadence.due(container_id):
                continue
            room = self.batch_size - len(events) - len(bodies)
            rendered = 0
            if isinstance(follower, _ApiFollower):
                got = follower.drain(room)
            else:
                driver = self._drivers.get(container_id, "json-file")
                docs = (self.documents.for_container(container_id, follower.base, driver)
                        if self.documents is not None else None)
                lines = follower.read(room, self.batch_bytes, docs)  # docs: the lines it renders are not returned
                got = self._line_events(container_id, follower, lines)
                if docs is not None and len(docs):
                    more_ids, more_bodies = docs.take()
                    doc_ids += more_ids
                    bodies += more_bodies
                    rendered = len(more_bodies)
            self._cadence.heard(container_id, bool(got or rendered))
            if got or rendered:
                events.extend(got)
                moved[container_id] = follower.position
            elif container_id in self._stopping:
                last = self._settle(container_id, moved)
                if last:
                    events.extend(self._line_events(container_id, follower, last))
            if len(events) + len(bodies) >= self.batch_size:
                self._round_start = number
                break
        if events or bodies or moved:
            emit(Batch(self.name, events, moved, ids=doc_ids, bodies=bodies))
        return len(events) + len(bodies) >= self.batch_size

    def _line_events(self, container_id: str, follower: Any, lines: list[Line]) -> list[Event]:
        ids = self._ids.get(container_id) or self._ids.setdefault(container_id, LineIds(container_id))
        driver = self._drivers.get(container_id, "json-file")
        return [_line_event(container_id, ids, follower.base, line, driver) for line in lines]

    def _settle(self, container_id: str, moved: dict[str, Any]) -> list[Line]:
        """A stopped container has nothing more to read right now; returns a last line it never ended."""
        action, when = self._stopping[container_id]
        if time.monotonic() - when < QUIET_AFTER_DIE:
            return []
        follower = self._followed[container_id]
        if isinstance(follower, _ApiFollower):
            if not follower.finished:
                return []  # the API stream is still delivering what the container wrote
            if not follower.caught_up:
                # A follow stream opened while the container was exiting can end before the
                # engine has written its last lines; one more pass picks them up.
                follower.start(follow=False)
                return []
        del self._stopping[container_id]
        # The local driver keeps a last line without a newline as an unfinished split message.
        last = follower.flush() if isinstance(follower, LocalLogChain) else []
        if action == "destroy":
            self._followed.pop(container_id).close()
            self._cadence.forget(container_id)
            if self._log_watch is not None:
                self._log_watch.unwatch(container_id)
            self.cache.forget(container_id)
            if self.documents is not None:
                self.documents.forget(container_id)
            moved[container_id] = None  # its files are gone: nothing to resume
        else:
            self._dormant.add(container_id)
            self._cadence.forget(container_id)  # not read until restarted: its due time must not wake the loops
            if last:
                moved[container_id] = follower.position
        return last


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
            own: dict[str, Any] = {"stream": stream_name, "driver": self.meta.log_driver}
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
    return (parse_time(stamp) or 0.0) - 1e-3
