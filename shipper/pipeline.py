"""Wiring: sources (each enriches, judges and serialises its own batches) -> bounded queue -> delivery.

Serialising in the source's thread, not in a stage of its own, keeps one fewer
CPU-bound thread fighting for the GIL: measured, a separate stage cost 2x the CPU.

Delivery owns the at-least-once contract: a batch's read positions are
checkpointed only once its events are acknowledged by Elasticsearch or written
to the disk spool. While the spool holds anything, new events go behind it, so
replay keeps the original order. When the spool is full, delivery stops taking
batches, the queues fill, and the sources block: logs wait on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from .checkpoints import Checkpoints
from .document import DocumentWriter
from .ecs import relocate
from .metrics import Metrics
from .sinks.base import Sink, SinkUnavailable
from .sinks.spool import Spool
from .sources.base import Batch, Source

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class PipelineSettings:
    batch_max_docs: int = 2000
    batch_max_bytes: int = 8 << 20
    flush_interval: float = 1.0
    queue_batches: int = 8
    checkpoint_interval: float = 1.0
    status_interval: float = 30.0
    replay_backoff_max: float = 5.0
    # After a start the sources re-read from their last checkpoint: what they send this
    # soon may have been indexed before the stop or crash, so the sink checks it by id.
    resend_check_seconds: float = 60.0


class Pipeline:
    def __init__(
        self,
        sources: list[Source],
        sink: Sink,
        spool: Spool,
        checkpoints: Checkpoints,
        writer: DocumentWriter,
        metrics: Metrics,
        settings: PipelineSettings = PipelineSettings(),
        process: Callable[[Batch], Batch] | None = None,
        alerts: Callable[[list], None] | None = None,
    ):
        self.sources = sources
        self.sink = sink
        self.spool = spool
        self.checkpoints = checkpoints
        self.writer = writer
        self.metrics = metrics
        self.settings = settings
        self.process = process or (lambda batch: batch)
        self.alerts = alerts  # judged events go here too (the webhook); must not block
        self._to_deliver: queue.Queue = queue.Queue(settings.queue_batches)
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self.sink_up = True
        self.metrics.spool_bytes.set(spool.bytes)
        self._resend_until = time.monotonic() + settings.resend_check_seconds

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._spawn("delivery", self._delivery_loop)
        for source in self.sources:
            self._spawn(f"source-{source.name}", self._source_loop, source)

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop sources, deliver or spool what is in flight, write the checkpoints."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: closing sources, flushing what is in flight")
        for source in self.sources:
            source.close()
        deadline = time.monotonic() + timeout
        for name, thread in self._threads.items():
            if name.startswith("source-"):
                thread.join(max(0.1, deadline - time.monotonic()))
        try:  # a full queue behind a full spool must not hang the shutdown
            self._to_deliver.put(_STOP, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._threads["delivery"].join(max(0.1, deadline - time.monotonic()))
        self.checkpoints.flush()
        self.sink.close()
        self._finished.set()
        log.info("stopped", extra=self.counts())

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def health(self) -> tuple[bool, dict[str, Any]]:
        dead = [name for name, t in self._threads.items() if not t.is_alive() and not self._stopping.is_set()]
        details = {
            "status": "ok",
            "sink": "up" if self.sink_up else "unreachable",
            "spool": self.spool.status(),
            "dead_threads": dead,
            "sources": {s.name: s.status() for s in self.sources},
        }
        ok = not dead and not self.spool.full
        if not ok:
            details["status"] = "failing" if dead else "spool full: sources paused"
        elif not self.sink_up:
            details["status"] = "degraded: spooling"
        return ok, details

    def counts(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "events_in": sum(m.value("shipper_events_in_total", source=s.name) for s in self.sources),
            "events_out": m.value("shipper_events_out_total", sink=self.sink.name),
            "duplicates": m.value("shipper_duplicates_avoided_total", sink=self.sink.name),
            "deadletters": m.value("shipper_deadletters_total", sink=self.sink.name),
            "spooled": m.value("shipper_spooled_events_total"),
            "replayed": m.value("shipper_replayed_events_total"),
            "spool_bytes": self.spool.bytes,
        }

    # ------------------------------------------------------------ threads

    def _source_loop(self, source: Source) -> None:
        counter = self.metrics.events_in.labels(source.name)

        def emit(batch: Batch) -> None:
            counter.inc(len(batch.events) + len(batch.bodies))
            for event in batch.events:
                relocate(event.fields)
            batch = self.process(batch)
            if self.alerts is not None:
                self.alerts(batch.events)
            lines = self.writer.bulk_lines(batch.events)
            lines += [b'{"create":{"_id":"%b"}}\n%b\n' % pair for pair in zip(batch.ids, batch.bodies)]
            self._to_deliver.put((lines, batch))

        try:
            source.run(emit, self.checkpoints.get(source.name))
        except Exception:
            log.exception("source %s failed", source.name)

    def _delivery_loop(self) -> None:
        settings = self.settings
        lines: list[bytes] = []
        batches: list[Batch] = []
        size = 0
        first_at = 0.0
        alert_waiting = False  # a batch with an alert goes out at once: detection latency over batching
        next_checkpoint = time.monotonic()
        next_status = next_checkpoint + settings.status_interval
        replay_at, replay_backoff = 0.0, 0.5
        stopping = False
        while True:
            now = time.monotonic()
            if not self.spool.empty and now >= replay_at:
                if self._replay_one():
                    replay_backoff = 0.5
                else:
                    replay_at = now + replay_backoff
                    replay_backoff = min(settings.replay_backoff_max, replay_backoff * 2)
            if self.spool.full and not stopping:
                if self._stopping.is_set():
                    return  # nothing more can be acknowledged; unacknowledged lines are re-read on restart
                self.metrics.spool_full.set(1)
                time.sleep(0.2)  # take nothing new: the queues fill and the sources pause
                continue
            self.metrics.spool_full.set(0)
            wait = settings.flush_interval - (now - first_at) if batches else settings.flush_interval
            item = None
            if not stopping:
                try:
                    item = self._to_deliver.get(timeout=max(0.01, min(wait, 0.2)))
                except queue.Empty:
                    pass
            if item is _STOP:
                stopping = True
            elif item is not None:
                item_lines, batch = item
                if not batches:
                    first_at = time.monotonic()
                lines.extend(item_lines)
                size += sum(map(len, item_lines))
                batches.append(batch)
                alert_waiting = alert_waiting or any(event.verdicts for event in batch.events)
            now = time.monotonic()
            if batches and (stopping or alert_waiting or len(lines) >= settings.batch_max_docs
                            or size >= settings.batch_max_bytes or now - first_at >= settings.flush_interval):
                self._deliver(lines, batches)
                lines, batches, size, alert_waiting = [], [], 0, False
            if now >= next_checkpoint or stopping:
                self.checkpoints.flush()
                next_checkpoint = now + settings.checkpoint_interval
            if now >= next_status:
                self._status_line()
                next_status = now + settings.status_interval
            self.metrics.queue_depth.labels("deliver").set(self._to_deliver.qsize())
            if stopping and not batches:
                return

    def _deliver(self, lines: list[bytes], batches: list[Batch]) -> None:
        if lines:
            if self.spool.empty:
                try:
                    self.sink.write(lines, resent=time.monotonic() < self._resend_until)
                    self.sink_up = True
                except SinkUnavailable as exc:
                    self._to_spool(exc.lines if exc.lines is not None else lines, str(exc))
            else:
                self._to_spool(lines, "spool not yet replayed")
        for batch in batches:
            self.checkpoints.acknowledge(batch.source, batch.positions)

    def _to_spool(self, lines: list[bytes], reason: str) -> None:
        if self.sink_up:
            log.warning("sink unavailable, spooling to disk", extra={"reason": reason, "spool": str(self.spool.directory)})
        self.sink_up = False
        if lines:
            self.spool.append(lines)
            self.metrics.spooled.inc(len(lines))
            self.metrics.spool_bytes.set(self.spool.bytes)

    def _replay_one(self) -> bool:
        """Send the oldest spool segment; True if it is gone."""
        segments = self.spool.segments()
        if not segments:
            return True
        sent, error = self.spool.replay(segments[0], partial(self.sink.write, resent=True))
        self.metrics.replayed.inc(sent)
        self.metrics.spool_bytes.set(self.spool.bytes)
        if error is not None:
            self.sink_up = False
            return False
        if self.spool.empty:
            self.sink_up = True
            log.info("spool replayed, back to direct delivery", extra=self.counts())
        return True

    def _status_line(self) -> None:
        ok, details = self.health()
        log.info("status: %s", details["status"], extra={**self.counts(), "queue": self._to_deliver.qsize()})
