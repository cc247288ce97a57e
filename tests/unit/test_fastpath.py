"""The json-file fast path gives the same documents, byte for byte, and the same verdicts as the full path.

The corpus is written the way Docker's json-file driver writes (its escaping: `\\u00XX` for
control bytes and `<>&`, U+FFFD for invalid UTF-8, messages split into 16 KiB entries),
plus entries Docker would not write (malformed JSON, attrs, a `log` that is a number).
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from pathlib import Path

import pytest

from shipper.containers import ContainerMeta
from shipper.detect.engine import RulesEngine
from shipper.detect.prefilter import LogPrefilter
from shipper.detect.sigma import load_rules
from shipper.document import DocumentWriter
from shipper.ecs import relocate
from shipper.model import LineIds
from shipper.sources import docker_logs, jsonfile, localfile
from shipper.sources.docker_logs import _line_event, template_event
from shipper.sources.fastpath import JsonFileDocuments
from shipper.sources.localfile import LogEntry, encode_entry

CONTAINER = "c0ffee" * 10 + "abcd"
PARTIAL = 16 * 1024
LIMIT = 1000
SIGMAHQ = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "sigmahq" / "rules" / "linux"


def docker_escape(message: bytes) -> bytes:
    """A message as the json-file driver escapes it inside the JSON string."""
    out = []
    for char in message.decode("utf-8", "replace"):
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or char in "<>&" or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out).encode()


def entries(message: bytes, stream: str, second: int) -> list[bytes]:
    """json-file entries for one message: split at 16 KiB as Docker does, the last one ending in a newline."""
    stamp = f"2026-11-29T04:{second // 60 % 60:02d}:{second % 60:02d}.{second * 7919 % 10**9:09d}".rstrip("0") + "Z"
    parts = [message[i:i + PARTIAL] for i in range(0, len(message), PARTIAL)] or [b""]
    out = []
    for number, part in enumerate(parts):
        text = docker_escape(part) + (b"\\n" if number == len(parts) - 1 else b"")
        out.append(b'{"log":"%s","stream":"%s","time":"%s"}' % (text, stream.encode(), stamp.encode()))
    return out


CORPUS_MESSAGES = [
    b"plain line one",
    b"connecting to stratum+tcp://pool.example.org:3333 as worker",
    b"STARTING NMAP 7.94 ( https://nmap.org )",
    "\u017ftarting nmap with a long s that casefolds to s".encode(),
    b"xmRig 6.21 started",
    b"zmap is not zma p",
    b"invalid utf-8 \xff\xfe\xc3 here",
    b"nul \x00 byte and \x01\x02 controls",
    b"esc \x1b[31mred\x1b[0m bell \x07 tab \t del \x7f cr \r",
    b"<script>alert('x')</script> & more",
    b'quotes "inside" and back\\slash \\\\ and \\u0041 not an escape',
    "line separator \u2028 paragraph \u2029 ok".encode(),
    "unicode caf\u00e9 \u65e5\u672c \U0001f600".encode(),
    b"x" * (LIMIT - 1),
    b"x" * LIMIT,
    b"y" * (LIMIT + 1),
    "\u00e9".encode() * 600,  # 600 characters in 1,200 bytes: not truncated
    b"z" * 40_000,  # three entries of 16 KiB
    b"q" * 20_000 + b" Starting masscan " + b"q" * 20_000,  # a rule hit in a split message
    b"",
    b"the end",
]
MALFORMED = [
    b'{"log":"broken entry',
    b"not json at all",
    b'{"log":123,"stream":"stdout","time":"2026-11-29T04:00:00Z"}',
    b'{"log":"with attrs\\n","stream":"stdout","attrs":{"tag":"web"},"time":"2026-11-29T04:00:01.5Z"}',
    b'{"log":"no newline at the end but whole","stream":"stdout","time":"2026-11-29T04:00:02Z"}',
    b'{"log":"cut after an escaped backslash \\\\n","stream":"stdout","time":"2026-11-29T04:00:02.1Z"}',
    b'{"log":"the rest\\n","stream":"stdout","time":"2026-11-29T04:00:02.2Z"}',
    b'{"log":"raw control \x01 byte\\n","stream":"stdout","time":"2026-11-29T04:00:03Z"}',
    b'{"log":"raw invalid \xff utf-8\\n","stream":"stderr","time":"2026-11-29T04:00:04Z"}',
    b'{"log":"raw nul \x00 byte\\n","stream":"stderr","time":"2026-11-29T04:00:04.5Z"}',
    b'{"log":"other escapes \\/ \\b \\f \\u00e9 \\ud83d\\ude00\\n","stream":"stdout","time":"2026-11-29T04:00:05Z"}',
    b'{"log":"bad escape \\x41\\n","stream":"stdout","time":"2026-11-29T04:00:06Z"}',
    b'{"log":"unquoted " quote\\n","stream":"stdout","time":"2026-11-29T04:00:07Z"}',
    b'{"log":"odd stream\\n","stream":"stdin","time":"2026-11-29T04:00:08Z"}',
    b'{"log":"odd time\\n","stream":"stdout","time":"yesterday"}',
    b"",
]


def corpus_pieces(make, odd: list[bytes]) -> list[bytes]:
    """The corpus in order, each message as `make(message, stream, number)` pieces, `odd` entries between."""
    pieces: list[bytes] = []
    number = 0
    for round_ in range(3):
        for message in CORPUS_MESSAGES:
            for stream in ("stdout", "stderr"):
                number += 1
                pieces += make(message, stream, number)
        if round_ == 1:
            pieces += odd
    for n in range(500):
        number += 1
        text = b'filler line %d "quoted" back\\slash tab\t cr\r' % n if n % 7 == 0 else b"filler line %d with text" % n
        pieces += make(text, "stderr" if n % 3 == 0 else "stdout", number)
        if n % 97 == 0:
            pieces += odd[n // 97 % len(odd):][:1]
    return pieces


def corpus() -> bytes:
    return b"\n".join(corpus_pieces(entries, MALFORMED)) + b"\n"


@pytest.fixture()
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / f"{CONTAINER}-json.log"
    path.write_bytes(corpus())
    return path


def meta() -> ContainerMeta:
    return ContainerMeta.from_inspect({
        "Id": CONTAINER, "Name": "/web-1", "Image": "sha256:abc",
        "Config": {"Image": "registry.example/web:1.2", "Labels": {"app": "web", "app.kubernetes.io/name": "w"},
                   "User": ""},
        "HostConfig": {"Privileged": False}, "RestartCount": 0,
    })


def read_all(path: Path, engine: RulesEngine, writer: DocumentWriter, fast: JsonFileDocuments | None):
    """{id: bulk line}, the ids with verdicts, and the chain's position: what the pipeline would send."""
    chain = jsonfile.JsonFileChain(str(path), max_message_length=LIMIT)
    ids = LineIds(CONTAINER)
    sent: dict[bytes, bytes] = {}
    alerts: set[bytes] = set()
    rendered = 0
    while True:
        docs = fast.for_container(CONTAINER, str(path)) if fast else None
        lines = chain.read(300, fast=docs)
        fast_ids, bodies = docs.take() if docs else ([], [])
        if not lines and not bodies:
            break
        rendered += len(bodies)
        for doc_id, body in zip(fast_ids, bodies, strict=True):
            sent[doc_id] = body
        for line in lines:
            event = _line_event(CONTAINER, ids, str(path), line, "json-file")
            relocate(event.fields)
            event = engine.judge(event)
            encoded = writer.encode([event])
            doc_id = encoded.ids[0]
            sent[doc_id] = encoded.bodies[0]
            if event.verdicts:
                alerts.add(doc_id)
    return sent, alerts, chain.position, rendered


