"""How often to look at each followed log: often while it has news, less and less while it has none."""

from __future__ import annotations

import time


class Cadence:
    """Per key: due at once while reads find something (a backlog is read round after round, paced
    only by the reader's own loop); after an empty read, due in `fastest` seconds, each further
    empty read doubling the wait up to `slowest`."""

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
        if found:
            self._next.pop(key, None)
            return
        wait = min(self.slowest, max(self.fastest, 2 * self._next.get(key, (0.0, 0.0))[1]))
        self._next[key] = (self.clock() + wait, wait)

    def wake(self, key: str) -> None:
        """Look at `key` at the next round (it was restarted, say)."""
        self._next.pop(key, None)

    def forget(self, key: str) -> None:
        self._next.pop(key, None)
