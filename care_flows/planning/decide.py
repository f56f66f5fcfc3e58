"""``decide``: the one planning call (when, where, on what) for orchestration and simulation.

For each candidate region of the policy (home first): right-size (or use the pinned type),
plan in time on that region's carbon forecast (contiguous, interruptible or threshold, from
:mod:`care_flows.planning.windows`), account energy, gCO2eq and USD
(:mod:`care_flows.accounting`), then score all options under the policy's constraints and
priorities (:mod:`care_flows.planning.spatial`). Each region contributes its planned window and,
when different, its run-now option; a window within the tolerance of running now ties with it on
carbon (and on cost: same region), and the default ``tie_break`` takes the greener of the two.
When the right-sized (cheapest) type breaks ``max_g_per_run`` at both, the region also offers
both on the cheapest fitting type that meets the cap at the greener of them (``sized_for`` is
``"max_g_per_run"`` in the options table, ``"cheapest"`` elsewhere). With ``instance_choice:
priorities`` each region offers, besides its right-sized type and instead of the cap type, every
fitting type that draws less power than all cheaper ones (``sized_for`` ``"priorities"``), and the
priorities choose among types as among regions and times; waiting is weighed against starting now on
the same type.

A region whose forecast is missing (or all NaN) stays in the table, infeasible with the reason
"no carbon data for zone X", so it never wins. The home region's forecast is required: without it
there is no baseline, and :class:`~care_flows.errors.NoBaselineDataError` (a ``DataError``) says so (callers such as the
``@care`` decorator then run now at home).

The baseline is "run now, at home, on the home-sized instance". Options that save less than
``min_savings_pct`` of the baseline's carbon are excluded before ranking (running now at home never
is), unless running now at home breaks a hard constraint: then the minimum is lowered to the most a
feasible option saves; a planned (waiting) option must also save the minimum against starting now in
its own region. If nothing is feasible, the decision is "now, here" with a warning (never
"wait forever"). Forecasts and prices are injected: no I/O.

>>> import pandas as pd
>>> from care_flows.policy import CarePolicy
>>> idx = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
>>> fc = {"eu-south-2": pd.Series(206.0, index=idx), "eu-north-1": pd.Series(20.0, index=idx)}
>>> pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], vcpu=1.5, memory_gib=6)
>>> d = decide(pol, fc, idx[0])  # a mean of 0.75 vCPU: t3.large at 37.5 %, 0.0864 + 0.0075 USD/h of CPU credits
>>> d.chosen.region, d.chosen.instance_type, d.is_now_here, round(d.savings_pct, 1), round(d.chosen.credit_usd_per_hour, 4)
('eu-north-1', 't3.large', False, 90.3, 0.0075)
>>> round(d.abatement_usd_per_tco2) < 0  # greener and cheaper
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from care_flows.accounting import abatement_usd_per_tco2, energy_kwh, instance_watts
from care_flows.data import EMBEDDED_ZONES
from care_flows.errors import ConfigError, DataError, DeadlineError, NoBaselineDataError, PlanningError
from care_flows.latency import rtt_ms
from care_flows.planning.sizing import SizingChoice, UsageSummary, _mean_vcpu, memoised, right_size, sized_types
from care_flows.planning.spatial import choose
from care_flows.policy import CarePolicy, load_policy
from care_flows.pricing import EmbeddedPrices, PriceSource, cpu_credit_usd_per_hour
from care_flows.regions import region_info
from care_flows.timeutil import duration_arg, format_duration, iso, parse_time

__all__ = ["Option", "Decision", "decide", "OPTION_COLUMNS", "right_sized_rows"]

OPTION_COLUMNS = [
    "region", "zone", "instance_type", "start", "end", "usd_per_hour", "credit_usd_per_hour", "g_per_kwh", "kwh",
    "expected_g", "expected_usd", "latency_ms", "waste_vcpu", "waste_memory_gib", "feasible", "reason", "kind",
    "below_min_saving", "sized_for",
]
RIGHT_SIZED = "cheapest"
"""``sized_for`` of the option rows of each region's right-sized (cheapest fitting) type."""
CAP_TYPE = "max_g_per_run"
"""``sized_for`` of the option rows of a type offered because the right-sized one breaks ``max_g_per_run``."""
PRIORITY_TYPE = "priorities"
"""``sized_for`` of the option rows of a dearer, lower-power type offered under ``instance_choice: priorities``."""


def right_sized_rows(options: pd.DataFrame) -> pd.DataFrame:
    """The option rows of each region's right-sized (cheapest) type: all of them but those of a
    dearer type offered for ``max_g_per_run`` or for the priorities (an options table without
    ``sized_for`` has none)."""
    return options[~options["sized_for"].isin((CAP_TYPE, PRIORITY_TYPE))] if "sized_for" in options.columns else options


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _clean(x.item())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, pd.Timestamp):
        return iso(x)
    return x


