"""Source `processes`: new processes and TCP sockets in each running container, sampled from /proc.

Every `interval` the source lists each container's pids from its cgroup and reads
the ones it has not seen (a pid with its start time identifies a process), and
reads the container's network namespace through /proc/<pid>/net/tcp{,6}: new
listeners and connections become `network` events, each reported once while it
lives. A process that lives shorter than the interval may be missed: this is
sampling, not a syscall hook.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..containers import Watched
from ..model import Event, event_id
from . import procfs
from .base import Emit, Source, iso_time, poll

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    """What the source remembers of one process while it lives."""

    ns_pid: int
    name: str
    executable: str | None
    command_line: str

    def as_ecs(self) -> dict[str, Any]:
        return {"pid": self.ns_pid, "name": self.name, "executable": self.executable, "command_line": self.command_line}


@dataclass
class _Track:
    """One running container as the source follows it."""

    init_pid: int
    procs_path: str | None
    upper: str | None
    lowers: list[str]
    processes: dict[int, _Seen] = field(default_factory=dict)  # host pid -> the process seen with it
    sockets: set[tuple] = field(default_factory=set)
    listened: set[int] = field(default_factory=set)  # ports this container ever listened on
    tcp_signature: str | None = None
    users: dict[int, str] = field(default_factory=dict)


class ProcessesSource(Source):
    name = "processes"

    def __init__(self, watched: Watched, *, interval: float = 0.5,
                 network: bool = True, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup"):
        self.watched = watched
        self.cache = watched.cache
        self.interval = interval
        self.network = network
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.boot = procfs.boot_time(proc_root)
        self.ephemeral_ports = procfs.ephemeral_ports(proc_root)
        self._tracks: dict[str, _Track] = {}
        self._closed = threading.Event()
        self.samples = 0

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        poll(self.name, self.sample, emit, self.interval, self._closed)

    def close(self) -> None:
        self._closed.set()

    def status(self) -> dict[str, Any]:
        return {"containers": len(self._tracks), "processes": sum(len(t.processes) for t in self._tracks.values()),
                "samples": self.samples}

    # ------------------------------------------------------------ sampling

    def sample(self) -> list[Event]:
        self.samples += 1
        running = self.watched.running()
        for gone in set(self._tracks) - set(running):
            del self._tracks[gone]
        events: list[Event] = []
        for container_id in running:
            track = self._tracks.get(container_id) or self._track(container_id)
            if track is None:
                continue
            pids = procfs.read_pids(track.procs_path) if track.procs_path else None
            if pids is None:
                self._tracks.pop(container_id, None)  # it stopped; the next sample starts afresh
                continue
            events.extend(self._new_processes(container_id, track, pids))
            if self.network:
                events.extend(self._new_sockets(container_id, track, pids))
        return events

    def _track(self, container_id: str) -> _Track | None:
        meta = self.cache.get(container_id)
        if meta is None or not (meta.attrs.get("State") or {}).get("Pid"):
            meta = self.cache.refresh(container_id)
        pid = (meta.attrs.get("State") or {}).get("Pid") if meta else None
        if not pid:
            return None
        graph = (meta.attrs.get("GraphDriver") or {}).get("Data") or {}
        track = _Track(
            init_pid=pid,
            procs_path=procfs.cgroup_procs_path(pid, self.proc_root, self.cgroup_root),
            upper=graph.get("UpperDir"),
            lowers=[p for p in (graph.get("LowerDir") or "").split(":") if p],
        )
        self._tracks[container_id] = track
        return track

    def _new_processes(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        """Events for the pids not seen before and for programs exec'd in a known pid; the records of
        ended processes are dropped."""
        events = []
        alive = set(pids)
        # A forked shell that execs a program keeps its pid: a new name means a new program.
        execed = {pid for pid, seen in track.processes.items()
                  if pid in alive and procfs.read_comm(pid, self.proc_root) not in (seen.name, None)}
        for pid in sorted((alive - track.processes.keys()) | execed):  # parents (lower pids, usually) first
            info = procfs.read_process(pid, self.proc_root)
            if info is None:
                continue
            events.append(self._process_event(container_id, track, info, info.stat.ppid in alive))
            track.processes[pid] = _Seen(info.ns_pid, info.stat.name, info.executable, " ".join(info.args))
        for ended in track.processes.keys() - alive:
            del track.processes[ended]
        return events

    def _process_event(self, container_id: str, track: _Track, info: procfs.ProcInfo, parent_inside: bool) -> Event:
        started = iso_time(self.boot + info.stat.start_ticks / procfs.CLOCK_TICKS)
        command_line = " ".join(info.args) or f"[{info.stat.name}]"
        process: dict[str, Any] = {
            "pid": info.ns_pid,
            "host_pid": info.stat.pid,
            "name": info.stat.name,
            "executable": info.executable,
            "command_line": command_line,
            "args": info.args,
            "working_directory": info.cwd,
            "start": started,
            "upper_layer": self._only_in_upper_layer(track, info),
            "memfd": info.memfd,
            "executable_deleted": info.deleted,
            "stdin_socket": info.stdio_sockets[0],
            "stdout_socket": info.stdio_sockets[1],
            "stderr_socket": info.stdio_sockets[2],
        }
        if info.uid is not None:
            process["user"] = {"id": str(info.uid), "name": self._user_name(track, info.uid)}
        parent = self._parent(track, info.stat.ppid) if parent_inside else None  # pid 1's parent is the host's shim
        if parent:
            process["parent"] = parent
        return Event(
            id=event_id("processes", container_id, info.stat.pid, info.stat.start_ticks, info.stat.name),
            timestamp=started,
            source=self.name,
            fields={
                "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "process_started",
                          "module": "shipper", "dataset": "shipper.processes"},
                "message": f"process started: {command_line}"[:2000],
                "process": process,
            },
            container_id=container_id,
        )

    def _parent(self, track: _Track, ppid: int) -> dict[str, Any] | None:
        seen = track.processes.get(ppid)
        if seen is not None:
            return seen.as_ecs()
        info = procfs.read_process(ppid, self.proc_root)
        if info is None:
            return None
        return {"pid": info.ns_pid, "name": info.stat.name, "executable": info.executable,
                "command_line": " ".join(info.args)}

    def _only_in_upper_layer(self, track: _Track, info: procfs.ProcInfo) -> bool:
        """Written into the container after it started (drop-and-execute), not shipped in its image.

        A bind-mounted program (docker-init, a volume) leaves an empty mountpoint file in the
        upper layer: it is told apart by living on another device than the container's root.
        """
        executable = info.executable
        if not executable or not track.upper or not executable.startswith("/") or info.memfd:
            return False
        if not os.path.lexists(track.upper + executable):
            return False
        if any(os.path.lexists(lower + executable) for lower in track.lowers):
            return False
        try:
            base = f"{self.proc_root}/{info.stat.pid}"
            return os.stat(f"{base}/exe").st_dev == os.stat(f"{base}/root/").st_dev
        except OSError:
            return False

    def _user_name(self, track: _Track, uid: int) -> str:
        if uid == 0:
            return "root"
        if uid not in track.users:
            track.users.update(_passwd(f"{self.proc_root}/{track.init_pid}/root/etc/passwd"))
            track.users.setdefault(uid, str(uid))
        return track.users[uid]

    # ------------------------------------------------------------ network

    def _new_sockets(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        signature = procfs.tcp_signature(track.init_pid, self.proc_root)
        if signature is not None and signature == track.tcp_signature:
            return []
        track.tcp_signature = signature
        rows = procfs.read_tcp(track.init_pid, self.proc_root)
        if rows is None:
            return []
        track.listened |= {row.local[1] for row in rows if row.state == "LISTEN"}
        current: set[tuple] = set()
        new = []
        for row in rows:
            key = ("listen", row.family, row.local) if row.state == "LISTEN" else (row.family, row.local, row.remote)
            current.add(key)
            if key not in track.sockets:
                new.append(row)
        track.sockets = current
        if not new:
            return []
        owners = self._socket_owners(track, pids) if any(r.inode for r in new) else {}
        return [self._network_event(container_id, row, self._inbound(track, row), owners.get(row.inode)) for row in new]

    def _inbound(self, track: _Track, row: procfs.TcpRow) -> bool:
        """Who connected to whom: the side on a (once) listening port, or the side without an ephemeral port, served."""
        if row.local[1] in track.listened:
            return True
        low = self.ephemeral_ports[0]
        return row.local[1] < low <= row.remote[1]

    def _socket_owners(self, track: _Track, pids: list[int]) -> dict[int, dict[str, Any]]:
        owners = {}
        for pid in pids:
            seen = track.processes.get(pid)
            if seen is not None:
                for inode in procfs.socket_inodes(pid, self.proc_root):
                    owners[inode] = seen.as_ecs()
        return owners

    def _network_event(self, container_id: str, row: procfs.TcpRow, inbound: bool,
                       owner: dict[str, Any] | None) -> Event:
        if row.state == "LISTEN":
            action, types = "listen", ["start"]
            message = f"listening on {row.local[0]}:{row.local[1]}"
            ends = {"source": {"ip": row.local[0], "port": row.local[1]}}
        else:
            action = {"SYN_SENT": "connection_attempted", "ESTABLISHED": "connection_established"}.get(
                row.state, "connection_seen")
            types = ["connection", "start"]
            client, server = (row.remote, row.local) if inbound else (row.local, row.remote)
            ends = {"source": {"ip": client[0], "port": client[1]}, "destination": {"ip": server[0], "port": server[1]}}
            message = f"{'inbound' if inbound else 'outbound'} tcp {client[0]}:{client[1]} -> {server[0]}:{server[1]} ({row.state})"
        fields: dict[str, Any] = {
            "event": {"kind": "event", "category": ["network"], "type": types, "action": action,
                      "module": "shipper", "dataset": "shipper.network"},
            "message": message,
            **ends,
            "network": {"transport": "tcp", "type": row.family, "direction": "ingress" if inbound else "egress",
                        "state": row.state},
        }
        if owner:
            fields["process"] = owner
        return Event(
            id=event_id("network", container_id, row.family, row.local, row.remote, row.state if row.state == "LISTEN" else "",
                        row.inode),
            timestamp=iso_time(time.time()),
            source="network",
            fields=fields,
            container_id=container_id,
        )


def _passwd(path: str) -> dict[int, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as handle:
            text = handle.read(1 << 20)
    except OSError:
        return {}
    users = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            users.setdefault(int(parts[2]), parts[0])
    return users
