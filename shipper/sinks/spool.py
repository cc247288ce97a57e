"""The disk spool: bulk bodies that could not be delivered yet, replayed in order.

Each segment is one file of Elasticsearch bulk NDJSON (a `create` action naming
the data stream and the `_id`, then the document, per event: a segment can be
sent by hand with curl), written to a temporary name, fsynced, then renamed, so a
crash leaves either a whole segment or none. Segment names are increasing sequence numbers: replay
order is write order. The spool is bounded; `full` tells the caller to stop
taking new events (the sources then pause and logs wait on disk).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import orjson

from ..errors import ShipperError
from .base import Documents

log = logging.getLogger(__name__)

SUFFIX = ".ndjson"


def render(documents: Documents, index: str) -> bytes:
    head, tail = b'{"create":{"_index":"' + index.encode() + b'","_id":"', b'"}}\n'
    return b"".join([head + i + tail + body + b"\n" for i, body in zip(documents.ids, documents.bodies)])


def parse(body: bytes, path: Path) -> tuple[Documents, str | None]:
    """A segment's documents and the data stream they go to (None: segments written before it was named)."""
    parts = body.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise ShipperError(f"spool segment {path} is damaged: an action line without its document")
    documents, index = Documents(), None
    try:
        for action_line, body_line in zip(parts[0::2], parts[1::2]):
            action = orjson.loads(action_line)["create"]
            documents.ids.append(action["_id"].encode())
            documents.bodies.append(body_line)
            index = action.get("_index", index)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ShipperError(f"spool segment {path} is damaged: an action line is not a bulk `create`") from None
    return documents, index


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
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

    def append(self, documents: Documents, index: str) -> Path:
        body = render(documents, index)
        with self._lock:
            path = self.directory / f"{self._next:016d}{SUFFIX}"
            self._next += 1
            self._write(path, body)
            self.bytes += len(body)
        return path

    def read(self, path: Path) -> tuple[Documents, str | None]:
        return parse(path.read_bytes(), path)

    def remove(self, path: Path) -> None:
        with self._lock:
            size = path.stat().st_size
            path.unlink()
            self.bytes -= size

    def replace(self, path: Path, documents: Documents, index: str) -> None:
        """Rewrite a segment with only the documents still owed (same name: same place in line)."""
        body = render(documents, index)
        with self._lock:
            old = path.stat().st_size
            self._write(path, body)
            self.bytes += len(body) - old

    def _write(self, path: Path, body: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
        _fsync_dir(self.directory)

    def status(self) -> dict[str, object]:
        segments = self.segments()
        return {"directory": str(self.directory), "segments": len(segments), "bytes": self.bytes,
                "max_bytes": self.max_bytes, "full": self.full}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
