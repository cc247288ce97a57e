"""With the kernel's exec events on, the processes sampler reads a quiet container's /proc less often,
a container the kernel told of at once, and every container at once after an overflow."""

from __future__ import annotations

from pathlib import Path

from shipper.sources.exec_watch import Exec
from shipper.sources.processes import QUIET_EVERY, ProcessesSource, _Track


class _Watched:
    cache = None

    def __init__(self, ids):
        self.ids = ids

    def running(self):
        return list(self.ids)


class _Watch:
    lost = 0

    def place(self, pid, container_id):
        pass

    def heard_of(self, pid):
        return True

    def container_of(self, pid):
        return None


def source(tmp_path: Path, ids: list[str]) -> ProcessesSource:
    (tmp_path / "uptime").write_text("100.0 50.0\n")
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    made = ProcessesSource(_Watched(ids), network=False, realtime=False, proc_root=str(tmp_path))  # type: ignore[arg-type]
    made._watch = _Watch()  # type: ignore[assignment]
    for container_id in ids:
        made._tracks[container_id] = _Track(init_pid=1, procs_path=str(procs), upper=None, lowers=[])
    return made


def read_per_sample(made: ProcessesSource, samples: int) -> list[int]:
    out = []
    for _ in range(samples):
        before = made.full_samples
        made.sample()
        out.append(made.full_samples - before)
    return out


def test_quiet_containers_are_read_every_quiet_every_samples(tmp_path):
    made = source(tmp_path, ["a", "b"])
    assert read_per_sample(made, 1 + 2 * QUIET_EVERY) == [2] + ([0] * (QUIET_EVERY - 1) + [2]) * 2


def test_a_container_the_kernel_told_of_is_read_at_the_next_sample(tmp_path):
    made = source(tmp_path, ["a", "b"])
    read_per_sample(made, 2)
    made._on_kernel([Exec(container_id="a", pid=7, at=0.0, name="sh", parent_pid=1, info=None)])
    assert read_per_sample(made, 2) == [1, 0]


def test_after_an_overflow_every_container_is_read_at_once(tmp_path):
    made = source(tmp_path, ["a", "b", "c"])
    read_per_sample(made, 2)
    made._watch.lost += 1  # type: ignore[union-attr]
    assert read_per_sample(made, 2) == [3, 0]


def test_without_kernel_events_every_sample_reads_every_container(tmp_path):
    made = source(tmp_path, ["a", "b"])
    made._watch = None
    assert read_per_sample(made, 3) == [2, 2, 2]
