from shipper.model import IdPrefix, event_id


def test_ids_are_deterministic_and_distinct():
    assert event_id("c", "2026-01-01T00:00:00Z", 10) == event_id("c", "2026-01-01T00:00:00Z", 10)
    assert event_id("c", "2026-01-01T00:00:00Z", 10) != event_id("c", "2026-01-01T00:00:00Z", 11)
    assert len(event_id("x")) == 20


def test_prefixed_ids_equal_plain_ids():
    prefix = IdPrefix("container-1")
    assert prefix.id("t", 5) == event_id("container-1", "t", 5)
    assert prefix.id("t", 6) == event_id("container-1", "t", 6)