def engine_and_writer(paths=()):
    container = meta()
    lookup = {CONTAINER: container}.get
    engine = RulesEngine.from_paths(list(paths), lookup)
    return engine, DocumentWriter("default", lookup)


@pytest.mark.parametrize("read_size", [1 << 20, 4096, 333])
def test_fast_and_full_path_give_the_same_documents_and_verdicts(log_file, monkeypatch, read_size):
    monkeypatch.setattr(jsonfile, "READ_SIZE", read_size)
    monkeypatch.setattr(docker_logs, "_now", lambda: "2026-11-29T04:00:00.000000000Z")  # malformed lines' time
    engine, writer = engine_and_writer()
    full, full_alerts, full_position, _ = read_all(log_file, engine, writer, None)
    documents = JsonFileDocuments(writer, {CONTAINER: meta()}.get, lambda: engine.log_prefilter, template_event)
    fast, fast_alerts, fast_position, rendered = read_all(log_file, engine, writer, documents)

    assert rendered > 500, "the fast path rendered (almost) nothing"
    assert len(full_alerts) >= 8, "the corpus should hit the log rules"
    assert fast_alerts == full_alerts
    assert fast.keys() == full.keys()
    different = [doc_id for doc_id in full if fast[doc_id] != full[doc_id]]
    assert not different, (full[different[0]], fast[different[0]])
    assert fast_position == full_position


