"""Wiring: sources (each enriches, judges and encodes its own batches) -> one bounded queue -> delivery.

Encoding in the source's thread, not in a stage of its own, keeps one fewer
CPU-bound thread fighting for the GIL: measured, a separate stage cost 2x the CPU.
Judged events are also offered to the notifiers (the webhook), which never block.

The delivery thread gathers batches into requests and hands them to the
`Deliverer` (`shipper/delivery.py`: retry, spool, dead letters, the same for every
sink). A batch's read positions are checkpointed only once its documents are
acknowledged, dead-lettered or fsynced into the spool. When the spool is full,
delivery stops taking batches, the queue fills, and the sources block: logs wait
on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .checkpoints import Checkpoints
from .config import PipelineConfig
from .delivery import Deliverer
from .document import DocumentWriter
from .ecs import relocate
from .metrics import Metrics
from .retry import Backoff
from .sinks.base import Documents, Notifier, Sink
from .sinks.spool import Spool
from .sources.base import Batch, Source

log = logging.getLogger(__name__)

_STOP = None  # put on the delivery queue by `stop`


CHECKPOINT_INTERVAL = 1.0  # seconds between checkpoint writes


class Pipeline:
    def __init__(
        self,
        sources: list[Source],
        sink: Sink,
        spool: Spool,
        checkpoints: Checkpoints,
        writer: DocumentWriter,
        metrics: Metrics,
        settings: PipelineConfig = PipelineConfig(),
        process: Callable[[Batch], Batch] | None = None,
        notifiers: tuple[Notifier, ...] = (),
        status_interval: float = 30.0,
    ):
        self.sources = sources
        self.sink = sink
        self.spool = spool
        self.checkpoints = checkpoints
        self.writer = writer
        self.metrics = metrics
        self.settings = settings
        self.process = process or (lambda batch: batch)
        self.notifiers = notifiers
        self.status_interval = status_interval
        self._to_deliver: queue.Queue[tuple[Documents, Batch] | None] = queue.Queue(settings.queue_batches)
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()
        self.deliverer = Deliverer(sink, spool, metrics, writer.namespace, max_retries=settings.max_retries,
                                   stopping=self._stopping)
        # After a start the sources re-read from their last checkpoint: what they send this
        # soon may have been indexed before the stop or crash, so the sink checks it by id.
        # A first start (no checkpoint) re-reads nothing: no lookups then.
        self._resend_until = 0.0 if checkpoints.empty else time.monotonic() + settings.resend_check_seconds
        self.replay_backoff = Backoff(base=0.5, cap=5.0)  # between attempts to replay the spool's head

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._spawn("delivery", self._delivery_loop)
        for source in self.sources:
            self._spawn(f"source-{source.name}", self._source_loop, source)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
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
        for notifier in self.notifiers:
            notifier.close()
        log.info("stopped", extra=self.counts())

    @property
    def sink_up(self) -> bool:
        return self.deliverer.sink_up

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
            for notifier in self.notifiers:
                notifier.offer(batch.events)
            encoded = self.writer.encode(batch.events)
            if batch.ids:  # already encoded by the source (the json-file fast path)
                encoded.extend(Documents(batch.ids, batch.bodies))
            self._to_deliver.put((encoded, batch))

        try:
            source.run(emit, self.checkpoints.get(source.name))
        except Exception:
            log.exception("source %s failed", source.name)

    def _delivery_loop(self) -> None:
        settings = self.settings
        documents = Documents()
        batches: list[Batch] = []
        size = 0
        first_at = 0.0
        alert_waiting = False  # a batch with an alert goes out at once: detection latency over batching
        next_checkpoint = time.monotonic()
        next_status = next_checkpoint + self.status_interval
        replay_at, replay_attempt = 0.0, 0
        stopping = False
        while True:
            now = time.monotonic()
            if not self.spool.empty and now >= replay_at:
                if self.deliverer.replay_one().error is None:
                    replay_attempt = 0
                else:
                    replay_at = now + self.replay_backoff.delay(replay_attempt)
                    replay_attempt += 1
            if self.spool.full and not stopping:
                if self._stopping.is_set():
                    return  # nothing more can be acknowledged; unacknowledged lines are re-read on restart
                self.metrics.spool_full.set(1)
                time.sleep(0.2)  # take nothing new: the queue fills and the sources pause
                continue
            self.metrics.spool_full.set(0)
            wait = settings.flush_interval - (now - first_at) if batches else settings.flush_interval
            item: tuple[Documents, Batch] | None = None
            if not stopping:
                try:
                    item = self._to_deliver.get(timeout=max(0.01, min(wait, 0.2)))
                    stopping = item is _STOP
                except queue.Empty:
                    pass
            if item is not None:
                encoded, batch = item
                if not batches:
                    first_at = time.monotonic()
                documents.extend(encoded)
                size += encoded.size()
                batches.append(batch)
                alert_waiting = alert_waiting or any(event.verdicts for event in batch.events)
            now = time.monotonic()
            if batches and (stopping or alert_waiting or len(documents) >= settings.batch_max_docs
                            or size >= settings.batch_max_bytes or now - first_at >= settings.flush_interval):
                self.deliverer.ship(documents, resent=time.monotonic() < self._resend_until)
                for done in batches:
                    self.checkpoints.acknowledge(done.source, done.positions)
                documents, batches, size, alert_waiting = Documents(), [], 0, False
            if now >= next_checkpoint or stopping:
                self.checkpoints.flush()
                next_checkpoint = now + CHECKPOINT_INTERVAL
            if now >= next_status:
                self._status_line()
                next_status = now + self.status_interval
            self.metrics.queue_depth.labels("deliver").set(self._to_deliver.qsize())
            if stopping and not batches:
                return

    def _status_line(self) -> None:
        ok, details = self.health()
        log.info("status: %s", details["status"], extra={**self.counts(), "queue": self._to_deliver.qsize()})
