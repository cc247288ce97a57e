"""Source `files`: what is written, deleted, renamed or re-permissioned inside containers.

Every file a container writes lands in its overlay `UpperDir`; inotify on that
directory sees it within milliseconds (one inotify instance and one thread for every
watched tree, `inotify.py`). The container's /dev (a tmpfs, with
/dev/shm, outside the overlay) is watched through /proc/<pid>/root/dev. Paths are
reported as the container sees them.

A file is described (type, mode, symlink target, size) at its first notification,
so one created and removed at once is still reported as it was, followed by its
removal. Raw notifications are coalesced per path for `settle` seconds (a write is
open, modify, modify, close), then judged once from what is on disk: a character
device 0/0 is an overlay whiteout (a file of the image was deleted), a new file that
exists in a lower layer is a modification (copy-up). Events in the first
`startup_seconds` of a container are marked `shipper.file.during_startup`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import docker

from .. import kinds
from ..containers import Watched
from ..model import Event, event_id
from ..timefmt import iso_time, parse_time
from .base import Batch, Emit, Source
from .inotify import InotifyTrees

log = logging.getLogger(__name__)

_ACTIONS = {"creation": ["creation"], "modification": ["change"], "deletion": ["deletion"],
            "rename": ["change"], "attributes_modification": ["change"]}


@dataclass
class _Root:
    """A watched directory: a container's upper layer, or a host path."""

    path: str
    container_id: str | None
    lowers: list[str] = field(default_factory=list)
    mountpoints: frozenset[str] = frozenset()  # files Docker puts in the upper layer to mount over
    watches: int = 0
    prefix: str = ""  # the path the container sees this directory at: "" for its upper layer, "/dev" for its /dev
    started: float | None = None  # when the container started (epoch seconds)


@dataclass
class _Pending:
    root: _Root
    path: str  # as the container sees it
    first: float
    last: float
    kinds: set[str] = field(default_factory=set)
    previous: str | None = None
    seen: tuple[os.stat_result, str | None] | None = None  # the file as last seen at a notification, and its link target


class _Handler:
    """One watched tree's notifications (see inotify.py for the kinds), each with a first look at the file."""

    def __init__(self, root: _Root, raw: deque, woken: threading.Event | None = None):
        self.root = root
        self.raw = raw
        self.woken = woken

    def notice(self, kind: str, src: str, dest: str = "") -> None:
        seen = _look(dest or src) if kind in ("created", "moved", "attrib") else None
        self.raw.append((self.root, kind, src, dest, time.time(), seen))
        if self.woken is not None:
            self.woken.set()


