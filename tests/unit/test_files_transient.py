"""How the files source judges what inotify reported, on a real directory standing in for an upper layer."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from shipper.config import MiningConfig
from shipper.detect.stateful import MiningDetector
from shipper.sources.files import FilesSource, _Handler, _Root


def _source(tmp_path, **kwargs):
    source = FilesSource(SimpleNamespace(cache=None), **kwargs)
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    lower.mkdir()
    root = _Root(str(upper), "c" * 64, [str(lower)], started=time.time() - 60)
    return source, root, _Handler(root, source._raw), upper, lower


def _drain(source):
    return [(e.fields["event"]["action"], e.fields["file"], e.fields.get("shipper", {}).get("file", {}))
            for e in source._drain(time.time() + 10)]


def test_symlink_created_and_removed_at_once_keeps_its_target(tmp_path):
    source, _, handler, upper, _ = _source(tmp_path)
    link = upper / "tmp-cache"
    link.symlink_to("/etc/shadow")
    handler.notice("created", str(link))
    link.unlink()
    handler.notice("deleted", str(link))
    events = _drain(source)
    assert [action for action, _, _ in events] == ["creation", "deletion"]
    assert events[0][1]["type"] == "symlink" and events[0][1]["target_path"] == "/etc/shadow"
    assert events[0][1]["path"] == "/tmp-cache"


def test_a_file_gone_before_any_look_is_still_reported_as_made(tmp_path):
    source, _, handler, upper, _ = _source(tmp_path)
    handler.notice("created", str(upper / ".x"))  # already gone when the handler looks
    handler.notice("deleted", str(upper / ".x"))
    assert [(action, file["path"]) for action, file, _ in _drain(source)] == [("creation", "/.x"), ("deletion", "/.x")]


def test_setuid_bit_set_then_file_removed(tmp_path):
    source, _, handler, upper, _ = _source(tmp_path)
    payload = upper / "b"
    payload.write_bytes(b"\x7fELF")
    handler.notice("created", str(payload))
    os.chmod(payload, 0o4755)
    handler.notice("attrib", str(payload))
    payload.unlink()
    handler.notice("deleted", str(payload))
    events = _drain(source)
    assert [action for action, _, _ in events] == ["creation", "deletion"]
    assert events[0][1]["mode"] == "4755" and events[0][2] == {"setuid": True}


def test_an_image_file_changed_is_a_modification_and_a_new_one_a_creation(tmp_path):
    source, _, handler, upper, lower = _source(tmp_path)
    (lower / "passwd").write_text("root")
    (upper / "passwd").write_text("root\nx")
    (upper / "new").write_text("x")
    for name in ("passwd", "new"):
        handler.notice("created", str(upper / name))
        handler.notice("closed", str(upper / name))
    assert sorted((e[0], e[1]["path"]) for e in _drain(source)) == [("creation", "/new"), ("modification", "/passwd")]


def test_writes_in_the_first_seconds_are_marked_as_start_up(tmp_path):
    source, root, handler, upper, _ = _source(tmp_path, startup_seconds=5)
    root.started = time.time()
    (upper / "app.conf").write_text("x")
    handler.notice("created", str(upper / "app.conf"))
    (_, _, own), = _drain(source)
    assert own == {"during_startup": True}


def test_dev_root_reports_container_paths_and_skips_standard_devices(tmp_path):
    source = FilesSource(SimpleNamespace(cache=None))
    dev = tmp_path / "dev"
    (dev / "shm").mkdir(parents=True)
    root = _Root(str(dev), "c" * 64, prefix="/dev")
    handler = _Handler(root, source._raw)
    (dev / "shm" / "x").write_text("payload")
    (dev / "null").write_text("")
    for path in (dev / "shm" / "x", dev / "null"):
        handler.notice("created", str(path))
    assert [(e[0], e[1]["path"]) for e in _drain(source)] == [("creation", "/dev/shm/x")]


def _copied_up_etc(tmp_path, *, written_since: bool, left: str | None = None):
    """upper/etc as overlayfs makes it at the first write under /etc: the image's mtime, then the write's."""
    source, _, handler, upper, lower = _source(tmp_path)
    (lower / "etc").mkdir()
    os.utime(lower / "etc", (1_000_000, 1_000_000))  # built long ago
    (upper / "etc").mkdir()
    os.utime(upper / "etc", (1_000_000, 1_000_000))
    if left:
        (upper / "etc" / left).write_text("x")
    if written_since:
        os.utime(upper / "etc")  # an entry made (and removed) after the copy-up: the directory's time is now
    handler.notice("created", str(upper / "etc"))
    return _drain(source)


def test_a_system_directory_copied_up_and_emptied_again_says_something_was_written_in_it(tmp_path):
    (event,) = _copied_up_etc(tmp_path, written_since=True)
    assert event[0] == "modification" and event[1]["path"] == "/etc" and event[2].get("entries_gone") is True


def test_a_directory_copied_up_for_a_file_that_stays_or_for_its_own_mode_is_not_reported(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _copied_up_etc(tmp_path / "a", written_since=True, left="passwd") == []  # the file's own event says it
    assert _copied_up_etc(tmp_path / "b", written_since=False) == []  # chmod/chown of /etc: its time is the image's


def test_mining_cpu_is_judged_against_what_the_container_could_get():
    detector = MiningDetector(MiningConfig())
    assert detector.is_high(0.9, None, None)  # at or above cpu_cores: always
    assert detector.is_high(0.5, 1.0, 0.0)  # a saturated host gave it half a core: it took all it could
    assert not detector.is_high(0.5, None, 1.5)  # the host had 1.5 idle cores it did not take
    assert detector.is_high(0.45, 0.5, 2.0)  # limited to half a core, using it all
    assert not detector.is_high(0.2, 0.25, 0.0)  # below min_cores: never
    assert not detector.is_high(0.5, None, None)  # nothing to compare with
