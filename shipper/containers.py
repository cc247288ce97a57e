"""Container metadata: what every document about a container carries.

`ContainerMeta` is built once from `docker inspect` and holds the ready-made ECS
`container` object, so joining it to a log line costs one dict assignment.
`ContainerCache` keeps them, fills misses from the engine and forgets entries
when the engine reports a change (rename, destroy, update).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import docker.errors

log = logging.getLogger(__name__)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# Events after which inspect answers differently.
INVALIDATING_ACTIONS = {"create", "rename", "update", "start", "restart", "die"}
RUNNING_CHANGES = {"start", "die", "destroy", "pause", "unpause"}  # what changes the list of running containers
SEEN_EVENTS = 1024  # engine events remembered, so the same event from two streams is handled once


def split_image(ref: str) -> tuple[str, str | None]:
    """'registry:5000/app:1.2@sha256:..' -> ('registry:5000/app', '1.2')."""
    ref = ref.split("@", 1)[0]
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None


@dataclass(frozen=True)
class ContainerMeta:
    id: str
    name: str
    image: str  # the reference the container was created from
    labels: dict[str, str]
    attrs: dict[str, Any] = field(repr=False)  # the raw inspect answer, for detectors
    ecs: dict[str, Any] = field(repr=False)  # the ECS `container` object

    @classmethod
    def from_inspect(cls, attrs: dict[str, Any]) -> ContainerMeta:
        config = attrs.get("Config") or {}
        host_config = attrs.get("HostConfig") or {}
        labels = dict(config.get("Labels") or {})
        name = (attrs.get("Name") or "").lstrip("/")
        image = config.get("Image") or attrs.get("Image") or ""
        image_name, image_tag = split_image(image)
        ecs: dict[str, Any] = {
            "id": attrs["Id"],
            "name": name,
            "image": {"name": image_name, "hash": {"all": [attrs.get("Image", "")]}},
            "runtime": "docker",
            # `flattened` in the mapping: keys like app and app.kubernetes.io never collide.
            "labels": labels,
            "security": {
                "privileged": bool(host_config.get("Privileged")),
                "user": config.get("User") or "root",
            },
            "restart_count": attrs.get("RestartCount", 0),
        }
        if image_tag:
            ecs["image"]["tag"] = [image_tag]
        compose = {k: v for k, v in (("project", labels.get(COMPOSE_PROJECT)), ("service", labels.get(COMPOSE_SERVICE))) if v}
        if compose:
            ecs["compose"] = compose
        return cls(id=attrs["Id"], name=name, image=image, labels=labels, attrs=attrs, ecs=ecs)

    @property
    def audit(self) -> dict[str, Any]:
        """How the container was started, as far as `inspect` tells: the docker-bench §5 questions."""
        return security_audit(self.attrs)

    @property
    def log_path(self) -> str | None:
        return self.attrs.get("LogPath") or None

    @property
    def log_driver(self) -> str:
        return ((self.attrs.get("HostConfig") or {}).get("LogConfig") or {}).get("Type", "json-file")


NAMESPACE_MODES = {"network": "NetworkMode", "pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode"}


def security_audit(attrs: dict[str, Any]) -> dict[str, Any]:
    """`shipper.container.security.*` fields for the container's start event (rules judge these)."""
    host = attrs.get("HostConfig") or {}
    config = attrs.get("Config") or {}
    options = host.get("SecurityOpt") or []
    mounts = [m for m in attrs.get("Mounts") or [] if m.get("Type") == "bind"]
    limits = {"memory": host.get("Memory") or 0, "cpu": host.get("NanoCpus") or host.get("CpuQuota") or 0,
              "pids": host.get("PidsLimit") or 0}
    seccomp = next((o.split("=", 1)[1] for o in options if o.startswith("seccomp")), "default")
    apparmor = next((o.split("=", 1)[1] for o in options if o.startswith("apparmor")), attrs.get("AppArmorProfile") or "")
    return {
        "privileged": bool(host.get("Privileged")),
        "user": config.get("User") or "root",
        "capabilities_added": sorted(c.upper().removeprefix("CAP_") for c in host.get("CapAdd") or []),
        "host_namespaces": sorted(name for name, key in NAMESPACE_MODES.items() if host.get(key) == "host"),
        "mounts": sorted(m.get("Source", "") for m in mounts),
        "writable_mounts": sorted(m.get("Source", "") for m in mounts if m.get("RW")),
        "seccomp": seccomp,
        "apparmor": apparmor or "default",
        "read_only_rootfs": bool(host.get("ReadonlyRootfs")),
        "limits": limits,
        "unlimited": sorted(k for k, v in limits.items() if not v or v < 0),
    }


