"""Accounting: instance power -> energy -> gCO2eq and USD, the baseline, savings, abatement cost.

Power model (``power_model`` in every :class:`Footprint` says which one was used):

- ``teads``: the Cloud Carbon Footprint / Teads EC2 dataset (``care_flows.data.power_table()``)
  gives whole-instance watts at 0 (idle), 10, 50 and 100% CPU load; watts at utilisation ``u``
  are interpolated piecewise-linearly between these four points.
- ``ccf-fallback`` (types not in the table): the CCF coefficients, ``W = vCPU x (min + u x (max -
  min))`` with min/max W per vCPU averaged over all AWS micro-architectures
  (``ccf_use_coefficients()``), plus memory at 0.000392 kWh per GB-hour (0.392 W per GiB, CCF).

Energy ``kWh = W x hours x PUE / 1000`` with PUE 1.135, the figure Cloud Carbon Footprint uses
for AWS. Emissions ``gCO2eq = kWh x g/kWh`` (the intensity's kind, life-cycle by default, is the
caller's). Cost ``USD = hours x usd_per_hour`` (on-demand). Embodied emissions (CCF per-type
kgCO2eq, amortised linearly over a 4-year server life and scaled by the instance's share of the
largest size of its family) are reported separately in ``embodied_g`` and only added to
``g_co2eq`` when ``include_embodied=True``.

Savings are against a stated baseline (run now, home region, home-sized instance). The
abatement cost is ``(option USD - baseline USD) / (tCO2eq avoided)``: negative when the greener
option is also cheaper, ``None`` when no carbon is avoided. The savings % is ``None`` when the
baseline emits nothing (undefined, as in ``decide``).

Hand check, m5.large at 50% for 1 h in Spain at 206 g/kWh: 14.1 W x 1 h x 1.135 / 1000 =
0.0160035 kWh, x 206 = 3.2967 gCO2eq.

>>> f = footprint("m5.large", hours=1, g_per_kwh=206, usd_per_hour=0.107, utilisation=0.5)
>>> f.watts, round(f.kwh, 7), round(f.g_co2eq, 4), f.usd
(14.1, 0.0160035, 3.2967, 0.107)
>>> base = footprint("t3.large", hours=1, g_per_kwh=206, usd_per_hour=0.0912)
>>> alt = footprint("t3.large", hours=1, g_per_kwh=20, usd_per_hour=0.0864)
>>> c = compare_to_baseline(alt, base)
>>> round(c.carbon_ratio, 1), round(c.savings_pct, 1), c.abatement_usd_per_tco2 < 0
(10.3, 90.3, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from care_flows.errors import ConfigError

__all__ = [
    "format_sig",
    "PUE_AWS",
    "MEMORY_KWH_PER_GB_HOUR",
    "EMBODIED_LIFESPAN_YEARS",
    "Footprint",
    "Comparison",
    "instance_watts",
    "embodied_g_per_hour",
    "energy_kwh",
    "footprint",
    "abatement_usd_per_tco2",
    "compare_to_baseline",
    "mean_intensity",
]

PUE_AWS = 1.135
"""Power usage effectiveness for AWS data centres, as used by Cloud Carbon Footprint."""
MEMORY_KWH_PER_GB_HOUR = 0.000392
"""CCF memory coefficient (kWh per GB-hour), used only by the fallback power model."""
EMBODIED_LIFESPAN_YEARS = 4.0
"""Server life over which embodied emissions are amortised (CCF default)."""

_LOAD_POINTS = np.array([0.0, 0.1, 0.5, 1.0])


@lru_cache(maxsize=1)
def _power() -> Any:
    from care_flows.data import power_table

    return power_table()


@lru_cache(maxsize=4096)
def _watts_points(instance_type: str) -> np.ndarray | None:
    table = _power()
    if instance_type not in table.index:
        return None
    return table.loc[instance_type, ["watts_idle", "watts_10", "watts_50", "watts_100"]].to_numpy(dtype=float)


@lru_cache(maxsize=1)
def _ccf_mean_w_per_vcpu() -> tuple[float, float]:
    from care_flows.data import ccf_use_coefficients

    c = ccf_use_coefficients()
    return float(c["min_watts_per_vcpu"].mean()), float(c["max_watts_per_vcpu"].mean())


def instance_watts(
    instance_type: str,
    utilisation: float | np.ndarray = 0.5,
    *,
    vcpu: float | None = None,
    memory_gib: float | None = None,
) -> tuple[float | np.ndarray, str]:
    """Instance watts at CPU ``utilisation`` (0..1; scalar or array) and the model used.

    >>> instance_watts("m5.large", 0.5)
    (14.1, 'teads')
    >>> round(instance_watts("m5.large", 0.3)[0], 2)  # halfway between 10% (7.0 W) and 50% (14.1 W)
    10.55
    >>> w, model = instance_watts("x9.unknown", 0.5, vcpu=2, memory_gib=8)
    >>> model, round(w, 2)
    ('ccf-fallback', 7.96)
    """
    u = np.asarray(utilisation, dtype=float)
    if np.any((u < 0) | (u > 1)) or np.any(np.isnan(u)):
        raise ConfigError(f"utilisation {utilisation!r} must be between 0 and 1 (e.g. 0.5 for 50%)")
    points = _watts_points(instance_type)
    if points is not None:
        w = np.interp(u, _LOAD_POINTS, points)
        model = "teads"
    else:
        if vcpu is None or memory_gib is None:
            raise ConfigError(
                f"instance type {instance_type!r} is not in the power table; give its vcpu and memory_gib for the CCF fallback model"
            )
        lo, hi = _ccf_mean_w_per_vcpu()
        w = float(vcpu) * (lo + u * (hi - lo)) + float(memory_gib) * MEMORY_KWH_PER_GB_HOUR * 1000.0
        model = "ccf-fallback"
    return (float(w) if w.ndim == 0 else w), model


def embodied_g_per_hour(instance_type: str) -> float:
    """Embodied gCO2eq per hour of ``instance_type`` (CCF, 4-year life, share of the family's largest size); 0 if unknown.

    >>> round(embodied_g_per_hour("a1.large"), 2)
    3.65
    """
    from care_flows.data import embodied_table

    emb = embodied_table()
    if instance_type not in emb.index:
        return 0.0
    kg = float(emb.loc[instance_type, "embodied_kg_co2eq"])
    table = _power()
    family = instance_type.split(".")[0]
    fam = table[table.index.str.split(".").str[0] == family]
    share = 1.0
    if instance_type in table.index and not fam.empty:
        share = float(table.loc[instance_type, "vcpu"]) / float(fam["vcpu"].max())
    return kg * 1000.0 * share / (EMBODIED_LIFESPAN_YEARS * 8760.0)


def energy_kwh(watts: float | np.ndarray, hours: float | np.ndarray, pue: float = PUE_AWS) -> float | np.ndarray:
    """``W x h x PUE / 1000``.

    >>> round(energy_kwh(14.1, 1.0), 7)
    0.0160035
    """
    return watts * hours * pue / 1000.0


@dataclass(frozen=True)
class Footprint:
    """Expected (or realised) energy, emissions and cost of one run."""

    kwh: float
    g_co2eq: float
    usd: float
    instance_type: str = ""
    region: str | None = None
    hours: float = 0.0
    utilisation: float = 0.5
    watts: float = 0.0
    g_per_kwh: float = 0.0
    usd_per_hour: float = 0.0
    pue: float = PUE_AWS
    power_model: str = "teads"
    embodied_g: float = 0.0
    """Embodied share of the run (gCO2eq), reported separately unless ``includes_embodied``."""
    includes_embodied: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def _amount(value: Any, what: str, unit: str, example: str) -> float:
    """A finite number >= 0 (a numpy scalar too), else a one-line :class:`ConfigError` naming it.

    >>> _amount(np.float64(2.5), "price", "USD/h", "0.0912")
    2.5
    >>> _amount(float("nan"), "price", "USD/h", "0.0912")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: price nan USD/h must be a finite number >= 0, e.g. 0.0912
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        shown = type(value).__name__ if hasattr(value, "__len__") and not isinstance(value, str) else repr(value)
        raise ConfigError(f"{what} {shown} is not a number{' of ' + unit if unit else ''}; give one number, e.g. {example} "
                          "(for a series, compute its time-weighted mean first)")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} {value!r}{' ' + unit if unit else ''} must be a finite number >= 0, e.g. {example}")
    return float(value)


