"""Every container's logs, whatever its log driver, with the default configuration (`mode: auto`).

json-file and local are read from disk, a driver the engine reads back (here syslog,
through the engine's dual-logging cache: journald cannot run on these machines) through
the Engine API, and `none` is reported once and counted.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import Counter
from pathlib import Path

import pytest
from docker.types import LogConfig

from shipper.es_setup import run_setup
from shipper.sources.localfile import LocalLogChain

from .shipper_proc import all_docs, count, wait_for_count

LINES = 2000
STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ")


@pytest.fixture(scope="module", autouse=True)
def templates(es):
    run_setup(es)


@pytest.fixture
def syslog_receiver():
    """A UDP syslog receiver on 127.0.0.1 that counts what the engine's syslog driver sends it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    received = Counter()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                received["datagrams"] += bool(sock.recv(65536))
            except TimeoutError:
                continue

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    yield sock.getsockname()[1], received
    stop.set()
    thread.join(5)
    sock.close()


def both_streams(lines: int) -> list[str]:
    return ["sh", "-c", f"seq 1 {lines} | sed 's/^/out-/'; seq 1 {lines} | sed 's/^/err-/' >&2"]


def test_json_file_local_and_syslog_containers_each_arrive_exactly_once(es, run_container, shippers,
                                                                         syslog_receiver, docker_client):
    port, received = syslog_receiver
    shipper = shippers().start()  # the default configuration: mode auto
    configs = {
        "json-file": LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        "local": LogConfig(type="local", config={"max-size": "10m", "max-file": "3"}),
        "syslog": LogConfig(type="syslog", config={"syslog-address": f"udp://127.0.0.1:{port}"}),
    }
    containers = {driver: run_container(both_streams(LINES), labels=shipper.labels, log_config=config)
                  for driver, config in configs.items()}
    for container in containers.values():
        assert container.wait(timeout=120)["StatusCode"] == 0
    for driver, container in containers.items():
        query = {"bool": {"filter": [{"term": {"container.id": container.id}},
                                     {"term": {"event.dataset": "shipper.docker_logs"}}]}}
        assert wait_for_count(es, shipper.index, 2 * LINES, query, shipper=shipper) == 2 * LINES, driver
        docs = all_docs(es, shipper.index, query, ["message", "shipper.log", "log.file.path"])
        got = Counter((d["message"], d["shipper"]["log"]["stream"]) for d in docs)
        expected = Counter([(f"out-{i}", "stdout") for i in range(1, LINES + 1)]
                           + [(f"err-{i}", "stderr") for i in range(1, LINES + 1)])
        assert got == expected, driver
        assert {d["shipper"]["log"]["driver"] for d in docs} == {driver}
        paths = {d.get("log", {}).get("file", {}).get("path") for d in docs}
        container.reload()
        files = {"json-file": container.attrs["LogPath"], "syslog": None,
                 "local": str(Path(docker_client.info()["DockerRootDir"], "containers", container.id, "local-logs",
                                   "container.log"))}
        assert paths == {files[driver]}, driver
    assert received["datagrams"] > 0  # the syslog driver really delivered to its receiver (UDP may drop some)
    assert shipper.metric("shipper_containers_unreadable_total", driver="syslog") == 0
    assert shipper.stop() == 0


def test_a_container_logging_to_none_gives_one_warning_and_a_metric(es, run_container, shippers):
    shipper = shippers().start()
    silent = run_container(["sh", "-c", "echo nobody keeps this"], labels=shipper.labels,
                           log_config=LogConfig(type="none"))
    assert silent.wait(timeout=60)["StatusCode"] == 0
    silent.start()  # started again: still reported only once
    assert silent.wait(timeout=60)["StatusCode"] == 0
    assert shipper.wait_for_metric("shipper_containers_unreadable_total", 1, driver="none") == 1
    talker = run_container(["sh", "-c", "echo kept"], labels=shipper.labels)  # a sign the shipper is caught up
    wait_for_count(es, shipper.index, 1, {"term": {"container.id": talker.id}}, shipper=shipper)
    assert shipper.metric("shipper_containers_unreadable_total", driver="none") == 1
    assert shipper.stop() == 0
    warnings = [json.loads(line) for line in shipper.log_path.read_text().splitlines()
                if line.startswith("{") and "cannot read this container's logs" in line]
    assert [(w["container"], w["log_driver"]) for w in warnings] == [(silent.name, "none")]
    assert "log driver is none" in warnings[0]["message"]
    assert count(es, shipper.index, {"bool": {"filter": [{"term": {"container.id": silent.id}},
                                                         {"term": {"event.dataset": "shipper.docker_logs"}}]}}) == 0


def engine_messages(raw: bytes) -> list[tuple[str, str]]:
    """`docker logs -t` output as (time, text) messages.

    Each 16 KiB piece of a split line comes with its own copy of the line's timestamp, and
    Engine 20.10 writes no newline after the last piece of a split line it reads from the
    local driver, so pieces are joined by their timestamp. It trims trailing zeros of the
    fraction; the local reader's times are fixed width like json-file's.
    """
    messages: list[list] = []
    pieces = STAMP.split(raw)[1:]
    for stamp, text in zip(pieces[::2], pieces[1::2]):
        if messages and messages[-1][0] == stamp and not messages[-1][1].endswith(b"\n"):
            messages[-1][1] += text
        else:
            messages.append([stamp, text])
    out = []
    for stamp, text in messages:
        head, _, fraction = stamp.decode().rstrip("Z").partition(".")
        out.append((f"{head}.{fraction.ljust(9, '0')}Z", text.removesuffix(b"\n").decode("utf-8", "replace")))
    return out


def test_the_local_reader_reads_what_the_engine_wrote_as_docker_logs_does(run_container, docker_client):
    """Files written by this machine's engine (rotated, gzip-compressed, long and binary lines, a
    last line without a newline) decode to exactly what the engine itself returns for them."""
    script = ("seq 1 3000 | sed 's/^/plain-/'; "
              "i=0; while [ $i -lt 3 ]; do head -c 40000 /dev/zero | tr '\\0' x >&2; echo >&2; i=$((i+1)); done; "
              "printf 'bin \\377\\376 \\001 \\000 end\\n'; printf 'no newline at the end'")
    container = run_container(["sh", "-c", script],  # about 170 kB of log: nothing rotated away
                              log_config=LogConfig(type="local", config={"max-size": "40k", "max-file": "10"}))
    assert container.wait(timeout=60)["StatusCode"] == 0
    directory = Path(docker_client.info()["DockerRootDir"], "containers", container.id, "local-logs")
    assert (directory / "container.log.2.gz").exists()  # it rotated and compressed
    chain = LocalLogChain(str(directory), max_message_length=1 << 20)
    lines = list(chain) + chain.flush()
    chain.close()
    for stream in ("stdout", "stderr"):
        expected = engine_messages(container.logs(stdout=stream == "stdout", stderr=stream == "stderr",
                                                  timestamps=True))
        assert [(line.time, line.text) for line in lines if line.stream == stream] == expected, stream
    assert [line.text for line in lines if line.stream == "stderr"] == ["x" * 40000] * 3
    assert [line.text for line in lines if line.stream == "stdout"][-2:] == [
        "bin \ufffd\ufffd \x01 \x00 end", "no newline at the end"]
    assert len(lines) == 3000 + 3 + 2
