"""The one data type that flows through the shipper. Imports nothing else of ours.

An `Event` is what a source saw, already in ECS shape (`fields`), plus the raw
payload and the verdicts detectors attach. Container metadata is *not* copied
into every event: it is joined when the document is written (see document.py),
so a log line costs one small dict, not a copy of the container's labels.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from xxhash import xxh3_128_digest


class Severity(enum.IntEnum):
    """Sigma levels, mapped to ECS `event.severity` numbers."""

    INFORMATIONAL = 1
    LOW = 21
    MEDIUM = 47
    HIGH = 73
    CRITICAL = 99

    @classmethod
    def parse(cls, name: str) -> Severity:
        return cls[name.upper()]


@dataclass(frozen=True, slots=True)
class Verdict:
    rule_id: str
    rule_name: str
    severity: Severity
    reason: str
    tactic: str | None = None  # e.g. "TA0002 Execution"
    technique: str | None = None  # e.g. "T1059"
    risk_score: float | None = None
    suppressed: int = 0  # repeats of this (rule, container) throttled since the previous alert
    remediation: str | None = None  # what to do about it (the rule's `remediation`)
    benchmark: str | None = None  # the docker-bench / CIS Docker Benchmark check it answers, e.g. "2.7"

    def as_dict(self) -> dict[str, Any]:
        out = {
            "rule": {"id": self.rule_id, "name": self.rule_name},
            "severity": int(self.severity),
            "level": self.severity.name.lower(),
            "reason": self.reason,
        }
        if self.tactic:
            out["tactic"] = self.tactic
        if self.technique:
            out["technique"] = self.technique
        if self.risk_score is not None:
            out["risk_score"] = self.risk_score
        if self.suppressed:
            out["suppressed"] = self.suppressed
        if self.remediation:
            out["remediation"] = self.remediation
        if self.benchmark:
            out["benchmark"] = self.benchmark
        return out


@dataclass(frozen=True, slots=True)
class Event:
    id: str  # deterministic Elasticsearch _id, see event_id()
    timestamp: str  # RFC 3339, as precise as the source gave it
    source: str  # "docker_logs", "docker_events", ...
    fields: dict[str, Any]  # ECS fields, nested: {"event": {"action": ...}, "message": ...}
    container_id: str | None = None
    raw: Any = None  # the untouched payload, when it is more than `fields` already holds
    verdicts: tuple[Verdict, ...] = field(default=())


def event_id(*parts: object) -> str:
    """A deterministic id from what identifies an event at its source.

    Same parts, same id: re-reading a log after a crash or replaying the spool
    writes the same `_id`, which Elasticsearch's `create` refuses with 409.
    120 bits of BLAKE2b, URL-safe base64 (20 characters).
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=15).digest()
    return base64.urlsafe_b64encode(digest).decode()


class LineIds:
    """Ids of one container's log lines, from (container id, the engine's timestamp, file offset):
    the same key in the fast path (bytes, `key % (time, offset)`) and the full path (`id()`).

    120 bits of xxh3-128, URL-safe base64 (20 characters, as `event_id`). Not BLAKE2b as the
    other events: nothing in this key is the container's to choose (the time is the engine's,
    the offset the file's), so a fast hash cannot be steered into a collision that would have a
    line refused as a duplicate, and every shipped line pays for it (0.06 µs instead of 0.3).
    """

    __slots__ = ("key",)

    def __init__(self, container_id: str):
        self.key = (container_id + "\x1f").encode().replace(b"%", b"%%") + b"%b\x1f%d"

    def id(self, time: str, offset: int) -> str:
        return base64.urlsafe_b64encode(line_digest(self.key % (time.encode(), offset))).decode()


def line_digest(key: bytes) -> bytes:
    """The 15 bytes of a log line's id, from its `LineIds.key`."""
    return xxh3_128_digest(key)[:15]