def _hours(value: Any) -> float:
    """Hours as a number, or a duration (``timedelta``, ``pd.Timedelta``, ``"90m"``) in hours.

    >>> _hours(1.5), _hours("90m"), _hours(timedelta(minutes=30))
    (1.5, 1.5, 0.5)
    """
    if isinstance(value, str) or hasattr(value, "total_seconds") or isinstance(value, np.timedelta64):
        from care_flows.timeutil import duration_arg

        return duration_arg(value, name="hours").total_seconds() / 3600.0
    return _amount(value, "hours", "", "1.5")


def footprint(
    instance_type: str,
    *,
    hours: float,
    g_per_kwh: float,
    usd_per_hour: float,
    utilisation: float = 0.5,
    region: str | None = None,
    vcpu: float | None = None,
    memory_gib: float | None = None,
    pue: float = PUE_AWS,
    kwh: float | None = None,
    include_embodied: bool = False,
) -> Footprint:
    """The :class:`Footprint` of running ``instance_type`` for ``hours`` at ``g_per_kwh``.

    ``kwh`` overrides the power model (a measured energy, e.g. the study's ``--energy-wh``). It is
    taken **at the wall**, PUE included: it is not multiplied by ``pue`` (a measured IT energy, e.g.
    RAPL, must be multiplied by ``pue`` first to compare with the power model's figures), and
    ``watts`` is then the mean IT power it stands for, ``kWh x 1000 / (hours x pue)``.
    ``g_per_kwh`` is the mean intensity over the run (time-weighted by the caller).

    >>> f = footprint("t3.large", hours=1, g_per_kwh=206, usd_per_hour=0.0912, region="eu-south-2")
    >>> f.watts, f.pue, round(f.kwh, 4), round(f.g_co2eq, 2), f.usd
    (14.1, 1.135, 0.016, 3.3, 0.0912)
    >>> round(footprint("t3.large", hours=1, g_per_kwh=20, usd_per_hour=0.0864, kwh=0.5).g_co2eq, 1)
    10.0
    """
    hours = _hours(hours)
    g_per_kwh = _amount(g_per_kwh, "carbon intensity", "g/kWh", "206")
    usd_per_hour = _amount(usd_per_hour, "price", "USD/h", "0.0912")
    if kwh is None:
        watts, model = instance_watts(instance_type, utilisation, vcpu=vcpu, memory_gib=memory_gib)
        kwh_v = float(energy_kwh(watts, hours, pue))
    else:
        kwh_v, model = _amount(kwh, "energy", "kWh", "0.016"), "given"
        watts = kwh_v * 1000.0 / (hours * pue) if hours > 0 else 0.0
    embodied = embodied_g_per_hour(instance_type) * hours
    g = kwh_v * g_per_kwh + (embodied if include_embodied else 0.0)
    return Footprint(
        kwh=kwh_v,
        g_co2eq=float(g),
        usd=float(hours * usd_per_hour),
        instance_type=instance_type,
        region=region,
        hours=float(hours),
        utilisation=float(utilisation),
        watts=float(watts),
        g_per_kwh=float(g_per_kwh),
        usd_per_hour=float(usd_per_hour),
        pue=pue,
        power_model=model,
        embodied_g=float(embodied),
        includes_embodied=include_embodied,
    )


