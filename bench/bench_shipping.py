"""Shipping benchmark: log lines from N containers -> `shipper run` -> a bulk endpoint.

    .venv/bin/python bench/bench_shipping.py [--lines 1000000] [--containers 4] [--target fake|es|both]
                                             [--driver json-file|local|both]

Needs the test bed (scripts/testbed.sh up). Writes bench/results/shipping.json and the
"Shipping" table of docs/benchmarks.md. Two phases per target:

- backlog: the lines are already on disk when the shipper starts (from scratch, no
  checkpoint); docs/s = lines / time until the last one is acknowledged, CPU seconds
  per million docs and peak RSS of the shipper process.
- `--driver` picks the containers' log driver, both read from disk: json-file or
  local (protobuf entries; rotated files compressed).
- live: containers write at a fixed rate while the shipper runs; the fake endpoint
  samples every 50th document's `@timestamp` on arrival, giving p50/p99 delay from a
  line's timestamp to its acknowledgement.

Everything is on, as in production: ids, checkpoints, enrichment, the engine event
source stays off (it is not what is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
from docker.types import LogConfig

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")
PAD = "x" * 110  # ~150-byte lines with the prefix


def log_config(driver: str, max_size: str) -> LogConfig:
    # the local driver compresses rotated files by default, which needs max-file >= 2
    return LogConfig(type=driver, config={"max-size": max_size, "max-file": "1" if driver == "json-file" else "2"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ fake _bulk endpoint


def serve_fake_bulk(port: int, delays_path: str) -> None:
    """Answer every _bulk with success; sample delays. Runs in its own process."""
    import orjson

    delays: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: 40 ms a request

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.time()
            lines = body.split(b"\n")
            for doc in lines[1::100]:  # every 50th document (action/doc pairs)
                if doc:
                    stamp = orjson.loads(doc)["@timestamp"]
                    delays.append(now - _parse(stamp))
            self._answer(b'{"errors":false}')

        do_PUT = do_POST  # the 8.x client sends _bulk as PUT

        def do_GET(self) -> None:  # noqa: N802
            self._answer(b"{}")

        def _answer(self, payload: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def dump(*_):
        Path(delays_path).write_text(json.dumps(delays))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    server.serve_forever()


def _parse(stamp: str) -> float:
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(seconds).replace(tzinfo=timezone.utc).timestamp() + float("0." + (fraction or "0"))


# ------------------------------------------------------------------ workload


def write_backlog(client, label: str, lines: int, containers: int, driver: str) -> list:
    per = lines // containers
    made = []
    for n in range(containers):
        made.append(client.containers.run(
            IMAGE, ["sh", "-c", f"seq 1 {per} | sed 's/^/bench c{n} line /; s/$/ {PAD}/'"], detach=True,
            network_mode="none", labels={"shipper.bench": label}, name=f"shipper-bench-{label}-{n}",
            log_config=log_config(driver, "1g"),
        ))
    for container in made:
        container.wait(timeout=600)
    return made


def start_live(client, label: str, rate: int, seconds: int, containers: int, driver: str) -> list:
    """Containers writing `rate` lines/s in all for `seconds`, labelled like the backlog ones."""
    per_container = rate // containers // 10  # lines per 0.1 s
    rounds = seconds * 10
    script = (f"k=0; while [ $k -lt {rounds} ]; do seq $((k*{per_container}+1)) $((k*{per_container}+{per_container})) "
              f"| sed 's/^/bench live /; s/$/ {PAD}/'; usleep 100000; k=$((k+1)); done")
    return [client.containers.run(
        IMAGE, ["sh", "-c", script], detach=True, network_mode="none", labels={"shipper.bench": label},
        name=f"shipper-bench-{label}-live-{n}",
        log_config=log_config(driver, "100m"),
    ) for n in range(containers)]


# ------------------------------------------------------------------ shipper process


class Shipper:
    def __init__(self, hosts: str, label: str, state: Path):
        self.port = free_port()
        command = [sys.executable, "-m", "shipper", "run", "--log-format", "json"]
        for setting in (f"elasticsearch.hosts={hosts}", f"state.directory={state}", f"monitor.port={self.port}",
                        f"elasticsearch.namespace=bench{label}", "sources.docker_events.enabled=false",
                        f"sources.docker_logs.include.labels=shipper.bench={label}"):
            command += ["--set", setting]
        self.log = open(state.parent / "shipper.log", "ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + "{") or line.startswith(name + " "):
                        return float(line.split()[-1])
        except OSError:
            pass
        return 0.0

    def wait_out(self, expected: int, timeout: float = 900) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metric("shipper_events_out_total") >= expected:
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                raise RuntimeError("shipper exited; see its log")
            time.sleep(0.05)
        raise RuntimeError(f"only {self.metric('shipper_events_out_total')} of {expected} acknowledged")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


# ------------------------------------------------------------------ phases


def run_target(client, target: str, lines: int, containers: int, live_rate: int, live_seconds: int,
               driver: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"shipper-bench-{target}-"))
    fake = None
    delays_path = work / "delays.json"
    if target == "fake":
        port = free_port()
        fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port), str(delays_path)])
        hosts = f"http://127.0.0.1:{port}"
        time.sleep(1)
    else:
        hosts = os.environ.get("ES_URL", "http://127.0.0.1:9200")
    label = uuid.uuid4().hex[:8]
    made = []
    try:
        print(f"[{target}] writing {lines} {driver} lines from {containers} containers ...", flush=True)
        made += write_backlog(client, label, lines, containers, driver)
        state = work / "state"
        shipper = Shipper(hosts, label, state)
        elapsed = shipper.wait_out(lines)
        result = {
            "target": target, "driver": driver, "lines": lines, "containers": containers,
            "backlog_seconds": round(elapsed, 2),
            "docs_per_second": round(lines / elapsed),
            "cpu_seconds_per_million": round(shipper.cpu_seconds() / lines * 1e6, 2),
            "peak_rss_mb": round(shipper.peak_rss_mb(), 1),
        }
        print(f"[{target}] backlog: {result}", flush=True)
        if target == "fake":
            shipper.stop()
            live_lines = live_rate // containers // 10 * containers * 10 * live_seconds
            made += start_live(client, label, live_rate, live_seconds, containers, driver)
            shipper = Shipper(hosts, label, state)  # same checkpoint: only the new lines, as they come
            for container in made[-containers:]:
                container.wait(timeout=600)
            shipper.wait_out(live_lines)
            fake.send_signal(signal.SIGTERM)
            fake.wait(30)
            fake = None
            delays = json.loads(delays_path.read_text())
            live = delays[-(len(delays) * live_lines // (lines + live_lines)):] if delays else []
            if live:
                qs = statistics.quantiles(live, n=100)
                result.update(live_rate=live_rate, delay_p50_ms=round(qs[49] * 1000, 1), delay_p99_ms=round(qs[98] * 1000, 1))
        shipper.stop()
        return result
    finally:
        for container in made:
            container.remove(force=True)
        if fake is not None:
            fake.kill()


def write_report(results: list[dict]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine, "results": results}
    (out / "shipping.json").write_text(json.dumps(payload, indent=2) + "\n")
    rows = ["| target | log driver | lines | containers | docs/s | CPU-s per 1M docs | peak RSS MB | live p50 / p99 delay |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        delay = f"{r['delay_p50_ms']} / {r['delay_p99_ms']} ms at {r['live_rate']} lines/s" if "delay_p50_ms" in r else "n/a"
        rows.append(f"| {r['target']} | {r.get('driver', 'json-file')} | {r['lines']:,} | {r['containers']} | "
                    f"{r['docs_per_second']:,} | "
                    f"{r['cpu_seconds_per_million']} | {r['peak_rss_mb']} | {delay} |")
    section = (f"<!-- shipping:start -->\nMeasured {payload['date']} on {machine} "
               f"(`bench/bench_shipping.py`, raw figures in `bench/results/shipping.json`).\n\n" + "\n".join(rows) + "\n<!-- shipping:end -->")
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    start, end = text.index("<!-- shipping:start -->"), text.index("<!-- shipping:end -->") + len("<!-- shipping:end -->")
    doc.write_text(text[:start] + section + text[end:])
    print("\n".join(rows))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-fake":
        serve_fake_bulk(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--target", choices=["fake", "es", "both"], default="both")
    parser.add_argument("--live-rate", type=int, default=20_000, help="lines/s written in the live phase")
    parser.add_argument("--live-seconds", type=int, default=10)
    parser.add_argument("--driver", choices=["json-file", "local", "both"], default="json-file",
                        help="the containers' log driver")
    args = parser.parse_args()
    client = docker.from_env()
    targets = ["fake", "es"] if args.target == "both" else [args.target]
    drivers = ["json-file", "local"] if args.driver == "both" else [args.driver]
    results = [run_target(client, t, args.lines, args.containers, args.live_rate, args.live_seconds, d)
               for t in targets for d in drivers]
    write_report(results)


if __name__ == "__main__":
    main()
