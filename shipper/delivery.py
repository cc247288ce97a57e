"""The one delivery policy, whatever the sink: what to do with each answer.

- acknowledged (indexed, or already there): done.
- refused for good: rewritten as a dead-letter document (the original escaped, the
  error beside it) and sent to the dead-letter stream; refused there too, it is
  logged with its id and counted, never retried forever.
- may be taken later (429, 5xx, an overloaded endpoint): sent again, only those,
  with the backoff of `shipper/retry.py`, up to `max_retries` times; then spooled.
- no usable answer (down, unreachable, credentials refused): spooled at once.

While the spool holds anything, new documents go behind it, so replay keeps the
original order. Spooled documents are acknowledged as far as the sources are
concerned: they are on disk, fsynced.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from .document import deadletter_document, deadletter_stream, events_stream
from .metrics import Metrics
from .retry import Backoff
from .sinks.base import Documents, Refusal, Sink
from .sinks.spool import Spool

log = logging.getLogger(__name__)


class Owed(NamedTuple):
    """Documents not delivered yet, where they go, and why they wait."""

    documents: Documents
    stream: str
    reason: str


@dataclass(frozen=True)
class Replayed:
    sent: int  # documents of the segment acknowledged, dead-lettered or moved on
    error: str | None  # why the rest of the segment still waits


class Deliverer:
    def __init__(self, sink: Sink, spool: Spool, metrics: Metrics, namespace: str, *, max_retries: int = 5,
                 backoff: Backoff = Backoff(), stopping: threading.Event | None = None):
        self.sink = sink
        self.spool = spool
        self.metrics = metrics
        self.namespace = namespace
        self.index = events_stream(namespace)
        self.deadletter_index = deadletter_stream(namespace)
        self.max_retries = max_retries
        self.backoff = backoff
        self._stopping = stopping or threading.Event()
        self.sink_up = True
        self.metrics.spool_bytes.set(spool.bytes)

    def ship(self, documents: Documents, resent: bool = False) -> None:
        """Deliver new documents, or spool them behind what the spool already holds."""
        if not documents:
            return
        if not self.spool.empty:
            self._spool(Owed(documents, self.index, "spool not yet replayed"))
            return
        for owed in self._send(documents, self.index, resent):
            self._spool(owed)

    def replay_one(self) -> Replayed:
        """Send the oldest spool segment; what is still owed of it keeps its place at the head."""
        segments = self.spool.segments()
        if not segments:
            return Replayed(0, None)
        path = segments[0]
        documents, index = self.spool.read(path)
        index = index or self.index  # segments written before the stream was named in them
        left, error = Documents(), None
        for owed in self._send(documents, index, resent=True):
            if owed.stream == index:
                left.extend(owed.documents)
                error = owed.reason
            else:
                self.spool.append(owed.documents, owed.stream)  # dead letters that could not be sent yet
        if left:
            self.spool.replace(path, left, index)
        else:
            self.spool.remove(path)
        sent = len(documents) - len(left)
        self.metrics.replayed.inc(sent)
        self.metrics.spool_bytes.set(self.spool.bytes)
        if error is None and self.spool.empty and not self.sink_up:
            self.sink_up = True
            log.info("spool replayed, back to direct delivery")
        return Replayed(sent, error)

    # ------------------------------------------------------------------ policy

    def _send(self, documents: Documents, index: str, resent: bool) -> list[Owed]:
        owed: list[Owed] = []
        attempt = 0
        name = self.sink.name
        while documents:
            delivery = self.sink.send(documents, index, resent)
            self.metrics.events_out.labels(name).inc(delivery.acknowledged)
            self.metrics.duplicates.labels(name).inc(delivery.duplicates)
            if index == self.deadletter_index:
                self.metrics.deadletters.labels(name).inc(delivery.acknowledged)
            if delivery.refused:
                owed.extend(self._refused(documents, delivery.refused, index))
            if not delivery.retry:
                self.sink_up = True
                break
            later = documents.take(delivery.retry)
            if delivery.unavailable:
                owed.append(Owed(later, index, delivery.unavailable))
                break
            if attempt >= self.max_retries or self._stopping.is_set():
                owed.append(Owed(later, index, f"{len(later)} documents still answered 429/5xx after "
                                               f"{attempt} retries"))
                break
            self.metrics.retries.labels(name).inc(len(later))
            self._stopping.wait(self.backoff.delay(attempt, delivery.retry_after))
            documents, resent, attempt = later, False, attempt + 1
        return owed

    def _refused(self, documents: Documents, refusals: list[Refusal], index: str) -> list[Owed]:
        if index == self.deadletter_index:
            for refusal in refusals:
                self.metrics.lost.labels(self.sink.name).inc()
                log.error("the dead-letter stream refused a document too; it is not stored",
                          extra={"id": documents.ids[refusal.position].decode(), "status": refusal.status,
                                 "reason": str(refusal.error.get("reason"))[:300]})
            return []
        letters = Documents()
        for position, status, error in refusals:
            log.warning("document refused, sent to the dead-letter stream",
                        extra={"id": documents.ids[position].decode(), "status": status,
                               "error_type": error.get("type"), "reason": str(error.get("reason"))[:300]})
            letters.ids.append(documents.ids[position])
            letters.bodies.append(orjson.dumps(deadletter_document(documents.bodies[position], status, error,
                                                                   self.namespace, index)))
        return self._send(letters, self.deadletter_index, resent=False)

    def _spool(self, owed: Owed) -> None:
        if self.sink_up:
            log.warning("sink unavailable, spooling to disk",
                        extra={"reason": owed.reason, "spool": str(self.spool.directory)})
        self.sink_up = False
        self.spool.append(owed.documents, owed.stream)
        self.metrics.spooled.inc(len(owed.documents))
        self.metrics.spool_bytes.set(self.spool.bytes)
