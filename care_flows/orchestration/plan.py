"""The one place orchestration asks "when, where, what size": :func:`plan_run` -> :class:`Plan`.

:class:`Plan` is the orchestration-side view of a decision (chosen region, instance type, window
and segments, expected figures, the options considered, the forecast used for the sparkline).
:func:`plan_run` calls the planner (``care_flows.planning.decide``) when it is installed and
adapts its ``Decision``; :func:`window_plan` is a small, vectorised built-in planner (greenest
window per region, greenest slots for interruptible jobs) used as a fallback and in tests.

>>> import pandas as pd
>>> from care_flows.policy import CarePolicy
>>> idx = pd.date_range("2026-01-01", periods=6, freq="1h", tz="UTC")
>>> fc = {"eu-south-2": pd.Series([300.0, 280, 90, 95, 300, 310], index=idx)}
>>> pol = CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="6h")
>>> p = window_plan(pol, fc, idx[0])
>>> p.start.isoformat(), p.now_here, round(p.expected_g_per_kwh, 1)
('2026-01-01T02:00:00+00:00', False, 92.5)
>>> Plan.from_dict(p.to_dict()).segments == p.segments
True
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from care_flows.errors import DeadlineError, PlanningError, ProviderError, UnknownZoneError
from care_flows.policy import CarePolicy
from care_flows.regions import region_info
from care_flows.timeutil import format_duration, iso, parse_time, to_timestamp

__all__ = ["Plan", "plan_run", "planning_deadline", "window_plan", "fetch_forecasts", "plan_from_decision", "Planner", "SourceForEveryPolicy"]

log = logging.getLogger("care_flows.orchestration")

Segment = tuple[pd.Timestamp, pd.Timestamp]
Planner = Callable[..., "Plan"]


@dataclass
class Plan:
    """Where and when a run (or each segment of an interruptible run) executes."""

    region: str
    start: pd.Timestamp
    end: pd.Timestamp
    decided_at: pd.Timestamp
    deadline: pd.Timestamp
    home_region: str
    now_here: bool
    zone: str | None = None
    instance_type: str | None = None
    segments: list[Segment] = field(default_factory=list)
    expected_g: float | None = None
    expected_usd: float | None = None
    expected_g_per_kwh: float | None = None
    baseline_g: float | None = None
    baseline_g_per_kwh: float | None = None
    baseline_usd: float | None = None  # running now at home on the home-sized instance (None: the planner priced nothing)
    baseline_instance_type: str | None = None  # the home-sized instance the baseline runs on
    latency_ms: float | None = None
    source: str = "unknown"
    signal: str | None = None  # the policy's carbon signal kind (None: a plan an older CaRE stored)
    planner: str = "window"
    warnings: list[str] = field(default_factory=list)
    sizing: str | None = None  # what the instance type was sized from (usage history, declared need, pinned)
    duration_from: str | None = None  # the run history the planned duration came from (None: expected_duration)
    overrides: dict[str, Any] | None = None  # the care_overrides job variable's fields the policy was merged with
    baseline_at: pd.Timestamp | None = None  # when the baseline's run-now window starts, if not at decided_at (a re-plan keeps the first plan's)
    expected_kwh: float | None = None  # the planned energy at the wall (None in a plan an older CaRE stored: see energy_kwh)
    baseline_kwh: float | None = None  # the baseline's energy at the wall (None in a plan an older CaRE stored: see baseline_energy_kwh)
    options: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    forecast: pd.Series | None = field(default=None, repr=False, compare=False)
    home_forecast: pd.Series | None = field(default=None, repr=False, compare=False)  # the baseline's (a local run runs there)

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = [(self.start, self.end)]

    @property
    def baseline_start(self) -> pd.Timestamp:
        """Where the baseline ("run now, at home") starts: the first plan's decision time. A re-plan
        (controller) or a check at start decides again (``decided_at``: when its forecast was issued)
        against the same baseline (``baseline_at``)."""
        return self.baseline_at if self.baseline_at is not None else self.decided_at

    @property
    def savings_g(self) -> float | None:
        """Expected gCO2eq saved against running now at home."""
        if self.baseline_g is None or self.expected_g is None:
            return None
        return self.baseline_g - self.expected_g

    @property
    def savings_pct(self) -> float | None:
        """Expected carbon saving in % of the run-now-at-home baseline."""
        if not self.baseline_g or self.expected_g is None:
            return None
        return 100.0 * (self.baseline_g - self.expected_g) / self.baseline_g

    @property
    def savings_usd(self) -> float | None:
        """Expected USD saved against running now at home (negative: the plan costs more)."""
        if self.baseline_usd is None or self.expected_usd is None:
            return None
        return self.baseline_usd - self.expected_usd

    @property
    def abatement_usd_per_tco2(self) -> float | None:
        """Expected extra USD per tonne of CO2eq avoided against running now at home (negative: the
        greener plan is also cheaper), as ``decide`` computes it; None when nothing is avoided or a
        figure is unknown (:meth:`abatement_note` says which).

        >>> import pandas as pd
        >>> t = pd.Timestamp("2026-01-01T00:00Z")
        >>> p = Plan("eu-north-1", t, t + pd.Timedelta("1h"), t, t + pd.Timedelta("4h"), "eu-south-2", False, expected_g=0.32007,
        ...          expected_usd=0.1064, baseline_g=3.29672, baseline_usd=0.1112)
        >>> round(p.savings_usd, 4), round(p.abatement_usd_per_tco2, 2), p.abatement_note
        (0.0048, -1612.55, None)
        >>> p.as_run_now_at_home().abatement_usd_per_tco2, p.as_run_now_at_home().abatement_note
        (None, 'no carbon avoided against the baseline')
        """
        from care_flows.accounting import abatement_usd_per_tco2

        saved_g = self.savings_g
        if saved_g is None or self.savings_usd is None:
            return None
        return abatement_usd_per_tco2(-self.savings_usd, saved_g)

    @property
    def abatement_note(self) -> str | None:
        """Why :attr:`abatement_usd_per_tco2` is None (None when it is known)."""
        if self.savings_g is None:
            return "no carbon figures"
        if self.savings_usd is None:
            return "no price: the planner priced nothing"
        if self.abatement_usd_per_tco2 is None:
            return "no carbon avoided against the baseline"
        return None

    @property
    def work(self) -> pd.Timedelta:
        """The run time the plan was made for: its segments together (start to end without segments)."""
        if self.segments:
            return sum(((b - a) for a, b in self.segments), pd.Timedelta(0))
        return self.end - self.start

    def starts_now(self, now: pd.Timestamp, tolerance_s: float = 1.0) -> bool:
        """The plan's start is ``now`` (within ``tolerance_s``): nothing to wait for."""
        return self.start <= now + pd.Timedelta(seconds=tolerance_s)

    def segment_at(self, t: pd.Timestamp, tolerance_s: float = 2.0) -> int | None:
        """Index of the segment that ``t`` falls in (starts ``tolerance_s`` early), else None."""
        tol = pd.Timedelta(seconds=tolerance_s)
        for i, (a, b) in enumerate(self.segments):
            if a - tol <= t < b:
                return i
        return None

    def next_segment(self, t: pd.Timestamp) -> int | None:
        """Index of the first segment starting after ``t``, else None."""
        for i, (a, _) in enumerate(self.segments):
            if a > t:
                return i
        return None

    @property
    def type_sized_for(self) -> str | None:
        """Why the plan's instance type was offered, from its options' ``sized_for``: ``"cheapest"``
        (right-sized), ``"max_g_per_run"`` (a dearer type that keeps the carbon cap) or
        ``"priorities"`` (a dearer, lower-power type, ``instance_choice: priorities``); None when
        the plan has no options to say (a plan rebuilt from its marker: its run was launched on it)."""
        o = self.options
        if o is None or not len(o) or not self.instance_type or not {"region", "instance_type", "sized_for"} <= set(o.columns):
            return None
        rows = o[(o["region"] == self.region) & (o["instance_type"] == self.instance_type)]
        kinds = set(rows["sized_for"].astype(str))
        return kinds.pop() if len(kinds) == 1 else None

    @property
    def type_for_cap(self) -> bool:
        """Whether the plan's instance type is a dearer one than right-sizing picks, offered because
        the right-sized type breaks ``max_g_per_run`` there: only an instance of that type keeps the
        cap (a plan rebuilt from its marker has no options and says False: its run was launched on it)."""
        from care_flows.planning.decide import CAP_TYPE

        return self.type_sized_for == CAP_TYPE

    @property
    def right_sized_type(self) -> str | None:
        """The right-sized (cheapest fitting) type in the plan's region, from its options; the plan's
        own type when the options do not say (a plan rebuilt from its marker)."""
        o = self.options
        if o is not None and len(o) and {"region", "instance_type", "sized_for"} <= set(o.columns):
            from care_flows.planning.decide import right_sized_rows

            rows = right_sized_rows(o[o["region"] == self.region])
            if len(rows) and rows["instance_type"].iloc[0]:
                return str(rows["instance_type"].iloc[0])
        return self.instance_type

    @property
    def type_not_right_sized(self) -> bool:
        """Whether the plan's type is one right-sizing would not pick (:attr:`type_sized_for` is
        ``"max_g_per_run"`` or ``"priorities"``): the planned figures hold on an instance of that type only."""
        from care_flows.planning.decide import CAP_TYPE, PRIORITY_TYPE

        return self.type_sized_for in (CAP_TYPE, PRIORITY_TYPE)

    def as_run_now_at_home(self) -> "Plan":
        """This plan's baseline as a plan: the work run now, in the home region, on the instance
        planned there. What a local call executes whatever the plan says (the deployed flow would
        follow the plan), so its expected figures are the baseline's, not the plan's: ``care
        report`` must not count a saving that only a deployment would have made.

        >>> import pandas as pd
        >>> t = pd.Timestamp("2026-01-01T00:00Z")
        >>> p = Plan("eu-north-1", t + pd.Timedelta("3h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("8h"), "eu-south-2", False,
        ...          expected_g=2.0, expected_g_per_kwh=20.0, expected_usd=0.09, baseline_g=20.0, baseline_g_per_kwh=200.0)
        >>> h = p.as_run_now_at_home()
        >>> h.region, h.start == t, h.end - h.start, h.expected_g, h.expected_g_per_kwh, h.now_here, h.savings_g
        ('eu-south-2', True, Timedelta('0 days 01:00:00'), 20.0, 200.0, True, 0.0)
        """
        start = self.baseline_start
        usd, instance_type = self.baseline_usd, self.baseline_instance_type
        if self.options is not None and len(self.options) and {"region", "kind"} <= set(self.options.columns):
            from care_flows.planning.decide import right_sized_rows

            rows = right_sized_rows(self.options[(self.options["region"] == self.home_region) & (self.options["kind"] == "now")])
            if len(rows):
                row = rows.iloc[0]
                price = row.get("expected_usd")
                if usd is None:
                    usd = float(price) if price is not None and np.isfinite(float(price)) else None
                instance_type = instance_type or row.get("instance_type") or None
        if self.region == self.home_region:
            usd = self.expected_usd if usd is None else usd
            instance_type = instance_type or self.instance_type
        return Plan(
            region=self.home_region, start=start, end=start + self.work, decided_at=self.decided_at, deadline=self.deadline, baseline_at=self.baseline_at,
            home_region=self.home_region, now_here=True, zone=None if self.region != self.home_region else self.zone,
            instance_type=instance_type, expected_g=self.baseline_g, expected_usd=usd, expected_g_per_kwh=self.baseline_g_per_kwh,
            expected_kwh=self.baseline_energy_kwh, baseline_kwh=self.baseline_energy_kwh,
            baseline_g=self.baseline_g, baseline_g_per_kwh=self.baseline_g_per_kwh, baseline_usd=usd,
            baseline_instance_type=instance_type, source=self.source, signal=self.signal, planner=self.planner,
            warnings=list(self.warnings), sizing=self.sizing, duration_from=self.duration_from, overrides=self.overrides,
            options=self.options, forecast=self.home_forecast, home_forecast=self.home_forecast,
        )

    def run_through(self) -> "Plan":
        """This plan run in one piece from its first segment's start: what a local call does with
        an interruptible plan (it has no deployment to continue in, so it cannot pause). The same
        work and energy; the expected g/kWh is the forecast's mean over that window (None without a
        forecast covering it). A plan of one segment is returned as it is.

        >>> import pandas as pd
        >>> t = pd.Timestamp("2026-01-01T00:00Z")
        >>> fc = pd.Series([300.0, 20, 300, 20], index=pd.date_range(t, periods=4, freq="h"))
        >>> p = Plan("eu-south-2", t + pd.Timedelta("1h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("4h"), "eu-south-2", False,
        ...          segments=[(t + pd.Timedelta("1h"), t + pd.Timedelta("2h")), (t + pd.Timedelta("3h"), t + pd.Timedelta("4h"))],
        ...          expected_g=4.0, expected_g_per_kwh=20.0, forecast=fc)
        >>> r = p.run_through()
        >>> r.segments == [(t + pd.Timedelta("1h"), t + pd.Timedelta("3h"))], r.expected_g_per_kwh, r.expected_g
        (True, 160.0, 32.0)
        """
        if len(self.segments) <= 1:
            return self
        from care_flows.accounting import mean_intensity

        start = self.segments[0][0]
        end = start + self.work
        g_per_kwh = None
        if self.forecast is not None and len(self.forecast.dropna()):
            try:
                g_per_kwh = float(mean_intensity(self.forecast, start, end, full=True))
            except ValueError:  # the forecast does not cover the window run through
                g_per_kwh = None
        kwh = self.energy_kwh
        return dataclasses.replace(self, start=start, end=end, segments=[(start, end)], expected_g_per_kwh=g_per_kwh,
                                   expected_g=None if kwh is None or g_per_kwh is None else kwh * g_per_kwh)

    @property
    def energy_kwh(self) -> float | None:
        """The planned energy at the wall: ``expected_kwh``, or for a plan stored before that field
        existed ``expected_g / expected_g_per_kwh`` (None when neither is known, e.g. an older plan
        on a 0 g/kWh forecast). A plan moved to another start keeps it and rescales its gCO2eq.

        >>> import pandas as pd
        >>> t = pd.Timestamp("2026-01-01T00:00Z")
        >>> old = Plan("eu-north-1", t, t + pd.Timedelta("1h"), t, t + pd.Timedelta("2h"), "eu-north-1", True,
        ...            expected_g=2.0, expected_g_per_kwh=20.0)
        >>> old.energy_kwh, dataclasses.replace(old, expected_kwh=0.12, expected_g_per_kwh=0.0).energy_kwh
        (0.1, 0.12)
        """
        return _energy_kwh(self.expected_kwh, self.expected_g, self.expected_g_per_kwh)

    @property
    def baseline_energy_kwh(self) -> float | None:
        """The baseline's energy at the wall (the work run now at home on the home-sized instance):
        ``baseline_kwh``, else ``baseline_g / baseline_g_per_kwh`` (None when neither is known).

        >>> import pandas as pd
        >>> t = pd.Timestamp("2026-01-01T00:00Z")
        >>> p = Plan("eu-north-1", t, t + pd.Timedelta("1h"), t, t + pd.Timedelta("2h"), "eu-south-2", False, baseline_g=20.0, baseline_g_per_kwh=200.0)
        >>> p.baseline_energy_kwh, dataclasses.replace(p, baseline_g=0.0, baseline_g_per_kwh=0.0, baseline_kwh=0.12).baseline_energy_kwh
        (0.1, 0.12)
        """
        return _energy_kwh(self.baseline_kwh, self.baseline_g, self.baseline_g_per_kwh)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no options table, no forecast)."""
        return {
            "region": self.region,
            "zone": self.zone,
            "instance_type": self.instance_type,
            "start": iso(self.start),
            "end": iso(self.end),
            "segments": [[iso(a), iso(b)] for a, b in self.segments],
            "decided_at": iso(self.decided_at),
            "deadline": iso(self.deadline),
            "home_region": self.home_region,
            "now_here": self.now_here,
            "expected_g": self.expected_g,
            "expected_usd": self.expected_usd,
            "expected_g_per_kwh": self.expected_g_per_kwh,
            "baseline_g": self.baseline_g,
            "baseline_g_per_kwh": self.baseline_g_per_kwh,
            "baseline_usd": self.baseline_usd,
            "baseline_instance_type": self.baseline_instance_type,
            "savings_pct": self.savings_pct,
            "savings_usd": self.savings_usd,
            "abatement_usd_per_tco2": self.abatement_usd_per_tco2,
            "latency_ms": self.latency_ms,
            "source": self.source,
            "signal": self.signal,
            "planner": self.planner,
            "warnings": list(self.warnings),
            "sizing": self.sizing,
            "duration_from": self.duration_from,
            "overrides": dict(self.overrides) if self.overrides else None,
            "baseline_at": iso(self.baseline_at) if self.baseline_at is not None else None,
            "expected_kwh": self.expected_kwh,
            "baseline_kwh": self.baseline_kwh,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Plan":
        """Inverse of :meth:`to_dict` (``savings_pct``, ``savings_usd`` and ``abatement_usd_per_tco2``
        are derived, not read). A dict written before a field existed (a marker of a run an older CaRE
        scheduled) loads with that field None."""
        d = dict(doc)
        for derived in ("savings_pct", "savings_usd", "abatement_usd_per_tco2"):
            d.pop(derived, None)
        for key in ("start", "end", "decided_at", "deadline"):
            d[key] = parse_time(d[key], name=key)
        d["baseline_at"] = parse_time(d["baseline_at"], name="baseline_at") if d.get("baseline_at") else None
        d["segments"] = [(parse_time(a), parse_time(b)) for a, b in d.get("segments") or []]
        d["warnings"] = list(d.get("warnings") or [])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _energy_kwh(kwh: float | None, g: float | None, g_per_kwh: float | None) -> float | None:
    """``kwh`` as recorded, else ``g / g_per_kwh`` (a plan an older CaRE stored), else None."""
    if kwh is not None:
        return float(kwh)
    return float(g) / float(g_per_kwh) if g is not None and g_per_kwh else None


def _power_kw(policy: CarePolicy) -> float:
    """kW at the wall for the window planner, from the accounting's power model (PUE included): the
    pinned instance type's (its Teads curve, else the CCF model on its own vCPU and memory, as
    ``decide`` prices it) at the job's mean (``cpu_utilisation`` x the vCPU need) over the type's
    vCPU; without a pinned type, the CCF per-vCPU model on the declared need at ``cpu_utilisation``."""
    from care_flows.accounting import energy_kwh, instance_watts
    from care_flows.pricing import instance_shape

    util, vcpu, memory_gib = policy.cpu_utilisation, policy.vcpu, policy.memory_gib
    shape = instance_shape(policy.instance_type) if policy.instance_type else None
    if shape is not None:
        vcpu, memory_gib = shape
        util = min(1.0, util * policy.vcpu / vcpu)
    watts, _ = instance_watts(policy.instance_type or "", util, vcpu=vcpu, memory_gib=memory_gib)
    return float(energy_kwh(watts, 1.0))


def _clean(series: pd.Series) -> pd.Series:
    s = series.dropna().astype(float)
    if pd.DatetimeIndex(s.index).tz is None:  # as the planners refuse one (review 42d L5): local times read as UTC plan hours off
        from care_flows.planning.windows import naive_index_error

        raise naive_index_error(pd.DatetimeIndex(s.index))
    s.index = pd.DatetimeIndex(s.index).tz_convert("UTC")
    s = s[~s.index.duplicated(keep="last")].sort_index()
    return s


def _step(s: pd.Series) -> pd.Timedelta:
    if len(s) < 2:
        return pd.Timedelta(hours=1)
    return pd.Timedelta(pd.Series(s.index).diff().dropna().median())


def _merge(slots: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for a, b in sorted(slots):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _window_means(values: np.ndarray, slots: float) -> np.ndarray:
    """Mean intensity of a run of ``slots`` slots (a fraction allowed) starting at each slot: the
    last slot weighs the part of it the run uses (review 46a M3: a 90 min job on 100 then 400 is
    200 g/kWh, not 250); NaN where the series ends first.

    >>> _window_means(np.array([500.0, 100.0, 400.0, 240.0]), 1.5).tolist()
    [366.6666666666667, 200.0, 346.6666666666667, nan]
    """
    n = max(1, math.ceil(slots - 1e-9))
    frac = slots - (n - 1)  # the share of the last slot the run uses, in (0, 1]
    out = np.full(len(values), np.nan)
    k = len(values) - n + 1
    if k > 0:
        csum = np.concatenate([[0.0], np.cumsum(values)])
        head = csum[n - 1:n - 1 + k] - csum[:k]  # the n - 1 whole slots
        out[:k] = (head + frac * values[n - 1:n - 1 + k]) / (n - 1 + frac)
    return out


def window_plan(
    policy: CarePolicy,
    forecasts: Mapping[str, pd.Series],
    now: pd.Timestamp,
    *,
    duration: timedelta | None = None,
    deadline: pd.Timestamp | None = None,
    tolerance_s: float = 1.0,
) -> Plan:
    """Greenest feasible window (or, for interruptible jobs, greenest slots) over the regions.

    ``forecasts`` maps region -> intensity Series (g/kWh, piecewise constant from each index
    time). Minimises carbon; moves or defers only if it saves at least ``min_savings_pct``. Of the
    hard constraints it applies ``max_latency_ms`` (round trip from ``origin_region``) and
    ``max_g_per_run``; it prices nothing, so the budgets, and the ranking fields (``priorities`` other
    than carbon first, ``weights``, ``tolerance_pct``, ``tie_break``), are not applied: a policy that
    sets them gets a warning saying so (review 43d M3; ``decide`` applies them all). Below the minimum
    saving it runs now at home, unless that breaks ``max_g_per_run`` (then the greenest feasible option
    stands, with a warning).
    """
    now = to_timestamp(now)
    duration = pd.Timedelta(duration or policy.expected_duration)
    deadline = to_timestamp(deadline) if deadline is not None else now + pd.Timedelta(policy.deadline_within)
    if now + duration > deadline:
        raise PlanningError(f"the job ({format_duration(duration)}) cannot finish before the deadline {iso(deadline)}; extend deadline_within")
    kw = _power_kw(policy)
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    origin = policy.origin_region or policy.home_region
    for region in policy.candidate_regions:
        if policy.max_latency_ms is not None:
            from care_flows.latency import rtt_ms

            rtt = rtt_ms(origin, region)
            if rtt > policy.max_latency_ms:
                rows.append({"region": region, "start": None, "end": None, "g_per_kwh": np.nan, "expected_g": np.nan, "latency_ms": rtt,
                             "feasible": False, "why": f"latency {rtt:.1f} ms > max {policy.max_latency_ms:g} ms"})
                continue
        raw = forecasts.get(region)
        if raw is None or len(raw.dropna()) == 0:
            rows.append({"region": region, "start": None, "end": None, "g_per_kwh": np.nan, "expected_g": np.nan, "feasible": False, "why": "no forecast"})
            continue
        s = _clean(raw)
        step = _step(s)
        fwd = _window_means(s.to_numpy(dtype=float), duration / step)
        slot_end = s.index + step
        eff_start = s.index.where(s.index > now, now)
        live = slot_end > now
        feasible = live & (eff_start + duration <= deadline) & ~np.isnan(fwd)
        if not feasible.any():
            rows.append({"region": region, "start": None, "end": None, "g_per_kwh": np.nan, "expected_g": np.nan, "feasible": False, "why": "forecast does not cover [now, deadline]"})
            continue
        cand = pd.DataFrame({"start": eff_start[feasible], "g_per_kwh": fwd[feasible]})
        cand["end"] = cand["start"] + duration
        if cand["start"].iloc[0] <= now < s.index[-1] + step - duration:  # started mid-slot: the exact time-weighted mean
            from care_flows.accounting import mean_intensity

            cand.iloc[0, cand.columns.get_loc("g_per_kwh")] = mean_intensity(s, now, now + duration)
        segments: list[Segment] | None = None
        if policy.interruptible:
            usable = live & (slot_end <= deadline + pd.Timedelta(seconds=1))
            slots = pd.DataFrame({"start": eff_start[usable], "end": slot_end[usable], "g": s.to_numpy()[usable]})
            slots = slots.sort_values(["g", "start"], kind="stable")
            used = (slots["end"] - slots["start"]).dt.total_seconds().to_numpy()  # a slot started mid-way is shorter
            need = duration.total_seconds()
            cum = np.cumsum(used)
            if len(cum) and cum[-1] >= need - 1e-6:
                k = int(np.searchsorted(cum, need - 1e-6))  # the greenest k + 1 slots cover the work
                pick = slots.iloc[: k + 1].copy()
                take = used[: k + 1].copy()
                take[-1] -= cum[k] - need  # the last one only as long as the work still needs
                pick.iloc[-1, pick.columns.get_loc("end")] = pick["start"].iloc[-1] + pd.Timedelta(seconds=float(take[-1])).round("us")
                segs = _merge(list(zip(pick["start"], pick["end"])))
                if policy.max_segments is None or len(segs) <= policy.max_segments:
                    segments = segs
                    seg_mean = float(np.sum(pick["g"].to_numpy() * take) / need)
        now_row = cand.iloc[0] if cand["start"].iloc[0] <= now else None
        top = cand.loc[cand["g_per_kwh"].idxmin()]
        options = []
        if now_row is not None:
            options.append(("run now", now_row["start"], now_row["end"], float(now_row["g_per_kwh"]), None))
        options.append(("greenest window", top["start"], top["end"], float(top["g_per_kwh"]), None))
        if segments is not None:
            options.append(("greenest slots", segments[0][0], segments[-1][1], seg_mean, segments))
        for label, a, b, g, segs in options:
            row = {
                "region": region,
                "option": label,
                "start": a,
                "end": b,
                "g_per_kwh": g,
                "expected_g": g * kw * duration.total_seconds() / 3600.0,
                "_kwh": kw * duration.total_seconds() / 3600.0,
                "latency_ms": None,
                "feasible": True,
                "why": "",
                "_segments": segs or [(a, b)],
                "_forecast": s,
            }
            if policy.max_g_per_run is not None and row["expected_g"] > policy.max_g_per_run:
                row.update(feasible=False, why=f"{row['expected_g']:.4g} gCO2eq > max_g_per_run {policy.max_g_per_run:g}")
            rows.append(row)
            if row["feasible"] and (best is None or row["expected_g"] < best["expected_g"] - 1e-9):
                best = row
            if region == policy.home_region and label == "run now":
                baseline = row
    if best is None:
        reasons = {r["region"]: r["why"] for r in rows}
        raise PlanningError("no feasible option: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()), reasons=reasons)
    kept: list[str] = []
    if baseline is not None and baseline["expected_g"] > 0:
        saving = 100.0 * (baseline["expected_g"] - best["expected_g"]) / baseline["expected_g"]
        if saving < policy.min_savings_pct and baseline["feasible"]:
            best = baseline
        elif saving < policy.min_savings_pct:  # home breaks max_g_per_run: the greenest feasible option stands (review 43e M1)
            kept.append(f"the best option saves {saving:.1f}% carbon, short of min_savings_pct {policy.min_savings_pct:g}%; kept: running "
                        f"now in the home region breaks a hard constraint ({baseline['why']})")
    chosen = best
    ignored = _window_ignores(policy)
    options_df = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    options_df["chosen"] = [r is chosen for r in rows]
    start = to_timestamp(chosen["start"])
    source = str(chosen["_forecast"].attrs.get("source", "forecast")) if "_forecast" in chosen else "forecast"
    src_series = forecasts.get(chosen["region"])
    if src_series is not None and "source" in getattr(src_series, "attrs", {}):
        source = str(src_series.attrs["source"])
    return Plan(
        region=chosen["region"],
        zone=region_info(chosen["region"]).zone,
        instance_type=policy.instance_type,
        start=start,
        end=to_timestamp(chosen["end"]),
        segments=[(to_timestamp(a), to_timestamp(b)) for a, b in chosen["_segments"]],
        decided_at=now,
        deadline=deadline,
        home_region=policy.home_region,
        now_here=bool(chosen["region"] == policy.home_region and start <= now + pd.Timedelta(seconds=tolerance_s)),
        expected_g=float(chosen["expected_g"]),
        expected_g_per_kwh=float(chosen["g_per_kwh"]),
        expected_kwh=float(chosen["_kwh"]),
        baseline_g=None if baseline is None else float(baseline["expected_g"]),
        baseline_g_per_kwh=None if baseline is None else float(baseline["g_per_kwh"]),
        baseline_kwh=None if baseline is None else float(baseline["_kwh"]),
        baseline_instance_type=policy.instance_type,
        source=source,
        signal=policy.signal,
        planner="window",
        options=options_df,
        forecast=chosen["_forecast"],
        home_forecast=forecasts.get(policy.home_region),
        warnings=kept + ([f"the window planner applies carbon, min_savings_pct, max_latency_ms and max_g_per_run only: {', '.join(ignored)} "
                          "not applied (use the default planner, decide)"] if ignored else []),
    )


def _window_ignores(policy: CarePolicy) -> list[str]:
    """The fields of ``policy`` set away from their defaults that :func:`window_plan` does not apply,
    in the policy's field order.

    >>> _window_ignores(CarePolicy(home_region="eu-south-2", budget_usd_per_hour=0.1, tie_break=["home", "earliest"]))
    ['tie_break', 'budget_usd_per_hour']
    >>> _window_ignores(CarePolicy(home_region="eu-south-2"))
    []
    """
    defaults = CarePolicy.model_fields
    out = [name for name in ("budget_usd_per_run", "budget_usd_per_hour", "weights") if getattr(policy, name) is not None]
    if policy.priorities and str(getattr(policy.priorities[0], "value", policy.priorities[0])) != "carbon":
        out.append("priorities")  # carbon first is what this planner does (review 43e L1)
    out += [name for name in ("tolerance_pct", "tie_break") if getattr(policy, name) != (defaults[name].get_default(call_default_factory=True))]
    return sorted(out, key=list(defaults).index)


class SourceForEveryPolicy:
    """One carbon source for every plan (``care controller --source``), in each policy's own kind.

    A policy's ``signal`` (lifecycle, direct, marginal) still decides what is planned on, as it does
    for ``@care``: ``--source`` replaces only where the numbers come from. One signal is built per
    kind and kept (its cache and breaker state live across passes). The source and its credentials
    are checked when this is made, so a wrong ``--source`` fails at start-up; a policy asking for a
    kind the source does not serve fails that run's plan with the source's one-line error.

    >>> from care_flows.policy import CarePolicy
    >>> source = SourceForEveryPolicy("embedded")
    >>> direct = CarePolicy(home_region="eu-north-1", expected_duration="1h", deadline_within="4h", signal="direct")
    >>> source.for_policy(direct).kind, source.for_policy(CarePolicy(home_region="eu-north-1", expected_duration="1h", deadline_within="4h")).kind
    ('direct', 'lifecycle')
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._by_kind: dict[str | None, Any] = {None: self._build(None)}

    def _build(self, kind: str | None) -> Any:
        from care_flows.signals import get_signal  # late: the signals package is optional here

        return get_signal(self.name, kind=kind)

    def for_policy(self, policy: CarePolicy) -> Any:
        """The signal serving ``policy.signal`` (the source's own kind when the policy names none)."""
        if policy.signal not in self._by_kind:
            self._by_kind[policy.signal] = self._build(policy.signal)
        return self._by_kind[policy.signal]

    def __repr__(self) -> str:
        return f"SourceForEveryPolicy({self.name!r})"


