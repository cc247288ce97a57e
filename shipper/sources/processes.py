"""Source `processes`: new processes, TCP and packet sockets in each running container.

Execs are reported as they happen from the kernel's process-events connector and,
when `audit` is on, the audit log's execve records (see exec_watch.py): a process
that lives a millisecond is still seen with its command line. Every `interval` the
source also samples: it lists each container's pids from its cgroup and reads the
ones it has not seen (processes started before the shipper, and a safety net when
the kernel dropped events), and reads the container's network namespace through
/proc/<pid>/net/tcp{,6} and /proc/<pid>/net/packet: new listeners, connections and
packet sockets become `network` events, each reported once while it lives. Without
the kernel channels (no root) only the sampling runs, and a process shorter than
the interval may be missed.

When the program is an interpreter running a script file (`sh /tmp/x`, or a
`#!` script run directly), the script is reported under `shipper.process.script`.
With audit on, a chmod that sets the setuid/setgid bit and a symlink made are
reported as `files` events from the same records, and `socket(AF_PACKET)` calls as
`network` events as they happen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import kinds
from ..containers import Watched
from ..model import Event, event_id
from ..timefmt import iso_time, parse_time
from . import procfs
from .base import Batch, Emit, Source, poll
from .exec_watch import Exec, ExecWatch, LinkMade, ModeChange, PacketSocket, Reported

log = logging.getLogger(__name__)

# With kernel exec events, a container they told nothing of has its /proc processes read every this many
# samples (5 s at the default 0.5 s): what still runs after events were lost without an overflow
# (a fork that never exec'd, say) is found that much later. Its sockets are read every sample.
QUIET_EVERY = 10


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
    net: procfs.NetnsFiles | None = None  # its namespace's socket counters, kept open
    packet_sockets: set[int] = field(default_factory=set)
    users: dict[int, str] = field(default_factory=dict)
    heard: bool = True  # the kernel told of an exec in it since its last full sample (a new track: yes)
    quiet_samples: int = 0  # samples since its last full one


class ProcessesSource(Source):
    name = kinds.PROCESSES.name

    def __init__(self, watched: Watched, *, interval: float = 0.5, network: bool = True, realtime: bool = True,
                 audit: bool = False, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup",
                 hash_max_bytes: int = 1 << 20, metrics=None, state_directory: str | None = None,
                 startup_seconds: float = 5.0):
        self.watched = watched
        self.cache = watched.cache
        self.interval = interval
        self.network = network
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.boot = procfs.boot_time(proc_root)
        self.ephemeral_ports = procfs.ephemeral_ports(proc_root)
        self.realtime = realtime
        self.audit = audit
        self.hash_max_bytes = hash_max_bytes
        self.metrics = metrics
        self.state_directory = state_directory
        self.startup_seconds = startup_seconds  # as the files source: file events this soon after a start are marked
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()  # tracks are shared by the sampler and the exec watcher
        self._closed = threading.Event()
        self._emit: Emit | None = None
        self._watch: ExecWatch | None = None
        self._decisions: dict[str, bool] = {}  # container id -> watched? (the selector's answer never changes)
        self._lost_seen = 0  # the exec watch's overflow count at the last sample
        self._keep_open_budget = procfs.open_files_budget(len(procfs.NetnsFiles.NAMES))  # containers
        self._kept_open = 0
        self.samples = 0
        self.full_samples = 0  # containers whose processes were read from /proc

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        self._emit = emit
        if self.realtime:
            watch = ExecWatch(self._is_watched, self._on_kernel, audit=self.audit, proc_root=self.proc_root,
                              on_lost=self._lost, audit_state=Path(self.state_directory) / "audit-settings.json"
                              if self.state_directory else None)
            if watch.start():
                self._watch = watch
        try:
            poll(self.name, self.sample, emit, self.interval, self._closed)
        finally:
            if self._watch is not None:
                self._watch.close()  # idempotent

    def close(self) -> None:
        self._closed.set()
        if self._watch is not None:  # now, not in the source thread: audit rules must go even if the process exits
            self._watch.close()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"containers": len(self._tracks), "processes": sum(len(t.processes) for t in self._tracks.values()),
               "samples": self.samples, "containers_read_from_proc": self.full_samples}
        if self._watch is not None:
            out.update(kernel_execs=self._watch.execs, kernel_overflows=self._watch.lost,
                       processes_missed=self._watch.processes_missed(), audit=self._watch.audit_reader is not None)
        return out

    def _is_watched(self, container_id: str) -> bool:
        known = self._decisions.get(container_id)
        if known is None:
            if len(self._decisions) > 10_000:
                self._decisions.clear()
            known = self._decisions[container_id] = self.watched.wants(container_id)
            log.debug("processes: a container seen first by the kernel", extra={
                "container_id": container_id[:12], "watched": known})
        return known

    def _lost(self, count: int) -> None:
        """The kernel dropped events (our socket was full): the next sample resyncs from /proc."""
        if self.metrics is not None:
            self.metrics.kernel_events_lost.inc(count)
        lost = self._watch.lost if self._watch is not None else count
        if lost in (1, 10, 100, 1000) or lost % 10000 == 0:  # say it, without flooding the log under a storm
            log.warning("processes: the kernel dropped process events (the shipper fell behind); sampling /proc "
                        "catches up with what still runs", extra={
                            "overflows": lost,
                            "processes_missed": self._watch.processes_missed() if self._watch else None})

    # ------------------------------------------------------------ from the kernel

    def _on_kernel(self, items: list[Reported]) -> None:
        events = []
        with self._lock:
            for item in items:
                track = self._tracks.get(item.container_id) or self._track(item.container_id, refresh=False) or \
                    self._starting(item.container_id, item.pid)
                if track is None:
                    continue
                if isinstance(item, PacketSocket):
                    events.append(self._packet_event(item.container_id, item.pid, item.at,
                                                     self._audit_process(item.audit, track)))
                    continue
                if isinstance(item, (ModeChange, LinkMade)):
                    events.append(self._file_event(item))
                    continue
                track.heard = True
                event = self._exec_event(track, item)
                if event is not None:
                    events.append(event)
        if events and self._emit is not None:
            self._emit(Batch(self.name, events))

    def _exec_event(self, track: _Track, item: Exec) -> Event | None:
        info, audit = item.info, item.audit
        if audit is not None and not audit.success:
            attempted = audit.paths[0] if audit.paths else ""
            if attempted and not attempted.startswith("/") and audit.cwd:
                attempted = posixpath.normpath(posixpath.join(audit.cwd, attempted))
            name = posixpath.basename(attempted)[:15] or audit.comm
            info = procfs.ProcInfo(procfs.ProcStat(item.pid, name, audit.ppid, 0), 0, audit.uid, attempted or None,
                                   False, False, [attempted] if attempted else [], audit.cwd, (False, False, False))
        elif audit is not None:
            exe = audit.exe or (info.executable if info else None)
            deleted = bool(exe and exe.endswith(procfs.DELETED_SUFFIX))
            if exe and deleted:
                exe = exe[: -len(procfs.DELETED_SUFFIX)]
            memfd = bool(exe and exe.startswith(procfs.MEMFD_PREFIX))
            stat_ = procfs.ProcStat(item.pid, audit.comm, audit.ppid, info.stat.start_ticks if info else 0)
            info = procfs.ProcInfo(
                stat=stat_, ns_pid=info.ns_pid if info else 0, uid=audit.uid if audit.uid is not None else (
                    info.uid if info else None),
                executable=exe, deleted=deleted and not memfd, memfd=memfd,
                args=audit.argv or (info.args if info else []), cwd=audit.cwd or (info.cwd if info else None),
                stdio_sockets=info.stdio_sockets if info else (False, False, False), login_uid=audit.login_uid)
        elif info is None:  # gone before /proc could be read, and no audit record: what the connector knows
            info = procfs.ProcInfo(procfs.ProcStat(item.pid, item.name, item.parent_pid, 0), 0, None, None,
                                   False, False, [], None, (False, False, False))
        seen = track.processes.get(item.pid)
        if seen is not None and seen.name == info.stat.name and seen.command_line == " ".join(info.args):
            return None  # the sampler was first
        parent_inside = item.parent_pid in track.processes or (
            self._watch is not None and self._watch.container_of(item.parent_pid) == item.container_id)
        if audit is not None and not audit.success:  # the program did not run: the pid is still what it was
            return self._process_event(item.container_id, track, info, parent_inside, at=item.at,
                                       failed=audit.syscall.get("exit", ""))
        track.processes[item.pid] = _Seen(info.ns_pid, info.stat.name, info.executable, " ".join(info.args))
        return self._process_event(item.container_id, track, info, parent_inside, at=item.at)

    def _audit_process(self, audit, track: _Track | None = None) -> dict[str, Any]:
        """The process behind an audited syscall: as we know it (its exec), else as audit's PROCTITLE has it."""
        seen = track.processes.get(audit.pid) if track is not None else None
        command_line = seen.command_line if seen is not None and seen.name == audit.comm else " ".join(
            audit.proctitle)
        return {"host_pid": audit.pid, "pid": seen.ns_pid if seen is not None and seen.ns_pid else None,
                "name": audit.comm, "executable": audit.exe, "command_line": command_line or None}

    def _file_event(self, item: ModeChange | LinkMade) -> Event:
        """A file event from the kernel's record of a chmod that set the setuid/setgid bit, or of a symlink made:
        what inotify, which reads the file after the fact, loses when the file is gone at once."""
        directory, _, name = item.path.rpartition("/")
        file: dict[str, Any] = {"path": item.path, "name": name, "directory": directory or "/"}
        track = self._tracks.get(item.container_id)
        process = {k: v for k, v in self._audit_process(item.audit, track).items() if v is not None}
        fields: dict[str, Any] = {"process": process}
        own: dict[str, Any] = {}
        meta = self.cache.get(item.container_id)
        started = parse_time((meta.attrs.get("State") or {}).get("StartedAt", "")) if meta else None
        if started is not None and item.at - started < self.startup_seconds:
            own["during_startup"] = True
        if isinstance(item, ModeChange):
            action, types = "attributes_modification", ["change"]
            file["mode"] = f"{item.mode & 0o7777:04o}"
            if item.mode & stat.S_ISUID:
                own["setuid"] = True
            if item.mode & stat.S_ISGID:
                own["setgid"] = True
            detail = f"mode {file['mode']}"
        else:
            action, types = "creation", ["creation"]
            file.update(type="symlink", target_path=item.target)
            detail = f"-> {item.target}"
        if own:
            fields["shipper"] = {"file": own}
        fields.update(
            event={"kind": "event", "category": ["file"], "type": types, "action": action, "module": "shipper",
                   "dataset": kinds.FILES.dataset},
            message=f"file {action.replace('_', ' ')}: {item.path} ({detail}, by {process.get('name')})",
            file=file,
        )
        return Event(id=event_id("files", item.container_id, item.path, action, item.audit.serial, f"{item.at:.3f}"),
                     timestamp=iso_time(item.at), source=kinds.FILES.name, fields=fields, container_id=item.container_id)

    # ------------------------------------------------------------ sampling

    def sample(self) -> list[Event]:
        with self._lock:
            return self._sample()

    def _sample(self) -> list[Event]:
        self.samples += 1
        running = self.watched.running()
        for gone in set(self._tracks) - set(running):
            self._drop(gone)
        lost = self._watch.lost if self._watch is not None else 0
        everything, self._lost_seen = lost != self._lost_seen, lost  # after an overflow, all at once
        events: list[Event] = []
        for container_id in running:
            track = self._tracks.get(container_id) or self._track(container_id)
            if track is None:
                continue
            if everything or self._due(track):
                pids = procfs.read_pids(track.procs_path) if track.procs_path else None
                if pids is None:
                    self._drop(container_id)  # it stopped; the next sample starts afresh
                    continue
                events.extend(self._sample_processes(container_id, track, pids))
            else:
                pids = list(track.processes)  # as last read: owners of new sockets are looked up among them
            if self.network:
                events.extend(self._new_sockets(container_id, track, pids))
                events.extend(self._new_packet_sockets(container_id, track, pids))
        return events

    def _drop(self, container_id: str) -> None:
        track = self._tracks.pop(container_id, None)
        if track is not None and track.net is not None and track.net.usable:
            track.net.close()
            self._kept_open -= 1

    def _due(self, track: _Track) -> bool:
        """Whether to read a container's processes from /proc this sample. With the kernel's exec events
        on, /proc is the safety net: a container the kernel told nothing of since its last full sample
        is read every QUIET_EVERY samples (after an overflow every container is read at once)."""
        track.quiet_samples += 1
        if self._watch is not None and not track.heard and track.quiet_samples < QUIET_EVERY:
            return False
        track.heard, track.quiet_samples = False, 0
        return True

    def _sample_processes(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        self.full_samples += 1
        if self._watch is not None:
            for pid in pids:
                self._watch.place(pid, container_id)
        return self._new_processes(container_id, track, pids)

    def _track(self, container_id: str, refresh: bool = True) -> _Track | None:
        """`refresh`: ask the engine again when the cached metadata has no init pid yet (the sampler can wait;
        an exec just reported by the kernel is better served at once by `_starting`)."""
        meta = self.cache.get(container_id)
        if refresh and (meta is None or not (meta.attrs.get("State") or {}).get("Pid")):
            meta = self.cache.refresh(container_id)
        pid = (meta.attrs.get("State") or {}).get("Pid") if meta else None
        if meta is None or not pid:
            return None
        procs_path = procfs.cgroup_procs_path(pid, self.proc_root, self.cgroup_root)
        if procs_path is None or container_id not in procs_path:
            return None  # the container's init is gone and its pid belongs to someone else now (the host, say)
        graph = (meta.attrs.get("GraphDriver") or {}).get("Data") or {}
        track = _Track(
            init_pid=pid,
            procs_path=procs_path,
            upper=graph.get("UpperDir"),
            lowers=[p for p in (graph.get("LowerDir") or "").split(":") if p],
        )
        self._tracks[container_id] = track
        return track

    def _starting(self, container_id: str, pid: int) -> _Track | None:
        """A container whose first process execs before the engine says it runs: a track for this one event,
        with the exec'ing process standing in for the container's init."""
        meta = self.cache.get(container_id)
        if meta is None:
            return None
        graph = (meta.attrs.get("GraphDriver") or {}).get("Data") or {}
        return _Track(init_pid=pid, procs_path=None, upper=graph.get("UpperDir"),
                      lowers=[p for p in (graph.get("LowerDir") or "").split(":") if p])

    def _new_processes(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        """Events for the pids not seen before and for programs exec'd in a known pid; the records of
        ended processes are dropped."""
        events = []
        alive = set(pids)
        # A forked shell that execs a program keeps its pid: a new name means a new program.
        execed = {pid for pid, seen in track.processes.items()
                  if pid in alive and procfs.read_comm(pid, self.proc_root) not in (seen.name, None)}
        if self._watch is not None:  # what the kernel told of is reported from there, not twice
            alive_unheard = {pid for pid in alive if not self._watch.heard_of(pid)}
            execed &= alive_unheard
        else:
            alive_unheard = alive
        for pid in sorted((alive_unheard - track.processes.keys()) | execed):  # parents (lower pids) first
            info = procfs.read_process(pid, self.proc_root)
            if info is None:
                continue
            events.append(self._process_event(container_id, track, info, info.stat.ppid in alive))
            track.processes[pid] = _Seen(info.ns_pid, info.stat.name, info.executable, " ".join(info.args))
        for ended in track.processes.keys() - alive:
            del track.processes[ended]
        return events

    def _process_event(self, container_id: str, track: _Track, info: procfs.ProcInfo, parent_inside: bool,
                       at: float | None = None, failed: str | None = None) -> Event:
        """`at`: when the kernel reported the exec (the start time from /proc is only to 10 ms, or unknown);
        `failed`: the error of an execve that did not run the program."""
        ticks = info.stat.start_ticks
        started = iso_time(at if at is not None else self.boot + ticks / procfs.CLOCK_TICKS)
        # an empty name: the kernel told of an exec whose process was gone before anything said which program
        command_line = " ".join(info.args) or (f"[{info.stat.name}]" if info.stat.name else None)
        process: dict[str, Any] = {
            "pid": info.ns_pid or None,
            "host_pid": info.stat.pid,
            "name": info.stat.name or None,
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
        fields: dict[str, Any] = {
            "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "process_started",
                      "module": "shipper", "dataset": kinds.PROCESSES.dataset},
            "message": f"process started: {command_line or 'a program not known (it ended at once)'}"[:2000],
            "process": {k: v for k, v in process.items() if v is not None},
        }
        if failed is not None:
            fields["event"].update(type=["start"], action="exec_failed", outcome="failure")
            fields["message"] = f"exec failed ({failed}): {command_line}"[:2000]
        own: dict[str, Any] = {}
        script = self._script(track, info)
        if script:
            own["script"] = script
        if info.login_uid is not None:
            own["login_uid"] = info.login_uid
        if own:
            fields["shipper"] = {"process": own}
        identity = (ticks, info.stat.name) if ticks else ("exec", f"{at:.6f}", info.stat.name, failed or "")
        return Event(
            id=event_id("processes", container_id, info.stat.pid, *identity),
            timestamp=started,
            source=self.name,
            fields=fields,
            container_id=container_id,
        )

    def _script(self, track: _Track, info: procfs.ProcInfo) -> dict[str, Any] | None:
        """The script an interpreter runs (`sh /tmp/x`, `python3 x.py`, a `#!` file run directly), as found
        in the container: its path, whether it was written after the container started, its sha256."""
        path = script_argument(info.executable, info.args)
        if path is None:
            return None
        if not path.startswith("/"):
            if not info.cwd:
                return None
            path = posixpath.join(info.cwd, path)
        path = posixpath.normpath(path)
        name = posixpath.basename(path)
        upper = track.upper is not None and os.path.lexists(track.upper + path)
        candidates = ([f"{track.upper}{path}"] if upper else []) + [
            f"{self.proc_root}/{info.stat.pid}/root{path}"] + [lower + path for lower in track.lowers]
        found = next((c for c in candidates if _is_file(c)), None)
        if found is None:
            return None  # not a file: an option's value, a module name
        script: dict[str, Any] = {"path": path, "name": name, "directory": posixpath.dirname(path),
                                  "upper_layer": upper and not any(os.path.lexists(low + path) for low in track.lowers)}
        digest = _sha256(found, self.hash_max_bytes)
        if digest:
            script["hash"] = {"sha256": digest}
        return script

    def _parent(self, track: _Track, ppid: int) -> dict[str, Any] | None:
        seen = track.processes.get(ppid)
        if seen is not None:
            return seen.as_ecs()
        info = procfs.read_process(ppid, self.proc_root)
        if info is None:  # gone already (a server's per-request child): the name the kernel last gave it
            name = self._watch.name_of(ppid) if self._watch is not None else None
            return {"host_pid": ppid, "name": name} if name else None
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
        except OSError:  # gone already: a mount point's stand-in in the upper layer is an empty file
            try:
                found = os.lstat(track.upper + executable)
            except OSError:
                return False
            return stat.S_ISREG(found.st_mode) and found.st_size > 0

    def _user_name(self, track: _Track, uid: int) -> str:
        if uid == 0:
            return "root"
        if uid not in track.users:
            track.users.update(_passwd(f"{self.proc_root}/{track.init_pid}/root/etc/passwd"))
            track.users.setdefault(uid, str(uid))
        return track.users[uid]

    # ------------------------------------------------------------ network

    def _new_sockets(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        if (track.net is None or not track.net.usable) and self._kept_open < self._keep_open_budget:
            track.net = procfs.NetnsFiles(track.init_pid, self.proc_root)
            self._kept_open += track.net.usable
        signature = (track.net.tcp_signature() if track.net and track.net.usable
                     else procfs.tcp_signature(track.init_pid, self.proc_root))
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

    def _new_packet_sockets(self, container_id: str, track: _Track, pids: list[int]) -> list[Event]:
        inodes = (track.net.packet_socket_inodes() if track.net and track.net.usable
                  else procfs.packet_socket_inodes(track.init_pid, self.proc_root))
        new = inodes - track.packet_sockets
        track.packet_sockets = inodes
        if not new:
            return []
        owners = self._socket_owners(track, pids)
        return [self._packet_event(container_id, owners.get(inode, {}).get("pid") or 0, time.time(),
                                   owners.get(inode), inode) for inode in sorted(new)]

    def _packet_event(self, container_id: str, pid: int, at: float, owner: dict[str, Any] | None,
                      inode: int = 0) -> Event:
        """A packet socket sees every frame on an interface: the tool of sniffers and raw scanners."""
        who = f" by {owner.get('name')} ({owner.get('command_line', '')[:200]})" if owner else ""
        fields: dict[str, Any] = {
            "event": {"kind": "event", "category": ["network"], "type": ["start"], "action": "packet_socket_opened",
                      "module": "shipper", "dataset": kinds.NETWORK.dataset},
            "message": f"packet socket opened{who}",
            "shipper": {"network": {"socket_family": "packet"}},
        }
        if owner:
            fields["process"] = {k: v for k, v in owner.items() if v is not None}
        return Event(id=event_id("network", container_id, "packet", pid, inode or f"{at:.6f}"), timestamp=iso_time(at),
                     source=kinds.NETWORK.name, fields=fields, container_id=container_id)

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
                      "module": "shipper", "dataset": kinds.NETWORK.dataset},
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
            source=kinds.NETWORK.name,
            fields=fields,
            container_id=container_id,
        )


INTERPRETER = re.compile(r"(?:sh|ash|dash|bash|zsh|ksh|mksh|busybox|python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs"
                         r"|php[0-9.]*|lua[0-9.]*)")
SHELLS = frozenset({"sh", "ash", "dash", "bash", "zsh", "ksh", "mksh"})
NO_SCRIPT_FLAGS = frozenset({"-c", "-e", "-E", "-m", "-r", "--eval", "--command", "-"})


def script_argument(executable: str | None, args: list[str]) -> str | None:
    """The script file an interpreter was asked to run, as written in argv; None for `sh -c ...`, `python -m`."""
    if not executable or not args:
        return None
    program = posixpath.basename(executable)
    if not INTERPRETER.fullmatch(program):
        return None
    rest = args[1:]
    if program == "busybox" and posixpath.basename(args[0]) not in SHELLS:
        if posixpath.basename(args[0]) != "busybox" or not rest or rest[0] not in SHELLS:
            return None  # another applet (ls, cat ...), not the shell
        rest = rest[1:]
    for arg in rest:
        if arg in NO_SCRIPT_FLAGS or (arg.startswith("-") and arg[1:2] in ("c", "e", "m") and len(arg) > 2):
            return None
        if arg.startswith("-"):
            continue
        return arg
    return None


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _sha256(path: str, limit: int) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest() if len(data) <= limit else None


def _passwd(path: str) -> dict[int, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as handle:
            text = handle.read(1 << 20)
    except OSError:
        return {}
    users: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            users.setdefault(int(parts[2]), parts[0])
    return users
