"""Parsing /proc: stat lines with awkward names, TCP tables in both families, cgroup paths."""

from shipper.sources import procfs

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0
   1: 0100007F:B3A4 0100007F:0D05 02 00000001:00000000 01:00000100 00000001  1000        0 4243 1 0 100 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:115C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0D05 0000000000000000FFFF00000100007F:B7A4 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
   2: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 78 1 0
"""


def test_stat_with_spaces_and_parentheses_in_the_name():
    text = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10"
    stat = procfs.parse_stat(text)
    assert (stat.pid, stat.name, stat.ppid, stat.start_ticks) == (4242, "my (odd) name", 17, 98765)


def test_ipv4_rows():
    rows = list(procfs.parse_tcp(TCP, "ipv4"))
    assert rows[0].local == ("127.0.0.1", 8080) and rows[0].state == "LISTEN" and rows[0].inode == 4242
    assert rows[1].remote == ("127.0.0.1", 3333) and rows[1].state == "SYN_SENT"


def test_ipv6_rows_and_mapped_ipv4():
    rows = list(procfs.parse_tcp(TCP6, "ipv6"))
    assert rows[0].local == ("::", 4444) and rows[0].state == "LISTEN"
    assert rows[1].local == ("127.0.0.1", 3333) and rows[1].remote == ("127.0.0.1", 47012)
    assert rows[1].state == "TIME_WAIT"
    assert rows[2].local == ("::1", 8080) and rows[2].remote == ("::1", 50000)


def test_cgroup_v1_and_v2_paths(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cgroup").write_text("9:cpu,cpuacct:/docker/abc\n8:pids:/docker/abc\n0::/\n")
    assert procfs.cgroup_procs_path(1, str(tmp_path), "/cg") == "/cg/pids/docker/abc/cgroup.procs"
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    assert procfs.cgroup_procs_path(2, str(tmp_path), "/cg") == "/cg/system.slice/docker-abc.scope/cgroup.procs"
    assert procfs.cgroup_procs_path(3, str(tmp_path), "/cg") is None  # the process is gone


def test_this_process_reads_itself():
    import os

    info = procfs.read_process(os.getpid())
    assert info is not None and info.stat.pid == os.getpid() and info.executable
    assert not info.memfd and info.args


def test_namespace_files_kept_open_read_fresh_each_time():
    import os
    import socket

    from shipper.sources.procfs import NetnsFiles, packet_socket_inodes

    def in_use(signature: str | None) -> int:
        assert signature is not None
        return int(signature.split("|")[0].split()[2])  # "TCP: inuse N ..."

    files = NetnsFiles(os.getpid())
    try:
        assert files.usable
        before = in_use(files.tcp_signature())
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        try:
            assert in_use(files.tcp_signature()) >= before + 1  # read again from the same open file: fresh
            assert files.packet_socket_inodes() == packet_socket_inodes(os.getpid())
        finally:
            listener.close()
    finally:
        files.close()
    assert not files.usable and files.tcp_signature() is None
    assert not NetnsFiles(2**22 + 7).usable  # no such process


def test_open_files_budget_raises_the_soft_limit_and_keeps_a_reserve(monkeypatch):
    import resource

    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: set_to.append(limits))
    assert procfs.open_files_budget(3) == (4096 - 1024) // 3 and set_to == [(4096, 4096)]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 1024))
    assert procfs.open_files_budget(3) == 0  # no room: every read opens its file, as before


def test_tcp_signature_follows_the_namespace_not_the_host(tmp_path):
    def lay(alloc: int, active: int, inuse: int = 1) -> str | None:
        net = tmp_path / "7" / "net"
        net.mkdir(parents=True, exist_ok=True)
        (net / "sockstat").write_text(f"sockets: used 9\nTCP: inuse {inuse} orphan 0 tw 0 alloc {alloc} mem 3\n")
        (net / "sockstat6").write_text("TCP6: inuse 0\nUDP6: inuse 0\n")
        (net / "snmp").write_text("Tcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab InSegs\n"
                                  f"Tcp: 1 {active} 0 1 {alloc * 100}\n")
        return procfs.tcp_signature(7, str(tmp_path))

    first = lay(alloc=5, active=10)
    assert first is not None and lay(alloc=50, active=10) == first  # the host's sockets: not ours
    assert lay(alloc=50, active=11) != first  # a connection opened (and maybe closed) in the namespace
    assert lay(alloc=50, active=10, inuse=2) != first  # a listener


def test_kept_open_signature_reads_snmp_only_when_sockets_or_interfaces_moved(tmp_path):
    from shipper.sources.procfs import NetnsFiles

    net = tmp_path / "7" / "net"
    net.mkdir(parents=True)

    def lay(active: int, packets: int = 5, inuse: int = 1) -> None:
        (net / "sockstat").write_text(f"sockets: used 9\nTCP: inuse {inuse} orphan 0 tw 0 alloc 4 mem 3\n")
        (net / "sockstat6").write_text("TCP6: inuse 0\nUDP6: inuse 0\n")
        (net / "snmp").write_text(f"Tcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab\nTcp: 1 {active} 0 1\n")
        (net / "packet").write_text("sk RefCnt Type Proto Iface R Rmem User Inode\n")
        (net / "dev").write_text(f"Inter-|\n face |\n    lo: 100 {packets} 0 0 0 0 0 0 100 {packets} 0 0 0 0 0 0\n")

    lay(active=10)
    files = NetnsFiles(7, str(tmp_path))
    try:
        first = files.tcp_signature()
        assert first is not None and "10" in first.split("|")[2]
        lay(active=11)  # counters that moved with no packet: cannot happen, and snmp is not read
        assert files.tcp_signature() == first
        lay(active=11, packets=9)
        assert files.tcp_signature() != first and "11" in files.tcp_signature().split("|")[2]
        moved = files.tcp_signature()
        lay(active=11, packets=9, inuse=2)  # a listener: no packet, a socket in use
        assert files.tcp_signature() != moved
    finally:
        files.close()


def test_a_connection_come_and_gone_between_two_reads_changes_the_signature():
    """In a fresh network namespace of its own (root): a connection opened, accepted and closed between two
    reads leaves as many sockets in use as before; its packets through loopback make snmp be read."""
    import os
    import subprocess
    import sys

    import pytest

    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root")
    child = """
import os, socket, subprocess
from shipper.sources.procfs import NetnsFiles
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
files = NetnsFiles(os.getpid())
before = files.tcp_signature()
client = socket.create_connection(listener.getsockname()); served, _ = listener.accept()
served.close(); client.close()
after = files.tcp_signature()
print(before != after, before, after)
"""
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip(f"unshare refused: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True"), done.stdout