class FilesSource(Source):
    name = kinds.FILES.name

    def __init__(self, watched: Watched, *, host_paths: Sequence[str] = (),
                 exclude: Sequence[str] = (), hash_max_bytes: int = 1 << 20, max_watches: int = 50_000,
                 catch_up_seconds: float = 10.0, sync_interval: float = 0.5, settle: float = 0.1,
                 startup_seconds: float = 5.0, watch_dev: bool = True):
        self.watched = watched
        self.cache = watched.cache
        self.host_paths = list(host_paths)
        self.exclude = list(exclude)
        self.hash_max_bytes = hash_max_bytes
        self.max_watches = min(max_watches, _kernel_watch_limit())
        self.catch_up_seconds = catch_up_seconds
        self.sync_interval = sync_interval
        self.settle = settle
        self.startup_seconds = startup_seconds
        self.watch_dev = watch_dev
        self._inotify: InotifyTrees | None = None
        self._woken = threading.Event()  # a notification came in
        self._roots: dict[str, _Root] = {}  # container id or host path -> root
        self._raw: deque = deque()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._judged_in: dict[tuple[str, str], float] = {}  # (root, directory) -> when an entry in it was judged
        self._closed = threading.Event()
        self._refused: set[str] = set()
        self.events = 0

    @property
    def watches_used(self) -> int:
        return sum(root.watches for root in self._roots.values())

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        self._inotify = InotifyTrees()
        self._inotify.start()
        for path in self.host_paths:
            self._watch(path, _Root(path, None))
        next_sync = 0.0
        try:
            while not self._closed.is_set():
                now = time.time()
                if now >= next_sync:
                    next_sync = now + self.sync_interval
                    try:
                        self._sync(now)
                    except docker.errors.DockerException as exc:
                        log.warning("files: cannot list containers, retrying", extra={"error": str(exc)})
                events = self._drain(now)
                if events:
                    self.events += len(events)
                    emit(Batch(self.name, events))
                if self._raw or self._pending:  # notifications settling: look again in settle / 2
                    self._closed.wait(self.settle / 2)
                else:  # nothing pending: sleep until a notification or the next sync
                    self._woken.wait(max(0.0, next_sync - time.time()))
                self._woken.clear()
        finally:
            self._inotify.close()

    def close(self) -> None:
        self._closed.set()
        self._woken.set()

    def status(self) -> dict[str, Any]:
        return {"watched": len(self._roots), "watches": self.watches_used, "watch_budget": self.max_watches,
                "events": self.events, "inotify_overflows": self._inotify.overflows if self._inotify else 0}

    # ------------------------------------------------------------ watches

    def _sync(self, now: float) -> None:
        running = set(self.watched.running())
        for key in [k for k, r in self._roots.items() if r.container_id and r.container_id not in running]:
            self._unwatch(key)
        self._refused = {key for key in self._refused if key.split(":")[0] in running}
        for container_id in running - set(self._roots) - self._refused:
            meta = self.cache.get(container_id)
            data = ((meta.attrs.get("GraphDriver") or {}).get("Data") or {}) if meta else {}
            if meta is None or not data.get("UpperDir"):
                continue  # not overlay2, or not known yet
            started = parse_time((meta.attrs.get("State") or {}).get("StartedAt", ""))
            root = _Root(data["UpperDir"], container_id, [p for p in (data.get("LowerDir") or "").split(":") if p],
                         _mountpoints(meta.attrs), started=started)
            if self._watch(container_id, root):
                log.info("files: watching", extra={"container_id": container_id[:12],
                                                     "after_start": round(now - started, 3) if started else None})
                self._catch_up(root, meta.attrs, now)
                pid = (meta.attrs.get("State") or {}).get("Pid")
                if self.watch_dev and pid:
                    self._watch(f"{container_id}:dev", _Root(f"/proc/{pid}/root/dev", container_id, prefix="/dev",
                                                            started=started))

    def _watch(self, key: str, root: _Root) -> bool:
        directories = sum(1 for _ in os.walk(root.path))
        if self.watches_used + directories > self.max_watches:
            log.warning("files: inotify watch budget exhausted, %s is NOT watched", key[:12],
                        extra={"needed": directories, "used": self.watches_used, "budget": self.max_watches,
                               "fix": "raise sources.files.max_watches and fs.inotify.max_user_watches"})
            self._refused.add(key)
            return False
        assert self._inotify is not None
        try:
            directories = self._inotify.watch(key, root.path, _Handler(root, self._raw, self._woken).notice)
        except (FileNotFoundError, NotADirectoryError):
            return False  # the container stopped in the meantime
        except OSError as exc:  # ENOSPC/EMFILE: the kernel's inotify limits
            log.warning("files: cannot watch %s: %s", root.path, exc,
                        extra={"fix": "raise fs.inotify.max_user_watches / max_user_instances"})
            self._refused.add(key)
            return False
        root.watches = directories
        self._roots[key] = root
        return True

    def _unwatch(self, key: str) -> None:
        self._roots.pop(key)
        if self._inotify is not None:
            self._inotify.unwatch(key)

    def _catch_up(self, root: _Root, attrs: dict[str, Any], now: float) -> None:
        """Files a container wrote between its start and our watch: report them as created."""
        started = parse_time((attrs.get("State") or {}).get("StartedAt", ""))
        if started is None or now - started > self.catch_up_seconds:
            return
        for directory, dirs, files in os.walk(root.path):
            for name in dirs + files:
                host_path = os.path.join(directory, name)
                try:
                    mtime = os.lstat(host_path).st_mtime
                except OSError:
                    continue
                if mtime >= started - 1:
                    self._raw.append((root, "created", host_path, "", mtime, None))

    # ------------------------------------------------------------ events

    def _drain(self, now: float) -> list[Event]:
        while self._raw:
            root, kind, src, dest, at, seen = self._raw.popleft()
            host_path = dest if kind == "moved" else src
            path = self._container_path(root, host_path)
            pending = self._pending.get((root.path, path))
            if pending is None:
                pending = self._pending[(root.path, path)] = _Pending(root, path, at, at)
            pending.last = max(pending.last, at)
            pending.kinds.add(kind)
            if seen is not None:
                pending.seen = seen
            if kind == "moved":
                pending.previous = self._container_path(root, src)
        events = []
        if len(self._judged_in) > 10_000:
            self._judged_in = {k: t for k, t in self._judged_in.items() if now - t < 10}
        for key, pending in list(self._pending.items()):
            if now - pending.last >= self.settle or "closed" in pending.kinds:
                del self._pending[key]
                self._judged_in[(pending.root.path, pending.path.rpartition("/")[0])] = now
                if pending.path in pending.root.mountpoints or pending.path.startswith(DEV_NOISE):
                    continue
                if not any(fnmatch.fnmatchcase(pending.path, pattern) for pattern in self.exclude):
                    events.extend(self._events(pending))
        return events

    @staticmethod
    def _container_path(root: _Root, host_path: str) -> str:
        if not root.container_id:
            return host_path
        return (root.prefix + host_path[len(root.path):]) or "/"

    def _events(self, pending: _Pending) -> list[Event]:
        """What happened to one path: usually one event; a file created and already gone, two (as first seen,
        then its removal)."""
        host_path = _host_path(pending)
        try:
            info = os.lstat(host_path)
        except OSError:
            info = None
        if info is None and pending.seen is not None and not _is_whiteout(pending.seen[0]):
            first, target = pending.seen
            kinds = pending.kinds
            if "moved" in kinds:
                action = "rename"
            elif "created" in kinds:
                action = "modification" if self._copied_up(pending) else "creation"
            else:
                action = "attributes_modification"
            seen = self._event(pending, action, first, target, None)
            if "deleted" not in kinds:
                return [seen]  # its removal comes with a notification of its own
            return [seen, self._event(pending, "deletion", None, None, pending.last)]
        if info is None and pending.seen is None and "created" in pending.kinds and "deleted" in pending.kinds:
            # made and removed before even a look: that it was there is all inotify can tell
            return [self._event(pending, "creation", None, None, None),
                    self._event(pending, "deletion", None, None, pending.last)]
        event = self._judge(pending, host_path, info)
        return [event] if event is not None else []

    @staticmethod
    def _copied_up(pending: _Pending) -> bool:
        """A file of the image, changed: overlay copies it to the upper layer, where it looks created."""
        return any(os.path.lexists(lower + pending.path) for lower in pending.root.lowers)

    def _judge(self, pending: _Pending, host_path: str, info: os.stat_result | None) -> Event | None:
        whiteout = info is not None and _is_whiteout(info)
        if info is None or whiteout or ("deleted" in pending.kinds and pending.kinds <= {"deleted", "modified"}):
            action = "deletion"
        elif "moved" in pending.kinds:
            action = "rename"
        elif "created" in pending.kinds:
            action = "modification" if self._copied_up(pending) else "creation"
        elif pending.kinds & {"modified", "closed"}:
            action = "modification"
        else:
            action = "attributes_modification"
        if action in ("modification", "attributes_modification") and info is not None and stat.S_ISDIR(info.st_mode):
            if action == "modification" and self._entries_gone(pending, host_path, info):
                event = self._event(pending, action, info, None, None)
                event.fields.setdefault("shipper", {}).setdefault("file", {})["entries_gone"] = True
                event.fields["message"] += " (something was written in it and removed before it could be seen)"
                return event
            return None  # a directory copied up to hold a written file: the file's own event says it
        target = None
        if info is not None and stat.S_ISLNK(info.st_mode):
            target = _readlink(host_path) or (pending.seen[1] if pending.seen else None)
        return self._event(pending, action, info if action != "deletion" else None, target, None)

    def _entries_gone(self, pending: _Pending, host_path: str, info: os.stat_result) -> bool:
        """A directory of the image copied up, so something was written in it, that holds nothing now and was
        changed since it was copied (copy-up keeps the image's mtime): overlayfs makes the upper directory
        only with that first write, so inotify watched it too late to see what was made and removed there."""
        if (pending.root.path, pending.path) in self._judged_in or any(
                key[0] == pending.root.path and key[1].startswith(pending.path + "/") for key in self._pending):
            return False  # seen by the watch after all: those entries' own events say it
        try:
            if os.listdir(host_path):
                return False
            image = [os.lstat(lower + pending.path).st_mtime for lower in pending.root.lowers
                     if os.path.lexists(lower + pending.path)]
        except OSError:
            return False
        return bool(image) and info.st_mtime > max(image)

    def _event(self, pending: _Pending, action: str, info: os.stat_result | None, target: str | None,
               at: float | None) -> Event:
        root = pending.root
        host_path = _host_path(pending)
        directory, _, name = pending.path.rpartition("/")
        file: dict[str, Any] = {"path": pending.path, "name": name, "directory": directory or "/"}
        if "." in name.strip("."):
            file["extension"] = name.rsplit(".", 1)[1]
        if pending.previous:
            file["previous_path"] = pending.previous
        own: dict[str, Any] = {}
        if info is not None:
            file.update(_describe(info, host_path, self.hash_max_bytes, target))
            if info.st_mode & stat.S_ISUID and not stat.S_ISDIR(info.st_mode):
                own["setuid"] = True
            if info.st_mode & stat.S_ISGID and not stat.S_ISDIR(info.st_mode):
                own["setgid"] = True
        at = at if at is not None else pending.first
        if root.started is not None and at - root.started < self.startup_seconds:
            own["during_startup"] = True
        fields: dict[str, Any] = {
            "event": {"kind": "event", "category": ["file"], "type": _ACTIONS[action], "action": action,
                      "module": "shipper", "dataset": kinds.FILES.dataset},
            "message": f"file {action.replace('_', ' ')}: {pending.path}"
                       + (f" (from {pending.previous})" if pending.previous else "")
                       + (f" -> {target}" if target else ""),
            "file": file,
        }
        if own:
            fields["shipper"] = {"file": own}
        return Event(
            id=event_id("files", root.container_id or "host", pending.path, action, f"{at:.6f}"),
            timestamp=iso_time(at),
            source=self.name,
            fields=fields,
            container_id=root.container_id,
        )


