"""Source `stats`: each running container's resource use, every `interval`.

Every `interval` one thread reads each running container's counters from its cgroup
files (cgroupstats.py); where they cannot be read (the shipper in a container without
the host's /sys/fs/cgroup, say) that container gets an Engine API stats stream, read by
a small thread, whose latest sample is used instead. Each sample becomes an event (CPU
in cores and as ECS `container.cpu.usage`, memory, pids, network and disk rates). Rates
are computed between our consecutive samples, so a container's first sample only sets
the baseline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from .. import kinds
from ..containers import Watched
from ..model import Event, event_id
from ..timefmt import iso_time
from .base import Emit, Source, close_quietly, poll
from .cgroupstats import CgroupDirs, cgroup_dirs, read_counters

log = logging.getLogger(__name__)


def counters(raw: dict[str, Any]) -> dict[str, float]:
    """The cumulative counters and gauges of one Engine API stats answer."""
    cpu = raw.get("cpu_stats") or {}
    memory = raw.get("memory_stats") or {}
    networks = raw.get("networks") or {}
    io = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    stats = memory.get("stats") or {}
    cache = stats.get("cache", stats.get("inactive_file", 0))  # v1: the page cache; v2: what can be reclaimed
    return {
        "cpu_ns": (cpu.get("cpu_usage") or {}).get("total_usage", 0),
        "online_cpus": cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1,
        "memory": max(0, memory.get("usage", 0) - cache),
        "memory_limit": memory.get("limit", 0),
        "pids": (raw.get("pids_stats") or {}).get("current", 0),
        "rx": sum(n.get("rx_bytes", 0) for n in networks.values()),
        "tx": sum(n.get("tx_bytes", 0) for n in networks.values()),
        "read": sum(e.get("value", 0) for e in io if (e.get("op") or "").lower() == "read"),
        "write": sum(e.get("value", 0) for e in io if (e.get("op") or "").lower() == "write"),
    }


def host_cpu_times(proc_root: str = "/proc") -> tuple[float, float] | None:
    """(idle, total) seconds of all CPUs since boot, from the first line of /proc/stat."""
    try:
        with open(f"{proc_root}/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle / ticks, sum(fields[:8]) / ticks


def cpu_limit_cores(attrs: dict[str, Any]) -> float | None:
    """The CPU a container may use, in cores: --cpus, or a CFS quota over its period; None when unlimited."""
    host = attrs.get("HostConfig") or {}
    if host.get("NanoCpus"):
        return host["NanoCpus"] / 1e9
    if (host.get("CpuQuota") or 0) > 0:
        return host["CpuQuota"] / (host.get("CpuPeriod") or 100_000)
    return None


def stats_fields(now: dict[str, float], before: dict[str, float], seconds: float) -> dict[str, Any]:
    """ECS `container.*` metrics, with per-second rates between two samples."""
    def rate(key: str) -> float:
        return max(0.0, (now[key] - before[key]) / seconds)

    cores = max(0.0, (now["cpu_ns"] - before["cpu_ns"]) / 1e9 / seconds)
    return {
        "cpu": {"usage": round(cores / now["online_cpus"], 4), "cores": round(cores, 4)},
        "memory": {"usage": int(now["memory"]), "limit": int(now["memory_limit"])},
        "pids": int(now["pids"]),
        "network": {"ingress": {"bytes": int(now["rx"]), "rate": round(rate("rx"), 1)},
                    "egress": {"bytes": int(now["tx"]), "rate": round(rate("tx"), 1)}},
        "disk": {"read": {"bytes": int(now["read"]), "rate": round(rate("read"), 1)},
                 "write": {"bytes": int(now["write"]), "rate": round(rate("write"), 1)}},
    }


class StatsSource(Source):
    """Every `interval`, each running container's counters from its cgroup files, all in this thread.
    Where those cannot be read, an Engine API stats stream for that container (the engine answers a
    one-shot call only at its next 1 s collection tick, so polling 50 containers in turn would take
    50 s), read by a small thread each, whose latest sample is used."""

    name = kinds.STATS.name

    def __init__(self, watched: Watched, *, interval: float = 10.0, proc_root: str = "/proc",
                 cgroup_root: str = "/sys/fs/cgroup", use_files: bool = True):
        self.watched = watched
        self.client = watched.client
        self.interval = interval
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.use_files = use_files
        self._latest: dict[str, tuple[float, dict[str, float]]] = {}
        self._used: dict[str, tuple[float, dict[str, float]]] = {}
        self._streams: dict[str, Any] = {}
        self._dirs: dict[str, tuple[int, CgroupDirs]] = {}  # container id -> (init pid, its cgroup directories)
        self._by_api: set[str] = set()  # containers whose cgroup files could not be read
        self._closed = threading.Event()
        self._host_cpu: tuple[float, tuple[float, float]] | None = None
        self.samples = 0

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        try:
            poll(self.name, self.sample, emit, self.interval, self._closed)
        finally:
            for stream in list(self._streams.values()):
                close_quietly(stream)

    def close(self) -> None:
        self._closed.set()

    def status(self) -> dict[str, Any]:
        by_api = len(self._by_api)
        return {"containers": len(self._dirs) + by_api, "samples": self.samples,
                "read_by": {"cgroup_files": len(self._dirs), "engine_api": by_api}}

    def _read_files(self, container_id: str) -> dict[str, float] | None:
        """The container's counters from its cgroup files; None when they cannot be read (then the API)."""
        if container_id in self._by_api or not self.use_files:
            return None
        known = self._dirs.get(container_id)
        counters = read_counters(known[1], known[0], self.proc_root) if known else None
        if counters is None:  # not resolved yet, or restarted (a new init pid): look again
            self._dirs.pop(container_id, None)
            for refresh in (False, True):
                known = self._resolve(container_id, refresh)
                counters = read_counters(known[1], known[0], self.proc_root) if known else None
                if counters is not None and known is not None:
                    self._dirs[container_id] = known
                    break
        return counters

    def _resolve(self, container_id: str, refresh: bool) -> tuple[int, CgroupDirs] | None:
        cache = self.watched.cache
        meta = cache.refresh(container_id) if refresh else cache.get(container_id)
        pid = (meta.attrs.get("State") or {}).get("Pid") if meta else None
        dirs = cgroup_dirs(pid, container_id, self.proc_root, self.cgroup_root) if pid else None
        return (pid, dirs) if pid and dirs else None

    def _forget(self, running: set[str]) -> None:
        for gone in set(self._streams) - running:
            close_quietly(self._streams.get(gone))
        for gone in set(self._latest) - running:
            self._latest.pop(gone, None)
            self._used.pop(gone, None)
        for gone in set(self._dirs) - running:
            del self._dirs[gone]
        self._by_api &= running

    def _follow(self, container_id: str) -> None:
        try:
            stream = self.client.api.stats(container_id, decode=True, stream=True)
            self._streams[container_id] = stream
            for raw in stream:
                if raw.get("read", "").startswith("0001-"):  # the engine's "no data yet" answer
                    continue
                self._latest[container_id] = (time.time(), counters(raw))
        except Exception as exc:  # the container stopped, or we are closing
            if not self._closed.is_set():
                log.debug("stats stream ended", extra={"container_id": container_id[:12], "error": str(exc)})
        finally:
            self._streams.pop(container_id, None)

    def sample(self) -> list[Event]:
        running = set(self.watched.running())
        self._forget(running)
        for container_id in running:
            at, counters = time.time(), self._read_files(container_id)
            if counters is not None:
                self._latest[container_id] = (at, counters)
            elif container_id not in self._streams:
                self._by_api.add(container_id)
                self._streams[container_id] = None  # claimed until the thread opens its stream
                threading.Thread(target=self._follow, args=(container_id,), name=f"stats-{container_id[:12]}",
                                 daemon=True).start()
        events = []
        idle = self._host_idle_cores()
        for container_id, (at, now) in list(self._latest.items()):
            previous = self._used.get(container_id)
            if previous is not None and previous[0] >= at:
                continue  # no newer sample since the last event
            self._used[container_id] = (at, now)
            if previous is None:
                continue  # the first sample is the baseline for rates
            self.samples += 1
            fields = stats_fields(now, previous[1], at - previous[0])
            meta = self.watched.cache.get(container_id)
            limit = cpu_limit_cores(meta.attrs) if meta else None
            if limit:
                fields["cpu"]["limit_cores"] = round(limit, 3)
            events.append(self._event(container_id, at, fields, idle))
        return events

    def _host_idle_cores(self) -> float | None:
        """How many cores the host left idle since the previous sample: with a container's use and limit,
        what it could have had (a miner on a busy host cannot reach the CPU it would on an idle one)."""
        times = host_cpu_times()
        if times is None:
            return None
        now = time.monotonic()
        previous, self._host_cpu = self._host_cpu, (now, times)
        if previous is None or now - previous[0] <= 0:
            return None
        return round(max(0.0, (times[0] - previous[1][0]) / (now - previous[0])), 3)

    def _event(self, container_id: str, at: float, fields: dict[str, Any], idle: float | None = None) -> Event:
        return Event(
            id=event_id("stats", container_id, f"{at:.6f}"),
            timestamp=iso_time(at),
            source=self.name,
            fields={
                "event": {"kind": "metric", "category": ["host"], "type": ["info"], "action": "stats",
                          "module": "shipper", "dataset": kinds.STATS.dataset},
                "message": f"cpu {fields['cpu']['cores']:.2f} cores, memory {fields['memory']['usage'] >> 20} MiB, "
                           f"{fields['pids']} pids",
                "container": fields,
                **({"shipper": {"host": {"cpu_idle_cores": idle}}} if idle is not None else {}),
            },
            container_id=container_id,
        )