def abatement_usd_per_tco2(delta_usd: float, avoided_g: float) -> float | None:
    """Extra USD paid per tonne of CO2eq avoided; ``None`` when nothing is avoided.

    >>> abatement_usd_per_tco2(-0.0048, 2.0)  # cheaper and greener -> negative
    -2400.0
    >>> abatement_usd_per_tco2(0.01, 0.0) is None
    True
    >>> abatement_usd_per_tco2(-0.0, 7.15)  # a shift in time at home costs the same: 0, not "-0"
    0.0
    """
    if not math.isfinite(avoided_g) or avoided_g <= 0:
        return None
    return float(delta_usd / (avoided_g / 1e6)) + 0.0


@dataclass(frozen=True)
class Comparison:
    """An option against the baseline. Positive savings mean the option is better."""

    option: Footprint
    baseline: Footprint
    savings_g: float
    savings_pct: float | None
    """``100 x savings_g / baseline gCO2eq``; ``None`` when the baseline emits nothing (undefined, as
    in :func:`~care_flows.planning.decide`), with a note."""
    savings_usd: float
    abatement_usd_per_tco2: float | None
    carbon_ratio: float | None
    """baseline gCO2eq / option gCO2eq (``None`` when the option emits nothing, with a note)."""
    cost_ratio: float | None
    """baseline USD / option USD (``None`` when the option costs nothing, with a note)."""
    notes: list[str] = field(default_factory=list)
    """Why a figure is ``None``, one line each."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (nested footprints)."""
        return {
            "option": self.option.to_dict(),
            "baseline": self.baseline.to_dict(),
            "savings_g": self.savings_g,
            "savings_pct": self.savings_pct,
            "savings_usd": self.savings_usd,
            "abatement_usd_per_tco2": self.abatement_usd_per_tco2,
            "carbon_ratio": self.carbon_ratio,
            "cost_ratio": self.cost_ratio,
            "notes": list(self.notes),
        }


