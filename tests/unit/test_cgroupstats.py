"""The stats source's cgroup file reader, on directories laid out like /sys/fs/cgroup and /proc."""

from pathlib import Path

import pytest

from shipper.sources.cgroupstats import blkio_v1_bytes, cgroup_dirs, io_v2_bytes, network_bytes, read_counters

CID = "ab" * 32
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0
  eth0:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def proc(tmp_path):
    write(tmp_path / "proc", {"meminfo": "MemTotal:       1000 kB\nMemFree: 10 kB\n", "42/net/dev": NET_DEV})
    return tmp_path / "proc"


def test_v1_reads_each_controller_as_the_engine_does(tmp_path, proc):
    v1 = ":".join(["8", "pids", f"/docker/{CID}"]) + "\n" + "\n".join(
        f"{n}:{c}:/docker/{CID}" for n, c in ((7, "blkio"), (4, "memory"), (2, "cpu,cpuacct"))) + "\n0::/\n"
    write(proc, {"42/cgroup": v1})
    cg = tmp_path / "cgroup"
    write(cg, {f"cpuacct/docker/{CID}/cpuacct.usage": "2500000000\n",
               f"memory/docker/{CID}/memory.usage_in_bytes": "300000\n",
               f"memory/docker/{CID}/memory.stat": "cache 100000\nrss 200000\ntotal_cache 100000\n",
               f"memory/docker/{CID}/memory.limit_in_bytes": "9223372036854771712\n",
               f"pids/docker/{CID}/pids.current": "3\n",
               f"blkio/docker/{CID}/blkio.io_service_bytes_recursive": "Total 0\n",
               f"blkio/docker/{CID}/blkio.throttle.io_service_bytes_recursive":
                   "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n"})
    dirs = cgroup_dirs(42, CID, str(proc), str(cg))
    assert dirs is not None and dirs.version == 1
    counters = read_counters(dirs, 42, str(proc))
    assert counters is not None and counters.pop("online_cpus") >= 1
    # memory: usage less the page cache; no limit: the host's memory; blkio: the first file that lists devices
    assert counters == {"cpu_ns": 2500000000, "memory": 200000, "memory_limit": 1000 * 1024, "pids": 3,
                        "read": 4096, "write": 8192, "rx": 1000, "tx": 2000}


def test_v2_reads_the_unified_directory(tmp_path, proc):
    write(proc, {"42/cgroup": f"0::/system.slice/docker-{CID}.scope\n"})
    cg = tmp_path / "cgroup"
    unified = f"system.slice/docker-{CID}.scope"
    write(cg, {f"{unified}/cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
               f"{unified}/memory.current": "500000\n",
               f"{unified}/memory.stat": "anon 300000\nfile 200000\ninactive_file 150000\n",
               f"{unified}/memory.max": "262144\n",
               f"{unified}/pids.current": "7\n",
               f"{unified}/io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n"})
    dirs = cgroup_dirs(42, CID, str(proc), str(cg))
    assert dirs is not None and dirs.version == 2
    counters = read_counters(dirs, 42, str(proc))
    assert counters is not None
    assert (counters["cpu_ns"], counters["memory"], counters["memory_limit"], counters["pids"]) == (
        1_500_000_000, 350000, 262144, 7)
    assert (counters["read"], counters["write"], counters["rx"], counters["tx"]) == (101, 202, 1000, 2000)


def test_unlimited_v2_memory_is_the_hosts(tmp_path, proc):
    write(proc, {"42/cgroup": f"0::/docker/{CID}\n"})
    cg = tmp_path / "cgroup"
    write(cg, {f"docker/{CID}/cpu.stat": "usage_usec 1\n", f"docker/{CID}/memory.current": "1\n",
               f"docker/{CID}/memory.stat": "", f"docker/{CID}/memory.max": "max\n",
               f"docker/{CID}/pids.current": "1\n"})
    counters = read_counters(cgroup_dirs(42, CID, str(proc), str(cg)), 42, str(proc))
    assert counters is not None and counters["memory_limit"] == 1000 * 1024 and counters["read"] == 0


def test_a_reused_pid_or_missing_files_read_as_nothing(tmp_path, proc):
    write(proc, {"42/cgroup": "0::/user.slice\n", "43/cgroup": f"0::/docker/{CID}\n"})
    assert cgroup_dirs(42, CID, str(proc), str(tmp_path)) is None  # pid 42 is no longer the container's
    assert cgroup_dirs(44, CID, str(proc), str(tmp_path)) is None
    dirs = cgroup_dirs(43, CID, str(proc), str(tmp_path / "nowhere"))
    assert dirs is not None and read_counters(dirs, 43, str(proc)) is None


def test_parsers():
    assert blkio_v1_bytes("Total 0\n") is None
    assert blkio_v1_bytes("8:0 Read 1\n8:16 Read 2\n8:16 Write 5\nTotal 8\n") == (3, 5)
    assert io_v2_bytes("") == (0, 0)
    assert network_bytes(NET_DEV) == (1000, 2000)


def test_stat_value_finds_the_whole_key():
    from shipper.sources.cgroupstats import stat_value

    text = "total_cache 9\ncache 5\nrss 2\ninactive_file 3"
    assert stat_value(text, "cache") == 5 and stat_value(text, "inactive_file") == 3
    assert stat_value("total_cache 9\n", "cache") == 0
    assert stat_value("cache 7\n", "cache") == 7
    with pytest.raises(ValueError):
        stat_value("user_usec 1\n", "usage_usec", None)