@dataclass(frozen=True)
class Option:
    """One (region, start, instance type) with its expected footprint."""

    region: str
    zone: str
    instance_type: str
    start: pd.Timestamp
    end: pd.Timestamp
    segments: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
    expected_g: float
    expected_usd: float
    expected_g_per_kwh: float
    latency_ms: float
    usd_per_hour: float = 0.0
    """the on-demand list price of ``instance_type``"""
    kwh: float = 0.0
    kind: str = "now"
    """``now`` (start at the decision time) or ``planned-contiguous`` / ``planned-interruptible`` /
    ``planned-threshold`` (a window or slots later): tells a deferral from "run now" without
    comparing times."""
    credit_usd_per_hour: float = 0.0
    """CPU-credit surcharge of a burstable type at the expected utilisation
    (:func:`care_flows.pricing.cpu_credit_usd_per_hour`); ``expected_usd`` = hours x
    (``usd_per_hour`` + ``credit_usd_per_hour``)"""

    def __repr__(self) -> str:
        """One line, for a notebook: where, on what, when, and the footprint (the fields stay attributes).

        >>> t = pd.Timestamp("2023-06-01T19:00Z")
        >>> Option("eu-north-1", "SE", "t3.xlarge", t, t + pd.Timedelta("1h"), ((t, t + pd.Timedelta("1h")),), 0.41, 0.1803, 20.3, 54.7)
        Option(eu-north-1 t3.xlarge, now, 2023-06-01T19:00:00+00:00 .. 2023-06-01T20:00:00+00:00, 0.41 gCO2eq, 0.1803 USD)
        """
        parts = f", {len(self.segments)} segments" if len(self.segments) > 1 else ""
        return (f"Option({self.region} {self.instance_type}, {self.kind}, {iso(self.start)} .. {iso(self.end)}{parts}, "
                f"{self.expected_g:.3g} gCO2eq, {self.expected_usd:.4f} USD)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; times ISO 8601 with ``+00:00``."""
        return {
            "region": self.region,
            "zone": self.zone,
            "instance_type": self.instance_type,
            "start": iso(self.start),
            "end": iso(self.end),
            "segments": [{"start": iso(a), "end": iso(b)} for a, b in self.segments],
            "expected_g": _clean(self.expected_g),
            "expected_usd": _clean(self.expected_usd),
            "expected_g_per_kwh": _clean(self.expected_g_per_kwh),
            "latency_ms": _clean(self.latency_ms),
            "usd_per_hour": _clean(self.usd_per_hour),
            "credit_usd_per_hour": _clean(self.credit_usd_per_hour),
            "kwh": _clean(self.kwh),
            "kind": self.kind,
        }


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` chose, against what, and why.

    >>> import pandas as pd
    >>> from care_flows.policy import CarePolicy
    >>> t = pd.date_range("2023-06-01", periods=12, freq="h", tz="UTC")
    >>> d = decide(CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="6h"),
    ...            {"eu-south-2": pd.Series(200.0, index=t), "eu-north-1": pd.Series(20.0, index=t)}, t[0])
    >>> d.chosen.region, d.chosen.kind, d.baseline.region, round(d.savings_pct), d.is_now_here
    ('eu-north-1', 'now', 'eu-south-2', 95, False)

    - ``chosen``: the :class:`Option` to run (region, zone, instance type, start, end, segments,
      ``expected_g`` gCO2eq, ``expected_usd``, ``expected_g_per_kwh``, ``latency_ms``,
      ``usd_per_hour``, ``kwh``);
    - ``baseline``: the "run now, at home, on the home-sized instance" option it is compared with;
    - ``savings_g`` / ``savings_pct``: baseline minus chosen gCO2eq (None without carbon data);
      ``savings_usd``: baseline minus chosen USD (negative: the greener choice costs more);
    - ``abatement_usd_per_tco2``: extra USD per tonne of CO2eq avoided (negative when the greener
      choice is also cheaper; None when nothing is avoided);
    - ``options``: every option considered, one row each with :data:`OPTION_COLUMNS` (``feasible``
      and ``reason`` say why an option was excluded; ``below_min_saving``: it saves less than
      ``min_savings_pct``, which excludes it too, though it may break no hard constraint) plus
      ``rank`` and ``score``;
    - ``is_now_here``: the decision is "run now in the home region"; ``now``: the decision time;
    - ``warnings``: e.g. an unmeetable deadline or a saving under ``min_savings_pct``;
    - ``data_source``: region -> the carbon source (and forecast model) its figures came from;
    - ``mode``: ``contiguous``, ``interruptible`` or ``threshold``.
    """

    chosen: Option
    baseline: Option
    savings_g: float | None
    savings_pct: float | None
    savings_usd: float
    abatement_usd_per_tco2: float | None
    options: pd.DataFrame
    is_now_here: bool
    now: pd.Timestamp
    warnings: tuple[str, ...] = ()
    data_source: dict[str, str] = field(default_factory=dict)
    mode: str = "contiguous"

    def __repr__(self) -> str:
        """A few lines, for a notebook: the choice, the baseline, the saving, and counts (not the option table).

        >>> t = pd.date_range("2023-06-01", periods=12, freq="h", tz="UTC")
        >>> from care_flows.policy import CarePolicy
        >>> decide(CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="6h"),
        ...        {"eu-south-2": pd.Series(200.0, index=t), "eu-north-1": pd.Series(20.0, index=t)}, t[0])
        Decision(
          chosen=Option(eu-north-1 c5a.xlarge, now, 2023-06-01T00:00:00+00:00 .. 2023-06-01T01:00:00+00:00, 0.241 gCO2eq, 0.1640 USD),
          baseline=Option(eu-south-2 t3.xlarge, now, 2023-06-01T00:00:00+00:00 .. 2023-06-01T01:00:00+00:00, 4.39 gCO2eq, 0.1824 USD),
          savings_pct=94.5, savings_usd=0.0184, options=2 (2 feasible), warnings=0, mode='contiguous')
        """
        pct = "None" if self.savings_pct is None else f"{self.savings_pct:.1f}"
        feasible = int(self.options["feasible"].sum()) if "feasible" in self.options else len(self.options)
        return (f"Decision(\n  chosen={self.chosen!r},\n  baseline={self.baseline!r},\n  savings_pct={pct}, "
                f"savings_usd={self.savings_usd:.4f}, options={len(self.options)} ({feasible} feasible), "
                f"warnings={len(self.warnings)}, mode={self.mode!r})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (ISO times, no NaN)."""
        rows = []
        for rec in self.options.drop(columns=["segments"], errors="ignore").to_dict("records"):
            rows.append({k: _clean(v) for k, v in rec.items() if k in OPTION_COLUMNS or k in ("rank", "score", "data_source")})
        return {
            "now": iso(self.now),
            "chosen": self.chosen.to_dict(),
            "baseline": self.baseline.to_dict(),
            "savings_g": _clean(self.savings_g),
            "savings_pct": _clean(self.savings_pct),
            "savings_usd": _clean(self.savings_usd),
            "abatement_usd_per_tco2": _clean(self.abatement_usd_per_tco2),
            "is_now_here": self.is_now_here,
            "mode": self.mode,
            "warnings": list(self.warnings),
            "data_source": dict(self.data_source),
            "options": rows,
        }


@lru_cache(maxsize=1)
def _default_prices() -> EmbeddedPrices:
    return EmbeddedPrices()


def _windows() -> Any:
    from care_flows.planning import windows

    return windows


def _segments(plan: Any) -> tuple[tuple[pd.Timestamp, pd.Timestamp], ...]:
    out = []
    for s in getattr(plan, "segments", ()) or ():
        if isinstance(s, Mapping):
            out.append((pd.Timestamp(s["start"]), pd.Timestamp(s["end"])))
        elif hasattr(s, "start"):
            out.append((pd.Timestamp(s.start), pd.Timestamp(s.end)))
        else:
            out.append((pd.Timestamp(s[0]), pd.Timestamp(s[1])))
    return tuple(out) or ((pd.Timestamp(plan.start), pd.Timestamp(plan.end)),)


def _signal_kind(forecast: pd.Series | None) -> str | None:
    """The kind of intensity a forecast holds (``lifecycle``, ``direct``, ``marginal``), when it says."""
    kind = getattr(forecast, "attrs", {}).get("signal") if forecast is not None else None
    return str(kind) if kind else None


def _vintage(forecast: pd.Series | None) -> str:
    """``"a replay of <year>"`` for a trace replayed at later dates (a stand-in), else ``"current data"``."""
    model = str(getattr(forecast, "attrs", {}).get("forecast_model", "")) if forecast is not None else ""
    if "+replay(" in model:
        return f"a replay of {model.split('+replay(', 1)[1].split(')', 1)[0]}"
    return "current data"


def _size(
    policy: CarePolicy, region: str, prices: PriceSource, vcpu: float, memory_gib: float, usage: UsageSummary | None = None
) -> SizingChoice:
    if policy.instance_type:
        cat = prices.catalog(region)
        hit = cat[cat["instance_type"] == policy.instance_type]
        if hit.empty:
            raise PlanningError(f"type {policy.instance_type} not offered in {region}", reasons={region: "type not offered"})
        row = hit.iloc[0]
        mean_vcpu = _mean_vcpu(vcpu, None if usage is None else usage.mean_vcpu, policy.cpu_utilisation)  # as right_size reads it
        util = min(1.0, mean_vcpu / float(row["vcpu"]))
        return SizingChoice(
            region=region, instance_type=policy.instance_type, vcpu=float(row["vcpu"]), memory_gib=float(row["memory_gib"]),
            usd_per_hour=float(row["usd_per_hour"]), architecture=str(row["architecture"]), need_vcpu=vcpu,
            need_memory_gib=memory_gib, required_vcpu=vcpu, required_memory_gib=memory_gib,
            waste_vcpu=float(row["vcpu"]) - vcpu, waste_memory_gib=float(row["memory_gib"]) - memory_gib,
            expected_utilisation=util, n_fitting=1,
            credit_usd_per_hour=cpu_credit_usd_per_hour(policy.instance_type, float(row["vcpu"]), util),
        )
    return right_size(region, vcpu, memory_gib, prices=prices, usage=usage, **_sizing_filters(policy))


def _sizing_filters(policy: CarePolicy) -> dict[str, Any]:
    return dict(headroom_pct=policy.headroom_pct, families=policy.instance_families, exclude_families=policy.exclude_families,
                architecture=policy.architecture, allow_burstable=getattr(policy, "allow_burstable", True),
                utilisation=policy.cpu_utilisation)


def _type_within_cap(
    policy: CarePolicy, region: str, prices: PriceSource, vcpu: float, memory_gib: float, usage: UsageSummary | None,
    hours: float, best_g_per_kwh: float,
) -> tuple[SizingChoice, float] | None:
    """The cheapest fitting type of ``region`` (after the cheapest) whose run at ``best_g_per_kwh``
    meets ``max_g_per_run``, and its kWh; None when no type does (review 50b M1)."""
    cap = float(policy.max_g_per_run)  # type: ignore[arg-type]
    for size in itertools.islice(sized_types(region, vcpu, memory_gib, prices=prices, usage=usage, **_sizing_filters(policy)), 1, None):
        kwh = _kwh(size, hours)
        if kwh * best_g_per_kwh <= cap:
            return size, kwh
    return None


def _lower_power_types(
    policy: CarePolicy, region: str, prices: PriceSource, vcpu: float, memory_gib: float, usage: UsageSummary | None,
    hours: float,
) -> list[tuple[SizingChoice, float]]:
    """The fitting types of ``region`` after the cheapest that each draw less power than every
    cheaper fitting type (the price/energy front, cheapest first), with their kWh over ``hours``:
    what ``instance_choice: priorities`` offers besides the right-sized type. A dearer type that
    draws no less is never worth offering, whatever the priorities (it loses on cost and carbon).
    At most ``MAX_PRIORITY_TYPES``, the lowest-power last (it is always kept). The front (a walk of
    every fitting type) is memoised per price source and need, as :func:`right_size` is: a
    controller plans the same flow again and again (review 53a L1)."""
    filters = _sizing_filters(policy)

    def walk() -> tuple[SizingChoice, ...]:
        front: list[SizingChoice] = []
        least_kwh = math.inf
        for i, size in enumerate(sized_types(region, vcpu, memory_gib, prices=prices, usage=usage, **filters)):
            kwh = _kwh(size, 1.0)
            if kwh < least_kwh * (1.0 - 1e-9):
                least_kwh = kwh
                if i:
                    front.append(size)
        return tuple(front)

    key = ("lower_power_types", region, vcpu, memory_gib, None if usage is None else repr(usage),
           *(tuple(v) if isinstance(v, list) else v for v in filters.values()))
    front = memoised(prices, key, walk)
    front = front[:MAX_PRIORITY_TYPES - 1] + front[-1:] if len(front) > MAX_PRIORITY_TYPES else front
    return [(size, _kwh(size, hours)) for size in front]


MAX_PRIORITY_TYPES = 6
"""Most dearer, lower-power types a region offers under ``instance_choice: priorities``."""


def _planning_span(forecast: pd.Series, now: pd.Timestamp, until: pd.Timestamp) -> pd.Series:
    """``forecast`` cut to the slot of ``now`` up to ``until`` when it holds a NaN: a gap the plan never
    reads (47 h after a 6 h deadline) made the region unusable, or failed the plan at home (review 54a
    L1). A NaN inside that span is still an error; a forecast without one is used as given.

    >>> idx = pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC")
    >>> fc = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, float("nan")], index=idx)
    >>> _planning_span(fc, idx[1] + pd.Timedelta("30min"), idx[3]).tolist()
    [2.0, 3.0]
    """
    index = forecast.index
    if not (isinstance(index, pd.DatetimeIndex) and index.tz is not None and forecast.isna().any()):
        return forecast
    before = index[index <= now]
    first = before.max() if len(before) else index.min()
    return forecast[(index >= first) & (index < until)]


def _plan(policy: CarePolicy, forecast: pd.Series, duration: pd.Timedelta, now: pd.Timestamp, deadline: pd.Timestamp) -> Any:
    w = _windows()
    if policy.threshold_g_per_kwh is not None or policy.threshold_percentile is not None:
        return w.plan_threshold(
            forecast, duration, now, deadline, threshold_g_per_kwh=policy.threshold_g_per_kwh, percentile=policy.threshold_percentile
        ), "threshold"
    if policy.interruptible:
        return w.plan_interruptible(
            forecast, duration, now, deadline, min_segment=policy.min_segment, max_segments=policy.max_segments
        ), "interruptible"
    return w.plan_contiguous(forecast, duration, now, deadline), "contiguous"


def decide(
    policy: CarePolicy | Mapping[str, Any],
    forecasts: Mapping[str, pd.Series],
    now: pd.Timestamp | str,
    *,
    prices: PriceSource | None = None,
    duration: Any = None,
    deadline: Any = None,
    vcpu: float | None = None,
    memory_gib: float | None = None,
    usage: UsageSummary | Mapping[str, Any] | None = None,
    cap_types: bool = True,
) -> Decision:
    """Choose region, start and instance type under ``policy``; see the module docstring.

    ``forecasts`` maps each region to its carbon forecast (gCO2eq/kWh) issued at ``now``;
    ``duration``/``deadline`` (absolute time) and ``vcpu``/``memory_gib`` override the policy.
    ``usage`` (a usage-forecast summary: peak/mean vCPU and memory) replaces ``vcpu``/``memory_gib``
    with its peaks and its mean vCPU replaces ``policy.cpu_utilisation`` x the vCPU need. Each
    option's power model and CPU credits use that mean over the option's provisioned vCPU.
    ``cap_types=False`` never offers a dearer type, for ``max_g_per_run`` or ``instance_choice:
    priorities`` (orchestration passes it where the runner cannot choose its instance type); a
    region with a ``targets`` entry never does.

    >>> import pandas as pd
    >>> from care_flows import get_signal
    >>> sig, now = get_signal("embedded"), pd.Timestamp("2023-06-01T08:00Z")
    >>> policy = {"home_region": "eu-south-2", "regions": ["eu-north-1"], "deadline_within": "12h",
    ...           "expected_duration": "1h", "vcpu": 2, "memory_gib": 8}
    >>> d = decide(policy, {r: sig.forecast(r, now, pd.Timedelta("12h")) for r in ("eu-south-2", "eu-north-1")}, now)
    >>> d.chosen.region, d.chosen.instance_type, d.chosen.start.isoformat(), round(d.savings_pct)
    ('eu-north-1', 't3.xlarge', '2023-06-01T19:00:00+00:00', 91)
    >>> d.abatement_usd_per_tco2 < 0  # greener and cheaper
    True
    """
    policy = policy if isinstance(policy, CarePolicy) else load_policy(dict(policy))
    now = parse_time(now, name="now")
    prices = prices if prices is not None else _default_prices()
    dur = duration_arg(duration if duration is not None else policy.expected_duration, name="duration")
    end_by = parse_time(deadline, name="deadline") if deadline is not None else now + pd.Timedelta(policy.deadline_within)
    if end_by < now:
        raise DeadlineError(f"deadline {iso(end_by)} is before now {iso(now)}; give a later deadline")
    summary = UsageSummary.from_any(usage) if usage is not None else None
    if summary is not None:
        vcpu, memory_gib = summary.peak_vcpu, summary.peak_memory_gib
    need_vcpu = float(vcpu if vcpu is not None else policy.vcpu)
    need_mem = float(memory_gib if memory_gib is not None else policy.memory_gib)
    if not (math.isfinite(need_vcpu) and need_vcpu > 0 and math.isfinite(need_mem) and need_mem > 0):  # NaN, inf: review 50b L2
        raise ConfigError(f"vcpu {need_vcpu:g} and memory_gib {need_mem:g} must be positive finite numbers (e.g. vcpu=2, memory_gib=8)")
    hours = dur.total_seconds() / 3600.0
    home = policy.home_region
    origin = policy.origin_region or home
    warnings: list[str] = []
    if not policy.interruptible and (policy.min_segment is not None or policy.max_segments is not None):
        # accepted (a per-run override may turn interruptible off and keep a stored block's limits), but said (review 41e L5)
        given = ", ".join(n for n, v in (("min_segment", policy.min_segment), ("max_segments", policy.max_segments)) if v is not None)
        warnings.append(f"{given} ignored: the policy is not interruptible (set interruptible: true to run in segments)")
    data_source: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    mode = "contiguous"
    home_size: SizingChoice | None = None
    home_error = "no sizing"
    home_now_g_per_kwh = float("nan")

    for region in policy.candidate_regions:
        info = region_info(region)
        base = {
            "region": region, "zone": info.zone, "instance_type": policy.instance_type or "", "usd_per_hour": np.nan,
            "credit_usd_per_hour": np.nan,
            "latency_ms": rtt_ms(origin, region), "waste_vcpu": np.nan, "waste_memory_gib": np.nan,
            "start": now, "end": now + dur, "segments": ((now, now + dur),), "g_per_kwh": np.nan, "kwh": np.nan,
            "expected_g": np.nan, "expected_usd": np.nan, "reason": "", "kind": "now",
        }
        try:
            size = _size(policy, region, prices, need_vcpu, need_mem, summary)
        except PlanningError as exc:
            reason = exc.reasons.get(region, "nothing fits")
            if reason.startswith("nothing fits"):
                reason = f"no instance type fits {need_vcpu:g} vCPU / {need_mem:g} GiB{reason[len('nothing fits'):]}"
            rows.append({**base, "reason": reason})
            if region == home:
                home_error = str(exc)
            continue
        except ConfigError as exc:  # region without prices
            rows.append({**base, "reason": "no price data"})
            warnings.append(str(exc))
            if region == home:
                home_error = str(exc)
            continue
        if region == home:
            home_size = size
        # the job's mean vCPU (learned, else cpu_utilisation x the need) over this type's vCPU
        # credit_usd_per_hour: a burstable type above its baseline, at the same utilisation
        base.update(_type_columns(size, _kwh(size, hours), hours))
        kwh = base["kwh"]
        if policy.instance_type and (size.vcpu < need_vcpu - 1e-9 or size.memory_gib < need_mem - 1e-9):
            base["reason"] = (f"{size.instance_type} ({size.vcpu:g} vCPU, {size.memory_gib:g} GiB) < need "
                              f"{need_vcpu:g} vCPU / {need_mem:g} GiB")
        fc = forecasts.get(region)
        if fc is None or len(fc) == 0 or not np.isfinite(np.asarray(fc, dtype=float)).any():
            rows.append({**base, "reason": f"no carbon data for zone {info.zone}"})
            data_source[region] = "none"
            continue
        kind, home_kind = _signal_kind(fc), _signal_kind(forecasts.get(home))
        vintage, home_vintage = _vintage(fc), _vintage(forecasts.get(home))
        if region != home and ((kind and home_kind and kind != home_kind) or vintage != home_vintage):
            what = (f"{kind} intensity, the home region's is {home_kind}" if kind != home_kind
                    else f"{vintage}, the home region's is {home_vintage}")
            rows.append({**base, "reason": f"its forecast is {what}: not comparable"})
            data_source[region] = str(fc.attrs.get("source") or "given")
            continue
        fc = _planning_span(fc, now, max(end_by, now + dur))
        try:
            plan, mode = _plan(policy, fc, dur, now, end_by)
        except DataError as exc:
            if region == home:
                raise
            rows.append({**base, "reason": f"unusable forecast ({' '.join(str(exc).split())[:200]})"})
            data_source[region] = str(fc.attrs.get("source") or "given")
            continue
        data_source[region] = str(fc.attrs.get("data_source") or getattr(plan, "data_source", None) or fc.attrs.get("source") or "given")
        warnings.extend(f"{region}: {w}" for w in getattr(plan, "warnings", ()) or ())
        now_gpk = float(plan.run_now_g_per_kwh)
        if region == home:
            home_now_g_per_kwh = now_gpk
        now_row = {**base, "g_per_kwh": now_gpk, "expected_g": kwh * now_gpk}
        fc_end = plan.forecast_end
        if region != home and fc_end is not None and now + dur > fc_end + pd.Timedelta(microseconds=1) and not now_row["reason"]:
            # the covered part's mean would stand for hours the forecast knows nothing of: another
            # region must not win on missing data (the home region is the baseline: it keeps its warning; review 50b M2)
            now_row["reason"] = (f"its forecast ends at {iso(fc_end)}, {format_duration(now + dur - fc_end)} before a run "
                                 "started now would end: that run's carbon is unknown")
        fc_start = pd.Timestamp(fc.index.min())
        if region != home and fc_start > now + pd.Timedelta(microseconds=1) and not now_row["reason"]:
            # the same at the other end: the forecast's first hours would stand for a start now it knows nothing of (review 54a M2)
            now_row["reason"] = (f"its forecast starts at {iso(fc_start)}, {format_duration(fc_start - now)} after now: the carbon "
                                 "of a run started now is unknown")
        region_rows = [now_row]
        # a start within 1 us of now is now (plan times are rounded to us; now may carry ns)
        if abs(pd.Timestamp(plan.start) - now) > pd.Timedelta(microseconds=1) or len(_segments(plan)) > 1:
            gpk = float(plan.expected_g_per_kwh)
            region_rows.append({
                **base, "start": pd.Timestamp(plan.start), "end": pd.Timestamp(plan.end), "segments": _segments(plan),
                "g_per_kwh": gpk, "expected_g": kwh * gpk, "kind": _plan_kind(mode),
            })
        rows.extend(region_rows)
        best_gpk = min(float(r["g_per_kwh"]) for r in region_rows)
        choose_types = not policy.instance_type and cap_types and region not in policy.targets
        if policy.instance_choice == PRIORITY_TYPE and not policy.instance_type and cap_types and region in policy.targets:
            warnings.append(f"{region}: instance_choice 'priorities' not applied: its targets entry may pin a type or name a pool "
                            "that cannot launch the planned one, so it offers its right-sized type only")  # review 53b M1
        if choose_types and policy.instance_choice == PRIORITY_TYPE:
            # every fitting type that draws less than all cheaper ones, at the same starts: the priorities choose
            # (the front holds the cheapest type that meets max_g_per_run, if any does, so no cap rows are needed)
            for alt, alt_kwh in _lower_power_types(policy, region, prices, need_vcpu, need_mem, summary, hours):
                rows.extend({**r, **_type_columns(alt, alt_kwh, hours), "sized_for": PRIORITY_TYPE,
                             "expected_g": alt_kwh * float(r["g_per_kwh"])} for r in region_rows)
        elif (policy.max_g_per_run is not None and choose_types and kwh * best_gpk > policy.max_g_per_run):
            # the cheapest type breaks the carbon cap at every start here: offer the cheapest type that meets it
            # at the best start too, and let the priorities choose (review 50b M1; pinned types are never swapped)
            within = _type_within_cap(policy, region, prices, need_vcpu, need_mem, summary, hours, best_gpk)
            if within is not None:
                alt, alt_kwh = within
                rows.extend({**r, **_type_columns(alt, alt_kwh, hours), "sized_for": CAP_TYPE,
                             "expected_g": alt_kwh * float(r["g_per_kwh"])} for r in region_rows)

    table = pd.DataFrame(rows)
    # "cheapest": the region's right-sized type; "max_g_per_run": a dearer one that meets the carbon cap;
    # "priorities": a dearer one that draws less power (instance_choice: priorities)
    table["sized_for"] = table["sized_for"].fillna(RIGHT_SIZED) if "sized_for" in table else RIGHT_SIZED
    table["data_source"] = table["region"].map(lambda r: data_source.get(r, "none"))
    constraints = dict(
        priorities=policy.priorities, weights=policy.weights, tolerance_pct=policy.tolerance_pct, home_region=home,
        tie_break=policy.tie_break, max_latency_ms=policy.max_latency_ms, budget_usd_per_run=policy.budget_usd_per_run,
        budget_usd_per_hour=policy.budget_usd_per_hour, max_g_per_run=policy.max_g_per_run,
    )
    ranked, best = choose(table, **constraints)
    if home_size is None:
        raise PlanningError(
            f"cannot size the baseline in home region {home}: {home_error}",
            reasons={home: "baseline not sizeable"},
        )
    if not math.isfinite(home_now_g_per_kwh):
        keys = [str(k) for k in forecasts] if isinstance(forecasts, Mapping) else []
        if keys and home not in keys and not any(k in policy.candidate_regions for k in keys):  # e.g. {"ES": ..., "SE": ...}
            raise NoBaselineDataError(
                f"forecasts has keys {', '.join(keys[:6])} but none of the policy's regions ({', '.join(policy.candidate_regions)}); "
                f"key each forecast by its AWS region, e.g. {{'{home}': ...}} (home region {home} is zone {region_info(home).zone})"
            )
        raise NoBaselineDataError(
            f"no carbon forecast for home region {home} (zone {region_info(home).zone}), so there is no baseline to "
            f"save against; use a carbon source that covers it (e.g. electricitymaps or watttime) or a home region "
            f"whose zone is embedded ({', '.join(EMBEDDED_ZONES)})"
        )
    home_now_idx = right_sized_rows(ranked[(ranked["region"] == home) & (ranked["kind"] == "now")]).index[0]
    baseline = _option(ranked.loc[home_now_idx])

    if best is None:
        reasons = "; ".join(f"{r.region}@{iso(r.start)}{f' on {r.instance_type}' if r.sized_for != RIGHT_SIZED else ''}: {r.reason}"
                            for r in ranked.itertuples())
        warnings.append(f"no feasible option ({reasons}); running now in the home region {home}")
        best = home_now_idx
    else:
        ranked, best = _min_saving_gate(table, ranked, best, home_now_idx, baseline.expected_g, policy.min_savings_pct, constraints, warnings)
    if "below_min_saving" not in ranked:
        ranked["below_min_saving"] = False
    ranked["below_min_saving"] = ranked["below_min_saving"].fillna(False).astype(bool)
    chosen = _option(ranked.loc[best])
    if ranked.loc[best, "sized_for"] != RIGHT_SIZED:  # a dearer type than right-sizing picks: say why
        cheap = right_sized_rows(ranked)
        cheap = cheap[(cheap["region"] == chosen.region) & np.isfinite(cheap["expected_g"].astype(float))]
        if len(cheap) and ranked.loc[best, "sized_for"] == CAP_TYPE:
            low = cheap.loc[cheap["expected_g"].astype(float).idxmin()]
            warnings.append(f"{chosen.region}: {chosen.instance_type} instead of the right-sized {low['instance_type']} "
                            f"({chosen.usd_per_hour:.4g} vs {float(low['usd_per_hour']):.4g} USD/h): {low['instance_type']} emits "
                            f"{float(low['expected_g']):.3g} gCO2eq at its best start there, over max_g_per_run {policy.max_g_per_run:g}")
        elif len(cheap):  # instance_choice: priorities; the same start on the right-sized type, for a like-for-like figure
            same = cheap[cheap["start"] == chosen.start]
            low = (same if len(same) else cheap).iloc[0]
            ratio = chosen.kwh / float(low["kwh"]) if float(low["kwh"]) > 0 else float("nan")
            least_g = float(cheap["expected_g"].astype(float).min())
            over = (f"; {low['instance_type']} emits {least_g:.3g} gCO2eq at its best start there, over max_g_per_run "
                    f"{policy.max_g_per_run:g}" if policy.max_g_per_run is not None and least_g > policy.max_g_per_run else "")
            warnings.append(f"{chosen.region}: {chosen.instance_type} instead of the right-sized {low['instance_type']}: "
                            f"{100 * (1 - ratio):.0f}% less power for {chosen.usd_per_hour + chosen.credit_usd_per_hour:.4g} vs "
                            f"{float(low['usd_per_hour']) + float(low['credit_usd_per_hour'] or 0):.4g} USD/h{over} "
                            "(instance_choice: priorities)")
    saved_g = baseline.expected_g - chosen.expected_g
    pct = 100.0 * saved_g / baseline.expected_g if baseline.expected_g > 0 else float("nan")
    if best == home_now_idx:
        saved_g, pct = 0.0, 0.0
    # "now" means now: a green window at the next slot boundary, even minutes away, is a deferral
    is_now_here = chosen.region == home and chosen.start <= now + pd.Timedelta(seconds=1)
    saved_usd = baseline.expected_usd - chosen.expected_usd
    return Decision(
        chosen=chosen,
        baseline=baseline,
        savings_g=float(saved_g) if math.isfinite(saved_g) else None,
        savings_pct=float(pct) if math.isfinite(pct) else None,
        savings_usd=float(saved_usd),
        abatement_usd_per_tco2=abatement_usd_per_tco2(chosen.expected_usd - baseline.expected_usd, saved_g)
        if math.isfinite(saved_g) else None,
        options=ranked.reset_index(drop=True),
        is_now_here=bool(is_now_here),
        now=now,
        warnings=tuple(warnings),
        data_source=data_source,
        mode=mode,
    )


def _kwh(size: SizingChoice, hours: float) -> float:
    """Energy of ``hours`` on ``size``'s type at its expected utilisation (power model, PUE included)."""
    watts, _ = instance_watts(size.instance_type, size.expected_utilisation, vcpu=size.vcpu, memory_gib=size.memory_gib)
    return float(energy_kwh(watts, hours))


def _type_columns(size: SizingChoice, kwh: float, hours: float) -> dict[str, Any]:
    """The option columns that follow from an instance type (the rest follow from the region and start)."""
    return dict(instance_type=size.instance_type, usd_per_hour=size.usd_per_hour, credit_usd_per_hour=size.credit_usd_per_hour,
                waste_vcpu=size.waste_vcpu, waste_memory_gib=size.waste_memory_gib, kwh=kwh,
                expected_usd=hours * (size.usd_per_hour + size.credit_usd_per_hour))


def _saving_pct(expected_g: pd.Series, baseline_g: float) -> np.ndarray:
    """Carbon saved against run-now-at-home, % (NaN without a positive baseline)."""
    g = expected_g.to_numpy(dtype=float)
    return 100.0 * (baseline_g - g) / baseline_g if baseline_g > 0 else np.full(len(g), np.nan)


def _saving_text(pct: float) -> str:
    """How much carbon an option saves against run-now-at-home, in words (review 42f L1).

    >>> _saving_text(3.04), _saving_text(-14.7), _saving_text(float("nan"))
    ('saves 3.0% carbon', 'emits 14.7% more carbon than now at home', 'saves unknown carbon')
    """
    if not math.isfinite(pct):
        return "saves unknown carbon"
    return f"saves {pct:.1f}% carbon" if pct >= 0 else f"emits {-pct:.1f}% more carbon than now at home"


def _min_saving_gate(
    table: pd.DataFrame, ranked: pd.DataFrame, best: Any, home_now_idx: Any, baseline_g: float, min_savings_pct: float,
    constraints: dict[str, Any], warnings: list[str],
) -> tuple[pd.DataFrame, Any]:
    """Moving or deferring must save ``min_savings_pct`` of run-now-at-home's carbon: feasible options
    that do not (run-now-at-home itself always may) are excluded with the reason *before* ranking, so
    they neither win nor move a tolerance band or a weight's scale (review 42c H2), and the next-best
    option that saves enough wins, not home at once (review 42a H2). A hard constraint weighs more
    than the minimum saving: when run-now-at-home breaks one and no feasible option saves enough, the
    minimum is lowered to the most a feasible option saves (42a H1), so a higher minimum never picks
    a dirtier option than a lower one (42f H1). Waiting is weighed on its own too: a planned option
    must also save the minimum against starting now in its own region, when that is feasible (else a
    move to a greener region waited hours there for a 0.05% gain; review 43d M2), as the start check
    weighs it, when that start itself saves the minimum (review 54a M1). ``ranked``/``best``: the
    ranking without the minimum; returns the one to use."""
    at = table.index.get_indexer([best])[0]
    pct = _saving_pct(table["expected_g"], baseline_g)
    feasible = ranked["feasible"].reindex(table.index).to_numpy(dtype=bool)
    movable = feasible & (table.index != home_now_idx)
    # the gain of waiting, against starting now in the same region on the same type (NaN where that is not a
    # feasible option): a dearer, lower-power type's own saving is not a gain of waiting (review 53a H1). A start
    # now that the minimum itself excludes is no option either: the run would not go there now, so waiting
    # there was judged against nothing it could do (review 54a M1: a higher minimum then ran now at home)
    now_rows = (table["kind"] == "now").to_numpy() & feasible
    now_rows &= (table.index == home_now_idx) | (pct >= min_savings_pct)
    where = table["region"].astype(str) + "\x00" + table["instance_type"].fillna("").astype(str)
    now_g = pd.Series(table["expected_g"].to_numpy(dtype=float)[now_rows], index=where.to_numpy()[now_rows])
    now_g = now_g[~now_g.index.duplicated()]
    here_g = where.map(now_g).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait_pct = np.where(here_g > 0, 100.0 * (here_g - table["expected_g"].to_numpy(dtype=float)) / here_g, np.nan)
    waits = movable & ~now_rows & np.isfinite(wait_pct)
    idle = waits & ~(wait_pct >= min_savings_pct)  # waiting that buys less than the minimum where the run would be anyway
    short = (movable & ~(pct >= min_savings_pct)) | idle
    if not short.any():
        return ranked, best
    top = _option(ranked.loc[best])
    gain = f"waits for {max(wait_pct[at], 0.0):.2f}% less carbon than starting now in {top.region}" if idle[at] else _saving_text(pct[at])
    said = f"best option ({_where(ranked.loc[best])}) {gain}, short of min_savings_pct {min_savings_pct:g}%"
    bar, lowered = min_savings_pct, False
    if not (feasible & ~short).any():  # home breaks a hard constraint and nothing feasible saves the minimum
        # the minimum is lowered, the in-region one for waits too: judged against the unlowered minimum, a
        # wait excluded at a higher minimum let a dirtier option win (review 43f M1; 43e H1: it crashed)
        idle = np.zeros_like(idle)
        offered = pct[movable & np.isfinite(pct)]
        why = str(ranked.loc[home_now_idx, "reason"])
        if not offered.size:  # no carbon figure to compare them by: the hard constraints' ranking stands
            warnings.append(f"{said}; kept anyway: running now in the home region breaks a hard constraint ({why}) "
                            "and no feasible option saves that much")
            return ranked, best
        bar, lowered = float(offered.max()), True
        short = (movable & ~(pct >= bar - 1e-9)) | idle
    gated = table.copy()
    reason = gated["reason"].fillna("").astype(str) if "reason" in gated else pd.Series("", index=gated.index)
    floor = f"the {bar:.1f}% another feasible option saves" if lowered else f"min_savings_pct {min_savings_pct:g}%"
    vs_home = movable & ~(pct >= bar - 1e-9)
    note = pd.Series([f"below the minimum saving ({floor}): {_saving_text(p)}" if h else
                      f"below the minimum saving (min_savings_pct {min_savings_pct:g}%): waiting saves {max(w, 0.0):.2f}% carbon "
                      f"against starting now in {r}"
                      for p, w, r, h in zip(pct, wait_pct, table["region"], vs_home)], index=gated.index)
    gated["reason"] = np.where(short, np.where(reason == "", note, reason + "; " + note), reason)
    gated["below_min_saving"] = short
    gated_ranked, gated_best = choose(gated, **constraints)
    if gated_best is None:  # nothing left (defensive): the hard constraints' ranking stands
        warnings.append(f"{said}; kept anyway: no feasible option saves the minimum")
        return ranked, best
    ranked, best = gated_ranked, gated_best
    new = _where(ranked.loc[best])
    if lowered:
        warnings.append(f"{said}; running now in the home region breaks a hard constraint ({why}), so the minimum is lowered "
                        f"to the most a feasible option saves, {bar:.1f}%: {new}")
    elif short[at]:
        warnings.append(f"{said}; running now in the home region" if best == home_now_idx else
                        f"{said}; chose the best option that saves enough: {new}")
    return ranked, best


def _where(row: pd.Series) -> str:
    """An option in words: region and start, and its type when it is not the region's right-sized one."""
    on = f" on {row['instance_type']}" if row.get("sized_for", RIGHT_SIZED) != RIGHT_SIZED else ""
    return f"{row['region']} at {iso(pd.Timestamp(row['start']))}{on}"


def _plan_kind(mode: str) -> str:
    """The ``kind`` label of a planned (not run-now) option row."""
    return f"planned-{mode}"


def _option(row: pd.Series) -> Option:
    return Option(
        region=str(row["region"]),
        zone=str(row["zone"]),
        instance_type=str(row["instance_type"]),
        start=pd.Timestamp(row["start"]),
        end=pd.Timestamp(row["end"]),
        segments=tuple(row["segments"]),
        expected_g=float(row["expected_g"]),
        expected_usd=float(row["expected_usd"]),
        expected_g_per_kwh=float(row["g_per_kwh"]),
        latency_ms=float(row["latency_ms"]),
        usd_per_hour=float(row["usd_per_hour"]),
        credit_usd_per_hour=float(row.get("credit_usd_per_hour", 0.0)),
        kwh=float(row["kwh"]),
        kind=str(row.get("kind", "now")),
    )
