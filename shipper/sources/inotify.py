"""Directory trees watched recursively through ONE inotify instance and one thread.

watchdog's Observer gives each scheduled tree an emitter thread of its own (watchdog 7.1,
measured: 400 trees, one inotify instance, 403 threads), and older watchdog releases an
inotify instance of its own as well (128 per user on a stock kernel); the files source
watches two trees a container. Here every tree shares one
inotify file descriptor, read by one thread that sleeps in poll() until the kernel has
something, so idle trees cost nothing.

What is reported, per tree, as watchdog's inotify emitter reported it (kinds as the files
source names them): `created` (IN_CREATE, a rename into the tree from outside it, and every
entry of a directory made or moved in, found by a walk after its watch is set), `modified`
(IN_MODIFY), `closed` (IN_CLOSE_WRITE), `attrib` (IN_ATTRIB), `deleted` (IN_DELETE, a
rename out of the tree, the tree's own directory removed) and `moved` (IN_MOVED_FROM paired
with IN_MOVED_TO by cookie, and each entry of a directory moved within the tree). Opens
and reads are not asked of the kernel at all.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from inotify_simple import INotify, flags, parse_events

log = logging.getLogger(__name__)

Notice = Callable[[str, str, str], None]  # (kind, path, destination or "") as paths on the host

MASK = (flags.CREATE | flags.DELETE | flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM
        | flags.MOVED_TO | flags.DELETE_SELF | flags.DONT_FOLLOW | flags.ONLYDIR)
MOVE_WAIT = 0.5  # an IN_MOVED_FROM with no IN_MOVED_TO within this long was a rename out of the tree: a deletion


class _Tree:
    def __init__(self, path: str, notice: Notice):
        self.path = path
        self.notice = notice
        self.paths: dict[int, str] = {}  # watch descriptor -> the directory it watches now
        self.wds: dict[str, int] = {}  # directory -> watch descriptor


class InotifyTrees:
    """Recursive watches on any number of directory trees, one inotify instance for all."""

    def __init__(self) -> None:
        self._inotify = INotify()
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.RLock()
        self._trees: dict[str, _Tree] = {}  # key -> tree
        self._by_wd: dict[int, list[_Tree]] = {}  # one directory in two trees has one descriptor
        self._moves: dict[int, tuple[_Tree, str, bool, float]] = {}  # cookie -> (tree, source, is_dir, when)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.overflows = 0

    # ------------------------------------------------------------ the caller's side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inotify-trees", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"!")
        if self._thread is not None:
            self._thread.join(5)
        self._inotify.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def watch(self, key: str, path: str, notice: Notice) -> int:
        """Watch `path` and every directory below it; the number of watches set. Raises FileNotFoundError if
        `path` is not there, OSError (ENOSPC) when the kernel's watch limit is reached."""
        tree = _Tree(path, notice)
        with self._lock:
            self._trees[key] = tree
            try:
                self._add(tree, path, root=True)
            except OSError:
                self._drop_tree(key)
                raise
            return len(tree.paths)

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._drop_tree(key)

    def watches(self, key: str) -> int:
        tree = self._trees.get(key)
        return len(tree.paths) if tree else 0

    @property
    def total_watches(self) -> int:
        return len(self._by_wd)

    # ------------------------------------------------------------ watches

    def _add(self, tree: _Tree, path: str, *, root: bool = False) -> None:
        """A watch on `path` and on each directory below it (the watch first, then the listing, so a directory
        made in between is told by IN_CREATE)."""
        self._add_one(tree, path, strict=root)
        for directory, dirs, _ in os.walk(path):
            for name in dirs:
                sub = os.path.join(directory, name)
                if not os.path.islink(sub):
                    self._add_one(tree, sub, strict=False)

    def _add_below(self, tree: _Tree, path: str) -> None:
        """Watches for a directory made or moved into a watched tree, from the reading thread."""
        try:
            self._add(tree, path)
        except OSError as exc:  # ENOSPC: fs.inotify.max_user_watches reached
            log.warning("inotify: cannot watch %s: %s", path, exc,
                        extra={"fix": "raise fs.inotify.max_user_watches"})

    def _add_one(self, tree: _Tree, path: str, *, strict: bool) -> None:
        try:
            wd = self._inotify.add_watch(path, MASK)
        except OSError as exc:
            if strict or exc.errno == 28:  # ENOSPC: the kernel's limit, the caller must hear of it
                raise
            return  # gone or replaced by a file since the walk listed it
        old = tree.paths.get(wd)
        if old is not None and old != path:
            tree.wds.pop(old, None)
        tree.paths[wd] = path
        tree.wds[path] = wd
        trees = self._by_wd.setdefault(wd, [])
        if tree not in trees:
            trees.append(tree)

    def _drop_tree(self, key: str) -> None:
        tree = self._trees.pop(key, None)
        if tree is None:
            return
        for wd in list(tree.paths):
            self._release(tree, wd)
        tree.paths.clear()
        tree.wds.clear()
        self._moves = {c: m for c, m in self._moves.items() if m[0] is not tree}

    def _forget(self, wd: int) -> None:
        """IN_IGNORED: the kernel dropped the watch (its directory is gone, or rm_watch)."""
        for tree in self._by_wd.pop(wd, []):
            path = tree.paths.pop(wd, None)
            if path is not None and tree.wds.get(path) == wd:
                del tree.wds[path]

    # ------------------------------------------------------------ the reading thread

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._closed:
            timeout = None
            if self._moves:
                oldest = min(when for _, _, _, when in self._moves.values())
                timeout = max(0, int((oldest + MOVE_WAIT - time.monotonic()) * 1000) + 1)
            ready = poller.poll(timeout)
            if self._closed:
                return
            notices: list[tuple[Notice, str, str, str]] = []
            if ready:
                try:
                    data = os.read(self._inotify.fileno(), 1 << 16)
                except BlockingIOError:
                    data = b""
                except OSError:
                    if self._closed:
                        return
                    raise
                with self._lock:
                    for event in parse_events(data):
                        self._event(event, notices)
            with self._lock:
                self._expire_moves(notices)
            for notice, kind, src, dest in notices:
                try:
                    notice(kind, src, dest)
                except Exception:  # noqa: BLE001 - one bad notice must not end the watch of every tree
                    log.exception("inotify: a notice failed")

    def _expire_moves(self, notices: list[tuple[Notice, str, str, str]], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for cookie, (tree, src, is_dir, when) in list(self._moves.items()):
            if now - when >= MOVE_WAIT:
                del self._moves[cookie]
                notices.append((tree.notice, "deleted", src, ""))
                if is_dir:
                    self._drop_below(tree, src)

    def _event(self, event: Any, notices: list[tuple[Notice, str, str, str]]) -> None:
        wd, mask, cookie, name = event
        if mask & flags.Q_OVERFLOW:
            self._overflow(notices)
            return
        if mask & flags.IGNORED:
            self._forget(wd)
            return
        is_dir = bool(mask & flags.ISDIR)
        for tree in list(self._by_wd.get(wd, ())):
            directory = tree.paths.get(wd)
            if directory is None:
                continue
            path = os.path.join(directory, name) if name else directory
            self._tree_event(tree, mask, cookie, path, is_dir, notices)

    def _tree_event(self, tree: _Tree, mask: int, cookie: int, path: str, is_dir: bool,
                    notices: list[tuple[Notice, str, str, str]]) -> None:
        say = tree.notice
        if mask & flags.MOVED_FROM:
            self._moves[cookie] = (tree, path, is_dir, time.monotonic())
        elif mask & flags.MOVED_TO:
            source = self._moves.pop(cookie, None)
            if source is not None and source[0] is tree:
                notices.append((say, "moved", source[1], path))
                if is_dir:
                    self._move_below(tree, source[1], path)
                    for sub_dir, dirs, files in os.walk(path):
                        for entry in dirs + files:
                            dest = os.path.join(sub_dir, entry)
                            notices.append((say, "moved", source[1] + dest[len(path):], dest))
            else:
                if source is not None:  # moved from one tree to another: gone from the first
                    notices.append((source[0].notice, "deleted", source[1], ""))
                notices.append((say, "created", path, ""))
                if is_dir:
                    self._add_below(tree, path)
                    self._created_below(tree, path, notices)
        elif mask & flags.CREATE:
            if is_dir:
                self._add_below(tree, path)
            notices.append((say, "created", path, ""))
            if is_dir:
                self._created_below(tree, path, notices)
        elif mask & flags.DELETE:
            notices.append((say, "deleted", path, ""))
        elif mask & flags.DELETE_SELF:
            if path == tree.path:
                notices.append((say, "deleted", path, ""))
        elif mask & flags.ATTRIB:
            notices.append((say, "attrib", path, ""))
        elif mask & flags.MODIFY:
            if not is_dir:
                notices.append((say, "modified", path, ""))
        elif mask & flags.CLOSE_WRITE:
            if not is_dir:
                notices.append((say, "closed", path, ""))

    @staticmethod
    def _created_below(tree: _Tree, path: str, notices: list[tuple[Notice, str, str, str]]) -> None:
        """What a directory made (or moved in) already holds when its watch is set: each entry as created."""
        for directory, dirs, files in os.walk(path):
            for entry in dirs + files:
                notices.append((tree.notice, "created", os.path.join(directory, entry), ""))

    @staticmethod
    def _move_below(tree: _Tree, src: str, dest: str) -> None:
        prefix = src + os.sep
        for path, wd in list(tree.wds.items()):
            if path == src or path.startswith(prefix):
                new = dest + path[len(src):]
                del tree.wds[path]
                tree.wds[new] = wd
                tree.paths[wd] = new

    def _drop_below(self, tree: _Tree, src: str) -> None:
        """A directory renamed out of the tree: its watches (still on the moved directories) go."""
        prefix = src + os.sep
        for path, wd in list(tree.wds.items()):
            if path == src or path.startswith(prefix):
                del tree.wds[path]
                tree.paths.pop(wd, None)
                self._release(tree, wd)

    def _release(self, tree: _Tree, wd: int) -> None:
        """`tree` no longer uses watch `wd`; the watch goes when no tree does."""
        trees = self._by_wd.get(wd, [])
        if tree in trees:
            trees.remove(tree)
        if not trees:
            self._by_wd.pop(wd, None)
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass  # already gone with its directory

    def _overflow(self, notices: list[tuple[Notice, str, str, str]]) -> None:
        """The kernel's queue overflowed: events were lost. Set every tree's watches again (directories made in
        the gap get theirs) and say so; what was lost cannot be told."""
        self.overflows += 1
        log.warning("inotify: the kernel's event queue overflowed, file events were lost; watches set again",
                    extra={"fix": "raise fs.inotify.max_queued_events"})
        self._moves.clear()
        for tree in list(self._trees.values()):
            self._add_below(tree, tree.path)