def test_a_rule_enabled_while_running_is_in_the_prefilter_at_once(log_file, monkeypatch):
    monkeypatch.setattr(jsonfile, "READ_SIZE", 4096)
    monkeypatch.setattr(docker_logs, "_now", lambda: "2026-11-29T04:00:00.000000000Z")
    rules, problems = load_rules([Path(jsonfile.__file__).resolve().parents[1] / "rules" / "log_crypto_miner.yml"])
    assert not problems
    lookup = {CONTAINER: meta()}.get
    engine, writer = RulesEngine([], lookup), DocumentWriter("default", lookup)
    documents = JsonFileDocuments(writer, lookup, lambda: engine.log_prefilter, template_event)
    _, alerts, _, _ = read_all(log_file, engine, writer, documents)
    assert not alerts
    assert engine.enable_rule(rules[0])
    _, alerts, _, _ = read_all(log_file, engine, writer, documents)
    full_engine = RulesEngine(rules, lookup)
    _, full_alerts, _, _ = read_all(log_file, full_engine, writer, None)
    assert alerts == full_alerts and len(alerts) >= 3


def test_prefilter_flags_every_line_a_rule_matches():
    rules, problems = load_rules([Path(jsonfile.__file__).resolve().parents[1] / "rules"])
    assert not problems
    engine = RulesEngine(rules)
    prefilter = engine.log_prefilter
    assert not prefilter.every_line and prefilter.literals
    for text in ("xmrig", "SYN Stealth Scan", "\u017ftarting nmap", "NICEHASH"):
        assert prefilter(docker_escape(text.encode()).lower()), text
    assert prefilter(b"an ordinary line") == []


def test_prefilter_reports_a_hit_in_every_line_holding_a_literal_even_where_literals_overlap():
    """The automaton reports non-overlapping leftmost matches: a line whose literal is covered
    by another literal's match must still get a hit of its own (lines joined by NUL, as the
    source joins messages)."""
    rules, _ = load_rules([Path(jsonfile.__file__).resolve().parents[1] / "rules"])
    prefilter = RulesEngine(rules).log_prefilter
    literals = prefilter.literals
    overlapping = next((a, b) for a in literals for b in literals
                       if a != b and any(a.endswith(b[:n]) for n in range(1, len(b))))
    a, b = overlapping
    n = next(n for n in range(len(b) - 1, 0, -1) if a.endswith(b[:n]))
    lines = [a + b[n:], "plain", a, b, "x" + b, "plain again", b + a, a[:-1]]
    joined = "\0".join(lines).encode()
    hits = prefilter(joined)
    ends = list(accumulate(len(line.encode()) + 1 for line in lines))
    flagged = {bisect_right(ends, hit) for hit in hits}
    expected = {i for i, line in enumerate(lines) if any(lit in line for lit in literals)}
    assert flagged == expected and {0, 2, 3, 4, 6} <= expected

