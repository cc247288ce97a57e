"""Exec events from the kernel: the audit subsystem put back as found, and an exec storm survived.

Both need root (the connector and audit netlink sockets), as the test bed runs.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from shipper.sources import netlink
from shipper.timefmt import parse_time

from .shipper_proc import ShipperProcess, audit_state, count

ARCH = netlink.machine_arch()
# execve/execveat, socket(AF_PACKET), symlink/symlinkat, fchmodat with a setuid/setgid mode, and chmod where it exists
RULES = 4 + bool(ARCH and ARCH.chmods_mode_a1)
STORM_LOOPS = 3
STORM_EXECS_PER_LOOP = 12_000


def shipper_rules(pid: int) -> int:
    control = netlink.AuditControl()
    try:
        return sum(1 for rule in control.rules() if netlink.rule_key(rule) == f"shipper-{pid}")
    finally:
        control.close()


def wait_for_rules(pid: int, timeout: float = 10) -> int:
    """The shipper answers on its monitor port a moment before its processes source has set up audit."""
    deadline = time.monotonic() + timeout
    while shipper_rules(pid) < RULES and time.monotonic() < deadline:
        time.sleep(0.1)
    return shipper_rules(pid)


@pytest.fixture
def audit_allowed():
    if os.geteuid() != 0:
        pytest.skip("the kernel's audit and process-events sockets need root")


def test_audit_settings_and_rules_are_put_back_even_after_a_crash(tmp_path, docker_client, es, audit_allowed):
    before = audit_state()
    made: list[ShipperProcess] = []

    def shipper(name: str, **kwargs) -> ShipperProcess:
        (tmp_path / name).mkdir(exist_ok=True)
        made.append(ShipperProcess(tmp_path / name, "sources.processes.audit=true", **kwargs).start())
        return made[-1]

    try:
        first = shipper("a")
        assert wait_for_rules(first.process.pid) == RULES
        assert audit_state()[0] == 1
        assert first.stop() == 0
        assert audit_state() == before

        # killed: its rules stay behind until the next shipper with the same state directory starts
        crashed = shipper("b")
        assert wait_for_rules(crashed.process.pid) == RULES
        crashed.kill()
        assert shipper_rules(crashed.process.pid) == RULES
        successor = shipper("b", run_id=crashed.run_id)
        assert wait_for_rules(successor.process.pid) == RULES  # stale rules go before its own are added
        assert shipper_rules(crashed.process.pid) == 0
        assert "removed an audit rule left by a shipper that is gone" in successor.log_path.read_text()
        assert successor.stop() == 0
        assert audit_state() == before  # the settings found by the crashed one, restored by its successor
    finally:
        for process in made:  # a shipper left running would watch every container of later tests
            if process.process is not None and process.process.poll() is None:
                process.stop()
            process.close()


def test_exec_storm_keeps_the_shipper_up_with_bounded_memory(tmp_path, docker_client, es, run_container,
                                                             audit_allowed):
    shipper = ShipperProcess(tmp_path, "sources.processes.audit=true", "sources.files.enabled=false",
                             "sources.stats.enabled=false").start()
    loop = f"i=0; while [ $i -lt {STORM_EXECS_PER_LOOP} ]; do /bin/true; i=$((i+1)); done"
    script = " & ".join([f"({loop})"] * STORM_LOOPS) + "; wait"
    try:
        container = run_container(["sh", "-c", script], labels=shipper.labels)
        peak_rss = 0
        while container.reload() or container.status == "running":
            peak_rss = max(peak_rss, _rss_mib(shipper.process.pid))
            time.sleep(0.5)
        container.reload()
        seconds = _seconds(container.attrs["State"]["StartedAt"], container.attrs["State"]["FinishedAt"])
        execs = STORM_LOOPS * STORM_EXECS_PER_LOOP
        time.sleep(5)
        status = json.loads(shipper.health())  # still answering
        missed = status["sources"]["processes"]["processes_missed"]
        in_storm = [{"term": {"container.id": container.id}}, {"term": {"event.dataset": "shipper.processes"}},
                    {"term": {"event.action": "process_started"}}]
        named = count(es, shipper.index, {"bool": {"filter": [*in_storm, {"term": {"process.name": "true"}}]}})
        # execs the kernel told of, of a process gone before /proc or audit could say which program it ran
        unnamed = count(es, shipper.index, {"bool": {"filter": in_storm, "must_not": {"exists": {
            "field": "process.name"}}}})
        shipped = named + unnamed
        lost = shipper.metric("shipper_kernel_events_lost_total")
        print(f"exec storm: {execs} execs in {seconds:.1f} s ({execs / seconds:.0f}/s), {shipped} shipped "
              f"({unnamed} without the program's name), the kernel overflowed {lost:.0f} times and the shipper "
              f"says it missed {missed} process creations, peak RSS {peak_rss:.0f} MiB")
        assert peak_rss < 300, f"peak RSS {peak_rss:.0f} MiB"
        assert shipped <= execs, f"{shipped} exec documents for {execs} execs: some exec was reported twice"
        # every exec shipped, or the shipper says it fell behind and how many process creations it missed
        assert shipped == execs or (lost > 0 and missed > 0), (shipped, lost, missed)
        assert shipped > execs // 10
        assert "the kernel dropped process events" in shipper.log_path.read_text() or shipped == execs
    finally:
        stopped = shipper.stop() if shipper.process.poll() is None else shipper.process.returncode
        shipper.close()
    assert stopped == 0


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _seconds(started: str, finished: str) -> float:
    return parse_time(finished) - parse_time(started)
