"""Forecast quality for planning: WAPE and share of the oracle's savings, 2023, 24 h horizon.

Data: the embedded Electricity Maps hourly life-cycle intensity (the same rows as
``/work/shared/data/carbon_intensity``), zones ES SE DE FR GB. The ridge model's coefficients
were fitted on 2021-2022 only (``care_flows.forecast.carbon.RIDGE_COEF``); every 2023 forecast
is issued at the start of an hour and reads only the hours before it.

Planning score: a 1 h job arrives every hour of 2023 with 24 h slack; it starts in the hour of
``[arrival, arrival + 24 h)`` with the lowest forecast (issued at arrival). Its savings are
``actual(arrival) - actual(chosen)``; the oracle chooses on the actual data;
``share = sum(savings_model) / sum(savings_oracle)``.

Run: ``.venv/bin/python benchmarks/bench_carbon_forecast.py [--quick]``
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from care_flows.data import EMBEDDED_ZONES, embedded_intensity
from care_flows.forecast.carbon import forecast_matrix

__all__ = ["run", "score", "batch_speed", "MODELS", "AVERAGE_ZONES"]

HORIZON_STEPS = 24
MODELS = {"model": "ridge", "seasonal_naive": "seasonal_naive", "mean_7d": "mean_7d"}
AVERAGE_ZONES = ("ES", "DE", "GB", "SE")


def score(actual_window: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
    """(WAPE, share of oracle savings) of forecasts against the actual windows, both ``(n, H)``."""
    wape = float(np.abs(forecast - actual_window).sum() / np.abs(actual_window).sum())
    rows = np.arange(len(actual_window))
    chosen = np.argmin(forecast, axis=1)
    now = actual_window[:, 0]
    savings = now - actual_window[rows, chosen]
    oracle = now - actual_window.min(axis=1)
    return wape, float(savings.sum() / oracle.sum())


def run(quick: bool = False) -> list[dict]:
    """One row per zone plus the 4-zone (ES DE GB SE) and 5-zone averages."""
    rows = []
    for zone in EMBEDDED_ZONES:
        series = embedded_intensity(zone)
        y = series.to_numpy(dtype=float)
        first = int(np.searchsorted(series.index, pd.Timestamp("2023-01-01", tz="UTC")))
        last = len(y) - HORIZON_STEPS  # last issue whose whole window is observed
        if quick:
            last = min(last, first + 28 * 24)
        issues = np.arange(first, last + 1)
        actual = y[issues[:, None] + np.arange(HORIZON_STEPS)]
        scores, seconds = {}, 0.0
        for label, model in MODELS.items():
            t0 = time.perf_counter()
            fc = forecast_matrix(y, issues, HORIZON_STEPS, 24, model)
            if label == "model":
                seconds = time.perf_counter() - t0
            scores[label] = score(actual, fc)
        row: dict = {"zone": zone, "issues": len(issues)}
        row.update({f"wape_{label}": w for label, (w, _) in scores.items()})
        row.update({f"share_{label}": sh for label, (_, sh) in scores.items()})
        row["forecast_seconds"] = seconds
        rows.append(row)
    for name, zones in (("avg4 (ES DE GB SE)", AVERAGE_ZONES), ("avg5", EMBEDDED_ZONES)):
        sel = [r for r in rows if r["zone"] in zones]
        avg = {"zone": name, "issues": sum(r["issues"] for r in sel)}
        for key in sel[0]:
            if key.startswith(("wape_", "share_")) or key == "forecast_seconds":
                avg[key] = float(np.mean([r[key] for r in sel]))
        rows.append(avg)
    return rows


def batch_speed(quick: bool = False) -> list[dict]:
    """Seconds for simulator-sized ``forecast_matrix`` calls (random issue times, DE 2021-2023)."""
    n = 10_000 if quick else 100_000
    rng = np.random.default_rng(0)
    hourly = embedded_intensity("DE").to_numpy(dtype=float)
    out = []
    for label, values, spd in (("hourly", hourly, 24), ("5-minute", np.repeat(hourly, 12), 288)):
        issues = rng.integers(8 * spd, len(values) - spd, n)
        t0 = time.perf_counter()
        forecast_matrix(values, issues, spd, spd)
        out.append({"data": label, "issues": n, "horizon_steps": spd, "seconds": time.perf_counter() - t0})
    return out


def _table(rows: list[dict]) -> str:
    head = (
        f"{'zone':<20}{'issues':>7} | {'WAPE model':>10}{'s-naive':>9}{'mean7d':>8} |"
        f" {'share model':>11}{'s-naive':>9}{'mean7d':>8} | {'fc s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['zone']:<20}{r['issues']:>7} | {r['wape_model']:>10.3f}{r['wape_seasonal_naive']:>9.3f}"
            f"{r['wape_mean_7d']:>8.3f} | {r['share_model']:>11.3f}{r['share_seasonal_naive']:>9.3f}"
            f"{r['share_mean_7d']:>8.3f} | {r['forecast_seconds']:>6.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    print(f"carbon forecast quality, test year 2023, 24 h horizon{' (quick: 4 weeks)' if quick else ''}")
    print(_table(run(quick=quick)))
    for r in batch_speed(quick):
        print(f"forecast_matrix, {r['data']}: {r['issues']} issues x {r['horizon_steps']} steps in {r['seconds']:.2f} s")
