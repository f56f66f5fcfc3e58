"""Parsing and normalising times and durations (UTC everywhere).

>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
>>> parse_time("2023-06-01T12:00:00Z").isoformat()
'2023-06-01T12:00:00+00:00'
>>> iso(parse_time("2023-06-01T14:00:00+02:00"))
'2023-06-01T12:00:00+00:00'
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError

__all__ = ["parse_duration", "duration_arg", "parse_time", "iso", "utcnow", "to_timestamp", "format_duration"]

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|d|h|m|s)")


MAX_DURATION = timedelta(days=3660)
"""Longest duration CaRE accepts (about ten years): beyond it a value is a typo, not a plan."""


_DAY_OPTIONS = frozenset({"--since"})
"""Options whose values are usually days (``care report --since 7d``): their "no unit" hint starts with ``d``."""


def parse_duration(text: str | float | int | timedelta, *, name: str = "duration", subsecond: bool = False) -> timedelta:
    """Parse ``"2h"``, ``"90m"``, ``"300s"``, ``"1h30m"``, ``"1.5h"``, ``"2d"`` or seconds.

    Negative, empty, NaN or absurdly long (> 10 years) durations raise :class:`ConfigError`
    naming the value. A command-line option (``name`` starting with ``--``) needs a unit: ``2``
    there is an error, not two seconds; and it is at least a second unless ``subsecond`` (a
    ``--duration 0.0001s`` is a unit mistake, not a 100 us job).

    >>> parse_duration("1h30m"), parse_duration(90)
    (datetime.timedelta(seconds=5400), datetime.timedelta(seconds=90))
    >>> parse_duration("2", name="--duration")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --duration '2' has no unit; give e.g. 2h, 2m or 2s
    >>> parse_duration("7", name="--since")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --since '7' has no unit; give e.g. 7d, 7h or 7m
    >>> parse_duration("0", name="--duration")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --duration '0' must be positive and have a unit; give e.g. 1h, 30m or 300s
    >>> parse_duration("0.5s", name="--duration")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --duration '0.5s' is under one second; CaRE plans in seconds or more: check the unit (e.g. 0.5h or 0.5m)
    """
    if name.startswith("--") and isinstance(text, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
        n = text.strip()
        if float(n) == 0:  # "0h" would be refused next: suggest a value that works
            raise ConfigError(f"{name} {text!r} must be positive and have a unit; give e.g. 1h, 30m or 300s")
        units = ("d", "h", "m") if name in _DAY_OPTIONS else ("h", "m", "s")  # a report period is days, a job hours
        raise ConfigError(f"{name} {text!r} has no unit; give e.g. {n}{units[0]}, {n}{units[1]} or {n}{units[2]}")
    try:
        value = _parse_duration(text, name=name)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name} {text!r} is not a usable duration; use e.g. 2h, 90m, 300s or 1h30m") from None
    if name.startswith("--") and not subsecond and timedelta(0) < value < timedelta(seconds=1):
        raw = str(text).strip().lower()
        hint = f"check the unit (e.g. {raw[:-1]}h or {raw[:-1]}m)" if re.fullmatch(r"\d*\.?\d+s", raw) else "give 1s or more"
        raise ConfigError(f"{name} {text!r} is under one second; CaRE plans in seconds or more: {hint}")
    if value > MAX_DURATION:
        raise ConfigError(f"{name} {text!r} is longer than {MAX_DURATION.days} days; give a realistic duration such as 24h")
    return value


def duration_arg(value: Any, *, name: str = "duration") -> pd.Timedelta:
    """A duration argument of the Python API: a ``timedelta``, ``pd.Timedelta`` or
    ``np.timedelta64``, text such as ``"2h"`` (or what pandas reads, ``"2 hours"``), or a number
    of **seconds**, as in a policy (pandas would read a bare number as nanoseconds), at least one.
    Else a one-line :class:`ConfigError` naming it.

    >>> duration_arg("90m"), duration_arg(7200), duration_arg(np.timedelta64(30, "m"))
    (Timedelta('0 days 01:30:00'), Timedelta('0 days 02:00:00'), Timedelta('0 days 00:30:00'))
    >>> duration_arg(0.5)
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: duration 0.5 is under one second (a number is seconds); give e.g. 2h, 90m or 300s
    """
    if isinstance(value, (np.timedelta64, pd.offsets.Tick)):  # Tick: a fixed offset such as a series' index.freq, pd.offsets.Hour(2)
        value = pd.Timedelta(value)
    if isinstance(value, (np.integer, np.floating)):
        value = float(value)
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name} {value!r} is not a duration; give e.g. 2h, 90m or 300s")
    try:
        td = pd.Timedelta(parse_duration(value, name=name))
    except ConfigError:
        if not isinstance(value, str):
            raise
        try:  # what pandas reads ("2 hours", "1 day"), as before
            td = pd.Timedelta(value)
        except ValueError:
            raise ConfigError(f"{name} {value!r} is not a duration; use e.g. 2h, 90m, 300s or 1h30m") from None
        if td.total_seconds() < 0:
            raise ConfigError(f"{name} {value!r} is negative; give a positive duration such as 1h") from None
    if td <= pd.Timedelta(0):
        raise ConfigError(f"{name} {value!s} must be positive; give e.g. 2h")
    if td < pd.Timedelta(seconds=1) and isinstance(value, (int, float)):  # a unit mistake (2 meant as hours?)
        raise ConfigError(f"{name} {value!r} is under one second (a number is seconds); give e.g. 2h, 90m or 300s")
    return td


def _parse_duration(text: str | float | int | timedelta, *, name: str) -> timedelta:
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        value = timedelta(seconds=float(text))
    else:
        raw = str(text).strip().lower()
        if raw.startswith("-"):
            raise ConfigError(f"{name} {text!r} is negative; give a positive duration such as 1h")
        if re.fullmatch(r"-?\d+(\.\d+)?", raw):
            value = timedelta(seconds=float(raw))
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or not raw:
                raise ConfigError(f"{name} {text!r} is not a duration; use e.g. 2h, 90m, 300s or 1h30m")
            value = timedelta(seconds=seconds)
    if value.total_seconds() < 0:
        raise ConfigError(f"{name} {text!r} is negative; give a positive duration such as 1h")
    return value


def parse_time(text: str | datetime | pd.Timestamp, *, name: str = "time") -> pd.Timestamp:
    """Parse an ISO 8601 time to a UTC :class:`pandas.Timestamp`.

    A time without an offset is rejected (ambiguous); give ``Z`` or ``+HH:MM``. So are words
    pandas would read (``now``, ``today``) and years outside ``_YEARS`` (a typo such as 9999
    would overflow the nanosecond timestamps planning uses).

    >>> parse_time("9999-01-01T00:00Z", name="--now")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --now '9999-01-01T00:00Z' is outside the years 1900-2199; check the year
    >>> parse_time(pd.NaT, name="deadline")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: deadline 'NaT' is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z

    A date alone names no instant: the error shows the time to give, so following it works
    (adding only ``Z`` to a date would not parse).

    >>> parse_time("01/06/2023 08:00Z", name="--now")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --now '01/06/2023 08:00Z' is not an ISO 8601 time (year-month-day first); use e.g. 2023-06-01T12:00:00Z
    >>> parse_time("2023-06-01", name="--now")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --now 2023-06-01 has no UTC offset and no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z
    >>> parse_time("2023-06-01Z", name="--now")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --now '2023-06-01Z' has no time of day; give a time with an offset, e.g. 2023-06-01T00:00:00Z
    """
    if isinstance(text, (datetime, pd.Timestamp)):
        ts = pd.Timestamp(text)
    else:
        raw = str(text).strip()
        if not raw[:1].isdigit():  # ISO 8601 starts with the year; pandas would read 'now', 'today'...
            raise ConfigError(f"{name} {text!r} is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z")
        date_only = _DATE_ONLY.fullmatch(raw)
        if date_only and _is_date(*date_only.groups()[:3]):  # an impossible date (2023-13-45) is "not an ISO 8601 time" below
            year, month, day_of_month, offset = date_only.groups()
            example = f"give a time with an offset, e.g. {year}-{month}-{day_of_month}T00:00:00Z"
            if offset:
                raise ConfigError(f"{name} {text!r} has no time of day; {example}")
            raise ConfigError(f"{name} {text!s} has no UTC offset and no time of day; {example}")
        if not _ISO_TIME.fullmatch(raw):  # pandas reads "01/06/2023 08:00Z" month first: 6 January, not 1 June
            raise ConfigError(f"{name} {text!r} is not an ISO 8601 time (year-month-day first); use e.g. 2023-06-01T12:00:00Z")
        try:
            ts = pd.Timestamp(raw)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"{name} {text!r} is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z") from exc
    if ts is pd.NaT:
        raise ConfigError(f"{name} {str(text)!r} is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z")
    if ts.tzinfo is None:
        raise ConfigError(f"{name} {text!s} has no UTC offset; add Z or +00:00")
    ts = ts.tz_convert("UTC")
    if not _YEARS[0] <= ts.year <= _YEARS[1]:
        raise ConfigError(f"{name} {str(text)!r} is outside the years {_YEARS[0]}-{_YEARS[1]}; check the year")
    return ts


_ISO_TIME = re.compile(r"\d{4}(?:-?\d{2}-?\d{2}|[-/]\d{1,2}[-/]\d{1,2})(?:\s*[T ]\s*\d{1,2}(?::?\d{2}(?::?\d{2}(?:[.,]\d*)?)?)?)?"
                       r"\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?", re.IGNORECASE)
"""Year-first times (ISO 8601 ``2023-06-01T12:00:00.5+02:00``, ``20230601T1200Z``, also ``2023-06-01 12:00 UTC``,
``2023/6/1 12:00Z``) :func:`parse_time` passes on to pandas, which would also read ``01/06/2023`` (month first)."""

_DATE_ONLY = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(Z|[+-]\d{2}(?::?\d{2})?)?", re.IGNORECASE)
"""A calendar date, optionally followed by an offset, but no time of day (``2023-06-01``, ``2023-06-01Z``,
``20230601``)."""

def _is_date(year: str, month: str, day: str) -> bool:
    """Whether ``year-month-day`` is a calendar date.

    >>> _is_date("2023", "06", "01"), _is_date("1234", "56", "78"), _is_date("2023", "02", "29")
    (True, False, False)
    """
    try:
        datetime(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


_YEARS = (1900, 2199)
"""Years :func:`parse_time` accepts: beyond them a time is a typo (and near 2262 it would overflow
pandas' nanosecond timestamps once a horizon is added)."""


def to_timestamp(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp from an aware datetime (naive ones are taken as UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def iso(value: datetime | pd.Timestamp) -> str:
    """ISO 8601 in UTC with an explicit ``+00:00`` offset."""
    return to_timestamp(value).isoformat()


def utcnow() -> pd.Timestamp:
    """Now, in UTC (a function so tests can inject a clock instead)."""
    return pd.Timestamp(datetime.now(timezone.utc))


def format_duration(value: timedelta | pd.Timedelta | float | int) -> str:
    """A duration written the way users type it (hours, minutes, seconds), the inverse of :func:`parse_duration`.

    Numbers are seconds. Whole days stay in hours (``30h``, not ``1d6h``) so messages echo the input.

    >>> format_duration(timedelta(hours=30)), format_duration(pd.Timedelta("90min")), format_duration(600)
    ('30h', '1h30m', '10m')
    >>> format_duration(0), format_duration(0.5), format_duration(timedelta(hours=-2))
    ('0s', '0.5s', '-2h')
    """
    seconds = value.total_seconds() if isinstance(value, (timedelta, pd.Timedelta)) else float(value)
    sign, seconds = ("-" if seconds < 0 else ""), round(abs(seconds), 3)
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "", f"{round(secs, 3):g}s" if secs else ""]
    return sign + ("".join(parts) or "0s")
