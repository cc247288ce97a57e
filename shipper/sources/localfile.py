"""Reading one container's `local` log driver files: framing, protobuf entries, gzip rotations.

Docker's `local` driver writes `<container dir>/local-logs/container.log`. Each entry is
a 4-byte big-endian length, a protobuf `LogEntry` (Docker's
api/types/plugins/logdriver/entry.proto) and the same length again. At `max-size` it
renames `container.log` -> `.1` (`.1.gz` -> `.2.gz` ...), starts a new file, and, with
`compress` (the default), gzips `.1` into `.1.gz` in the background and deletes `.1`.
Verified against the files written by Engine 20.10.24 (API 1.41).

Compression makes a new file, so an inode does not identify a file for long: a file is
named by a digest of its first entry (which carries a nanosecond timestamp), and a
position is (digest, offset in the uncompressed content). As for json-file, the live
file is opened as soon as it appears and kept open until read to the end, so a file
rotated, compressed and deleted while we are behind is still read whole from the
handle we hold; the `.gz` copies are read only for what was written while we were
not watching (a backlog at start, or a restart from a checkpoint).

Lines longer than 16 KiB are written as several entries that share a `partial` id; they
are put back together, and a position never points inside one.

With the fast path (shipper/sources/fastpath.py) a chunk is read without an object per
line: the frames are walked once (lengths only), the entries in Docker's whole-line layout
are checked and cut into parallel lists (offsets, streams, times, messages) by C loops
(map/zip), and handed over together; a `Line` is made only for what it sends back (rule
hits, over-long lines) and for every other entry (partial, another layout, malformed).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, and_, itemgetter, sub
from typing import TYPE_CHECKING

from .jsonfile import Line

if TYPE_CHECKING:
    from .fastpath import ContainerDocuments

log = logging.getLogger(__name__)

LIVE_NAME = "container.log"
READ_SIZE = 1 << 18  # about 1,650 lines of 150 bytes, as json-file's: a batch's worth, not several (queued batches are RSS)
MAX_ENTRY = 1 << 24  # Docker's entries are ~16 KiB; a length beyond this is a corrupt file
BROKEN_GZIP = (EOFError, zlib.error, gzip.BadGzipFile)
_LENGTH = struct.Struct(">I")
_GAP = struct.Struct(">II")  # a frame's closing length and the next frame's opening one


class MalformedEntry(ValueError):
    """Bytes that are not a LogEntry, or a frame whose two lengths disagree."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One protobuf `LogEntry`; `partial_*` come from its `partial_log_metadata`."""

    source: str
    time_nano: int
    line: bytes
    partial: bool = False
    partial_last: bool = False
    partial_id: str = ""
    partial_ordinal: int = 0


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        try:
            byte = data[i]
        except IndexError:
            raise MalformedEntry("varint runs past the end of the entry") from None
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise MalformedEntry("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message; varints as int, length-delimited as bytes."""
    i, end = 0, len(data)
    while i < end:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield number, value
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > end:
                raise MalformedEntry("field runs past the end of the entry")
            yield number, data[i:i + length]
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:  # groups (3, 4) are not in this schema; 6 and 7 do not exist
            raise MalformedEntry(f"unexpected wire type {wire}")
    if i != end:
        raise MalformedEntry("fixed-width field runs past the end of the entry")


_SOURCES = {b"stdout": "stdout", b"stderr": "stderr"}


def decode_entry(data: bytes) -> LogEntry:
    """A `LogEntry` message (without its frame). Unknown fields are skipped, as protobuf does."""
    source, time_nano, line = "", 0, b""
    partial = last = False
    partial_id, ordinal = "", 0
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            source = _SOURCES.get(value) or value.decode("utf-8", "replace")
        elif number == 2 and isinstance(value, int):
            time_nano = value - (1 << 64) if value >= 1 << 63 else value  # int64, two's complement
        elif number == 3 and isinstance(value, bytes):
            line = value
        elif number == 4 and isinstance(value, int):
            partial = value != 0
        elif number == 5 and isinstance(value, bytes):
            for inner, item in _fields(value):
                if inner == 1 and isinstance(item, int):
                    last = item != 0
                elif inner == 2 and isinstance(item, bytes):
                    partial_id = item.decode("utf-8", "replace")
                elif inner == 3 and isinstance(item, int):
                    ordinal = item - (1 << 64) if item >= 1 << 63 else item  # int32: negatives take 10 bytes
    return LogEntry(source, time_nano, line, partial, last, partial_id, ordinal)


def encode_entry(entry: LogEntry) -> bytes:
    """The framed bytes Docker writes for `entry`; for tests and tools."""

    varint = _varint_bytes

    def string(number: int, value: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(value)) + value

    body = string(1, entry.source.encode()) + varint(2 << 3) + varint(entry.time_nano) + string(3, entry.line)
    if entry.partial:
        meta = (varint(1 << 3) + varint(1) if entry.partial_last else b"") + string(2, entry.partial_id.encode())
        meta += varint(3 << 3) + varint(entry.partial_ordinal)
        body += varint(4 << 3) + varint(1) + string(5, meta)
    return _LENGTH.pack(len(body)) + body + _LENGTH.pack(len(body))


_second_cache: dict[int, str] = {}


def rfc3339_nano(time_nano: int) -> str:
    """Nanoseconds since the epoch as Docker's fixed-width RFC 3339 (what json-file's `time` holds)."""
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    head = _second_cache.get(seconds)
    if head is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        head = _second_cache[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{head}.{nanos:09d}Z"


_high_bits: dict[bytes, int] = {}


def _whole_line(data: bytes, i: int, end: int) -> tuple[str, str, bytes] | None:
    """(stream, time, line) of an entry laid out as Docker writes a whole line: fields 1, 2, 3
    in order, a stdout/stderr source, a 9-byte time, a line shorter than 16 KiB, nothing after.
    Anything else (a partial entry, another layout) returns None for decode_entry to handle."""
    if end - i < 21 or data[i] != 0x0A or data[i + 1] != 6 or data[i + 8] != 0x10:
        return None
    source = _SOURCES.get(data[i + 2:i + 8])
    t = i + 9
    if source is None or data[t] < 0x80 or data[t + 1] < 0x80 or data[t + 2] < 0x80 or data[t + 8] >= 0x80 \
            or data[t + 9] != 0x1A:
        return None
    # A 9-byte varint (times from 1972 to 2262): its top six bytes change every ~2 ms, so
    # their value is cached (and checked for continuation bits once, when cached).
    high_key = data[t + 3:t + 9]
    high = _high_bits.get(high_key)
    if high is None:
        if min(high_key[:5]) < 0x80:
            return None
        if len(_high_bits) > 4096:
            _high_bits.clear()
        high = 0
        for shift, byte in enumerate(high_key, start=3):
            high |= (byte & 0x7F) << (7 * shift)
        _high_bits[high_key] = high
    time_nano = high | (data[t] & 0x7F) | (data[t + 1] & 0x7F) << 7 | (data[t + 2] & 0x7F) << 14
    n = t + 10
    length = data[n]
    if length < 0x80:
        n += 1
    elif data[n + 1] < 0x80:
        length = (length & 0x7F) | data[n + 1] << 7
        n += 2
    else:
        return None
    if n + length != end:
        return None  # more fields follow: a partial entry
    return source, rfc3339_nano(time_nano), data[n:end]


# ------------------------------------------------------------------ whole chunks


def _frame_starts(data: bytes) -> tuple[list[int], int]:
    """Where each whole frame of `data` starts, and where the last one ends: up to the first
    frame not yet whole, or whose lengths disagree or are too long (the careful loop takes it from there)."""
    starts: list[int] = []
    end = len(data)
    if end < 4:
        return starts, 0
    append, gap = starts.append, _GAP.unpack_from
    i = 0
    (length,) = _LENGTH.unpack_from(data)
    while length <= MAX_ENTRY:
        stop = i + 4 + length
        if stop + 8 > end:  # the last frame of the chunk: no next length to read with its own
            if stop + 4 <= end and _LENGTH.unpack_from(data, stop)[0] == length:
                append(i)
                i = stop + 4
            break
        closing, following = gap(data, stop)
        if closing != length:
            break
        append(i)
        i = stop + 4
        length = following
    return starts, i


def _varint_bytes(value: int) -> bytes:
    """A protobuf varint; a negative value as its 64-bit two's complement (10 bytes), as Docker writes an int32."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# A whole line as Docker writes it: `0A 06 stdout|stderr 10 <9-byte time> 1A <length> <line>`, nothing
# after. By the entry's length: what bytes 18.. must be (1A and the line's length), and where the line starts.
_LONGEST_WHOLE = 16 * 1024 + 1  # Docker splits longer lines into partial entries
# entries this long or longer are not taken for whole lines (\xff: no entry has that byte there)
_LAST_LENGTH = 18 + len(_varint_bytes(_LONGEST_WHOLE)) + 1 + _LONGEST_WHOLE + 1
_LINE_HEAD: list[bytes] = [b"\xff"] * (_LAST_LENGTH + 1)
_LINE_FROM: list[slice] = [slice(0)] * (_LAST_LENGTH + 1)
for _length in range(_LONGEST_WHOLE + 1):
    _head = b"\x1a" + _varint_bytes(_length)
    _LINE_HEAD[18 + len(_head) + _length] = _head
    _LINE_FROM[18 + len(_head) + _length] = slice(18 + len(_head), None)
_STREAM_OF = {b"\n\x06stdout\x10": b"stdout", b"\n\x06stderr\x10": b"stderr"}
_WHOLE_STARTS = _STREAM_OF.keys()
_FIELDS_START, _TIME_AND_TAG = itemgetter(slice(9)), itemgetter(slice(9, 19))
_TIMES = re.compile(rb"(?:[\x80-\xff]{8}[\x00-\x7f]\x1a)*")  # 9-byte varints (1972 to 2262), each before field 3


class _Cached(dict):
    """A dict that computes a missing value once (map(cache.__getitem__, keys) stays a C loop)."""

    def __init__(self, compute, most: int = 4096):
        super().__init__()
        self.compute, self.most = compute, most

    def __missing__(self, key):
        if len(self) > self.most:
            self.clear()
        value = self[key] = self.compute(key)
        return value


def _high_value(high: bytes) -> int:
    value = 0
    for shift, byte in enumerate(high, start=3):
        value |= (byte & 0x7F) << (7 * shift)
    return value


# A 9-byte time varint in three lookups: its top six bytes (they change every ~2 ms) give the
# second (as text) and the nanoseconds so far; its first two and its third byte add the rest.
_SECOND = _Cached(lambda high: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(_high_value(high) // NANOS)).encode())
_FRACTION = _Cached(lambda high: _high_value(high) % NANOS)
_LOW = _Cached(lambda low: (low[0] & 0x7F) | (low[1] & 0x7F) << 7, 1 << 15)
_MIDDLE = [(byte & 0x7F) << 14 for byte in range(256)]
_TIME_HIGH, _TIME_LOW, _TIME_MIDDLE = itemgetter(slice(12, 18)), itemgetter(slice(9, 11)), itemgetter(11)
NANOS = 1_000_000_000


def _stamps(fields: list[bytes]) -> list[bytes]:
    """RFC 3339 (as rfc3339_nano, in bytes) of whole-line entries' times, by C loops."""
    highs = list(map(_TIME_HIGH, fields))
    nanos = list(map(add, map(add, map(_FRACTION.__getitem__, highs), map(_LOW.__getitem__, map(_TIME_LOW, fields))),
                     map(_MIDDLE.__getitem__, map(_TIME_MIDDLE, fields))))
    stamps = list(map(b"%s.%09dZ".__mod__, zip(map(_SECOND.__getitem__, highs), nanos, strict=True)))
    if nanos and max(nanos) >= NANOS:  # the low bytes carried into the next second
        for index, nano in enumerate(nanos):
            if nano >= NANOS:
                high = highs[index]
                stamps[index] = rfc3339_nano(_high_value(high) - _FRACTION[high] + nano).encode()
    return stamps


@dataclass(slots=True)
class WholeLines:
    """The whole lines of one chunk, as parallel lists (no object per line)."""

    offsets: list[int]
    streams: list[bytes]  # b"stdout" | b"stderr"
    times: list[bytes]  # RFC 3339, as rfc3339_nano
    messages: list[bytes]  # as Docker wrote them: not yet decoded, not truncated


def _whole_flags(fields: list[bytes], heads: list[bytes], lengths: list[int]) -> list[bool] | None:
    """Which entries (their fields, without the frame) are whole lines in Docker's layout; None: all of them."""
    in_layout = list(map(bytes.startswith, fields, map(_LINE_HEAD.__getitem__, lengths), repeat(18)))
    if all(in_layout) and set(heads) <= _WHOLE_STARTS:  # the usual chunk: checked at once
        whole = None
    else:
        whole = list(map(and_, map(_WHOLE_STARTS.__contains__, heads), in_layout))
    if _TIMES.fullmatch(b"".join(map(_TIME_AND_TAG, fields if whole is None else compress(fields, whole)))) is None:
        return [False] * len(fields)  # a time before 1972 or after 2262: decode_entry reads it
    return whole


# ------------------------------------------------------------------ files


def chain_paths(directory: str) -> list[str]:
    """The files of the chain, oldest first: `.N[.gz]` ... `.1[.gz]`, `container.log`.

    While Docker compresses `.1`, both `.1` and a half-written `.1.gz` exist: take `.1`.
    """
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        return []
    numbered: dict[int, str] = {}
    for name in names:
        if not name.startswith(LIVE_NAME + "."):
            continue
        suffix = name[len(LIVE_NAME) + 1:]
        plain = suffix.removesuffix(".gz")
        if plain.isdigit() and (suffix == plain or f"{LIVE_NAME}.{plain}" not in names):
            numbered[int(plain)] = name
    paths = [os.path.join(directory, numbered[n]) for n in sorted(numbered, reverse=True)]
    if LIVE_NAME in names:
        paths.append(os.path.join(directory, LIVE_NAME))
    return paths


def _first_frame_digest(head: bytes) -> str | None:
    if len(head) < 4:
        return None
    (length,) = _LENGTH.unpack_from(head)
    if length > MAX_ENTRY:  # a corrupt start: its first bytes are still the file's own
        return hashlib.blake2b(head[:8], digest_size=8).hexdigest()
    if len(head) < 8 + length:
        return None  # the first entry is not whole yet
    return hashlib.blake2b(head[:8 + length], digest_size=8).hexdigest()


class _OpenFile:
    """One file of the chain, held open; `offset` counts uncompressed bytes consumed."""

    __slots__ = ("path", "handle", "stream", "inode", "offset", "seq", "_digest")

    def __init__(self, path: str, handle, seq: int):
        self.path = path
        self.handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self.stream = gzip.GzipFile(fileobj=handle, mode="rb") if path.endswith(".gz") else handle
        self.offset = 0
        self.seq = seq  # order in the chain: a partial message's start is compared by it
        self._digest: str | None = None

    @property
    def compressed(self) -> bool:
        return self.stream is not self.handle

    @property
    def digest(self) -> str | None:
        if self._digest is None:
            if self.compressed:
                with gzip.GzipFile(fileobj=_Reopened(self.handle), mode="rb") as copy:
                    head = copy.read(8)
                    if len(head) == 8:
                        head += copy.read(min(_LENGTH.unpack_from(head)[0], MAX_ENTRY))
            else:
                head = os.pread(self.handle.fileno(), 8, 0)
                if len(head) >= 4:
                    head = os.pread(self.handle.fileno(), 8 + min(_LENGTH.unpack_from(head)[0], MAX_ENTRY), 0)
            self._digest = _first_frame_digest(head)
        return self._digest

    def skip_to(self, offset: int) -> None:
        self.offset = self.stream.seek(offset)

    def read(self, size: int) -> bytes:
        # read1: a damaged gzip raises only on the piece that reaches the damage, not on all before it
        return self.stream.read1(size) if self.compressed else self.stream.read(size)

    def close(self) -> None:
        if self.compressed:
            self.stream.close()
        self.handle.close()


class _Reopened:
    """A second, independent reader of an open file's bytes (pread), for a gzip head."""

    def __init__(self, handle):
        self.fd = handle.fileno()
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        data = os.pread(self.fd, size if size >= 0 else 1 << 30, self.pos)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


@dataclass(slots=True)
class _Partial:
    """A message Docker split into several entries, being put back together."""

    seq: int
    digest: str | None
    offset: int
    time: str
    stream: str
    parts: list
    length: int


class LocalLogChain:
    """Reads whole messages from one container's `local-logs` directory, oldest first."""

    def __init__(self, directory: str, *, max_message_length: int, position: dict | None = None,
                 start_at_end: bool = False):
        self.directory = directory
        self.base = os.path.join(directory, LIVE_NAME)  # what documents name as log.file.path
        self.max_message_length = max_message_length
        self._files: deque[_OpenFile] = deque()
        self._open_inodes: set[int] = set()
        self._finished: dict[str, None] = {}  # digests of files read to the end that still exist
        self._last_done: dict | None = None  # the end of the last file read to the end
        self._leftover = b""
        self._partials: dict[str, _Partial] = {}  # partial id -> message so far
        self._seq = 0
        self._lock = threading.Lock()  # discover() runs in another thread
        self._closed = False
        self._open_initial(position, start_at_end)

    # ------------------------------------------------------------ files

    def _open(self, path: str, known: set[str | None], seen: set[str | None]) -> _OpenFile | None:
        """Open `path` unless it is a file we hold or have read (also as its .gz copy)."""
        handle = open(path, "rb", buffering=0)
        inode = os.fstat(handle.fileno()).st_ino
        if inode in self._open_inodes:
            handle.close()
            return None
        self._seq += 1
        opened = _OpenFile(path, handle, self._seq)
        try:
            digest = opened.digest
        except BROKEN_GZIP as exc:
            log.warning("compressed log file is damaged; skipping it", extra={"log_file": path, "error": str(exc)})
            opened.close()
            return None
        seen.add(digest)
        if digest is not None and (digest in known or digest in self._finished):
            opened.close()
            return None
        self._open_inodes.add(inode)
        return opened

    def _open_chain(self) -> list[_OpenFile]:
        """Every file of the chain we do not hold yet, oldest first; renamed under us: list again."""
        for _ in range(20):
            known = {f.digest for f in self._files}
            opened: list[_OpenFile] = []
            seen: set[str | None] = set()
            try:
                for path in chain_paths(self.directory):
                    found = self._open(path, known, seen)
                    if found is not None:
                        opened.append(found)
                        known.add(found.digest)
            except FileNotFoundError:  # Docker rotated between listing and opening
                for found in opened:
                    self._open_inodes.discard(found.inode)
                    found.close()
                continue
            for gone in self._finished.keys() - seen:  # deleted by Docker: cannot come back
                del self._finished[gone]
            return opened
        log.warning("local log files keep changing under the reader; will look again",
                    extra={"log_file": self.base})
        return []

    def _open_initial(self, position: dict | None, start_at_end: bool) -> None:
        opened = self._open_chain()
        if position:
            for index, candidate in enumerate(opened):
                if candidate.digest == position["digest"]:
                    for older in opened[:index]:
                        self._retire(older)
                    candidate.skip_to(position["offset"])
                    opened = opened[index:]
                    break
            else:
                if opened:
                    log.warning("log file at the checkpoint is gone (rotated away while the shipper was down); "
                                "resuming at the oldest file left", extra={"log_file": self.base})
        elif start_at_end and opened:
            for older in opened[:-1]:
                self._retire(older)
            opened = opened[-1:]
            last = opened[0]
            if not last.compressed:
                last.offset = last.handle.seek(0, os.SEEK_END)
        self._files.extend(opened)

    def _retire(self, done: _OpenFile) -> None:
        if done.digest is not None:
            self._finished[done.digest] = None
            self._last_done = {"digest": done.digest, "offset": done.offset, "inode": done.inode}
        self._open_inodes.discard(done.inode)
        done.close()

    def discover(self) -> None:
        """Open the live file if it is new (Docker rotated); called often, also while read() waits."""
        if self._closed:
            return
        try:
            inode = os.stat(self.base).st_ino
        except FileNotFoundError:
            return
        if inode in self._open_inodes:
            return
        with self._lock:
            self._files.extend(self._open_chain())

    @property
    def position(self) -> dict | None:
        """Where a restart resumes: the start of the first message not yet returned."""
        if self._partials:
            first = min(self._partials.values(), key=lambda p: (p.seq, p.offset))
            return {"digest": first.digest, "offset": first.offset}
        if not self._files:
            return dict(self._last_done) if self._last_done else None
        current = self._files[0]
        digest = current.digest
        if digest is None:  # nothing whole in it yet: everything before it is done
            return dict(self._last_done) if self._last_done else None
        return {"digest": digest, "offset": current.offset - len(self._leftover), "inode": current.inode}

    # ------------------------------------------------------------ reading

    def read(self, max_lines: int, max_bytes: int = 8 << 20, fast: ContainerDocuments | None = None) -> list[Line]:
        """Whole messages available now: about `max_lines` or `max_bytes` of file at most.

        With `fast`, the whole lines it can render become documents there; only the others are returned.
        """
        self.discover()
        out: list[Line] = []
        consumed = 0
        while self._files and len(out) + (len(fast) if fast is not None else 0) < max_lines and consumed < max_bytes:
            current = self._files[0]
            try:
                chunk = current.read(READ_SIZE)
            except BROKEN_GZIP as exc:  # a damaged rotation: what it still held is lost, say so and go on
                log.warning("compressed log file ends early or is damaged; going on with the next one",
                            extra={"log_file": current.path, "error": str(exc)})
                chunk = b""
            if chunk:
                consumed += len(chunk)
                self._consume(current, chunk, out, fast)
                continue
            with self._lock:
                newer = len(self._files) > 1
            if not newer:
                break
            # A newer file exists, so Docker will not write here again.
            if self._leftover:
                log.warning("rotated log file ends inside an entry; shipping the rest as malformed",
                            extra={"log_file": current.path})
                out.append(self._malformed(current, current.offset - len(self._leftover), self._leftover))
                self._leftover = b""
            with self._lock:
                self._files.popleft()
                self._retire(current)
        return out

    def _malformed(self, current: _OpenFile, offset: int, raw: bytes) -> Line:
        text = raw[:self.max_message_length].decode("utf-8", "replace")
        return Line(offset, current.seq, "", "unknown", text, False, True)

    def _consume(self, current: _OpenFile, chunk: bytes, out: list[Line], fast: ContainerDocuments | None) -> None:
        start = current.offset - len(self._leftover)
        data = self._leftover + chunk if self._leftover else chunk
        current.offset += len(chunk)
        done = self._consume_chunk(current, data, start, out, fast) if fast is not None else 0
        self._consume_frames(current, data, done, start, out)

    def _consume_chunk(self, current: _OpenFile, data: bytes, start: int, out: list[Line],
                       fast: ContainerDocuments) -> int:
        """The sound whole frames at the head of `data` (file offset `start`): whole lines decoded into lists
        and handed to `fast` together, other entries one by one. Returns where the careful loop goes on."""
        starts, cut = _frame_starts(data)
        if not starts:
            return 0
        ends = starts[1:]
        ends.append(cut)
        fields = list(map(data.__getitem__, map(slice, map(add, starts, repeat(4)), map(sub, ends, repeat(4)))))
        heads = list(map(_FIELDS_START, fields))
        lengths = list(map(min, map(len, fields), repeat(_LAST_LENGTH)))
        whole = _whole_flags(fields, heads, lengths)
        if whole is not None:
            for frame, is_whole in zip(starts, whole, strict=True):
                if not is_whole:
                    self._entry(current, start + frame, data, frame + 4, frame + 4 + _LENGTH.unpack_from(data, frame)[0],
                                out)
            fields, heads = list(compress(fields, whole)), list(compress(heads, whole))
            starts, lengths = list(compress(starts, whole)), list(compress(lengths, whole))
        if fields:
            lines = WholeLines(list(map(add, starts, repeat(start))), list(map(_STREAM_OF.__getitem__, heads)),
                               _stamps(fields), list(map(bytes.__getitem__, fields, map(_LINE_FROM.__getitem__, lengths))))
            for index in fast.render_whole(lines, self.max_message_length):
                out.append(self._full_path_line(current, lines, index))
        return cut

    def _full_path_line(self, current: _OpenFile, lines: WholeLines, index: int) -> Line:
        limit = self.max_message_length
        text = lines.messages[index].decode("utf-8", "replace")
        truncated = len(text) > limit
        return Line(lines.offsets[index], current.seq, lines.times[index].decode(), lines.streams[index].decode(),
                    text[:limit] if truncated else text, truncated, False)

    def _consume_frames(self, current: _OpenFile, data: bytes, i: int, start: int, out: list[Line]) -> None:
        """Frame by frame from `data[i:]`: the careful loop (corrupt frames, and without the fast path)."""
        end = len(data)
        limit = self.max_message_length
        unpack = _LENGTH.unpack_from
        while end - i >= 4:
            (length,) = unpack(data, i)
            if length > MAX_ENTRY:
                self._corrupt(current, start + i, data[i:], out)
                return
            stop = i + 4 + length
            if stop + 4 > end:
                break  # the rest of this entry is not written (or read) yet
            if unpack(data, stop)[0] != length:
                self._corrupt(current, start + i, data[i:], out)
                return
            whole = _whole_line(data, i + 4, stop)
            if whole is not None:  # the common case, without building a LogEntry
                source, stamp, raw = whole
                text = raw.decode("utf-8", "replace")
                truncated = len(text) > limit
                out.append(Line(start + i, current.seq, stamp, source, text[:limit] if truncated else text,
                                truncated, False))
            else:
                self._entry(current, start + i, data, i + 4, stop, out)
            i = stop + 4
        self._leftover = data[i:]

    def _entry(self, current: _OpenFile, offset: int, data: bytes, begin: int, stop: int, out: list[Line]) -> None:
        """One entry `data[begin:stop]` of any layout (at file offset `offset`): a line, part of one, or malformed."""
        try:
            entry = decode_entry(data[begin:stop])
        except MalformedEntry:
            out.append(self._malformed(current, offset, data[begin:stop]))
            return
        if entry.partial:
            self._add_partial(current, offset, entry, out)
            return
        limit = self.max_message_length
        text = entry.line.decode("utf-8", "replace")
        truncated = len(text) > limit
        out.append(Line(offset, current.seq, rfc3339_nano(entry.time_nano), entry.source,
                        text[:limit] if truncated else text, truncated, False))

    def _add_partial(self, current: _OpenFile, offset: int, entry: LogEntry, out: list[Line]) -> None:
        key = entry.partial_id or entry.source
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = _Partial(current.seq, current.digest, offset,
                                                     rfc3339_nano(entry.time_nano), entry.source, [], 0)
        if partial.length <= self.max_message_length:
            partial.parts.append(entry.line)
        partial.length += len(entry.line)
        if entry.partial_last:
            del self._partials[key]
            out.append(self._whole(partial))

    def _whole(self, partial: _Partial) -> Line:
        limit = self.max_message_length
        text = b"".join(partial.parts).decode("utf-8", "replace")
        truncated = len(text) > limit
        return Line(partial.offset, partial.seq, partial.time, partial.stream,
                    text[:limit] if truncated else text, truncated, False)

    def _corrupt(self, current: _OpenFile, offset: int, rest: bytes, out: list[Line]) -> None:
        """Frame lengths that cannot be right: nothing after them can be trusted; ship the rest as malformed."""
        log.warning("local log file is corrupt (frame lengths disagree); shipping the rest of it as one malformed "
                    "line", extra={"log_file": current.path, "offset": offset})
        while chunk := current.read(READ_SIZE):
            current.offset += len(chunk)
            if len(rest) <= self.max_message_length:
                rest += chunk
        out.append(self._malformed(current, offset, rest))
        self._leftover = b""

    def flush(self) -> list[Line]:
        """The split messages Docker never finished (a last line without a newline, then exit)."""
        out = [self._whole(partial) for partial in sorted(self._partials.values(), key=lambda p: (p.seq, p.offset))]
        self._partials.clear()
        return out

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for opened in self._files:
                opened.close()
            self._files.clear()

    def __iter__(self) -> Iterator[Line]:  # convenience for tests and tools
        while batch := self.read(10_000):
            yield from batch
