"""The sink contract: what the pipeline hands a sink, and what a sink answers.

A sink only talks to its endpoint. It is handed encoded `Documents` and answers
with a `Delivery` that says, by position, which were acknowledged, which may be
sent again later, and which were refused for good. It never sleeps, retries,
spools or dead-letters: the pipeline decides all of that, the same way for every
sink (see `shipper/pipeline.py` and `shipper/retry.py`).

Notifiers (the webhook) sit beside the sink: they get judged events, keep their
own bounded queue and never slow shipping down.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..model import Event


@dataclass(slots=True)
class Documents:
    """Encoded documents as two parallel lists: each `_id` (ASCII) and its JSON object (no newline)."""

    ids: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: Documents) -> None:
        self.ids.extend(other.ids)
        self.bodies.extend(other.bodies)

    def take(self, positions: Iterable[int]) -> Documents:
        """The documents at `positions`, in that order."""
        ids, bodies = self.ids, self.bodies
        picked = list(positions)
        return Documents([ids[i] for i in picked], [bodies[i] for i in picked])

    def size(self) -> int:
        return sum(map(len, self.bodies))


class Refusal(NamedTuple):
    """A document the endpoint will never take as it is (a mapping conflict, a bad field)."""

    position: int
    status: int
    error: dict[str, Any]


@dataclass
class Delivery:
    """A sink's answer to one `send`, by position in the documents it was handed.

    Every position is in exactly one of: acknowledged (a count: indexed, or already
    there), `retry` (429, 5xx, or never answered: may be taken later) and `refused`.
    `unavailable` says why the endpoint gave no usable answer at all (down,
    unreachable, our credentials refused); the pipeline then spools at once
    instead of retrying.
    """

    acknowledged: int = 0
    duplicates: int = 0  # of the acknowledged, those that were already there (409, or found by id)
    retry: list[int] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    unavailable: str | None = None
    retry_after: float | None = None  # seconds, when the endpoint said how long to wait


class Sink(abc.ABC):
    name: str

    @abc.abstractmethod
    def send(self, documents: Documents, index: str, resent: bool = False) -> Delivery:
        """Deliver `documents` to `index` (a data stream) once, and say what became of each.

        `resent`: these may have been delivered before (a spool replay, a re-read after
        a start); a sink that can tell which were may acknowledge them without sending."""

    def close(self) -> None:  # noqa: B027 (a sink without connections to close needs nothing)
        pass


class Notifier(abc.ABC):
    """Gets every judged event beside the sink; must never block the caller."""

    name: str

    @abc.abstractmethod
    def offer(self, events: list[Event]) -> None:
        """Take what is worth notifying from `events` (called on the sources' threads)."""

    def close(self, timeout: float = 10.0) -> None:  # noqa: B027 (a notifier without a thread needs nothing)
        pass
