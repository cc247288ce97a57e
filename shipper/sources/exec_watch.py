"""Every exec in a watched container as it happens, from the kernel (see netlink.py).

One thread reads the process-events connector and, when the operator allows it,
the audit log, and does nothing that can block: it keeps a map of host pid ->
container. The host's `runc` that creates a container or execs into one names the
container in its argv: what it forks belongs to that container, and so does every
descendant (a forked child inherits its parent's place), so even a process gone
before anything of it could be read is placed. A process that is not a descendant
of a runc we saw (started before the shipper) is placed by its cgroup when it
execs. runc's own `runc init` is the runtime, not the workload, and is skipped. A
second thread decides which containers are watched (that may ask the engine) and
hands the execs on; between them, a bounded queue.

For each exec in a watched container it reads /proc/<pid> at once (file
descriptors, namespace pid, start time: what only the live process can tell) and
joins that with the audit record (the whole argv, comm, exe, uid, cwd: what the
kernel wrote down even if the process lived a millisecond). Without audit, the
/proc read is all there is; when even that is gone, what the connector and the
map know (pid, parent, name) is still reported. `on_exec` receives an `Exec`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import queue
import re
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..private import open_private
from . import netlink, procfs

log = logging.getLogger(__name__)

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
AUDIT_WAIT = 5.0  # the longest an exec told by the connector waits for its audit record (see _flush)
# An exec's audit record carries the time of its syscall's entry but is sent at its exit: a slow exec's record
# comes after records of execs begun later, on other CPUs, by about this much under load.
AUDIT_REORDER = 0.5
EXIT_GRACE = 2.0  # audit records of a process may arrive after its exit event
FLUSH_INTERVAL = 0.05
IDLE_WAIT = 0.5  # with nothing held back, the loop waits this long for a message (and to see it is closed)
HANDOFF_BATCHES = 256  # flushes waiting for the worker; more and the reader drops them (counted)


@dataclass
class Exec:
    """One exec in a container, from whatever the kernel told us."""

    container_id: str
    pid: int  # on the host
    at: float  # epoch seconds
    info: procfs.ProcInfo | None = None  # /proc read right after the exec, None when the process was gone
    audit: netlink.AuditEvent | None = None
    parent_pid: int = 0
    name: str = ""  # comm, when neither /proc nor audit had it: the name the connector last saw


@dataclass
class PacketSocket:
    container_id: str
    pid: int
    at: float
    audit: netlink.AuditEvent


@dataclass
class LinkMade:
    """A symlink made: inotify misses one made and removed in a directory the container never wrote before."""

    container_id: str
    pid: int
    at: float
    audit: netlink.AuditEvent
    path: str
    target: str


@dataclass
class ModeChange:
    """A setuid/setgid bit given to a file: inotify says only "attributes changed", after the fact."""

    container_id: str
    pid: int
    at: float
    audit: netlink.AuditEvent
    path: str  # as the process named it, made absolute with its cwd
    mode: int


Reported = Exec | PacketSocket | ModeChange | LinkMade


class ExecWatch:
    def __init__(self, is_watched: Callable[[str], bool], on_exec: Callable[[list[Reported]], None], *,
                 audit: bool = False, proc_root: str = "/proc", key: str | None = None,
                 on_lost: Callable[[int], None] | None = None, audit_state: Path | None = None):
        self.is_watched = is_watched
        self.on_exec = on_exec
        self.on_lost = on_lost
        self.proc_root = proc_root
        self.want_audit = audit
        self.audit_state = audit_state  # the audit settings found before the shipper changed them, across a crash
        self.arch = netlink.machine_arch()
        self.key = key or f"shipper-{os.getpid()}"
        self.connector: netlink.ProcConnector | None = None
        self.audit_reader: netlink.AuditReader | None = None
        self._control: netlink.AuditControl | None = None
        self._rules: list[bytes] = []
        self._restore: dict[str, int] = {}
        self._assembler = netlink.AuditAssembler()
        self._container_of: dict[int, str | None] = {}  # host pid -> container id (None: known not ours)
        self._heard: set[int] = set()  # pids whose fork or exec we were told of: ours to report, not the sampler's
        self._names: dict[int, str] = {}
        self._runc: dict[int, str] = {}  # host runc processes -> the container they create or exec into
        self._runtime: set[int] = set()  # `runc init` processes in a container: the runtime, until they exec
        self._handoff: queue.Queue[list[Reported]] = queue.Queue(HANDOFF_BATCHES)
        self._worker: threading.Thread | None = None
        self._exited: deque[tuple[float, int]] = deque()
        # Each exec is told twice, by the connector and by audit, in either order: paired per pid, in order.
        self._waiting: dict[int, deque[Exec]] = {}  # told by the connector, waiting for their audit records
        self._audited: dict[int, deque[float]] = {}  # told by audit first: when, waiting for the connector
        self._unaudited: dict[int, deque[float]] = {}  # reported without their audit record (it was late): when
        self._audit_clock = 0.0  # the time of the newest audit record read: the audit stream has got this far
        self._ready: list[Reported] = []
        self._closed = threading.Event()
        self._closing = threading.Lock()
        self._thread: threading.Thread | None = None
        self.execs = 0
        self.lost = 0  # times the kernel dropped events because we were too slow (ENOBUFS), or the worker was
        self.forks_heard = 0
        self._forks_at_start = procfs.processes_started(proc_root)

    # ------------------------------------------------------------ life cycle

    def start(self) -> bool:
        """Open the channels; False (and a warning) when the kernel refuses the connector."""
        try:
            self.connector = netlink.ProcConnector()
        except netlink.KernelChannelUnavailable as exc:
            log.warning("processes: kernel exec events unavailable, sampling /proc only", extra={"error": str(exc)})
            return False
        if self.want_audit:
            self._start_audit()
        self._thread = threading.Thread(target=self._run, name="exec-watch", daemon=True)
        self._thread.start()
        self._worker = threading.Thread(target=self._hand_on, name="exec-watch-worker", daemon=True)
        self._worker.start()
        log.info("processes: exec events from the kernel", extra={
            "connector": True, "audit": self.audit_reader is not None})
        return True

    def _start_audit(self) -> None:
        arch = self.arch
        if arch is None:
            log.warning("processes: audit exec records not set up: unknown machine %s", os.uname().machine)
            return
        try:
            self.audit_reader = netlink.AuditReader()
            self._control = netlink.AuditControl()
            self._remove_stale_rules()
            status = self._control.status()
            self._restore = self._found_settings(status)
            if not status.enabled:
                self._control.set_status(enabled=1)
            if status.backlog_limit < 8192:  # kauditd's queue: a burst of execs must not overflow it
                self._control.set_status(backlog_limit=8192)
            equal, bits = netlink.AUDIT_EQUAL, netlink.AUDIT_BIT_MASK
            rules = [netlink.audit_rule(arch.execs, arch.audit_arch, self.key),
                     netlink.audit_rule((arch.socket,), arch.audit_arch, self.key,
                                        (netlink.AUDIT_ARG0, equal, netlink.AF_PACKET))]
            rules.append(netlink.audit_rule(arch.symlinks, arch.audit_arch, self.key))
            if arch.chmods_mode_a1:
                rules.append(netlink.audit_rule(arch.chmods_mode_a1, arch.audit_arch, self.key,
                                                (netlink.AUDIT_ARG1, bits, netlink.SETID_BITS)))
            rules.append(netlink.audit_rule(arch.chmods_mode_a2, arch.audit_arch, self.key,
                                            (netlink.AUDIT_ARG2, bits, netlink.SETID_BITS)))
            for rule in rules:
                if self._control.add_rule(rule):
                    self._rules.append(rule)
        except (netlink.KernelChannelUnavailable, OSError) as exc:
            log.warning("processes: audit exec records unavailable, using the connector and /proc",
                        extra={"error": str(exc), "fix": "run as root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)"})
            self._stop_audit()
            return
        log.info("processes: audit rules installed", extra={"key": self.key, "daemon_pid": status.pid,
                                                              "restore_at_exit": self._restore})

    def _found_settings(self, status: netlink.AuditStatus) -> dict[str, int]:
        """What to put back at exit: as found now, or as a shipper that crashed before restoring found it."""
        if self.audit_state is not None and self.audit_state.exists():
            try:
                return {k: int(v) for k, v in json.loads(self.audit_state.read_text()).items()}
            except (OSError, ValueError, AttributeError):
                pass
        found = {"enabled": status.enabled, "backlog_limit": status.backlog_limit}
        if self.audit_state is not None:
            with open_private(self.audit_state, "w") as handle:
                json.dump(found, handle)
        return found

    def _remove_stale_rules(self) -> None:
        """Rules of shippers that died without removing them (killed): keyed `shipper-<pid>` of a gone pid."""
        assert self._control is not None
        for rule in self._control.rules():
            key = netlink.rule_key(rule) or ""
            owner = key[len("shipper-"):] if key.startswith("shipper-") else ""
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                self._control.delete_rule(rule)
                log.info("processes: removed an audit rule left by a shipper that is gone", extra={"key": key})

    def _stop_audit(self) -> None:
        """Put the audit subsystem back as it was: our rules removed, the settings we changed restored."""
        if self._control is not None:
            try:
                for rule in self._rules:
                    self._control.delete_rule(rule)
                if self._restore:
                    self._control.set_status(backlog_limit=self._restore["backlog_limit"])
                    self._control.set_status(enabled=self._restore["enabled"])
                if self.audit_state is not None:
                    self.audit_state.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("processes: could not remove the shipper's audit rules",
                            extra={"error": str(exc), "fix": f"auditctl -D -k {self.key}"})
            self._control.close()
        self._rules, self._restore, self._control = [], {}, None
        if self.audit_reader is not None:
            self.audit_reader.close()
            self.audit_reader = None

    def close(self) -> None:
        with self._closing:
            self._closed.set()
            if self._thread is not None:
                self._thread.join(5)
            if self._worker is not None:
                self._worker.join(5)
            self._stop_audit()
            if self.connector is not None:
                self.connector.close()

    def processes_missed(self) -> int | None:
        """How many process creations on the host the kernel made that the connector did not tell us of:
        the kernel's own count since our start, less the forks we heard (threads are not counted by either)."""
        now = procfs.processes_started(self.proc_root)
        if now is None or self._forks_at_start is None:
            return None
        return max(0, now - self._forks_at_start - self.forks_heard)

    def container_of(self, pid: int) -> str | None:
        return self._container_of.get(pid)

    def name_of(self, pid: int) -> str | None:
        """The name a process of a watched container last had, while it lives (and shortly after)."""
        return self._names.get(pid)

    def heard_of(self, pid: int) -> bool:
        """Whether the kernel told us of this process's birth or exec (then its execs are reported from here)."""
        return pid in self._heard

    def place(self, pid: int, container_id: str) -> None:
        """What the sampler found in a container's cgroup: seeds the map for processes started before us."""
        self._container_of.setdefault(pid, container_id)

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        channels = [c for c in (self.connector, self.audit_reader) if c is not None]
        next_flush = time.monotonic() + FLUSH_INTERVAL
        while not self._closed.is_set():
            # nothing held back: no flush is due before the next message, so wake only to see if we are closed
            busy = self._waiting or self._audited or self._unaudited or self._exited or self._ready
            try:
                readable, _, _ = select.select(channels, [], [], FLUSH_INTERVAL if busy else IDLE_WAIT)
            except (OSError, ValueError):
                return  # closed under us
            for channel in readable:
                self._read(channel)
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_INTERVAL
                self._flush(now)

    def _read(self, channel) -> None:
        for _ in range(256 if channel is self.connector else 2048):  # drain, but let the flush happen in a storm
            try:
                if channel is self.connector:
                    for event in self.connector.read():
                        self._on_proc_event(event)
                elif self.audit_reader is not None:
                    for kind, text in self.audit_reader.read():
                        done = self._assembler.add(kind, text)
                        if done is not None:
                            self._audit_clock = max(self._audit_clock, done.time)
                            self._on_audit(done)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._heard.clear()  # births and execs were lost: the sampler reports what it finds again
                self.lost += 1
                if self.on_lost is not None:
                    self.on_lost(1)

    def _flush(self, now: float) -> None:
        now_wall = time.time()
        # Audit records come in about time order (AUDIT_REORDER), more of them than connector events (about seven
        # per exec), so their reader lags: an exec's record is missing only once the stream has gone past it.
        deadline = now_wall - AUDIT_WAIT
        for pid, pendings in list(self._waiting.items()):
            while pendings and (self.audit_reader is None or pendings[0].at < self._audit_clock - AUDIT_REORDER
                                or pendings[0].at <= deadline):
                pending = pendings.popleft()  # no record came: what the connector and /proc told
                self._ready.append(pending)
                if self.audit_reader is not None:
                    self._unaudited.setdefault(pid, deque()).append(pending.at)
            if not pendings:
                del self._waiting[pid]
        for told in (self._audited, self._unaudited):
            for pid, times in list(told.items()):
                while times and times[0] <= deadline:
                    times.popleft()
                if not times:
                    del told[pid]
        while self._exited and self._exited[0][0] <= now:
            _, pid = self._exited.popleft()
            if pid not in self._waiting:
                self._container_of.pop(pid, None)
                self._names.pop(pid, None)
        if self._ready:
            ready, self._ready = self._ready, []
            try:
                self._handoff.put_nowait(ready)
            except queue.Full:  # the worker is behind (the pipeline is): drop, count, say so
                self.lost += 1
                if self.on_lost is not None:
                    self.on_lost(1)

    def _hand_on(self) -> None:
        """The worker: keep what happened in watched containers, and hand it on (emit may block)."""
        while not (self._closed.is_set() and self._handoff.empty()):
            try:
                ready = self._handoff.get(timeout=IDLE_WAIT)
            except queue.Empty:
                continue
            kept = [item for item in ready if self.is_watched(item.container_id)]
            self.execs += sum(1 for item in kept if isinstance(item, Exec))
            if kept:
                self.on_exec(kept)

    # ------------------------------------------------------------ what the kernel says

    def _on_proc_event(self, event: netlink.ProcEvent) -> None:
        pid = event.pid
        if event.kind == "fork" and pid == event.parent:
            return  # a new thread, not a new process
        if event.kind == "fork":
            self.forks_heard += 1
            parent = self._container_of.get(event.parent)
            if parent is not None:
                self._container_of[pid] = parent
                self._heard.add(pid)
                if event.parent in self._names:
                    self._names[pid] = self._names[event.parent]
            elif event.parent in self._runc:  # runc making a container's first process, or an exec's, or a hook
                self._container_of[pid] = self._runc[event.parent]
                self._runtime.add(pid)
            else:
                self._container_of.pop(pid, None)  # a reused pid: forget what it was
        elif event.kind == "exec":
            container_id = self._container_of.get(pid) or self._place(pid)
            if container_id is None:
                self._note_runc(pid)
                return
            self._heard.add(pid)
            if pid in self._runtime and self._is_runtime(pid, procfs.read_args(pid, self.proc_root)):
                return
            audited = self._audited.get(pid)
            if audited:
                audited.popleft()  # its audit record came first and was reported with a /proc read of its own
                return
            info = procfs.read_process(pid, self.proc_root)
            if info is not None:
                self._names[pid] = info.stat.name
            else:  # the name it had was the program's before this exec: what runs now is unknown
                self._names.pop(pid, None)
            self._waiting.setdefault(pid, deque()).append(Exec(
                container_id, pid, time.time(), info=info, parent_pid=info.stat.ppid if info else 0,
                name=self._names.get(pid, "")))
        elif event.kind == "comm":
            if self._container_of.get(pid):  # runc's init stages among them: runc:[0:PARENT] ... runc:[2:INIT]
                self._names[pid] = event.comm
        elif event.kind == "exit":
            self._runc.pop(pid, None)
            self._runtime.discard(pid)
            self._heard.discard(pid)
            if pid in self._container_of:
                self._exited.append((time.monotonic() + EXIT_GRACE, pid))

    def _is_runtime(self, pid: int, argv: list[str]) -> bool:
        """For a process runc forked, at its exec: `runc init` and hooks are the runtime; the init stage that
        named itself runc:[2:INIT] (runc clones its stages as its own children) now becomes the workload."""
        if argv[:2] == ["runc", "init"]:
            return True
        self._runtime.discard(pid)
        if self._names.get(pid, "").startswith("runc:["):
            return False
        self._container_of.pop(pid, None)  # a hook (libnetwork-setkey ...), on the host's side
        return True

    def _note_runc(self, pid: int) -> None:
        """A host process: if it is runc working on a container (`runc ... create|exec ... <id>`), remember which."""
        if procfs.read_comm(pid, self.proc_root) != "runc":
            return
        args = procfs.read_args(pid, self.proc_root)
        container_id = next((arg for arg in reversed(args) if CONTAINER_ID.fullmatch(arg)), None)
        if container_id is not None:
            self._runc[pid] = container_id

    def _place(self, pid: int) -> str | None:
        """The container a live process belongs to, from its cgroup (None: the host's, or gone already)."""
        text = procfs.read_cgroup(pid, self.proc_root)
        found = CONTAINER_ID.search(text) if text else None
        if found is None:
            return None
        self._container_of[pid] = found.group(0)
        return found.group(0)

    def _on_audit(self, event: netlink.AuditEvent) -> None:
        if not event.syscall:
            return
        pid = event.pid
        # the last resort: gone already, its fork never told (the connector overflowed), its parent may live
        container_id = self._container_of.get(pid) or self._container_of.get(event.ppid) or self._place(pid) or (
            self._place(event.ppid) if event.ppid > 1 else None)
        if container_id is None:
            return
        arch = self.arch
        number = event.syscall_number
        if event.comm.startswith("runc:") or event.argv[:2] == ["runc", "init"]:
            return  # the runtime making the container (its /dev links, host paths before pivot_root)
        if pid in self._runtime and (event.syscall_number not in (arch.execs if arch else ())
                                     or self._is_runtime(pid, event.argv)):
            return
        if arch is not None and number == arch.socket:
            self._ready.append(PacketSocket(container_id, pid, event.time, event))
            return
        if arch is not None and number in arch.symlinks:
            target, made = _symlink_paths(event)
            if event.success and made:
                self._ready.append(LinkMade(container_id, pid, event.time, event, made, target))
            return
        if arch is not None and number in arch.chmods:
            directory = bool(event.path_modes) and stat.S_ISDIR(event.path_modes[0])
            if event.success and event.paths and not directory:  # a setgid directory is a shared directory
                mode = event.argument(1 if number in arch.chmods_mode_a1 else 2)
                self._ready.append(ModeChange(container_id, pid, event.time, event,
                                              _absolute(event.paths[0], event.cwd), mode))
            return
        if not event.success:
            # a failed execve changes nothing, but an attempt to run something (from a noexec /dev/shm, say) is
            # worth reporting; "no such file" is a shell walking its PATH
            if event.syscall.get("exit") != f"-{errno.ENOENT}":
                self._ready.append(Exec(container_id, pid, event.time, audit=event, parent_pid=event.ppid))
            return
        self._container_of.setdefault(pid, container_id)
        self._names[pid] = event.comm
        late = self._unaudited.get(pid)
        if late and late[0] >= event.time:  # the record of an exec already reported without it
            late.popleft()
            return
        pendings = self._waiting.get(pid)
        if pendings:
            pending = pendings.popleft()
            if not pendings:
                del self._waiting[pid]
            pending.audit = event
            pending.at = event.time
            pending.parent_pid = pending.parent_pid or event.ppid
            self._ready.append(pending)
        else:  # the record came before the connector's event: read /proc now, while the process may live
            info = procfs.read_process(pid, self.proc_root)
            if info is not None and info.stat.name != event.comm:
                info = None  # already another program
            self._audited.setdefault(pid, deque()).append(time.time())
            self._ready.append(Exec(container_id, pid, event.time, info=info, audit=event, parent_pid=event.ppid,
                                    name=self._names.get(pid, "")))




def _absolute(path: str, cwd: str | None) -> str:
    if path.startswith("/") or not cwd:
        return path
    return posixpath.normpath(posixpath.join(cwd, path))


def _symlink_paths(event: netlink.AuditEvent) -> tuple[str, str | None]:
    """(target as written, the link made) from a symlink's PATH records: the target is the one the kernel
    did not look up (nametype UNKNOWN), the link the one it created (CREATE)."""
    target, made = "", None
    for name, kind in zip(event.paths, event.path_types):
        if kind == "UNKNOWN":
            target = name
        elif kind == "CREATE":
            made = _absolute(name, event.cwd)
    return target, made
