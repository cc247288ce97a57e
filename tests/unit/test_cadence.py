from shipper.sources.cadence import Cadence


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_empty_reads_double_the_wait_up_to_the_slowest_and_news_makes_it_due_at_once():
    clock = Clock()
    backoff = Cadence(5, 100, clock)  # hundredths of a second: exact sums
    assert backoff.due("a")
    waits = []
    for _ in range(8):
        backoff.heard("a", found=False)
        start = clock.now
        while not backoff.due("a"):
            clock.now += 1
        waits.append(clock.now - start)
    assert waits == [5, 10, 20, 40, 80, 100, 100, 100]
    backoff.heard("a", found=True)
    assert backoff.due("a")  # a log with news (a backlog, say) is read again at once
    backoff.heard("a", found=False)
    assert not backoff.due("a")
    clock.now += 5
    assert backoff.due("a")


def test_wake_makes_a_key_due_at_once():
    clock = Clock()
    backoff = Cadence(0.05, 1.0, clock)
    for _ in range(6):
        backoff.heard("a", found=False)
    assert not backoff.due("a") and backoff.due("b")
    backoff.wake("a")
    assert backoff.due("a")


def test_read_rounds_take_turns_between_logs_with_a_backlog(tmp_path):
    """A log with a backlog is read round after round; the next round begins after the log
    that filled the last batch, so a log late in the list never waits behind the others."""
    from shipper.sources.docker_logs import DockerLogsSource
    from shipper.sources.jsonfile import JsonFileChain

    source = DockerLogsSource(None, None, selector=None, batch_size=50)  # type: ignore[arg-type]
    for name in "abc":
        path = tmp_path / f"{name}-json.log"
        path.write_bytes(b"".join(b'{"log":"%s %d\\n","stream":"stdout","time":"2026-11-29T09:00:00.%09dZ"}\n'
                                  % (name.encode(), n, n) for n in range(20000)))
        source._followed[name * 64] = JsonFileChain(str(path), max_message_length=1 << 20)
    read_in_round = []
    for _ in range(6):
        batches = []
        assert source._read_round(batches.append)  # each round fills its batch
        read_in_round.append(sorted({event.container_id[0] for event in batches[0].events}))
    assert {name for names in read_in_round[:3] for name in names} == {"a", "b", "c"}
    assert all(names for names in read_in_round)


def test_quiet_keys_on_a_grid_fall_due_together_and_never_later_than_the_slowest_wait():
    clock = Clock()
    cadence = Cadence(5, 100, clock, grid=25)
    for n, key in enumerate("abcdefgh"):
        clock.now = n * 7  # looked at at scattered moments
        for _ in range(6):  # 5, 10, 20, 40, 80, then the slowest wait
            cadence.heard(key, found=False)
        last = clock.now
        assert cadence._next[key][0] % 25 == 0 and last + 75 < cadence._next[key][0] <= last + 100
    assert len({at for at, _ in cadence._next.values()}) <= 3  # a handful of moments, not one per key
    clock.now = 49
    assert cadence.next_due(1000) == min(at for at, _ in cadence._next.values()) - 49
    cadence.heard("a", found=True)  # news: due at once, off the grid
    assert cadence.due("a") and cadence.next_due(1000) == 0
    assert Cadence(5, 100, clock).next_due(1000) == 1000


def test_the_rotation_guard_opens_new_files_only_while_the_read_loop_is_stuck():
    """Each read of a log looks for a newer file first; the guard is for when emit() blocks."""
    import threading
    import time

    from shipper.sources.docker_logs import DockerLogsSource

    class Chain:
        looked = 0

        def discover(self):
            Chain.looked += 1

    source = DockerLogsSource(None, None, selector=None, poll_interval=0.01)  # type: ignore[arg-type]
    source._followed["a" * 64] = Chain()
    guard = threading.Thread(target=source._guard_rotation, daemon=True)
    guard.start()
    try:
        going_round_until = time.monotonic() + 2.5  # the guard wakes once a second here (no log due sooner)
        while time.monotonic() < going_round_until:  # the read loop going round
            source._rounds += 1
            time.sleep(0.01)
        assert Chain.looked == 0
        deadline = time.monotonic() + 10
        while Chain.looked < 2 and time.monotonic() < deadline:  # the loop stuck: the guard looks
            time.sleep(0.01)
        assert Chain.looked >= 2
    finally:
        source._closed.set()
        guard.join(5)
