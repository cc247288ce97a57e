"""Play every scenario in real containers against one real shipper and report what it caught.

    python -m tests.scenarios.suite          # needs the test bed: scripts/testbed.sh up

Prints per scenario the expected and the raised rules, then recall, false
positives and the time from each action to its verdict being searchable in
Elasticsearch (first seen by a 0.2 s poller, minus the event's own @timestamp:
the kernel's process start time, the inotify time, the engine's event time).
The pytest test in test_scenarios.py runs the same function and asserts on it.
"""

from __future__ import annotations

import ctypes
import io
import os
import socket
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import docker
import yaml
from docker.types import LogConfig
from elasticsearch import Elasticsearch

from shipper.detect.engine import BUILTIN_RULES
from shipper.detect.stateful import AnomalyDetector, MiningDetector, PortScanDetector
from shipper.es_setup import run_setup

from ..integration.shipper_proc import ShipperProcess
from .scenarios import SCENARIOS, Scenario

HERE = Path(__file__).resolve().parent
BASE_IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")
IMAGES = {"base": BASE_IMAGE, "latest": "shipper-testbed/busybox:latest", "tools": "shipper-testbed/scenario-tools:1"}


def image_of(scenario: Scenario) -> str:
    return f"shipper-testbed/scenario-{scenario.slug}:1" if scenario.own_image else IMAGES[scenario.image]
SUITE_SETTINGS = (
    "sources.processes.audit=true",
    "sources.processes.interval=0.25", "sources.stats.interval=1", "pipeline.flush_interval=0.2",
    "detection.anomaly.warmup_samples=10", "detection.mining.sustained_samples=3",
)
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
QUIET_SECONDS = 8  # after the last expected verdict, how long benign scenarios keep being watched
# verdicts that say how a container was started or what it logged: their action is not a moment we can time
TIMED_CATEGORIES = {"process_creation": "process", "file_event": "file"}


def rule_ids() -> dict[str, tuple[str, str]]:
    """name (file stem or detector key) -> (rule id, Sigma category or 'detector')."""
    out = {}
    for path in BUILTIN_RULES.glob("*.yml"):
        rule = yaml.safe_load(path.read_text())
        out[path.stem] = (rule["id"], rule["logsource"]["category"])
    for detector in (PortScanDetector, MiningDetector, AnomalyDetector):
        out[detector.info.key] = (detector.info.id, "detector")
    return out


@dataclass
class Outcome:
    scenario: Scenario
    container_id: str | None = None
    refused: str | None = None  # the engine would not run it here
    raised: dict[str, float] = field(default_factory=dict)  # rule id -> latency (s) of its first alert

    def names(self, ids: dict[str, tuple[str, str]]) -> set[str]:
        by_id = {rule_id: name for name, (rule_id, _) in ids.items()}
        return {by_id.get(rule_id, rule_id) for rule_id in self.raised}


# ---------------------------------------------------------------- images


def build_images(client: docker.DockerClient, scenarios: list[Scenario]) -> None:
    client.images.get(BASE_IMAGE).tag("shipper-testbed/busybox", "latest")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "memfd-exec"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(HERE / "memfd_exec.c")], check=True)
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            # stand-ins for tools busybox lacks (a kubectl, a miner): the same binary under their names;
            # directories a non-root application owns under /etc and /var/log
            dockerfile = (f"FROM {BASE_IMAGE}\nCOPY memfd-exec /usr/local/bin/memfd-exec\n"
                          "COPY --chown=1000:1000 app /app\nCOPY --chown=1000:1000 app /etc/myapp\n"
                          "COPY --chown=1000:1000 app /var/log/app\nENV PATH=/usr/local/bin:/bin\n"
                          "RUN cp /bin/busybox /usr/local/bin/kubectl && cp /bin/busybox /usr/local/bin/minerd\n").encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(binary, "memfd-exec")
            app = tarfile.TarInfo("app")
            app.type, app.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(app)
        context.seek(0)
        client.images.build(fileobj=context, custom_context=True, tag=IMAGES["tools"], network_mode="none", rm=True)
    for scenario in scenarios:
        if scenario.own_image:
            repository, tag = image_of(scenario).rsplit(":", 1)
            client.images.get(IMAGES[scenario.image]).tag(repository, tag)


def remove_images(client: docker.DockerClient, scenarios: list[Scenario]) -> None:
    names = {IMAGES["latest"], IMAGES["tools"]} | {image_of(s) for s in scenarios}
    for name in names - {BASE_IMAGE}:
        try:
            client.images.remove(name, noprune=False)
        except docker.errors.APIError:
            pass


# ---------------------------------------------------------------- playing


