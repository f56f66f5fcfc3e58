"""Review 38c L1: a date without a time of day gets advice that works when followed."""

from __future__ import annotations

import pytest

from care_flows.errors import ConfigError
from care_flows.timeutil import parse_time


@pytest.mark.parametrize(("text", "message"), [
    ("2023-06-01", "--now 2023-06-01 has no UTC offset and no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z"),
    ("2023-06-01Z", "--now '2023-06-01Z' has no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z"),
    ("2023-06-01+02:00", "--now '2023-06-01+02:00' has no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z"),
    # review 38d L4: the basic format too (was "add Z", and 20230601Z then failed)
    ("20230601", "--now 20230601 has no UTC offset and no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z"),
    ("20230601Z", "--now '20230601Z' has no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z"),
])
def test_a_date_alone_is_told_the_full_time_to_give(text, message):
    with pytest.raises(ConfigError) as info:
        parse_time(text, name="--now")
    assert str(info.value) == message
    assert parse_time("2023-06-01T00:00:00Z", name="--now").isoformat() == "2023-06-01T00:00:00+00:00"
    assert parse_time("20230601T000000Z", name="--now").isoformat() == "2023-06-01T00:00:00+00:00"  # the basic format with a time


def test_a_time_without_offset_keeps_its_message():
    with pytest.raises(ConfigError, match=r"^--now 2023-06-01T08:00 has no UTC offset; add Z or \+00:00$"):
        parse_time("2023-06-01T08:00", name="--now")


def test_an_impossible_date_is_not_sent_to_add_a_time():
    """Review 38f: '1234-56-78' was told to give 1234-56-78T00:00:00Z, which fails again."""
    with pytest.raises(ConfigError, match=r"^--now '1234-56-78' is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z$"):
        parse_time("1234-56-78", name="--now")
