"""The kernel channels' message formats, parsed from bytes built as the kernel lays them out."""

from __future__ import annotations

import struct
import time

from shipper.sources import netlink
from shipper.sources.exec_watch import _symlink_paths
from shipper.sources.processes import script_argument


def _proc_message(what: int, payload: bytes) -> bytes:
    body = struct.pack("=IIQ", what, 0, 123) + payload
    cn = struct.pack("=IIIIHH", netlink.CN_IDX_PROC, netlink.CN_VAL_PROC, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), netlink.NLMSG_DONE, 0, 0, 0) + cn


def test_proc_events_fork_exec_comm_exit():
    data = (_proc_message(netlink.PROC_EVENT_FORK, struct.pack("=4I", 10, 10, 11, 11))
            + _proc_message(netlink.PROC_EVENT_EXEC, struct.pack("=2I", 11, 11))
            + _proc_message(netlink.PROC_EVENT_COMM, struct.pack("=2I", 11, 11) + b"xmrig".ljust(16, b"\0"))
            + _proc_message(netlink.PROC_EVENT_EXIT, struct.pack("=6I", 11, 11, 0, 17, 10, 10)))
    events = netlink.parse_proc_events(data)
    assert events == [netlink.ProcEvent("fork", 11, 10), netlink.ProcEvent("exec", 11),
                      netlink.ProcEvent("comm", 11, comm="xmrig"), netlink.ProcEvent("exit", 11, 10)]


def test_thread_events_are_not_process_events():
    data = (_proc_message(netlink.PROC_EVENT_EXIT, struct.pack("=6I", 12, 11, 0, 0, 10, 10))
            + _proc_message(netlink.PROC_EVENT_COMM, struct.pack("=2I", 12, 11) + b"worker".ljust(16, b"\0")))
    assert netlink.parse_proc_events(data) == []


SYSCALL = ('audit(1795914350.981:11682): arch=c000003e syscall=59 success=yes exit=0 a0=c0002040c0 a1=c000226030 '
           'a2=c00021e140 a3=0 items=2 ppid=30477 pid=30485 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 '
           'egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="nc" exe="/bin/busybox" key="shipper-1"')


def test_audit_exec_joined_by_serial_and_complete_at_eoe():
    assembler = netlink.AuditAssembler()
    assert assembler.add(netlink.AUDIT_SYSCALL, SYSCALL) is None
    # hex-encoded argument (it holds a space), as auditd writes one
    spaced = b"sh -c x".hex().upper()
    assert assembler.add(netlink.AUDIT_EXECVE, f'audit(1795914350.981:11682): argc=4 a0="nc" a1="127.0.0.1" '
                                               f'a2="-e" a3={spaced}') is None
    assert assembler.add(netlink.AUDIT_CWD, 'audit(1795914350.981:11682): cwd="/tmp"') is None
    assert assembler.add(netlink.AUDIT_PATH, 'audit(1795914350.981:11682): item=0 name="/bin/nc" inode=1') is None
    event = assembler.add(netlink.AUDIT_EOE, "audit(1795914350.981:11682): ")
    assert event is not None
    assert (event.pid, event.ppid, event.comm, event.exe, event.uid, event.success) == (
        30485, 30477, "nc", "/bin/busybox", 0, True)
    assert event.argv == ["nc", "127.0.0.1", "-e", "sh -c x"]
    assert event.cwd == "/tmp" and event.paths == ["/bin/nc"]
    assert abs(event.time - 1795914350.981) < 1e-6


def test_symlink_target_and_link_from_path_records():
    assembler = netlink.AuditAssembler()
    header = "audit(1795915662.657:22340): "
    assembler.add(netlink.AUDIT_SYSCALL, SYSCALL.replace("syscall=59", "syscall=266").replace(":11682)", ":22340)"))
    assembler.add(netlink.AUDIT_CWD, header + 'cwd="/tmp"')
    assembler.add(netlink.AUDIT_PATH, header + 'item=0 name="/tmp" inode=1 mode=041777 nametype=PARENT')
    assembler.add(netlink.AUDIT_PATH, header + 'item=1 name="/etc/shadow" nametype=UNKNOWN')
    assembler.add(netlink.AUDIT_PATH, header + 'item=2 name=".k" inode=2 mode=0120777 nametype=CREATE')
    event = assembler.add(netlink.AUDIT_EOE, header)
    assert _symlink_paths(event) == ("/etc/shadow", "/tmp/.k")


def test_long_arguments_come_in_chunks():
    first, second = "A" * 10, "B" * 5
    fields = {"argc": "2", "a0": '"cat"', "a1_len": "15", "a1[0]": first.encode().hex(), "a1[1]": second.encode().hex()}
    assert netlink.execve_argv(fields) == ["cat", first + second]


def test_a_program_reexecuted_through_proc_self_exe_takes_its_argv0_name():
    """busybox's shell runs its applets by exec'ing /proc/self/exe: the kernel names them all `exe`."""
    assembler = netlink.AuditAssembler()
    assembler.add(netlink.AUDIT_SYSCALL, SYSCALL.replace('comm="nc"', 'comm="exe"'))
    assembler.add(netlink.AUDIT_EXECVE, 'audit(1795914350.981:11682): argc=2 a0="wget" a1="http://x"')
    assembler.add(netlink.AUDIT_PATH, 'audit(1795914350.981:11682): item=0 name="/proc/self/exe"')
    event = assembler.add(netlink.AUDIT_EOE, "audit(1795914350.981:11682): ")
    assert event.comm == "wget"


