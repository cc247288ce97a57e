"""A container's resource counters read from its cgroup files and /proc/<init pid>/net/dev.

The Engine API's stats stream gives the same figures (the engine reads these files), but one
stream per container, decoded every second, costs more at rest than a few small reads per
container per sample. Cgroup v1 (a directory per controller) and v2 (one unified directory).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from .procfs import read_small_or_fail

V1_CONTROLLERS = ("cpuacct", "memory", "pids", "blkio")
# The engine reads the CFQ figures first and falls back to the throttle ones when those are empty.
V1_BLKIO_FILES = ("blkio.io_service_bytes_recursive", "blkio.bfq.io_service_bytes_recursive",
                  "blkio.throttle.io_service_bytes_recursive")


@dataclass(frozen=True)
class CgroupDirs:
    """Where one container's counters are: v1, a directory per controller; v2, `unified`."""

    version: int
    v1: dict[str, str]
    unified: str | None = None


def cgroup_dirs(init_pid: int, container_id: str, proc_root: str = "/proc",
                cgroup_root: str = "/sys/fs/cgroup") -> CgroupDirs | None:
    """The container's cgroup directories, from its init's /proc/<pid>/cgroup; None when they are not
    the container's (the pid was reused) or cannot be found."""
    text = _read(f"{proc_root}/{init_pid}/cgroup")
    if text is None:
        return None
    v1: dict[str, str] = {}
    unified = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if container_id not in path:
            continue
        for controller in controllers.split(","):
            if controller in V1_CONTROLLERS:
                v1[controller] = f"{cgroup_root}/{controller}{path}"
        if controllers == "":
            unified = f"{cgroup_root}{path}"
    if all(c in v1 for c in V1_CONTROLLERS):
        return CgroupDirs(1, v1)
    return CgroupDirs(2, {}, unified) if unified else None


def read_counters(dirs: CgroupDirs, init_pid: int, proc_root: str = "/proc") -> dict[str, float] | None:
    """The same counters as stats.counters() makes of an API answer; None when a file cannot be read."""
    try:
        figures = _read_v1(dirs.v1) if dirs.version == 1 else _read_v2(dirs.unified or "")
        rx, tx = network_bytes(_read_or_fail(f"{proc_root}/{init_pid}/net/dev"))
    except (OSError, ValueError):
        return None
    figures["memory_limit"] = min(figures["memory_limit"], host_memory_bytes(proc_root))
    figures.update(online_cpus=os.sysconf("SC_NPROCESSORS_ONLN"), rx=rx, tx=tx)
    return figures


def _read_v1(dirs: dict[str, str]) -> dict[str, float]:
    memory = dirs["memory"]
    cache = stat_value(_read_or_fail(f"{memory}/memory.stat"), "cache")
    read, write = 0, 0
    for name in V1_BLKIO_FILES:
        text = _read(f"{dirs['blkio']}/{name}")
        if text is not None and (figures := blkio_v1_bytes(text)) is not None:
            read, write = figures
            break
    return {
        "cpu_ns": int(_read_or_fail(f"{dirs['cpuacct']}/cpuacct.usage")),
        "memory": max(0, int(_read_or_fail(f"{memory}/memory.usage_in_bytes")) - cache),
        "memory_limit": int(_read_or_fail(f"{memory}/memory.limit_in_bytes")),
        "pids": int(_read_or_fail(f"{dirs['pids']}/pids.current")),
        "read": read,
        "write": write,
    }


def _read_v2(directory: str) -> dict[str, float]:
    inactive = stat_value(_read_or_fail(f"{directory}/memory.stat"), "inactive_file")
    limit = _read_or_fail(f"{directory}/memory.max").strip()
    read, write = io_v2_bytes(_read(f"{directory}/io.stat") or "")
    return {
        "cpu_ns": stat_value(_read_or_fail(f"{directory}/cpu.stat"), "usage_usec", None) * 1000,
        "memory": max(0, int(_read_or_fail(f"{directory}/memory.current")) - inactive),
        "memory_limit": float("inf") if limit == "max" else int(limit),
        "pids": int(_read_or_fail(f"{directory}/pids.current")),
        "read": read,
        "write": write,
    }


def stat_value(text: str, key: str, missing: int | None = 0) -> int:
    """One `key value` line of memory.stat or cpu.stat (memory.stat has ~40; one is wanted)."""
    at = text.find(f"{key} ")
    while at > 0 and text[at - 1] != "\n":  # "total_cache" is not "cache"
        at = text.find(f"\n{key} ", at) + 1 or -1
    if at < 0:
        if missing is None:
            raise ValueError(f"no {key}")
        return missing
    end = text.find("\n", at)
    return int(text[at + len(key) + 1: end if end >= 0 else None])


def blkio_v1_bytes(text: str) -> tuple[int, int] | None:
    """(read, write) bytes of a v1 `io_service_bytes_recursive` file; None when it lists no device."""
    read = write = 0
    devices = False
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # the closing "Total N"
        devices = True
        if parts[1] == "Read":
            read += int(parts[2])
        elif parts[1] == "Write":
            write += int(parts[2])
    return (read, write) if devices else None


def io_v2_bytes(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over the devices of a v2 io.stat."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def network_bytes(text: str) -> tuple[int, int]:
    """(received, sent) bytes of a network namespace's interfaces but loopback (as the engine counts)."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = numbers.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


@functools.cache
def host_memory_bytes(proc_root: str = "/proc") -> int:
    """MemTotal: the engine reports it as the limit of a container that has none."""
    for line in (_read(f"{proc_root}/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 2**63


def _read(path: str) -> str | None:
    try:
        return _read_or_fail(path)
    except OSError:
        return None


def _read_or_fail(path: str) -> str:
    return read_small_or_fail(path).decode()
