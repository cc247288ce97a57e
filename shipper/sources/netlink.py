"""The kernel's own reports of what processes do, read from netlink sockets.

Two channels, both optional and both needing root:

- the process-events connector (NETLINK_CONNECTOR, group CN_IDX_PROC): fork, exec,
  comm and exit of every process on the host, as they happen. It names pids only:
  a process that exits within a millisecond is gone before /proc can be read.
- the audit subsystem (NETLINK_AUDIT): with an `execve` rule, one SYSCALL record
  (pid, ppid, uid, comm, exe) and one EXECVE record (the whole argv) per exec, even
  for processes that are already gone. Records are read from the read-only multicast
  group, so a running auditd keeps working; rules the shipper adds carry its own key
  and are removed when it stops.

This module only speaks the protocols; processes.py decides what the messages mean.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import socket
import struct
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
NETLINK_AUDIT = 9
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns

PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_COMM = 0x200
PROC_EVENT_EXIT = 0x80000000


class KernelChannelUnavailable(Exception):
    """The kernel refused a channel (no privilege, no such subsystem): the caller falls back."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    kind: str  # "fork", "exec", "comm", "exit"
    pid: int  # the thread group (process) id the event is about: the child for a fork
    parent: int = 0  # fork: the parent's tgid; exit: the parent's tgid
    comm: str = ""  # comm events only


def parse_proc_events(data: bytes) -> list[ProcEvent]:
    """The process events in one datagram from the connector (one per netlink message)."""
    events = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, offset)[0]
        if length < _NLMSG.size:
            break
        body = offset + _NLMSG.size + _CN_MSG.size
        if body + _PROC_EVENT.size <= offset + length:
            what = _PROC_EVENT.unpack_from(data, body)[0]
            payload = body + _PROC_EVENT.size
            event = _proc_event(what, data, payload)
            if event is not None:
                events.append(event)
        offset += (length + 3) & ~3
    return events


def _proc_event(what: int, data: bytes, at: int) -> ProcEvent | None:
    if what == PROC_EVENT_FORK:
        _, parent_tgid, _, child_tgid = struct.unpack_from("=4I", data, at)
        return ProcEvent("fork", child_tgid, parent_tgid)
    if what == PROC_EVENT_EXEC:
        _, tgid = struct.unpack_from("=2I", data, at)
        return ProcEvent("exec", tgid)
    if what == PROC_EVENT_COMM:
        pid, tgid = struct.unpack_from("=2I", data, at)
        if pid != tgid:
            return None  # a thread renamed itself, not the process
        comm = data[at + 8: at + 24].split(b"\0", 1)[0].decode("utf-8", "replace")
        return ProcEvent("comm", tgid, comm=comm)
    if what == PROC_EVENT_EXIT:
        pid, tgid, _, _, _, parent_tgid = struct.unpack_from("=6I", data, at)
        if pid != tgid:
            return None  # a thread ended, the process lives on
        return ProcEvent("exit", tgid, parent_tgid)
    return None


class ProcConnector:
    """A subscription to the process-events connector. `fileno()` for select; `read()` for events."""

    def __init__(self, receive_buffer: int = 4 << 20):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise KernelChannelUnavailable(f"process-events connector: {exc.strerror}") from exc
        try:
            _grow_buffer(self.sock, receive_buffer)
            self.sock.bind((0, CN_IDX_PROC))
            op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
            cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            self.sock.send(_NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn)
        except OSError as exc:
            self.sock.close()
            raise KernelChannelUnavailable(f"process-events connector: {exc.strerror or exc} "
                                           "(needs root or CAP_NET_ADMIN)") from exc

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[ProcEvent]:
        """Raises OSError(ENOBUFS) when the kernel dropped events because we were too slow."""
        return parse_proc_events(self.sock.recv(65536, socket.MSG_DONTWAIT))

    def close(self) -> None:
        self.sock.close()


def _grow_buffer(sock: socket.socket, size: int) -> None:
    try:  # as root, past net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


# ------------------------------------------------------------------ audit

AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
AUDIT_LIST_RULES = 1013
AUDIT_SYSCALL = 1300
AUDIT_PATH = 1302
AUDIT_CWD = 1307
AUDIT_EXECVE = 1309
AUDIT_EOE = 1320
AUDIT_PROCTITLE = 1327
AUDIT_NLGRP_READLOG = 1
AUDIT_STATUS_ENABLED = 0x1
AUDIT_STATUS_BACKLOG_LIMIT = 0x10
AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_ARCH_FIELD = 11
AUDIT_ARG0 = 200
AUDIT_ARG1 = 201
AUDIT_ARG2 = 202
AUDIT_FILTERKEY = 210
AUDIT_EQUAL = 0x40000000
AUDIT_BIT_MASK = 0x08000000  # (argument & value) != 0
AUDIT_BITMASK_SIZE = 64
AF_PACKET = 17
_STATUS = struct.Struct("=8I")  # mask, enabled, failure, pid, rate_limit, backlog_limit, lost, backlog

SETID_BITS = 0o6000  # S_ISUID | S_ISGID


@dataclass(frozen=True)
class Arch:
    """A machine's audit arch id and the numbers of the syscalls the shipper audits."""

    audit_arch: int
    execs: tuple[int, ...]  # execve, execveat
    socket: int
    chmods_mode_a1: tuple[int, ...]  # chmod(path, mode)
    chmods_mode_a2: tuple[int, ...]  # fchmodat(dirfd, path, mode), fchmodat2
    symlinks: tuple[int, ...]  # symlink, symlinkat

    @property
    def chmods(self) -> tuple[int, ...]:
        return self.chmods_mode_a1 + self.chmods_mode_a2


ARCHES = {"x86_64": Arch(0xC000003E, (59, 322), 41, (90,), (268, 452), (88, 266)),
          "aarch64": Arch(0xC00000B7, (221, 281), 198, (), (53, 452), (36,))}


@dataclass(frozen=True)
class AuditStatus:
    enabled: int
    pid: int  # the registered audit daemon, 0 when none
    backlog_limit: int
    lost: int


