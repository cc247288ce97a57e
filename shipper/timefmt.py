"""Timestamps, the one place they are parsed and written.

The engine writes RFC 3339 in UTC with up to nanoseconds (`2024-05-01T10:00:00.123456789Z`:
log lines, `State.StartedAt`, an image's `Created`); documents carry the same form in
`@timestamp`. The code computes with epoch seconds (floats).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

NANOS = 1_000_000_000


def parse_time(text: str) -> float | None:
    """RFC 3339 (UTC as `Z`, `+00:00` or no zone; any number of fraction digits) as epoch seconds,
    to the microsecond; None when `text` is not one (an empty field, Docker's zero time is year 1)."""
    text = (text or "").strip()
    if text.endswith("Z"):
        text = text[:-1]
    elif text.endswith("+00:00"):
        text = text[:-6]
    head, dot, fraction = text.partition(".")
    if dot and not fraction.isdigit():
        return None
    try:
        whole = datetime.fromisoformat(head)
    except ValueError:
        return None
    if whole.tzinfo is None:
        whole = whole.replace(tzinfo=UTC)
    try:
        seconds = whole.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return seconds + int(fraction[:6].ljust(6, "0")) / 1e6 if fraction else seconds


def iso_time(seconds: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds, the form sampled events carry."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def nano_time(nanos: int) -> str:
    """Epoch nanoseconds as RFC 3339 UTC with all nine digits, the form of the engine's own times."""
    seconds, fraction = divmod(nanos, NANOS)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{fraction:09d}Z"


def now_iso() -> str:
    return iso_time(time.time())
