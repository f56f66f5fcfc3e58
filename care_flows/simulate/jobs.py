"""Job traces for ``care simulate``: JOBS.csv reading and validation, the GAIA converter, Poisson arrivals.

JOBS.csv has one row per job::

    job_id,arrival,duration_h,slack_h,cpus,interruptible,instance_type,region
    j1,2023-06-01T10:00:00Z,1.0,24,1,false,m5.large,eu-south-2

- ``job_id``, ``arrival`` (ISO 8601 with an offset) and ``duration_h`` are required;
- then ``deadline`` (ISO 8601: the time by which the job must have *finished*) or ``slack_h``
  (deadline = arrival + duration_h + slack_h); a row gives one of them and may leave the other
  empty; a row giving both is accepted only when they agree (within a second);
- optional: ``cpus`` (default 1), ``interruptible`` (default false), ``instance_type`` (default
  :data:`DEFAULT_INSTANCE_TYPE`; it must be sold in the job's home region, and a simulated region
  that does not sell it is not an option for the job, with a ``warning:`` line), ``region`` (the
  job's home region; default: the simulation's).
- any other column (a ``team`` or ``owner`` of your own) is ignored and listed in
  :attr:`JobSet.notes` (``care simulate`` prints it as one ``warning:`` line); but a header that is
  a near miss of a known column (``cpu``, ``instance-type``, ``Slack_H``) is an error naming the
  column it resembles, since ignoring it would silently run every job on the default.

Fields are separated by ``,``; a file whose header has more ``;`` than ``,`` is read with ``;``
(as ``care forecast-usage`` does, :func:`care_flows.forecast.usage_io.sniff_separator`). Numbers
use ``.`` as the decimal mark (``1.5``); a ``;``-separated file may also use ``,`` (``1,5``), as
spreadsheets in comma-decimal locales write it.
Every bad row raises :class:`~care_flows.errors.DataError` naming the file (the path given, or
``JOBS.csv`` for text), the row's line in the file as an editor numbers it (the header is line 1,
so the first job is line 2; blank lines count) and the job id. A table given as a DataFrame is
numbered as the CSV it would be: row ``i`` (0-based) is line ``i + 2``.

>>> text = "job_id,arrival,duration_h,slack_h\\na,2023-06-01T10:00:00Z,1,24\\n"
>>> js = read_jobs_csv(text)
>>> js.frame[["job_id", "duration_h", "slack_h"]].to_dict("records")
[{'job_id': 'a', 'duration_h': 1.0, 'slack_h': 24.0}]
>>> str(js.frame["deadline"].iloc[0])
'2023-06-02 11:00:00+00:00'
>>> read_jobs_csv("job_id,arrival,duration_h,slack_h\\na,2023-06-01T10:00:00Z,x,24\\n")
Traceback (most recent call last):
...
care_flows.errors.DataError: JOBS.csv line 2 (job 'a'): duration_h 'x' is not a number; ...
>>> read_jobs_csv("job_id;arrival;duration_h;slack_h\\na;2023-06-01T10:00:00Z;1;24\\n").frame["slack_h"].tolist()
[24.0]
"""

from __future__ import annotations

import difflib
import io
import logging
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from care_flows.atomic import atomic_open

from care_flows.errors import ConfigError, DataError, UnknownRegionError
from care_flows.forecast.usage_io import FileText, csv_line_of, one_field_separator, sniff_separator
from care_flows.regions import region_info

__all__ = [
    "DEFAULT_INSTANCE_TYPE",
    "JOB_COLUMNS",
    "JobSet",
    "read_jobs_csv",
    "jobs_from_frame",
    "write_jobs_csv",
    "convert_gaia",
    "poisson_jobs",
    "check_instance_type",
    "MAX_HOURS",
    "MAX_CPUS",
    "MAX_JOBS",
]

_log = logging.getLogger(__name__)

DEFAULT_INSTANCE_TYPE = "m5.large"
"""Instance type of jobs that name none: per-vCPU power and price of an m5.large."""

MAX_HOURS = 87_840.0
"""Longest duration or slack a job may have (ten years, in hours): beyond it the value is a typo."""

MAX_CPUS = 1e6
"""Most CPUs a job may ask for: beyond it the value is a typo (and inf overflowed the energy figures)."""

MAX_JOBS = 1_000_000
"""Most jobs ``care simulate poisson`` generates: ten times the largest trace the evaluation replays
(GAIA's Azure 100k); a bigger trace would need gigabytes and hours to simulate."""

JOB_COLUMNS = ["job_id", "arrival", "duration_h", "deadline", "slack_h", "cpus", "interruptible", "instance_type", "region"]

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


