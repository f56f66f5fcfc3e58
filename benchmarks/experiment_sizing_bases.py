"""Experiment: why right-sizing misses the 40 % cut on five traces, and whether another base fixes it.

Run: ``.venv/bin/python benchmarks/experiment_sizing_bases.py`` (about 2 s; prints a table).

Same set-up as ``benchmarks/bench_usage.py`` (issue 4's right-sizing target): rolling-origin
forecasts at horizon 12 over the second half of every trace, capacity re-sized every 12 steps
(1 h), ``overprov cut %`` = reduction of over-provisioned capacity-steps vs the historical peak so
far, ``under %`` = share of steps with demand above capacity. Every ratio is scale-free.

Honest variants (data before each block's origin only), each with the shipped adaptive conformal
margin (``adaptive_capacity``, 0.5 % target):

- ``shipped``: base = largest two-model forecast of the block (``capacity_plan``'s default);
- ``selected``: base = largest *selected* forecast (lower WAPE, less stable);
- ``mult``: the same base, margin as a ratio of it (errors that scale with the level);
- ``rollmax12`` / ``rollq90_48``: base = the last hour's largest value / 90th percentile of the
  last 4 hours (no forecast: "size like the recent past");
- ``blend``: mean of ``shipped``'s base and ``rollmax12``'s.

Oracle rows (they PEEK at the block's demand; references, not methods):

- ``oracle_max``: capacity = the block's true largest demand (a perfect block-max forecast, no
  margin). Its cut is the ceiling any hourly re-sizing can reach: a constant capacity over the
  hour still over-provisions every step below the hour's maximum.
- ``needed_error_pct``: the largest margin ``m`` (in % of the mean demand) for which capacity =
  true block max + m still cuts 40 %: how close a block-max forecast plus its margin must be.
- ``fc_error_q995_pct``: the shipped base's 99.5th-percentile shortfall ``true block max -
  forecast block max`` (in % of the mean demand): about the margin a 0.5 % target has to add.

Measured (this command, 2026-11-29; cut % / under %, then the two accuracy columns in % of mean
demand):

```
trace            peak over%   shipped    selected  rollmax12  rollq90_48   blend   oracle_max  needed  fc q99.5
google2019 cpu         21.9   -5/0.75     6/0.70    -0/0.60     1/0.67    3/0.70    74/0.00      7.5     31.0
google2019 mem         21.0   27/0.57    -3/0.67    12/0.87    13/0.77   26/0.82    85/0.00      9.5     25.1
alibaba2018 cpu        84.9   33/0.09    14/0.45    15/0.63     9/0.63   29/0.54    76/0.00     30.7     41.3
alibaba2018 mem         4.7  -16/0.54    -6/1.08   -15/0.63     3/0.63   -3/0.90    47/0.00      0.3      5.9
nab 77c1ca            683.4  -11/0.60   -12/0.60   -32/0.45   -38/0.60  -21/0.50    76/0.00    245.9    782.5
```

The seven traces that meet the target with ``shipped`` (Azure CPU and memory, NAB 24ae8d, 53ea38
and 5f5533, Bitbrains vm_1 and vm_9) also meet it with ``selected``, ``rollmax12``,
``rollq90_48`` and ``blend``; ``mult`` loses one and breaks on near-zero bases (NAB 77c1ca,
Bitbrains vm_1: cuts below -999 %, printed as ``<-999``). **No variant lifts any of the five others** (above) to a 40 % cut. On those
five an hour-ahead block maximum would have to be within the "needed" margin, and the forecast's
99.5th-percentile shortfall is 1.3-9x that (Alibaba memory: 0.3 % vs 5.9 %; there even a perfect
block-max forecast only cuts 47 %, because the peak is 4.7 % above demand and a constant hourly
capacity over-provisions every step below the hour's maximum).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_usage  # noqa: E402

from care_flows.forecast.usage import adaptive_capacity, evaluate_usage  # noqa: E402
from care_flows.forecast.usage_io import load_usage_csv  # noqa: E402

H = 12
TARGET_CUT_PCT = 40.0


def _score(cap: np.ndarray, peak: np.ndarray, demand: np.ndarray) -> tuple[float, float]:
    cap = np.where(np.isnan(cap), peak, cap)
    over_fc = np.clip(cap[:, None] - demand, 0, None).sum()
    over_peak = np.clip(peak[:, None] - demand, 0, None).sum()
    return 100.0 * (1 - over_fc / over_peak), 100.0 * float((demand > cap[:, None] + 1e-12).mean())


def _row(name: str, path: Path, column: str, ts_col: str | None) -> dict:
    s = load_usage_csv(path, column, timestamp_column=ts_col)
    y = s.values
    ev = evaluate_usage(y, horizon=H, period="auto", step_s=s.step_s)
    blocks = np.arange(0, len(ev.origins), H)
    at = ev.origins[blocks]  # the origin's value y[at] is known at the origin
    peak = np.maximum.accumulate(y)[at]
    demand = ev.actual[blocks]
    two = np.max(ev.two_model_prediction[blocks], axis=1)
    sel = np.max(ev.prediction[blocks], axis=1)
    hist = pd.Series(y)
    rollmax12 = hist.rolling(12, min_periods=1).max().to_numpy()[at]
    rollq90 = hist.rolling(48, min_periods=1).quantile(0.9).to_numpy()[at]

    def aci(base: np.ndarray) -> np.ndarray:
        return adaptive_capacity(base, demand)

    safe = np.maximum(two, 1e-9)
    variants = {
        "shipped": aci(two),
        "selected": aci(sel),
        "mult": safe * (1 + adaptive_capacity(np.zeros_like(safe), demand / safe[:, None] - 1)),
        "rollmax12": aci(rollmax12),
        "rollq90_48": aci(rollq90),
        "blend": aci(0.5 * two + 0.5 * rollmax12),
        "oracle_max": demand.max(axis=1),
    }
    row: dict = {"trace": name, "peak_over_pct": 100.0 * float(np.clip(peak[:, None] - demand, 0, None).sum() / demand.sum())}
    for label, cap in variants.items():
        cut, under = _score(cap, peak, demand)
        row[f"{label}_cut"], row[f"{label}_under"] = cut, under
    level = float(demand.mean())
    lo, hi = 0.0, 100.0  # bisection on the margin m (x mean demand): the cut falls as it grows
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _score(demand.max(axis=1) + mid * level, peak, demand)[0] >= TARGET_CUT_PCT else (lo, mid)
    row["needed_error_pct"] = 100.0 * lo if row["oracle_max_cut"] >= TARGET_CUT_PCT else float("nan")
    shortfall = (demand.max(axis=1) - two) / level
    row["fc_error_q995_pct"] = 100.0 * float(np.quantile(shortfall[24:], 0.995))
    row["meets_target"] = [k for k in variants if k != "oracle_max" and row[f"{k}_cut"] >= TARGET_CUT_PCT and row[f"{k}_under"] < 1.0]
    return row


def run(quick: bool = False) -> list[dict]:
    """One row per usage trace (``quick``: the first three)."""
    rows = []
    for i, (name, _kind, path, column, ts_col) in enumerate(bench_usage.traces()):
        if quick and i >= 3:
            break
        rows.append(_row(name, path, column, ts_col))
    return rows


OPTION_TRACES = ("azure2019 mem", "alibaba2018 mem", "nab 77c1ca")


def option_rows() -> list[dict]:
    """``capacity_plan``'s options on the traces the docs quote (docs/USAGE_FORECAST.md, Sizing)."""
    from care_flows.forecast.usage import capacity_plan

    rows = []
    for name, _kind, path, column, ts_col in bench_usage.traces():
        if name not in OPTION_TRACES:
            continue
        s = load_usage_csv(path, column, timestamp_column=ts_col)
        ev = evaluate_usage(s.values, horizon=H, period="auto", step_s=s.step_s)
        plans = {
            "adaptive, two-model (default)": capacity_plan(ev, history=s.values),
            "adaptive, selected forecast": capacity_plan(ev, history=s.values, sizing_forecast="selected"),
            "adaptive, cap_at_peak": capacity_plan(ev, history=s.values, cap_at_peak=True),
            "window margin (earlier default)": capacity_plan(ev, history=s.values, margin="window"),
            "window margin, cap_at_peak": capacity_plan(ev, history=s.values, margin="window", cap_at_peak=True),
        }
        base = np.max(ev.two_model_prediction[np.arange(0, len(ev.origins), H)], axis=1)
        default = plans["adaptive, two-model (default)"]
        soft = dict(default)  # "soft" cap: at the peak only when the point forecast is below it
        cap0, peak0 = default["forecast"][:, 0], default["peak"][:, 0]
        soft_cap = np.where(base < peak0, np.minimum(cap0, peak0), cap0)
        soft["forecast"] = np.repeat(soft_cap[:, None], H, axis=1)
        plans["adaptive, soft cap"] = soft
        for label, plan in plans.items():
            cut, under = _score(plan["forecast"][:, 0], plan["peak"][:, 0], plan["demand"])
            short_windows = int((plan["demand"] > plan["forecast"] + 1e-12).any(axis=1).sum())
            rows.append({"trace": name, "plan": label, "cut_pct": cut, "under_pct": under,
                         "short_windows": short_windows, "windows": len(plan["demand"])})
    return rows