def test_assembler_is_bounded():
    assembler = netlink.AuditAssembler(max_pending=3)
    for serial in range(10):
        assembler.add(netlink.AUDIT_SYSCALL, SYSCALL.replace(":11682)", f":{serial})"))
    assert len(assembler._pending) == 3 and assembler.incomplete == 7


def test_audit_rule_layout_and_key():
    rule = netlink.audit_rule((59, 322), 0xC000003E, "shipper-42")
    flags, action, count = struct.unpack_from("=3I", rule)
    assert (flags, action, count) == (netlink.AUDIT_FILTER_EXIT, netlink.AUDIT_ALWAYS, 2)
    mask = struct.unpack_from("=64I", rule, 12)
    assert mask[59 // 32] & (1 << (59 % 32)) and mask[322 // 32] & (1 << (322 % 32))
    assert sum(bin(word).count("1") for word in mask) == 2
    assert netlink.rule_key(rule) == "shipper-42"
    with_arg = netlink.audit_rule((90,), 0xC000003E, "k", (netlink.AUDIT_ARG1, netlink.AUDIT_BIT_MASK, 0o6000))
    fields = struct.unpack_from("=64I", with_arg, 12 + 4 * 64)
    values = struct.unpack_from("=64I", with_arg, 12 + 8 * 64)
    operators = struct.unpack_from("=64I", with_arg, 12 + 12 * 64)
    assert fields[:3] == (netlink.AUDIT_ARCH_FIELD, netlink.AUDIT_ARG1, netlink.AUDIT_FILTERKEY)
    assert values[:3] == (0xC000003E, 0o6000, 1)
    assert operators[:3] == (netlink.AUDIT_EQUAL, netlink.AUDIT_BIT_MASK, netlink.AUDIT_EQUAL)


def test_script_argument():
    assert script_argument("/bin/busybox", ["/bin/sh", "/tmp/xmrig", "--url", "x"]) == "/tmp/xmrig"
    assert script_argument("/usr/bin/python3.11", ["python3", "-u", "job.py"]) == "job.py"
    assert script_argument("/bin/bash", ["bash", "-c", "echo /tmp/x"]) is None
    assert script_argument("/usr/bin/python3", ["python3", "-m", "http.server"]) is None
    assert script_argument("/bin/busybox", ["ls", "/tmp/x"]) is None  # another applet, not the shell
    assert script_argument("/bin/busybox", ["busybox", "sh", "/tmp/x"]) == "/tmp/x"
    assert script_argument("/usr/bin/nc", ["nc", "/tmp/x"]) is None
    assert script_argument("/bin/sh", ["sh"]) is None


CONTAINER = "ab" * 32


def _watch(tmp_path, alive: dict[int, str]):
    """An ExecWatch over a made-up /proc where only `alive` pids (pid -> comm) exist, all in CONTAINER."""
    from shipper.sources.exec_watch import ExecWatch

    for pid, comm in alive.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(f"0::/system.slice/docker-{CONTAINER}.scope\n")
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    return ExecWatch(lambda _: True, lambda _: None, proc_root=str(tmp_path))


def test_an_exec_gone_before_it_could_be_read_is_not_named_after_the_program_it_replaced(tmp_path):
    watch = _watch(tmp_path, {100: "sh"})
    watch.place(100, CONTAINER)
    watch._names[100] = "sh"
    watch._on_proc_event(netlink.ProcEvent("fork", 101, 100))  # a subshell: named sh, like its parent
    assert watch.name_of(101) == "sh"
    watch._on_proc_event(netlink.ProcEvent("exec", 101))  # it ran something and ended before /proc was read
    watch._flush(float("inf"))
    (item,) = watch._handoff.get_nowait()
    assert (item.container_id, item.pid, item.info, item.name) == (CONTAINER, 101, None, "")
    assert watch.name_of(101) is None


def test_an_audited_exec_whose_fork_was_lost_is_placed_by_its_living_parent(tmp_path):
    watch = _watch(tmp_path, {30477: "sh"})  # the loop's shell lives; pid 30485 (nc) is gone, its fork untold
    assembler = netlink.AuditAssembler()
    for kind, text in ((netlink.AUDIT_SYSCALL, SYSCALL), (netlink.AUDIT_EOE, "audit(1795914350.981:11682): ")):
        event = assembler.add(kind, text)
    watch._on_audit(event)
    watch._flush(float("inf"))
    (item,) = watch._handoff.get_nowait()
    assert (item.container_id, item.pid, item.audit.comm) == (CONTAINER, 30485, "nc")


def test_an_audit_record_later_than_its_exec_report_is_not_a_second_exec(tmp_path):
    """A slow exec's record is sent at the syscall's exit, after records of execs begun later on other CPUs:
    by then the connector's report went out without it, and the record must not report the exec again."""
    watch = _watch(tmp_path, {30477: "sh"})
    watch.audit_reader = object()  # as if audit were on: the connector's execs wait for their records
    watch.place(30477, CONTAINER)
    watch._on_proc_event(netlink.ProcEvent("fork", 30485, 30477))
    watch._on_proc_event(netlink.ProcEvent("exec", 30485))  # gone before /proc could be read
    watch._flush(float("inf"))
    assert watch._handoff.empty()  # waiting for its record
    watch._audit_clock = time.time() + 1  # the stream went past it: a record of an exec begun later
    watch._flush(float("inf"))
    assert [item.pid for item in watch._handoff.get_nowait()] == [30485]
    assembler = netlink.AuditAssembler()  # its own record, stamped at the syscall's entry (before the report)
    assembler.add(netlink.AUDIT_SYSCALL, SYSCALL)
    watch._on_audit(assembler.add(netlink.AUDIT_EOE, "audit(1795914350.981:11682): "))
    watch._flush(float("inf"))
    assert watch._handoff.empty()
