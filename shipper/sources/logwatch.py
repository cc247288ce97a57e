"""Which followed logs changed: one inotify instance on every followed log's directory.

Without it a quiet log is looked at once a second (the read loop's slowest wait), 200 quiet
logs 200 reads a second. With it the read loop hears at once that a log's directory changed
(a line written, a file rotated in) and looks at that log then; the slow look stays as the
net for what inotify cannot tell (an overflow of its queue: every log is looked at again).

A busy log changes thousands of times a second: the reading thread takes what the kernel
queued, then waits `pace` seconds, so the kernel merges repeats of one file's changes
meanwhile and a busy log costs a few wake-ups a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)

MASK = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.CLOSE_WRITE | flags.ONLYDIR


class LogDirectoryWatch:
    """`changed(key)` when the directory watched for `key` changes; `changed(None)` when changes were lost."""

    def __init__(self, changed: Callable[[str | None], None], pace: float = 0.05):
        self._inotify = INotify()  # OSError (EMFILE) when the user has no inotify instance left
        self._changed = changed
        self._pace = pace
        self._lock = threading.Lock()
        self._key_of: dict[int, str] = {}  # watch descriptor -> key
        self._wd_of: dict[str, int] = {}
        self._closed = threading.Event()
        self.failed = False  # the reading thread ended on an error: no more notifications
        self._thread = threading.Thread(target=self._run, name="docker_logs-inotify", daemon=True)

    def start(self) -> LogDirectoryWatch:
        self._thread.start()
        return self

    def watch(self, key: str, directory: str) -> None:
        """Raises OSError when the directory is gone or the kernel's watch limit is reached."""
        with self._lock:
            wd = self._inotify.add_watch(directory, MASK)
            self._key_of[wd] = key
            self._wd_of[key] = wd

    def unwatch(self, key: str) -> None:
        with self._lock:
            wd = self._wd_of.pop(key, None)
            if wd is None:
                return
            self._key_of.pop(wd, None)
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass  # gone with its directory

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._inotify.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                events = self._inotify.read(timeout=1000)
            except OSError:
                if not self._closed.is_set():
                    log.warning("docker_logs: the log directories' inotify watch failed; quiet logs are looked at "
                                "every second again", exc_info=True)
                    self.failed = True
                    self._changed(None)
                return
            with self._lock:
                keys = {self._key_of.get(event.wd) for event in events if not event.mask & flags.Q_OVERFLOW}
                lost = any(event.mask & flags.Q_OVERFLOW for event in events)
            for key in keys - {None}:
                self._changed(key)
            if lost:
                self._changed(None)
            self._closed.wait(self._pace)
