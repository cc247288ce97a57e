"""How often to look at each followed log: often while it has news, less and less while it has none."""

from __future__ import annotations

import time


class Cadence:
    """Per key: due every `fastest` seconds while reads find something; each empty read doubles
    the wait, up to `slowest`; the first read that finds something brings it back to `fastest`."""

    def __init__(self, fastest: float, slowest: float = 1.0, clock=time.monotonic):
        self.fastest = fastest
        self.slowest = max(slowest, fastest)
        self.clock = clock
        self._next: dict[str, tuple[float, float]] = {}  # key -> (when due, current wait)

    def due(self, key: str) -> bool:
        at = self._next.get(key)
        return at is None or self.clock() >= at[0]

    def heard(self, key: str, found: bool) -> None:
        """After a read of `key`: `found` whether it had anything new."""
        wait = self.fastest if found else min(self.slowest, 2 * self._next.get(key, (0.0, self.fastest / 2))[1])
        self._next[key] = (self.clock() + wait, wait)

    def wake(self, key: str) -> None:
        """Look at `key` at the next round (it was restarted, say)."""
        self._next.pop(key, None)

    def forget(self, key: str) -> None:
        self._next.pop(key, None)
