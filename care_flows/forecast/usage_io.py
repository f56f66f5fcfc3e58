"""Loading resource-usage traces from CSV files into a :class:`UsageSeries`.

Accepted layouts (all checked against the traces in ``shared/data/usage_traces``):

- plain comma-separated files with or without a timestamp column (the Google 2019 aggregate has
  none: row ``i`` is ``i x step``);
- timestamps as ISO 8601 strings (NAB ``2014-02-14 14:30:00``; a time without an offset is read
  as UTC) or as Unix epoch numbers (Azure 2019 ``0, 300, ...``). Epoch values above 1e11 are
  taken as milliseconds, smaller ones as seconds; this is why the Bitbrains files, whose header
  says ``Timestamp [ms]`` but whose values are seconds, load correctly;
- the Bitbrains GWA-T-12 layout, ``;`` followed by a tab between fields (column names are
  stripped of the whitespace).

Rows are taken as consecutive steps of ``step_s`` seconds (given, or the median timestamp
difference, or 300 s without timestamps); a given step more than 5 % off the timestamps' median
spacing is a :class:`ConfigError`. Gaps longer than two steps are reported in
``UsageSeries.gaps`` and as a warning, not filled: filling would invent usage (``care
forecast-usage`` puts them in its JSON, ``gaps`` and ``origins_across_gaps``).

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

import io
import logging
import os
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError

__all__ = ["UsageSeries", "load_usage_csv", "read_usage_table", "parse_timestamps", "sniff_separator"]

log = logging.getLogger(__name__)

_EPOCH_MS_ABOVE = 1e11  # 1e11 s is year 5138; 1e11 ms is 1973
_EPOCH_MIN_S = (pd.Timestamp.min - pd.Timestamp(0)).total_seconds() + 1  # 1677-09-21: the span of a ns timestamp
_EPOCH_MAX_S = (pd.Timestamp.max - pd.Timestamp(0)).total_seconds() - 1  # 2262-04-11


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


def sniff_separator(header: str) -> str:
    """``;`` when the header line has more semicolons than commas (Bitbrains, spreadsheets saved in
    locales whose decimal mark is a comma), else ``,``.

    >>> sniff_separator("Timestamp [ms];\tCPU cores;\tCPU [%]"), sniff_separator("job_id,arrival,duration_h")
    (';', ',')
    """
    return ";" if header.count(";") > header.count(",") else ","


def _source_name(source: str | os.PathLike[str] | IO[str]) -> str:
    """The path as the user gave it (``Path.name`` would be only the last part), an open file's name, or ``<text>``."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return "<text>" if isinstance(source, io.StringIO) else str(getattr(source, "name", "<text>"))


def read_usage_table(source: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """Read a usage CSV (``,`` or Bitbrains ``;``+tab separated) with stripped column names.

    Raises :class:`DataError` (one line) when the file is missing, empty or not a table.
    """
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
    return df


def parse_timestamps(raw: pd.Series, *, column: str) -> pd.DatetimeIndex:
    """ISO strings (naive = UTC) or Unix epoch seconds (milliseconds above 1e11) -> UTC index.

    A column whose values are mostly numbers is read as epoch numbers: a cell that is not a
    finite number (``n/a``, ``nan``, ``inf``) or lies outside the times pandas can hold (years
    1677-2262) is a :class:`DataError` naming that cell and its data row (1 = the first row
    after the header); the unit is chosen from the finite values only. Any other column is ISO
    8601, and the error names the first cell that is neither (or, when each cell is one or the
    other, the first number among the ISO times).

    >>> parse_timestamps(pd.Series(["0", "300", "n/a", "900"]), column="t")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: timestamp column 't' has 1 value(s) that are not epoch numbers, first at data row 3 ('n/a'); ...
    """
    text = raw.astype(str).str.strip()
    stripped = text if raw.dtype == object or pd.api.types.is_string_dtype(raw) else raw
    values = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if finite.mean() > 0.5:  # mostly numbers: an epoch column, whatever its odd cells are
        bad = np.flatnonzero(~finite)
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"timestamp column {column!r} has {bad.size} value(s) that are not epoch numbers, first at data row {row + 1} "
                f"({text.iloc[row]!r}); give every row a finite Unix epoch time (seconds, or ms above 1e11) or drop the row"
            )
        unit = "ms" if float(np.max(np.abs(values))) > _EPOCH_MS_ABOVE else "s"
        seconds = values / 1000.0 if unit == "ms" else values
        out = np.flatnonzero((seconds < _EPOCH_MIN_S) | (seconds > _EPOCH_MAX_S))
        if out.size:
            row = int(out[0])
            raise DataError(
                f"timestamp column {column!r} has {out.size} value(s) outside the years 1677-2262 as epoch {unit}, first at data row "
                f"{row + 1} ({text.iloc[row]!r}); give Unix epoch seconds (or ms above 1e11; convert micro- or nanoseconds)"
            )
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
            value, where = (f" {text.iloc[int(bad[0])]!r}", f" (data row {int(bad[0]) + 1})") if bad.size else ("", "")
            raise DataError(
                f"timestamp column {column!r} has a value{value} that {what}{where}; fix the value or omit --timestamp-column"
            ) from exc
    return pd.DatetimeIndex(idx)