@dataclass(frozen=True)
class JobSet:
    """Validated jobs: ``frame`` has every column of :data:`JOB_COLUMNS`, typed, in input order.

    ``arrival`` and ``deadline`` are UTC timestamps; ``slack_h`` = deadline - arrival - duration_h.
    ``source`` names the input in error messages (the path given, or ``JOBS.csv``); ``line_of``
    maps a job's 0-based position to its line in that file (without it: position + 2, the header
    being line 1). ``notes``: warnings about the input (columns it ignored), one line each.
    """

    frame: pd.DataFrame
    source: str = "JOBS.csv"
    line_of: Callable[[int], int] | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __len__(self) -> int:
        return len(self.frame)

    def at(self, i: int) -> str:
        """Where job ``i`` (0-based position) is, for an error message: ``JOBS.csv line 2``.

        >>> JobSet(pd.DataFrame({"job_id": ["a"]})).at(0)
        'JOBS.csv line 2'
        """
        return f"{self.source} line {_line(self.line_of, i)}"


def _line(line_of: Callable[[int], int] | None, i: int) -> int:
    return line_of(i) if line_of is not None else i + 2


def _normal_name(name: str) -> str:
    """A header folded for comparison: ``Instance-Type`` and ``instance type`` -> ``instance_type``."""
    return re.sub(r"[\s\-.]+", "_", name.strip().casefold())


_DEFAULTED = ("cpus", "interruptible", "instance_type", "region")
_NEEDED = {"job_id": "job_id", "arrival": "arrival", "duration_h": "duration_h", "deadline": "deadline or slack_h", "slack_h": "deadline or slack_h"}


def _check_columns(columns: list[str], source: str) -> tuple[str, ...]:
    """Headers that are not JOB_COLUMNS: a near miss of a known column that is absent is an error
    (ignoring it would run every job on that column's default); the others are ignored, and named
    in the returned note.

    >>> _check_columns(["job_id", "arrival", "duration_h", "slack_h", "team"], "JOBS.csv")
    ("JOBS.csv: ignored column(s) 'team' (not JOBS.csv columns; the known ones are job_id, arrival, duration_h, deadline, slack_h, cpus, interruptible, instance_type, region)",)
    >>> _check_columns(["job_id", "arrival", "duration_h", "slack_h", "cpu", "instance-type"], "j.csv")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: j.csv: columns 'cpu' (did you mean cpus?) and 'instance-type' (did you mean instance_type?) are not JOBS.csv columns; rename the headers, or they are ignored and every job gets the defaults
    """
    present = set(columns)
    near: list[tuple[str, str]] = []
    ignored: list[str] = []
    for name in columns:
        if name in JOB_COLUMNS:
            continue
        twice = re.fullmatch(r"(.+)\.\d+", name)
        if twice and twice.group(1) in present and twice.group(1) in JOB_COLUMNS:  # pandas renames a repeated header cpus -> cpus.1
            raise DataError(f"{source}: the header names column {twice.group(1)} twice; keep one")
        folded = _normal_name(name)
        absent = [c for c in JOB_COLUMNS if c not in present]
        if present & {"deadline", "slack_h"}:  # one of the two is enough: the other is not missing
            absent = [c for c in absent if c not in ("deadline", "slack_h")]
        # a spelling near a column with a default (cpus, instance_type, ...) is a typo that would silently use the
        # default; deadline, slack_h and region only when equal but for case and separators (deadline_h, region_id
        # and slack are a user's own columns as likely as typos)
        fuzzy = [c for c in absent if c not in ("deadline", "slack_h", "region")]
        # ... except when neither deadline nor slack_h is given (then 'dedline' is surely one of them), and a
        # spelling of region within a letter or two ('regin', not 'region_id')
        close = [c for c in absent if c in ("deadline", "slack_h") and not present & {"deadline", "slack_h"}]
        match = ([c for c in absent if c == folded] or difflib.get_close_matches(folded, fuzzy + close, n=1, cutoff=0.8)
                 or difflib.get_close_matches(folded, [c for c in absent if c == "region"], n=1, cutoff=0.88))
        if match:
            near.append((name, match[0]))
        else:
            ignored.append(name)
    if len(near) == 1:
        (name, known), = near
        why = ", or it is ignored and every job gets the default" if known in _DEFAULTED else f" (JOBS.csv needs {_NEEDED[known]})"
        raise DataError(f"{source}: column {name!r} is not a JOBS.csv column (did you mean {known}?); rename the header to {known}{why}")
    if near:
        what = " and ".join(f"{name!r} (did you mean {known}?)" for name, known in near)
        raise DataError(f"{source}: columns {what} are not JOBS.csv columns; rename the headers, "
                        "or they are ignored and every job gets the defaults")
    if not ignored:
        return ()
    return (f"{source}: ignored column(s) {', '.join(repr(c) for c in ignored)} (not JOBS.csv columns; the known ones are {', '.join(JOB_COLUMNS)})",)


def _fail(where: str, job: object, message: str) -> DataError:
    return DataError(f"{where} (job {job!r}): {message}")


_AGREE_S = 1.0
"""A row's deadline and slack_h may differ by this much (rounding in a spreadsheet) and still agree."""


