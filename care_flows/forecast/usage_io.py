"""Loading resource-usage traces from CSV files into a :class:`UsageSeries`.

Accepted layouts (all checked against the traces in ``shared/data/usage_traces``):

- plain comma-separated files with or without a timestamp column (the Google 2019 aggregate has
  none: row ``i`` is ``i x step``);
- timestamps as ISO 8601 strings (NAB ``2014-02-14 14:30:00``; a time without an offset is read
  as UTC; a column that mixes times with and without an offset is a :class:`DataError`, while
  different offsets, e.g. across a DST change, are fine) or as Unix epoch numbers (Azure 2019
  ``0, 300, ...``). Epoch values above 1e11 are taken as milliseconds, smaller ones as seconds;
  this is why the Bitbrains files, whose header says ``Timestamp [ms]`` but whose values are
  seconds, load correctly. Epoch numbers whose spacing as seconds is over an hour but, divided
  by 1000, a whole number of seconds up to an hour (relative milliseconds ``0, 300000, ...``)
  are a :class:`DataError`, unless the given step matches that spacing;
- the Bitbrains GWA-T-12 layout, ``;`` followed by a tab between fields (column names are
  stripped of the whitespace), and ``;`` files with quoted headers that contain commas.

Usage values must be finite, not negative and at most
``care_flows.forecast.usage.MAX_USAGE_VALUE`` (1e100). Rows are taken as consecutive steps of ``step_s``
seconds (given, or the median timestamp difference, or 300 s without timestamps); a given step
more than 5 % off the timestamps' median spacing is a :class:`ConfigError` (one that agrees is
used as the step). A spacing over 1.5 steps (one missing row or more) is a gap: gaps are
reported in ``UsageSeries.gaps`` and as a warning, not filled and not refused: filling would
invent usage (``care forecast-usage`` puts them in its JSON, ``gaps`` and
``origins_across_gaps``). Rows less than half a step after the previous one are a warning that
names the first of them.

Messages that point at one row of the file name its line as an editor numbers it: the header is
line 1, so the first data row is line 2 (blank lines and a quoted field that spans lines count,
see :func:`csv_data_lines`).

>>> import io
>>> text = "timestamp,value\\n2014-02-14 14:30:00,1.0\\n2014-02-14 14:35:00,2.5\\n"
>>> s = load_usage_csv(io.StringIO(text), "value", timestamp_column="timestamp")
>>> s.values.tolist(), s.step_s, s.timestamps[0].isoformat()
([1.0, 2.5], 300.0, '2014-02-14T14:30:00+00:00')
>>> s = load_usage_csv(io.StringIO("Timestamp [ms];\\tCPU [%]\\n1372629804;\\t1.5\\n1372630104;\\t0.5\\n"), "CPU [%]",
...                    timestamp_column="Timestamp [ms]")
>>> s.timestamps[0].isoformat(), s.step_s
('2013-06-30T22:03:24+00:00', 300.0)
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError

__all__ = [
    "UsageSeries",
    "StepMismatchError",
    "load_usage_csv",
    "read_usage_table",
    "parse_timestamps",
    "sniff_separator",
    "one_field_separator",
    "csv_data_lines",
    "csv_line_of",
    "CsvLines",
    "FileText",
]

log = logging.getLogger(__name__)

_EPOCH_MS_ABOVE = 1e11  # 1e11 s is year 5138; 1e11 ms is 1973
_EPOCH_MIN_S = (pd.Timestamp.min - pd.Timestamp(0)).total_seconds() + 1  # 1677-09-21: the span of a ns timestamp
_EPOCH_MAX_S = (pd.Timestamp.max - pd.Timestamp(0)).total_seconds() - 1  # 2262-04-11
_MAX_PLAUSIBLE_STEP_S = 3600.0  # a usage trace sampled more coarsely than hourly is read as a unit mistake (see parse_timestamps)
# an ISO time that carries a UTC offset: a time part (after 'T' or a space), then 'Z' or +hh[[:]mm]
_ISO_OFFSET = r"[Tt\s]\d\d(?::?\d\d){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


class StepMismatchError(ConfigError):
    """A given step more than 5 % off the timestamps' median spacing (``given_s``, ``inferred_s``)."""

    def __init__(self, message: str, *, given_s: float, inferred_s: float) -> None:
        super().__init__(message)
        self.given_s = given_s
        self.inferred_s = inferred_s


