"""Shipping benchmark: log lines from N containers -> `shipper run` -> a bulk endpoint.

    .venv/bin/python bench/bench_shipping.py [--lines 1000000] [--containers 4] [--target fake|es|both]
                                             [--driver json-file|local|both]

Needs the test bed (scripts/testbed.sh up). Writes bench/results/shipping.json and the
"Shipping" table of docs/benchmarks.md. Two phases per target:

- backlog: the lines are already on disk when the shipper starts (from scratch, no
  checkpoint); docs/s = lines / time until the last one is acknowledged, CPU seconds
  per million docs and peak RSS of the shipper process.
- `--driver` picks the containers' log driver, both read from disk: json-file or local
  (protobuf entries; rotated files compressed). The baseline reads json-file only, so a
  local run is compared with the json-file run of the same invocation instead.
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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
from docker.types import LogConfig

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")
PAD = "x" * 110  # ~150-byte lines with the prefix


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
    return datetime.fromisoformat(seconds).replace(tzinfo=UTC).timestamp() + float("0." + (fraction or "0"))


# ------------------------------------------------------------------ workload


def log_config(driver: str, max_size: str) -> LogConfig:
    # the local driver compresses rotated files by default, which needs max-file >= 2
    return LogConfig(type=driver, config={"max-size": max_size, "max-file": "1" if driver == "json-file" else "2"})


def write_backlog(client, label: str, lines: int, containers: int, driver: str = "json-file", shards: int = 1) -> list:
    per = lines // containers
    made = []
    for n in range(containers):
        made.append(client.containers.run(
            IMAGE, ["sh", "-c", f"seq 1 {per} | sed 's/^/bench c{n} line /; s/$/ {PAD}/'"], detach=True,
            network_mode="none", labels={"shipper.bench": label, "shipper.bench_shard": f"{label}-{n % shards}"},
            name=f"shipper-bench-{label}-{n}",
            log_config=log_config(driver, "1g"),
        ))
    for container in made:
        container.wait(timeout=600)
    return made


def start_live(client, label: str, rate: int, seconds: int, containers: int, driver: str = "json-file") -> list:
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
    def __init__(self, hosts: str, label: str, state: Path, namespace: str, *extra: str,
                 match: str = "shipper.bench"):
        self.port = free_port()
        command = [sys.executable, "-m", "shipper", "run", "--log-format", "json"]
        for setting in (f"elasticsearch.hosts={hosts}", f"state.directory={state}", f"monitor.port={self.port}",
                        f"elasticsearch.namespace={namespace}", "sources.docker_events.enabled=false",
                        f"sources.docker_logs.include.labels={match}={label}", *extra):
            command += ["--set", setting]
        self.log = open(state.parent / "shipper.log", "ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.ready_cpu = 0.0

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the monitor answers (imports done, rules loaded, sources starting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("shipper exited; see its log") from None
                time.sleep(0.05)
        raise RuntimeError("shipper never answered on its monitor port")

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + "{") or line.startswith(name + " "):
                        return float(line.split()[-1])
        except OSError:
            pass
        return 0.0

    def source_status(self, name: str) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                return json.loads(response.read()).get("sources", {}).get(name, {})
        except (OSError, ValueError):
            return {}

    def wait_out(self, expected: int, timeout: float = 900) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.metric("shipper_events_out_total")
            if not self.ready_cpu and out:
                self.ready_cpu = self.cpu_seconds()  # start-up and the first batch: a fixed cost, not per document
            if out >= expected:
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                raise RuntimeError("shipper exited; see its log")
            time.sleep(0.05)
        raise RuntimeError(f"only {self.metric('shipper_events_out_total')} of {expected} acknowledged")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


# ------------------------------------------------------------------ the yardstick


def run_baseline(hosts: str, index: str, made: list, shape: Path | None = None) -> dict:
    """bench/baseline_loop.py over the same files and endpoint: wall time, its own CPU and peak RSS.
    With `shape` (write_shapes), the loop sends documents of the shipper's shape."""
    files = []
    for container in made:
        container.reload()
        files.append(f"{container.id}={container.attrs['LogPath']}")
    shaped = ["--shape", str(shape)] if shape else []
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "baseline_loop.py"), *shaped, hosts, index,
                                *files], stdout=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"baseline loop failed ({process.returncode})")
    assert process.stdout is not None
    peak_kib = int(process.stdout.read().split()[1])  # "VmHWM: <kB> kB"
    return {"seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": peak_kib / 1024}