def http_get_in_netns(pid: int, port: int, count: int) -> int:
    """GET / `count` times on 127.0.0.1:port inside the network namespace of `pid`; answers received.

    Runs in a thread of its own that enters the namespace (setns affects only the
    calling thread), so the host's own networking is untouched.
    """
    answered = []

    def client() -> None:
        with open(f"/proc/{pid}/ns/net") as namespace:
            if LIBC.setns(namespace.fileno(), CLONE_NEWNET) != 0:  # os.setns needs Python 3.12
                raise OSError(ctypes.get_errno(), "setns")
        for _ in range(count):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    if conn.recv(64).startswith(b"HTTP/1"):
                        answered.append(1)
            except OSError:
                time.sleep(0.2)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    thread.join(60)
    return len(answered)


def start(client: docker.DockerClient, scenario: Scenario, labels: dict[str, str]) -> Outcome:
    outcome = Outcome(scenario)
    kwargs = {"network_mode": "none", "init": True, "detach": True,
              "labels": {**labels, "shipper.test": "1", "shipper.test.scenario": scenario.name},
              "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
              "name": f"scenario-{uuid.uuid4().hex[:10]}", **scenario.run}
    try:
        command = list(scenario.command) or ["sh", "-c", scenario.script]
        container = client.containers.create(image_of(scenario), command, **kwargs)
    except docker.errors.APIError as exc:
        outcome.refused = str(exc)
        return outcome
    outcome.container_id = container.id
    try:
        container.start()
    except docker.errors.APIError as exc:  # e.g. this sandbox refuses privileged containers
        outcome.refused = str(exc.explanation or exc)
    return outcome


def play_later(client: docker.DockerClient, outcome: Outcome, errors: list[str]) -> None:
    """Execs and HTTP requests, a few seconds after start (when the shipper follows the container)."""
    scenario = outcome.scenario
    time.sleep(3)
    container = client.containers.get(outcome.container_id)
    for spec in scenario.execs:
        try:
            container.exec_run(spec["cmd"], user=spec.get("user", ""), tty=spec.get("tty", False),
                               privileged=spec.get("privileged", False))
        except docker.errors.APIError as exc:
            errors.append(f"{scenario.name}: exec {spec['cmd']}: {exc}")
    if scenario.http_requests:
        container.reload()
        answered = http_get_in_netns(container.attrs["State"]["Pid"], 8080, scenario.http_requests)
        if answered < scenario.http_requests:
            errors.append(f"{scenario.name}: {answered}/{scenario.http_requests} HTTP answers")


