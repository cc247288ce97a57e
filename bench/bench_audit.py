"""Host and image audit benchmark: what one engine audit, `shipper audit` and a Trivy report cost.

    .venv/bin/python bench/bench_audit.py [--containers 0,20,50] [--rounds 5]

Needs the test bed (scripts/testbed.sh up). Writes bench/results/audit.json and prints the
figures (medians of --rounds):

- engine audit: ms per `host_config` audit (docker info, the /proc scan for dockerd,
  daemon.json, stat of socket and data root) plus judging it with the built-in rules;
- `shipper audit`: wall seconds of the whole command in-process (rules loaded, host,
  every running container's start event with its image facts, judged, rendered as JSON),
  with N extra idle containers (`sleep`, network none) running, and ms per container;
- Trivy: findings/s turned into judged events from debian-buster.json (the corpus under
  ../shared/corpora/trivy) joined to 1 and to 50 running containers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path

import docker

from shipper.audit import run_audit
from shipper.config import load_config
from shipper.detect.engine import RulesEngine
from shipper.sources.host_config import audit_event
from shipper.sources.vulnerabilities import RunningContainer, read_report, report_events

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")
REPORT = ROOT.parent / "shared" / "corpora" / "trivy" / "debian-buster.json"


def median_of(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def engine_audit_ms(client, engine: RulesEngine, rounds: int) -> float:
    return round(1000 * median_of(rounds, lambda: engine.judge(audit_event(client))), 2)


def shipper_audit(client, extra: int, rounds: int) -> dict:
    label = {"shipper.bench": uuid.uuid4().hex[:8]}
    made = [client.containers.run(IMAGE, ["sleep", "600"], detach=True, network_mode="none", init=True, labels=label)
            for _ in range(extra)]
    try:
        running = len(client.containers.list())
        config = load_config(None)
        seconds = median_of(rounds, lambda: run_audit(config, fmt="json", out=io.StringIO(), err=io.StringIO()))
        return {"running_containers": running, "seconds": round(seconds, 3),
                "ms_per_container": round(1000 * seconds / running, 1) if running else None}
    finally:
        for container in made:
            container.remove(force=True)


def trivy_rate(engine: RulesEngine, containers: int, rounds: int) -> int:
    report = read_report(REPORT)
    running = [RunningContainer(f"c{n}", report["Metadata"]["ImageID"], frozenset()) for n in range(containers)]
    repeat = 200

    def work():
        for _ in range(repeat):
            for event in report_events(report, REPORT, running, 0.0):
                engine.judge(event)

    findings = sum(len(r.get("Vulnerabilities") or []) for r in report["Results"]) * containers * repeat
    return int(findings / median_of(rounds, work))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", default="0,20,50")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    engine = RulesEngine.from_paths([], lambda cid: None)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "engine": client.version().get("Version")},
        "engine_audit_ms": engine_audit_ms(client, engine, args.rounds * 4),
        "shipper_audit": [shipper_audit(client, int(n), args.rounds) for n in args.containers.split(",")],
        "trivy_findings_per_s": {str(n): trivy_rate(engine, n, args.rounds) for n in (1, 50)},
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "audit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
