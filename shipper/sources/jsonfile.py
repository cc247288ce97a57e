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

import hashlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass

import orjson

from .fastpath import ContainerDocuments

log = logging.getLogger(__name__)

READ_SIZE = 1 << 18  # about 1,700 lines of 150 bytes: a batch's worth, not several
HEAD_SIZE = 1 << 17  # one JSON entry is at most 16 KiB of text, escaped


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


def first_entry_digest(handle) -> str | None:
    """A fingerprint of a log file: its first JSON entry (which ends with its timestamp).

    Inode numbers are reused after a file is deleted, so a checkpoint's inode alone
    could name a different file; the first entry tells them apart.
    """
    head = os.pread(handle.fileno(), HEAD_SIZE, 0)
    end = head.find(b"\n")
    if end < 0:
        return None  # not even one whole entry yet
    return hashlib.blake2b(head[:end], digest_size=8).hexdigest()


class _OpenFile:
    __slots__ = ("inode", "handle", "offset", "path", "_digest")

    def __init__(self, path: str, handle, offset: int = 0):
        self.path = path
        self.handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self.offset = offset  # offset of the first byte not yet consumed into `pending`
        self._digest: str | None = None
        if offset:
            handle.seek(offset)

    @property
    def digest(self) -> str | None:
        if self._digest is None:
            self._digest = first_entry_digest(self.handle)
        return self._digest


