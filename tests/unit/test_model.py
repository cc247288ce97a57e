from shipper.model import LineIds, event_id


def test_ids_are_deterministic_and_distinct():
    assert event_id("c", "2026-01-01T00:00:00Z", 10) == event_id("c", "2026-01-01T00:00:00Z", 10)
    assert event_id("c", "2026-01-01T00:00:00Z", 10) != event_id("c", "2026-01-01T00:00:00Z", 11)
    assert len(event_id("x")) == 20


def test_log_line_ids_are_deterministic_distinct_and_the_same_length():
    ids = LineIds("container-1")
    first = ids.id("2026-01-01T00:00:00.000000001Z", 5)
    assert first == LineIds("container-1").id("2026-01-01T00:00:00.000000001Z", 5)
    others = {ids.id("2026-01-01T00:00:00.000000001Z", 6), ids.id("2026-01-01T00:00:00.000000002Z", 5),
              LineIds("container-2").id("2026-01-01T00:00:00.000000001Z", 5), LineIds("c%d").id("", 0)}
    assert first not in others and len(others) == 4
    assert {len(i) for i in others | {first}} == {20} and all("+" not in i and "/" not in i for i in others)
    # a container id holding `%` is a key, not a format
    assert LineIds("c%d").id("t", 1) != LineIds("c%s").id("t", 1)
