"""Reading one container's json-file log chain: rotation, partial lines, exact positions.

Docker writes `<id>-json.log`; with `max-size`/`max-file` it rotates by renaming
(`-json.log` -> `.1` -> `.2` ...) and starts a new file. Renames keep the inode, so
a position is (inode, byte offset) and survives rotation. We open every file of
the chain as soon as we see it and keep it open until it is read to the end, so a
file rotated away or deleted while we are behind is still read whole.

A line longer than 16 KiB is written as several JSON entries; all but the last
have a `log` without the trailing newline. Positions only ever point at the start
of a whole message, so a restart never resumes in the middle of one.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import orjson

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Line:
    """One whole message from the log."""

    offset: int  # where its first JSON entry starts in the file `inode`
    inode: int
    time: str
    stream: str
    text: str  # without the trailing newline
    truncated: bool
    malformed: bool


def chain_paths(base: str) -> list[str]:
    """The existing files of the chain, oldest first."""
    directory, name = os.path.split(base)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    rotated = []
    for entry in names:
        if entry.startswith(name + "."):
            suffix = entry[len(name) + 1:]
            if suffix.isdigit():
                rotated.append((int(suffix), entry))
    rotated.sort(reverse=True)
    paths = [os.path.join(directory, entry) for _, entry in rotated]
    if name in names:
        paths.append(base)
    return paths


class _OpenFile:
    __slots__ = ("inode", "handle", "offset", "path")

    def __init__(self, path: str, handle, offset: int = 0):
        self.path = path
        self.handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self.offset = offset  # offset of the first byte not yet consumed into `pending`
        if offset:
            handle.seek(offset)


class JsonFileChain:
    """Reads whole messages from one container's log chain, oldest first."""

    def __init__(self, base: str, *, max_message_length: int, position: dict | None = None, start_at_end: bool = False):
        self.base = base
        self.max_message_length = max_message_length
        self._files: deque[_OpenFile] = deque()
        self._known_inodes: set[int] = set()
        self._leftover = b""  # an incomplete JSON line at the end of what we read
        self._partial: list[str] = []  # parts of a message split by Docker at 16 KiB
        self._partial_inode = 0  # a split message may straddle a rotation
        self._partial_start = 0
        self._partial_length = 0
        self.lost_files = 0
        self._open_initial(position, start_at_end)

    # ------------------------------------------------------------ files

    def _open(self, path: str, offset: int = 0) -> _OpenFile | None:
        try:
            handle = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        opened = _OpenFile(path, handle, offset)
        if opened.inode in self._known_inodes:
            handle.close()
            return None
        self._known_inodes.add(opened.inode)
        return opened

    def _open_initial(self, position: dict | None, start_at_end: bool) -> None:
        paths = chain_paths(self.base)
        if position:
            for index, path in enumerate(paths):
                try:
                    if os.stat(path).st_ino == position["inode"]:
                        paths = paths[index:]
                        first = self._open(path, position["offset"])
                        if first:
                            self._files.append(first)
                        paths = paths[1:]
                        break
                except FileNotFoundError:
                    continue
            else:
                if paths:
                    self.lost_files += 1
                    log.warning(
                        "log file at the checkpoint is gone (rotated away while the shipper was down); "
                        "resuming at the oldest file left", extra={"log_file": self.base}
                    )
        elif start_at_end and paths:
            paths = paths[-1:]
            last = self._open(paths[0])
            if last:
                last.offset = last.handle.seek(0, os.SEEK_END)
                self._files.append(last)
            paths = []
        for path in paths:
            opened = self._open(path)
            if opened:
                self._files.append(opened)

    def _discover(self) -> None:
        """Open the live file if it is one we have not seen (Docker rotated)."""
        try:
            inode = os.stat(self.base).st_ino
        except FileNotFoundError:
            return
        if inode not in self._known_inodes:
            opened = self._open(self.base)
            if opened:
                self._files.append(opened)

    @property
    def position(self) -> dict | None:
        """Where a restart resumes: the start of the first message not yet returned."""
        if not self._files:
            return None
        current = self._files[0]
        pending = len(self._leftover)
        if self._partial:
            return {"inode": self._partial_inode, "offset": self._partial_start}
        return {"inode": current.inode, "offset": current.offset - pending}

    # ------------------------------------------------------------ reading

    def read(self, max_lines: int) -> list[Line]:
        """Whole messages available now, at most about `max_lines`."""
        self._discover()
        out: list[Line] = []
        while self._files and len(out) < max_lines:
            current = self._files[0]
            chunk = current.handle.read(READ_SIZE)
            if chunk:
                self._consume(current, chunk, out)
                continue
            # End of this file. A newer file exists, so Docker will not write here again.
            if len(self._files) > 1:
                if self._leftover:
                    log.warning("rotated log file ends inside a JSON entry; shipping it as malformed",
                                extra={"log_file": current.path})
                    start = current.offset - len(self._leftover)
                    out.append(Line(start, current.inode, "", "unknown",
                                    self._leftover.decode("utf-8", "replace"), False, True))
                    self._leftover = b""
                current.handle.close()
                self._files.popleft()
                continue
            break
        return out

    def _consume(self, current: _OpenFile, chunk: bytes, out: list[Line]) -> None:
        start = current.offset - len(self._leftover)
        data = self._leftover + chunk if self._leftover else chunk
        current.offset += len(chunk)
        pieces = data.split(b"\n")
        self._leftover = pieces.pop()
        inode = current.inode
        offset = start
        limit = self.max_message_length
        for raw in pieces:
            line_start = offset
            offset += len(raw) + 1
            if not raw:
                continue
            try:
                entry = orjson.loads(raw)
                text = entry["log"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                out.append(Line(line_start, inode, "", "unknown", raw.decode("utf-8", "replace"), False, True))
                continue
            if not self._partial and text.endswith("\n"):
                truncated = len(text) > limit + 1
                out.append(Line(line_start, inode, entry["time"], entry["stream"],
                                text[:limit] if truncated else text[:-1], truncated, False))
                continue
            # Part of a message Docker split at 16 KiB.
            if not self._partial:
                self._partial_inode = inode
                self._partial_start = line_start
                self._partial_time = entry["time"]
                self._partial_stream = entry["stream"]
            if self._partial_length <= limit:
                self._partial.append(text)
            self._partial_length += len(text)
            if text.endswith("\n"):
                whole = "".join(self._partial)
                truncated = self._partial_length > limit + 1
                out.append(Line(self._partial_start, self._partial_inode, self._partial_time, self._partial_stream,
                                whole[:limit] if truncated else whole[:-1], truncated, False))
                self._partial = []
                self._partial_length = 0

    def close(self) -> None:
        for opened in self._files:
            opened.handle.close()
        self._files.clear()

    def __iter__(self) -> Iterator[Line]:  # convenience for tests and tools
        while batch := self.read(10_000):
            yield from batch