def shipper_documents(made: list, namespace: str):
    """The shipper's renderer of these containers' log lines (JsonFileDocuments), with the built-in rules'
    prefilter, as `shipper run` makes it."""
    # imported here: the fake endpoint's process runs this file too and needs none of it
    from shipper.containers import ContainerMeta
    from shipper.detect.engine import RulesEngine
    from shipper.document import DocumentWriter
    from shipper.sources.docker_logs import template_event
    from shipper.sources.fastpath import JsonFileDocuments

    for container in made:
        container.reload()
    metas = {container.id: ContainerMeta.from_inspect(container.attrs) for container in made}
    engine = RulesEngine.from_paths([], metas.get)
    return JsonFileDocuments(DocumentWriter(namespace, metas.get), metas.get, lambda: engine.log_prefilter,
                             template_event)


def write_shapes(made: list, path: Path) -> Path:
    """For baseline_loop.py --shape: each container's document as the shipper renders it (its first line),
    but `@timestamp` and `message`."""
    documents = shipper_documents(made, "shaped")
    shapes = {}
    for container in made:
        log_path = container.attrs["LogPath"]
        with open(log_path, "rb") as handle:
            first = handle.readline()
        renderer = documents.for_container(container.id, log_path)
        renderer.consume(first, 0, 1 << 20, lambda offset, raw: None, lambda: False)
        (body,) = renderer.take()[1]
        shape = json.loads(body)
        del shape["@timestamp"], shape["message"]
        shapes[container.id] = shape
    path.write_text(json.dumps(shapes))
    return path


def fake_endpoint(work: Path, name: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    delays_path = work / f"delays-{name}.json"
    fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port), str(delays_path)])
    time.sleep(1)
    return fake, f"http://127.0.0.1:{port}", delays_path


def stop_fake(fake: subprocess.Popen, delays_path: Path) -> list[float]:
    fake.send_signal(signal.SIGTERM)
    fake.wait(30)
    return json.loads(delays_path.read_text()) if delays_path.exists() else []


def delete_es(hosts: str, names: list[str]) -> None:
    for name in names:
        for path in (f"/_data_stream/{name}", f"/{name}"):
            try:
                urllib.request.urlopen(urllib.request.Request(hosts + path, method="DELETE"), timeout=60).read()
            except OSError:
                pass


# ------------------------------------------------------------------ phases


