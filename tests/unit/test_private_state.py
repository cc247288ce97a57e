"""The state directory holds other people's log lines: with a umask of 022 nothing the
shipper writes there may be readable by group or others (Docker's own copies are 0710)."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from shipper.app import StateLock
from shipper.checkpoints import Checkpoints
from shipper.config import AnomalyConfig
from shipper.detect.forest import Forest
from shipper.detect.stateful import AnomalyDetector, _ImageModel
from shipper.errors import ConfigError
from shipper.private import open_private, prepare_state_directory
from shipper.sinks.base import Documents
from shipper.sinks.spool import Spool

DOCUMENTS = Documents([b"a", b"b"], [b'{"message":"secret a"}', b'{"message":"secret b"}'])
INDEX = "logs-shipper.events-default"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def exposed(root: Path) -> list[str]:
    """Every path under `root` (itself included) that group or others may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


def test_nothing_the_shipper_writes_is_readable_by_others(tmp_path, umask_022):
    state = tmp_path / "state"
    lock = StateLock(state)
    lock.acquire()
    spool = Spool(state / "spool", 1 << 20)
    first = spool.append(DOCUMENTS, INDEX)
    spool.append(DOCUMENTS, INDEX)
    spool.replace(first, DOCUMENTS.take([1]), INDEX)
    checkpoints = Checkpoints(state / "checkpoints.json")
    checkpoints.acknowledge("docker_logs", {"c1": {"offset": 10}})
    checkpoints.flush()
    AnomalyDetector(AnomalyConfig(), state / "models")._save(_ImageModel("busybox:1", forest=Forest([], 0.0), trained_on=3))
    with open_private(state / "audit-settings.json", "w") as handle:
        handle.write("{}")

    written = {p.name for p in state.rglob("*")}
    assert {"lock", "spool", "checkpoints.json", "models", "audit-settings.json"} <= written
    assert len(list((state / "spool").iterdir())) == 2 and list((state / "models").iterdir())
    assert exposed(state) == []


def test_temporary_files_are_private_before_their_rename(tmp_path, umask_022, monkeypatch):
    """What a rename publishes was never readable by others, even for a moment."""
    seen: list[tuple[str, int]] = []
    rename, replace = os.rename, Path.replace

    def checking_rename(src, dst, *args, **kwargs):
        seen.append((str(src), stat.S_IMODE(os.stat(src).st_mode)))
        return rename(src, dst, *args, **kwargs)

    def checking_replace(self, target):
        seen.append((str(self), stat.S_IMODE(self.stat().st_mode)))
        return replace(self, target)

    monkeypatch.setattr(os, "rename", checking_rename)
    monkeypatch.setattr(Path, "replace", checking_replace)
    Spool(tmp_path / "spool", 1 << 20).append(DOCUMENTS, INDEX)
    checkpoints = Checkpoints(tmp_path / "checkpoints.json")
    checkpoints.acknowledge("s", {"k": 1})
    checkpoints.flush()
    AnomalyDetector(AnomalyConfig(), tmp_path / "models")._save(_ImageModel("img", forest=Forest([], 0.0), trained_on=1))
    assert len(seen) == 3, seen
    assert all(mode == 0o600 for _, mode in seen), seen


def test_an_existing_wider_state_directory_is_narrowed_with_a_warning(tmp_path, umask_022, caplog):
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True)
    state.chmod(0o755)
    (state / "spool").chmod(0o755)
    (state / "spool" / "0000000000000001.ndjson").write_bytes(b'{"create":{"_id":"a"}}\n{"message":"secret a"}\n')
    (state / "checkpoints.json").write_text("{}")
    os.chmod(state / "checkpoints.json", 0o644)
    with caplog.at_level(logging.WARNING, logger="shipper.private"):
        prepare_state_directory(state)
    assert exposed(state) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("narrowed to 0700" in w for w in warnings), warnings
    assert any("3 files or directories" in w for w in warnings), warnings


def test_a_directory_that_is_not_the_shippers_own_is_never_narrowed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    (shared / "someone-elses.txt").write_text("x")
    with pytest.raises(ConfigError, match="not the shipper's"):
        prepare_state_directory(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_a_file_left_wider_is_narrowed_when_written_again(tmp_path, umask_022):
    path = tmp_path / "checkpoints.tmp"
    path.write_text("old")
    os.chmod(path, 0o644)
    with open_private(path, "wb") as handle:
        handle.write(b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"new"


def test_state_lock_still_refuses_a_second_shipper(tmp_path):
    first = StateLock(tmp_path)
    first.acquire()
    errors = []

    def second():
        try:
            StateLock(tmp_path).acquire()
        except Exception as exc:  # flock is per open file description: a second open conflicts
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert errors and "another shipper is running" in str(errors[0])
    assert (tmp_path / "lock").read_text() == str(os.getpid())
    del first


def test_a_state_directory_reached_through_a_symlink_is_narrowed_where_it_is(tmp_path, umask_022):
    real = tmp_path / "data" / "shipper"
    real.mkdir(parents=True)
    real.chmod(0o755)
    link = tmp_path / "state"
    link.symlink_to(real)
    StateLock(link).acquire()
    Spool(link / "spool", 1 << 20).append(DOCUMENTS, INDEX)
    assert exposed(real) == []