def _numbers(df: pd.DataFrame, col: str, *, required: bool, at: Callable[[int], str], default: float | None = None) -> np.ndarray:
    raw = df[col] if col in df.columns else pd.Series([""] * len(df), index=df.index)
    text = raw.astype("string").fillna("").str.strip()
    out = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=float)
    bad = np.nonzero(np.isnan(out) & (text != "").to_numpy())[0]
    if len(bad):
        i = int(bad[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"{col} {text.iloc[i]!r} is not a number; give a decimal with a '.', such as 1.5")
    empty = (text == "").to_numpy()
    if required and empty.any():
        i = int(np.nonzero(empty)[0][0])
        raise _fail(at(i), df["job_id"].iloc[i], f"{col} is empty; give a number")
    if default is not None:
        out = np.where(empty, default, out)
    return out


_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d|[T ]\d\d(?::?\d\d(?::?\d\d(?:[.,]\d+)?)?)?\s*[+-]\d\d)$")
"""The end of a time that has a UTC offset: ``Z``, ``+HH:MM`` or ``+HHMM``, or ``+HH`` right after a time
of day (``T02:00:00+02``; a date's ``-01`` in ``2023-06-01`` is its day, not an offset), as pandas and
:func:`care_flows.timeutil.parse_time` read them."""