def load_usage_csv(
    source: str | os.PathLike[str] | IO[str],
    column: str,
    *,
    timestamp_column: str | None = None,
    step_s: float | None = None,
) -> UsageSeries:
    """Load one numeric usage column; see the module docstring for the accepted layouts."""
    df = read_usage_table(source)
    name = _source_name(source)
    if column not in df.columns:
        raise DataError(f"usage CSV {name}: column {column!r} not in the CSV; available columns: {', '.join(map(repr, df.columns))}")
    raw = df[column]
    values = pd.to_numeric(raw.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(raw) else raw, errors="coerce")
    bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"usage CSV {name}: column {column!r} has {bad.size} non-numeric or missing value(s), first at data row {row + 1} ({str(raw.iloc[row])!r}); "
            "clean the CSV so every value is a number"
        )
    ts: pd.DatetimeIndex | None = None
    gaps: list[tuple[int, float]] = []
    if timestamp_column is not None:
        if timestamp_column not in df.columns:
            raise DataError(
                f"usage CSV {name}: timestamp column {timestamp_column!r} not in the CSV; available columns: {', '.join(map(repr, df.columns))}"
            )
        try:
            ts = parse_timestamps(df[timestamp_column], column=timestamp_column)
        except DataError as exc:
            raise DataError(f"usage CSV {name}: {exc}") from None
        if ts.isna().any():
            raise DataError(f"usage CSV {name}: timestamp column {timestamp_column!r} has missing values; every row needs a time")
        if len(ts) > 1:
            diffs = np.diff(((ts - ts[0]) / pd.Timedelta(seconds=1)).to_numpy(dtype=float))
            if (diffs <= 0).any():
                row = int(np.flatnonzero(diffs <= 0)[0]) + 1
                raise DataError(
                    f"usage CSV {name}: timestamp column {timestamp_column!r} is not strictly increasing at data row {row + 1}; sort the rows and drop duplicates"
                )
            inferred = float(np.median(diffs))
            if step_s is None:
                step_s = inferred
            elif abs(step_s - inferred) > 0.05 * inferred:  # the rows would be spaced unlike their own times
                raise ConfigError(
                    f"usage CSV {name}: a step of {step_s:g} s contradicts the {inferred:g} s spacing (median) of timestamp column "
                    f"{timestamp_column!r}; give a step of {inferred:g} s or none (it is read from the timestamps)"
                )
            big = np.flatnonzero(diffs > 2 * step_s)
            gaps = [(int(i) + 1, float(diffs[i])) for i in big]
            if gaps:
                log.warning("%d gap(s) longer than two steps in %r (largest %.0f s); rows are used as consecutive steps", len(gaps), column, max(g for _, g in gaps))
    if step_s is None:
        step_s = 300.0
    if step_s <= 0:
        raise ConfigError(f"step {step_s!r} s is not positive; give e.g. --step 300s")
    return UsageSeries(values=values.to_numpy(dtype=float), step_s=float(step_s), column=column, timestamps=ts, gaps=gaps)

