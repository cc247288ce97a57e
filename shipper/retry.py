"""The one retry policy: jittered exponential backoff, a `Retry-After` from the server wins.

Used by the pipeline (items a sink may take later) and by the webhook notifier.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt 0 is the first send)."""
        if retry_after is not None:
            return min(self.cap, max(0.0, retry_after))
        return float(min(self.cap, self.base * 2**attempt) * random.uniform(0.5, 1.0))