def compare_to_baseline(option: Footprint, baseline: Footprint) -> Comparison:
    """Savings (g, %, USD) and abatement cost of ``option`` against ``baseline``.

    A figure with a zero denominator is ``None``, never a number, and ``notes`` says why: the
    savings % when the baseline emits 0 g (as ``decide`` leaves it; an option that emits more is
    worse, not "0 % saved"), the carbon ratio when the option emits 0 g, the cost ratio when it
    costs 0 USD, the abatement cost when no carbon is avoided.

    >>> worse = compare_to_baseline(footprint("t3.large", hours=1, g_per_kwh=20, usd_per_hour=0.0864),
    ...                             footprint("t3.large", hours=1, g_per_kwh=0, usd_per_hour=0.0912))
    >>> round(worse.savings_g, 5), worse.savings_pct, worse.abatement_usd_per_tco2
    (-0.32007, None, None)
    >>> worse.notes[0]
    'the baseline emits 0 gCO2eq: savings % undefined'
    """
    saved_g = baseline.g_co2eq - option.g_co2eq
    saved_usd = baseline.usd - option.usd
    notes = []
    pct = None
    if baseline.g_co2eq > 0:
        pct = float(100.0 * saved_g / baseline.g_co2eq)
    else:
        notes.append("the baseline emits 0 gCO2eq: savings % undefined")
    carbon_ratio = cost_ratio = None
    if option.g_co2eq > 0:
        carbon_ratio = float(baseline.g_co2eq / option.g_co2eq)
    else:
        notes.append("the option emits 0 gCO2eq: carbon ratio undefined")
    if option.usd > 0:
        cost_ratio = float(baseline.usd / option.usd)
    else:
        notes.append("the option costs 0 USD: cost ratio undefined")
    abate = abatement_usd_per_tco2(option.usd - baseline.usd, saved_g)
    if abate is None:
        notes.append("no carbon avoided against the baseline: abatement cost undefined")
    return Comparison(
        option=option,
        baseline=baseline,
        savings_g=float(saved_g),
        savings_pct=pct,
        savings_usd=float(saved_usd),
        abatement_usd_per_tco2=abate,
        carbon_ratio=carbon_ratio,
        cost_ratio=cost_ratio,
        notes=notes,
    )