def _duration_words(seconds: float) -> str:
    """``3.47 days``, ``5 h``, ``300 s``: a spacing in the unit a person would use.

    >>> _duration_words(300000), _duration_words(18000), _duration_words(300)
    ('3.47 days', '5 h', '300 s')
    """
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds:g} s"


@dataclass(frozen=True)
class UsageSeries:
    """One usage column: ``values`` (float, one per step), ``step_s``, optional UTC ``timestamps``."""

    values: np.ndarray
    step_s: float
    column: str
    timestamps: pd.DatetimeIndex | None = None
    gaps: list[tuple[int, float]] = field(default_factory=list)  # (row index, gap seconds)

    def __len__(self) -> int:
        return len(self.values)


def _count_unquoted(line: str, char: str) -> int:
    """How often ``char`` occurs in ``line`` outside double-quoted fields.

    >>> _count_unquoted('time;"cpu (%, avg)";"mem (%, avg)"', ","), _count_unquoted('a,"b;c"', ";")
    (0, 0)
    """
    count, quoted = 0, False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c == char and not quoted:
            count += 1
    return count


def sniff_separator(header: str) -> str:
    """``;`` when the header line has more semicolons than commas outside quotes (Bitbrains,
    spreadsheets saved in locales whose decimal mark is a comma), else ``,``.

    >>> sniff_separator("Timestamp [ms];\tCPU cores;\tCPU [%]"), sniff_separator("job_id,arrival,duration_h")
    (';', ',')
    >>> sniff_separator('time;"cpu (%, avg)";"mem (%, avg)"')
    ';'
    """
    return ";" if _count_unquoted(header, ";") > _count_unquoted(header, ",") else ","


def _an_hour_back(diffs: np.ndarray, i: int) -> bool:
    """Whether step ``i`` of a series of time differences (seconds) goes back by about an hour, as
    local wall-clock times do at a daylight-saving change: to within two of its usual steps.

    >>> d = np.r_[np.full(20, 300.0), -3300.0, np.full(5, 300.0)]  # 02:55 -> 02:00 in a 5-minute series
    >>> _an_hour_back(d, 20), _an_hour_back(np.r_[np.full(20, 300.0), -300.0], 20)
    (True, False)
    """
    forward = diffs[diffs > 0]
    step = float(np.median(forward)) if forward.size else 0.0
    return 3600 - 2 * step <= -float(diffs[i]) <= 3600


def one_field_separator(columns: Sequence[Any]) -> str | None:
    """How a CSV whose header pandas read as ONE field looks separated (``"';'"`` or ``"tab"``), or
    None: a comma reader given a ``;``- or tab-separated file sees one column named by the whole
    header line, and then calls the columns it holds missing (review 44a M1).

    >>> one_field_separator(["job_id\\tarrival\\tduration_h"]), one_field_separator(["a;b"]), one_field_separator(["a", "b"])
    ('tab', "';'", None)
    """
    if len(columns) != 1:
        return None
    head = str(columns[0])
    return "';'" if ";" in head else "tab" if "\t" in head else None


def csv_data_lines(text: str, sep: str = ",", *, skipinitialspace: bool = False) -> list[int]:
    """The line of ``text`` (1-based, as an editor numbers them) on which each data row starts, for
    a CSV read by pandas with its header on the first non-blank line: blank and whitespace-only
    lines are skipped (pandas skips them too; a line holding ``""`` is a row), and a quoted field
    that spans lines takes all of them. ``[]`` when the text does not parse as CSV.

    >>> csv_data_lines("a,b\\n1,2\\n\\n3,4\\n")
    [2, 4]
    >>> csv_data_lines('\\na;b\\n1;"x\\ny"\\n3;4', ";")
    [3, 5]
    >>> csv_data_lines('a\\n1\\n""\\n\\n3\\n')
    [2, 3, 5]
    """
    out: list[int] = []
    body = text.lstrip("\ufeff")
    raw_lines = re.split(r"\r\n|\r|\n", body)  # the line ends the csv module counts
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=sep, skipinitialspace=skipinitialspace)
    start, header = 1, False
    try:
        for record in reader:
            one_line = reader.line_num == start
            blank = not record or (one_line and len(record) == 1 and 0 < start <= len(raw_lines) and not raw_lines[start - 1].strip())
            if not blank:
                if header:
                    out.append(start)
                header = True
            start = reader.line_num + 1
    except csv.Error:
        return []
    return out