def shift_rows() -> list[dict]:
    """The synthetic shift of ``tests/forecast/test_usage_forecast.py::test_adaptive_capacity_holds_the_under_provisioning_target_through_a_shift``:
    noise sd 1 for 600 hourly blocks, then 3; under-provisioned share of the 100 blocks after the shift."""
    rng = np.random.default_rng(3)
    sd = np.where(np.arange(1200) < 600, 1.0, 3.0)[:, None]
    demand = 10 + rng.normal(0, 1, (1200, 12)) * sd
    base = np.full(1200, 10.0)
    out = []
    for rate in (0.0, 0.005, 0.01):
        cap = adaptive_capacity(base, demand, target_under_fraction=0.005, adaptation_rate=rate)
        out.append({"adaptation_rate": rate, "under_after_shift_pct": 100.0 * float((demand[600:700] > cap[600:700, None]).mean()),
                    "under_overall_pct": 100.0 * float((demand[24:] > cap[24:, None]).mean())})
    return out


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path
    rows = run(quick=parse(__doc__).quick)
    labels = ["shipped", "selected", "mult", "rollmax12", "rollq90_48", "blend", "oracle_max"]
    head = f"{'trace':16s} {'peak over%':>10s} " + " ".join(f"{lab:>13s}" for lab in labels) + f" {'needed err%':>11s} {'fc q99.5%':>9s}"
    print("cut % / under % per capacity base (oracle_max peeks)")
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = " ".join((f"{r[f'{lab}_cut']:6.0f}" if r[f"{lab}_cut"] > -1000 else " <-999") + f"/{r[f'{lab}_under']:5.2f}" for lab in labels)
        print(f"{r['trace']:16s} {r['peak_over_pct']:10.1f} {cells} {r['needed_error_pct']:11.1f} {r['fc_error_q995_pct']:9.1f}")
    ok = {lab: sum(lab in r["meets_target"] for r in rows) for lab in labels[:-1]}
    print("traces meeting >= 40 % cut with < 1 % under: " + ", ".join(f"{k} {v}" for k, v in ok.items()))
    print()
    print("capacity_plan options (docs/USAGE_FORECAST.md, Sizing): cut % / under % / hourly windows with a short step")
    for r in option_rows():
        print(f"{r['trace']:16s} {r['plan']:34s} {r['cut_pct']:7.1f} {r['under_pct']:6.2f}  {r['short_windows']:4d} of {r['windows']}")
    print()
    print("synthetic shift (noise sd 1 -> 3 after 600 blocks; 0.5 % target): under-provisioned % of the next 100 blocks' steps")
    for r in shift_rows():
        print(f"adaptation_rate {r['adaptation_rate']:<6g} after the shift {r['under_after_shift_pct']:5.2f}   overall {r['under_overall_pct']:5.2f}")


if __name__ == "__main__":
    main()