def test_a_regex_rule_sends_every_line_the_full_path(tmp_path):
    rule = tmp_path / "regex.yml"
    rule.write_text("""title: regex on message
id: 5b1e7a8e-9d4c-4f0e-a1b2-c3d4e5f60718
level: low
logsource: {product: docker, category: container_log}
detection:
  selection: {message|re: 'a[0-9]+b'}
  condition: selection
""")
    rules, problems = load_rules([rule])
    assert not problems
    prefilter = LogPrefilter(rules)
    assert prefilter.every_line and prefilter(b"anything") is None


def test_sigmahq_keyword_rules_keep_a_prefilter():
    if not SIGMAHQ.is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {SIGMAHQ}")
    engine, _ = engine_and_writer([SIGMAHQ])
    prefilter = engine.log_prefilter
    log_rules = list(engine.by_category["container_log"])
    assert len(log_rules) > 2
    assert not prefilter.every_line, prefilter.forcing


# ------------------------------------------------------------------ the local driver

T0 = 1_795_923_409_068_836_870  # 2026-11-29T03:36:49.068836870Z


def local_entries(message: bytes, stream: str, number: int) -> list[bytes]:
    """Frames as the local driver writes one message: split into 16 KiB partial entries, a shared id."""
    stamp = T0 + number * 7_919_000_123
    parts = [message[i:i + PARTIAL] for i in range(0, len(message), PARTIAL)] or [b""]
    if len(parts) == 1:
        return [encode_entry(LogEntry(stream, stamp, message))]
    return [encode_entry(LogEntry(stream, stamp, part, partial=True, partial_last=ordinal == len(parts), partial_id=f"id{number}",
                                  partial_ordinal=ordinal))
            for ordinal, part in enumerate(parts, start=1)]


def odd_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body + len(body).to_bytes(4, "big")


LOCAL_ODD = [
    odd_frame(b"\xff\xff not protobuf"),  # malformed
    odd_frame(b"\x10\x05\x1a\x0bfields swap\x0a\x06stdout"),  # another field order: decode_entry reads it
    odd_frame(b"\x0a\x05stdin\x10\x01\x1a\x0codd stream x"),  # a stream and a time (1970) of another shape
    odd_frame(b"\x0a\x06stdout\x10\x85\x80\x80\x80\x80\x80\x80\x80\x01\x1a\x05extra\x30\x01"),  # an unknown field
    # a partial entry one byte longer than Docker makes them: its fields must not pass for a whole line
    encode_entry(LogEntry("stdout", T0, b"p" * (PARTIAL + 1), partial=True, partial_id="big", partial_ordinal=1)),
    encode_entry(LogEntry("stdout", T0, b" the end of big", partial=True, partial_last=True, partial_id="big",
                          partial_ordinal=2)),
    b"",
]


def local_corpus(corrupt_tail: bool) -> bytes:
    frames = corpus_pieces(local_entries, LOCAL_ODD)
    if corrupt_tail:  # lengths that disagree: the rest of the file is one malformed line
        frames += [b"\x00\x00\x00\x20" + b"frame lengths disagree" * 3, *local_entries(b"after the damage", "stdout", 0)]
    return b"".join(frames)


