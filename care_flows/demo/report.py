"""The demo's summary and report folder: per-run figures, PNG plots and an HTML page.

:func:`summarize` turns the Prefect flow runs of each scenario (plain dicts, see
:func:`summarize`) and the decisions the planner recorded into one row per scenario: the
decision, the planned window, region and instance type, the expected gCO2eq and USD (from
:func:`~care_flows.planning.decide`), the baseline (run now, at home, on the home-sized instance),
the expected savings and abatement cost, and the *realized* figures: each run's measured start and
end mapped back through the demo clock to grid time, its energy at the planned instance's power
for the measured duration, and the *actual* intensity of the trace over that interval. The
realized "at home" figures are the same baseline's: the home-sized instance's kWh and USD per hour
for the hours the runs took, at the home region's actual intensity over the matching slice of the
run-now window, so the realized savings and abatement cost compare like with like, as the
expected ones do (when the move also changed the instance type, carbon and cost are both on the
home-sized one).

:func:`write_report` writes ``intensity.png`` (forecast and actual intensity per region, each
run's planned window shaded and its real execution drawn as a bar), ``carbon_cost.png``
(gCO2eq and USD per run against the baseline), ``summary.json`` and ``index.html``.

>>> import pandas as pd
>>> s = pd.Series([100.0, 300.0], index=pd.date_range("2023-03-26", periods=2, freq="h", tz="UTC"))
>>> mean_intensity(s, pd.Timestamp("2023-03-26T00:30Z"), pd.Timestamp("2023-03-26T01:30Z"))
200.0
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from care_flows.accounting import mean_intensity
from care_flows.demo.clock import DemoClock
from care_flows.demo.scenario import POOLS, SCENARIOS
from care_flows.timeutil import iso, parse_time

__all__ = ["actual_trace", "summarize", "summary_table", "write_report", "plot_intensity", "plot_carbon_cost", "COLUMNS"]

COLUMNS = [
    ("scenario", "run"), ("decision", "decision"), ("window", "planned window (grid UTC)"), ("ran", "ran (grid UTC)"),
    ("deadline", "deadline (grid UTC), met"), ("region", "region"), ("instance_type", "instance type"),
    ("g", "gCO2eq expected / baseline"), ("g_real", "gCO2eq realized / at home"),
    ("usd", "USD expected / baseline"), ("usd_real", "USD realized / at home"),
    ("savings", "savings % exp / real"), ("abatement_usd_per_tco2", "abatement USD/tCO2eq exp / real"),
    ("state", "state"),
]
NOISE_FLOOR_PCT = 1.0
"""A realized saving at most this many points above the demo clock's noise draws no abatement cost."""
_REGION_OF_POOL = {pool: region for region, pool in POOLS.items()}
_COLORS = {"deferral": "#1b9e77", "greener-region": "#7570b3", "right-sizing": "#d95f02", "checkpointed": "#e7298a"}


def actual_trace(region: str, day: pd.Timestamp, hours: int = 30) -> pd.Series:
    """The embedded trace (actual g/kWh, life cycle) of ``region``'s grid zone from ``day`` on."""
    from care_flows.signals.trace import TraceSignal

    return TraceSignal.embedded().history(region, day, day + pd.Timedelta(hours=hours))


def _sizing(declared: Mapping[str, Any], chosen: Mapping[str, Any], hours: float) -> dict[str, Any] | None:
    """What right-sizing alone saved: the chosen plan (same region and window) on the declared size.

    >>> r = _sizing({"instance_type": "big", "kwh": 1.0, "usd_per_hour_in_chosen_region": 1.0},
    ...             {"instance_type": "small", "kwh": 0.1, "expected_g": 2.0, "expected_usd": 0.2}, 2.0)
    >>> r["declared_g"], r["declared_usd"], round(r["saved_g_pct"]), round(r["saved_usd_pct"])
    (20.0, 2.0, 90, 90)
    """
    kwh, g, usd = _f(declared.get("kwh")), _f(chosen.get("expected_g")), _f(chosen.get("expected_usd"))
    price = _f(declared.get("usd_per_hour_in_chosen_region", declared.get("usd_per_hour")))
    if not (kwh and g is not None and usd is not None and price and chosen.get("kwh")):
        return None
    declared_g, declared_usd = g * kwh / float(chosen["kwh"]), price * hours
    return {"declared_instance_type": declared.get("instance_type"), "declared_g": declared_g, "declared_usd": declared_usd,
            "saved_g_pct": 100.0 * (declared_g - g) / declared_g if declared_g else None,
            "saved_usd_pct": 100.0 * (declared_usd - usd) / declared_usd if declared_usd else None}


