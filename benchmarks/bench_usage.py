"""Usage-forecast benchmark on every trace in shared/data/usage_traces.

Run: ``.venv/bin/python benchmarks/bench_usage.py [--quick]`` (prints a table; ``run()`` returns rows).

Per trace (data-centre aggregates: CPU and memory; NAB EC2 CPU; Bitbrains VM CPU):

- WAPE (%) of the two-model forecaster (persistence with the auto-detected period, anomaly
  fallback) vs **persistence** (the reference study's: same time one day earlier) and the
  last-value forecast, at horizons 1 and 12, on the same rolling origins (second half of each
  trace; the period is detected on the first half). The 2-model columns are the forecaster as
  shipped (two-model + per-step selection by recent error among it, the last value and rolling
  medians); **no-sel** is the two-model forecast before selection
  (``FallbackConfig(select_median_steps=())``); **oracle median** is the WAPE of the best constant
  forecast, the median of the evaluated targets themselves (it peeks: a floor for level-only
  forecasts on noise/spike-dominated traces, not a competitor);
- NAB traces: event precision/recall of the MAD and CUSUM detectors against the NAB anomaly
  windows (a detection counts if it overlaps a window; detections after the first day);
- right-sizing: the series is taken as a flow's CPU demand in vCPU units (scaled so that the peak
  of the first half = 16 vCPU; with fractional capacity every figure is a ratio and the scale
  cancels, with real instance sizes it does not). Every 12
  steps (1 h) capacity is sized from the forecast made then (max over the hour of the forecast +
  an adaptive conformal margin that steers the share of under-provisioned intervals to 0.5 %, see
  ``capacity_plan`` / ``adaptive_capacity``) vs sizing for the historical peak so far; the
  "window-margin" columns size with the earlier fixed margin (95th percentile of past hours'
  largest shortfall ``max_k(actual - forecast)``, ``capacity_plan(margin="window")``). "peak over %" / "fc over %" are the
  over-provisioned vCPU-hours as a share of the vCPU-hours actually used.
  Reported: over-provisioned vCPU-hours saved vs peak sizing (%), and the fraction of 5-min
  intervals whose demand exceeds the capacity (under-provisioned) for both. These capacities are
  fractional (no instance offers 13.7 vCPU). The **m5** columns round each
  hour's capacity, forecast-based and peak-based alike, up to the vCPU of a real instance of
  one general-purpose family, m5 in the embedded price table (``care_flows.data.price_table()``:
  2, 4, 8, 16, 32, 48, 64, 96 vCPU; above 96, whole m5.24xlarge), at the demand scales
  ``M5_SCALES_VCPU`` (first-half peak = 16 and 6 vCPU), and score the cut and the
  under-provisioned intervals on those sizes. The last lines count the traces that meet the
  issue's target (cut >= 40 % with < 1 % of intervals under-provisioned) each way;
- anomalies detected in the evaluated half: how many, their median duration and the median
  absolute error of the duration predicted at their start (steps).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from care_flows.forecast.usage import (  # noqa: E402
    DetectorConfig,
    FallbackConfig,
    capacity_plan,
    detect_anomalies,
    evaluate_usage,
    event_precision_recall,
    persistence_matrix,
    wape_pct,
)
from care_flows.forecast.usage_io import load_usage_csv  # noqa: E402

__all__ = ["run", "traces", "DATA_DIR", "family_vcpu_sizes", "round_up_to_sizes", "meets_target"]

DATA_DIR = Path(os.environ.get("CARE_USAGE_TRACES", ROOT.parent / "shared" / "data" / "usage_traces"))
DAY = 288
SCALE_VCPU = 16.0
SIZING = {"target": 0.005, "rate": 0.005}  # capacity_plan's defaults; --sizing-target / --sizing-rate change them
SIZE_FAMILY = "m5"  # one general-purpose family of the embedded price table: its vCPU sizes are the real capacities
M5_SCALES_VCPU = (16.0, 6.0)  # demand scales (first-half peak, vCPU) at which capacity is rounded up to SIZE_FAMILY sizes
TARGET_CUT_PCT, TARGET_UNDER_PCT = 40.0, 1.0  # issue 4's right-sizing target


def family_vcpu_sizes(family: str = SIZE_FAMILY) -> np.ndarray:
    """The distinct vCPU counts of ``family``'s instance types in the embedded price table, ascending.

    >>> family_vcpu_sizes("m5").tolist()
    [2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0, 96.0]
    """
    from care_flows.data import price_table

    t = price_table()
    v = t.loc[t["instance_type"].str.startswith(family + "."), "vcpu"].dropna()  # the .metal rows have no vCPU
    return np.unique(v.to_numpy(dtype=float))


def round_up_to_sizes(capacity_vcpu: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each capacity rounded up to the smallest size that holds it; above the largest, whole largest ones.

    >>> round_up_to_sizes(np.array([0.0, 1.2, 2.0, 13.7, 100.0]), np.array([2.0, 4.0, 8.0, 16.0, 96.0])).tolist()
    [2.0, 2.0, 2.0, 16.0, 192.0]
    """
    c = np.asarray(capacity_vcpu, dtype=float)
    top = sizes[-1]
    i = np.searchsorted(sizes, c - 1e-9)
    return np.where(c > top + 1e-9, np.ceil(c / top - 1e-9) * top, sizes[np.minimum(i, len(sizes) - 1)])