@dataclass(frozen=True)
class FileText:
    """A regular file's text, to read again only to word an error: ``FileText.of(path)`` notes the
    file's size, modification time and inode; calling it reads the file again only if it is still that
    file, else gives ``""`` (so the line falls back to the row's position), never an exception. A
    pipe or FIFO is not read twice (``of`` gives None).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
    ...     _ = fh.write("a\\n1\\n")
    >>> again = FileText.of(fh.name); again()
    'a\\n1\\n'
    >>> os.remove(fh.name); again()
    ''
    """

    path: str
    size: int
    mtime_ns: int
    inode: int = 0  # another file of the same size and time (cp -p) is not the one read

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "FileText | None":
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns, st.st_ino) != (self.size, self.mtime_ns, self.inode):
                return ""
            with open(self.path, encoding="utf-8-sig", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""


class CsvLines:
    """Data row position (0-based, as pandas read the CSV) -> its line in the file
    (:func:`csv_data_lines`), worked out at the first lookup from ``text``: the text, or a
    :class:`FileText` to read the file again only to word an error. When the lines found are not
    ``rows`` (the number of rows pandas read), or the text cannot be had or parsed, a row is taken
    to be on line ``position + 2`` (the header on line 1, no blank lines). Picklable.

    >>> line_of = CsvLines("a\\n\\n1\\n2\\n", rows=2)
    >>> line_of(0), line_of(1), CsvLines(None)(0)
    (3, 4, 2)
    """

    def __init__(self, text: "str | FileText | None", sep: str = ",", *, rows: int | None = None, skipinitialspace: bool = False) -> None:
        self.text, self.sep, self.rows, self.skipinitialspace = text, sep, rows, skipinitialspace
        self._lines: list[int] | None = None
        self._done = False

    def __call__(self, i: int) -> int:
        if not self._done:
            raw = self.text() if callable(self.text) else (self.text or "")
            lines = csv_data_lines(raw, self.sep, skipinitialspace=self.skipinitialspace)
            self._lines = lines if lines and (self.rows is None or len(lines) == self.rows) else None
            self._done = True
        lines = self._lines
        return lines[i] if lines is not None and 0 <= i < len(lines) else i + 2


def csv_line_of(text: "str | FileText | None", sep: str = ",", *, rows: int | None = None,
                skipinitialspace: bool = False) -> CsvLines:
    """:class:`CsvLines` of ``text`` (the text, or a :class:`FileText` of the file read).

    >>> line_of = csv_line_of("a\\n\\n1\\n2\\n", rows=2)
    >>> line_of(0), line_of(1)
    (3, 4)
    """
    return CsvLines(text, sep, rows=rows, skipinitialspace=skipinitialspace)


def _source_name(source: str | os.PathLike[str] | IO[str]) -> str:
    """The path as the user gave it (``Path.name`` would be only the last part), an open file's name, or ``<text>``."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return "<text>" if isinstance(source, io.StringIO) else str(getattr(source, "name", "<text>"))


def read_usage_table(source: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """Read a usage CSV (``,`` or Bitbrains ``;``+tab separated) with stripped column names.

    Raises :class:`DataError` (one line) when the file is missing, empty or not a table.
    """
    return _read_usage_table(source)[0]


def _read_usage_table(source: str | os.PathLike[str] | IO[str]) -> tuple[pd.DataFrame, Callable[[int], int]]:
    """:func:`read_usage_table`, and the file line of each data row (:func:`csv_line_of`)."""
    name = _source_name(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        else:
            text = source.read()
    except FileNotFoundError as exc:
        raise DataError(f"usage CSV {name} not found; give an existing file with --csv") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"usage CSV {name} cannot be read ({type(exc).__name__}); give a UTF-8 text CSV") from exc
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise DataError(f"usage CSV {name} is empty or has no header line; the first line must name the columns")
    sep = sniff_separator(first)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"usage CSV {name} is malformed ({msg}); every row needs the header's number of '{sep}'-separated fields") from exc
    if not isinstance(df.index, pd.RangeIndex):  # pandas took the first field(s) as an index: rows are longer than the header
        raise DataError(f"usage CSV {name} has more '{sep}'-separated fields per row than header columns; "
                        "every row needs the header's number of fields (the values would land under the wrong columns)")
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise DataError(f"usage CSV {name} has a header but no rows; give at least one period of data")
    return df, csv_line_of(text, sep, rows=len(df), skipinitialspace=True)


def parse_timestamps(
    raw: pd.Series, *, column: str, step_s: float | None = None, line_of: Callable[[int], int] | None = None
) -> pd.DatetimeIndex:
    """ISO strings (naive = UTC) or Unix epoch seconds (milliseconds above 1e11) -> UTC index.

    A column whose values are mostly numbers is read as epoch numbers: a cell that is not a
    finite number (``n/a``, ``nan``, ``inf``) or lies outside the times pandas can hold (years
    1677-2262) is a :class:`DataError` naming that cell and its line in the file: ``line_of`` maps
    a 0-based position to it (:func:`csv_line_of`); without it the header is taken to be line 1,
    so the first value is line 2. The unit is chosen from the finite values only. Epoch seconds whose
    median spacing is over an hour but, divided by 1000, a whole number of seconds up to an hour
    look like (relative) milliseconds and are a :class:`DataError`, unless ``step_s`` (the step
    the caller was given) matches that spacing within 5 %. Any other column is ISO 8601, and the
    error names the first cell that is neither (or, when each cell is one or the other, the
    first number among the ISO times); a column that mixes times with and without a UTC offset
    is a :class:`DataError` naming the first cell of the rarer kind.

    >>> parse_timestamps(pd.Series(["0", "300", "n/a", "900"]), column="t")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: timestamp column 't' has 1 value(s) that are not epoch numbers, first at line 4 ('n/a'); ...
    >>> parse_timestamps(pd.Series(["0", "300000", "600000"]), column="t")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: timestamp column 't' looks like milliseconds: read as epoch seconds its rows are 300000 s (3.47 days) apart; ...
    >>> parse_timestamps(pd.Series(["2024-03-10T01:55:00-05:00", "2024-03-10T03:00:00-04:00"]), column="t")[1].isoformat()
    '2024-03-10T07:00:00+00:00'
    """
    line = line_of if line_of is not None else (lambda i: i + 2)
    text = raw.astype(str).str.strip()
    stripped = text if raw.dtype == object or pd.api.types.is_string_dtype(raw) else raw
    values = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if finite.mean() > 0.5:  # mostly numbers: an epoch column, whatever its odd cells are
        bad = np.flatnonzero(~finite)
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"timestamp column {column!r} has {bad.size} value(s) that are not epoch numbers, first at line {line(row)} "
                f"({text.iloc[row]!r}); give every row a finite Unix epoch time (seconds, or ms above 1e11) or drop the row"
            )
        unit = "ms" if float(np.max(np.abs(values))) > _EPOCH_MS_ABOVE else "s"
        seconds = values / 1000.0 if unit == "ms" else values
        out = np.flatnonzero((seconds < _EPOCH_MIN_S) | (seconds > _EPOCH_MAX_S))
        if out.size:
            row = int(out[0])
            raise DataError(
                f"timestamp column {column!r} has {out.size} value(s) outside the years 1677-2262 as epoch {unit}, first at line "
                f"{line(row)} ({text.iloc[row]!r}); give Unix epoch seconds (or ms above 1e11; convert micro- or nanoseconds)"
            )
        if unit == "s" and values.size > 1:
            _refuse_milliseconds_read_as_seconds(values, column=column, step_s=step_s)
        try:
            idx = pd.to_datetime(values, unit=unit, utc=True)
        except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError) as exc:  # a rounding edge of the range check
            raise DataError(f"timestamp column {column!r} has epoch values pandas cannot hold ({' '.join(str(exc).split())}); give Unix epoch seconds") from None
    else:
        try:
            idx = pd.to_datetime(stripped, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            not_iso = pd.to_datetime(stripped, utc=True, errors="coerce", format="ISO8601").isna().to_numpy()
            bad = np.flatnonzero(not_iso & ~finite)  # fails both parses; else a number among ISO times
            what = "is neither ISO 8601 nor Unix epoch seconds" if bad.size else "is an epoch number among ISO 8601 times"
            bad = bad if bad.size else np.flatnonzero(not_iso)
            value, where = (f" {text.iloc[int(bad[0])]!r}", f" (line {line(int(bad[0]))})") if bad.size else ("", "")
            raise DataError(
                f"timestamp column {column!r} has a value{value} that {what}{where}; fix the value or omit --timestamp-column"
            ) from exc
        _refuse_mixed_offsets(text, column=column, line_of=line)
    return pd.DatetimeIndex(idx)


def _refuse_milliseconds_read_as_seconds(values: np.ndarray, *, column: str, step_s: float | None) -> None:
    """A :class:`DataError` when epoch "seconds" are spaced like milliseconds (see :func:`parse_timestamps`)."""
    spacing = float(np.median(np.diff(values)))
    as_ms = spacing / 1000.0
    if not (spacing > _MAX_PLAUSIBLE_STEP_S and as_ms == round(as_ms) and as_ms <= _MAX_PLAUSIBLE_STEP_S):
        return
    if step_s is not None and abs(step_s - spacing) <= 0.05 * spacing:  # the caller says the rows really are that far apart
        return
    raise DataError(
        f"timestamp column {column!r} looks like milliseconds: read as epoch seconds its rows are {spacing:g} s "
        f"({_duration_words(spacing)}) apart; give Unix epoch seconds (the column divided by 1000: a {as_ms:g} s step), "
        f"or --step {spacing:g}s if the rows really are {_duration_words(spacing)} apart"
    )


def _refuse_mixed_offsets(text: pd.Series, *, column: str, line_of: Callable[[int], int] = lambda i: i + 2) -> None:
    """A :class:`DataError` when some ISO times carry a UTC offset and others do not.

    >>> _refuse_mixed_offsets(pd.Series(["2024-01-02 17:35:00", "2024-01-02T18:40:00+0100", "2024-01-02 17:45"]), column="t")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: timestamp column 't' mixes times with and without a UTC offset (1 with, 2 without), first with one at line 3 ('2024-01-02T18:40:00+0100'); ...
    """
    aware = text.str.contains(_ISO_OFFSET, regex=True).to_numpy(dtype=bool)
    n_aware = int(aware.sum())
    if n_aware in (0, aware.size):
        return
    n_naive = aware.size - n_aware
    # the rarer kind is the odd one out; on a tie, the kind that does not start the column
    minority_aware = n_aware < n_naive or (n_aware == n_naive and not aware[0])
    row = int(np.flatnonzero(aware if minority_aware else ~aware)[0])
    kind = "with one" if minority_aware else "without one"
    raise DataError(
        f"timestamp column {column!r} mixes times with and without a UTC offset ({n_aware} with, {n_naive} without), "
        f"first {kind} at line {line_of(row)} ({text.iloc[row]!r}); give every time an offset, or none (read as UTC)"
    )


def load_usage_csv(
    source: str | os.PathLike[str] | IO[str],
    column: str,
    *,
    timestamp_column: str | None = None,
    step_s: float | None = None,
) -> UsageSeries:
    """Load one numeric usage column; see the module docstring for the accepted layouts."""
    df, line = _read_usage_table(source)
    name = _source_name(source)
    if column not in df.columns and (sep := one_field_separator(df.columns)):  # review 47c L3
        raise DataError(f"usage CSV {name}: the file looks {sep}-separated (one header field {str(df.columns[0])[:60]!r}); "
                        "separate the fields with ',' (or ';')")
    if column not in df.columns:
        raise DataError(f"usage CSV {name}: column {column!r} not in the CSV; available columns: {', '.join(map(repr, df.columns))}")
    raw = df[column]
    values = pd.to_numeric(raw.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(raw) else raw, errors="coerce")
    array = values.to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        row = int(bad[0])
        cell = str(raw.iloc[row])
        hint = " (decimal comma? use '.' as the decimal mark)" if _DECIMAL_COMMA.match(cell.strip()) else ""
        raise DataError(
            f"usage CSV {name}: column {column!r} has {bad.size} non-numeric or missing value(s), first at line {line(row)} ({cell!r}); "
            f"clean the CSV so every value is a number{hint}"
        )
    negative = np.flatnonzero(array < 0)
    if negative.size:
        row = int(negative[0])
        raise DataError(
            f"usage CSV {name}: column {column!r} has {negative.size} negative value(s), first at line {line(row)} "
            f"({str(raw.iloc[row]).strip()!r}); usage cannot be negative: fix or drop the row"
        )
    from care_flows.forecast.usage import MAX_USAGE_VALUE  # here: usage.py is the heavier module, imported by callers anyway

    huge = np.flatnonzero(array > MAX_USAGE_VALUE)
    if huge.size:  # near the float maximum the forecast's sums and squares overflow (review 39b M10)
        row = int(huge[0])
        raise DataError(
            f"usage CSV {name}: column {column!r} has {huge.size} value(s) above {MAX_USAGE_VALUE:g}, first at line {line(row)} "
            f"({str(raw.iloc[row]).strip()!r}); no usage figure is that large: check the column, or rescale it (e.g. bytes to GiB)"
        )
    ts: pd.DatetimeIndex | None = None
    gaps: list[tuple[int, float]] = []
    if timestamp_column is not None:
        if timestamp_column not in df.columns:
            raise DataError(
                f"usage CSV {name}: timestamp column {timestamp_column!r} not in the CSV; available columns: {', '.join(map(repr, df.columns))}"
            )
        try:
            ts = parse_timestamps(df[timestamp_column], column=timestamp_column, step_s=step_s, line_of=line)
        except DataError as exc:
            raise DataError(f"usage CSV {name}: {exc}") from None
        if ts.isna().any():
            raise DataError(f"usage CSV {name}: timestamp column {timestamp_column!r} has missing values; every row needs a time")
        if len(ts) > 1:
            diffs = np.diff(((ts - ts[0]) / pd.Timedelta(seconds=1)).to_numpy(dtype=float))
            if (diffs <= 0).any():
                row = int(np.flatnonzero(diffs <= 0)[0]) + 1
                cells = df[timestamp_column].astype(str).str.strip()
                # an hour back: local wall-clock times at a daylight-saving change, which sorting would interleave (review 47c L4)
                fix = ("give the times with their UTC offset or in UTC if they are local times going back at a daylight-saving "
                       "change; else sort the rows and drop duplicates") if _an_hour_back(diffs, row - 1) else "sort the rows and drop duplicates"
                raise DataError(
                    f"usage CSV {name}: timestamp column {timestamp_column!r} is not strictly increasing at line {line(row)} "
                    f"({cells.iloc[row]!r} is not after line {line(row - 1)}, {cells.iloc[row - 1]!r}); {fix}"
                )
            inferred = float(np.median(diffs))
            if step_s is None:
                step_s = inferred
            elif abs(step_s - inferred) > 0.05 * inferred:  # the rows would be spaced unlike their own times
                raise StepMismatchError(
                    f"usage CSV {name}: a step of {step_s:g} s contradicts the {inferred:g} s spacing (median) of timestamp column "
                    f"{timestamp_column!r}; give a step of {inferred:g} s or none (it is read from the timestamps)",
                    given_s=float(step_s), inferred_s=inferred,
                )
            # an agreeing given step is kept as the step (the median of jittered times may be a second off)
            big = np.flatnonzero(diffs > 1.5 * step_s)  # one missing row is a spacing of two steps
            gaps = [(int(i) + 1, float(diffs[i])) for i in big]
            if gaps:
                log.warning("%d gap(s) longer than 1.5 steps in %r (largest %.0f s, first before line %d); rows are used as "
                            "consecutive steps and forecast across, not filled", len(gaps), column, max(g for _, g in gaps), line(gaps[0][0]))
            dense = np.flatnonzero(diffs < 0.5 * step_s)
            if dense.size:
                i = int(dense[0])
                log.warning("%d row(s) in %r less than half a step (%g s) after the previous one: line %d is only %g s after "
                            "line %d; the rows are not evenly spaced (they are used as consecutive steps)",
                            dense.size, column, step_s, line(i + 1), diffs[i], line(i))
    if step_s is None:
        step_s = 300.0
    if step_s <= 0:
        raise ConfigError(f"step {step_s!r} s is not positive; give e.g. --step 300s")
    return UsageSeries(values=values.to_numpy(dtype=float), step_s=float(step_s), column=column, timestamps=ts, gaps=gaps)

