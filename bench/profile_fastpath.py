"""Where each microsecond per log line goes on the fast path (one thread, no Docker, no network).

    .venv/bin/python bench/profile_fastpath.py [--lines 200000] [--driver json-file|local] [--cprofile]

json-file: writes a json-file of ~150-byte lines like bench_shipping.py's, then times each
stage over it with perf_counter_ns: the chain read with the fast path (chunk split, prefilter,
rendering, ids), the bulk body, and for comparison the baseline loop's per-line work.
local: the same lines in the local driver's frames (container.log), and the stages of its
chunk path: walking the frames, cutting out the fields, checks, times, then rendering.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from itertools import repeat
from operator import add, sub
from pathlib import Path

import orjson

from shipper.containers import ContainerMeta
from shipper.detect.engine import RulesEngine
from shipper.document import DocumentWriter
from shipper.sinks.elasticsearch import bulk_body
from shipper.sources import jsonfile, localfile
from shipper.sources.docker_logs import template_event
from shipper.sources.fastpath import PLAIN_ASCII, JsonFileDocuments

CONTAINER = "b" * 64
PAD = "x" * 110


def write_log(path: Path, lines: int) -> None:
    with open(path, "wb") as handle:
        for n in range(lines):
            handle.write(b'{"log":"bench c0 line %d %s\\n","stream":"stdout","time":"2026-11-29T04:%02d:%02d.%09dZ"}\n'
                         % (n, PAD.encode(), n // 60 % 60, n % 60, n * 7919 % 10**9))


def write_local(path: Path, lines: int) -> None:
    """The same lines as write_log, in the local driver's frames."""
    with open(path, "wb") as handle:
        for n in range(lines):
            handle.write(localfile.encode_entry(localfile.LogEntry(
                "stdout", 1_795_923_409_068_836_870 + n * 7919, b"bench c0 line %d %s" % (n, PAD.encode()))))


def documents() -> JsonFileDocuments:
    meta = ContainerMeta.from_inspect({"Id": CONTAINER, "Name": "/bench", "Image": "sha256:abc",
                                       "Config": {"Image": "busybox:1", "Labels": {"shipper.bench": "x"}},
                                       "HostConfig": {}})
    lookup = {CONTAINER: meta}.get
    engine = RulesEngine.from_paths([], lookup)
    return JsonFileDocuments(DocumentWriter("default", lookup), lookup, lambda: engine.log_prefilter, template_event)


def timed(out: dict[str, int], name: str, work, *args):
    started = time.perf_counter_ns()
    result = work(*args)
    out[name] = time.perf_counter_ns() - started
    return result


