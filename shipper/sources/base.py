"""What every source is: a thread-friendly producer of batches of events."""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from ..model import Event

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """Events from one source, and the read positions to checkpoint once they are acknowledged.

    `positions` maps a key (container id, ...) to the position after the last event
    of this batch for that key; None means "forget this key". `ids` and `bodies` are
    documents already encoded (the json-file fast path): `_id` and JSON object each.
    """

    source: str
    events: list[Event]
    positions: dict[str, Any] = field(default_factory=dict)
    ids: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


Emit = Callable[[Batch], None]


def poll(name: str, sample: Callable[[], list[Event]], emit: Emit, interval: float, closed: threading.Event) -> None:
    """Run `sample` every `interval` seconds (its own time included) until `closed`; emit what it finds.

    An engine that does not answer is retried at the next interval, not fatal.
    """
    while not closed.is_set():
        started = time.monotonic()
        try:
            events = sample()
        except docker.errors.DockerException as exc:
            log.warning("%s: cannot list containers, retrying", name, extra={"error": str(exc)})
            events = []
        if events:
            emit(Batch(name, events))
        closed.wait(max(0.05, interval - (time.monotonic() - started)))


def close_quietly(stream: Any) -> None:
    """Close a docker-py HTTP stream from another thread; a half-dead one may raise, we are leaving anyway."""
    if stream is None:
        return
    try:
        stream.close()
    except Exception:
        pass


class Source(abc.ABC):
    """A source runs in its own thread: `run(emit)` blocks until `close()` is called.

    `emit` may block (backpressure): a source must not hold locks others need
    while calling it. `positions` are the checkpoints the source left last time.
    """

    name: str

    @abc.abstractmethod
    def run(self, emit: Emit, positions: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def status(self) -> dict[str, Any]:
        return {}