def mean_intensity(series: Any, start: Any, end: Any, *, full: bool = False) -> float:
    """Time-weighted mean g/kWh of a step series over [start, end): each value holds for the series'
    step, its smallest gap between labels, so a missing slot is a hole the series does not cover
    (the median gap stretched a value over it, review 46a L1).

    Each slot counts by its overlap with the interval, so a run from 00:00 to 02:00 on hourly data
    averages the 00:00 and 01:00 slots only, and 10 minutes of one slot weigh a sixth of an hour.
    A tz-naive index is read as UTC. An empty interval (``end <= start``) gives the value at
    ``start``; an interval the series does not reach raises ``ValueError``, and so does one it
    reaches only in part when ``full`` (a forecast shorter than the run: the mean of the part it
    covers would stand for hours it knows nothing of).

    >>> import pandas as pd
    >>> s = pd.Series([100.0, 300.0, 900.0], index=pd.date_range("2023-06-01", periods=3, freq="h", tz="UTC"))
    >>> mean_intensity(s, pd.Timestamp("2023-06-01T00:00Z"), pd.Timestamp("2023-06-01T02:00Z"))
    200.0
    >>> mean_intensity(s, pd.Timestamp("2023-06-01T00:30Z"), pd.Timestamp("2023-06-01T01:30Z"))
    200.0
    >>> holed = pd.Series([100.0, 900.0, 500.0], index=pd.DatetimeIndex(["2023-06-01T00:00Z", "2023-06-01T02:00Z", "2023-06-01T03:00Z"]))
    >>> mean_intensity(holed, pd.Timestamp("2023-06-01T00:00Z"), pd.Timestamp("2023-06-01T04:00Z"))  # 01:00 is a hole
    500.0
    """
    import pandas as pd

    s = series.dropna().sort_index()
    if len(s) == 0:
        raise ValueError("the intensity series is empty")
    idx = pd.DatetimeIndex(s.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tz is None else start.tz_convert("UTC")  # any tzinfo (Prefect's, zoneinfo) -> UTC
    end = end.tz_localize("UTC") if end.tz is None else end.tz_convert("UTC")
    values = s.to_numpy(dtype=float)
    if end <= start:
        return float(values[max(0, idx.searchsorted(start, "right") - 1)])
    gaps = pd.Series(idx).diff().dropna()
    gaps = gaps[gaps > pd.Timedelta(0)]
    step = gaps.min() if len(gaps) else pd.Timedelta("1h")
    overlap = (np.minimum(idx + step, end) - np.maximum(idx, start)).total_seconds().to_numpy()
    w = np.clip(overlap, 0, None)
    if w.sum() <= 0:
        raise ValueError(f"the intensity series does not cover {start.isoformat()}..{end.isoformat()}")
    if full and w.sum() < (end - start).total_seconds() - 1e-6:
        raise ValueError(f"the intensity series covers only {w.sum():.0f} s of {start.isoformat()}..{end.isoformat()}")
    return float(np.sum(w * values) / w.sum())


def format_sig(v: float | None, unit: str = "", min_digits: int = 1) -> str:
    """``v`` with at least 3 significant digits and ``min_digits`` decimals, then ``unit``: a short
    run's grams do not read 0.0 (artifacts, CLI tables). ``None`` or not finite: ``n/a``.

    >>> format_sig(0.02667, "g"), format_sig(3.29672, "g"), format_sig(1234.56, "g"), format_sig(0.0, "g")
    ('0.0267 g', '3.30 g', '1,234.6 g', '0.0 g')
    >>> format_sig(0.0048, "USD", 4), format_sig(0.1064, "USD", 4), format_sig(-1612.55, "USD/tCO2eq", 0)
    ('0.00480 USD', '0.1064 USD', '-1,613 USD/tCO2eq')
    >>> format_sig(0.000445), format_sig(-0.0, "USD/tCO2eq", 0)
    ('0.000445', '0 USD/tCO2eq')
    """
    if v is None or not np.isfinite(v):
        return "n/a"
    digits = min_digits if v == 0 else max(min_digits, 2 - math.floor(math.log10(abs(v))))
    return f"{v + 0.0:,.{digits}f} {unit}".rstrip()  # + 0.0: never "-0.0"
