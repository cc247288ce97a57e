"""Detection benchmark: the rules engine's throughput, and what sampling idle containers costs.

    .venv/bin/python bench/bench_detection.py [--events 100000] [--containers 10,50] [--seconds 30]
                                              [--sigmahq DIR] [--engine-only]

Writes bench/results/detection.json and the "Detection" section of docs/benchmarks.md.

- engine: events/s through `RulesEngine.judge` with the built-in ruleset, the
  stateful detectors, allowlist and throttle on, per kind of event (the rules of its
  category run, plus the detectors for sampled sources); median of 5 rounds. Then
  again with SigmaHQ's linux rules loaded as well (`--sigmahq`, default
  ../shared/corpora/sigmahq/rules/linux when present): 122 process_creation rules,
  8 file_event, 5 network_connection, 15 keyword rules on log lines (auditd and the
  other services are ignored).
- sampling: N idle containers (`sleep`) on the test bed's engine; the processes
  (the kernel's exec events, and /proc every 0.5 s), files (inotify on each upper layer
  and /dev) and stats (10 s) sources run at their defaults in this process for
  `--seconds`; CPU % of one core is this process's CPU time over wall time, minus the
  same measured with no container. Needs the test bed (scripts/testbed.sh up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from shipper.config import DetectionConfig
from shipper.detect.engine import RulesEngine
from shipper.ecs import relocate
from shipper.model import Event, event_id

ROOT = Path(__file__).resolve().parents[1]
SIGMAHQ_LINUX_RULES = ROOT.parent / "shared" / "corpora" / "sigmahq" / "rules" / "linux"
IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")


def sample_events() -> dict[str, list[Event]]:
    def event(source: str, fields: dict, n: int) -> Event:
        # as the pipeline hands them to detection: custom fields under shipper.* (shipper/ecs.py)
        return Event(event_id(source, n), "2026-11-28T00:00:00.000Z", source, relocate(fields), container_id=f"c{n % 20}")

    kinds = {
        "log line": ("docker_logs", lambda n: {"message": f"127.0.0.1 - GET /item/{n} HTTP/1.1 200 512 3ms",
                                                "event": {"action": "log"}}),
        "process": ("processes", lambda n: {"event": {"action": "process_started"}, "process": {
            "name": "python3", "executable": "/usr/bin/python3", "command_line": f"python3 worker.py --job {n}",
            "args": ["python3", "worker.py", "--job", str(n)], "upper_layer": False, "memfd": False,
            "stdin_socket": False, "stdout_socket": False, "parent": {"name": "sh", "command_line": "sh -c run"}}}),
        "file": ("files", lambda n: {"event": {"action": "creation"}, "file": {
            "path": f"/app/data/part-{n}.csv", "type": "file", "size": 4096}}),
        "network": ("network", lambda n: {"event": {"action": "connection_established"},
                                          "network": {"direction": "egress", "state": "ESTABLISHED"},
                                          "destination": {"ip": "127.0.0.1", "port": 5432}}),
        "exec": ("docker_events", lambda n: {"event": {"action": "exec_start"}, "process": {
            "command_line": "cat /etc/hostname", "executable": "cat", "interactive": False, "user": {"name": "app"}},
            "shipper": {"exec": {"privileged": False, "health_check": False}}}),
    }
    return {kind: [event(source, make(n), n) for n in range(2000)] for kind, (source, make) in kinds.items()}


def engine_throughput(total: int, extra_rules: list[Path] = ()) -> dict[str, int]:
    engine = RulesEngine.from_config(DetectionConfig(rules=[str(p) for p in extra_rules]), None)
    out = {}
    for kind, events in sample_events().items():
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            done = 0
            while done < total:
                for item in events:
                    engine.judge(item)
                done += len(events)
            rounds.append(done / (time.perf_counter() - started))
        out[kind] = int(statistics.median(rounds))
    out["rules"] = len(engine.rules)
    return out


def sampling_cost(containers: int, seconds: float) -> dict:
    import docker

    from shipper.containers import ContainerCache, Selector, Watched
    from shipper.sources.files import FilesSource
    from shipper.sources.processes import ProcessesSource
    from shipper.sources.stats import StatsSource

    client = docker.from_env(timeout=120)
    label = f"bench-{uuid.uuid4().hex[:8]}"
    made = [client.containers.run(IMAGE, ["sleep", "3600"], detach=True, network_mode="none", init=True,
                                  labels={"shipper.test": "1", "shipper.bench": label}) for _ in range(containers)]
    try:
        watched = Watched(client, ContainerCache(client), Selector(include_labels=(f"shipper.bench={label}",)))
        sources = [ProcessesSource(watched), FilesSource(watched), StatsSource(watched)]
        events = []
        threads = [threading.Thread(target=s.run, args=(lambda batch: events.extend(batch.events), {}), daemon=True)
                   for s in sources]
        for thread in threads:
            thread.start()
        time.sleep(3)  # first samples: every process and socket is new once
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for source in sources:
            source.close()
        for thread in threads:
            thread.join(15)
        return {"containers": containers, "cpu_percent_of_one_core": round(100 * cpu / wall, 2), "events": len(events)}
    finally:
        for container in made:
            container.remove(force=True)


def write_report(payload: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "detection.json").write_text(json.dumps(payload, indent=2) + "\n")
    engine = payload["engine"]
    rows = [f"Measured {payload['date']} on {payload['machine']} (`bench/bench_detection.py`, raw figures in "
            "`bench/results/detection.json`).", "",
            f"Rules engine, {engine['rules']} built-in rules with the stateful detectors, allowlist and throttle "
            "(median of 5 rounds, one thread):", "", "| event kind | events/s |", "| --- | ---: |"]
    rows += [f"| {kind} | {value:,} |" for kind, value in engine.items() if kind != "rules"]
    if payload.get("engine_sigmahq"):
        sigmahq = payload["engine_sigmahq"]
        rows += ["", f"With SigmaHQ's linux rules loaded as well ({sigmahq['rules']} rules judging events in all; "
                 "SigmaHQ/sigma 8eaafff, mapped by shipper/detect/sigmahq.py):", "",
                 "| event kind | events/s |", "| --- | ---: |"]
        rows += [f"| {kind} | {value:,} |" for kind, value in sigmahq.items() if kind != "rules"]
    baseline = payload["sampling"][0]["cpu_percent_of_one_core"]
    measured = f" (measured {payload['sampling_date']})" if "sampling_date" in payload else ""
    rows += ["", f"Watching idle containers{measured} (processes: the kernel's exec events, plus /proc every 0.5 s; "
             "files: inotify on each upper layer and /dev; stats every 10 s), CPU % of one "
             f"core above the {baseline}% the sources use with no container:", "",
             "| idle containers | CPU % of one core | events in the window |", "| ---: | ---: | ---: |"]
    rows += [f"| {s['containers']} | {round(s['cpu_percent_of_one_core'] - baseline, 2)} | {s['events']} |"
             for s in payload["sampling"][1:]]
    section = "<!-- detection:start -->\n" + "\n".join(rows) + "\n<!-- detection:end -->"
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    if "<!-- detection:start -->" in text:
        start = text.index("<!-- detection:start -->")
        end = text.index("<!-- detection:end -->") + len("<!-- detection:end -->")
        text = text[:start] + section + text[end:]
    else:
        text += "\n## Detection\n\n" + section + "\n"
    doc.write_text(text)
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events per kind and round")
    parser.add_argument("--containers", default="10,50")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sigmahq", type=Path, default=SIGMAHQ_LINUX_RULES,
                        help="SigmaHQ rules to load for the second engine run (skipped when absent)")
    parser.add_argument("--engine-only", action="store_true", help="no sampling run (needs no test bed)")
    args = parser.parse_args()
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "engine": engine_throughput(args.events),
        "engine_sigmahq": engine_throughput(args.events, [args.sigmahq]) if args.sigmahq.is_dir() else None,
    }
    previous = ROOT / "bench" / "results" / "detection.json"
    if args.engine_only and previous.exists():  # keep the last sampling figures, with their date
        old = json.loads(previous.read_text())
        payload["sampling"], payload["sampling_date"] = old["sampling"], old.get("sampling_date", old["date"])
    else:
        payload["sampling"] = [sampling_cost(n, args.seconds) for n in [0, *map(int, args.containers.split(","))]]
    write_report(payload)


if __name__ == "__main__":
    main()
