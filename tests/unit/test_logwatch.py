"""The log directories' inotify watch (real inotify on a temporary directory)."""

import threading
import time

from shipper.sources.logwatch import LogDirectoryWatch


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_write_or_a_new_file_in_a_watched_directory_names_its_key_and_nothing_after_unwatch(tmp_path):
    heard: list = []
    lock = threading.Lock()

    def changed(key):
        with lock:
            heard.append(key)

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "a-json.log").write_bytes(b"")
    watch = LogDirectoryWatch(changed, pace=0.01).start()
    try:
        watch.watch("a", str(first))
        watch.watch("b", str(second))
        with open(first / "a-json.log", "ab") as log:
            log.write(b'{"log":"x\\n"}\n')
        assert wait_for(lambda: "a" in heard) and "b" not in heard
        (second / "b-json.log.1").write_bytes(b"rotated")  # a file made there: a rotation
        assert wait_for(lambda: "b" in heard)
        watch.unwatch("a")
        with lock:
            heard.clear()
        with open(first / "a-json.log", "ab") as log:
            log.write(b'{"log":"y\\n"}\n')
        (second / "b-json.log").write_bytes(b"again")
        assert wait_for(lambda: "b" in heard)
        assert "a" not in heard
    finally:
        watch.close()


def test_many_writes_to_a_busy_log_are_told_a_few_times_not_once_each(tmp_path):
    heard: list = []
    (tmp_path / "busy-json.log").write_bytes(b"")
    watch = LogDirectoryWatch(heard.append, pace=0.2).start()
    try:
        watch.watch("busy", str(tmp_path))
        with open(tmp_path / "busy-json.log", "ab", buffering=0) as log:
            for n in range(5000):
                log.write(b"line %d\n" % n)
        assert wait_for(lambda: heard)
        time.sleep(0.5)
        assert 1 <= len(heard) < 100  # 5,000 writes, merged by the kernel while the reader waits its pace
    finally:
        watch.close()
