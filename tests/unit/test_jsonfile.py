"""The json-file reader on files written the way Docker writes them."""

import os

import orjson

from shipper.sources.jsonfile import JsonFileChain


def entry(text: str, stream: str = "stdout", time: str = "2026-11-28T00:00:00.000000001Z") -> bytes:
    return orjson.dumps({"log": text, "stream": stream, "time": time}) + b"\n"


def write(path, *entries: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(entries))


def texts(lines):
    return [line.text for line in lines]


def test_whole_lines_with_offsets(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("one\n"), entry("two\n", "stderr"))
    chain = JsonFileChain(str(base), max_message_length=100)
    lines = chain.read(100)
    assert texts(lines) == ["one", "two"]
    assert [line.stream for line in lines] == ["stdout", "stderr"]
    assert lines[0].offset == 0 and lines[1].offset == len(entry("one\n"))
    position = chain.position
    assert (position["inode"], position["offset"]) == (os.stat(base).st_ino, os.path.getsize(base))


def test_split_lines_are_reassembled_and_positions_never_point_inside_one(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("first\n"), entry("a" * 10), entry("b" * 10))
    chain = JsonFileChain(str(base), max_message_length=100)
    assert texts(chain.read(100)) == ["first"]
    assert chain.position["offset"] == len(entry("first\n"))  # the split message is not done yet
    write(base, entry("c\n"))
    lines = chain.read(100)
    assert texts(lines) == ["a" * 10 + "b" * 10 + "c"]
    assert lines[0].offset == len(entry("first\n"))


def test_long_messages_are_truncated_and_flagged(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("x" * 30 + "\n"), entry("y" * 8), entry("y" * 8), entry("y" * 8 + "\n"), entry("ok\n"))
    lines = JsonFileChain(str(base), max_message_length=10).read(100)
    assert [(line.text, line.truncated) for line in lines] == [("x" * 10, True), ("y" * 10, True), ("ok", False)]


def test_a_torn_last_line_waits_for_the_rest(tmp_path):
    base = tmp_path / "c-json.log"
    whole = entry("torn\n")
    write(base, whole[:7])
    chain = JsonFileChain(str(base), max_message_length=100)
    assert chain.read(100) == []
    write(base, whole[7:])
    assert texts(chain.read(100)) == ["torn"]


def test_rotation_is_followed_without_loss_or_repeat(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("1\n"), entry("2\n"))
    chain = JsonFileChain(str(base), max_message_length=100)
    assert texts(chain.read(1)) == ["1", "2"]  # one read chunk yields every whole line in it
    write(base, entry("3\n"))
    os.rename(base, f"{base}.1")  # what Docker does at max-size
    write(base, entry("4\n"))
    chain.discover()
    write(f"{base}.1", b"")  # nothing more arrives in the rotated file
    os.rename(f"{base}.1", f"{base}.2")
    os.rename(base, f"{base}.1")
    write(base, entry("5\n"))
    os.unlink(f"{base}.2")  # rotated away while unread: still open, still read
    assert texts(chain.read(100)) == ["3", "4", "5"]


def test_restart_resumes_at_the_checkpoint_even_after_rotation(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("1\n"), entry("2\n"))
    first = JsonFileChain(str(base), max_message_length=100)
    assert texts(first.read(100)) == ["1", "2"]
    position = first.position
    first.close()
    write(base, entry("3\n"))
    os.rename(base, f"{base}.1")
    write(base, entry("4\n"))
    second = JsonFileChain(str(base), max_message_length=100, position=position)
    assert texts(second.read(100)) == ["3", "4"]


def test_malformed_entries_are_kept_and_flagged(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, b"not json\n", entry("fine\n"))
    lines = JsonFileChain(str(base), max_message_length=100).read(100)
    assert [(line.text, line.malformed) for line in lines] == [("not json", True), ("fine", False)]


def test_start_at_end_skips_history(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("old\n"))
    chain = JsonFileChain(str(base), max_message_length=100, start_at_end=True)
    write(base, entry("new\n"))
    assert texts(chain.read(100)) == ["new"]


def test_a_reused_inode_is_not_taken_for_the_checkpointed_file(tmp_path):
    base = tmp_path / "c-json.log"
    write(base, entry("old 1\n"), entry("old 2\n"))
    first = JsonFileChain(str(base), max_message_length=100)
    first.read(100)
    position = first.position
    first.close()
    # The file is deleted and a new one happens to get the same inode number.
    position = {**position, "inode": position["inode"]}
    os.unlink(base)
    write(base, entry("new 1\n"), entry("new 2\n"), entry("new 3\n"))
    position["inode"] = os.stat(base).st_ino
    second = JsonFileChain(str(base), max_message_length=100, position=position)
    assert texts(second.read(100)) == ["new 1", "new 2", "new 3"]