def run_target(client, target: str, lines: int, containers: int, live_rate: int, live_seconds: int,
               runs: int, driver: str = "json-file", shaped: bool = False) -> dict:
    """`runs` rounds of (shipper, baseline) on the same backlog, alternating which goes first;
    with `shaped`, (shipper, baseline, the baseline sending the shipper's documents) in turn."""
    work = Path(tempfile.mkdtemp(prefix=f"shipper-bench-{target}-"))
    label = uuid.uuid4().hex[:8]
    made = []
    fake = None
    rounds = []
    try:
        print(f"[{target}] writing {lines} {driver} lines from {containers} containers ...", flush=True)
        backlog = write_backlog(client, label, lines, containers, driver)
        made += backlog  # and each round's live containers: removed at the end, never read by the baselines
        shape = write_shapes(backlog, work / "shapes.json") if shaped and driver == "json-file" else None
        for number in range(runs):
            if target == "fake":
                fake, hosts, delays_path = fake_endpoint(work, f"backlog-{number}")
            else:
                hosts = os.environ.get("ES_URL", "http://127.0.0.1:9200")
            namespace, baseline_index = f"bench{label}{number}", f"bench-baseline-{label}-{number}"
            measured = {}
            order = ["shipper", "baseline", "shaped"] if shape else ["shipper", "baseline"]
            order = order[number % len(order):] + order[:number % len(order)]
            for who in order if driver == "json-file" else ("shipper",):
                if who in ("baseline", "shaped"):
                    base = run_baseline(hosts, baseline_index, backlog, shape if who == "shaped" else None)
                    prefix = "baseline" if who == "baseline" else "shaped_baseline"
                    measured.update({f"{prefix}_docs_per_second": lines / base["seconds"],
                                     f"{prefix}_cpu_seconds_per_million": base["cpu"] / lines * 1e6,
                                     f"{prefix}_peak_rss_mb": base["rss_mb"]})
                    continue
                state = work / f"state-{number}"
                shipper = Shipper(hosts, label, state, namespace)
                try:
                    elapsed = shipper.wait_out(lines)
                    measured.update(docs_per_second=lines / elapsed,
                                    cpu_seconds_per_million=shipper.cpu_seconds() / lines * 1e6,
                                    peak_rss_mb=shipper.peak_rss_mb(), startup_cpu_seconds=shipper.ready_cpu)
                finally:
                    shipper.stop()
            if fake is not None:
                stop_fake(fake, delays_path)
                fake = None
            else:
                delete_es(hosts, [f"logs-shipper.events-{namespace}", baseline_index])
            if "baseline_docs_per_second" in measured:
                measured["cpu_ratio_to_baseline"] = (measured["cpu_seconds_per_million"]
                                                     / measured["baseline_cpu_seconds_per_million"])
                measured["docs_ratio_to_baseline"] = measured["docs_per_second"] / measured["baseline_docs_per_second"]
            if "shaped_baseline_docs_per_second" in measured:
                measured["cpu_ratio_to_shaped_baseline"] = (measured["cpu_seconds_per_million"]
                                                            / measured["shaped_baseline_cpu_seconds_per_million"])
                measured["docs_ratio_to_shaped_baseline"] = (measured["docs_per_second"]
                                                             / measured["shaped_baseline_docs_per_second"])
            if target == "fake" and live_rate:
                measured["live_p99_ms"], measured["live_p50_ms"] = run_live(client, work, label, number, live_rate,
                                                                            live_seconds, containers, made, driver)
            rounds.append({k: round(v, 3) for k, v in measured.items()})
            print(f"[{target}] round {number}: {rounds[-1]}", flush=True)
        result = {"target": target, "driver": driver, "lines": lines, "containers": containers, "runs": len(rounds)}
        for key in rounds[0]:
            result[key] = round(statistics.median(r[key] for r in rounds), 3 if "ratio" in key else 1)
        result["rounds"] = rounds
        return result
    finally:
        for container in made:
            container.remove(force=True)
        if fake is not None:
            fake.kill()


