"""Where each microsecond per log line goes on the json-file fast path (one thread, no Docker, no network).

    .venv/bin/python bench/profile_fastpath.py [--lines 200000] [--cprofile]

Writes a json-file of ~150-byte lines like bench_shipping.py's, then times each stage over
it with perf_counter_ns: the chain read with the fast path (chunk split, prefilter,
rendering, ids), the bulk body, and for comparison the baseline loop's per-line work.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from shipper.containers import ContainerMeta
from shipper.detect.engine import RulesEngine
from shipper.document import DocumentWriter
from shipper.sinks.elasticsearch import bulk_body
from shipper.sources import jsonfile
from shipper.sources.docker_logs import template_event
from shipper.sources.fastpath import JsonFileDocuments

CONTAINER = "b" * 64
PAD = "x" * 110


def write_log(path: Path, lines: int) -> None:
    with open(path, "wb") as handle:
        for n in range(lines):
            handle.write(b'{"log":"bench c0 line %d %s\\n","stream":"stdout","time":"2026-11-29T04:%02d:%02d.%09dZ"}\n'
                         % (n, PAD.encode(), n // 60 % 60, n % 60, n * 7919 % 10**9))


def stages(path: Path, lines: int) -> dict[str, float]:
    """µs per line of each stage, one after the other on one thread."""
    meta = ContainerMeta.from_inspect({"Id": CONTAINER, "Name": "/bench", "Image": "sha256:abc",
                                       "Config": {"Image": "busybox:1", "Labels": {"shipper.bench": "x"}},
                                       "HostConfig": {}})
    lookup = {CONTAINER: meta}.get
    engine = RulesEngine.from_paths([], lookup)
    writer = DocumentWriter("default", lookup)
    documents = JsonFileDocuments(writer, lookup, lambda: engine.log_prefilter, template_event)
    data = path.read_bytes()
    out = {}

    started = time.perf_counter_ns()
    body = data.lower()
    out["lower the chunk"] = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    documents.prefilter()(body)
    out["prefilter (Aho-Corasick over the chunk)"] = time.perf_counter_ns() - started

    chain = jsonfile.JsonFileChain(str(path), max_message_length=1 << 20)
    docs = documents.for_container(CONTAINER, str(path))
    started = time.perf_counter_ns()
    rendered = 0
    while chain.read(2000, fast=docs) or len(docs):
        rendered += len(docs)
        ids, bodies = docs.take()
    out["read + split + prefilter + render + ids (all of the source)"] = time.perf_counter_ns() - started
    assert rendered == lines, rendered

    docs = documents.for_container(CONTAINER, str(path))
    docs.consume(data, 0, 1 << 20, lambda *_: None, lambda: False)
    ids, bodies = docs.take()
    started = time.perf_counter_ns()
    sent = sum(len(bulk_body(ids[i:i + 2000], bodies[i:i + 2000])) for i in range(0, len(ids), 2000))
    out["bulk body (sink)"] = time.perf_counter_ns() - started
    out["(bytes per document sent)"] = sent * 1000  # (divided by lines * 1000 below)

    started = time.perf_counter_ns()
    for raw in data.splitlines():
        entry = orjson.loads(raw)
        orjson.dumps({"@timestamp": entry["time"], "message": entry["log"], "stream": entry["stream"],
                      "container": {"id": CONTAINER}})
    out["baseline loop's per-line work, for comparison"] = time.perf_counter_ns() - started
    return {name: value / lines / 1000 for name, value in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="report the median of this many")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / f"{CONTAINER}-json.log"
        write_log(path, args.lines)
        if args.cprofile:
            profile = cProfile.Profile()
            profile.runcall(stages, path, args.lines)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        rounds = [stages(path, args.lines) for _ in range(args.rounds)]
        for name in rounds[0]:
            micros = statistics.median(r[name] for r in rounds)
            print(f"{micros:8.3f} µs/line  {name}" if not name.startswith("(") else f"{micros:8.0f}        {name}")


if __name__ == "__main__":
    main()
