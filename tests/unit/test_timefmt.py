"""The one timestamp module: the engine's RFC 3339 with nanoseconds in, the documents' forms out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shipper.timefmt import iso_time, nano_time, parse_time

EPOCH_2024 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text, seconds", [
    ("2024-05-01T10:00:00.123456789Z", EPOCH_2024 + 0.123456),  # Docker: nanoseconds, kept to the microsecond
    ("2024-05-01T10:00:00.5Z", EPOCH_2024 + 0.5),
    ("2024-05-01T10:00:00Z", EPOCH_2024),
    ("2024-05-01T10:00:00+00:00", EPOCH_2024),
    ("2024-05-01T10:00:00", EPOCH_2024),  # no zone: the engine's times are UTC
    ("2024-05-01T12:00:00+02:00", EPOCH_2024),
])
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-05-01T10:00:00.12ab", "2024-13-01T00:00:00Z", None])
def test_parse_time_of_what_is_not_a_time(text):
    assert parse_time(text) is None


def test_iso_time_has_milliseconds_and_z():
    assert iso_time(EPOCH_2024 + 0.1234) == "2024-05-01T10:00:00.123Z"


def test_nano_time_keeps_all_nine_digits():
    nanos = int(EPOCH_2024) * 1_000_000_000 + 7
    assert nano_time(nanos) == "2024-05-01T10:00:00.000000007Z"


def test_the_forms_written_parse_back():
    assert parse_time(iso_time(EPOCH_2024 + 0.25)) == pytest.approx(EPOCH_2024 + 0.25)
    assert parse_time(nano_time(int((EPOCH_2024 + 0.75) * 1e9))) == pytest.approx(EPOCH_2024 + 0.75, abs=1e-6)