def _trigger_seconds(details: Sequence[Mapping[str, Any]]) -> list[float] | None:
    """[shortest, longest] wall seconds of the trigger runs (process up to plan made), None when unknown."""
    secs = [(parse_time(d["end"]) - parse_time(d["start"])).total_seconds() for d in details
            if d["role"] == "trigger" and not d["body"] and d.get("start") and d.get("end")]
    return [round(min(secs), 1), round(max(secs), 1)] if secs else None


def _hhmm(t: pd.Timestamp, day: pd.Timestamp) -> str:
    minutes = int(round((t - day).total_seconds() / 60.0))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _hours(option: Mapping[str, Any]) -> float:
    """Hours an option (a decision's ``chosen`` or ``baseline`` dict) runs: its segments' sum, else end - start.

    >>> _hours({"start": "2023-03-26T00:00Z", "end": "2023-03-26T05:00Z",
    ...         "segments": [{"start": "2023-03-26T00:00Z", "end": "2023-03-26T01:00Z"},
    ...                      {"start": "2023-03-26T04:00Z", "end": "2023-03-26T05:00Z"}]})
    2.0
    """
    if not option or not option.get("start") or not option.get("end"):
        return float("nan")
    segs = option.get("segments") or [{"start": option["start"], "end": option["end"]}]
    return sum((parse_time(s["end"]) - parse_time(s["start"])).total_seconds() for s in segs) / 3600.0