def audit_rule(syscalls: tuple[int, ...], arch: int, key: str, *conditions: tuple[int, int, int]) -> bytes:
    """`struct audit_rule_data` for `-a exit,always -F arch=.. -S .. [-F a0=..] -k key`;
    `conditions` are (field, operator, value), e.g. (AUDIT_ARG0, AUDIT_EQUAL, AF_PACKET)."""
    mask = [0] * AUDIT_BITMASK_SIZE
    for number in syscalls:
        mask[number // 32] |= 1 << (number % 32)
    encoded_key = key.encode()
    fields = [(AUDIT_ARCH_FIELD, AUDIT_EQUAL, arch), *conditions, (AUDIT_FILTERKEY, AUDIT_EQUAL, len(encoded_key))]
    padding = [0] * (AUDIT_BITMASK_SIZE - len(fields))
    names = [name for name, _, _ in fields] + padding
    values = [value for _, _, value in fields] + padding
    flags = [operator for _, operator, _ in fields] + padding
    return (struct.pack("=3I", AUDIT_FILTER_EXIT, AUDIT_ALWAYS, len(fields))
            + struct.pack(f"={AUDIT_BITMASK_SIZE}I", *mask)
            + struct.pack(f"={AUDIT_BITMASK_SIZE}I", *names)
            + struct.pack(f"={AUDIT_BITMASK_SIZE}I", *values)
            + struct.pack(f"={AUDIT_BITMASK_SIZE}I", *flags)
            + struct.pack("=I", len(encoded_key)) + encoded_key)


class AuditControl:
    """Requests to the audit subsystem (status, rules): needs CAP_AUDIT_CONTROL."""

    def __init__(self):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            self.sock.bind((0, 0))
            self.sock.settimeout(2.0)
        except OSError as exc:
            raise KernelChannelUnavailable(f"audit: {exc.strerror or exc}") from exc
        self._seq = 0

    def request(self, kind: int, payload: bytes = b"") -> bytes:
        """Send one request and wait for its answer (or its ack); raise the kernel's refusal as OSError."""
        self._seq += 1
        self.sock.send(_NLMSG.pack(_NLMSG.size + len(payload), kind, NLM_F_REQUEST | NLM_F_ACK, self._seq, 0) + payload)
        while True:
            data = self.sock.recv(65536)
            length, answer_type, _, seq, _ = _NLMSG.unpack_from(data)
            if seq != self._seq:
                continue
            body = data[_NLMSG.size:length]
            if answer_type == NLMSG_ERROR:
                code = -struct.unpack_from("=i", body)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                if kind != AUDIT_GET:
                    return b""
                continue  # the ack of a GET follows its answer
            return body

    def status(self) -> AuditStatus:
        fields = _STATUS.unpack_from(self.request(AUDIT_GET).ljust(_STATUS.size, b"\0"))
        return AuditStatus(enabled=fields[1], pid=fields[3], backlog_limit=fields[5], lost=fields[6])

    def set_status(self, *, enabled: int | None = None, backlog_limit: int | None = None) -> None:
        mask = (AUDIT_STATUS_ENABLED if enabled is not None else 0) | (
            AUDIT_STATUS_BACKLOG_LIMIT if backlog_limit is not None else 0)
        self.request(AUDIT_SET, _STATUS.pack(mask, enabled or 0, 0, 0, 0, backlog_limit or 0, 0, 0))

    def add_rule(self, rule: bytes) -> bool:
        """True when added, False when an identical rule is already there."""
        try:
            self.request(AUDIT_ADD_RULE, rule)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def rules(self) -> list[bytes]:
        """Every audit rule, as the `struct audit_rule_data` the kernel holds (what `delete_rule` takes)."""
        self._seq += 1
        self.sock.send(_NLMSG.pack(_NLMSG.size, AUDIT_LIST_RULES, NLM_F_REQUEST | NLM_F_ACK, self._seq, 0))
        found: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, seq, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    return found
                body = data[offset + _NLMSG.size: offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                elif kind == AUDIT_LIST_RULES:
                    found.append(body)

    def delete_rule(self, rule: bytes) -> None:
        try:
            self.request(AUDIT_DEL_RULE, rule)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        self.sock.close()


class AuditReader:
    """The read-only multicast copy of every audit record: needs CAP_AUDIT_READ."""

    def __init__(self, receive_buffer: int = 8 << 20):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            _grow_buffer(self.sock, receive_buffer)
            self.sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        except OSError as exc:
            raise KernelChannelUnavailable(f"audit log multicast: {exc.strerror or exc} "
                                           "(needs root or CAP_AUDIT_READ)") from exc

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[int, str]]:
        """(record type, text) of the records in one datagram; OSError(ENOBUFS) when records were dropped."""
        data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        out = []
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, kind = _NLMSG.unpack_from(data, offset)[:2]
            if length < _NLMSG.size:
                length = len(data) - offset  # multicast records may carry a bare payload length
            text = data[offset + _NLMSG.size: offset + length].rstrip(b"\0").decode("utf-8", "replace")
            out.append((kind, text))
            offset += (length + 3) & ~3
        return out

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ audit records

_HEADER = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s*")
_PAIR = re.compile(r'(\w+(?:\[\d+\])?)=("[^"]*"|\S*)')


def parse_record(text: str) -> tuple[float, int, dict[str, str]] | None:
    """`audit(1700000000.123:456): key=value ...` -> (epoch seconds, serial, fields); quoted values unquoted,
    hex-encoded ones left as they are (see `decode_value`)."""
    header = _HEADER.match(text)
    if header is None:
        return None
    seconds, millis, serial = header.groups()
    fields = {}
    for key, value in _PAIR.findall(text, header.end()):
        fields[key] = value
    return int(seconds) + int(millis) / 1000, int(serial), fields


def decode_value(value: str) -> str:
    """Audit quotes plain strings and hex-encodes those with spaces, quotes or control bytes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if value in ("(null)", "?"):
        return ""
    try:
        return bytes.fromhex(value).decode("utf-8", "replace")
    except ValueError:
        return value


@dataclass
class AuditEvent:
    """The records of one audited syscall, joined by their serial."""

    serial: int
    time: float
    syscall: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)  # of an execve (EXECVE record)
    # PROCTITLE: /proc/<pid>/cmdline as the kernel first read it for this task and then kept: after an exec
    # it may still show the previous program (runc's init, for a container's first process)
    proctitle: list[str] = field(default_factory=list)
    cwd: str | None = None
    paths: list[str] = field(default_factory=list)
    path_modes: list[int] = field(default_factory=list)  # of each path's inode, as the syscall found it
    path_types: list[str] = field(default_factory=list)  # PARENT, NORMAL, CREATE, DELETE, UNKNOWN (not looked up)

    @property
    def pid(self) -> int:
        return int(self.syscall.get("pid", 0))

    @property
    def ppid(self) -> int:
        return int(self.syscall.get("ppid", 0))

    @property
    def syscall_number(self) -> int:
        return int(self.syscall.get("syscall", -1))

    @property
    def success(self) -> bool:
        return self.syscall.get("success") == "yes"

    @property
    def comm(self) -> str:
        """The process's name. A program re-exec'd through /proc/self/exe (busybox's shell runs its applets so)
        is named `exe` by the kernel until it renames itself: argv[0] is the name it is about to take."""
        return program_name(decode_value(self.syscall.get("comm", "")), self.argv, self.exe)

    @property
    def exe(self) -> str:
        return decode_value(self.syscall.get("exe", ""))

    @property
    def login_uid(self) -> int | None:
        value = self.syscall.get("auid", "")
        return int(value) if value.isdigit() and int(value) != 4294967295 else None

    @property
    def uid(self) -> int | None:
        value = self.syscall.get("euid", self.syscall.get("uid"))
        return int(value) if value and value.isdigit() else None

    def argument(self, index: int) -> int:
        value = self.syscall.get(f"a{index}")
        try:
            return int(value, 16) if value else -1
        except ValueError:
            return -1


def program_name(comm: str, argv: list[str], executable: str | None) -> str:
    """What a process is called. The kernel names a program exec'd through /proc/self/exe `exe` (busybox's
    shell runs its applets so) until it renames itself, which busybox never does: argv[0] is its name.
    A program whose file really is called `exe` keeps the name."""
    if comm == "exe" and argv and (executable or "").rsplit("/", 1)[-1] != "exe":
        return argv[0].rsplit("/", 1)[-1][:15] or comm
    return comm


def execve_argv(fields: dict[str, str]) -> list[str]:
    """The argv of an EXECVE record: `a0="ls"` or hex, or a long one split as `a1_len=.. a1[0]=.. a1[1]=..`."""
    try:
        count = int(fields.get("argc", "0"))
    except ValueError:
        return []
    argv = []
    for index in range(count):
        key = f"a{index}"
        if key in fields:
            argv.append(decode_value(fields[key]))
            continue
        chunks = []
        part = 0
        while f"{key}[{part}]" in fields:
            chunks.append(fields[f"{key}[{part}]"])
            part += 1
        if not chunks:
            break  # the record was cut (audit limits one record's size): keep what came
        argv.append(decode_value("".join(chunks)) if not chunks[0].startswith('"')
                    else "".join(c.strip('"') for c in chunks))
    return argv


class AuditAssembler:
    """Joins SYSCALL, EXECVE, CWD and PATH records by serial; an event is complete at its EOE record."""

    def __init__(self, max_pending: int = 4096):
        self._pending: dict[int, AuditEvent] = {}
        self.max_pending = max_pending
        self.incomplete = 0  # events given up on (a record of theirs was lost)

    def add(self, kind: int, text: str) -> AuditEvent | None:
        parsed = parse_record(text)
        if parsed is None:
            return None
        at, serial, fields = parsed
        if kind == AUDIT_EOE:
            return self._pending.pop(serial, None)
        if kind not in (AUDIT_SYSCALL, AUDIT_EXECVE, AUDIT_CWD, AUDIT_PATH, AUDIT_PROCTITLE):
            return None
        event = self._pending.get(serial)
        if event is None:
            if len(self._pending) >= self.max_pending:
                self._pending.pop(next(iter(self._pending)))
                self.incomplete += 1
            event = self._pending[serial] = AuditEvent(serial, at)
        if kind == AUDIT_SYSCALL:
            event.syscall = fields
        elif kind == AUDIT_EXECVE:
            event.argv = execve_argv(fields)
        elif kind == AUDIT_CWD:
            event.cwd = decode_value(fields.get("cwd", ""))
        elif kind == AUDIT_PATH and "name" in fields:
            event.paths.append(decode_value(fields["name"]))
            try:
                event.path_modes.append(int(fields.get("mode", "0"), 8))
            except ValueError:
                event.path_modes.append(0)
            event.path_types.append(fields.get("nametype", ""))
        elif kind == AUDIT_PROCTITLE:
            event.proctitle = [a for a in decode_value(fields.get("proctitle", "")).split("\0") if a]
        return None


def rule_key(rule: bytes) -> str | None:
    """The key (`-k`) of a rule whose only string field is its key, as the shipper's rules are."""
    header = 12 + 4 * 4 * AUDIT_BITMASK_SIZE
    if len(rule) < header + 4:
        return None
    length = struct.unpack_from("=I", rule, header)[0]
    return rule[header + 4: header + 4 + length].decode("utf-8", "replace")


def machine_arch() -> Arch | None:
    """This machine's syscall numbers, None where we do not know them."""
    return ARCHES.get(platform.machine())