def meets_target(cut_pct: float, under_pct: float) -> bool:
    """Issue 4's right-sizing target: cut >= 40 % of over-provisioned vCPU-hours, < 1 % of intervals short."""
    return bool(np.isfinite(cut_pct) and cut_pct >= TARGET_CUT_PCT and under_pct < TARGET_UNDER_PCT)


def traces() -> list[tuple[str, str, Path, str, str | None]]:
    """(name, kind, path, column, timestamp column) for every usage trace."""
    d = DATA_DIR
    out = [
        ("google2019 cpu", "aggregate", d / "google2019_instance_usage_datacenter_avg_5min_28days.csv", "avg_cpu", None),
        ("google2019 mem", "aggregate", d / "google2019_instance_usage_datacenter_avg_5min_28days.csv", "avg_mem", None),
        ("azure2019 cpu", "aggregate", d / "azure2019v2_vm_cpu_mem_datacenter_sum_5min_30days.csv", "cpu_usage", "timestamp"),
        ("azure2019 mem", "aggregate", d / "azure2019v2_vm_cpu_mem_datacenter_sum_5min_30days.csv", "assigned_mem", "timestamp"),
        ("alibaba2018 cpu", "aggregate", d / "alibaba2018_machine_usage_datacenter_avg_5min_days1-8.csv", "cpu_util_percent", None),
        ("alibaba2018 mem", "aggregate", d / "alibaba2018_machine_usage_datacenter_avg_5min_days1-8.csv", "mem_util_percent", None),
    ]
    for f in sorted(glob.glob(str(d / "nab_aws_cloudwatch" / "*.csv"))):
        out.append((f"nab {Path(f).stem.replace('ec2_cpu_utilization_', '')}", "nab", Path(f), "value", "timestamp"))
    for f in sorted(glob.glob(str(d / "bitbrains_rnd_2013-7" / "*.csv"))):
        out.append((f"bitbrains {Path(f).stem}", "bitbrains", Path(f), "CPU usage [%]", "Timestamp [ms]"))
    return out


def _nab_windows(path: Path, ts: pd.DatetimeIndex) -> list[tuple[int, int]]:
    with open(path.parent / "nab_combined_windows.json", encoding="utf-8") as fh:
        windows = json.load(fh)
    key = f"realAWSCloudwatch/{path.name}"
    out = []
    for start, end in windows.get(key, []):
        s, e = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
        i0, i1 = int(ts.searchsorted(s)), int(ts.searchsorted(e, side="right")) - 1
        if i1 >= i0:
            out.append((i0, i1))
    return out


