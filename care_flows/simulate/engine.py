"""The simulation engine: carbon traces, forecasts at each arrival, and the vectorised evaluation.

Time model. Every carbon trace is a step function on a regular grid (the trace's step, one hour
for the embedded Electricity Maps data): row ``j`` is the intensity over ``[t0 + j*step, t0 +
(j+1)*step)``. Times inside the engine are floats in steps since ``t0``. A job that runs over
``[s, e)`` in region ``r`` emits ``kWh_per_step x integral of intensity over [s, e)`` gCO2eq,
computed exactly from a cumulative sum (partial slots count pro rata).

Energy and cost of a job (one line each, also in docs/EVALUATION.md):

- ``kW = cpus x W_per_vCPU(instance_type at 50% CPU) x PUE / 1000`` with the Teads/CCF instance
  power table (:func:`care_flows.accounting.instance_watts`, ``W / vCPU`` of the instance type) and
  PUE 1.135; the default type is m5.large (14.1 W at 50% for 2 vCPU: 7.05 W per vCPU);
- ``USD = cpus x (usd_per_hour / vCPU of the instance type in the region) x hours`` with the
  embedded on-demand prices (:class:`care_flows.pricing.EmbeddedPrices`); for a job whose cpus
  equal the type's vCPUs this is ``hours x usd_per_hour``. A burstable type (t2/t3/t3a/t4g) adds
  its CPU credits above baseline at the same 50 % CPU
  (:func:`care_flows.pricing.cpu_credit_usd_per_hour`).

Forecasts. Every forecast-driven policy sees the *same* forecast, issued at the job's arrival
from past data only: the rows whose interval ended by the start of the arrival's slot
(``values[:floor(arrival)]``, so a job arriving at 10:20 sees data up to the 09:00-10:00 row).
Each region's forecast reads that region's whole own trace up to then, including its rows before
the common range of the regions (:meth:`CarbonTrace.forecast_history`): adding a region whose
trace starts later shortens no other region's history (jobs still run, and are scored, only on
the common range). They come from :func:`care_flows.forecast.carbon.forecast_matrix` when that
exists, else from :func:`seasonal_naive_matrix` (the same slot one day earlier, repeated), one
row per distinct issue slot.

>>> import numpy as np, pandas as pd
>>> idx = pd.date_range("2023-01-01", periods=72, freq="h", tz="UTC")
>>> trace = CarbonTrace.from_series({"eu-south-2": pd.Series(np.r_[np.full(24, 100.0), np.full(48, 200.0)], index=idx)})
>>> trace.regions, trace.step_h, trace.values.shape
(['eu-south-2'], 1.0, (1, 72))
>>> seasonal_naive_matrix(np.arange(48.0), np.array([24, 30]), 3).tolist()
[[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError, UnknownZoneError
from care_flows.forecast.usage_io import FileText, csv_line_of, one_field_separator
from care_flows.regions import region_info, regions_for_zone
from care_flows.simulate.jobs import JobSet, shown_time

__all__ = [
    "CarbonTrace",
    "read_carbon_csv",
    "parse_carbon_spec",
    "first_spec_region",
    "load_trace",
    "seasonal_naive_matrix",
    "forecast_rows",
    "forecast_model_names",
    "check_forecast_model",
    "SimContext",
    "Decision",
    "Outcome",
    "evaluate",
]

_TIME_COLUMNS = ("Datetime (UTC)", "datetime", "time", "timestamp", "Datetime")
_VALUE_COLUMNS = {
    "lifecycle": (
        "Carbon intensity gCO₂eq/kWh (Life cycle)",
        "Carbon Intensity gCO₂eq/kWh (LCA)",
        "lifecycle_g_per_kwh",
        "g_per_kwh",
        "carbon_intensity",
    ),
    "direct": ("Carbon intensity gCO₂eq/kWh (direct)", "Carbon Intensity gCO₂eq/kWh (direct)", "direct_g_per_kwh", "g_per_kwh"),
}


# ----------------------------------------------------------------------------------------- traces
@dataclass(frozen=True)
class CarbonTrace:
    """Aligned carbon traces: ``values[r, j]`` gCO2eq/kWh of ``regions[r]`` over slot ``j``."""

    regions: list[str]
    index: pd.DatetimeIndex
    values: np.ndarray
    notes: list[str] = field(default_factory=list)
    """What aligning the regions cost: one line per region whose rows before the common start or
    after the common end are outside the evaluation (jobs run and are scored only on ``index``,
    the common range); the rows before the start still feed that region's forecasts."""
    own_starts: dict[str, pd.Timestamp] = field(default_factory=dict)
    """Where each region's own trace started, before the alignment."""
    history: dict[str, np.ndarray] = field(default_factory=dict)
    """Each region's own rows before the common start (only regions that have some): forecast
    history only, see :meth:`forecast_history`."""

    @property
    def step_h(self) -> float:
        """Slot length in hours."""
        return float((self.index[1] - self.index[0]) / pd.Timedelta(hours=1))

    @property
    def steps_per_day(self) -> int:
        return int(round(24 / self.step_h))

    def forecast_history(self, r: int) -> tuple[np.ndarray, int]:
        """``(values, offset)``: region ``r``'s own trace up to the common end, and the number of its
        rows before the common start. Common slot ``j`` is ``values[j + offset]``, so a forecast
        issued at common slot ``q`` reads ``values[:q + offset]``: all the region's own rows before
        ``q``, none of another region's cut. Without rows before the start it is ``(self.values[r], 0)``.

        >>> idx = pd.date_range("2023-01-01", periods=48, freq="h", tz="UTC")
        >>> t = CarbonTrace.from_series({"eu-south-2": pd.Series(1.0, index=idx), "eu-north-1": pd.Series(2.0, index=idx[24:])})
        >>> [(len(v), off) for v, off in map(t.forecast_history, range(2))], t.values.shape
        ([(48, 24), (24, 0)], (2, 24))
        """
        before = self.history.get(self.regions[r])
        if before is None or len(before) == 0:
            return self.values[r], 0
        return np.concatenate([before, self.values[r]]), len(before)

    @classmethod
    def from_series(cls, series: dict[str, pd.Series]) -> "CarbonTrace":
        """Align per-region series on their common, regular time range (error if gaps or steps differ)."""
        if not series:
            raise ConfigError("no carbon trace given; give one per region (care simulate --carbon-csv PATH or embedded:ES)")
        cleaned: dict[str, pd.Series] = {}
        step = None
        for region, s in series.items():
            if not isinstance(s, pd.Series) or not isinstance(s.index, pd.DatetimeIndex):
                raise ConfigError(f"carbon trace for {region} is a {type(s).__name__} without a time index; "
                                  "give a pandas Series of g/kWh indexed by time-zone-aware times")
            if len(s) and s.index.tz is None:  # (an empty one: "fewer than 2 rows" below)
                raise DataError(f"carbon trace for {region} has times without a time zone (first {s.index[0]}); localise them, "
                                "e.g. .tz_localize('UTC')")
            s = s.sort_index()
            if len(s) < 2:
                raise DataError(f"carbon trace for {region} has fewer than 2 rows; give at least two days of data")
            diffs = np.diff(s.index.asi8)
            if s.index.has_duplicates:
                raise DataError(f"carbon trace for {region} has duplicate times (e.g. {s.index[s.index.duplicated()][0].isoformat()}); keep one row per time")
            if not (diffs == diffs[0]).all():
                bad = int(np.nonzero(diffs != diffs[0])[0][0])
                raise DataError(
                    f"carbon trace for {region} is not regular: a gap or uneven step after {s.index[bad].isoformat()}; fill the gap or resample"
                )
            st = pd.Timedelta(s.index[1] - s.index[0])
            if step is not None and st != step:
                raise DataError(f"carbon traces have different steps ({step} vs {st} for {region}); resample them to one step")
            step = st
            if s.isna().any():
                raise DataError(f"carbon trace for {region} has an empty value at {s.index[s.isna().to_numpy()][0].isoformat()}; fill it")
            if (s < 0).any():
                at = s.index[(s < 0).to_numpy()][0]
                raise DataError(f"carbon trace for {region} has a negative intensity {s[at]:g} at {at.isoformat()}; intensities are >= 0 gCO2eq/kWh")
            cleaned[region] = s.astype(float)
        start = max(s.index[0] for s in cleaned.values())
        end = min(s.index[-1] for s in cleaned.values())
        if end <= start:
            spans = "; ".join(f"{r} {t.index[0].isoformat()} to {t.index[-1].isoformat()}" for r, t in cleaned.items())
            raise DataError(f"the carbon traces do not overlap in time ({spans}); give traces that cover the same period")
        index = pd.date_range(start, end, freq=step)
        values = np.vstack([cleaned[r].reindex(index).to_numpy(dtype=float) for r in cleaned])
        if np.isnan(values).any():
            raise DataError("the carbon traces are not on the same time grid; resample them to the same step and offsets")
        notes = []
        history = {}
        first = max(cleaned, key=lambda r: cleaned[r].index[0])
        last = min(cleaned, key=lambda r: cleaned[r].index[-1])
        span = f"{start.isoformat()} to {(end + step).isoformat()}"
        for r, s in cleaned.items():
            before, after = int((s.index < start).sum()), int((s.index > end).sum())
            if before:  # contiguous with the common range: same step, and the reindex above found every slot
                history[r] = s.to_numpy(dtype=float)[:before]
            if before or after:
                why = [f"{before} row(s) before {start.isoformat()} (where {first}'s trace starts)" if before else "",
                       f"{after} row(s) after {end.isoformat()} (where {last}'s trace ends)" if after else ""]
                notes.append(f"the traces are aligned on their common time range: {r} loses {' and '.join(w for w in why if w)} "
                             f"for the evaluation (jobs run and are scored only from {span}"
                             + ("; its forecasts still read the earlier rows as history)" if before else ")"))
        return cls(list(cleaned), index, values, notes, {r: s.index[0] for r, s in cleaned.items()}, history)


