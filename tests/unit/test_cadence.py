from shipper.sources.cadence import Cadence


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_empty_reads_double_the_wait_up_to_the_slowest_and_news_resets_it():
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