class AlertPoller:
    """Records when each alert document is first searchable, by polling every 0.2 s."""

    def __init__(self, es: Elasticsearch, index: str):
        self.es = es.options(ignore_status=(404, 503))
        self.index = index
        self.first_seen: dict[str, tuple[float, dict]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AlertPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            answer = self.es.search(index=self.index, query={"term": {"event.kind": "alert"}}, size=2000,
                                    source=["@timestamp", "container.id", "shipper.verdicts.rule.id"])
            now = time.time()
            for hit in (answer.get("hits") or {}).get("hits", []):
                self.first_seen.setdefault(hit["_id"], (now, hit["_source"]))


def _epoch(timestamp: str) -> float:
    head, _, rest = timestamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00").timestamp()


def run_suite(client: docker.DockerClient, es: Elasticsearch, workdir: Path, timeout: float = 120) -> dict:
    ids = rule_ids()
    run_setup(es)
    only = os.environ.get("SHIPPER_SCENARIOS")  # a substring of names, to replay a few while debugging
    scenarios = [s for s in SCENARIOS if not only or any(part in s.name for part in only.split(","))]
    build_images(client, scenarios)
    shipper = ShipperProcess(workdir, *SUITE_SETTINGS)
    outcomes: list[Outcome] = []
    errors: list[str] = []
    poller = None
    try:
        shipper.start()
        poller = AlertPoller(es, shipper.index).start()
        outcomes = [start(client, scenario, shipper.labels) for scenario in scenarios]
        players = [threading.Thread(target=play_later, args=(client, o, errors), daemon=True)
                   for o in outcomes if o.refused is None and (o.scenario.execs or o.scenario.http_requests)]
        for player in players:
            player.start()
        expected = {(o.container_id, ids[name][0]) for o in outcomes if o.refused is None for name in o.scenario.expect}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {(src.get("container", {}).get("id"), v["rule"]["id"])
                    for _, src in poller.first_seen.values() for v in src["shipper"]["verdicts"]}
            if expected <= seen:
                break
            time.sleep(0.5)
        time.sleep(QUIET_SECONDS)
        for player in players:
            player.join(30)
    finally:
        if os.environ.get("SHIPPER_SCENARIO_LOG"):
            Path(os.environ["SHIPPER_SCENARIO_LOG"]).write_text(shipper.log_path.read_text(errors="replace"))
        if poller:
            poller.stop()
        if shipper.process is not None and shipper.process.poll() is None:
            shipper.stop()  # SIGTERM: the shipper removes its audit rules and restores the audit settings
        shipper.close()
        for outcome in outcomes:
            if outcome.container_id:
                try:
                    client.containers.get(outcome.container_id).remove(force=True)
                except docker.errors.NotFound:
                    pass
        remove_images(client, scenarios)
    by_container = {o.container_id: o for o in outcomes if o.container_id}
    for seen_at, source in sorted(poller.first_seen.values(), key=lambda item: item[0]):
        outcome = by_container.get(source.get("container", {}).get("id"))
        if outcome is None:
            continue
        for verdict in source["shipper"]["verdicts"]:
            outcome.raised.setdefault(verdict["rule"]["id"], seen_at - _epoch(source["@timestamp"]))
    return summarize(outcomes, ids, errors, shipper)


def summarize(outcomes: list[Outcome], ids: dict[str, tuple[str, str]], errors: list[str], shipper) -> dict:
    rows, latencies = [], {"process": [], "file": [], "all": []}
    expected_total = found_total = 0
    false_positives = []
    refused = []
    known_gaps: list[tuple[str, list[str], str]] = []
    for outcome in outcomes:
        scenario = outcome.scenario
        raised = outcome.names(ids)
        if outcome.refused:
            refused.append((scenario.name, outcome.refused))
            rows.append((scenario.kind, scenario.name, sorted(scenario.expect), [], "REFUSED BY THE ENGINE", ""))
            continue
        missing = scenario.expect - raised
        if missing and scenario.known_gap:
            known_gaps.append((scenario.name, sorted(missing), scenario.known_gap))
            rows.append((scenario.kind, scenario.name, sorted(scenario.expect), sorted(raised - scenario.expect),
                         f"GAP missing {sorted(missing)} (known: {scenario.known_gap})", ""))
            continue
        expected_total += len(scenario.expect)
        found_total += len(scenario.expect) - len(missing)
        if not scenario.attack and raised:
            false_positives.append((scenario.name, sorted(raised)))
        timed = []
        for name in scenario.expect - missing:
            rule_id, category = ids[name]
            latency = outcome.raised[rule_id]
            latencies["all"].append(latency)
            if category in TIMED_CATEGORIES:
                latencies[TIMED_CATEGORIES[category]].append(latency)
            timed.append(f"{latency:.2f}s")
        verdict = "ok" if not missing and (scenario.attack or not raised) else "FAIL"
        rows.append((scenario.kind, scenario.name, sorted(scenario.expect), sorted(raised - scenario.expect),
                     verdict + (f" missing {sorted(missing)}" if missing else ""), " ".join(timed)))
    stats = {key: _quantiles(values) for key, values in latencies.items()}
    return {
        "rows": rows,
        "recall": found_total / expected_total if expected_total else 0.0,
        "expected": expected_total,
        "found": found_total,
        "false_positives": false_positives,
        "known_gaps": known_gaps,
        "refused": refused,
        "latency": stats,
        "errors": errors,
        "shipper_log": shipper.log_tail(60),
        "index": shipper.index,
        "attacks": sum(1 for o in outcomes if o.scenario.attack),
        "fleeting_attacks": sum(1 for o in outcomes if o.scenario.attack and o.scenario.fleeting),
        "benign": sum(1 for o in outcomes if not o.scenario.attack),
    }


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"n": len(ordered), "median": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "max": round(ordered[-1], 3)}


def report(result: dict) -> str:
    out = io.StringIO()
    for kind, name, expect, extra, verdict, timed in result["rows"]:
        print(f"{kind:6} {verdict:4.4} {name}", file=out)
        print(f"         expected: {', '.join(expect) or '(nothing)'}" + (f"   in {timed}" if timed else ""), file=out)
        if extra:
            print(f"         also raised: {', '.join(extra)}", file=out)
        if verdict.startswith(("FAIL", "REFUSED", "GAP")):
            print(f"         {verdict}", file=out)
    print(f"\n{result['attacks']} attack scenarios ({result['fleeting_attacks']} holding nothing alive) and "
          f"{result['benign']} benign scenarios", file=out)
    print(f"recall: {result['found']}/{result['expected']} expected verdicts = {result['recall']:.1%}", file=out)
    print(f"false positives (benign scenarios with any alert): {len(result['false_positives'])} "
          f"{result['false_positives'] or ''}", file=out)
    print(f"known gaps missed this run (not in recall): {len(result['known_gaps'])} "
          f"{[name for name, _, _ in result['known_gaps']] or ''}", file=out)
    for name, why in result["refused"]:
        print(f"refused by this engine (not counted): {name}: {why}", file=out)
    for key, values in result["latency"].items():
        if values:
            print(f"action -> verdict searchable in Elasticsearch, {key} scenarios: median {values['median']:.2f} s, "
                  f"p95 {values['p95']:.2f} s, max {values['max']:.2f} s (n={values['n']})", file=out)
    for error in result["errors"]:
        print(f"error: {error}", file=out)
    return out.getvalue()


def main() -> None:
    client = docker.from_env(timeout=120)
    es = Elasticsearch(os.environ.get("ES_URL", "http://127.0.0.1:9200"), request_timeout=30)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_suite(client, es, Path(tmp))
    print(report(result))


if __name__ == "__main__":
    main()
