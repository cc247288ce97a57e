"""The delivery core with small fakes: a source that emits scripted batches, a sink that
answers as told (down, per-item statuses, part of a batch). No Docker, no Elasticsearch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shipper.checkpoints import Checkpoints
from shipper.config import PipelineConfig
from shipper.delivery import Deliverer
from shipper.document import DocumentWriter, deadletter_stream, events_stream
from shipper.errors import ShipperError
from shipper.metrics import Metrics
from shipper.model import Event
from shipper.pipeline import Pipeline
from shipper.retry import Backoff
from shipper.sinks.base import Delivery, Documents, Refusal, Sink
from shipper.sinks.spool import Spool, parse, render
from shipper.sources.base import Batch, Emit, Source

EVENTS = events_stream("default")
DEAD = deadletter_stream("default")


class ScriptedSource(Source):
    """Emits `batches` batches of `size` events, position = number of the batch; then waits to be closed."""

    name = "scripted"

    def __init__(self, batches: int, size: int = 10):
        self.batches, self.size = batches, size
        self.emitted = 0
        self._closed = threading.Event()

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        for number in range(positions.get("file", 0), self.batches):
            if self._closed.is_set():
                return
            events = [Event(f"e{number:04d}-{i:03d}", "2026-11-29T00:00:00.000Z", self.name, {"message": f"m{i}"})
                      for i in range(self.size)]
            emit(Batch(self.name, events, {"file": number + 1}))
            self.emitted += 1
        self._closed.wait()

    def close(self) -> None:
        self._closed.set()


Answer = Callable[[Documents, str], Delivery]


class ScriptedSink(Sink):
    """Answers each call with the next function of `script` (then: everything acknowledged)."""

    name = "scripted"

    def __init__(self, *script: Answer):
        self.script = list(script)
        self.calls: list[tuple[str, list[bytes]]] = []
        self.indexed: dict[str, list[bytes]] = {EVENTS: [], DEAD: []}
        self.gate = threading.Event()
        self.gate.set()

    def send(self, documents: Documents, index: str, resent: bool = False) -> Delivery:
        self.gate.wait()
        self.calls.append((index, list(documents.ids)))
        answer = self.script.pop(0)(documents, index) if self.script else accept(documents, index)
        taken = set(answer.retry) | {r.position for r in answer.refused}
        self.indexed[index].extend(i for p, i in enumerate(documents.ids) if p not in taken)
        return answer


def accept(documents: Documents, index: str) -> Delivery:
    return Delivery(acknowledged=len(documents))


def down(documents: Documents, index: str) -> Delivery:
    return Delivery(retry=list(range(len(documents))), unavailable="connection refused")


def per_item(*statuses: int) -> Answer:
    """Item p gets statuses[p] (201 beyond the list), as Elasticsearch answers a bulk."""

    def answer(documents: Documents, index: str) -> Delivery:
        delivery = Delivery()
        for position in range(len(documents)):
            status = statuses[position] if position < len(statuses) else 201
            if status < 300 or status == 409:
                delivery.acknowledged += 1
                delivery.duplicates += status == 409
            elif status == 429 or status >= 500:
                delivery.retry.append(position)
            else:
                delivery.refused.append(Refusal(position, status, {"type": "mapper_parsing_exception",
                                                                   "reason": "failed to parse field"}))
        return delivery

    return answer


def first_part(count: int) -> Answer:
    """Acknowledges the first `count`, then the endpoint goes away (a later request of the batch fails)."""

    def answer(documents: Documents, index: str) -> Delivery:
        return Delivery(acknowledged=count, retry=list(range(count, len(documents))), unavailable="timed out")

    return answer


def documents(*ids: str) -> Documents:
    return Documents([i.encode() for i in ids], [b'{"n":"%s"}' % i.encode() for i in ids])


def deliverer(tmp_path, sink: Sink, metrics: Metrics | None = None, max_retries: int = 3,
              spool_bytes: int = 1 << 20) -> Deliverer:
    return Deliverer(sink, Spool(tmp_path / "spool", spool_bytes), metrics or Metrics(), "default",
                     max_retries=max_retries, backoff=Backoff(base=0.001, cap=0.001))


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# ------------------------------------------------------------------ the policy


def test_only_429_and_5xx_items_are_sent_again_and_refused_ones_go_to_the_dead_letter_stream(tmp_path):
    sink = ScriptedSink(per_item(201, 429, 503, 400, 409, 500))
    metrics = Metrics()
    deliver = deliverer(tmp_path, sink, metrics)
    deliver.ship(documents("a", "b", "c", "d", "e", "f"))
    assert sink.calls == [(EVENTS, [b"a", b"b", b"c", b"d", b"e", b"f"]),
                          (DEAD, [b"d"]),
                          (EVENTS, [b"b", b"c", b"f"])]
    assert sorted(sink.indexed[EVENTS]) == [b"a", b"b", b"c", b"e", b"f"]
    assert sink.indexed[DEAD] == [b"d"]
    assert deliver.spool.empty
    assert metrics.value("shipper_item_retries_total", sink="scripted") == 3
    assert metrics.value("shipper_duplicates_avoided_total", sink="scripted") == 1
    assert metrics.value("shipper_deadletters_total", sink="scripted") == 1
    assert metrics.value("shipper_events_out_total", sink="scripted") == 5 + 1  # five events, one dead letter


def test_a_dead_letter_keeps_the_original_escaped_with_the_error(tmp_path):
    sink = ScriptedSink(per_item(400))
    deliverer(tmp_path, sink).ship(documents("x"))
    assert sink.calls[1][0] == DEAD
    # what the dead-letter stream was sent, read back through the spool's own encoding
    letter_sink = ScriptedSink(per_item(400), down)
    deliver = deliverer(tmp_path / "2", letter_sink)
    deliver.ship(documents("x"))
    segment = deliver.spool.segments()[0]
    letters, index = deliver.spool.read(segment)
    assert index == DEAD and letters.ids == [b"x"]
    letter = orjson.loads(letters.bodies[0])
    assert letter["event"]["original"] == '{"n":"x"}'
    assert letter["error"]["code"] == "400" and letter["shipper"]["deadletter"]["index"] == EVENTS


def test_a_document_the_dead_letter_stream_refuses_too_is_counted_and_not_retried_forever(tmp_path):
    sink = ScriptedSink(per_item(400), per_item(400))
    metrics = Metrics()
    deliver = deliverer(tmp_path, sink, metrics)
    deliver.ship(documents("x"))
    assert len(sink.calls) == 2 and deliver.spool.empty
    assert metrics.value("shipper_refused_lost_total", sink="scripted") == 1


def test_items_still_overloaded_after_the_last_retry_wait_in_the_spool(tmp_path):
    sink = ScriptedSink(*[per_item(201, 429)] * 1, *[per_item(429)] * 3)
    deliver = deliverer(tmp_path, sink, max_retries=3)
    deliver.ship(documents("a", "b"))
    assert [ids for _, ids in sink.calls] == [[b"a", b"b"], [b"b"], [b"b"], [b"b"]]
    assert not deliver.sink_up
    spooled, index = deliver.spool.read(deliver.spool.segments()[0])
    assert (spooled.ids, index) == ([b"b"], EVENTS)


def test_a_batch_acknowledged_in_part_spools_only_the_rest(tmp_path):
    sink = ScriptedSink(first_part(2))
    deliver = deliverer(tmp_path, sink)
    deliver.ship(documents("a", "b", "c", "d"))
    assert len(sink.calls) == 1  # an endpoint that went away is not retried: spool at once
    spooled, _ = deliver.spool.read(deliver.spool.segments()[0])
    assert spooled.ids == [b"c", b"d"]
    assert deliver.replay_one().error is None
    assert sink.indexed[EVENTS] == [b"a", b"b", b"c", b"d"] and deliver.spool.empty


def test_a_segment_replayed_in_part_keeps_only_what_is_owed_at_the_head(tmp_path):
    sink = ScriptedSink(down, down, first_part(1))
    deliver = deliverer(tmp_path, sink)
    deliver.ship(documents("a", "b", "c"))
    deliver.ship(documents("d"))  # behind the spool, never before it
    assert len(deliver.spool.segments()) == 2
    replayed = deliver.replay_one()
    assert replayed.error == "connection refused" and replayed.sent == 0
    replayed = deliver.replay_one()
    assert replayed.sent == 1 and replayed.error == "timed out"
    head = deliver.spool.segments()[0]
    assert deliver.spool.read(head)[0].ids == [b"b", b"c"]
    while not deliver.spool.empty:
        assert deliver.replay_one().error is None
    assert sink.indexed[EVENTS] == [b"a", b"b", b"c", b"d"]


# ------------------------------------------------------------------ the spool's encoding


def test_spool_segments_are_bulk_ndjson_that_round_trips(tmp_path):
    body = render(documents("a", "b"), EVENTS)
    assert body.splitlines()[0] == b'{"create":{"_index":"%s","_id":"a"}}' % EVENTS.encode()
    again, index = parse(body, tmp_path / "x")
    assert (again, index) == (documents("a", "b"), EVENTS)
    legacy, index = parse(b'{"create":{"_id":"a"}}\n{"n":"a"}\n', tmp_path / "x")  # written before 0.2
    assert (legacy.ids, index) == ([b"a"], None)


@pytest.mark.parametrize("damaged", [b'{"create":{"_id":"a"}}\n', b'{"index":{}}\n{}\n', b"not json\n{}\n"])
def test_a_damaged_segment_is_named(tmp_path, damaged):
    with pytest.raises(ShipperError, match="spool segment .*x is damaged"):
        parse(damaged, tmp_path / "x")


# ------------------------------------------------------------------ the whole pipeline


def pipeline(tmp_path, source: Source, sink: Sink, spool_bytes: int = 1 << 20, **settings) -> Pipeline:
    metrics = Metrics()
    config = PipelineConfig(flush_interval=0.05, queue_batches=2, max_retries=2, **settings)
    made = Pipeline([source], sink, Spool(tmp_path / "spool", spool_bytes), Checkpoints(tmp_path / "checkpoints.json"),
                    DocumentWriter("default"), metrics, config, status_interval=3600)
    made.deliverer.backoff = made.replay_backoff = Backoff(base=0.001, cap=0.001)
    return made


def checkpoint(tmp_path) -> int:
    path = tmp_path / "checkpoints.json"
    return json.loads(path.read_text()).get("scripted", {}).get("file", 0) if path.exists() else 0


def test_outage_spools_then_replays_in_the_original_order(tmp_path):
    sink = ScriptedSink(*[down] * 6)
    source = ScriptedSource(batches=20)
    running = pipeline(tmp_path, source, sink, batch_max_docs=30)
    running.start()
    try:
        wait_until(lambda: len(sink.indexed[EVENTS]) == 200)
    finally:
        running.stop(timeout=10)
    sent = sink.indexed[EVENTS]
    assert sent == sorted(sent)  # original order, across spooling and replay
    assert len(set(sent)) == 200
    assert running.metrics.value("shipper_spooled_events_total") > 0
    assert running.spool.empty and checkpoint(tmp_path) == 20


def test_a_full_spool_pauses_the_sources_and_health_says_so(tmp_path):
    sink = ScriptedSink(*[down] * 10_000)
    source = ScriptedSource(batches=200)
    running = pipeline(tmp_path, source, sink, spool_bytes=2000, batch_max_docs=10)
    running.start()
    try:
        wait_until(lambda: running.spool.full)
        wait_until(lambda: running.health()[1]["status"] == "spool full: sources paused")
        paused_at = source.emitted
        time.sleep(0.3)
        assert source.emitted == paused_at < 200  # the bounded queue is full: emit blocks
        assert running.metrics.value("shipper_spool_full") == 1
        assert running.health()[0] is False
        sink.script.clear()  # the endpoint is back
        wait_until(lambda: len(sink.indexed[EVENTS]) == 2000, timeout=30)
        wait_until(lambda: running.health()[1]["status"] == "ok")
    finally:
        running.stop(timeout=10)
    assert len(set(sink.indexed[EVENTS])) == 2000 and running.spool.empty


def test_stop_with_a_full_queue_behind_a_full_spool_returns_and_checkpoints_only_what_was_acknowledged(tmp_path):
    sink = ScriptedSink(*[down] * 10_000)
    source = ScriptedSource(batches=200)
    running = pipeline(tmp_path, source, sink, spool_bytes=2000, batch_max_docs=10)
    running.start()
    wait_until(lambda: running.spool.full)
    wait_until(lambda: running._to_deliver.full())
    started = time.monotonic()
    running.stop(timeout=3)
    assert time.monotonic() - started < 10
    spooled = sum(len(running.spool.read(p)[0]) for p in running.spool.segments())
    assert checkpoint(tmp_path) * 10 == spooled  # what is on disk, nothing that was still queued


def test_checkpoints_move_only_after_the_sink_acknowledged(tmp_path):
    sink = ScriptedSink()
    sink.gate.clear()  # the sink holds the first request
    source = ScriptedSource(batches=3)
    running = pipeline(tmp_path, source, sink, batch_max_docs=1000)
    running.start()
    try:
        wait_until(lambda: source.emitted >= 1)
        time.sleep(0.3)  # several checkpoint intervals pass while the request is in flight
        assert checkpoint(tmp_path) == 0
        sink.gate.set()
        wait_until(lambda: checkpoint(tmp_path) == 3)
    finally:
        running.stop(timeout=10)
    assert len(sink.indexed[EVENTS]) == 30
