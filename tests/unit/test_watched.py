"""Which containers run: listed again at most every `max_age` seconds, or, while an engine event stream
is open, when the engine tells of a start, stop or pause (and every `resync` seconds)."""

from __future__ import annotations

from shipper.containers import ContainerCache, Watched


class _Api:
    def __init__(self):
        self.ids = ["a"]
        self.listings = 0

    def containers(self, filters):
        self.listings += 1
        return [{"Id": i} for i in self.ids]


class _Client:
    def __init__(self):
        self.api = _Api()


def event(action: str, container_id: str, at: int) -> dict:
    return {"Type": "container", "Action": action, "Actor": {"ID": container_id}, "timeNano": at}


def test_without_events_a_listing_serves_max_age_seconds():
    client = _Client()
    watched = Watched(client, ContainerCache(client), max_age=0)  # type: ignore[arg-type]
    watched.running(), watched.running()
    assert client.api.listings == 2


def test_with_events_open_only_a_change_lists_again():
    client = _Client()
    cache = ContainerCache(client)  # type: ignore[arg-type]
    watched = Watched(client, cache, max_age=0, resync=3600)  # type: ignore[arg-type]
    cache.listening(watched, True)
    assert watched.running() == ["a"] and watched.running() == ["a"] and client.api.listings == 1
    cache.on_engine_event(event("exec_start: sh", "a", 1))  # not a change of what runs
    watched.running()
    assert client.api.listings == 1
    client.api.ids = ["a", "b"]
    cache.on_engine_event(event("destroy", "b", 2))  # any start, die, destroy, pause or unpause
    assert watched.running() == ["a", "b"] and client.api.listings == 2
    cache.listening(watched, False)  # the stream broke: back to max_age
    watched.running()
    assert client.api.listings == 3