def fetch_forecasts(policy: CarePolicy, now: pd.Timestamp, horizon: timedelta, signal: Any = None,
                    notes: list[str] | None = None) -> dict[str, pd.Series]:
    """Forecast per candidate region from a signal (default: ``get_signal(policy.carbon_source)``).

    ``signal`` may also be a :class:`SourceForEveryPolicy` (a source in the policy's kind), a
    mapping region -> Series (used as is) or a callable
    ``(region, start, horizon) -> Series``. A region the source does not cover or fails for is
    left out (logged); ``notes``, when given, receives one line per region left out or served by a
    fallback source, for the plan's warnings.
    """
    if isinstance(signal, Mapping):
        return {r: signal[r] for r in policy.candidate_regions if r in signal}
    if isinstance(signal, SourceForEveryPolicy):
        signal = signal.for_policy(policy)
    if signal is None:
        from care_flows.signals import get_signal  # late: the signals package is optional here

        signal = get_signal(policy.carbon_source, kind=policy.signal)
    from care_flows.signals.base import CarbonSignal, slot_step, zone_asked

    start, span = pd.Timestamp(now), pd.Timedelta(horizon)

    def ask(region: str) -> pd.Series:
        if callable(signal) and not hasattr(signal, "forecast"):
            return signal(region, start, span)
        zone = zone_asked(signal, region)  # the GB API: eu-west-2 is London
        if not isinstance(signal, CarbonSignal):
            return signal.forecast(zone, start, span)
        # CaRE's sources serve grid slots: ask from the start of the current slot, so the slot `now` falls
        # in is covered (a forecast starting at the next hour leaves a short window without data), and a
        # sub-hourly trace's rows since the hour are read (review 45e M5). Other callables get `now` as is:
        # they may describe time relative to it.
        slot = start.floor(slot_step(signal, zone))
        return signal.forecast(zone, slot, span + (start - slot))

    out: dict[str, pd.Series] = {}
    for region, answer in ask_each(ask, list(policy.candidate_regions), at_once=isinstance(signal, CarbonSignal)):
        try:
            if isinstance(answer, BaseException):
                raise answer
            out[region] = answer
        except (UnknownZoneError, ProviderError) as exc:
            # the source does not cover it, or failed for it: planning marks it infeasible ("no carbon
            # data"). The home region's forecast is the baseline: a provider failure there is the
            # reason nothing can be planned, so it is raised as it is (a coverage gap -> decide() says so)
            if isinstance(exc, ProviderError) and region == policy.home_region:
                raise
            note = f"no carbon forecast for {region} ({' '.join(str(exc).split())}); it cannot be chosen"
            log.warning("CaRE: %s", note)
            if notes is not None:
                notes.append(note)
            continue
        if notes is not None:
            notes.extend(_fallback_note(region, out[region]))
    return out


