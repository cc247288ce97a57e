"""The container cache inspects a container once per engine event, though two sources
(docker_logs and docker_events) each read the engine's events and pass them on."""

from __future__ import annotations

from shipper.containers import ContainerCache

CONTAINER = "c" * 64


class CountingEngine:
    """The one engine call the cache makes, counted; answers like `docker inspect`."""

    def __init__(self):
        self.inspects = 0
        self.api = self

    def inspect_container(self, container_id: str) -> dict:
        self.inspects += 1
        return {"Id": container_id, "Name": "/web", "Config": {"Image": "busybox:1", "Labels": {}}, "Image": "sha256:1"}


def engine_event(action: str, nanos: int) -> dict:
    return {"Type": "container", "Action": action, "Actor": {"ID": CONTAINER, "Attributes": {}},
            "time": nanos // 1_000_000_000, "timeNano": nanos}


def test_one_start_seen_by_both_streams_is_one_inspect():
    engine = CountingEngine()
    cache = ContainerCache(engine)
    start = engine_event("start", 1_714_557_600_000_000_001)
    cache.on_engine_event(dict(start))  # docker_events
    cache.on_engine_event(dict(start))  # docker_logs, the same event from its own stream
    assert engine.inspects == 1
    assert cache.get(CONTAINER).name == "web"
    assert engine.inspects == 1  # and the next lookup is served from the cache


def test_each_new_event_is_inspected_again():
    engine = CountingEngine()
    cache = ContainerCache(engine)
    cache.on_engine_event(engine_event("start", 1))
    cache.on_engine_event(engine_event("rename", 2))
    cache.on_engine_event(engine_event("start", 3))  # a restart: same action, a later event
    assert engine.inspects == 3