def read_local(directory: Path, engine: RulesEngine, writer: DocumentWriter, fast: JsonFileDocuments | None):
    """As read_all, for the local driver's reader."""
    chain = localfile.LocalLogChain(str(directory), max_message_length=LIMIT)
    ids = LineIds(CONTAINER)
    sent: dict[bytes, bytes] = {}
    alerts: set[bytes] = set()
    rendered = 0
    while True:
        docs = fast.for_container(CONTAINER, chain.base, "local") if fast else None
        lines = chain.read(300, fast=docs)
        fast_ids, bodies = docs.take() if docs else ([], [])
        if not lines and not bodies:
            break
        rendered += len(bodies)
        sent.update(zip(fast_ids, bodies, strict=True))
        for line in lines:
            event = _line_event(CONTAINER, ids, chain.base, line, "local")
            relocate(event.fields)
            event = engine.judge(event)
            encoded = writer.encode([event])
            sent[encoded.ids[0]] = encoded.bodies[0]
            if event.verdicts:
                alerts.add(encoded.ids[0])
    return sent, alerts, chain.position, rendered


@pytest.mark.parametrize("corrupt_tail", [False, True])
@pytest.mark.parametrize("read_size", [1 << 20, 4096, 333])
def test_local_chunks_rendered_by_the_fast_path_equal_the_full_path(tmp_path, monkeypatch, read_size, corrupt_tail):
    monkeypatch.setattr(localfile, "READ_SIZE", read_size)
    monkeypatch.setattr(docker_logs, "_now", lambda: "2026-11-29T04:00:00.000000000Z")  # malformed lines' time
    directory = tmp_path / "local-logs"
    directory.mkdir()
    (directory / localfile.LIVE_NAME).write_bytes(local_corpus(corrupt_tail))
    engine, writer = engine_and_writer()
    full, full_alerts, full_position, _ = read_local(directory, engine, writer, None)
    documents = JsonFileDocuments(writer, {CONTAINER: meta()}.get, lambda: engine.log_prefilter, template_event)
    fast, fast_alerts, fast_position, rendered = read_local(directory, engine, writer, documents)

    assert rendered > 500, "the fast path rendered (almost) nothing"
    assert len(full_alerts) >= 8, "the corpus should hit the log rules"
    assert fast_alerts == full_alerts
    assert fast.keys() == full.keys()
    different = [doc_id for doc_id in full if fast[doc_id] != full[doc_id]]
    assert not different, (full[different[0]], fast[different[0]])
    assert fast_position == full_position
    some = next(iter(fast.values()))
    assert b'"driver":"local"' in some
    assert documents.for_container(CONTAINER, "x", "local") is not documents.for_container(CONTAINER, "x", "json-file")


def test_local_chunk_of_plain_ascii_and_of_other_text_render_alike():
    """A chunk of printable ASCII is spliced as it is; one NUL, quote or non-ASCII byte sends the chunk through orjson."""
    engine, writer = engine_and_writer()
    documents = JsonFileDocuments(writer, {CONTAINER: meta()}.get, lambda: engine.log_prefilter, template_event)
    path = f"/var/lib/docker/containers/{CONTAINER}/local-logs/container.log"
    plain = [b"plain one", b"plain two"]
    for extra in (b"plain three", b"nul \x00 inside", b'a "quote"', b"caf\xc3\xa9", b"bad \xff utf-8"):
        messages = [*plain, extra]
        lines = localfile.WholeLines([0, 10, 20], [b"stdout", b"stderr", b"stdout"],
                                     [localfile.rfc3339_nano(T0 + n).encode() for n in range(3)], messages)
        renderer = documents.for_container(CONTAINER, path, "local")
        assert renderer.render_whole(lines, LIMIT) == []
        fast_ids, bodies = renderer.take()
        ids = LineIds(CONTAINER)
        for number, message in enumerate(messages):
            line = jsonfile.Line(lines.offsets[number], 0, lines.times[number].decode(), lines.streams[number].decode(),
                                 message.decode("utf-8", "replace"), False, False)
            event = _line_event(CONTAINER, ids, path, line, "local")
            relocate(event.fields)
            encoded = writer.encode([event])
            assert (fast_ids[number], bodies[number]) == (encoded.ids[0], encoded.bodies[0])