class JsonFileChain:
    """Reads whole messages from one container's log chain, oldest first."""

    def __init__(self, base: str, *, max_message_length: int, position: dict | None = None, start_at_end: bool = False):
        self.base = base
        self._current: _OpenFile | None = None
        self.max_message_length = max_message_length
        self._files: deque[_OpenFile] = deque()
        self._open_inodes: set[int] = set()
        # Files read to the end: inode -> size. Inodes are reused once a file is deleted,
        # so a file counts as "already read" only if its size matches too.
        self._finished: dict[int, int] = {}
        self._leftover = b""  # an incomplete JSON line at the end of what we read
        self._partial: list[str] = []  # parts of a message split by Docker at 16 KiB
        self._partial_inode = 0  # a split message may straddle a rotation
        self._partial_digest: str | None = None
        self._partial_start = 0
        self._partial_length = 0
        self._lock = threading.Lock()  # discover() may run in another thread
        self._closed = False
        self._open_initial(position, start_at_end)

    # ------------------------------------------------------------ files

    def _open(self, path: str, offset: int = 0) -> _OpenFile | None:
        try:
            handle = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        stat = os.fstat(handle.fileno())
        if stat.st_ino in self._open_inodes or self._finished.get(stat.st_ino) == stat.st_size:
            handle.close()
            return None
        opened = _OpenFile(path, handle, offset)
        self._open_inodes.add(opened.inode)
        return opened

    @staticmethod
    def _same_file(path: str, position: dict) -> bool:
        if position.get("digest") is None:
            return True
        with open(path, "rb", buffering=0) as handle:
            return first_entry_digest(handle) == position["digest"]

    def _finish(self, current: _OpenFile) -> None:
        current.handle.close()
        self._files.popleft()
        self._open_inodes.discard(current.inode)
        self._finished[current.inode] = current.offset
        while len(self._finished) > 16:
            del self._finished[next(iter(self._finished))]

    def _open_initial(self, position: dict | None, start_at_end: bool) -> None:
        paths = chain_paths(self.base)
        if position:
            for index, path in enumerate(paths):
                try:
                    stat = os.stat(path)
                    if stat.st_ino != position["inode"] or not self._same_file(path, position):
                        self._finished[stat.st_ino] = stat.st_size  # older than the checkpoint: done
                    else:
                        first = self._open(path, position["offset"])
                        if first:
                            self._files.append(first)
                        paths = paths[index + 1:]
                        break
                except FileNotFoundError:
                    continue
            else:
                self._finished.clear()
                if paths:
                    log.warning(
                        "log file at the checkpoint is gone (rotated away while the shipper was down); "
                        "resuming at the oldest file left", extra={"log_file": self.base}
                    )
        elif start_at_end and paths:
            for older in paths[:-1]:
                try:
                    stat = os.stat(older)
                    self._finished[stat.st_ino] = stat.st_size
                except FileNotFoundError:
                    pass
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

    def discover(self) -> None:
        """Open the live file if it is one we have not seen (Docker rotated).

        Called often, also while the reader is blocked: an open file stays
        readable after Docker deletes it, so nothing rotated away is lost.
        """
        if self._closed:
            return
        try:
            inode = os.stat(self.base).st_ino
        except FileNotFoundError:
            return
        if inode in self._open_inodes:
            return
        # The live file is new. Docker may have rotated more than once since we
        # last looked: take every file of the chain we have not read, oldest first.
        with self._lock:
            for path in chain_paths(self.base):
                opened = self._open(path)
                if opened:
                    self._files.append(opened)

    @property
    def position(self) -> dict | None:
        """Where a restart resumes: the start of the first message not yet returned."""
        if not self._files:
            return None
        current = self._files[0]
        if self._partial:
            return {"inode": self._partial_inode, "offset": self._partial_start, "digest": self._partial_digest}
        return {"inode": current.inode, "offset": current.offset - len(self._leftover), "digest": current.digest}

    # ------------------------------------------------------------ reading

    def read(self, max_lines: int, max_bytes: int = 8 << 20, fast: ContainerDocuments | None = None) -> list[Line]:
        """Whole messages available now: about `max_lines` or `max_bytes` of file at most.

        With `fast`, the lines it can render become documents there; only the others are returned.
        """
        self.discover()
        out: list[Line] = []
        consumed = 0
        while self._files and len(out) + (len(fast) if fast is not None else 0) < max_lines and consumed < max_bytes:
            current = self._files[0]
            chunk = current.handle.read(READ_SIZE)
            if chunk:
                consumed += len(chunk)
                self._consume(current, chunk, out, fast)
                continue
            # End of this file. A newer file exists, so Docker will not write here again.
            with self._lock:
                newer = len(self._files) > 1
            if newer:
                if self._leftover:
                    log.warning("rotated log file ends inside a JSON entry; shipping it as malformed",
                                extra={"log_file": current.path})
                    start = current.offset - len(self._leftover)
                    out.append(Line(start, current.inode, "", "unknown",
                                    self._leftover.decode("utf-8", "replace"), False, True))
                    self._leftover = b""
                with self._lock:
                    self._finish(current)
                continue
            break
        return out

    def _consume(self, current: _OpenFile, chunk: bytes, out: list[Line], fast: ContainerDocuments | None) -> None:
        start = current.offset - len(self._leftover)
        data = self._leftover + chunk if self._leftover else chunk
        current.offset += len(chunk)
        cut = data.rfind(b"\n") + 1
        self._leftover = data[cut:]
        self._current = current
        if fast is not None:
            fast.consume(data[:cut], start, self.max_message_length,
                         lambda offset, raw: self._entry(offset, raw, out), lambda: bool(self._partial))
            return
        offset = start
        for raw in data[:cut].split(b"\n")[:-1]:
            self._entry(offset, raw, out)
            offset += len(raw) + 1

    def _entry(self, line_start: int, raw: bytes, out: list[Line]) -> None:
        """One json-file entry of the file being read, starting at `line_start`, onto `out` (or into a partial)."""
        if not raw:
            return
        current = self._current
        assert current is not None  # set by _consume before any entry
        inode = current.inode
        limit = self.max_message_length
        try:
            entry = orjson.loads(raw)
            text = entry["log"]
            if not isinstance(text, str):
                raise TypeError("log is not a string")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            out.append(Line(line_start, inode, "", "unknown", raw.decode("utf-8", "replace"), False, True))
            return
        if not self._partial and text.endswith("\n"):
            truncated = len(text) > limit + 1
            out.append(Line(line_start, inode, entry["time"], entry["stream"],
                            text[:limit] if truncated else text[:-1], truncated, False))
            return
        # Part of a message Docker split at 16 KiB.
        if not self._partial:
            self._partial_inode = inode
            self._partial_digest = current.digest
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
        self._closed = True
        for opened in self._files:
            opened.handle.close()
        self._files.clear()
