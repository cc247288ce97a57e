"""Which reader `mode` and a container's log driver give it (pure logic; the readers
themselves are tested on real containers in tests/integration/test_log_drivers.py)."""

import pytest

from shipper.containers import ContainerMeta
from shipper.sources.docker_logs import reader_for


def meta(driver: str, **options: str) -> ContainerMeta:
    return ContainerMeta.from_inspect({"Id": "c" * 64, "Name": "/app", "Config": {"Image": "busybox"},
                                       "HostConfig": {"LogConfig": {"Type": driver, "Config": options}}})


@pytest.mark.parametrize(("driver", "mode", "readable", "api", "expected"), [
    ("json-file", "auto", True, "1.41", "json-file"),
    ("local", "auto", True, "1.41", "local"),
    ("json-file", "auto", False, "1.41", "api"),  # a remote engine or an unreadable root: the API
    ("local", "auto", False, "1.40", "api"),  # the engine reads local back itself
    ("journald", "auto", True, "1.40", "api"),
    ("syslog", "auto", True, "1.41", "api"),  # through the dual-logging cache
    ("syslog", "auto", True, "1.40", "none"),  # before 20.10: no cache
    ("fluentd", "api", True, "1.41", "api"),
    ("syslog", "file", True, "1.41", "none"),
    ("local", "file", False, "1.41", "local"),  # file is an explicit override
    ("json-file", "api", True, "1.41", "api"),
    ("none", "auto", True, "1.41", "none"),
    ("none", "api", True, "1.41", "none"),
])
def test_the_reader_follows_the_driver_and_the_mode(driver, mode, readable, api, expected):
    assert reader_for(meta(driver), mode, readable, api)[0] == expected


def test_a_driver_without_its_cache_is_not_read_and_the_reason_says_why():
    reader, why = reader_for(meta("gelf", **{"cache-disabled": "true"}), "auto", True, "1.41")
    assert reader == "none" and "cache-disabled=true" in why
    assert "log driver is none" in reader_for(meta("none"), "auto", True, "1.41")[1]
    assert "older than 20.10" in reader_for(meta("syslog"), "auto", True, "1.40")[1]
