"""The disk spool: bulk bodies that could not be delivered yet, replayed in order.

Each segment is one file of NDJSON (action line + document line per event),
written to a temporary name, fsynced, then renamed, so a crash leaves either a
whole segment or none. Segment names are increasing sequence numbers: replay
order is write order. The spool is bounded; `full` tells the caller to stop
taking new events (the sources then pause and logs wait on disk).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

from ..private import open_private, private_dir
from .base import SinkUnavailable

log = logging.getLogger(__name__)

SUFFIX = ".ndjson"


def split_lines(body: bytes) -> list[bytes]:
    """Cut an NDJSON bulk body back into per-event (action + document) lines."""
    parts = body.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise ValueError("a spool segment must hold action/document pairs")
    return [parts[i] + b"\n" + parts[i + 1] + b"\n" for i in range(0, len(parts), 2)]


class Spool:
    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.directory = Path(directory)
        private_dir(self.directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()  # a write interrupted by a crash; its events were never acknowledged
        segments = self._segments()
        self._next = int(segments[-1].stem) + 1 if segments else 1
        self.bytes = sum(p.stat().st_size for p in segments)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("*" + SUFFIX))

    @property
    def empty(self) -> bool:
        return self.bytes == 0  # segments are never empty

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def segments(self) -> list[Path]:
        with self._lock:
            return self._segments()

    def append(self, lines: list[bytes]) -> Path:
        body = b"".join(lines)
        with self._lock:
            path = self.directory / f"{self._next:016d}{SUFFIX}"
            self._next += 1
            tmp = path.with_suffix(".tmp")
            with open_private(tmp, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, path)
            _fsync_dir(self.directory)
            self.bytes += len(body)
        return path

    def replay(self, path: Path, write: Callable[[list[bytes]], object]) -> tuple[int, SinkUnavailable | None]:
        """Send one segment with `write`: (events acknowledged, the error that stopped it or None).

        A segment fully acknowledged is deleted; a partly acknowledged one keeps only
        the lines still owed, under the same name, so it stays first in line.
        """
        lines = split_lines(path.read_bytes())
        try:
            write(lines)
        except SinkUnavailable as exc:
            if exc.lines is not None and len(exc.lines) < len(lines):
                self.replace(path, exc.lines)
                return len(lines) - len(exc.lines), exc
            return 0, exc
        self.remove(path)
        return len(lines), None

    def remove(self, path: Path) -> None:
        with self._lock:
            size = path.stat().st_size
            path.unlink()
            self.bytes -= size

    def replace(self, path: Path, lines: list[bytes]) -> None:
        """Rewrite a segment with only the lines still undelivered (same name: same place in line)."""
        body = b"".join(lines)
        with self._lock:
            old = path.stat().st_size
            tmp = path.with_suffix(".tmp")
            with open_private(tmp, "wb") as handle:
                handle.write(body)
                os.fsync(handle.fileno())
            os.rename(tmp, path)
            self.bytes += len(body) - old

    def status(self) -> dict:
        segments = self.segments()
        return {"directory": str(self.directory), "segments": len(segments), "bytes": self.bytes,
                "max_bytes": self.max_bytes, "full": self.full}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
