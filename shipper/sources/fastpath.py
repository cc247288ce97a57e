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
"""

from __future__ import annotations

import binascii
import hashlib
import re
import uuid
from typing import Any, Callable

import orjson

from ..containers import ContainerMeta
from ..document import DocumentWriter
from ..ecs import relocate
from ..model import Event

# One whole json-file entry as Docker writes it (no attrs), or any other line. The log
# string ends at the first `","stream":"`: inside it every quote is escaped.
ENTRY = re.compile(
    rb'\{"log":"([^"\\\n]*(?:\\[^\n][^"\\\n]*)*)\\n","stream":"(stdout|stderr)","time":"([0-9TZ:.+-]+)"\}\n'
    rb'|([^\n]*)\n'
)
ENTRY_OVERHEAD = len(b'{"log":"\\n","stream":"","time":""}\n')
URLSAFE = bytes.maketrans(b"+/", b"-_")

Prefilter = Callable[[bytes], list[int] | None]  # a chunk -> positions of possible rule hits; None: every line


def _encode_like_writer(raw: bytes) -> bytes:
    """The message as orjson writes it, from Docker's escaping of it."""
    return orjson.dumps(orjson.loads(b'"' + raw + b'"'))[1:-1]


class ContainerDocuments:
    """Documents of one container's log lines, rendered from a template."""

    def __init__(self, writer: DocumentWriter, meta: ContainerMeta | None, container_id: str, path: str,
                 make_event: Callable[..., Event], prefilter: Prefilter | None):
        self.meta = meta
        self.prefilter = prefilter
        self.ids: list[bytes] = []  # digests until take(): ids are encoded per batch
        self.bodies: list[bytes] = []
        self._state = hashlib.blake2b((container_id + "\x1f").encode(), digest_size=15)
        self.templates = self._render(writer, container_id, path, make_event)

    @staticmethod
    def _render(writer: DocumentWriter, container_id: str, path: str, make_event) -> dict[bytes, bytes] | None:
        """stream -> a `%`-template of the document with (time, message, offset) to fill in; None when
        the markers do not come out exactly once (then every line takes the full path)."""
        token = uuid.uuid4().hex
        marks = {"time": f"T{token}", "message": f"M{token}"}
        offset_mark = int("9" + str(int(token[:16], 16))[:17])
        templates = {}
        for stream in ("stdout", "stderr"):
            event = make_event(container_id, path, marks["time"], stream, marks["message"], offset_mark)
            relocate(event.fields)
            doc = orjson.dumps(writer.document(event))
            pieces = [doc.replace(b"%", b"%%")]
            for mark in (marks["time"].encode(), marks["message"].encode(), str(offset_mark).encode()):
                parts = pieces[-1].split(mark)
                if len(parts) != 2:
                    return None
                pieces[-1:] = parts
            templates[stream.encode()] = b"%b".join(pieces[:2]) + b"%b" + pieces[2] + b"%d" + pieces[3]
        return templates

    def consume(self, body: bytes, offset: int, limit: int, slow: Callable[[int, bytes], None],
                partial: Callable[[], bool]) -> None:
        """Every whole line of `body` (starting at file offset `offset`): a document here, or `slow(start, raw)`
        (which may leave a partial message open: `partial()`)."""
        hits = self.prefilter(body.lower()) if self.prefilter is not None else []
        if hits is None or self.templates is None:
            for raw in body.split(b"\n")[:-1]:
                slow(offset, raw)
                offset += len(raw) + 1
            return
        hits.append(len(body))
        next_hit = hits[0]
        hit_index = 0
        start = 0  # position in body
        templates = self.templates
        copy = self._state.copy
        ids, bodies = self.ids, self.bodies
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
            if fast:
                if b"\\u" in message:
                    message = _encode_like_writer(message)
                bodies.append(templates[stream] % (time, message, offset + start))
                state = copy()
                state.update(b"%b\x1f%d" % (time, offset + start))
                ids.append(state.digest())
            else:
                slow(offset + start, body[start:end - 1])
                in_partial = partial()
            start = end

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
                 prefilter: Prefilter | None, make_event: Callable[..., Event]):
        self.writer = writer
        self.containers = containers
        self.prefilter = prefilter
        self.make_event = make_event
        self._by_container: dict[str, ContainerDocuments] = {}

    def for_container(self, container_id: str, path: str) -> ContainerDocuments:
        """The container's renderer, rendered again if its metadata changed (rename, update, restart)."""
        meta = self.containers(container_id)
        found = self._by_container.get(container_id)
        if found is None or found.meta is not meta:
            renewed = ContainerDocuments(self.writer, meta, container_id, path, self.make_event, self.prefilter)
            if found is not None:  # what was rendered before the change keeps its metadata
                renewed.ids, renewed.bodies = found.ids, found.bodies
            found = self._by_container[container_id] = renewed
        return found

    def forget(self, container_id: str) -> None:
        self._by_container.pop(container_id, None)