# terminals opened by `docker exec -t`, POSIX message queues, and the standard devices (removed as a container stops)
DEV_NOISE = ("/dev/pts/", "/dev/mqueue/", *(f"/dev/{name}" for name in (
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "fd", "stdin", "stdout", "stderr", "core")))


def _host_path(pending: _Pending) -> str:
    """Where a reported path is on the host: under its watched root (upper layer, /proc/<pid>/root/dev)."""
    root = pending.root
    return root.path + pending.path[len(root.prefix):] if root.container_id else pending.path


def _look(host_path: str) -> tuple[os.stat_result, str | None] | None:
    """The file at a notification, before it can change again or vanish; a symlink's target with it."""
    try:
        info = os.lstat(host_path)
    except OSError:
        return None
    return info, _readlink(host_path) if stat.S_ISLNK(info.st_mode) else None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)  # as written: a path inside the container
    except OSError:
        return None


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _describe(info: os.stat_result, host_path: str, hash_max_bytes: int, target: str | None) -> dict[str, Any]:
    kinds = ((stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"))
    out: dict[str, Any] = {
        "type": next((name for test, name in kinds if test(info.st_mode)), "other"),
        "size": info.st_size, "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "uid": str(info.st_uid), "gid": str(info.st_gid),
        "mtime": iso_time(info.st_mtime),
    }
    if out["type"] == "symlink":
        if target:
            out["target_path"] = target
    elif out["type"] == "file":
        executable = bool(info.st_mode & 0o111)
        out["executable"] = executable
        if executable or info.st_size <= hash_max_bytes:
            digest = _sha256(host_path)
            if digest:
                out["hash"] = {"sha256": digest}
    return out


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _mountpoints(attrs: dict[str, Any]) -> frozenset[str]:
    points = {m.get("Destination") for m in attrs.get("Mounts") or []}
    if (attrs.get("HostConfig") or {}).get("Init"):
        points.add("/sbin/docker-init")
    points |= {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    return frozenset(p for p in points if p)


def _kernel_watch_limit() -> int:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 8192