MAX_PARALLEL_FORECASTS = 8
"""Regions whose forecasts are asked for at once: a provider answering in 9 s made 4 regions take 37 s
one after another (review 40f L5); each call keeps its own deadline."""


def ask_each(ask: Callable[[str], Any], regions: list[str], *, at_once: bool = True) -> list[tuple[str, Any]]:
    """``(region, ask(region) or the exception it raised)`` for every region, in order.

    The first region is asked alone: a provider that is down opens its circuit breaker there, so the
    others fail fast (one request, not one retry loop per region), a breaker's half-open trial is
    decided before the others ask, and a WattTime login is made once. With ``at_once`` the rest are
    then asked concurrently (up to :data:`MAX_PARALLEL_FORECASTS`, each in a copy of this context: a
    CLI's ``fallbacks_reported_here`` and Prefect's run context hold in every thread); Ctrl-C there
    stops waiting for them at once. ``at_once=False`` (a caller's own callable, which may hold
    thread-bound resources): one after another.

    >>> ask_each(lambda r: r.upper() if r != "x" else 1 / 0, ["a", "x", "b"])[1][1].__class__.__name__
    'ZeroDivisionError'
    """
    def one(region: str) -> Any:
        try:
            return ask(region)
        except Exception as exc:  # noqa: BLE001 - handed back, judged by the caller
            return exc

    if not regions:
        return []
    first = [(regions[0], one(regions[0]))]
    rest = regions[1:]
    if not at_once or len(rest) <= 1:
        return first + [(r, one(r)) for r in rest]
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_FORECASTS, len(rest)), thread_name_prefix="care-forecast")
    try:
        futures = [pool.submit(contextvars.copy_context().run, one, r) for r in rest]
        answers = [(r, f.result()) for r, f in zip(rest, futures)]
    except BaseException:  # Ctrl-C: do not wait for the others' requests (each ends at its deadline on its own)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return first + answers