def _times(df: pd.DataFrame, col: str, at: Callable[[int], str]) -> pd.Series:
    raw = df[col] if col in df.columns else pd.Series([""] * len(df), index=df.index)
    text = raw.astype("string").fillna("").str.strip()
    parsed = pd.to_datetime(text.where(text != "", None), utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & (text != "")
    # a time without an offset is ambiguous: reject it like care_flows.timeutil.parse_time does
    no_offset = (text != "") & ~text.str.contains(_OFFSET, regex=True)
    bad = bad | no_offset
    if bad.any():
        i = int(np.nonzero(bad.to_numpy())[0][0])
        unparsable = bool(parsed.isna().iloc[i])
        why = "is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z" if unparsable else "has no UTC offset; add Z or +00:00"
        raise _fail(at(i), df["job_id"].iloc[i], f"{col} {text.iloc[i]!r} {why}")
    return parsed.reset_index(drop=True)


def jobs_from_frame(
    df: pd.DataFrame, *, known_regions: list[str] | None = None, source: str = "JOBS.csv", line_of: Callable[[int], int] | None = None
) -> JobSet:
    """Validate a JOBS table (columns as in JOBS.csv, values as text or typed) into a :class:`JobSet`.

    ``known_regions``: the regions the simulation has carbon data for; a ``region`` outside
    them is an error naming the row. ``line_of``: the file line of each row (0-based position ->
    line, as :func:`read_jobs_csv` passes it); without it row ``i`` is named ``line i + 2``.
    """

    def at(i: int) -> str:
        return f"{source} line {_line(line_of, i)}"

    df = df.reset_index(drop=True).copy()
    df.columns = [str(c).strip() for c in df.columns]
    notes = _check_columns(list(df.columns), source)
    missing = [c for c in ("job_id", "arrival", "duration_h") if c not in df.columns]
    if "deadline" not in df.columns and "slack_h" not in df.columns:
        missing.append("deadline or slack_h")
    if missing and (sep := one_field_separator(df.columns)):
        raise DataError(f"{source}: the file looks {sep}-separated (one header field {str(df.columns[0])[:60]!r}); "
                        "separate the fields with ',' (or ';'), e.g. job_id,arrival,duration_h,slack_h")
    if missing:
        raise DataError(
            f"{source} lacks column(s) {', '.join(missing)}; the header needs job_id,arrival,duration_h and deadline or slack_h "
            f"(found: {', '.join(df.columns) or 'none'})"
        )
    if df.empty:
        raise DataError(f"{source} has no rows; give at least one job")
    df["job_id"] = df["job_id"].astype("string").fillna("").str.strip()
    empty_id = (df["job_id"] == "").to_numpy()
    if empty_id.any():
        i = int(np.nonzero(empty_id)[0][0])
        raise _fail(at(i), "", "job_id is empty; give every job an id")
    dup = df["job_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.nonzero(dup)[0][0])
        first = int(np.nonzero((df["job_id"] == df["job_id"].iloc[i]).to_numpy())[0][0])
        raise _fail(at(i), df["job_id"].iloc[i], f"job_id repeats line {_line(line_of, first)}; job ids must be unique")
    arrival = _times(df, "arrival", at)
    if arrival.isna().any():
        i = int(np.nonzero(arrival.isna().to_numpy())[0][0])
        raise _fail(at(i), df["job_id"].iloc[i], "arrival is empty; give an ISO 8601 time such as 2023-06-01T12:00:00Z")
    duration = _numbers(df, "duration_h", required=True, at=at)
    bad = np.nonzero(~(duration > 0) | ~(duration <= MAX_HOURS))[0]
    if len(bad):
        i = int(bad[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"duration_h {duration[i]:g} must be a positive number of hours (at most {MAX_HOURS:g})")
    deadline = _times(df, "deadline", at)
    slack = _numbers(df, "slack_h", required=False, at=at)
    # a zero slack written back from a parsed table can come out as -5.6e-13 h: float noise, not a negative slack
    slack = np.where((slack < 0) & (slack > -1e-6), 0.0, slack)
    huge = np.nonzero(~np.isnan(slack) & ~(np.abs(slack) <= MAX_HOURS))[0]
    if len(huge):
        i = int(huge[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"slack_h {slack[i]:g} is not a usable number of hours (at most {MAX_HOURS:g})")
    neither = deadline.isna().to_numpy() & np.isnan(slack)
    if neither.any():
        i = int(np.nonzero(neither)[0][0])
        raise _fail(at(i), df["job_id"].iloc[i], "has neither deadline nor slack_h; give one of them")
    arr_ns = arrival.to_numpy(dtype="datetime64[ns]")
    dur_td = pd.to_timedelta(duration, unit="h").to_numpy(dtype="timedelta64[ns]")
    from_slack = arr_ns + dur_td + pd.to_timedelta(np.nan_to_num(slack), unit="h").to_numpy(dtype="timedelta64[ns]")
    dl_ns = np.where(deadline.isna().to_numpy(), from_slack, deadline.to_numpy(dtype="datetime64[ns]"))
    both = ~deadline.isna().to_numpy() & ~np.isnan(slack)
    disagree = np.nonzero(both & (np.abs((dl_ns - from_slack).astype(np.int64)) > _AGREE_S * 1e9))[0]
    if len(disagree):
        i = int(disagree[0])
        given = shown_time(dl_ns[i])
        implied = shown_time(from_slack[i])
        raise _fail(
            at(i),
            df["job_id"].iloc[i],
            f"deadline {given} and slack_h {slack[i]:g} disagree (arrival + duration_h + slack_h = {implied}); "
            "give deadline or slack_h, not both, or make them agree",
        )
    neg_slack = np.nonzero(~np.isnan(slack) & (slack < 0))[0]
    if len(neg_slack):
        i = int(neg_slack[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"slack_h {slack[i]:g} is negative; give 0 or more hours")
    before = np.nonzero(dl_ns < arr_ns)[0]
    if len(before):
        i = int(before[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"deadline {shown_time(dl_ns[i])} is before the arrival; give a later deadline")
    # a microsecond of slack: duration_h 0.4166666666666667 is 25 min + 1 ns, and a deadline 25 min after the arrival is met
    short = np.nonzero(dl_ns < arr_ns + dur_td - np.timedelta64(1, "us"))[0]
    if len(short):
        i = int(short[0])
        raise _fail(
            at(i),
            df["job_id"].iloc[i],
            f"deadline {shown_time(dl_ns[i])} is before arrival + duration_h ({duration[i]:g} h); the job cannot finish in time",
        )
    cpus = _numbers(df, "cpus", required=False, default=1.0, at=at)
    bad = np.nonzero(~(cpus > 0) | ~(cpus <= MAX_CPUS))[0]  # inf ended in an internal error (review 54d L1)
    if len(bad):
        i = int(bad[0])
        raise _fail(at(i), df["job_id"].iloc[i], f"cpus {cpus[i]:g} must be a positive number of CPUs (at most {MAX_CPUS:g})")
    if "interruptible" in df.columns:
        text = df["interruptible"].astype("string").fillna("").str.strip().str.lower()
        ok = text.isin(_TRUE | _FALSE).to_numpy()
        if not ok.all():
            i = int(np.nonzero(~ok)[0][0])
            raise _fail(at(i), df["job_id"].iloc[i], f"interruptible {df['interruptible'].iloc[i]!r} is not a boolean; use true or false")
        interruptible = text.isin(_TRUE).to_numpy()
    else:
        interruptible = np.zeros(len(df), dtype=bool)
    if "instance_type" in df.columns:
        itype = df["instance_type"].astype("string").fillna("").str.strip()
        itype = itype.where(itype != "", DEFAULT_INSTANCE_TYPE).astype(str).to_numpy()
    else:
        itype = np.full(len(df), DEFAULT_INSTANCE_TYPE, dtype=object)
    if "region" in df.columns:
        region = df["region"].astype("string").fillna("").str.strip().astype(str).to_numpy(dtype=object)
        for name in pd.unique(region):
            if not name:
                continue
            i = int(np.nonzero(region == name)[0][0])
            try:
                region_info(name)
            except UnknownRegionError as exc:
                raise _fail(at(i), df["job_id"].iloc[i], str(exc)) from None
            if known_regions is not None and name not in known_regions:
                raise _fail(
                    at(i), df["job_id"].iloc[i], f"region {name!r} has no carbon trace in this simulation; simulated regions: {', '.join(known_regions)}"
                )
    else:
        region = np.full(len(df), "", dtype=object)
    dl = pd.DatetimeIndex(dl_ns).tz_localize("UTC")
    frame = pd.DataFrame(
        {
            "job_id": df["job_id"].astype(str).to_numpy(),
            "arrival": pd.DatetimeIndex(arrival),
            "duration_h": duration,
            "deadline": dl,
            "slack_h": _no_float_noise((dl_ns - arr_ns).astype("timedelta64[ns]").astype(np.int64) / 3.6e12 - duration),
            "cpus": cpus,
            "interruptible": interruptible,
            "instance_type": itype.astype(str),
            "region": region.astype(str),
        }
    )
    return JobSet(frame, source=source, line_of=line_of, notes=notes)


def shown_time(t: pd.Timestamp | np.datetime64) -> str:
    """A time as an error message prints it: ISO 8601 in UTC, rounded to the microsecond (hours as
    nanoseconds carry float noise: arrival + 0.41666... h + slack_h is 25 min + 1 ns), as PLAN.csv is.

    >>> shown_time(pd.Timestamp("2024-01-01T08:35:00.000000001Z"))
    '2024-01-01T08:35:00+00:00'
    >>> shown_time(np.datetime64("2023-06-01T10:00:00.250000000"))
    '2023-06-01T10:00:00.250000+00:00'
    """
    t = pd.Timestamp(t)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.round("us").isoformat()


def _no_float_noise(hours: np.ndarray) -> np.ndarray:
    """Hours with float noise below a microsecond set to 0 (a zero slack must not read back as -5.6e-13)."""
    return np.where(np.abs(hours) < 1e-6 / 3600.0, 0.0, hours)


def read_jobs_csv(source: str | os.PathLike[str], *, known_regions: list[str] | None = None) -> JobSet:
    """Read and validate JOBS.csv from a path, or from CSV text (anything containing a newline).

    Errors name the path as given (``JOBS.csv`` for text). ``;``-separated files are read too
    (see the module docstring).
    """
    if isinstance(source, str) and "\n" in source:
        label, text = "JOBS.csv", source
    else:
        label = str(source)
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise DataError(f"jobs CSV {label!r} {what}; give the path of a CSV file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{label} cannot be read ({type(exc).__name__}); give a UTF-8 text CSV") from None
    sep = sniff_separator(text.lstrip("\ufeff").split("\n", 1)[0])
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
        if not isinstance(df.index, pd.RangeIndex):  # every row has one field more than the header: pandas made the first an index
            if (df.iloc[:, -1].str.strip() != "").any():
                row = int(np.flatnonzero((df.iloc[:, -1].str.strip() != "").to_numpy())[0])
                line = csv_line_of(text, sep, rows=len(df), skipinitialspace=True)(row)
                raise DataError(
                    f"{label} line {line} has one more '{sep}'-separated field than the header's {len(df.columns)} columns "
                    f"({df.iloc[row, -1]!r} at the end); remove the extra field or add its column name to the header"
                )
            # a trailing separator on every row (a spreadsheet export): an empty last field, dropped
            with warnings.catch_warnings():  # pandas warns of "loss of data": the field is empty in every row
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} is empty; give a header (job_id,arrival,duration_h,slack_h) and one job per row") from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{label} cannot be parsed as '{sep}'-separated CSV ({' '.join(str(exc).split())}); check the delimiter and quoting"
        ) from None
    if sep == ";":  # a ';'-separated export (European locale) writes decimals with a comma: 1,5 -> 1.5
        for col in _NUMBER_COLUMNS:
            if col in df.columns:
                df[col] = df[col].str.replace(r"^(\s*[-+]?\d*),(\d+\s*)$", r"\1.\2", regex=True)
    # the JobSet keeps a file's path (FileText), not its text, to number lines in an error (the engine checks jobs later too)
    again = text if isinstance(source, str) and "\n" in source else FileText.of(source)
    line_of = csv_line_of(again, sep, rows=len(df), skipinitialspace=True)
    return jobs_from_frame(df, known_regions=known_regions, source=label, line_of=line_of)


_NUMBER_COLUMNS = ("duration_h", "slack_h", "cpus")


def write_jobs_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a JOBS table (e.g. from :func:`convert_gaia`) atomically (temp file + rename)."""
    out = frame.copy()
    for col in ("arrival", "deadline"):
        if col in out.columns:
            out[col] = pd.DatetimeIndex(out[col]).tz_convert("UTC").map(lambda t: t.isoformat())
    with atomic_open(path) as fh:
        out.to_csv(fh, index=False)


def check_instance_type(instance_type: str, *, name: str = "instance_type") -> None:
    """A one-line error when ``instance_type`` is not in the power table, which a simulation needs for
    every job (so a JOBS.csv is not written with a type ``care simulate`` would refuse later).
    ``name`` is the option or argument it came from.

    >>> check_instance_type("m5.large")
    >>> check_instance_type("m5.lrage", name="--instance-type")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --instance-type 'm5.lrage' is not in the power table (did you mean 'm5.large'?); use a known EC2 type such as m5.large
    """
    import difflib

    from care_flows.data import power_table

    known = power_table().index
    if instance_type in known:
        return
    close = difflib.get_close_matches(str(instance_type), [str(k) for k in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{name} {instance_type!r} is not in the power table{hint}; use a known EC2 type such as {DEFAULT_INSTANCE_TYPE}")


def convert_gaia(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    start: str | pd.Timestamp,
    slack_h: float = 24.0,
    units: str = "auto",
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    interruptible: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """A GAIA job trace (``arrival_time,length,cpus``) as a JOBS table anchored at ``start``.

    ``units``: ``seconds`` (``gaia_pai_1k_jobs.csv``: 7 days of Alibaba PAI jobs in seconds),
    ``hours`` (``gaia_azure-100k_jobs.csv``), or ``auto`` (decided on the whole file, before
    ``limit``): hours when the largest arrival is at most 8784 (a leap year of hours), some
    values are fractional and all are multiples of 5 minutes; else seconds. The table's
    ``attrs["units"]`` says which units were used and, for ``auto``, ``attrs["units_note"]`` what
    was chosen and why (``care simulate convert-gaia`` prints it as a ``note:`` line); when ``auto``
    reads the trace as seconds and most lengths are then under 300 s, a warning on the
    ``care_flows.simulate.jobs`` logger says so (a whole-hour trace, e.g. ``length`` 2, reads as 2 s).
    Why the Azure trace is in hours (GAIA does not document it): its arrivals run from 0 to
    8759.92 (a 365-day year has 8760 h), every arrival and length is a multiple of 1/12
    (5 minutes, the Azure VM trace's sampling step), the shortest length is 0.1667 (10 min)
    and the longest 71.9 (just under the 72 h cap of that trace); read as seconds the whole
    year would last 2.4 hours and GAIA's own loader would reject its 10-minute jobs
    (``assert length >= 300 s``).
    A bad value (not a number, a negative arrival or length, a fractional or zero cpus) is a
    :class:`DataError` naming the file, its line as an editor numbers it (the header is line 1; a
    DataFrame's row ``i`` is line ``i + 2``), the column and the text found there.

    Job ids number the trace's rows: ``gaia-000003`` is its fourth job row, whatever was dropped
    before it. Zero-length jobs are dropped (there is nothing to schedule), so their ids are
    absent; one warning on the ``care_flows.simulate.jobs`` logger says how many and where
    (``care simulate convert-gaia`` prints it as a ``warning:`` line). ``limit`` keeps the first
    ``limit`` rows of the trace, zero-length ones included.

    >>> df = pd.DataFrame({"arrival_time": [0.0, 1.5], "length": [0.5, 2.0], "cpus": [2, 4]})
    >>> out = convert_gaia(df, start="2023-01-02T00:00Z", slack_h=6, units="hours")
    >>> out[["job_id", "arrival", "duration_h", "slack_h", "cpus"]].to_dict("records")[1]
    {'job_id': 'gaia-000001', 'arrival': Timestamp('2023-01-02 01:30:00+0000', tz='UTC'), 'duration_h': 2.0, 'slack_h': 6.0, 'cpus': 4}
    """
    check_instance_type(instance_type)
    if units not in ("auto", "hours", "seconds"):
        raise DataError(f"units {units!r} is not one of auto, hours, seconds")
    raw: Callable[[], pd.DataFrame]
    if isinstance(source, pd.DataFrame):
        df = source.copy().reset_index(drop=True)
        label, line = "GAIA trace", (lambda i: i + 2)  # numbered as the CSV it would be: the header is line 1
        raw = lambda: df  # noqa: E731
    else:
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise DataError(f"GAIA trace {str(path)!r} {what}; e.g. ../shared/data/workload_jobs/gaia_pai_1k_jobs.csv")
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"GAIA trace {str(path)!r} is empty; give the header arrival_time,length,cpus and one job per row") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"GAIA trace {str(path)!r} is not a readable UTF-8 CSV ({type(exc).__name__}); "
                            "expected the header arrival_time,length,cpus and one job per row") from None
        if not isinstance(df.index, pd.RangeIndex):  # pandas took the first field as an index: rows are too long
            raise DataError(f"GAIA trace {str(path)!r} has more fields per row than header columns ({', '.join(map(str, df.columns))}); "
                            "give exactly arrival_time,length,cpus on every row")
        label = f"GAIA trace {str(path)!r}"
        line = csv_line_of(FileText.of(path), rows=len(df))
        # the text as written, for an error message only (the values are parsed as before, bit for bit)
        raw = lambda: pd.read_csv(path, dtype=str, keep_default_na=False)  # noqa: E731
    need = ["arrival_time", "length", "cpus"]
    if not set(need) <= set(df.columns):
        found = ", ".join(map(str, df.columns)) or "none"
        semi = len(df.columns) == 1 and ";" in str(df.columns[0])
        fix = "the file looks ';'-separated: separate the fields with ','" if semi else "expected the header arrival_time,length,cpus"
        raise DataError(f"{label} lacks column(s) {', '.join(c for c in need if c not in df.columns)} (found: {found}); {fix}")
    if df.empty:
        raise DataError(f"{label} has a header but no rows; give at least one job")
    values = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in need}
    arr, length, cpus = values["arrival_time"], values["length"], values["cpus"]
    bad = np.nonzero(~np.isfinite(arr) | ~np.isfinite(length) | ~np.isfinite(cpus))[0]
    if len(bad):
        raise DataError(_not_a_number(raw(), int(bad[0]), values, need, f"{label} line {line(int(bad[0]))}"))
    bad = np.nonzero(arr < 0)[0]
    if len(bad):
        raise DataError(f"{label} line {line(int(bad[0]))}: arrival_time {arr[bad[0]]:g} is negative; give the job's arrival "
                        "as a time since the trace's start (>= 0; --start is time 0)")
    bad = np.nonzero(length < 0)[0]
    if len(bad):
        raise DataError(f"{label} line {line(int(bad[0]))}: length {length[bad[0]]:g} is negative; give the job's run time (>= 0)")
    bad = np.nonzero((cpus < 1) | (cpus != np.round(cpus)))[0]
    if len(bad):
        raise DataError(f"{label} line {line(int(bad[0]))}: cpus {cpus[bad[0]]:g} is not a whole number >= 1; fix the row")
    units_note = ""
    if units == "auto":
        units, units_note = _guess_units(arr, length)
        if units == "seconds" and (length > 0).any() and float(np.mean(length[length > 0] < 300)) > 0.5:
            short = int(np.sum((length > 0) & (length < 300)))
            _log.warning("%s: --units auto read the lengths as seconds, and %d of the %d jobs are then shorter than 300 s "
                         "(GAIA's own loader rejects those); if arrival_time and length are hours, give --units hours",
                         label, short, int(np.sum(length > 0)))
    if limit is not None:
        arr, length, cpus = arr[: int(limit)], length[: int(limit)], cpus[: int(limit)]
    scale = 1.0 if units == "hours" else 1 / 3600.0
    keep = length > 0  # zero-length jobs are dropped: there is nothing to schedule
    rows = np.nonzero(keep)[0]
    arr_h, len_h = arr[keep] * scale, length[keep] * scale
    huge = np.nonzero((np.abs(arr_h) > MAX_HOURS) | (len_h > MAX_HOURS) | (cpus[keep] > MAX_CPUS))[0]
    if len(huge):
        i = int(rows[huge[0]])
        raise DataError(f"{label} line {line(i)}: arrival_time {arr[i]:g}, length {length[i]:g} or cpus {cpus[i]:g} is beyond "
                        f"{MAX_HOURS:g} hours (ten years) or a million CPUs; check the row and --units ({units})")
    dropped = np.nonzero(~keep)[0]
    if len(dropped):
        where = ", ".join(str(line(int(i))) for i in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
        _log.warning("%s: dropped %d zero-length job(s) (%s %s): nothing to schedule; the other jobs keep their ids "
                     "(gaia-NNNNNN numbers the trace's rows from 0)", label, len(dropped), "line" if len(dropped) == 1 else "lines", where)
    if not len(rows):
        raise DataError(f"{label}: every job{' kept by --limit' if limit is not None else ''} has length 0; there is nothing to schedule")
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    out = pd.DataFrame(
        {
            "job_id": [f"gaia-{i:06d}" for i in rows],
            "arrival": t0 + pd.to_timedelta(np.round(arr_h * 3600.0), unit="s"),
            "duration_h": len_h,
            "slack_h": float(slack_h),
            "cpus": cpus[keep].astype(int),
            "interruptible": bool(interruptible),
            "instance_type": instance_type,
        }
    )
    out.attrs["units"] = units
    if units_note:
        out.attrs["units_note"] = units_note
    return out


def _guess_units(arr: np.ndarray, length: np.ndarray) -> tuple[str, str]:
    """``--units auto`` on a GAIA trace's arrival_time and length columns: ``(units, why)``, the units
    and one line saying what was chosen and why. Hours when the largest arrival_time is at most 8784
    (a leap year of hours), some value is fractional and every value is a multiple of 1/12 (5
    minutes); else seconds (``care simulate convert-gaia --help`` states the same rule).

    >>> _guess_units(np.array([0.0, 1.5]), np.array([0.5, 2.0]))[0]
    'hours'
    >>> _guess_units(np.array([0.0, 3.0, 10.0]), np.array([2.0, 5.0, 1.0]))
    ('seconds', '--units auto read arrival_time and length as seconds: every value is a whole number (a trace in hours has some fractional value such as 0.5); give --units hours if they are hours')
    """
    both = np.concatenate([arr, length])
    twelfths = both * 12.0
    fractional = bool(np.any(np.abs(both - np.round(both)) > 1e-9))
    last = float(np.nanmax(arr))
    on_grid = bool(np.allclose(twelfths, np.round(twelfths), atol=1e-6))
    if last <= 8784 and fractional and on_grid:
        return "hours", (f"--units auto read arrival_time and length as hours: the largest arrival_time is {last:g} (at most 8784, "
                         "a leap year of hours), some values are fractional and all are multiples of 5 minutes; "
                         "give --units seconds if they are seconds")
    if last > 8784:
        why = f"the largest arrival_time is {last:g}, more than 8784 (a leap year of hours)"
    elif not fractional:
        why = "every value is a whole number (a trace in hours has some fractional value such as 0.5)"
    else:
        why = "some values are not multiples of 1/12 (a trace in hours is on a 5-minute grid)"
    return "seconds", f"--units auto read arrival_time and length as seconds: {why}; give --units hours if they are hours"


def _not_a_number(raw: pd.DataFrame, i: int, values: dict[str, np.ndarray], columns: list[str], where: str) -> str:
    """The message for row ``i`` of a GAIA trace, which has a value that is not a finite number: the
    column and the text written there (``arrival_time 'abc'``), or a repeated header."""
    text = {c: str(raw[c].iloc[i]).strip() if c in raw.columns and i < len(raw) else "" for c in columns}
    if [text[c].casefold() for c in columns] == [c.casefold() for c in columns]:
        return f"{where} repeats the header {','.join(columns)}; remove that line"
    col = next(c for c in columns if not math.isfinite(values[c][i]))
    found = text[col]
    if found in ("", "nan", "<NA>", "None") and not isinstance(raw[col].iloc[i], str):  # a DataFrame's missing value
        found = ""
    if found == "":
        return f"{where}: {col} is empty; give a number on every row (arrival_time,length,cpus)"
    try:
        float(found)
        why = "is not a finite number"
    except ValueError:
        why = "is not a number"
    return f"{where}: {col} {found!r} {why}; give a number such as 1.5 (arrival_time,length,cpus)"


def poisson_jobs(
    n: int = 1000,
    *,
    window_h: float = 10 / 60,
    start: str | pd.Timestamp = "2023-06-01T08:00Z",
    duration_h: float = 1.0,
    slack_h: float = 24.0,
    cpus: int = 1,
    interruptible: bool = False,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    seed: int = 0,
) -> pd.DataFrame:
    """``n`` jobs (1 to :data:`MAX_JOBS`) with Poisson arrivals (exponential gaps, rate n / window_h) from ``start``.

    The default reproduces the reference study's load: 1,000 requests in 10 minutes, from
    2023-06-01 08:00 UTC, as ``care simulate poisson`` (the README's and TUTORIAL's example) does.

    >>> df = poisson_jobs(1000, seed=1)
    >>> len(df), bool(df["arrival"].is_monotonic_increasing)
    (1000, True)
    >>> span_h = (df["arrival"].iloc[-1] - df["arrival"].iloc[0]).total_seconds() / 3600
    >>> 0.1 < span_h < 0.25
    True
    >>> str(df["arrival"].iloc[0])
    '2023-06-01 08:00:00+00:00'
    """
    if n <= 0 or not math.isfinite(window_h) or window_h <= 0:
        raise DataError(f"poisson_jobs needs n > 0 and window_h > 0 (got n={n}, window_h={window_h:g})")
    if n > MAX_JOBS:
        raise DataError(f"poisson_jobs needs n <= {MAX_JOBS} (got n={n}): more jobs than the simulator can hold")
    if not math.isfinite(duration_h) or not 0 < duration_h <= MAX_HOURS:
        raise DataError(f"poisson_jobs needs 0 < duration_h <= {MAX_HOURS:g} (got {duration_h:g})")
    if not math.isfinite(slack_h) or not 0 <= slack_h <= MAX_HOURS:
        raise DataError(f"poisson_jobs needs 0 <= slack_h <= {MAX_HOURS:g} (got {slack_h:g})")
    if cpus <= 0:
        raise DataError(f"poisson_jobs needs cpus > 0 (got {cpus})")
    check_instance_type(instance_type)
    rng = np.random.default_rng(seed)
    gaps_h = rng.exponential(window_h / n, size=n)
    t_h = np.cumsum(gaps_h) - gaps_h[0]
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    return pd.DataFrame(
        {
            "job_id": [f"poisson-{i:06d}" for i in range(n)],
            "arrival": t0 + pd.to_timedelta(np.round(t_h * 3.6e6), unit="ms"),
            "duration_h": float(duration_h),
            "slack_h": float(slack_h),
            "cpus": int(cpus),
            "interruptible": bool(interruptible),
            "instance_type": instance_type,
        }
    )
