"""Run the real `shipper run` as a child process, and read what it put in Elasticsearch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from elasticsearch import Elasticsearch, helpers

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ShipperProcess:
    """One shipper with its own state directory, namespace and monitor port.

    It follows only containers labelled `shipper.test.run=<run_id>`, so tests
    running side by side never see each other's logs.
    """

    def __init__(self, tmp_path: Path, *settings: str, env: dict[str, str] | None = None, run_id: str | None = None):
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.namespace = f"t{self.run_id}"
        self.state = tmp_path / "state"
        self.port = free_port()
        self.log_path = tmp_path / "shipper.log"
        self.settings = [
            f"state.directory={self.state}",
            f"monitor.port={self.port}",
            f"elasticsearch.namespace={self.namespace}",
            f"docker.include.labels=shipper.test.run={self.run_id}",
            "monitor.status_interval=5",
            # the engine's audit and the image checks judge the bed, not what a test is about: the audit is one
            # more document in every index, and the test image (named by tag, root, no HEALTHCHECK) would raise
            # image findings on every test container; test_host_audit.py turns both on
            "sources.host_config.enabled=false", "detection.images.enabled=false",
            *([f"elasticsearch.hosts={os.environ['ES_URL']}"] if os.environ.get("ES_URL") else []),
            *settings,  # last: a test's own settings win
        ]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"shipper.test.run": self.run_id}

    @property
    def index(self) -> str:
        return f"logs-shipper.events-{self.namespace}"

    def start(self) -> ShipperProcess:
        command = [sys.executable, "-m", "shipper", "run", "--log-format", "json"]
        for setting in self.settings:
            command += ["--set", setting]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.health()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"shipper exited with {self.process.returncode}:\n{self.log_tail()}") from None
                time.sleep(0.2)
        raise AssertionError(f"shipper did not answer on its monitor port:\n{self.log_tail()}")

    def stop(self, timeout: float = 120) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def health(self) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
            return response.read()

    def metric(self, name: str, **labels: str) -> float:
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(wanted + " "):
                    return float(line.split()[-1])
        return 0.0

    def wait_for_metric(self, name: str, at_least: float, timeout: float = 30, **labels: str) -> float:
        """Poll a metric until it reaches `at_least` or `timeout` passes; its last value."""
        deadline = time.monotonic() + timeout
        while (value := self.metric(name, **labels)) < at_least and time.monotonic() < deadline:
            time.sleep(0.5)
        return value

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def audit_state() -> tuple:
    """The kernel audit subsystem's settings and rules: a shipper with audit on must put them back."""
    from shipper.sources import netlink

    control = netlink.AuditControl()
    try:
        status = control.status()
        return status.enabled, status.backlog_limit, sorted(control.rules())
    finally:
        control.close()


def count(es: Elasticsearch, index: str, query: dict | None = None) -> int:
    """Documents in `index` now; 0 while it does not exist or its shard is still starting (503)."""
    tolerant = es.options(ignore_status=(404, 503))
    tolerant.indices.refresh(index=index)
    return tolerant.count(index=index, query=query or {"match_all": {}}).get("count", 0)


def wait_for_count(es: Elasticsearch, index: str, expected: int, query: dict | None = None,
                   timeout: float = 300, shipper: ShipperProcess | None = None) -> int:
    """Poll until `expected` documents are there, and then 3 s more to catch any surplus."""
    deadline = time.monotonic() + timeout
    found = -1
    while time.monotonic() < deadline:
        found = count(es, index, query)
        if found >= expected:
            time.sleep(3)
            return count(es, index, query)
        time.sleep(1)
    tail = f"\nshipper log:\n{shipper.log_tail()}" if shipper else ""
    raise AssertionError(f"{index}: {found} documents after {timeout}s, expected {expected}{tail}")


def all_docs(es: Elasticsearch, index: str, query: dict, fields: list[str]) -> list[dict]:
    """Every matching document's `_source` (only `fields`)."""
    es.indices.refresh(index=index)
    body = {"query": query, "_source": fields}
    return [hit["_source"] for hit in helpers.scan(es, index=index, query=body, size=5000)]