def _f(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _decision_label(dec: Mapping[str, Any], home: str) -> str:
    chosen, now = dec["chosen"], parse_time(dec["now"])
    start = parse_time(chosen["start"])
    wait_h = (start - now).total_seconds() / 3600.0
    parts = []
    if dec.get("is_now_here"):
        parts.append("run now at home")
    else:
        if chosen["region"] != home:
            parts.append(f"move to {chosen['region']}")
        parts.append(f"defer {wait_h:.1f} h" if wait_h > 0.25 else "start now")
    if len(chosen.get("segments") or []) > 1:
        parts.append(f"{len(chosen['segments'])} segments")
    return ", ".join(parts)


def summarize(
    *,
    clock: DemoClock,
    triggers: Mapping[str, str],
    runs: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Mapping[str, Any]],
    actual: Mapping[str, pd.Series],
    marks: Mapping[str, int] | None = None,
    tolerance_s: float = 3.0,
) -> dict[str, Any]:
    """One summary row per scenario plus the per-run details.

    ``runs``: dicts with ``id, name, scenario, role (trigger|dispatched|continuation), state,
    pool, instance_type, expected_start, start, end, root`` (times as UTC Timestamps or None).
    ``actual``: region -> actual intensity trace over the replayed day (grid time).
    A body run "started in its window" when its measured start lies in
    ``[scheduled - tolerance_s, segment end)``.
    """
    day = clock.grid_t0
    rows, details = [], []
    for sc in SCENARIOS:
        trig = triggers.get(sc.key)
        dec_rec = decisions.get(sc.key)
        mine = [r for r in runs if r["scenario"] == sc.key]
        trigger_run = next((r for r in mine if r["id"] == trig), None)
        dec = dec_rec["decision"] if dec_rec else None
        home = sc.grid_policy().home_region
        body = [r for r in mine if r["role"] != "trigger" and r.get("root") == trig]
        if dec is not None and dec.get("is_now_here") and trigger_run is not None:
            body = [trigger_run, *body]
        body.sort(key=lambda r: r["expected_start"] or r["start"] or pd.Timestamp.max.tz_localize("UTC"))
        chosen = dec["chosen"] if dec else {}
        wall_segments = [(parse_time(a), parse_time(b)) for a, b in (dec_rec or {}).get("wall_segments", [])]
        exp_hours = (parse_time(chosen["end"]) - parse_time(chosen["start"])).total_seconds() / 3600.0 if chosen else float("nan")
        if chosen and len(chosen.get("segments") or []) > 1:
            exp_hours = sum((parse_time(s["end"]) - parse_time(s["start"])).total_seconds() for s in chosen["segments"]) / 3600.0
        kwh_per_hour = (chosen.get("kwh") or 0.0) / exp_hours if chosen and exp_hours > 0 else float("nan")
        # what an hour of the chosen instance costs: list price plus a burstable type's CPU credits
        usd_per_hour = (chosen["usd_per_hour"] + (_f(chosen.get("credit_usd_per_hour")) or 0.0)
                        if chosen and chosen.get("usd_per_hour") is not None else None)
        baseline = dec["baseline"] if dec else {}
        # the at-home side of the realized figures is the expected baseline's instance (run now, at home, on the
        # home-sized instance): its kWh and USD per hour, for both carbon and cost (review 36c M3: carbon on the
        # instance that ran and USD on the home-sized one made the realized abatement of a move that also changed
        # the type twice the expected one)
        base_hours = _hours(baseline)
        base_kwh_per_hour = (_f(baseline.get("kwh")) or 0.0) / base_hours if base_hours > 0 else float("nan")
        base_usd_per_hour = (_f(baseline.get("expected_usd")) or 0.0) / base_hours if base_hours > 0 else 0.0
        decided_grid = parse_time(dec_rec["decided_at_grid"]) if dec_rec else day
        deadline_grid = decided_grid + pd.Timedelta(sc.grid_policy().deadline_within)
        realized_g = realized_usd = at_home_g = at_home_usd = realized_kwh = at_home_kwh = 0.0
        planned_rate_g = planned_home_g = 0.0  # g/kWh over the planned slices, each side: what the demo clock changed
        work_done_h = 0.0
        realized_ok = bool(body) and all(r["state"] == "COMPLETED" for r in [*(mine or [])])
        run_details = []
        for r in sorted(mine, key=lambda r: r["start"] or pd.Timestamp.max.tz_localize("UTC")):
            d: dict[str, Any] = {
                "scenario": sc.key, "id": r["id"], "name": r["name"], "role": r["role"], "state": r["state"],
                "pool": r["pool"], "region": _REGION_OF_POOL.get(r["pool"], r["pool"]), "instance_type": r.get("instance_type"),
                "body": r in body,
            }
            for key in ("expected_start", "start", "end"):
                t = r.get(key)
                d[key] = iso(t) if t is not None else None
                d[f"{key}_grid"] = iso(clock.to_grid(t)) if t is not None else None
            if r in body and r["start"] is not None and r["end"] is not None:
                a, b = clock.to_grid(r["start"]), clock.to_grid(r["end"])
                hours = (b - a).total_seconds() / 3600.0
                region = d["region"]
                gpk = mean_intensity(actual[region], a, b) if region in actual else float("nan")
                kwh = kwh_per_hour * hours
                # at home: these hours on the home-sized instance, run now, at home, over the slice of the
                # run-now window this segment's work stands for (decision + work done before it)
                begin = decided_grid + pd.Timedelta(hours=work_done_h)
                home_gpk = mean_intensity(actual[home], begin, begin + pd.Timedelta(hours=hours)) if home in actual else float("nan")
                home_kwh = base_kwh_per_hour * hours
                g = kwh * gpk
                realized_g += g
                realized_kwh += kwh
                realized_usd += (usd_per_hour or 0.0) * hours
                at_home_kwh += home_kwh
                at_home_g += home_kwh * home_gpk
                at_home_usd += base_usd_per_hour * hours
                work_done_h += hours
                d.update(grid_hours=hours, realized_kwh=kwh, realized_g_per_kwh=gpk, realized_g=g, at_home_g_per_kwh=home_gpk,
                         at_home_kwh=home_kwh, at_home_g=home_kwh * home_gpk, realized_usd=(usd_per_hour or 0.0) * hours,
                         at_home_usd=base_usd_per_hour * hours)
                if r["role"] != "trigger" and r.get("expected_start") is not None:
                    sched = r["expected_start"]
                    seg_end = next((b for a, b in wall_segments if abs((a - sched).total_seconds()) < 1.0), None)
                    if seg_end is None:  # a run-now dispatch: its window is [decision, decision + duration)
                        seg_end = next((b for a, b in wall_segments if a <= sched < b), wall_segments[-1][1] if wall_segments else sched)
                    lag = (r["start"] - sched).total_seconds()
                    decided = parse_time(dec_rec["decided_at_wall"]) if dec_rec else sched
                    d.update(
                        lag_s=lag,
                        lag_grid_h=lag / clock.seconds_per_hour,
                        deferred=bool((sched - decided).total_seconds() > 1.0),
                        in_window=bool(-tolerance_s <= lag and r["start"] < seg_end + pd.Timedelta(seconds=tolerance_s)),
                    )
            run_details.append(d)
        if chosen and realized_ok and realized_kwh > 0:
            segs = [(parse_time(x["start"]), parse_time(x["end"])) for x in chosen.get("segments") or []]
            region = chosen.get("region")
            if region in actual and home in actual and segs:
                planned_rate_g = sum(mean_intensity(actual[region], a, b) * (b - a).total_seconds() for a, b in segs) / sum(
                    (b - a).total_seconds() for a, b in segs)
                planned_home_g = mean_intensity(actual[home], decided_grid, decided_grid + pd.Timedelta(hours=exp_hours))
        details.extend(run_details)
        states = sorted({r["state"] for r in mine}) or ["NOT STARTED"]
        state = "COMPLETED" if states == ["COMPLETED"] else "/".join(states)
        body_done = sorted((d for d in run_details if d["body"] and d.get("start_grid") and d.get("end_grid")), key=lambda d: d["start"])
        ran = " + ".join(f"{_hhmm(parse_time(d['start_grid']), day)}-{_hhmm(parse_time(d['end_grid']), day)}" for d in body_done) or "-"
        finished_grid = parse_time(body_done[-1]["end_grid"]) if (body_done and realized_ok) else None
        met = None if finished_grid is None else bool(finished_grid <= deadline_grid)
        window = " + ".join(f"{_hhmm(parse_time(s['start']), day)}-{_hhmm(parse_time(s['end']), day)}" for s in chosen.get("segments") or []) if chosen else "-"
        exp_sav = _f(dec.get("savings_pct")) if dec else None
        base_g = _f(baseline.get("expected_g"))
        base_usd = _f(baseline.get("expected_usd"))
        real_sav = 100.0 * (at_home_g - realized_g) / at_home_g if (realized_ok and at_home_g > 0) else None
        # what the demo clock (start lag, overrun) moved the realized intensities by, in % of the home figure:
        # a realized saving within it is noise, and no abatement cost is drawn from it
        noise_pct = None
        if realized_ok and realized_kwh > 0 and at_home_kwh > 0 and planned_home_g > 0 and at_home_g > 0:
            # the clock moves the intensities (g/kWh) each side met, not the energies: each side's shift x its kWh
            noise_pct = 100.0 * (realized_kwh * abs(realized_g / realized_kwh - planned_rate_g)
                                 + at_home_kwh * abs(at_home_g / at_home_kwh - planned_home_g)) / at_home_g
        within_noise = real_sav is not None and (real_sav <= (noise_pct or 0.0) + NOISE_FLOOR_PCT)
        real_abatement = ((realized_usd - at_home_usd) / ((at_home_g - realized_g) / 1e6)
                          if (real_sav is not None and not within_noise) else None)
        declared = (dec_rec or {}).get("declared")
        sizing = _sizing(declared, chosen, exp_hours) if (declared and chosen) else None
        row = {
            "scenario": sc.key,
            "flow": sc.flow_name,
            "shows": sc.shows,
            "decision": _decision_label(dec, home) if dec else "no decision recorded",
            "window": window,
            "planned_segments_grid": [{"start": iso(parse_time(s["start"])), "end": iso(parse_time(s["end"]))}
                                      for s in (chosen.get("segments") or [])] if chosen else [],
            "ran": ran,
            "region": chosen.get("region", "-"),
            "instance_type": chosen.get("instance_type", "-"),
            "expected_g": _f(chosen.get("expected_g")),
            "expected_usd": _f(chosen.get("expected_usd")),
            "realized_g": realized_g if realized_ok else None,
            "realized_usd": realized_usd if realized_ok else None,
            "realized_kwh": realized_kwh if realized_ok else None,
            "at_home_kwh": at_home_kwh if realized_ok else None,
            "at_home_g": at_home_g if realized_ok else None,
            "at_home_usd": at_home_usd if realized_ok else None,
            "baseline_g": base_g,
            "baseline_usd": base_usd,
            "baseline_instance_type": baseline.get("instance_type"),
            "savings_pct": exp_sav,
            "realized_savings_pct": real_sav,
            "abatement_usd_per_tco2": _f(dec.get("abatement_usd_per_tco2")) if dec else None,  # expected
            "realized_abatement_usd_per_tco2": real_abatement,
            "realized_noise_pct": noise_pct,
            "realized_within_noise": within_noise if real_sav is not None else None,
            "deadline_grid": iso(deadline_grid),
            "deadline": _hhmm(deadline_grid, day),
            "finished_grid": iso(finished_grid) if finished_grid is not None else None,
            "met_deadline": met,
            "sizing": sizing,
            "state": state,
            "runs": len(mine),
            "body_runs": len(body),
            "decided_at_grid": iso(parse_time(dec_rec["decided_at_grid"])) if dec_rec else None,
            "declared": (dec_rec or {}).get("declared"),
            "usage": (dec_rec or {}).get("usage"),
            "warnings": list(dec.get("warnings", [])) if dec else [],
        }
        rows.append(row)
    return {
        "day": iso(day),
        "seconds_per_hour": clock.seconds_per_hour,
        "wall_t0": iso(clock.wall_t0),
        "rows": rows,
        "runs": details,
        "stage_executions": dict(marks or {}),
        "all_completed": all(r["state"] == "COMPLETED" for r in rows),
        "all_met_deadline": all(r["met_deadline"] is True for r in rows),
        "trigger_wall_s": _trigger_seconds(details),
        "deferred_in_window": all(d.get("in_window", True) for d in details if d.get("deferred")),
    }


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _cell(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    if key == "savings":
        return f"{_num(row.get('savings_pct'), 0)} / {_num(row.get('realized_savings_pct'), 0)}"
    if key == "g":
        return " / ".join(_num(row.get(k), 2) for k in ("expected_g", "baseline_g"))
    if key == "g_real":
        return " / ".join(_num(row.get(k), 2) for k in ("realized_g", "at_home_g"))
    if key == "usd":
        return " / ".join(_num(row.get(k), 4) for k in ("expected_usd", "baseline_usd"))
    if key == "usd_real":
        return " / ".join(_num(row.get(k), 4) for k in ("realized_usd", "at_home_usd"))
    if key == "deadline":
        met = row.get("met_deadline")
        return f"{row.get('deadline', '-')} {'-' if met is None else ('yes' if met else 'NO (missed)')}"
    if key == "instance_type" and row.get("sizing"):
        sz = row["sizing"]
        return (f"{v} (vs declared {sz['declared_instance_type']}: right-sizing saved {_num(sz['saved_g_pct'], 0)} % g, "
                f"{_num(sz['saved_usd_pct'], 0)} % USD)")
    if key == "abatement_usd_per_tco2":
        return " / ".join("-" if row.get(k) is None else f"{row[k]:,.0f}" for k in ("abatement_usd_per_tco2", "realized_abatement_usd_per_tco2"))
    if isinstance(v, float) or v is None:
        return _num(v, 2)
    return str(v)


def summary_table(summary: Mapping[str, Any]) -> Any:
    """A rich Table of the summary rows."""
    from rich.table import Table

    table = Table(title=f"CaRE demo: {summary['day'][:10]} replayed at {summary['seconds_per_hour']:g} s per grid hour", show_lines=False)
    for key, label in COLUMNS:
        table.add_column(label, justify="right" if key in ("g", "usd", "savings", "abatement_usd_per_tco2") else "left", overflow="fold")
    for row in summary["rows"]:
        table.add_row(*[_cell(row, k) for k, _ in COLUMNS])
    return table


def plot_intensity(path: Path, summary: Mapping[str, Any], decisions: Mapping[str, Mapping[str, Any]], actual: Mapping[str, pd.Series]) -> Path:
    """Forecast and actual intensity per region over the day, each run's window and execution marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    day = parse_time(summary["day"])
    clock = DemoClock(summary["wall_t0"], summary["day"], summary["seconds_per_hour"])
    hours = lambda t: (parse_time(t) - day).total_seconds() / 3600.0  # noqa: E731
    regions = list(POOLS)
    fig, axes = plt.subplots(len(regions), 1, figsize=(11, 3.4 * len(regions)), sharex=True)
    for ax, region in zip(np.atleast_1d(axes), regions):
        act = actual[region]
        act = act[(act.index >= day) & (act.index < day + pd.Timedelta(hours=24))]
        x = [(t - day).total_seconds() / 3600.0 for t in act.index]
        ax.step(x + [24.0], list(act.to_numpy()) + [float(act.iloc[-1])], where="post", color="black", lw=1.6, label="actual (embedded trace)")
        longest = max(decisions.items(), key=lambda kv: len(kv[1].get("forecasts", {}).get(region) or []), default=None)
        if longest is not None and longest[1].get("forecasts", {}).get(region):
            key, rec = longest
            fc = rec["forecasts"][region]
            fx = [hours(t) for t, _ in fc]
            ax.step(fx + [fx[-1] + 1], [v for _, v in fc] + [fc[-1][1]], where="post", ls="--", color="grey", lw=1.2,
                    label=f"forecast issued {_hhmm(parse_time(rec['decided_at_grid']), day)} ({key}'s decision)")
        ymax = ax.get_ylim()[1]
        for i, row in enumerate(summary["rows"]):
            color = _COLORS.get(row["scenario"], "C0")
            rec = decisions.get(row["scenario"])
            if rec and rec["decision"]["chosen"]["region"] == region:
                for seg in rec["decision"]["chosen"]["segments"]:
                    ax.axvspan(hours(seg["start"]), hours(seg["end"]), color=color, alpha=0.15)
            for d in summary["runs"]:
                if d["scenario"] == row["scenario"] and d["body"] and d["region"] == region and d.get("start") and d.get("end"):
                    ga, gb = hours(clock.to_grid(d["start"])), hours(clock.to_grid(d["end"]))
                    y = ymax * (0.96 - 0.06 * i)
                    ax.plot([ga, gb], [y, y], color=color, lw=5, solid_capstyle="butt")
            ax.plot([], [], color=color, lw=5, label=f"{row['scenario']}: planned (shaded), ran (bar)")
        ax.set_ylabel("gCO2eq/kWh (life cycle)")
        ax.set_title(f"{region} (grid zone {'ES' if region == 'eu-south-2' else 'SE'}): {summary['day'][:10]}")
        ax.set_xlim(0, 24)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center right")
    np.atleast_1d(axes)[-1].set_xlabel("grid hour (UTC) of the replayed day")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_carbon_cost(path: Path, summary: Mapping[str, Any]) -> Path:
    """gCO2eq and USD per run, planned then measured: the baseline (run now at home, as planned)
    next to expected, and the realized run next to the same run time now at home (``at_home``):
    a run that took longer than planned is compared with that, not with the planned baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = [r["scenario"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bars = (("baseline", "baseline (planned, now at home)", "#bbbbbb"), ("expected", "expected", "#66a61e"),
            ("at_home", "at home (realized run time, now)", "#777777"), ("realized", "realized", "#1b9e77"))
    for ax, unit, suffix in ((axes[0], "gCO2eq", "g"), (axes[1], "USD", "usd")):
        for j, (key, label, color) in enumerate(bars):
            vals = [r.get(f"{key}_{suffix}") if r.get(f"{key}_{suffix}") is not None else 0.0 for r in rows]
            ax.bar(x + (j - 1.5) * 0.2, vals, 0.2, color=color, label=label)
        ax.set_xticks(x, names, rotation=15)
        ax.set_ylabel(f"{unit} per run")
        ax.set_title(f"{unit}: planned, then measured")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out: Path, summary: Mapping[str, Any], decisions: Mapping[str, Mapping[str, Any]], actual: Mapping[str, pd.Series],
                 notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``intensity.png``, ``carbon_cost.png``, ``summary.json`` and ``index.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "intensity": plot_intensity(out / "intensity.png", summary, decisions, actual),
        "carbon_cost": plot_carbon_cost(out / "carbon_cost.png", summary),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    paths["summary"] = out / "summary.json"
    table = _html_table([label for _, label in COLUMNS], [[_cell(r, k) for k, _ in COLUMNS] for r in summary["rows"]])
    run_cols = ["scenario", "name", "role", "pool", "region", "instance_type", "expected_start_grid", "start_grid", "end_grid", "lag_s", "in_window", "realized_g_per_kwh", "state"]
    runs = _html_table(run_cols, [[("-" if d.get(c) is None else (f"{d[c]:.2f}" if isinstance(d.get(c), float) else d[c])) for c in run_cols] for d in summary["runs"]])
    shows = "".join(f"<li><b>{html.escape(r['scenario'])}</b> ({html.escape(r['flow'])}): {html.escape(r['shows'])}</li>" for r in summary["rows"])
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CaRE demo report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}th{{background:#f2f2f2}}img{{max-width:100%}}</style></head>
<body><h1>CaRE demo report</h1>
<p>Grid day {html.escape(summary['day'][:10])} replayed from the embedded Electricity Maps traces (ES, SE; life-cycle gCO2eq/kWh)
at {summary['seconds_per_hour']:g} wall seconds per grid hour. All runs went through a local Prefect server and two local process
work pools that <b>stand in</b> for eu-south-2 and eu-north-1 (nothing ran on AWS).</p>
<ul>{shows}</ul>
<h2>Summary</h2>{table}
<p>Expected figures: CaRE's decision (right-sized instance, power model, forecast intensity). Baseline: run now, at home, on the home-sized
instance, for the planned duration. Realized: measured run times mapped back to grid time, energy of the planned instance for that duration,
actual intensity of the trace over that interval; "at home": the baseline's instance (the home-sized one) for the same hours, its energy at the
home region's actual intensity over the same slice of the run-now window and its price, carbon and cost alike, so a run that took longer than
planned on the demo clock is not counted as carbon lost, and a move that also changed the instance type is not credited with the smaller
instance's energy on one side only. Realized figures vary from run to run with this machine's load (process start-up is hours of grid time); the expected ones are
reproducible. A realized saving within what the demo clock moved the intensities ({NOISE_FLOOR_PCT:g} point margin) draws no abatement cost
("-"). Deadline: decision time + the policy's deadline (grid time); met: the last run finished by then. Abatement: extra USD per tCO2eq
avoided (negative: greener and cheaper). Stage executions of the checkpointed flow: {html.escape(json.dumps(summary.get('stage_executions', {})))}.</p>
<h2>Intensity, windows and executions</h2><img src="intensity.png" alt="forecast and actual intensity per region with each run's window">
<h2>Carbon and cost against the baseline</h2><img src="carbon_cost.png" alt="carbon and cost per run against the baseline">
<h2>Prefect flow runs</h2>{runs}
<h2>Notes</h2><ul>{note_html}</ul>
<p>Carbon data: Electricity Maps (ODbL), embedded in CaRE. Prices: AWS on-demand Linux snapshot. Power: Cloud Carbon Footprint / Teads.</p>
</body></html>
"""
    (out / "index.html").write_text(page)
    paths["html"] = out / "index.html"
    return paths
