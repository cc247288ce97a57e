"""The json-file fast path: documents for whole chunks of log lines, no per-line objects.

A line that no log rule could flag needs nothing but splicing: its json-file entry
`{"log":"<text>\\n","stream":"<s>","time":"<t>"}` already holds the message escaped
as JSON, and the document differs from line to line only in the timestamp, the
message, the stream and the offset. So each container gets its document rendered
once, by the same writer as every other event, with markers where those four go,
and cut at the markers into a template (re-rendered when the container's metadata
changes). A line is then one `%` on bytes and one hash.

Everything else takes the full path (`Line` -> `Event` -> rules -> writer): lines
the rules' prefilter flags (see shipper/detect/prefilter.py), partial (16 KiB) and
malformed entries, `attrs`, over-long lines, and messages whose JSON escaping
differs from what the writer would produce (Docker writes `\\u00XX` for control
characters and `<>&`, orjson does not), which are re-encoded one by one instead.
tests/unit/test_fastpath.py proves both paths give the same bytes.

The local driver's reader (shipper/sources/localfile.py) hands over a chunk's whole lines
as parallel lists (offsets, streams, times, raw messages) without an object per line:
`render_whole` puts each one no rule could flag into the same template (rendered with
`shipper.log.driver: local`); a chunk of printable ASCII goes as it is, any other has
its messages decoded and escaped by orjson as the writer would.
"""

from __future__ import annotations

import binascii
import re
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import accumulate, compress, repeat
from operator import add, itemgetter, methodcaller
from typing import TYPE_CHECKING, Any

import orjson

from ..containers import ContainerMeta
from ..document import DocumentWriter
from ..ecs import relocate
from ..model import Event, LineIds, line_digest

if TYPE_CHECKING:
    from .localfile import WholeLines

# One whole json-file entry as Docker writes it (no attrs), or any other line. The log
# string ends at the first `","stream":"`: inside it every quote is escaped.
ENTRY = re.compile(
    rb'\{"log":"([^"\\\n]*(?:\\[^\n][^"\\\n]*)*)\\n","stream":"(stdout|stderr)","time":"([0-9TZ:.+-]+)"\}\n'
    rb'|([^\n]*)\n'
)
ENTRY_OVERHEAD = len(b'{"log":"\\n","stream":"","time":""}\n')
URLSAFE = bytes.maketrans(b"+/", b"-_")

Prefilter = Any  # detect.prefilter.LogPrefilter: lowered bytes -> positions of possible rule hits
CurrentPrefilter = Callable[[], Prefilter | None]  # the one in force now (it follows rule changes)


STREAMS = frozenset({b"stdout", b"stderr"})
DECODE = methodcaller("decode", "utf-8", "replace")
INNER = itemgetter(slice(1, -1))  # a JSON string without its quotes
TIME_CHARACTERS = b"0123456789:.TZ+-"  # a time of only these is written by orjson as it is
# fields of a line split at its quotes: {"log":"<message>","stream":"<stream>","time":"<time>"}
SKELETON = ((1, {b"log"}), (2, {b":"}), (4, {b","}), (5, {b"stream"}), (6, {b":"}), (8, {b","}), (9, {b"time"}),
            (10, {b":"}), (12, {b"}\n{", b"}\n"}))
PLAIN_ASCII = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\') + b"\0"  # NUL: what joins messages
LAST_TWO = itemgetter(slice(-2, None))
ALL_BUT_LAST_TWO = itemgetter(slice(None, -2))
# What a JSON string may hold that orjson would write the same: no quote or control byte,
# valid UTF-8, no escapes but \" \\ \n \r \t (Docker writes \u00XX, orjson \b \f or the character).
# A lone backslash at the end (before the NUL that joins several) means the entry was cut
# at an escaped backslash followed by `n`: not a whole line.
_NOT_PLAIN = re.compile(rb'["\x01-\x1f]|\\[^"\\nrt]|\\$')


def _plain_json_text(raw: bytes) -> bool:
    """True when `raw` (the inside of a JSON string, or several joined by NUL) is what orjson would write."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if _NOT_PLAIN.search(raw) is not None:
        return False
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _encode_like_writer(raw: bytes) -> bytes:
    """The message as orjson writes it, from Docker's escaping of it."""
    return orjson.dumps(orjson.loads(b'"' + raw + b'"'))[1:-1]


def _lines_at(hits: list[int], lengths: Iterable[int]) -> set[int]:
    """Which of the messages of these byte `lengths` (joined by one NUL) hold the byte positions `hits`."""
    ends = list(accumulate(map(add, lengths, repeat(1))))
    return {bisect_right(ends, hit) for hit in hits}


