"""How often to look at each followed log: often while it has news, less and less while it has none."""

from __future__ import annotations

import math
import time


class Cadence:
    """Per key: due at once while reads find something (a backlog is read round after round, paced
    only by the reader's own loop); after an empty read, due in `fastest` seconds, each further
    empty read doubling the wait up to `slowest`.

    With `grid`, a key at the slowest wait is due at the last multiple of `grid` (seconds of the clock)
    before its wait is up, never later: quiet keys fall due together, a few times a second, so the loop
    that looks at them can sleep between (without it, 200 quiet keys fall due at 200 moments a second)."""

    def __init__(self, fastest: float, slowest: float = 1.0, clock=time.monotonic, grid: float | None = None):
        self.fastest = fastest
        self.slowest = max(slowest, fastest)
        self.clock = clock
        self.grid = grid if grid and grid < self.slowest else None
        self._next: dict[str, tuple[float, float]] = {}  # key -> (when due, current wait)

    def due(self, key: str) -> bool:
        at = self._next.get(key)
        return at is None or self.clock() >= at[0]

    def heard(self, key: str, found: bool) -> None:
        """After a read of `key`: `found` whether it had anything new."""
        now = self.clock()
        if found:
            self._next[key] = (now, 0.0)
            return
        wait = min(self.slowest, max(self.fastest, 2 * self._next.get(key, (0.0, 0.0))[1]))
        at = now + wait
        if self.grid is not None and wait >= self.slowest:
            at = max(now + self.fastest, math.floor(at / self.grid) * self.grid)
        self._next[key] = (at, wait)

    def next_due(self, default: float) -> float:
        """Seconds until the first key falls due (0 if one is due or never looked at); `default` with no keys."""
        due = list(self._next.values())  # one copy: other threads wake and forget keys meanwhile
        if not due:
            return default
        return max(0.0, min(at for at, _ in due) - self.clock())

    def wake(self, key: str) -> None:
        """Look at `key` at the next round (it was restarted, say)."""
        self._next.pop(key, None)

    def forget(self, key: str) -> None:
        self._next.pop(key, None)
