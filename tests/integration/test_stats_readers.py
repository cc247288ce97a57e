"""The stats source reads cgroup files where it can and the Engine API where it cannot: both give the
same figures for the same busy container."""

from __future__ import annotations

import time
import uuid

import pytest

from shipper.containers import ContainerCache, Selector, Watched
from shipper.sources.stats import StatsSource


def sample_until(source: StatsSource, container_id: str, samples: int, interval: float) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + 60
    while len(got) < samples:
        assert time.monotonic() < deadline, f"{source.status()}: only {len(got)} samples"
        got += [e.fields["container"] for e in source.sample() if e.container_id == container_id]
        time.sleep(interval)
    return got


def test_cgroup_files_and_engine_api_agree_on_a_busy_container(docker_client, run_container):
    label = f"shipper.test.stats={uuid.uuid4().hex[:8]}"
    key, value = label.split("=")
    # held to half a core, so the figure depends less on what else this shared host runs
    busy = run_container(["sh", "-c", "yes > /dev/null"], labels={key: value}, nano_cpus=500_000_000,
                         mem_limit="64m")
    watched = Watched(docker_client, ContainerCache(docker_client), Selector(include_labels=(label,)))
    by_files = StatsSource(watched, interval=2)
    by_api = StatsSource(watched, interval=2, use_files=False)
    try:
        by_api.sample()  # opens the stream; its first sample comes at the engine's next tick
        time.sleep(2)
        files, api = [], []
        for _ in range(3):
            files += sample_until(by_files, busy.id, 1, 0)
            api += sample_until(by_api, busy.id, 1, 0)
            time.sleep(2)
    finally:
        by_api.close()
    assert by_files.status()["read_by"] == {"cgroup_files": 1, "engine_api": 0}
    assert by_api.status()["read_by"] == {"cgroup_files": 0, "engine_api": 1}
    files_cores = sum(s["cpu"]["cores"] for s in files[1:]) / len(files[1:])
    api_cores = sum(s["cpu"]["cores"] for s in api[1:]) / len(api[1:])
    print(f"cores: cgroup files {files_cores:.3f}, engine API {api_cores:.3f}")
    assert 0.25 < files_cores <= 0.55  # at most its half core; less when the host is saturated
    assert files_cores == pytest.approx(api_cores, rel=0.1)
    assert files[-1]["memory"]["limit"] == api[-1]["memory"]["limit"] == 64 << 20
    assert files[-1]["pids"] == api[-1]["pids"]
    assert files[-1]["memory"]["usage"] == pytest.approx(api[-1]["memory"]["usage"], rel=0.2, abs=256 << 10)
