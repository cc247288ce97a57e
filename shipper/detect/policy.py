"""What happens to verdicts after detection: allowlists, then throttling.

An allowlist entry (config `detection.exceptions`) drops the verdicts of its
rules for events that match all of its matchers. Throttling keeps one alert per
(rule, container) per window; repeats inside the window are counted and the next
alert after it says how many were suppressed. The events themselves are always
shipped: only their verdicts go.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..config import ExceptionConfig
from ..model import Verdict


def _any(patterns: list[str], *values: Any) -> bool:
    return any(isinstance(v, str) and fnmatch.fnmatchcase(v, p) for p in patterns for v in values)


class Allowlist:
    def __init__(self, entries: Iterable[ExceptionConfig]):
        self.entries = list(entries)

    def allows(self, verdict: Verdict, doc: dict[str, Any]) -> ExceptionConfig | None:
        """The entry that excuses this verdict on this event, if any."""
        for entry in self.entries:
            if entry.rules and verdict.rule_id not in entry.rules and verdict.rule_name not in entry.rules:
                continue
            if self._matches(entry, doc):
                return entry
        return None

    @staticmethod
    def _matches(entry: ExceptionConfig, doc: dict[str, Any]) -> bool:
        container = doc.get("container") or {}
        process = doc.get("process") or {}
        checks = []
        if entry.images:
            checks.append(_any(entry.images, (container.get("image") or {}).get("name")))
        if entry.containers:
            checks.append(_any(entry.containers, container.get("name"), container.get("id")))
        if entry.labels:
            labels = container.get("labels") or {}
            checks.append(any(
                key in labels and (not sep or fnmatch.fnmatchcase(str(labels[key]), value))
                for key, sep, value in (p.partition("=") for p in entry.labels)))
        if entry.processes:
            checks.append(_any(entry.processes, process.get("name"), process.get("executable")))
        if entry.paths:
            checks.append(_any(entry.paths, (doc.get("file") or {}).get("path")))
        return bool(checks) and all(checks)


class Throttle:
    def __init__(self, window: float):
        self.window = window
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def admit(self, verdict: Verdict, container_id: str | None) -> Verdict | None:
        """The verdict to attach (with the count of repeats it stands for), or None while throttled."""
        if self.window <= 0:
            return verdict
        key = (verdict.rule_id, container_id or "host")
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
            if len(self._last) > 100_000:  # forget keys of long-gone containers
                self._last = {k: t for k, t in self._last.items() if now - t < self.window}
        if not suppressed:
            return verdict
        return dataclasses.replace(verdict, suppressed=suppressed, reason=(
            f"{verdict.reason} ({suppressed} repeat(s) suppressed since the previous alert)"))