def _merge(intervals: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _row(name: str, kind: str, path: Path, column: str, ts_col: str | None) -> dict:
    s = load_usage_csv(path, column, timestamp_column=ts_col)
    y = s.values
    row: dict = {"trace": name, "kind": kind, "n": len(y)}
    for h in (1, 12):
        ev = evaluate_usage(y, horizon=h, period="auto", step_s=s.step_s)
        daily = persistence_matrix(y, ev.origins, h, DAY)
        naive = persistence_matrix(y, ev.origins, h, None)
        row["period"] = ev.period_steps
        row[f"two_model_h{h}"] = ev.wape_pct
        row[f"persistence_h{h}"] = wape_pct(ev.actual, daily)
        row[f"last_value_h{h}"] = wape_pct(ev.actual, naive)
        row[f"anomalous_h{h}"] = ev.anomalous_fraction
        plain = evaluate_usage(y, horizon=h, period="auto", step_s=s.step_s, fallback=FallbackConfig(select_median_steps=()))
        row[f"two_model_noselect_h{h}"] = plain.wape_pct
        row[f"oracle_median_h{h}"] = wape_pct(ev.actual, np.full_like(ev.actual, np.median(ev.actual)))  # oracle: peeks
        if h == 12:
            done = [iv for iv in ev.detection.intervals if iv.start_index >= ev.origins[0] and not iv.ongoing]
            err = [abs(iv.predicted_duration_steps - iv.actual_duration_steps) for iv in done]
            row["n_anomalies"] = len(done)
            row["duration_mae_steps"] = float(np.median(err)) if err else float("nan")
            row["duration_median_steps"] = float(np.median([iv.actual_duration_steps for iv in done])) if done else float("nan")
        if h == 12:
            scale = SCALE_VCPU / max(float(np.max(np.abs(y[: ev.origins[0]]))), 1e-12)
            plan = capacity_plan(ev, history=y, target_under_fraction=SIZING["target"], adaptation_rate=SIZING["rate"])
            demand = plan["demand"] * scale
            step_h = s.step_s / 3600.0
            window = capacity_plan(ev, history=y, margin="window")
            over_window = float(np.clip(window["forecast"] * scale - demand, 0, None).sum() * step_h)
            over_peak = float(np.clip(plan["peak"] * scale - demand, 0, None).sum() * step_h)
            row["overprov_cut_window_pct"] = 100.0 * (1 - over_window / over_peak) if over_peak > 0 else float("nan")
            row["under_window_pct"] = 100.0 * float((demand > window["forecast"] * scale + 1e-12).mean())
            over = {m: float(np.clip(plan[m] * scale - demand, 0, None).sum() * step_h) for m in ("forecast", "peak")}
            row["overprov_cut_pct"] = 100.0 * (1 - over["forecast"] / over["peak"]) if over["peak"] > 0 else float("nan")
            row["under_forecast_pct"] = 100.0 * float((demand > plan["forecast"] * scale + 1e-12).mean())
            row["under_peak_pct"] = 100.0 * float((demand > plan["peak"] * scale + 1e-12).mean())
            row["peak_overprov_pct_of_demand"] = 100.0 * over["peak"] / max(float(demand.sum() * step_h), 1e-12)
            row["forecast_overprov_pct_of_demand"] = 100.0 * over["forecast"] / max(float(demand.sum() * step_h), 1e-12)
            sizes = family_vcpu_sizes()
            first_peak = max(float(np.max(np.abs(y[: ev.origins[0]]))), 1e-12)
            for vcpu in M5_SCALES_VCPU:  # the same plan, on real instance sizes at this demand scale
                sc = vcpu / first_peak
                d = plan["demand"] * sc
                real = {m: round_up_to_sizes(plan[m] * sc, sizes) for m in ("forecast", "peak")}
                over_r = {m: float(np.clip(real[m] - d, 0, None).sum() * step_h) for m in real}
                tag = f"{SIZE_FAMILY}_{vcpu:g}"
                row[f"overprov_cut_{tag}_pct"] = 100.0 * (1 - over_r["forecast"] / over_r["peak"]) if over_r["peak"] > 0 else float("nan")
                row[f"under_forecast_{tag}_pct"] = 100.0 * float((d > real["forecast"] + 1e-12).mean())
                row[f"under_peak_{tag}_pct"] = 100.0 * float((d > real["peak"] + 1e-12).mean())
                row[f"max_capacity_{tag}_vcpu"] = float(max(real["forecast"].max(), real["peak"].max()))
    if kind == "nab" and s.timestamps is not None:
        windows = _nab_windows(path, s.timestamps)
        p = row["period"]
        for method in ("mad", "cusum"):
            det = detect_anomalies(y, p, DetectorConfig(method=method))
            ivs = _merge([(iv.start_index, iv.end_index) for iv in det.intervals], gap=12)
            prec, rec, n_det, n_win = event_precision_recall(ivs, windows, after=DAY)
            row[f"{method}_precision"] = prec
            row[f"{method}_recall"] = rec
            row[f"{method}_n_detected"] = n_det
            row[f"{method}_tp_detected"] = int(round(prec * n_det)) if n_det else 0
            row[f"{method}_tp_windows"] = int(round(rec * n_win)) if n_win else 0
        row["nab_windows"] = len(windows)
    return row


def run(quick: bool = False) -> list[dict]:
    """One row per trace (``quick``: one trace of each kind)."""
    rows, seen = [], set()
    for name, kind, path, column, ts_col in traces():
        if quick and kind in seen:
            continue
        seen.add(kind)
        rows.append(_row(name, kind, path, column, ts_col))
    return rows


def _fmt(x: object, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if not np.isfinite(x) else f"{x:.{nd}f}"
    return str(x)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.ERROR)
    from _args import parse  # the script's own folder is on sys.path

    args = parse(__doc__, argv=argv, flags=[(("--sizing-target",), dict(type=float, metavar="FRACTION", help="share of intervals the sizing margin may under-provision (default 0.005)")),
                                            (("--sizing-rate",), dict(type=float, metavar="RATE", help="adaptation rate of the sizing margin (default 0.005)"))])
    for value, key in ((args.sizing_target, "target"), (args.sizing_rate, "rate")):
        if value is not None:
            SIZING[key] = value
    t0 = time.perf_counter()
    rows = run(quick=args.quick)
    took = time.perf_counter() - t0
    cols = [
        ("trace", "trace"), ("period", "P"),
        ("persistence_h1", "pers h1"), ("last_value_h1", "last h1"), ("two_model_noselect_h1", "no-sel h1"),
        ("two_model_h1", "2-model h1"), ("oracle_median_h1", "oracle median h1"),
        ("persistence_h12", "pers h12"), ("last_value_h12", "last h12"), ("two_model_noselect_h12", "no-sel h12"),
        ("two_model_h12", "2-model h12"), ("oracle_median_h12", "oracle median h12"),
        ("anomalous_h12", "anom frac"), ("n_anomalies", "anomalies"), ("duration_median_steps", "dur med"),
        ("duration_mae_steps", "dur err"), ("peak_overprov_pct_of_demand", "peak over %"),
        ("forecast_overprov_pct_of_demand", "fc over %"), ("overprov_cut_pct", "overprov cut %"),
        ("under_forecast_pct", "under fc %"), ("under_peak_pct", "under peak %"),
        ("overprov_cut_window_pct", "cut window-margin %"), ("under_window_pct", "under window-margin %"),
    ] + [(f"{k}_{SIZE_FAMILY}_{v:g}_pct", f"{SIZE_FAMILY} {lbl} % @{v:g}") for v in M5_SCALES_VCPU
         for k, lbl in (("overprov_cut", "cut"), ("under_forecast", "under fc"))]
    print("| " + " | ".join(c[1] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(k), 2 if k == "anomalous_h12" else 1) for k, _ in cols) + " |")
    nab = [r for r in rows if r["kind"] == "nab"]
    if nab:
        print()
        print("| NAB trace | windows | MAD detections | MAD precision | MAD recall | CUSUM detections | CUSUM precision | CUSUM recall |")
        print("|---|---|---|---|---|---|---|---|")
        for r in nab:
            print(f"| {r['trace']} | {r['nab_windows']} | {r['mad_n_detected']} | {_fmt(r['mad_precision'], 2)} | {_fmt(r['mad_recall'], 2)} | "
                  f"{r['cusum_n_detected']} | {_fmt(r['cusum_precision'], 2)} | {_fmt(r['cusum_recall'], 2)} |")
        tot = {m: (sum(r[f"{m}_tp_detected"] for r in nab), sum(r[f"{m}_n_detected"] for r in nab), sum(r[f"{m}_tp_windows"] for r in nab))
               for m in ("mad", "cusum")}
        n_win = sum(r["nab_windows"] for r in nab)
        print(f"| all NAB | {n_win} | {tot['mad'][1]} | {tot['mad'][0] / max(tot['mad'][1], 1):.2f} | {tot['mad'][2] / n_win:.2f} | "
              f"{tot['cusum'][1]} | {tot['cusum'][0] / max(tot['cusum'][1], 1):.2f} | {tot['cusum'][2] / n_win:.2f} |")
    sized = [r for r in rows if "overprov_cut_pct" in r]
    if sized:
        print()
        ways = [("fractional capacity", "overprov_cut_pct", "under_forecast_pct"),
                ("fractional capacity, window margin", "overprov_cut_window_pct", "under_window_pct")] + [
            (f"{SIZE_FAMILY} sizes at {v:g} vCPU", f"overprov_cut_{SIZE_FAMILY}_{v:g}_pct", f"under_forecast_{SIZE_FAMILY}_{v:g}_pct")
            for v in M5_SCALES_VCPU]
        for label, cut, under in ways:
            met = [r["trace"] for r in sized if meets_target(r[cut], r[under])]
            print(f"target (cut >= {TARGET_CUT_PCT:g} %, under < {TARGET_UNDER_PCT:g} %) met with {label}: {len(met)} of {len(sized)} "
                  f"({', '.join(met) or 'none'})")
    print(f"\n{len(rows)} traces in {took:.1f} s")


if __name__ == "__main__":
    main()
