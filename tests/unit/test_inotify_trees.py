"""One inotify instance for many recursively watched trees: what each tree is told, as watchdog told it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from shipper.sources import inotify as inotify_module
from shipper.sources.inotify import InotifyTrees


class _Heard:
    def __init__(self):
        self.items: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, src: str, dest: str) -> None:
        with self.lock:
            self.items.append((kind, src, dest))

    def wait_for(self, wanted, timeout: float = 3.0) -> list[tuple[str, str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(item in self.items for item in wanted):
                    return list(self.items)
            time.sleep(0.01)
        with self.lock:
            raise AssertionError(f"not all of {wanted} in {self.items}")


@pytest.fixture
def trees():
    watcher = InotifyTrees()
    watcher.start()
    yield watcher
    watcher.close()


def _inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "inotify" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return count


def test_many_trees_share_one_inotify_instance_and_one_thread(tmp_path, trees):
    before_fds, before_threads = _inotify_fds(), threading.active_count()
    heard = []
    for n in range(300):  # more than a stock max_user_instances (128)
        (tmp_path / str(n) / "sub").mkdir(parents=True)
        heard.append(_Heard())
        assert trees.watch(str(n), str(tmp_path / str(n)), heard[-1]) == 2
    assert _inotify_fds() == before_fds and threading.active_count() == before_threads
    assert trees.total_watches == 600
    (tmp_path / "299" / "sub" / "x").write_text("x")
    heard[299].wait_for([("created", str(tmp_path / "299" / "sub" / "x"), "")])
    assert heard[0].items == []
    for n in range(300):
        trees.unwatch(str(n))
    assert trees.total_watches == 0


def test_create_write_chmod_delete(tmp_path, trees):
    heard = _Heard()
    trees.watch("c", str(tmp_path), heard)
    path = tmp_path / "a.sh"
    path.write_text("echo")
    os.chmod(path, 0o755)
    path.unlink()
    items = heard.wait_for([("deleted", str(path), "")])
    kinds = [kind for kind, src, _ in items if src == str(path)]
    assert kinds == ["created", "modified", "closed", "attrib", "deleted"]


def test_a_directory_made_with_contents_reports_them_and_is_watched(tmp_path, trees):
    heard = _Heard()
    trees.watch("c", str(tmp_path), heard)
    staged = tmp_path.parent / (tmp_path.name + "-staged")
    (staged / "b").mkdir(parents=True)
    (staged / "b" / "payload").write_text("x")
    os.rename(staged, tmp_path / "a")  # a whole tree moved in at once: IN_MOVED_TO with no IN_MOVED_FROM
    heard.wait_for([("created", str(tmp_path / "a"), ""), ("created", str(tmp_path / "a" / "b"), ""),
                    ("created", str(tmp_path / "a" / "b" / "payload"), "")])
    (tmp_path / "a" / "b" / "later").write_text("x")  # the moved-in directories are watched now
    heard.wait_for([("created", str(tmp_path / "a" / "b" / "later"), "")])
    os.makedirs(tmp_path / "p" / "q")
    (tmp_path / "p" / "q" / "r").write_text("x")
    heard.wait_for([("created", str(tmp_path / "p"), ""), ("created", str(tmp_path / "p" / "q" / "r"), "")])


def test_renames_within_and_out_of_the_tree(tmp_path, trees, monkeypatch):
    monkeypatch.setattr(inotify_module, "MOVE_WAIT", 0.2)
    heard = _Heard()
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("x")
    trees.watch("c", str(root), heard)
    os.rename(root / "d", root / "e")
    heard.wait_for([("moved", str(root / "d"), str(root / "e")), ("moved", str(root / "d" / "f"), str(root / "e" / "f"))])
    (root / "e" / "g").write_text("x")  # the watch followed the rename
    heard.wait_for([("created", str(root / "e" / "g"), "")])
    os.rename(root / "e", tmp_path / "outside")
    heard.wait_for([("deleted", str(root / "e"), "")])
    (tmp_path / "outside" / "h").write_text("x")  # no longer in the tree: nothing
    time.sleep(0.3)
    assert not any("outside" in src or "outside" in dest for _, src, dest in heard.items)


def test_a_missing_root_raises_and_leaves_nothing_behind(tmp_path, trees):
    with pytest.raises(FileNotFoundError):
        trees.watch("gone", str(tmp_path / "gone"), _Heard())
    assert trees.watches("gone") == 0 and trees.total_watches == 0


def test_the_tree_itself_removed(tmp_path, trees):
    heard = _Heard()
    root = tmp_path / "root"
    root.mkdir()
    trees.watch("c", str(root), heard)
    root.rmdir()
    heard.wait_for([("deleted", str(root), "")])
    deadline = time.monotonic() + 2
    while trees.total_watches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trees.total_watches == 0  # the kernel's IN_IGNORED dropped it
