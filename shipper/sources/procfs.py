"""Reading what a container's processes do from the host's /proc.

Paths inside a container are read with `os.readlink` on /proc's magic links and
are reported as the container sees them; nothing here follows a container's
symlinks on the host (`os.path.realpath` would escape to the host's files).
Every reader returns None when the process is gone: processes end between a
listing and a read all the time.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .netlink import program_name

TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MEMFD_PREFIX = "/memfd:"
DELETED_SUFFIX = " (deleted)"


def boot_time(proc_root: str = "/proc") -> float:
    """Wall-clock time of boot, to 10 ms (btime in /proc/stat is whole seconds)."""
    with open(f"{proc_root}/uptime") as handle:
        uptime = float(handle.read().split()[0])
    return time.time() - uptime


def ephemeral_ports(proc_root: str = "/proc") -> tuple[int, int]:
    """The port range the kernel picks client ports from: how to tell a client's side of a connection."""
    text = _read(f"{proc_root}/sys/net/ipv4/ip_local_port_range")
    low, high = (text or "32768 60999").split()
    return int(low), int(high)


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    name: str  # comm: at most 15 characters
    ppid: int
    start_ticks: int  # since boot, in clock ticks: with pid, identifies a process across pid reuse


def parse_stat(text: str) -> ProcStat:
    """`/proc/<pid>/stat`; comm may hold spaces and parentheses, so split at the last ')'."""
    head, _, tail = text.rpartition(")")
    pid, _, name = head.partition(" (")
    fields = tail.split()
    return ProcStat(int(pid), name, int(fields[1]), int(fields[19]))


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _read(path: str, mode: str = "r"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None


def _read_small(path: str) -> bytes | None:
    """A small /proc file as bytes, without a Python file object (half the cost of `_read` for the files
    the sampler reads per container twice a second)."""
    try:
        return read_small_or_fail(path)
    except OSError:
        return None


def read_small_or_fail(path: str) -> bytes:
    """As `_read_small`, raising OSError when the file cannot be read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class ProcInfo:
    stat: ProcStat
    ns_pid: int  # the pid inside the container's pid namespace
    uid: int | None
    executable: str | None  # as the container sees it, " (deleted)" removed
    deleted: bool  # the executable file was removed after the process started
    memfd: bool  # the executable is an anonymous memory file: fileless execution
    args: list[str]
    cwd: str | None
    stdio_sockets: tuple[bool, bool, bool]
    login_uid: int | None = None  # the uid the session was logged in as (audit's auid; Sysmon's LogonId); None: unset


def read_process(pid: int, proc_root: str = "/proc") -> ProcInfo | None:
    base = f"{proc_root}/{pid}"
    stat_text, status_text = _read(f"{base}/stat"), _read(f"{base}/status")
    if stat_text is None or status_text is None:
        return None
    stat = parse_stat(stat_text)
    status = parse_status(status_text)
    ns_pids = status.get("NSpid", str(pid)).split()
    args = read_args(pid, proc_root)
    exe = _readlink(f"{base}/exe")
    deleted = bool(exe and exe.endswith(DELETED_SUFFIX))
    if exe and deleted:
        exe = exe[: -len(DELETED_SUFFIX)]
    uid = status.get("Uid", "").split()
    name = program_name(stat.name, args, exe)
    if name != stat.name:
        stat = ProcStat(stat.pid, name, stat.ppid, stat.start_ticks)
    return ProcInfo(
        stat=stat,
        ns_pid=int(ns_pids[-1]),
        uid=int(uid[1]) if len(uid) > 1 else None,  # effective uid
        executable=exe,
        deleted=deleted and not (exe or "").startswith(MEMFD_PREFIX),
        memfd=bool(exe and exe.startswith(MEMFD_PREFIX)),
        args=args,
        cwd=_readlink(f"{base}/cwd"),
        stdio_sockets=(_is_socket(f"{base}/fd/0"), _is_socket(f"{base}/fd/1"), _is_socket(f"{base}/fd/2")),
        login_uid=login_uid(_read(f"{base}/loginuid")),
    )


UNSET_LOGIN_UID = 4294967295  # (uid_t)-1: no login session (daemons, containers' processes, usually)


def login_uid(text: str | None) -> int | None:
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return None if value == UNSET_LOGIN_UID else value


def processes_started(proc_root: str = "/proc") -> int | None:
    """The kernel's count of processes created since boot (`processes` in /proc/stat)."""
    for line in (_read(f"{proc_root}/stat") or "").splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return None


def read_args(pid: int, proc_root: str = "/proc") -> list[str]:
    raw = _read(f"{proc_root}/{pid}/cmdline", "rb") or b""
    return [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []


def read_comm(pid: int, proc_root: str = "/proc") -> str | None:
    """The process's name; it changes when the process execs another program."""
    text = _read(f"{proc_root}/{pid}/comm")
    return None if text is None else text.rstrip("\n")


def _is_socket(fd_path: str) -> bool:
    return (_readlink(fd_path) or "").startswith("socket:")


def socket_inodes(pid: int, proc_root: str = "/proc") -> set[int]:
    """The inodes of the sockets a process holds, to tell which process owns a connection."""
    out: set[int] = set()
    try:
        names = os.listdir(f"{proc_root}/{pid}/fd")
    except OSError:
        return out
    for name in names:
        target = _readlink(f"{proc_root}/{pid}/fd/{name}")
        if target and target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def read_cgroup(pid: int, proc_root: str = "/proc") -> str | None:
    """`/proc/<pid>/cgroup`: names the container a process belongs to (a 64-hex id in the path)."""
    return _read(f"{proc_root}/{pid}/cgroup")


def cgroup_procs_path(init_pid: int, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> str | None:
    """Where the kernel lists the pids of a container: its `pids` cgroup (v1) or its unified cgroup (v2)."""
    text = _read(f"{proc_root}/{init_pid}/cgroup")
    if text is None:
        return None
    unified = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return f"{cgroup_root}/pids{path}/cgroup.procs"
        if controllers == "":
            unified = f"{cgroup_root}{path}/cgroup.procs"
    return unified


def read_pids(procs_path: str) -> list[int] | None:
    text = _read_small(procs_path)
    return None if text is None else [int(p) for p in text.split()]


@dataclass(frozen=True, slots=True)
class TcpRow:
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    inode: int
    family: str  # "ipv4" or "ipv6"


def _address(hex_address: str, family: str) -> tuple[str, int]:
    host, _, port = hex_address.partition(":")
    raw = bytes.fromhex(host)
    if family == "ipv4":
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:  # four 32-bit words, each in host (little-endian) order
        words = struct.unpack(">4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
    return ip, int(port, 16)


def parse_tcp(text: str, family: str) -> Iterator[TcpRow]:
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        yield TcpRow(_address(parts[1], family), _address(parts[2], family),
                     TCP_STATES.get(parts[3], parts[3]), int(parts[9]), family)


SIGNATURE_FILES = ("sockstat", "sockstat6", "snmp")


def tcp_signature(pid: int, proc_root: str = "/proc") -> str | None:
    """The TCP counters of a network namespace: cheap to read, where the tables themselves cost
    1.5-10 ms each (the kernel walks its host-wide hash). Same counters, no socket opened or
    closed: the tables need not be read again."""
    return _tcp_counters([_read_small(f"{proc_root}/{pid}/net/{name}") for name in SIGNATURE_FILES])


def _tcp_counters(texts: list[bytes | None]) -> str | None:
    """Only the namespace's own counters: sockets in use (sockstat, sockstat6) and connections opened,
    accepted and established (snmp's Tcp MIB, v4 and v6). sockstat's orphan, alloc and mem are the
    host's: with them every socket any process on the host opened made every container's tables
    be read again (81 of 128 profile samples at rest with Elasticsearch busy beside)."""
    sockstat, sockstat6, snmp = texts
    if sockstat is None or sockstat6 is None or snmp is None:
        return None
    parts = _sockets_in_use(sockstat, sockstat6)
    header = _line_index(snmp, b"Tcp:")  # names, then values
    values = _line_index(snmp, b"Tcp:", header + 1) if header >= 0 else -1
    if values >= 0:
        mib = dict(zip(_rest_of_line(snmp, header).split(), _rest_of_line(snmp, values).split()))
        parts.append([mib.get(b"ActiveOpens", b""), mib.get(b"PassiveOpens", b""), mib.get(b"CurrEstab", b"")])
    return b"|".join(b" ".join(part) for part in parts).decode()


def _sockets_in_use(sockstat: bytes, sockstat6: bytes) -> list[list[bytes]]:
    """The namespace's TCP and TCP6 sockets in use, as sockstat and sockstat6 say them."""
    return [_line_starting(sockstat, b"TCP:").split()[:3], _line_starting(sockstat6, b"TCP6:").split()[:3]]


def _line_starting(text: bytes, prefix: bytes) -> bytes:
    """The first line that starts with `prefix` (b"" if none does)."""
    at = _line_index(text, prefix)
    return _rest_of_line(text, at) if at >= 0 else b""


def _line_index(text: bytes, prefix: bytes, start: int = 0) -> int:
    """Where the first line at or after `start` that starts with `prefix` begins; -1 if none does."""
    if text.startswith(prefix, start) and (start == 0 or text[start - 1:start] == b"\n"):
        return start
    at = text.find(b"\n" + prefix, start)
    return at + 1 if at >= 0 else -1


def _rest_of_line(text: bytes, at: int) -> bytes:
    end = text.find(b"\n", at)
    return text[at:] if end < 0 else text[at:end]


def packet_socket_inodes(pid: int, proc_root: str = "/proc") -> set[int]:
    """The packet sockets (AF_PACKET: raw frames, sniffers) open in the network namespace `pid` lives in."""
    return _packet_inodes(_read_small(f"{proc_root}/{pid}/net/packet"))


def open_files_budget(per_item: int, reserve: int = 1024, ceiling: int = 65536) -> int:
    """How many items of `per_item` open files may be kept open: the soft limit is first raised to the
    hard one (up to `ceiling`; a service's soft limit is often 1024), and `reserve` stays free for sockets,
    logs and the rest."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = min(hard if hard != resource.RLIM_INFINITY else ceiling, ceiling)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (OSError, ValueError):
        return 0
    return max(0, (min(soft, ceiling) - reserve) // per_item)


# A /proc seq file read returns what was asked for, or stops early only at its end or when its buffer (a page
# at least) is full: a read shorter than half a page, of files whose records are far shorter, is the whole file.
WHOLE_IF_UNDER = 2048


class NetnsFiles:
    """sockstat, sockstat6, snmp, packet and dev of one network namespace, kept open: a /proc seq file read
    again from offset 0 is generated afresh, at a fifth of the cost of opening it each time (the sampler
    reads them for every container twice a second). The open files keep the namespace alive: close()."""

    NAMES = (*SIGNATURE_FILES, "packet", "dev")
    SOCKSTAT, SOCKSTAT6, SNMP, PACKET, DEV = range(len(NAMES))

    def __init__(self, pid: int, proc_root: str = "/proc"):
        self._fds: list[int] = []
        self._quick: tuple | None = None  # sockets in use and the interfaces' counters at the last snmp read
        self._signature: str | None = None
        try:
            for name in self.NAMES:
                self._fds.append(os.open(f"{proc_root}/{pid}/net/{name}", os.O_RDONLY))
        except OSError:
            self.close()

    @property
    def usable(self) -> bool:
        return len(self._fds) == len(self.NAMES)

    def tcp_signature(self) -> str | None:
        """As tcp_signature(), with snmp (12 of its 19 µs, the kernel formats every MIB) read only when the
        sockets in use or the interfaces' counters moved: no connection is opened or accepted without a
        packet through one of the namespace's interfaces, loopback included."""
        v4, v6 = self._pread(self.SOCKSTAT), self._pread(self.SOCKSTAT6)
        if v4 is None or v6 is None:
            return None
        quick = (_sockets_in_use(v4, v6), self._pread(self.DEV))
        if quick[1] is None or quick != self._quick:
            self._quick, self._signature = quick, _tcp_counters([v4, v6, self._pread(self.SNMP)])
        return self._signature

    def packet_socket_inodes(self) -> set[int]:
        return _packet_inodes(self._pread(self.PACKET))

    def _pread(self, index: int) -> bytes | None:
        if not self.usable:
            return None
        fd = self._fds[index]
        try:
            text = os.pread(fd, 65536, 0)
            if len(text) < WHOLE_IF_UNDER:
                return text  # no second read to find the end (it costs a third of the first)
            chunks = [text]
            while chunk := os.pread(fd, 65536, sum(map(len, chunks))):
                chunks.append(chunk)
        except OSError:
            return None
        return b"".join(chunks)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _packet_inodes(text: bytes | None) -> set[int]:
    if not text or text.count(b"\n") < 2:  # the header alone: none
        return set()
    out = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 9 and parts[-1].isdigit():
            out.add(int(parts[-1]))
    return out


def read_tcp(pid: int, proc_root: str = "/proc") -> list[TcpRow] | None:
    """The TCP sockets of the network namespace `pid` lives in."""
    rows: list[TcpRow] = []
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        text = _read(f"{proc_root}/{pid}/net/{name}")
        if text is None:
            if family == "ipv4":
                return None
            continue
        rows.extend(parse_tcp(text, family))
    return rows