class ContainerCache:
    """Metadata by container id; thread-safe; a miss asks the engine once."""

    def __init__(self, client: docker.DockerClient):
        self._client = client
        self._by_id: dict[str, ContainerMeta] = {}
        self._gone: set[str] = set()
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._lock = threading.Lock()
        self.running_changes = 0  # engine events that changed which containers run
        self._listening: set[int] = set()  # the sources whose engine event stream is open

    def get(self, container_id: str) -> ContainerMeta | None:
        meta = self._by_id.get(container_id)
        if meta is not None or container_id in self._gone:
            return meta
        return self.refresh(container_id)

    def refresh(self, container_id: str) -> ContainerMeta | None:
        try:
            attrs = self._client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            with self._lock:
                self._gone.add(container_id)
            return self._by_id.get(container_id)  # keep serving the last known metadata
        meta = ContainerMeta.from_inspect(attrs)
        with self._lock:
            self._by_id[container_id] = meta
            self._gone.discard(container_id)
        return meta

    def refresh_not_started(self, running: list[str]) -> None:
        """Inspect again those of these running containers whose metadata is from before they started: a
        burst of engine events is handled in turn, so a container can be listed as running while its
        `start` is still queued and the cache holds what its `create` said (no start time, not running)."""
        for container_id in running:
            meta = self._by_id.get(container_id)
            if meta is not None and not (meta.attrs.get("State") or {}).get("Running"):
                self.refresh(container_id)

    def on_engine_event(self, event: dict[str, Any]) -> None:
        """Forget or re-inspect after a change. The docker_logs and docker_events sources each read the
        engine's events and both pass them here: an event already handled is not inspected again."""
        if event.get("Type") != "container":
            return
        action = (event.get("Action") or "").split(":", 1)[0]
        container_id = (event.get("Actor") or {}).get("ID") or event.get("id")
        if not container_id:
            return
        key = (event.get("timeNano") or event.get("time"), container_id, event.get("Action"))
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > SEEN_EVENTS:
                self._seen.popitem(last=False)
        if action in RUNNING_CHANGES:
            with self._lock:
                self.running_changes += 1
        if action == "destroy":
            with self._lock:
                self._gone.add(container_id)  # keep the last metadata for late lines
        elif action in INVALIDATING_ACTIONS:
            self.refresh(container_id)

    def listening(self, reader: object, is_open: bool) -> None:
        """A source's engine event stream opened or closed: while one is open, changes come as events."""
        with self._lock:
            (self._listening.add if is_open else self._listening.discard)(id(reader))

    @property
    def hears_changes(self) -> bool:
        return bool(self._listening)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._by_id.pop(container_id, None)
            self._gone.discard(container_id)


@dataclass(frozen=True)
class Selector:
    """Which containers to follow: glob patterns on name and image, `key=value` or `key` on labels.

    A container is followed when it matches any include (or there are none) and no exclude.
    """

    include_names: tuple[str, ...] = ()
    include_images: tuple[str, ...] = ()
    include_labels: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    exclude_images: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, include, exclude) -> Selector:
        """From the `include`/`exclude` sections of the config (ContainerMatch)."""
        return cls(tuple(include.names), tuple(include.images), tuple(include.labels),
                   tuple(exclude.names), tuple(exclude.images), tuple(exclude.labels))

    def wants(self, meta: ContainerMeta) -> bool:
        includes = (self.include_names, self.include_images, self.include_labels)
        if any(includes) and not self._matches(meta, *includes):
            return False
        return not self._matches(meta, self.exclude_names, self.exclude_images, self.exclude_labels)

    @staticmethod
    def _matches(meta: ContainerMeta, names, images, labels) -> bool:
        if any(fnmatch.fnmatchcase(meta.name, p) for p in names):
            return True
        if any(fnmatch.fnmatchcase(meta.image, p) for p in images):
            return True
        for pattern in labels:
            key, sep, value = pattern.partition("=")
            if key in meta.labels and (not sep or fnmatch.fnmatchcase(meta.labels[key], value)):
                return True
        return False


@dataclass(frozen=True)
class BothSelectors:
    first: Selector
    second: Selector

    def wants(self, meta: ContainerMeta) -> bool:
        return self.first.wants(meta) and self.second.wants(meta)


class Watched:
    """The running containers the sources should watch: one cheap engine call, then the selector.

    The processes, files and stats sources all ask, each on its own clock; one listing
    serves them all for `max_age` seconds instead of one engine call per source. While a
    source's engine event stream is open, a listing serves until the engine tells of a
    start, stop or pause, or for `resync` seconds (a listing of 200 containers costs ~8 ms).
    """

    def __init__(self, client: docker.DockerClient, cache: ContainerCache, selector: Selector = Selector(),
                 max_age: float = 0.2, resync: float = 10.0):
        self.client = client
        self.cache = cache
        self.selector = selector
        self.max_age = max_age
        self.resync = resync
        self._everything = selector == Selector()
        self._listed: tuple[float, int, list[str]] = (float("-inf"), -1, [])  # when, after which change, ids
        self._lock = threading.Lock()

    def running(self) -> list[str]:
        with self._lock:
            at, changes, ids = self._listed
            max_age = self.resync if self.cache.hears_changes else self.max_age
            listed = time.monotonic() - at > max_age or changes != self.cache.running_changes
            if listed:
                changes = self.cache.running_changes  # read before listing: a change during it lists again
                ids = [c["Id"] for c in self.client.api.containers(filters={"status": "running"})]
                self._listed = (time.monotonic(), changes, ids)
        if listed:
            self.cache.refresh_not_started(ids)
        if self._everything:
            return list(ids)
        return [i for i in ids if (meta := self.cache.get(i)) is not None and self.selector.wants(meta)]

    def wants(self, container_id: str) -> bool:
        """Whether a container is one to watch, in any state: a process may exec in it before it is `running`."""
        meta = self.cache.get(container_id) or self.cache.refresh(container_id)
        return meta is not None and (self._everything or self.selector.wants(meta))
