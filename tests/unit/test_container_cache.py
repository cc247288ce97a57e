"""The container cache inspects a container once per engine event, though two sources
(docker_logs and docker_events) each read the engine's events and pass them on."""

from __future__ import annotations

from shipper.containers import ContainerCache, Watched

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


class StartingEngine(CountingEngine):
    """A container created, then started: inspect answers as the engine would at each moment."""

    def __init__(self):
        super().__init__()
        self.started = False

    def inspect_container(self, container_id: str) -> dict:
        attrs = super().inspect_container(container_id)
        attrs["State"] = ({"Running": True, "StartedAt": "2026-12-07T20:12:40.1Z"} if self.started
                          else {"Running": False, "StartedAt": "0001-01-01T00:00:00Z"})
        return attrs

    def containers(self, filters: dict) -> list[dict]:
        return [{"Id": CONTAINER}] if self.started else []


def test_a_container_listed_as_running_before_its_start_event_is_handled_is_inspected_again():
    """What the files source and the processes source read its start time from (writes in the first seconds
    are an entrypoint's) must not be what `create` said: year 1 made every early write look late."""
    engine = StartingEngine()
    cache = ContainerCache(engine)
    watched = Watched(engine, cache)
    cache.on_engine_event(engine_event("create", 1))
    assert cache.get(CONTAINER).attrs["State"]["Running"] is False
    engine.started = True  # its `start` event still queued behind others
    assert watched.running() == [CONTAINER]
    assert cache.get(CONTAINER).attrs["State"]["StartedAt"].startswith("2026-12-07")
    inspects = engine.inspects
    watched.running()
    cache.refresh_not_started([CONTAINER])
    assert engine.inspects == inspects  # a running container's metadata is not asked for again
