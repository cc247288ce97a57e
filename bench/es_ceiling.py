"""How fast does the test Elasticsearch index the shipper's own documents, with no shipper work at all?

    .venv/bin/python bench/es_ceiling.py [--lines 1000000] [--containers 4] [--runs 3] [--no-report]

Issue 9 asks the shipper for 0.9x the baseline loop's docs/s against the real server, "Elasticsearch,
not the shipper, is the limit". The baseline sends four fields (~290 bytes a document); the shipper
sends the ECS document with the container's metadata (~1.1 KB). This measures what the server
itself allows for documents of the shipper's shape: the same backlog as bench_shipping.py, each
line rendered by the shipper's own renderer outside the clock, then POSTed 2,000 a `_bulk` (with
their ids, `create`) over one keep-alive connection; docs/s = documents / the time spent in the
requests. Rounds alternate with `shipper run` and the baseline loop on the same files and server.
Needs the test bed. Writes `es_ceiling` in bench/results/shipping.json.

    .venv/bin/python bench/es_ceiling.py --target fake

What sending alone costs this process, against bench_shipping.py's fake endpoint: the shipper's
documents and the baseline's (rendered as baseline_loop.py does), both rendered outside the clock
and POSTed the same way, CPU counted in the requests only; beside the whole baseline loop. The
floor any shipper of these documents pays per document, whatever else it does. Writes `send_floor`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import docker
import orjson
from baseline_loop import ACTION as BASELINE_ACTION
from bench_shipping import Shipper, delete_es, fake_endpoint, run_baseline, save, shipper_documents, stop_fake, write_backlog
from elasticsearch import Elasticsearch

from shipper.document import events_stream
from shipper.es_setup import run_setup
from shipper.sinks.elasticsearch import bulk_body

BATCH = 2000


def rendered_requests(made: list, namespace: str):
    """Bulk bodies of every line of the containers' json-files, as the shipper renders them."""
    documents = shipper_documents(made, namespace)
    for container in made:
        path = container.attrs["LogPath"]
        renderer = documents.for_container(container.id, path)
        slow: list[int] = []
        renderer.consume(Path(path).read_bytes(), 0, 1 << 20, lambda offset, raw, out=slow: out.append(offset),
                         lambda: False)
        assert not slow, f"{len(slow)} lines took the full path"
        ids, bodies = renderer.take()
        for start in range(0, len(ids), BATCH):
            yield BATCH if start + BATCH <= len(ids) else len(ids) - start, bulk_body(ids[start:start + BATCH],
                                                                                      bodies[start:start + BATCH])


def baseline_requests(made: list):
    """Bulk bodies of the baseline loop's documents (four fields, no ids) for the same lines."""
    for container in made:
        lines = []
        with open(container.attrs["LogPath"], "rb") as handle:
            for raw in handle:
                entry = orjson.loads(raw)
                doc = {"@timestamp": entry["time"], "message": entry["log"], "stream": entry["stream"],
                       "container": {"id": container.id}}
                lines.append(BASELINE_ACTION + orjson.dumps(doc) + b"\n")
        for start in range(0, len(lines), BATCH):
            batch = lines[start:start + BATCH]
            yield len(batch), b"".join(batch)


def ceiling(hosts: str, path: str, requests) -> dict[str, float]:
    """docs/s over the time spent in the requests only, this process's CPU in them, bytes a document."""
    parsed = urllib.parse.urlsplit(hosts)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
    sent, size, busy, cpu = 0, 0, 0.0, 0.0
    for count, body in requests:
        started, started_cpu = time.monotonic(), time.process_time()
        connection.request("POST", path, body, {"Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        answer = response.read()
        busy += time.monotonic() - started
        cpu += time.process_time() - started_cpu
        if response.status != 200 or orjson.loads(answer).get("errors"):
            raise SystemExit(f"bulk failed: {response.status} {answer[:300]!r}")
        sent, size = sent + count, size + len(body)
    connection.close()
    return {"docs_per_second": sent / busy, "cpu_seconds_per_million": cpu / sent * 1e6, "bytes_per_doc": size / sent}


def send_floor(made: list, work: Path, lines: int, number: int) -> dict[str, float]:
    """One round against the fake endpoint: the shipper's documents sent, the baseline's sent, the baseline loop."""
    found: dict[str, float] = {}
    order = ["shipper", "baseline_send", "baseline"]
    for who in order[number % 3:] + order[:number % 3]:
        fake, hosts, delays = fake_endpoint(work, f"{who}-{number}")
        try:
            if who == "baseline":
                found["baseline_cpu_seconds_per_million"] = run_baseline(hosts, "bench", made)["cpu"] / lines * 1e6
            else:
                requests = rendered_requests(made, "floor") if who == "shipper" else baseline_requests(made)
                for key, value in ceiling(hosts, "/bench/_bulk", requests).items():
                    found[f"{who}_{key}"] = value
        finally:
            stop_fake(fake, delays)
    found["shipper_send_cpu_ratio_to_baseline"] = (found["shipper_cpu_seconds_per_million"]
                                                   / found["baseline_cpu_seconds_per_million"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", choices=["es", "fake"], default="es",
                        help="es: the server's ceiling (es_ceiling); fake: what sending alone costs (send_floor)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    hosts = os.environ.get("ES_URL", "http://127.0.0.1:9200")
    if args.target == "es":
        run_setup(Elasticsearch(hosts))  # the index templates, as the shipper would install them
    client = docker.from_env()
    label = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="shipper-bench-ceiling-"))
    made = write_backlog(client, label, args.lines, args.containers)
    rounds = []
    try:
        for number in range(args.runs):
            if args.target == "fake":
                rounds.append({k: round(v, 3) for k, v in send_floor(made, work, args.lines, number).items()})
                print(f"[send floor] round {number}: {rounds[-1]}", flush=True)
                continue
            found = {}
            namespaces = {who: f"ceil{label}{number}{who[0]}" for who in ("ceiling", "shipper")}
            baseline_index = f"bench-baseline-{label}-{number}"
            order = ["ceiling", "shipper", "baseline"]
            for who in order[number % 3:] + order[:number % 3]:
                if who == "ceiling":
                    path = f"/{events_stream(namespaces['ceiling'])}/_bulk"
                    requests = rendered_requests(made, namespaces["ceiling"])
                    found["ceiling_docs_per_second"] = ceiling(hosts, path, requests)["docs_per_second"]
                elif who == "baseline":
                    found["baseline_docs_per_second"] = args.lines / run_baseline(hosts, baseline_index, made)["seconds"]
                else:
                    shipper = Shipper(hosts, label, work / f"state-{number}", namespaces["shipper"])
                    try:
                        found["docs_per_second"] = args.lines / shipper.wait_out(args.lines)
                    finally:
                        shipper.stop()
            delete_es(hosts, [events_stream(n) for n in namespaces.values()] + [baseline_index])
            found["ceiling_ratio_to_baseline"] = found["ceiling_docs_per_second"] / found["baseline_docs_per_second"]
            found["docs_ratio_to_ceiling"] = found["docs_per_second"] / found["ceiling_docs_per_second"]
            rounds.append({k: round(v, 3) for k, v in found.items()})
            print(f"[ceiling] round {number}: {rounds[-1]}", flush=True)
    finally:
        for container in made:
            container.remove(force=True)
    result = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    result.update(lines=args.lines, containers=args.containers, rounds=rounds)
    key = "es_ceiling" if args.target == "es" else "send_floor"
    print(json.dumps(result, indent=2)) if args.no_report else print(save(key, result))


if __name__ == "__main__":
    main()