def _no_history_error(trace: CarbonTrace, where: str, arrival: pd.Timestamp, q: int) -> DataError:
    """The error of a job whose arrival (issue slot ``q`` of the common range) leaves no row before
    it in some region: it names those regions (their own trace starts there or later) and the
    earliest arrival every region's forecast can take."""
    offsets = {reg: trace.forecast_history(r)[1] for r, reg in enumerate(trace.regions)}
    lacking = sorted((reg for reg, off in offsets.items() if q + off < 1), key=offsets.get)  # the latest-starting first
    step = trace.index[1] - trace.index[0]
    advice = f"the forecast needs past data: start the jobs at or after {(trace.index[0] + step).isoformat()} or give an earlier"
    if len(lacking) == len(offsets) and not trace.history:  # every trace starts at the common start: no region cut another
        return DataError(f"{where}: arrival {arrival.isoformat()} leaves no carbon history before it "
                         f"(trace starts {trace.index[0].isoformat()}); {advice} trace")
    latest = [reg for reg in lacking if offsets[reg] == 0]
    others = [f"the {reg} trace starts {trace.own_starts[reg].isoformat()}" for reg in lacking if offsets[reg]]
    return DataError(
        f"{where}: arrival {arrival.isoformat()} leaves no carbon history before it in {' and '.join(lacking)} "
        f"(the common range of all --carbon-csv traces starts {trace.index[0].isoformat()}, where the {' and '.join(latest)} trace starts"
        f"{''.join('; ' + o for o in others)}); {advice} {' and '.join(lacking)} trace"
    )


def _past_the_end_error(trace: CarbonTrace, jobs: JobSet, bad: np.ndarray) -> DataError:
    """The error of the jobs ``bad`` (0-based positions, in order) whose deadline is after the trace
    ends: one job is named with its line; several are counted, the first named, so that the user
    learns of them all at once.

    >>> idx = pd.date_range("2023-01-01", periods=24, freq="h", tz="UTC")
    >>> trace = CarbonTrace.from_series({"eu-south-2": pd.Series(1.0, index=idx)})
    >>> f = pd.DataFrame({"job_id": ["a", "b", "c"], "deadline": pd.to_datetime(["2023-01-02T08:35Z"] * 3)})
    >>> print(_past_the_end_error(trace, JobSet(f, source="j.csv"), np.array([1, 2])))
    j.csv: 2 jobs have a deadline after the carbon trace ends (2023-01-02T00:00:00+00:00), the first line 3 (job 'b', deadline 2023-01-02T08:35:00+00:00); give a longer trace or drop those jobs
    """
    f = jobs.frame
    end = trace.index[-1] + (trace.index[1] - trace.index[0])
    i = int(bad[0])
    job, deadline = f["job_id"].iloc[i], shown_time(f["deadline"].iloc[i])  # 08:35:00, not 08:35:00.000000001
    if len(bad) == 1:
        return DataError(f"{jobs.at(i)} (job {job!r}): deadline {deadline} is after the carbon trace ends ({end.isoformat()}); "
                         "give a longer trace or drop the job")
    return DataError(f"{jobs.source}: {len(bad)} jobs have a deadline after the carbon trace ends ({end.isoformat()}), the first "
                     f"{jobs.at(i).removeprefix(jobs.source + ' ')} (job {job!r}, deadline {deadline}); give a longer trace or drop those jobs")