class ContainerDocuments:
    """Documents of one container's log lines, rendered from a template."""

    def __init__(self, writer: DocumentWriter, meta: ContainerMeta | None, container_id: str, path: str,
                 make_event: Callable[..., Event], prefilter: CurrentPrefilter, driver: str = "json-file"):
        self.meta = meta
        self.driver = driver
        self.prefilter = prefilter
        self.ids: list[bytes] = []  # digests until take(): ids are encoded per batch
        self.bodies: list[bytes] = []
        self._key = LineIds(container_id).key  # the id's key, as the full path makes it
        self.template = self._render(writer, container_id, path, make_event, driver)

    @staticmethod
    def _render(writer: DocumentWriter, container_id: str, path: str, make_event: Callable[..., Event],
                driver: str) -> tuple[bytes, ...] | None:
        """The document cut where (time, message, stream, offset) go: five pieces; None when the
        markers do not come out exactly once each (then every line takes the full path)."""
        token = uuid.uuid4().hex
        time_mark, message_mark, stream_mark = f"T{token}", f"M{token}", f"S{token}"
        offset_mark = int("9" + str(int(token[:16], 16))[:17])
        event = make_event(container_id, path, time_mark, stream_mark, message_mark, offset_mark, driver)
        relocate(event.fields)
        pieces = [orjson.dumps(writer.document(event))]
        for mark in (time_mark.encode(), message_mark.encode(), stream_mark.encode(), str(offset_mark).encode()):
            parts = pieces[-1].split(mark)
            if len(parts) != 2:
                return None
            pieces[-1:] = parts
        return tuple(pieces)

    def consume(self, body: bytes, offset: int, limit: int, slow: Callable[[int, bytes], None],
                partial: Callable[[], bool]) -> None:
        """Every whole line of `body` (starting at file offset `offset`): a document here, or `slow(start, raw)`
        (which may leave a partial message open: `partial()`)."""
        prefilter = self.prefilter()
        if self.template is None or (prefilter is not None and prefilter.every_line):
            for raw in body.split(b"\n")[:-1]:
                slow(offset, raw)
                offset += len(raw) + 1
            return
        if not partial() and self._whole_chunk(body, offset, limit, prefilter):
            return
        self._line_by_line(body, offset, limit, prefilter(body.lower()) if prefilter is not None else [], slow, partial)

    def _whole_chunk(self, body: bytes, offset: int, limit: int, prefilter: Prefilter | None) -> bool:
        """The usual chunk, every line a plain json-file entry: the fields cut out of the whole chunk at
        once (at its quotes), documents and ids made by C loops (map/zip). False, having done nothing,
        for any other chunk."""
        if b"\0" in body or b"\x01" in body:
            return False
        quoted = b'\\"' in body
        fields = (body.replace(b'\\"', b"\x01") if quoted else body).split(b'"')
        lines = len(fields) // 12
        if not lines or len(fields) != 12 * lines + 1 or fields[0] != b"{" or fields[-1] != b"}\n":
            return False
        for index, expected in SKELETON:
            if set(fields[index::12]) != expected:
                return False
        messages, streams, times = fields[3::12], fields[7::12], fields[11::12]
        if not set(streams) <= STREAMS or b"".join(times).translate(None, TIME_CHARACTERS):
            return False
        if set(map(LAST_TWO, messages)) != {b"\\n"}:
            return False  # a partial entry
        joined = b"\0".join(map(ALL_BUT_LAST_TWO, messages))
        if quoted:
            joined = joined.replace(b"\x01", b'\\"')
        if joined.translate(None, PLAIN_ASCII) and not _plain_json_text(joined):
            return False
        if prefilter is not None and prefilter(joined.lower()):
            return False  # a line a rule may flag: line by line
        messages = joined.split(b"\0")
        if max(map(len, messages)) > limit:
            return False
        starts = list(accumulate(map(add, map(len, body.split(b"\n")), repeat(1)), initial=offset))[:-2]
        assert self.template is not None  # checked by consume()
        first, second, third, fourth, last = self.template
        self.bodies += map(b"".join, zip(repeat(first), times, repeat(second), messages, repeat(third), streams,
                                         repeat(fourth), map(b"%d".__mod__, starts), repeat(last), strict=False))
        self.ids += map(line_digest, map(self._key.__mod__, zip(times, starts, strict=True)))
        return True

    def _line_by_line(self, body: bytes, offset: int, limit: int, hits: list[int],
                      slow: Callable[[int, bytes], None], partial: Callable[[], bool]) -> None:
        hits.append(len(body))
        next_hit = hits[0]
        hit_index = 0
        start = 0  # position in body
        assert self.template is not None  # checked by consume()
        first, second, third, fourth, last = self.template
        key, ids, bodies = self._key, self.ids, self.bodies
        in_partial = partial()
        for message, stream, time, other in ENTRY.findall(body):
            if stream:
                length = len(message) + len(stream) + len(time) + ENTRY_OVERHEAD
            else:
                length = len(other) + 1
            end = start + length
            if end > next_hit:  # the prefilter saw something in this line
                while hits[hit_index] < end:
                    hit_index += 1
                next_hit = hits[hit_index]
                fast = False
            else:
                fast = stream and not in_partial and len(message) <= limit
            if fast and (b"\0" in message or not _plain_json_text(message)):
                try:
                    message = _encode_like_writer(message)
                except orjson.JSONDecodeError:  # not JSON: the full path calls it malformed
                    fast = False
            if fast:
                bodies.append(b"".join((first, time, second, message, third, stream, fourth,
                                        b"%d" % (offset + start), last)))
                ids.append(line_digest(key % (time, offset + start)))
            else:
                slow(offset + start, body[start:end - 1])
                in_partial = partial()
            start = end

    def render_whole(self, lines: WholeLines, limit: int) -> list[int]:
        """The local driver's whole lines of a chunk (parallel lists): a document for each no rule could flag
        and not over `limit` characters; the indexes of the others are returned, for the full path."""
        prefilter = self.prefilter()
        count = len(lines.messages)
        if self.template is None or not count or (prefilter is not None and prefilter.every_line):
            return list(range(count))
        messages = lines.messages
        joined = b"\0".join(messages)
        plain = (not joined.translate(None, PLAIN_ASCII) and joined.count(b"\0") == count - 1
                 and max(map(len, messages)) <= limit)
        rest: set[int] = set()
        if plain:  # printable ASCII but quote and backslash: the bytes are their own JSON and text
            lengths: Any = map(len, messages)
        else:
            texts = list(map(DECODE, messages))
            rest.update(number for number, text in enumerate(texts) if len(text) > limit)
            encoded = list(map(str.encode, texts))
            joined, lengths = b"\0".join(encoded), map(len, encoded)
        if prefilter is not None:
            hits = prefilter(joined.lower())
            if hits:
                rest |= _lines_at(hits, lengths)
        keep = [number not in rest for number in range(count)] if rest else None
        if not plain:
            messages = list(map(INNER, map(orjson.dumps, texts)))
        times, offsets, streams = lines.times, lines.offsets, lines.streams
        if keep is not None:
            times, streams, messages = (list(compress(column, keep)) for column in (times, streams, messages))
            offsets = list(compress(offsets, keep))
        first, second, third, fourth, last = self.template
        self.bodies += map(b"".join, zip(repeat(first), times, repeat(second), messages, repeat(third), streams,
                                         repeat(fourth), map(b"%d".__mod__, offsets), repeat(last), strict=False))
        self.ids += map(line_digest, map(self._key.__mod__, zip(times, offsets, strict=True)))
        return sorted(rest)

    def take(self) -> tuple[list[bytes], list[bytes]]:
        """The documents so far, as (ids, bodies); then empty."""
        digests, bodies = self.ids, self.bodies
        self.ids, self.bodies = [], []
        if not digests:
            return [], []
        # 15-byte digests make 20 base64 characters each, no padding: one encoding per batch
        encoded = binascii.b2a_base64(b"".join(digests), newline=False).translate(URLSAFE)
        return [encoded[i:i + 20] for i in range(0, len(encoded), 20)], bodies

    def __len__(self) -> int:
        return len(self.bodies)


class JsonFileDocuments:
    """The fast path's shared parts: the writer, the rules' prefilter, and one renderer per container."""

    def __init__(self, writer: DocumentWriter, containers: Callable[[str], Any],
                 prefilter: CurrentPrefilter, make_event: Callable[..., Event]):
        self.writer = writer
        self.containers = containers
        self.prefilter = prefilter
        self.make_event = make_event
        self._by_container: dict[str, ContainerDocuments] = {}

    def for_container(self, container_id: str, path: str, driver: str = "json-file") -> ContainerDocuments:
        """The container's renderer, rendered again if its metadata changed (rename, update, restart)."""
        meta = self.containers(container_id)
        found = self._by_container.get(container_id)
        if found is None or found.meta is not meta or found.driver != driver:
            renewed = ContainerDocuments(self.writer, meta, container_id, path, self.make_event, self.prefilter, driver)
            if found is not None:  # what was rendered before the change keeps its metadata
                renewed.ids, renewed.bodies = found.ids, found.bodies
            found = self._by_container[container_id] = renewed
        return found

    def forget(self, container_id: str) -> None:
        self._by_container.pop(container_id, None)