def local_stages(path: Path, lines: int) -> dict[str, float]:
    """µs per line of the local driver's chunk path, stage by stage over 1 MiB chunks (READ_SIZE)."""
    renderer = documents().for_container(CONTAINER, str(path), "local")
    data = path.read_bytes()
    chunks, position = [], 0
    while position < len(data):  # cut where the chain would: after the last whole frame of each READ_SIZE
        chunks.append(data[position:position + localfile.READ_SIZE])
        position += localfile._frame_starts(chunks[-1])[1]
    out: dict[str, int] = {}

    chain = localfile.LocalLogChain(str(path.parent), max_message_length=1 << 20)
    started = time.perf_counter_ns()
    rendered = 0
    while chain.read(2000, fast=renderer) or len(renderer):
        rendered += len(renderer)
        renderer.take()
    out["read + frames + checks + times + prefilter + render + ids (all of the source)"] = time.perf_counter_ns() - started
    assert rendered == lines, rendered

    chain = localfile.LocalLogChain(str(path.parent), max_message_length=1 << 20)
    started = time.perf_counter_ns()
    while chain.read(2000):
        pass
    out["for comparison: the frame-by-frame loop, a Line per entry (no rendering)"] = time.perf_counter_ns() - started

    # the chunk path's stages, each over every chunk (a chunk's unfinished last frame is left out)
    walked = [localfile._frame_starts(chunk) for chunk in chunks]
    timed(out, "walk the frames (lengths, closing lengths)", lambda: [localfile._frame_starts(c) for c in chunks])

    def cut(chunk, starts, end):  # as LocalLogChain._consume_chunk does
        ends = starts[1:] + [end] if starts else []
        return list(map(chunk.__getitem__, map(slice, map(add, starts, repeat(4)), map(sub, ends, repeat(4)))))

    fields = [cut(chunk, *found) for chunk, found in zip(chunks, walked, strict=True)]
    timed(out, "cut out each entry's fields (slices)", lambda: [cut(chunk, *found) for chunk, found in zip(chunks, walked, strict=True)])
    def heads_and_lengths(f):
        return list(map(localfile._FIELDS_START, f)), list(map(min, map(len, f), repeat(localfile._LAST_LENGTH)))

    timed(out, "whole-line layout check (starts, lengths; line heads, times regex)", lambda: [
        localfile._whole_flags(f, *heads_and_lengths(f)) for f in fields])
    timed(out, "times -> RFC 3339 bytes", lambda: [localfile._stamps(f) for f in fields])
    prepared = [heads_and_lengths(f) for f in fields]
    timed(out, "streams and messages (lookups, slices)", lambda: [
        (list(map(localfile._STREAM_OF.__getitem__, heads)),
         list(map(bytes.__getitem__, f, map(localfile._LINE_FROM.__getitem__, lengths))))
        for f, (heads, lengths) in zip(fields, prepared, strict=True)])
    batches = []
    for (starts, _), f in zip(walked, fields, strict=True):
        messages = list(map(bytes.__getitem__, f, map(localfile._LINE_FROM.__getitem__, map(len, f))))
        streams = list(map(localfile._STREAM_OF.__getitem__, map(localfile._FIELDS_START, f)))
        batches.append(localfile.WholeLines(starts, streams, localfile._stamps(f), messages))
    prefilter = renderer.prefilter()

    def search(batch):
        joined = b"\0".join(batch.messages)
        return joined.translate(None, PLAIN_ASCII), prefilter(joined.lower())
    timed(out, "of the rendering: join, plain-ASCII check, lower, prefilter", lambda: [search(b) for b in batches])

    def render_all():
        for batch in batches:
            renderer.render_whole(batch, 1 << 20)
            renderer.take()
    timed(out, "render_whole (checks, prefilter, documents, ids)", render_all)
    return {name: value / lines / 1000 for name, value in out.items()}


def stages(path: Path, lines: int) -> dict[str, float]:
    """µs per line of each stage, one after the other on one thread."""
    documents_ = documents()
    documents_.prefilter()  # the rules engine, loaded
    data = path.read_bytes()
    out = {}

    started = time.perf_counter_ns()
    body = data.lower()
    out["lower the chunk"] = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    documents_.prefilter()(body)
    out["prefilter (Aho-Corasick over the chunk)"] = time.perf_counter_ns() - started

    chain = jsonfile.JsonFileChain(str(path), max_message_length=1 << 20)
    docs = documents_.for_container(CONTAINER, str(path))
    started = time.perf_counter_ns()
    rendered = 0
    while chain.read(2000, fast=docs) or len(docs):
        rendered += len(docs)
        ids, bodies = docs.take()
    out["read + split + prefilter + render + ids (all of the source)"] = time.perf_counter_ns() - started
    assert rendered == lines, rendered

    docs = documents_.for_container(CONTAINER, str(path))
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
    parser.add_argument("--driver", choices=["json-file", "local"], default="json-file")
    parser.add_argument("--rounds", type=int, default=5, help="report the median of this many")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        if args.driver == "local":
            (Path(work) / "local-logs").mkdir()
            path, measure = Path(work) / "local-logs" / localfile.LIVE_NAME, local_stages
            write_local(path, args.lines)
        else:
            path, measure = Path(work) / f"{CONTAINER}-json.log", stages
            write_log(path, args.lines)
        if args.cprofile:
            profile = cProfile.Profile()
            profile.runcall(measure, path, args.lines)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        rounds = [measure(path, args.lines) for _ in range(args.rounds)]
        for name in rounds[0]:
            micros = statistics.median(r[name] for r in rounds)
            print(f"{micros:8.3f} µs/line  {name}" if not name.startswith("(") else f"{micros:8.0f}        {name}")


if __name__ == "__main__":
    main()