def read_carbon_csv(path: str | os.PathLike[str], kind: str = "lifecycle") -> pd.Series:
    """Hourly (or any regular step) gCO2eq/kWh from a CSV.

    Accepts both Electricity Maps export schemas (``Datetime (UTC)`` with ``Carbon intensity
    gCO₂eq/kWh (Life cycle)`` or ``Carbon Intensity gCO₂eq/kWh (LCA)``) and a plain
    ``time,g_per_kwh`` file. Times without an offset are taken as UTC (Electricity Maps exports
    say UTC in the header). A bad value is a :class:`DataError` naming its line in the file, as
    an editor numbers it (the header is line 1).
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"carbon CSV {str(p)!r} {what}; give a file path or embedded:ZONE (e.g. embedded:ES)")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise DataError(f"carbon CSV {str(p)!r} is empty; give an Electricity Maps export or embedded:ZONE") from None
    except UnicodeDecodeError:
        raise DataError(f"carbon CSV {str(p)!r} is not UTF-8 text (UTF-16 or a spreadsheet file?); save it as a UTF-8 CSV") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"carbon CSV {str(p)!r} cannot be parsed ({' '.join(str(exc).split())})") from None
    if sep := one_field_separator(df.columns):  # first: decimal commas in a ';' file also make rows look too long (review 44d M2)
        raise DataError(f"carbon CSV {str(p)!r}: the file looks {sep}-separated (one header field {str(df.columns[0])[:60]!r}); "
                        "save it comma-separated, as Electricity Maps exports it")
    if not isinstance(df.index, pd.RangeIndex):  # pandas took the first field as an index: rows are too long
        raise DataError(f"carbon CSV {str(p)!r} has more fields per row than header columns ({', '.join(map(str, df.columns))}); "
                        "give one value per header column on every row")
    tcol = next((c for c in _TIME_COLUMNS if c in df.columns), None)
    vcol = next((c for c in _VALUE_COLUMNS.get(kind, ()) if c in df.columns), None)
    if tcol is None or vcol is None:
        raise DataError(
            f"carbon CSV {str(p)!r} needs a time column ({' or '.join(_TIME_COLUMNS[:3])}) and a {kind} gCO2eq/kWh column "
            f"(e.g. 'Carbon intensity gCO₂eq/kWh (Life cycle)' or g_per_kwh); found: {', '.join(map(str, df.columns))}"
        )
    line = csv_line_of(FileText.of(p), rows=len(df))  # the file is read again only to word an error
    times = pd.to_datetime(df[tcol], utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        i = int(np.nonzero(times.isna().to_numpy())[0][0])
        raise DataError(f"carbon CSV {str(p)!r} line {line(i)}: {str(df[tcol].iloc[i])!r} is not an ISO 8601 time")
    vals = pd.to_numeric(df[vcol], errors="coerce")
    if not np.isfinite(vals.to_numpy(dtype=float)).all():  # empty, text, nan or inf
        i = int(np.nonzero(~np.isfinite(vals.to_numpy(dtype=float)))[0][0])
        raise DataError(f"carbon CSV {str(p)!r} line {line(i)}: {vcol} {str(df[vcol].iloc[i])!r} is not a finite number; give a number on every row (fill any gap)")
    if (vals < 0).any():
        i = int(np.nonzero((vals < 0).to_numpy())[0][0])
        raise DataError(f"carbon CSV {str(p)!r} line {line(i)}: negative intensity {vals.iloc[i]:g}; intensities are >= 0 gCO2eq/kWh, fix the row")
    out = pd.Series(vals.to_numpy(dtype=float), index=pd.DatetimeIndex(times).as_unit("ns"), name="g_per_kwh")
    zcol = next((c for c in df.columns if str(c).strip().lower() == "zone id"), None)
    zones = df[zcol].dropna().astype(str).str.strip().str.upper().unique() if zcol is not None else []
    if len(zones) == 1:  # an Electricity Maps export names its zone: kept to check it against the region it is given for
        out.attrs["zone"] = zones[0]
    return out


def _zone_mismatch(region: str, series: pd.Series, source: str) -> str | None:
    """A note when a CSV's own zone (its ``Zone id`` column) is not ``region``'s grid, else None.

    >>> s = pd.Series([1.0]); s.attrs["zone"] = "ES"
    >>> _zone_mismatch("eu-north-1", s, "es.csv")
    "carbon CSV 'es.csv' is zone ES, but it was given for eu-north-1 (zone SE-SE3): eu-north-1 is simulated on ES's grid; check REGION=PATH"
    >>> s.attrs["zone"] = "SE"; _zone_mismatch("eu-north-1", s, "se.csv") is None
    True
    """
    zone = series.attrs.get("zone")
    if not zone:
        return None
    info = region_info(region)
    mine = info.zone.upper()
    # the same zone, or one of them a split of the other (SE-SE3 in SE); US-CAL-CISO is not US-MIDA-PJM
    if zone == mine or zone == str(getattr(info, "embedded_zone", "") or "").upper() or mine.startswith(zone + "-") or zone.startswith(mine + "-"):
        return None
    return (f"carbon CSV {source!r} is zone {zone}, but it was given for {region} (zone {info.zone}): {region} is simulated on "
            f"{zone}'s grid; check REGION=PATH")


_PREFERRED_REGION = {"ES": "eu-south-2", "SE": "eu-north-1", "DE": "eu-central-1", "FR": "eu-west-3", "GB": "eu-west-2"}
"""The region an embedded zone, or a carbon CSV of that zone given without ``REGION=``, stands for."""


def _region_of_zone(zone: str) -> str:
    """The AWS region a grid zone's carbon trace stands for when no ``REGION=`` is given: the preferred
    one for an embedded zone, else the first region on that grid (:func:`care_flows.regions.regions_for_zone`;
    an unknown zone is an :class:`UnknownZoneError`).

    >>> _region_of_zone("SE"), _region_of_zone("se-se3"), _region_of_zone("DE")
    ('eu-north-1', 'eu-north-1', 'eu-central-1')
    """
    zone = zone.strip().upper()
    return _PREFERRED_REGION.get(zone) or regions_for_zone(zone)[0]


def parse_carbon_spec(spec: str, default_region: str | None = None) -> tuple[str, str]:
    """``[REGION=]PATH`` or ``[REGION=]embedded:ZONE`` -> ``(region, source)``.

    Without ``REGION=``, an embedded zone maps to its preferred AWS region (:func:`_region_of_zone`)
    and a path to ``default_region`` (:func:`load_trace` may then take an Electricity Maps export
    of another grid for its zone's region).

    >>> parse_carbon_spec("embedded:SE")
    ('eu-north-1', 'embedded:SE')
    >>> parse_carbon_spec("eu-west-3=embedded:FR")
    ('eu-west-3', 'embedded:FR')
    >>> parse_carbon_spec("trace.csv", "eu-south-2")
    ('eu-south-2', 'trace.csv')
    """
    spec = spec.strip()
    region: str | None = None
    if "=" in spec:
        region, spec = (part.strip() for part in spec.split("=", 1))
        region_info(region)
    if spec.lower().startswith("embedded:"):
        zone = spec.split(":", 1)[1].strip().upper()
        from care_flows.data import EMBEDDED_ZONES

        if zone not in EMBEDDED_ZONES:
            raise ConfigError(f"zone {zone!r} has no embedded data; embedded zones are {', '.join(EMBEDDED_ZONES)} (or give a CSV path)")
        if region is None:
            region = _region_of_zone(zone)
        return region, f"embedded:{zone}"
    if region is None:
        if default_region is None:
            raise ConfigError(f"carbon CSV {spec!r} needs a region: write REGION=PATH (e.g. eu-south-2={spec}) or give --home-region")
        region = default_region
    return region, spec


def first_spec_region(specs: list[str], default_region: str, kind: str = "lifecycle") -> str:
    """The region of the first ``--carbon-csv`` spec, the default home region: its ``REGION=`` or
    embedded zone's region; for a PATH without ``REGION=``, the region a later ``REGION=PATH`` of
    the same ``Zone id`` is given for (it is a piece of that trace, review 47a M1), else
    ``default_region``.

    >>> first_spec_region(["embedded:SE", "eu-south-2=es.csv"], "eu-south-2")
    'eu-north-1'
    """
    region, source = parse_carbon_spec(specs[0], default_region)
    if "=" in specs[0] or source.startswith("embedded:"):
        return region
    zone = read_carbon_csv(source, kind).attrs.get("zone")
    for spec in specs[1:]:
        if zone and "=" in spec:
            other, other_source = parse_carbon_spec(spec, default_region)
            if not other_source.startswith("embedded:") and read_carbon_csv(other_source, kind).attrs.get("zone") == zone:
                return other
    return region


def load_trace(specs: list[str], *, default_region: str | None = None, kind: str = "lifecycle") -> CarbonTrace:
    """Load every ``--carbon-csv`` spec (see :func:`parse_carbon_spec`) into one aligned trace.

    A PATH without ``REGION=`` is taken for ``default_region`` (the home region), except an
    Electricity Maps export whose ``Zone id`` is another grid while the home region has a trace
    of its own among ``specs``, or when that zone's region has a ``REGION=PATH`` trace of the
    same zone: that one is taken for its zone's region (as ``embedded:ZONE`` would be), with a
    note saying so. When the home region has no trace of its own, a lone such
    export is its trace (with a note that it is another grid); two or more are a :class:`ConfigError`
    naming them (which one is the home region's would depend on their order: write ``REGION=PATH``
    or give the home region). Two or more CSV files for one region of one ``Zone id`` (or none),
    however each was given, are pieces of its trace (e.g. the 2022 and 2023 exports), joined in time
    order: they must follow on from each other. Any other two traces for one region are an error
    naming both.
    """
    from care_flows.data import embedded_intensity

    loaded: list[tuple[str, str, pd.Series, bool]] = []  # (region, source, series, bare PATH)
    for spec in specs:
        region, source = parse_carbon_spec(spec, default_region)
        if source.startswith("embedded:"):
            try:
                loaded.append((region, source, embedded_intensity(source.split(":", 1)[1], kind), False))
            except UnknownZoneError as exc:
                raise ConfigError(str(exc)) from None
        else:
            loaded.append((region, source, read_carbon_csv(source, kind), "=" not in spec))
    # a bare PATH of another grid (its Zone id) goes to that zone's region when the home region has another trace
    elsewhere: dict[int, str] = {}
    for k, (region, source, s, bare) in enumerate(loaded):
        if bare and _zone_mismatch(region, s, source) is not None:
            try:
                elsewhere[k] = _region_of_zone(s.attrs["zone"])
            except UnknownZoneError:
                pass
    # a piece of a trace given as REGION=PATH for its zone's region joins it, whatever the order (review 46f L2)
    given = {(region, s.attrs.get("zone")) for k, (region, _, s, _) in enumerate(loaded) if k not in elsewhere}
    joining = {k for k in elsewhere if (elsewhere[k], loaded[k][2].attrs["zone"]) in given}
    home_has_one = any(region == default_region for k, (region, *_) in enumerate(loaded) if k not in elsewhere)
    # which zone is the home region's trace would depend on their order; the pieces of one zone are one trace (46d L1)
    if not home_has_one and len({loaded[k][2].attrs["zone"] for k in elsewhere if k not in joining}) > 1:
        raise ConfigError(_no_home_trace(default_region, [(loaded[k][1], loaded[k][2].attrs["zone"], elsewhere[k])
                                                          for k in elsewhere if k not in joining]))
    if not home_has_one:  # a lone such zone (its files) stays the home region's trace (noted below as another grid)
        elsewhere = {k: r for k, r in elsewhere.items() if k in joining}
    pieces: dict[str, list[tuple[pd.Series, str]]] = {}
    taken: dict[str, tuple[str, str, str | None]] = {}  # region -> (source, how it was taken, zone of a CSV)
    notes: list[str] = []
    for k, (region, source, s, bare) in enumerate(loaded):
        how = "zone" if k in elsewhere else "home" if bare else "given"
        if k in elsewhere:
            region = elsewhere[k]
            why = ("joined to the trace given for it" if k in joining
                   else "a PATH without REGION= is taken for the home region, which has another trace")
            notes.append(f"carbon CSV {source!r} is zone {s.attrs['zone']}, not the grid of the home region {default_region}: "
                         f"taken for {region} ({why}); write REGION=PATH to choose")
        if region in pieces and not _joinable(taken[region], (source, how, s.attrs.get("zone"))):
            raise ConfigError(_two_traces(region, taken[region], (source, how, s.attrs.get("zone")), default_region))
        pieces.setdefault(region, []).append((s, source))
        taken.setdefault(region, (source, how, s.attrs.get("zone")))
        if not source.startswith("embedded:"):
            note = _zone_mismatch(region, s, source)
            if note:
                notes.append(note)
    series = {region: _join(region, parts, taken[region], default_region) for region, parts in pieces.items()}
    _check_overlap(series, {region: [src for _, src in parts] for region, parts in pieces.items()},
                   next((r for r, (_, how, _) in taken.items() if how == "home"), None))
    trace = CarbonTrace.from_series(series)
    trace.notes[:0] = notes
    return trace


def _check_overlap(series: dict[str, pd.Series], sources: dict[str, list[str]], bare_home: str | None) -> None:
    """A :class:`DataError` naming each region's file(s) and span when the traces share no time; when
    the home region's trace is a PATH without ``REGION=`` that overlaps none of the others, it says so
    (that file was often meant for another region, review 47d L4). Other bad traces are left to
    :meth:`CarbonTrace.from_series`.

    >>> t = lambda day: pd.Series([1.0, 2.0], index=pd.date_range(day, periods=2, freq="h", tz="UTC"))
    >>> _check_overlap({"eu-south-2": t("2023-01-01"), "eu-west-3": t("2022-01-01")},
    ...                {"eu-south-2": ["nz23.csv"], "eu-west-3": ["nz22.csv"]}, "eu-south-2")
    Traceback (most recent call last):
    care_flows.errors.DataError: the carbon traces do not overlap in time (eu-south-2: 'nz23.csv' 2023-01-01T00:00:00+00:00 to 2023-01-01T01:00:00+00:00; eu-west-3: 'nz22.csv' 2022-01-01T00:00:00+00:00 to 2022-01-01T01:00:00+00:00); give traces that cover the same period; 'nz23.csv' has no REGION=, so it is taken for the home region eu-south-2: write REGION=PATH if it is another region's trace
    """
    try:
        spans = {r: (s.index.min(), s.index.max()) for r, s in series.items() if len(s) and isinstance(s.index, pd.DatetimeIndex)}
        if len(spans) < 2 or max(a for a, _ in spans.values()) < min(b for _, b in spans.values()):
            return
    except TypeError:  # times without a time zone: from_series names that
        return
    parts = "; ".join(f"{r}: {' + '.join(map(repr, sources.get(r, [])))} {a.isoformat()} to {b.isoformat()}" for r, (a, b) in spans.items())
    hint = ""
    if bare_home in spans:
        ha, hb = spans[bare_home]
        if all(max(a, ha) >= min(b, hb) for r, (a, b) in spans.items() if r != bare_home):  # it overlaps none of the others
            hint = (f"; {' + '.join(map(repr, sources[bare_home]))} has no REGION=, so it is taken for the home region {bare_home}: "
                    "write REGION=PATH if it is another region's trace")
    raise DataError(f"the carbon traces do not overlap in time ({parts}); give traces that cover the same period{hint}")


def _short_history_note(trace: CarbonTrace, uq: np.ndarray, u: np.ndarray, model: str, home: np.ndarray | None = None) -> str:
    """A note when jobs arrive with too little carbon history for ``model``: their forecasts are a
    fallback (``care plan`` warns about the same, review 48a M1); "" when none do. ``home``: each
    job's home region index, for a policy that reads only the home region's forecast (None: every
    region's, as ``care`` does when it chooses a region).

    >>> idx = pd.date_range("2023-01-01", periods=24 * 10, freq="h", tz="UTC")
    >>> trace = CarbonTrace.from_series({"eu-south-2": pd.Series(100.0, index=idx)})
    >>> _short_history_note(trace, np.array([30, 200]), np.array([0, 0, 1]), "default")
    "2 of 3 jobs arrive with under 7 days of carbon history in eu-south-2: their forecasts are the fallback profile_persistence, not ridge (give the trace's earlier data too, e.g. repeat --carbon-csv REGION=PATH with the export before it)"
    """
    from care_flows.forecast.carbon import FORECAST_MODELS, _resolve, model_used

    if model != "default" and model not in FORECAST_MODELS:  # a model of the simulator's own (e.g. seasonal_naive_local)
        return ""
    wanted = _resolve(model)
    spd = trace.steps_per_day  # a computed property: read once (review 48b M1)
    parts, fallbacks, any_short = [], set(), np.zeros(len(u), dtype=bool)
    for r, region in enumerate(trace.regions):
        used = model_used(wanted, uq + trace.forecast_history(r)[1], spd)  # every issue slot at once
        short = used[u] != wanted
        if home is not None:
            short &= home == r
        if short.any():
            parts.append(region)
            fallbacks.update(used[u][short].tolist())
            any_short |= short
    if not parts:
        return ""
    need = "7 days" if wanted == "ridge" else "a day"
    return (f"{int(any_short.sum())} of {len(u)} jobs arrive with under {need} of carbon history in {', '.join(parts)}: their forecasts "
            f"are the fallback {'/'.join(sorted(fallbacks))}, not {wanted} (give the trace's earlier data too, e.g. repeat --carbon-csv "
            "REGION=PATH with the export before it)")


def _joinable(first: tuple[str, str, str | None], second: tuple[str, str, str | None]) -> bool:
    """Whether two ``--carbon-csv`` files for one region are pieces of one trace (e.g. 2022 and 2023),
    each ``(source, how, zone)`` as in :func:`_two_traces`: both CSV files of the same ``Zone id`` (or
    both without one), however each was given (``es22.csv`` and ``eu-south-2=es23.csv``, review 46d L1).
    An embedded trace is whole: another trace for its region is an error.

    >>> _joinable(("es22.csv", "home", "ES"), ("es23.csv", "given", "ES")), _joinable(("embedded:ES", "given", None), ("es.csv", "given", "ES"))
    (True, False)
    >>> _joinable(("es.csv", "given", "ES"), ("fr.csv", "given", "FR"))
    False
    """
    return not first[0].startswith("embedded:") and not second[0].startswith("embedded:") and first[2] == second[2]


def _join(region: str, parts: list[tuple[pd.Series, str]], first: tuple[str, str, str | None], home: str | None) -> pd.Series:
    """``region``'s trace from its files (one, or consecutive pieces joined in time order); a gap, an
    overlap or another step between them is a :class:`DataError` that says the files were joined."""
    from care_flows.signals.trace import join_pieces

    if len(parts) == 1:
        return parts[0][0]
    try:
        out = join_pieces([(s, repr(source)) for s, source in parts])
    except DataError as exc:
        # two regions' traces given as bare PATHs look like this too, unless the files name the region's own grid (46d L2)
        own_grid = bool(first[2]) and _zone_mismatch(region, parts[0][0], parts[0][1]) is None
        other = (f"; a PATH without REGION= is taken for the home region {home}: for another region's trace write REGION=PATH, "
                 f"e.g. REGION={parts[-1][1]}" if first[1] == "home" and not own_grid else "")
        names = ", ".join(repr(source) for _, source in parts[:-1]) + f" and {parts[-1][1]!r}"
        raise DataError(f"region {region} has carbon CSVs {names}, joined as one trace in time order: {exc}{other}") from None
    if first[2]:
        out.attrs["zone"] = first[2]
    return out


def _no_home_trace(home: str | None, others: list[tuple[str, str, str]]) -> str:
    """The error of two or more carbon CSVs without ``REGION=`` whose ``Zone id`` is another grid than
    the home region's, which has no trace of its own: ``others`` is ``(source, zone, its region)`` each.

    >>> print(_no_home_trace("eu-south-2", [("se.csv", "SE", "eu-north-1"), ("de.csv", "DE", "eu-central-1")]))
    carbon CSVs 'se.csv' (zone SE) and 'de.csv' (zone DE) have no REGION= and neither is the grid of the home region eu-south-2 (zone ES), which has no trace of its own: write REGION=PATH for each (e.g. eu-north-1=se.csv), or give --home-region (e.g. --home-region eu-north-1)
    """
    files = [f"{src!r} (zone {zone})" for src, zone, _ in others]
    named = ", ".join(files[:-1]) + f" and {files[-1]}"
    which = "neither" if len(others) == 2 else "none"
    zone = f" (zone {region_info(home).zone})" if home else ""
    src, _, region = others[0]
    return (f"carbon CSVs {named} have no REGION= and {which} is the grid of the home region {home}{zone}, which has no trace "
            f"of its own: write REGION=PATH for each (e.g. {region}={src}), or give --home-region (e.g. --home-region {region})")


def _two_traces(region: str, first: tuple[str, str, str | None], second: tuple[str, str, str | None], home: str | None) -> str:
    """The error of two ``--carbon-csv`` traces for ``region``, each ``(source, how, zone)``: ``how`` is
    ``given`` (REGION= or embedded:ZONE), ``home`` (a PATH without REGION=) or ``zone`` (a PATH
    without REGION= taken for its ``Zone id``'s region); ``zone`` is a CSV's own Zone id, if any.

    >>> print(_two_traces("eu-south-2", ("embedded:ES", "given", None), ("se.csv", "home", "SE"), "eu-south-2"))
    region eu-south-2 has two carbon traces (embedded:ES and 'se.csv'); a PATH without REGION= is taken for the home region eu-south-2: write REGION=PATH, e.g. eu-north-1=se.csv
    >>> print(_two_traces("eu-south-2", ("embedded:ES", "given", None), ("es.csv", "given", "ES"), "eu-south-2"))
    region eu-south-2 has two carbon traces (embedded:ES and 'es.csv'); give one --carbon-csv per region
    """
    names = " and ".join(src if src.startswith("embedded:") else repr(src) for src, _, _ in (first, second))
    if first[1] == "given" and second[1] == "given":
        return f"region {region} has two carbon traces ({names}); give one --carbon-csv per region"
    src, how, zone = second if second[1] != "given" else first
    if how == "zone":
        why = (f"{src!r} has no REGION= and is zone {zone}, so it is taken for {region} (the home region {home} has "
               "another trace)")
    else:
        why = f"a PATH without REGION= is taken for the home region {home}"
    try:
        example = _region_of_zone(zone) if zone and how == "home" and _region_of_zone(zone) != region else "REGION"
    except UnknownZoneError:
        example = "REGION"
    return f"region {region} has two carbon traces ({names}); {why}: write REGION=PATH, e.g. {example}={src}"


# -------------------------------------------------------------------------------------- forecasts
def seasonal_naive_matrix(values: np.ndarray, issue_idx: np.ndarray, horizon_steps: int, steps_per_day: int = 24) -> np.ndarray:
    """Row ``i``: the ``horizon_steps`` slots from ``issue_idx[i]``, forecast as the same slot one day
    earlier (``values[issue - steps_per_day + (k mod steps_per_day)]``); uses only ``values[:issue_idx[i]]``.
    With less than a day of history, the last known value is repeated.
    """
    q = np.asarray(issue_idx, dtype=np.int64)
    k = np.arange(horizon_steps)
    idx = q[:, None] - steps_per_day + (k[None, :] % steps_per_day)
    short = q < steps_per_day
    idx = np.where(short[:, None], np.maximum(q[:, None] - 1, 0), idx)
    return np.asarray(values, dtype=float)[idx]


def forecast_model_names() -> list[str]:
    """The ``model`` names :func:`forecast_rows` (and ``care simulate --forecast-model``) accept.

    >>> forecast_model_names()[0], forecast_model_names()[-1]
    ('default', 'seasonal_naive_local')
    """
    try:
        from care_flows.forecast.carbon import FORECAST_MODELS
    except ImportError:  # pragma: no cover - forecast layer absent
        FORECAST_MODELS = ("seasonal_naive",)
    return ["default", *FORECAST_MODELS, "seasonal_naive_local"]


def check_forecast_model(model: str, *, name: str = "forecast model") -> str:
    """``model`` if :func:`forecast_model_names` has it, else a one-line :class:`ConfigError` listing them."""
    names = forecast_model_names()
    if model not in names:
        raise ConfigError(f"unknown {name} {model!r}; use one of {', '.join(names)}")
    return model


def forecast_rows(values: np.ndarray, issue_idx: np.ndarray, horizon_steps: int, steps_per_day: int = 24, model: str = "default") -> tuple[np.ndarray, str]:
    """Forecast matrix (one row per issue slot) and the name of the model that made it.

    Uses ``care_flows.forecast.carbon.forecast_matrix`` (the project's forecast) when it exists;
    otherwise (or for ``model="seasonal_naive"``) :func:`seasonal_naive_matrix`.
    """
    check_forecast_model(model)
    try:
        from care_flows.forecast.carbon import forecast_matrix  # type: ignore[attr-defined]
    except ImportError:
        forecast_matrix = None
    if forecast_matrix is not None and model != "seasonal_naive_local":
        out = forecast_matrix(np.asarray(values, dtype=float), np.asarray(issue_idx), int(horizon_steps), steps_per_day=steps_per_day, model=model)
        return np.asarray(out, dtype=float), f"care_flows.forecast.carbon.forecast_matrix(model={model!r})"
    if model not in ("default", "seasonal_naive", "seasonal_naive_local"):
        raise ConfigError(f"forecast model {model!r} is not available here; use default or seasonal_naive")
    return seasonal_naive_matrix(values, issue_idx, horizon_steps, steps_per_day), "seasonal_naive (simulate.engine fallback)"


# ---------------------------------------------------------------------------------------- context
@lru_cache(maxsize=256)
def _w_per_vcpu(instance_type: str) -> float:
    from care_flows.accounting import instance_watts
    from care_flows.data import power_table

    table = power_table()
    if instance_type not in table.index:
        raise ConfigError(f"instance type {instance_type!r} is not in the power table; use a known EC2 type such as m5.large")
    watts, _ = instance_watts(instance_type, 0.5)
    return float(watts) / float(table.loc[instance_type, "vcpu"])


def _usd_per_vcpu_hour(prices: Any, region: str, instance_type: str) -> float:
    from care_flows.pricing import cpu_credit_usd_per_hour

    usd = float(prices.usd_per_hour(region, instance_type))
    cat = prices.catalog(region)
    vcpu = float(cat.loc[cat["instance_type"] == instance_type, "vcpu"].iloc[0])
    # a burstable type at the model's 50 % CPU pays its surplus CPU credits (t3.large: +0.02 USD/h)
    return (usd + cpu_credit_usd_per_hour(instance_type, vcpu, 0.5)) / vcpu


@dataclass
class SimContext:
    """Everything the policies need, computed once per (trace, jobs, forecast model).

    Arrays are per job (``n``) in steps since the trace start: ``a`` arrival, ``d`` duration,
    ``dl`` deadline, ``L = dl - d`` latest start; ``q`` the issue slot of the job's forecast;
    ``fc[r, u, k]`` the forecast of region ``r`` issued at slot ``uq[u]`` for slot ``uq[u] + k``
    (``fcum`` its cumulative sum along ``k``, with a leading 0).

    ``fc`` and ``fcum`` are built on first use, ``H`` steps long where ``H`` covers the widest
    horizon of *these* jobs (deadline, or GAIA's queue length). :meth:`subset` (one job group of
    :func:`care_flows.simulate.policies.slack_chunks`) builds its own, over its own issue slots and
    horizon, so one job with a long slack no longer widens every issue slot's row (review 32 #3);
    the group's rows are the first columns of the whole context's rows, so decisions do not change.
    """

    trace: CarbonTrace
    jobs: JobSet
    home: np.ndarray
    a: np.ndarray
    d: np.ndarray
    dl: np.ndarray
    kwh_per_step: np.ndarray
    usd_per_step: np.ndarray
    """(R, n): USD per step of the job in each region; ``inf`` where its instance type is not sold."""
    interruptible: np.ndarray
    q: np.ndarray
    u: np.ndarray
    uq: np.ndarray
    cum: np.ndarray
    mean_len: np.ndarray
    """GAIA's expected length (steps) of each job's queue (short < 2 h, long >= 2 h)."""
    forecast_model: str
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Warnings about the jobs, one line each (an instance type not sold in a simulated region)."""
    _fc: np.ndarray | None = field(default=None, repr=False)
    _fcum: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def fc(self) -> np.ndarray:
        """``(R, len(uq), H)`` forecasts (built on first use; edits to it are what the policies see)."""
        if self._fc is None:
            self._build_forecast()
        return self._fc  # type: ignore[return-value]

    @property
    def fcum(self) -> np.ndarray:
        """``(R, len(uq), H + 1)`` cumulative sums of :attr:`fc` along the horizon, from 0."""
        if self._fcum is None:
            self._build_forecast()
        return self._fcum  # type: ignore[return-value]

    def horizon_steps(self) -> int:
        """``H``: the forecast steps these jobs read (to the deadline, or GAIA's queue length past
        the latest start when that is later), counted from their issue slots."""
        horizon_end = np.maximum(self.dl, self.a + np.floor(np.maximum(self.dl - self.d - self.a, 0) + 1e-9) + self.mean_len)
        return int(np.ceil(np.max(horizon_end - self.q) + 1e-9)) + 1

    def _build_forecast(self) -> None:
        H = self.horizon_steps()
        cache = self.extra.get("forecast_cache")
        key = (H, self.uq.tobytes())
        if cache is not None and key in cache:
            self._fc, self._fcum = cache[key]
            return
        forecaster = self.extra.get("forecaster")
        fcs = []
        for r in range(self.R):
            values, off = self.trace.forecast_history(r)  # the region's own rows, before the common start too
            issues = self.uq + off if off else self.uq
            if forecaster is not None:
                rows = np.asarray(forecaster(values, issues, H, self.trace.steps_per_day), dtype=float)
            else:
                rows, _ = forecast_rows(values, issues, H, self.trace.steps_per_day, self.extra.get("forecast_model_arg", "default"))
            fcs.append(rows)
        fc = np.stack(fcs)
        self._fc = fc
        self._fcum = np.concatenate([np.zeros(fc.shape[:2] + (1,)), np.cumsum(fc, axis=2)], axis=2)
        if cache is not None:
            cache[key] = (self._fc, self._fcum)

    @property
    def R(self) -> int:
        return len(self.trace.regions)

    @property
    def L(self) -> np.ndarray:
        return self.dl - self.d

    @property
    def offered(self) -> np.ndarray:
        """(R, n): whether the job's instance type is sold in the region (it always is at home)."""
        return np.isfinite(self.usd_per_step)

    # exact integrals of a step function given its cumulative sum ------------------------------
    def true_int(self, r: np.ndarray | int, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Integral of the real intensity of region(s) ``r`` over ``[s, e)`` (g/kWh x steps)."""
        return self._F(self.cum, self.trace.values, r, e) - self._F(self.cum, self.trace.values, r, s)

    def fc_int(self, r: np.ndarray | int, j: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Integral of job ``j``'s forecast for region(s) ``r`` over ``[s, e)``."""
        uj = self.u[j]
        qj = self.q[j]
        if np.ndim(s) > np.ndim(uj):
            uj = uj.reshape(uj.shape + (1,) * (np.ndim(s) - np.ndim(uj)))
            qj = qj.reshape(uj.shape)
        return self._Fh(r, uj, e - qj) - self._Fh(r, uj, s - qj)

    @staticmethod
    def _F(cum: np.ndarray, vals: np.ndarray, r: Any, t: np.ndarray) -> np.ndarray:
        T = vals.shape[1]
        i = np.clip(np.floor(t), 0, T - 1).astype(np.int64)
        return cum[r, i] + (t - i) * vals[r, i]

    def _Fh(self, r: Any, u: np.ndarray, k: np.ndarray) -> np.ndarray:
        H = self.fc.shape[2]
        i = np.clip(np.floor(k), 0, H - 1).astype(np.int64)
        return self.fcum[r, u, i] + (k - i) * self.fc[r, u, i]

    def forecast_at_slots(self, r: int, first_slot: int, last_slot: int, horizon_steps: int) -> np.ndarray:
        """Forecast rows of region ``r`` issued at every slot ``first_slot..last_slot`` (row ``i`` reads
        only the region's rows before slot ``first_slot + i``, :meth:`CarbonTrace.forecast_history`),
        from the same model or forecaster as the arrivals' forecasts.

        Re-planning policies use this: a job still waiting at slot ``s`` sees the forecast issued at ``s``.
        """
        key = ("forecast_at_slots", int(r), int(first_slot), int(last_slot), int(horizon_steps))
        if key not in self.extra:
            values, off = self.trace.forecast_history(int(r))
            issues = np.arange(int(first_slot), int(last_slot) + 1) + off
            forecaster = self.extra.get("forecaster")
            if forecaster is not None:
                rows = np.asarray(forecaster(values, issues, int(horizon_steps), self.trace.steps_per_day), dtype=float)
            else:
                rows, _ = forecast_rows(values, issues, int(horizon_steps), self.trace.steps_per_day, self.extra.get("forecast_model_arg", "default"))
            self.extra[key] = rows
        return self.extra[key]

    def fc_slot(self, r: Any, j: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Forecast value of absolute slot ``slot`` for job ``j`` in region ``r``."""
        uj = self.u[j]
        qj = self.q[j]
        if np.ndim(slot) > np.ndim(uj):
            uj = uj[:, None]
            qj = qj[:, None]
        k = np.clip(slot - qj, 0, self.fc.shape[2] - 1)
        return self.fc[r, uj, k]

    def short_history_note(self, policy: str) -> str:
        """The note of :func:`_short_history_note` for ``policy``: none for ``now`` and ``oracle``
        (they read no forecast) or a custom forecaster; the home region's history for the policies
        that only defer (``threshold``, the peers but one), every region's for ``care`` and
        ``carbonaware-prefect``, which also move jobs (review 54d L4)."""
        if policy in ("now", "oracle") or self.extra.get("forecaster") is not None:
            return ""
        spatial = str(policy).startswith("care") or policy == "carbonaware-prefect"
        return _short_history_note(self.trace, self.uq, self.u, self.extra.get("forecast_model_arg", "default"), None if spatial else self.home)

    def subset(self, jobs: np.ndarray) -> "SimContext":
        """The context of the jobs ``jobs`` (indices) alone, for running a policy on a group of jobs.

        Per-job arrays are sliced; the trace is shared. The forecast is the whole context's
        when that exists already (shared, not copied: e.g. a test edited it); otherwise the subset
        builds its own on first use, over its jobs' issue slots and horizon only (cached in the
        whole context, so running several policies builds each group's forecast once).
        ``jobs`` (the JobSet) stays the whole set (policies do not read it). The cache of
        :meth:`forecast_at_slots` is not shared, so it is freed with the subset.

        >>> idx = pd.date_range("2023-01-01", periods=72, freq="h", tz="UTC")
        >>> trace = CarbonTrace.from_series({"eu-south-2": pd.Series(100.0, index=idx)})
        >>> from care_flows.simulate.jobs import jobs_from_frame
        >>> js = jobs_from_frame(pd.DataFrame({"job_id": ["x", "y"], "arrival": [idx[30], idx[40]], "duration_h": 1.0, "slack_h": [20.0, 5.0]}))
        >>> ctx = SimContext.build(trace, js, home_region="eu-south-2")
        >>> sub = ctx.subset(np.array([1]))
        >>> sub.n, sub.a.tolist(), sub.L.tolist(), sub.fc.shape, ctx.fc.shape
        (1, [40.0], [45.0], (1, 1, 8), (1, 2, 23))
        >>> bool((sub.fc[0, 0] == ctx.fc[0, 1, :8]).all()), ctx.subset(np.array([1])).fc is ctx.fc
        (True, True)
        """
        j = np.asarray(jobs, dtype=np.int64)
        per_job = ("home", "a", "d", "dl", "kwh_per_step", "interruptible", "q", "u", "mean_len")
        sliced = {name: getattr(self, name)[j] for name in per_job}
        extra = {k: v for k, v in self.extra.items() if not isinstance(k, tuple)}
        if self._fc is None:  # the group's own forecast: its issue slots, its horizon
            uq, u = np.unique(sliced["q"], return_inverse=True)
            sliced.update(uq=uq, u=u.astype(np.int64))
            self.extra.setdefault("forecast_cache", {})
            extra["forecast_cache"] = self.extra["forecast_cache"]
        return replace(self, **sliced, usd_per_step=self.usd_per_step[:, j], extra=extra, _fc=self._fc, _fcum=self._fcum)

    @classmethod
    def build(
        cls,
        trace: CarbonTrace,
        jobs: JobSet,
        *,
        home_region: str,
        prices: Any = None,
        forecast_model: str = "default",
        forecaster: Any = None,
    ) -> "SimContext":
        """Validate the jobs against the trace, price them, and make every arrival's forecast.

        ``forecaster(values, issue_idx, horizon_steps, steps_per_day) -> ndarray`` replaces the
        forecast (tests inject hand-made forecasts this way); it must use only
        ``values[:issue_idx[i]]`` for row ``i``. It is called per region with that region's
        :meth:`CarbonTrace.forecast_history` (``issue_idx`` shifted by its offset).
        """
        if home_region not in trace.regions:
            raise ConfigError(
                f"home region {home_region} has no carbon trace (simulated: {', '.join(trace.regions)}); add one for it "
                f"(care simulate --carbon-csv {home_region}=PATH) or choose a simulated region as the home region"
            )
        if prices is None:
            from care_flows.pricing import EmbeddedPrices

            prices = EmbeddedPrices()
        f = jobs.frame
        step_ns = int((trace.index[1] - trace.index[0]).value)
        t0 = trace.index[0].value
        a = (pd.DatetimeIndex(f["arrival"]).as_unit("ns").asi8 - t0) / step_ns
        dl = (pd.DatetimeIndex(f["deadline"]).as_unit("ns").asi8 - t0) / step_ns
        step_h = trace.step_h
        d = f["duration_h"].to_numpy(dtype=float) / step_h
        T = trace.values.shape[1]
        q = np.floor(a + 1e-9).astype(np.int64)
        ids = f["job_id"].to_numpy()
        bad = np.nonzero(q < 1)[0]  # no row before the issue slot in the latest-starting region(s) (offset 0)
        if len(bad):
            i = int(bad[0])
            raise _no_history_error(trace, f"{jobs.at(i)} (job {ids[i]!r})", f["arrival"].iloc[i], int(q[i]))
        bad = np.nonzero(dl > T + 1e-9)[0]
        if len(bad):
            raise _past_the_end_error(trace, jobs, bad)
        regions = trace.regions
        job_region = f["region"].to_numpy(dtype=object)
        home = np.full(len(f), regions.index(home_region), dtype=np.int64)
        for name in pd.unique(job_region):
            if name:
                if name not in regions:
                    i = int(np.nonzero(job_region == name)[0][0])
                    raise DataError(
                        f"{jobs.at(i)} (job {ids[i]!r}): region {name!r} has no carbon trace in this simulation; simulated: {', '.join(regions)}"
                    )
                home[job_region == name] = regions.index(name)
        itypes = f["instance_type"].to_numpy(dtype=object)
        w_vcpu = np.empty(len(f))
        usd = np.empty((len(regions), len(f)))
        notes: list[str] = []
        for it in pd.unique(itypes):
            sel = itypes == it
            i = int(np.nonzero(sel)[0][0])
            try:
                w_vcpu[sel] = _w_per_vcpu(str(it))
            except ConfigError as exc:
                raise DataError(f"{jobs.at(i)} (job {ids[i]!r}): {exc}") from None
            for r, reg in enumerate(regions):
                try:
                    usd[r, sel] = _usd_per_vcpu_hour(prices, reg, str(it))
                except ConfigError as exc:
                    at_home = np.nonzero(sel & (home == r))[0]
                    if len(at_home):  # a job must be able to run in its own region
                        i = int(at_home[0])
                        raise DataError(f"{jobs.at(i)} (job {ids[i]!r}): {exc}") from None
                    # elsewhere the type is simply not an option, as in decide() ("type not offered")
                    usd[r, sel] = np.inf
                    k = int(sel.sum())
                    notes.append(f"instance type {it} is not sold in {reg} (no price there): "
                                 f"its {k} job{'s' if k != 1 else ''} {'are' if k != 1 else 'is'} not moved to {reg}")
        from care_flows.accounting import PUE_AWS

        cpus = f["cpus"].to_numpy(dtype=float)
        kwh_per_step = cpus * w_vcpu * PUE_AWS / 1000.0 * step_h
        usd_per_step = usd * cpus[None, :] * step_h
        # GAIA's queue means (its loader: mean length of jobs shorter / not shorter than 2 h)
        short = d * step_h < 2.0
        mean_len = np.where(short, d[short].mean() if short.any() else 0.0, d[~short].mean() if (~short).any() else 0.0)
        uq, u = np.unique(q, return_inverse=True)
        # the forecasts themselves are built on first use (SimContext.fc), per job group when the
        # policies run group by group; a 1-step forecast checks the model and names it now
        if forecaster is not None:
            model_name = getattr(forecaster, "__name__", "custom")
        else:
            _, model_name = forecast_rows(trace.values[0], uq[:1], 1, trace.steps_per_day, forecast_model)
        cum = np.concatenate([np.zeros((len(regions), 1)), np.cumsum(trace.values, axis=1)], axis=1)
        return cls(
            trace=trace,
            jobs=jobs,
            home=home,
            a=a,
            d=d,
            dl=dl,
            kwh_per_step=kwh_per_step,
            usd_per_step=usd_per_step,
            interruptible=f["interruptible"].to_numpy(dtype=bool),
            q=q,
            u=u.astype(np.int64),
            uq=uq,
            cum=cum,
            mean_len=mean_len,
            forecast_model=model_name,
            extra={"forecaster": forecaster, "forecast_model_arg": forecast_model},
            notes=notes,
        )


# ------------------------------------------------------------------------------------- decisions
@dataclass
class Decision:
    """What a policy decided: a region per job and execution segments (flat arrays, in steps)."""

    policy: str
    region: np.ndarray
    seg_job: np.ndarray
    seg_start: np.ndarray
    seg_len: np.ndarray


@dataclass
class Outcome:
    """Realised per-job results of a :class:`Decision` on the real trace."""

    policy: str
    ctx: SimContext
    decision: Decision
    carbon_g: np.ndarray
    cost_usd: np.ndarray
    baseline_carbon_g: np.ndarray
    baseline_cost_usd: np.ndarray
    finish: np.ndarray
    delay_h: np.ndarray
    missed: np.ndarray
    segments: pd.DataFrame = field(repr=False)
    notes: list[str] = field(default_factory=list)
    """Warnings about the input (columns ignored, rows cut by aligning the traces), one line each."""

    def __repr__(self) -> str:
        """One line, for a notebook (the per-job arrays and the context stay attributes)."""
        c, b = float(self.carbon_g.sum()), float(self.baseline_carbon_g.sum())
        saved = f"{100 * (b - c) / b:.1f}% saved" if b > 0 else "no baseline carbon"
        return (f"Outcome(policy={self.policy!r}, jobs={len(self.carbon_g)}, carbon_g={c:.4g} vs baseline {b:.4g} ({saved}), "
                f"cost_usd={float(self.cost_usd.sum()):.4g} vs {float(self.baseline_cost_usd.sum()):.4g}, "
                f"deadline_misses={int(self.missed.sum())}, segments={len(self.segments)})")

    def summary(self) -> dict[str, Any]:
        """The JSON document of ``care simulate --json``."""
        from care_flows.simulate.report import summary

        return summary(self)


def _merge_segments(job: np.ndarray, region: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = length > 1e-12
    job, region, start, length = job[keep], region[keep], start[keep], length[keep]
    order = np.lexsort((start, job))
    job, region, start = job[order], region[order], start[order]
    end = start + length[order]
    if len(job) == 0:
        return job, region, start, end
    new = np.ones(len(job), dtype=bool)
    new[1:] = (job[1:] != job[:-1]) | (region[1:] != region[:-1]) | (np.abs(start[1:] - end[:-1]) > 1e-9)
    first = np.nonzero(new)[0]
    ends = np.maximum.reduceat(end, first)
    return job[first], region[first], start[first], ends


def evaluate(ctx: SimContext, decision: Decision) -> Outcome:
    """Realised carbon, cost, delay and deadline misses of ``decision`` on the real trace."""
    n = ctx.n
    j = decision.seg_job
    r = decision.region[j]
    s = decision.seg_start
    e = s + decision.seg_len
    seg_carbon = ctx.true_int(r, s, e) * ctx.kwh_per_step[j]
    seg_cost = decision.seg_len * ctx.usd_per_step[r, j]
    carbon = np.bincount(j, weights=seg_carbon, minlength=n)
    cost = np.bincount(j, weights=seg_cost, minlength=n)
    ran = np.bincount(j, weights=decision.seg_len, minlength=n)
    finish = np.full(n, -np.inf)
    np.maximum.at(finish, j, e)
    first = np.full(n, np.inf)
    np.minimum.at(first, j, s)
    if not np.allclose(ran, ctx.d, atol=1e-6) or (first < ctx.a - 1e-9).any():
        bad = int(np.nonzero(~np.isclose(ran, ctx.d, atol=1e-6) | (first < ctx.a - 1e-9))[0][0])
        raise AssertionError(f"policy {decision.policy} scheduled job {bad} wrongly (ran {ran[bad]} of {ctx.d[bad]} steps)")
    h = ctx.home
    base_carbon = ctx.true_int(h, ctx.a, ctx.a + ctx.d) * ctx.kwh_per_step
    base_cost = ctx.d * ctx.usd_per_step[h, np.arange(n)]
    delay_h = (finish - (ctx.a + ctx.d)) * ctx.trace.step_h
    missed = finish > ctx.dl + 1e-6
    mj, mr, ms, me = _merge_segments(j, r, s, decision.seg_len)
    step = ctx.trace.index[1] - ctx.trace.index[0]
    t0 = ctx.trace.index[0]
    ids = ctx.jobs.frame["job_id"].to_numpy()
    # round to the microsecond so segment times print cleanly
    to_time = lambda x: (t0 + pd.to_timedelta(np.round(x * step.value / 1e3) * 1e3, unit="ns")).as_unit("us")  # noqa: E731
    segments = pd.DataFrame(
        {
            "job_id": ids[mj],
            "region": np.asarray(ctx.trace.regions, dtype=object)[mr],
            "start": to_time(ms),
            "end": to_time(me),
        }
    )
    return Outcome(
        policy=decision.policy,
        ctx=ctx,
        decision=decision,
        carbon_g=carbon,
        cost_usd=cost,
        baseline_carbon_g=base_carbon,
        baseline_cost_usd=base_cost,
        finish=finish,
        delay_h=delay_h,
        missed=missed,
        segments=segments,
    )