def run_processes(client, lines: int, containers: int, counts: list[int], runs: int) -> list[dict]:
    """Item 4 of the issue: does a second process pay on 2 cores? The same backlog shipped by N
    `shipper run` processes at once, each following its share of the containers (the other
    sources on in the first only), against one fake endpoint; rounds alternate with the baseline."""
    work = Path(tempfile.mkdtemp(prefix="shipper-bench-processes-"))
    label = uuid.uuid4().hex[:8]
    made = write_backlog(client, label, lines, containers, shards=max(counts))
    per = lines // containers
    results = []
    try:
        for number in range(runs):
            for count in counts:
                fake, hosts, delays_path = fake_endpoint(work, f"processes-{number}-{count}")
                base = run_baseline(hosts, f"bench-baseline-{label}", made)
                quiet = ["sources.processes.enabled=false", "sources.files.enabled=false",
                         "sources.stats.enabled=false", "sources.host_config.enabled=false"]
                shippers = []
                for k in range(count):  # container n is in shard n % max(counts): group shards by k
                    shards = [j for j in range(max(counts)) if j % count == k]
                    if len(shards) != 1 and count != 1:
                        raise SystemExit("--processes counts must divide the largest count")
                    shipper = Shipper(hosts, f"{label}-{shards[0]}" if count > 1 else label,
                                      work / f"state-{number}-{count}-{k}", f"bench{label}{number}{count}",
                                      *(quiet if k else ()),
                                      match="shipper.bench_shard" if count > 1 else "shipper.bench")
                    shippers.append((shipper, per * sum(1 for n in range(containers) if n % count == k)))
                try:
                    elapsed = max(shipper.wait_out(expected) for shipper, expected in shippers)
                    cpu = sum(shipper.cpu_seconds() for shipper, _ in shippers)
                    rss = [shipper.peak_rss_mb() for shipper, _ in shippers]
                finally:
                    for shipper, _ in shippers:
                        shipper.stop()
                    stop_fake(fake, delays_path)
                result = {"processes": count, "round": number, "docs_per_second": round(lines / elapsed),
                          "cpu_seconds_per_million": round(cpu / lines * 1e6, 2),
                          "baseline_docs_per_second": round(lines / base["seconds"]),
                          "baseline_cpu_seconds_per_million": round(base["cpu"] / lines * 1e6, 2),
                          "peak_rss_mb": [round(r, 1) for r in rss]}
                result["docs_ratio_to_baseline"] = round(result["docs_per_second"] / result["baseline_docs_per_second"], 3)
                result["cpu_ratio_to_baseline"] = round(cpu / base["cpu"], 3)
                print(result, flush=True)
                results.append(result)
    finally:
        for container in made:
            container.remove(force=True)
    return results


def run_live(client, work: Path, label: str, number: int, live_rate: int, live_seconds: int, containers: int,
             made: list, driver: str = "json-file") -> tuple[float, float]:
    """Containers write `live_rate` lines/s while a running shipper ships them: delay line -> endpoint."""
    fake, hosts, delays_path = fake_endpoint(work, f"live-{number}")
    live_label = f"{label}live{number}"
    shipper = Shipper(hosts, live_label, work / f"state-live-{number}", f"bench{live_label}")
    try:
        shipper.wait_ready()
        live_lines = live_rate // containers // 10 * containers * 10 * live_seconds
        made += start_live(client, live_label, live_rate, live_seconds, containers, driver)
        for container in made[-containers:]:
            container.wait(timeout=600)
        shipper.wait_out(live_lines)
    finally:
        shipper.stop()
        delays = stop_fake(fake, delays_path)
    qs = statistics.quantiles(delays, n=100)
    return qs[98] * 1000, qs[49] * 1000