def _fallback_note(region: str, series: pd.Series) -> list[str]:
    """One warning when a fallback source served ``region``'s forecast (what failed, what served it)."""
    from care_flows.signals.base import fallback_warnings

    attrs = getattr(series, "attrs", {})
    lines = fallback_warnings(series)
    if not lines:
        return []
    if attrs.get("fallback_note"):  # the signals layer's own line: "<source> failed for <zone> (<why>); using <served>"
        return [f"{region}: {lines[0]}"]
    failed = "; ".join(" ".join(line.split()) for line in lines)
    served = f"{series.attrs.get('source', '?')} ({series.attrs.get('signal', '?')})"
    return [f"{region}: planned on {served} because {failed[:300]}"]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _finite(value: Any) -> float | None:
    """``value`` as a float, None when it is None or not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def plan_from_decision(decision: Any, *, policy: CarePolicy, now: pd.Timestamp, deadline: pd.Timestamp, forecasts: Mapping[str, pd.Series] | None = None, tolerance_s: float = 1.0) -> Plan:
    """Adapt a ``care_flows.planning`` ``Decision`` (attributes per its contract) to a :class:`Plan`."""
    c = decision.chosen
    start, end = to_timestamp(_get(c, "start")), to_timestamp(_get(c, "end"))
    segs = [(to_timestamp(a), to_timestamp(b)) for a, b in (_get(c, "segments") or [])] or [(start, end)]
    region = _get(c, "region")
    base = _get(decision, "baseline")
    now_here = _get(decision, "is_now_here")
    if now_here is None:
        now_here = region == policy.home_region and start <= now + pd.Timedelta(seconds=tolerance_s)
    fc = (forecasts or {}).get(region)
    return Plan(
        region=region,
        zone=_get(c, "zone"),
        instance_type=_get(c, "instance_type") or policy.instance_type,
        start=start,
        end=end,
        segments=segs,
        decided_at=to_timestamp(now),
        deadline=to_timestamp(_get(decision, "deadline", deadline) or deadline),
        home_region=policy.home_region,
        now_here=bool(now_here),
        expected_g=_get(c, "expected_g"),
        expected_usd=_get(c, "expected_usd"),
        expected_g_per_kwh=_get(c, "expected_g_per_kwh"),
        expected_kwh=_finite(_get(c, "kwh")),
        latency_ms=_get(c, "latency_ms"),
        baseline_g=_get(base, "expected_g"),
        baseline_g_per_kwh=_get(base, "expected_g_per_kwh"),
        baseline_kwh=_finite(_get(base, "kwh")),
        baseline_usd=_finite(_get(base, "expected_usd")),
        baseline_instance_type=_get(base, "instance_type") or None,
        source=str(fc.attrs.get("source", "forecast")) if fc is not None else "forecast",
        signal=policy.signal,
        planner="decide",
        warnings=[str(w) for w in (_get(decision, "warnings") or [])],
        options=_get(decision, "options"),
        forecast=fc,
        home_forecast=(forecasts or {}).get(policy.home_region),
    )


def plan_run(
    policy: CarePolicy,
    now: pd.Timestamp,
    *,
    signal: Any = None,
    forecasts: Mapping[str, pd.Series] | None = None,
    duration: timedelta | None = None,
    deadline: pd.Timestamp | None = None,
    planner: Literal["auto", "decide", "window"] = "auto",
    usage: Any = None,
    cap_types: bool = False,
) -> Plan:
    """Plan one run: forecasts from ``signal`` (or given), then ``decide`` (or the window planner).

    ``cap_types``: whether ``decide`` may plan a type other than the right-sized one (a dearer type
    that meets ``max_g_per_run`` where the right-sized one breaks it, or, with ``instance_choice:
    priorities``, a dearer, lower-power type); only a runner that launches the planned type keeps
    that cap or those figures (a ``@care`` trigger on a care-ec2 pool), so it is off by default.

    ``planner="auto"`` uses ``care_flows.planning.decide`` when importable, else :func:`window_plan`.
    ``usage`` (a ``UsageSummary``, e.g. from the flow's usage history) replaces the policy's
    declared ``vcpu`` / ``memory_gib`` for right-sizing (the window planner does not size).
    """
    now = to_timestamp(now)
    deadline = to_timestamp(deadline) if deadline is not None else now + pd.Timedelta(policy.deadline_within)
    if deadline <= now:
        raise DeadlineError(f"deadline {iso(deadline)} is not after now ({iso(now)}); give a later deadline")
    notes: list[str] = []
    if forecasts is None:
        forecasts = fetch_forecasts(policy, now, (deadline - now).to_pytimedelta(), signal, notes=notes)
    decide = None
    if planner in ("auto", "decide"):
        try:
            from care_flows.planning.decide import decide  # type: ignore[no-redef]
        except ImportError:
            if planner == "decide":
                raise
    work = pd.Timedelta(duration if duration is not None else policy.expected_duration)
    end_by = planning_deadline(deadline, now, work, policy.start_margin)
    planning = _with_segment_floor(policy, work)
    if decide is not None:
        decision = decide(planning, forecasts, now, duration=duration, deadline=end_by, usage=usage, cap_types=cap_types)
        plan = plan_from_decision(decision, policy=policy, now=now, deadline=end_by, forecasts=forecasts)
    else:
        plan = window_plan(planning, forecasts, now, duration=duration, deadline=end_by)
    plan.deadline = deadline  # the run's own deadline: deadline_met and a re-plan measure against it, not the margin's
    plan.warnings = [*notes, *plan.warnings]
    return plan


SEGMENT_FLOOR_MARGINS = 5
"""An interruptible plan's segments are at least this many ``start_margin`` long (review 49b M2)."""


def _with_segment_floor(policy: CarePolicy, work: pd.Timedelta) -> CarePolicy:
    """``policy`` with ``min_segment`` raised to :data:`SEGMENT_FLOOR_MARGINS` x ``start_margin``
    (at most the work) for an interruptible plan: each segment after the first is a run to pick up,
    and the margin taken off the deadline would otherwise come back as a segment of a couple of
    minutes, often at now, that turns a deferral into "run now, pause, resume" (review 49b M2).
    Threshold mode takes no ``min_segment``; a larger ``min_segment`` of the policy stands.

    >>> p = _with_segment_floor(CarePolicy(interruptible=True, expected_duration="3h"), pd.Timedelta("3h"))
    >>> str(p.min_segment), _with_segment_floor(CarePolicy(expected_duration="3h"), pd.Timedelta("3h")).min_segment
    ('0:10:00', None)
    """
    margin = pd.Timedelta(policy.start_margin)
    if not policy.interruptible or margin <= pd.Timedelta(0) or policy.threshold_g_per_kwh is not None or policy.threshold_percentile is not None:
        return policy
    floor = min(SEGMENT_FLOOR_MARGINS * margin, pd.Timedelta(work))
    if policy.min_segment is not None and pd.Timedelta(policy.min_segment) >= floor:
        return policy
    return policy.model_copy(update={"min_segment": floor.to_pytimedelta()})


def planning_deadline(deadline: pd.Timestamp, now: pd.Timestamp, work: timedelta | pd.Timedelta, margin: timedelta | pd.Timedelta) -> pd.Timestamp:
    """When a plan must end: ``deadline`` less ``margin`` (the policy's ``start_margin``: the time a
    run that does not start now needs to be picked up and started; review 48c L4). A run that starts
    now needs no margin, so the margin never makes starting now infeasible: when there is no room for
    it, the plan may still start now, and only now.

    >>> now = pd.Timestamp("2023-01-01T00:00Z")
    >>> planning_deadline(now + pd.Timedelta("4h"), now, pd.Timedelta("1h"), pd.Timedelta("5min")).isoformat()
    '2023-01-01T03:55:00+00:00'
    >>> planning_deadline(now + pd.Timedelta("62min"), now, pd.Timedelta("1h"), pd.Timedelta("5min")).isoformat()  # now, or not at all
    '2023-01-01T01:00:00+00:00'
    """
    margin = pd.Timedelta(margin)
    if margin <= pd.Timedelta(0):
        return deadline
    return min(deadline, max(deadline - margin, now + pd.Timedelta(work)))
