"""The `local` log driver reader on files laid out the way Docker 20.10 writes them.

Files the real engine writes are read in tests/integration/test_local_driver.py; here the
framing, the protobuf decoding and the rotation are driven step by step.
"""

import gzip
import os
import shutil

import pytest

from shipper.sources.localfile import (
    LIVE_NAME,
    LocalLogChain,
    LogEntry,
    MalformedEntry,
    _frame_starts,
    _stamps,
    _whole_line,
    chain_paths,
    decode_entry,
    encode_entry,
    rfc3339_nano,
)

T0 = 1_795_923_409_068_836_870  # 2026-11-29T03:36:49.068836870Z


def entry(text: str | bytes, stream: str = "stdout", time_nano: int = T0, **partial) -> bytes:
    line = text.encode() if isinstance(text, str) else text
    return encode_entry(LogEntry(stream, time_nano, line, **partial))


def part(text: str, ordinal: int, last: bool = False, pid: str = "p1", stream: str = "stderr") -> bytes:
    return entry(text, stream, partial=True, partial_last=last, partial_id=pid, partial_ordinal=ordinal)


def write(path, *entries: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(entries))


def rotate(directory, max_file: int = 5) -> None:
    """What Docker does at max-size with compress on: shift the .gz files, rename, gzip .1."""
    base = os.path.join(directory, LIVE_NAME)
    for n in range(max_file - 1, 1, -1):
        if os.path.exists(f"{base}.{n - 1}.gz"):
            os.replace(f"{base}.{n - 1}.gz", f"{base}.{n}.gz")
    os.rename(base, f"{base}.1")
    open(base, "wb").close()
    with open(f"{base}.1", "rb") as source, gzip.open(f"{base}.1.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    os.unlink(f"{base}.1")


def texts(lines):
    return [line.text for line in lines]


# ------------------------------------------------------------------ decoding


def test_what_the_engine_wrote_decodes_field_by_field():
    # one entry of a container.log.2.gz written by Engine 20.10.24 (`--log-driver local`)
    framed = bytes.fromhex("0000001c0a067374646f757410e9d49ec9b4da99f6181a086c696e652d3833380000001c")
    got = decode_entry(framed[4:-4])
    assert got == LogEntry("stdout", 1_795_923_409_065_454_185, b"line-838")
    assert rfc3339_nano(got.time_nano) == "2026-11-29T03:36:49.065454185Z"
    assert _whole_line(framed, 4, len(framed) - 4) == ("stdout", "2026-11-29T03:36:49.065454185Z", b"line-838")
    assert encode_entry(got) == framed


@pytest.mark.parametrize("value", [
    LogEntry("stdout", T0, b"plain"),
    LogEntry("stderr", 0, b""),
    LogEntry("stdout", -1_000_000_001, b"before 1970"),
    LogEntry("stderr", T0, b"\xff\xfe \x00 binary", True, False, "abc", 1),
    LogEntry("stderr", T0, b"x" * 16384, True, True, "f" * 64, 2_000_000),
    LogEntry("custom", 2**63 - 1, "ünïcødé".encode()),
])
def test_encode_then_decode_gives_the_entry_back(value):
    framed = encode_entry(value)
    assert int.from_bytes(framed[:4], "big") == int.from_bytes(framed[-4:], "big") == len(framed) - 8
    assert decode_entry(framed[4:-4]) == value


def test_the_fast_path_agrees_with_the_decoder_or_declines():
    for value in (LogEntry("stdout", T0, b"a"), LogEntry("stderr", T0 + 999, b"y" * 300),
                  LogEntry("stdout", 5, b"short varint time"), LogEntry("stdout", T0, b""),
                  LogEntry("stderr", T0, b"p", True, False, "id", 1), LogEntry("other", T0, b"o")):
        body = encode_entry(value)[4:-4]
        fast = _whole_line(body, 0, len(body))
        if fast is not None:
            assert fast == (value.source, rfc3339_nano(value.time_nano), value.line)
        else:
            assert value.partial or value.source == "other" or not value.line or value.time_nano < 2**56


def test_unknown_fields_are_skipped_as_protobuf_does():
    body = encode_entry(LogEntry("stdout", T0, b"kept"))[4:-4]
    extra = bytes([0x30, 0x96, 0x01]) + bytes([0x39]) + b"\x00" * 8 + bytes([0x45]) + b"\x00" * 4 + bytes([0x52, 2]) + b"ab"
    assert decode_entry(body + extra) == LogEntry("stdout", T0, b"kept")


@pytest.mark.parametrize("broken", [b"\x0a\x10std", b"\x10\xff\xff", b"\x0b\x00", b"\x39\x00\x00"])
def test_broken_entries_raise_malformed(broken):
    with pytest.raises(MalformedEntry):
        decode_entry(broken)


def test_timestamps_are_fixed_width_like_json_file():
    assert rfc3339_nano(T0) == "2026-11-29T03:36:49.068836870Z"
    assert rfc3339_nano(T0 - T0 % 1_000_000_000) == "2026-11-29T03:36:49.000000000Z"


# ------------------------------------------------------------------ the chain


def test_whole_lines_with_offsets_and_streams(tmp_path):
    write(tmp_path / LIVE_NAME, entry("one"), entry("two", "stderr", T0 + 1))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    lines = chain.read(100)
    assert texts(lines) == ["one", "two"]
    assert [line.stream for line in lines] == ["stdout", "stderr"]
    assert [line.time for line in lines] == [rfc3339_nano(T0), rfc3339_nano(T0 + 1)]
    assert [line.offset for line in lines] == [0, len(entry("one"))]
    assert chain.position["offset"] == os.path.getsize(tmp_path / LIVE_NAME)


def test_invalid_utf8_becomes_replacement_characters(tmp_path):
    write(tmp_path / LIVE_NAME, entry(b"bin-1 \xff\xfe \x01\x02\x1b[31m \x00 end"))
    [line] = LocalLogChain(str(tmp_path), max_message_length=100).read(10)
    assert line.text == "bin-1 \ufffd\ufffd \x01\x02\x1b[31m \x00 end"


def test_split_messages_are_reassembled_even_when_another_stream_interleaves(tmp_path):
    live = tmp_path / LIVE_NAME
    write(live, entry("first"), part("a" * 10, 1), entry("between"))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert texts(chain.read(100)) == ["first", "between"]
    assert chain.position["offset"] == len(entry("first"))  # never inside the split message
    write(live, part("b" * 10, 2), part("c", 3, last=True))
    [whole] = chain.read(100)
    assert (whole.text, whole.stream, whole.offset) == ("a" * 10 + "b" * 10 + "c", "stderr", len(entry("first")))
    assert chain.position["offset"] == os.path.getsize(live)


def test_long_messages_are_truncated_and_flagged(tmp_path):
    write(tmp_path / LIVE_NAME, entry("x" * 30), part("y" * 8, 1), part("y" * 8, 2), part("y" * 8, 3, True),
          entry("ok"))
    lines = LocalLogChain(str(tmp_path), max_message_length=10).read(100)
    assert [(line.text, line.truncated) for line in lines] == [("x" * 10, True), ("y" * 10, True), ("ok", False)]


def test_a_torn_last_entry_waits_for_the_rest(tmp_path):
    whole = entry("torn")
    write(tmp_path / LIVE_NAME, whole[:9])
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert chain.read(100) == []
    write(tmp_path / LIVE_NAME, whole[9:])
    assert texts(chain.read(100)) == ["torn"]


def test_an_unfinished_split_message_is_flushed_when_asked(tmp_path):
    # Engine 20.10 writes a last line without a newline as a partial entry that is never `last`.
    write(tmp_path / LIVE_NAME, entry("done"), part("noeol", 1, pid="q", stream="stdout"))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert texts(chain.read(100)) == ["done"]
    assert texts(chain.flush()) == ["noeol"]
    assert chain.position["offset"] == os.path.getsize(tmp_path / LIVE_NAME)


def test_chain_paths_prefer_the_uncompressed_copy_while_docker_gzips_it(tmp_path):
    for name in (LIVE_NAME, f"{LIVE_NAME}.1", f"{LIVE_NAME}.1.gz", f"{LIVE_NAME}.2.gz", f"{LIVE_NAME}.10.gz", "other"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in chain_paths(str(tmp_path))] == [
        f"{LIVE_NAME}.10.gz", f"{LIVE_NAME}.2.gz", f"{LIVE_NAME}.1", LIVE_NAME]


def test_rotation_and_compression_are_followed_without_loss_or_repeat(tmp_path):
    live = tmp_path / LIVE_NAME
    write(live, entry("1", time_nano=T0 + 1), entry("2", time_nano=T0 + 2))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert texts(chain.read(100)) == ["1", "2"]
    write(live, entry("3", time_nano=T0 + 3), part("s" * 5, 1, pid="s"))
    rotate(tmp_path)  # the held file is renamed, copied into .1.gz, and deleted
    write(live, part("t" * 5, 2, last=True, pid="s"), entry("4", time_nano=T0 + 4))
    chain.discover()
    rotate(tmp_path)
    write(live, entry("5", time_nano=T0 + 5))
    rotate(tmp_path)  # a file we never opened exists only compressed now
    write(live, entry("6", time_nano=T0 + 6))
    got = []
    while batch := chain.read(100):
        got += texts(batch)
    assert got == ["3", "s" * 5 + "t" * 5, "4", "5", "6"]


def test_restart_resumes_at_the_checkpoint_after_its_file_was_compressed(tmp_path):
    live = tmp_path / LIVE_NAME
    write(live, entry("1", time_nano=T0 + 1), entry("2", time_nano=T0 + 2))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert texts(chain.read(100)) == ["1", "2"]
    position = chain.position
    chain.close()
    write(live, entry("3", time_nano=T0 + 3))
    rotate(tmp_path)
    write(live, entry("4", time_nano=T0 + 4))
    rotate(tmp_path)
    write(live, entry("5", time_nano=T0 + 5))
    resumed = LocalLogChain(str(tmp_path), max_message_length=100, position=position)
    assert texts(resumed) == ["3", "4", "5"]
    again = LocalLogChain(str(tmp_path), max_message_length=100, position=resumed.position)
    assert texts(again) == []


def test_restart_inside_a_split_message_reads_it_whole(tmp_path):
    live = tmp_path / LIVE_NAME
    write(live, entry("before"), part("a", 1))
    chain = LocalLogChain(str(tmp_path), max_message_length=100)
    assert texts(chain.read(100)) == ["before"]
    position = chain.position
    write(live, part("b", 2, last=True))
    rotate(tmp_path)
    resumed = LocalLogChain(str(tmp_path), max_message_length=100, position=position)
    assert texts(resumed) == ["ab"]


def test_a_checkpoint_whose_files_are_all_gone_resumes_at_the_oldest_left(tmp_path, caplog):
    live = tmp_path / LIVE_NAME
    write(live, entry("old", time_nano=T0))
    position = LocalLogChain(str(tmp_path), max_message_length=100).position
    os.unlink(live)
    write(live, entry("new", time_nano=T0 + 9))
    assert texts(LocalLogChain(str(tmp_path), max_message_length=100, position=position)) == ["new"]
    assert "checkpoint is gone" in caplog.text


def test_start_at_end_skips_history(tmp_path):
    live = tmp_path / LIVE_NAME
    write(live, entry("old"))
    rotate(tmp_path)
    write(live, entry("older news", time_nano=T0 + 1))
    chain = LocalLogChain(str(tmp_path), max_message_length=100, start_at_end=True)
    assert chain.read(100) == []
    write(live, entry("fresh", time_nano=T0 + 2))
    assert texts(chain.read(100)) == ["fresh"]


def test_corrupt_frames_are_shipped_as_malformed_not_lost(tmp_path, caplog):
    good = entry("good")
    bad = bytearray(entry("bad one"))
    bad[-1] ^= 0xFF  # trailing length disagrees with the leading one
    write(tmp_path / LIVE_NAME, good, bytes(bad))
    lines = LocalLogChain(str(tmp_path), max_message_length=100).read(100)
    assert texts(lines[:1]) == ["good"]
    assert lines[1].malformed and "bad one" in lines[1].text
    assert "corrupt" in caplog.text


def test_a_damaged_compressed_rotation_is_reported_and_the_rest_still_read(tmp_path, caplog):
    live = tmp_path / LIVE_NAME
    write(live, *(entry(f"kept-{i} " + "z" * (i % 97), time_nano=T0 + i) for i in range(2000)))
    rotate(tmp_path)
    damaged = tmp_path / f"{LIVE_NAME}.1.gz"
    damaged.write_bytes(damaged.read_bytes()[:-12])  # cut inside the deflate stream and its trailer
    write(live, entry("after", time_nano=T0 + 5000))
    got = texts(LocalLogChain(str(tmp_path), max_message_length=1000))
    assert got[0] == "kept-0 " and got[-1] == "after" and len(got) > 1000  # what came before the damage
    assert "damaged" in caplog.text


# ------------------------------------------------------------------ whole chunks


def test_chunk_times_equal_rfc3339_nano_also_where_the_low_bytes_carry_into_the_next_second():
    second = 1_795_923_409 * 1_000_000_000
    times = [second + delta for delta in range(-3_000_000, 3_000_000, 997)]
    times += [second - 1, second, second + 1, 1 << 56, (1 << 63) - 1]  # the first and last 9-byte varints (1972, 2262)
    fields = [entry("x", time_nano=t)[4:-4] for t in times]
    assert _stamps(fields) == [rfc3339_nano(t).encode() for t in times]


def test_frame_walk_stops_at_an_unfinished_or_unsound_frame():
    whole = entry("one") + entry("two")
    assert _frame_starts(whole) == ([0, len(entry("one"))], len(whole))
    assert _frame_starts(whole + entry("three")[:-1]) == ([0, len(entry("one"))], len(whole))
    bad = bytearray(whole)
    bad[len(entry("one")) - 1] ^= 1  # the first frame's closing length disagrees
    assert _frame_starts(bytes(bad)) == ([], 0)
    assert _frame_starts(b"\xff\xff\xff\xff" + whole) == ([], 0)
    assert _frame_starts(b"\x00\x00") == ([], 0)