def run_idle(client, count: int, seconds: int, runs: int) -> dict:
    """`count` idle containers followed by every source (logs, processes, files, stats): CPU and RSS at rest,
    `runs` rounds of a fresh shipper over the same containers; the median round's CPU and each round's."""
    work = Path(tempfile.mkdtemp(prefix="shipper-bench-idle-"))
    label = uuid.uuid4().hex[:8]
    made = []
    fake, hosts, delays_path = fake_endpoint(work, "idle")
    try:
        for n in range(count):
            made.append(client.containers.run(
                IMAGE, ["sh", "-c", "echo started; sleep 3600"], detach=True, init=True, network_mode="none",
                labels={"shipper.bench": label}, name=f"shipper-bench-{label}-idle-{n}",
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            ))
        rounds = []
        log_path = work / "shipper.log"
        for round_ in range(runs):
            log_start = log_path.stat().st_size if log_path.exists() else 0
            state = work / f"state-{round_}"
            shipper = Shipper(hosts, label, state, f"bench{label}idle{round_}", f"docker.include.labels=shipper.bench={label}")
            try:
                shipper.wait_ready()
                shipper.wait_out(count)  # each container's "started" line (a fresh state each round)
                time.sleep(20)  # the start-up walks of the upper layers, the first samples
                cpu, started = shipper.cpu_seconds(), time.monotonic()
                time.sleep(seconds)
                busy = (shipper.cpu_seconds() - cpu) / (time.monotonic() - started)
                result = {"cpu_percent_of_one_core": round(100 * busy, 2), "rss_mb": round(shipper.rss_mb(), 1),
                          "peak_rss_mb": round(shipper.peak_rss_mb(), 1),
                          "containers_followed": shipper.metric("shipper_containers_followed")}
                files = shipper.source_status("files")
                result["files_trees_watched"], result["files_inotify_watches"] = files.get("watched"), files.get("watches")
            finally:
                shipper.stop()
            with open(log_path, "rb") as handle:
                handle.seek(log_start)
                log_text = handle.read().decode(errors="replace")
            result["inotify_warnings"] = log_text.count("inotify")
            print(f"[idle] {count} containers, round {round_ + 1}: {result}", flush=True)
            rounds.append(result)
        middle = sorted(rounds, key=lambda r: r["cpu_percent_of_one_core"])[(len(rounds) - 1) // 2]
        return {"idle_containers": count, "files_source": True, **middle,
                "rounds_cpu_percent": [r["cpu_percent_of_one_core"] for r in rounds],
                "rounds_rss_mb": [r["rss_mb"] for r in rounds]}
    finally:
        stop_fake(fake, delays_path)
        for container in made:
            container.remove(force=True)


def save(key: str, value) -> str:
    """Set `key` in bench/results/shipping.json, keeping the other keys; returns the header line."""
    path = ROOT / "bench" / "results" / "shipping.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.loads(path.read_text()) if path.exists() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    date = datetime.now(UTC).isoformat(timespec="seconds")
    payload.setdefault("dates", {})[key] = date
    payload.update({"machine": machine, key: value})
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return (f"Measured {date} on {machine} (`bench/bench_shipping.py`; raw figures in "
            f"`bench/results/shipping.json`, `{key}`).")


def write_section(marker: str, text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    content = doc.read_text()
    start_mark, end_mark = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    start, end = content.index(start_mark), content.index(end_mark) + len(end_mark)
    doc.write_text(content[:start] + f"{start_mark}\n{text}\n{end_mark}" + content[end:])
    print(text)


def merged_results(results: list[dict]) -> list[dict]:
    """The recorded results with these in place of those of the same target and driver (each dated)."""
    path = ROOT / "bench" / "results" / "shipping.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    before = payload.get("dates", {}).get("results", "")[:10]  # results recorded before entries were dated
    today = datetime.now(UTC).date().isoformat()
    fresh = {(r["target"], r.get("driver", "json-file")): {**r, "measured": today} for r in results}
    kept = [{"measured": before, **r} for r in payload.get("results", [])
            if (r["target"], r.get("driver", "json-file")) not in fresh]
    return sorted(kept + list(fresh.values()), key=lambda r: (r["target"] != "fake", r.get("driver", "json-file")))


def write_report(results: list[dict]) -> None:
    results = merged_results(results)
    header = save("results", results)
    rows = ["| target | log driver | measured | lines | containers | docs/s (baseline) | CPU-s per 1M docs (baseline) "
            "| CPU ratio | docs/s ratio | peak RSS MB | live p50 / p99 |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        live = f"{r['live_p50_ms']:.0f} / {r['live_p99_ms']:.0f} ms" if "live_p99_ms" in r else "n/a"
        base_docs = f" ({r['baseline_docs_per_second']:,.0f})" if "baseline_docs_per_second" in r else ""
        base_cpu = f" ({r['baseline_cpu_seconds_per_million']})" if "baseline_cpu_seconds_per_million" in r else ""
        rows.append(f"| {r['target']} | {r.get('driver', 'json-file')} | {r['measured']} | "
                    f"{r['lines']:,} | {r['containers']} | "
                    f"{r['docs_per_second']:,.0f}{base_docs} | {r['cpu_seconds_per_million']}{base_cpu} | "
                    f"{r.get('cpu_ratio_to_baseline', 'n/a')} | {r.get('docs_ratio_to_baseline', 'n/a')} | "
                    f"{r['peak_rss_mb']} | {live} |")
    for r in results:
        if "cpu_ratio_to_shaped_baseline" in r:
            rows.append(f"\nAgainst the baseline loop sending documents of the shipper's shape (`--shaped`, "
                        f"{r['target']}): it used {r['shaped_baseline_cpu_seconds_per_million']} CPU-s per 1M docs "
                        f"at {r['shaped_baseline_docs_per_second']:,.0f} docs/s; CPU ratio "
                        f"{r['cpu_ratio_to_shaped_baseline']}, docs/s ratio {r['docs_ratio_to_shaped_baseline']}.")
    write_section("shipping", f"{header} Medians of {results[0]['runs']} alternating rounds of the shipper and "
                              f"`bench/baseline_loop.py` on the same files and endpoint.\n\n" + "\n".join(rows))


def write_scale(results: list[dict]) -> None:
    header = save("scale", results)
    rows = ["| logging containers | docs/s | CPU-s per 1M docs | baseline docs/s | CPU ratio | peak RSS MB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows += [f"| {r['containers']} | {r['docs_per_second']:,.0f} | {r['cpu_seconds_per_million']} | "
             f"{r['baseline_docs_per_second']:,.0f} | {r['cpu_ratio_to_baseline']} | {r['peak_rss_mb']} |"
             for r in results]
    write_section("shipping-scale", header + "\n\n" + "\n".join(rows))


def write_idle(results: list[dict]) -> None:
    header = save("idle", results)
    rows = ["| idle containers | sources | CPU % of one core, median (each round) | RSS MB | peak RSS MB "
            "| inotify warnings |",
            "| ---: | --- | --- | ---: | ---: | ---: |"]
    rows += [f"| {r['idle_containers']} | all, files on | {r['cpu_percent_of_one_core']} "
             f"({', '.join(str(c) for c in r.get('rounds_cpu_percent', []))}) | "
             f"{r['rss_mb']} | {r['peak_rss_mb']} | {r['inotify_warnings']} |" for r in results]
    write_section("shipping-idle", header + " Each round a fresh shipper over the same idle containers, CPU over "
                                            f"{results[0].get('idle_seconds', 60)} s after a 20 s settle.\n\n"
                                            + "\n".join(rows))


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
    parser.add_argument("--runs", type=int, default=3, help="alternating rounds of shipper and baseline")
    parser.add_argument("--driver", choices=["json-file", "local", "both"], default="json-file",
                        help="the containers' log driver (the baseline runs beside json-file only)")
    parser.add_argument("--shaped", action="store_true",
                        help="also run the baseline loop sending documents of the shipper's shape (json-file)")
    parser.add_argument("--no-report", action="store_true", help="print, do not write results or docs")
    parser.add_argument("--scale", type=int, nargs="*", help="instead: one round (no live phase) per container count")
    parser.add_argument("--idle", type=int, nargs="*", help="instead: idle containers, all sources on")
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--idle-runs", type=int, default=3, help="with --idle: rounds per count (median reported)")
    parser.add_argument("--processes", type=int, nargs="*",
                        help="instead: the backlog shipped by N shipper processes at once (fake target; e.g. 1 2)")
    args = parser.parse_args()
    client = docker.from_env()
    if args.processes:
        found = run_processes(client, args.lines, args.containers, args.processes, args.runs)
        print(json.dumps(found, indent=2)) if args.no_report else save("processes", found)
        return
    if args.idle:
        idle = [{**run_idle(client, count, args.idle_seconds, args.idle_runs), "idle_seconds": args.idle_seconds}
                for count in args.idle]
        print(json.dumps(idle, indent=2)) if args.no_report else write_idle(idle)
        return
    if args.scale:
        scale = [run_target(client, "fake", args.lines, count, 0, 0, 1) for count in args.scale]
        print(json.dumps(scale, indent=2)) if args.no_report else write_scale(scale)
        return
    targets = ["fake", "es"] if args.target == "both" else [args.target]
    drivers = ["json-file", "local"] if args.driver == "both" else [args.driver]
    results = [run_target(client, t, args.lines, args.containers, args.live_rate, args.live_seconds, args.runs, d,
                          args.shaped) for t in targets for d in drivers]
    if args.no_report:
        print(json.dumps(results, indent=2))
    else:
        write_report(results)


if __name__ == "__main__":
    main()
