"""Forecast quality for planning: WAPE and share of the oracle's savings, 2023, 24 h horizon.

Data: the embedded Electricity Maps hourly life-cycle intensity (the same rows as
``../shared/data/carbon_intensity``), zones ES SE DE FR GB. The ridge model's coefficients
were fitted on 2021-2022 only (``care_flows.forecast.carbon.RIDGE_COEF``); every 2023 forecast
is issued at the start of an hour and reads only the hours before it.

Planning score: a 1 h job arrives every hour of 2023 with 24 h slack; it starts in the hour of
``[arrival, arrival + 24 h)`` with the lowest forecast (issued at arrival): the 24 slots a 24 h
forecast covers, so the job ends by arrival + 24 h. ``--starts 25`` also allows the start at
arrival + 24 h (the literal "deadline = arrival + duration + 24 h"; its 25th slot is beyond the
24 h forecast, whose last lead is extended). Its savings are
``actual(arrival) - actual(chosen)``; the oracle chooses on the actual data;
``share = sum(savings_model) / sum(savings_oracle)``.

Two ways to decide, both honest (a decision at time t reads only the hours before t):

- **plan once** (``share_*``): the start is fixed at arrival from the forecast issued then;
- **check at start** (``check_model``, ridge only): planned once at arrival, then checked again
  when the planned start comes, with a forecast issued then (``care_flows.orchestration.start_check``,
  what a run a ``@care`` trigger dispatched does): if a later start is forecast lower, the job moves
  there and is checked again, at most ``MAX_START_CHECKS`` times;
- **re-plan** (``replan_*``): CaRE's controller way (``care_flows.planning.replan``): the job stays
  scheduled and, every hour until it starts, a fresh forecast is issued and it starts now iff
  the forecast now is at most ``(1 - threshold)`` x the best forecast later start in its window.
  ``threshold`` is chosen on 2021-2022 only (:func:`tune_threshold`, printed with the table).

Run: ``.venv/bin/python benchmarks/bench_carbon_forecast.py [--quick] [--diagnostics] [--starts 25]``
(``--diagnostics`` adds what 90% would need: shares with forecasts improved by peeking, labelled oracle)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from care_flows.data import EMBEDDED_ZONES, embedded_intensity
from care_flows.forecast.carbon import forecast_matrix
from care_flows.orchestration.start_check import MAX_START_CHECKS
from care_flows.policy import CarePolicy
from care_flows.planning.replan import replan_starts

__all__ = ["run", "score", "replan_share", "start_check_share", "tune_threshold", "batch_speed", "MODELS", "AVERAGE_ZONES", "THRESHOLD_GRID", "diagnostics"]

HORIZON_STEPS = 24
MIN_SAVINGS_PCT = CarePolicy.model_fields["min_savings_pct"].default  # what a hand-on must gain (the policy's default)
MODELS = {"model": "ridge", "seasonal_naive": "seasonal_naive", "mean_7d": "mean_7d"}
AVERAGE_ZONES = ("ES", "DE", "GB", "SE")
THRESHOLD_GRID = (-0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05)


def score(actual_window: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
    """(WAPE, share of oracle savings) of forecasts against the actual windows, both ``(n, H)``."""
    wape = float(np.abs(forecast - actual_window).sum() / np.abs(actual_window).sum())
    rows = np.arange(len(actual_window))
    chosen = np.argmin(forecast, axis=1)
    now = actual_window[:, 0]
    savings = now - actual_window[rows, chosen]
    oracle = now - actual_window.min(axis=1)
    return wape, float(savings.sum() / oracle.sum())


def replan_share(y: np.ndarray, issues: np.ndarray, fc_rows: np.ndarray, threshold: float = 0.0) -> float:
    """Share of the oracle's savings when every 1 h job (arrival ``issues[i]``, 24 h slack) is re-planned
    each hour; ``fc_rows[k]`` is the forecast issued at slot ``issues[0] + k`` (rows up to the last latest start)."""
    a = issues.astype(float)
    start = replan_starts(fc_rows, int(issues[0]), a, a + HORIZON_STEPS - 1, np.ones(len(a)), threshold=threshold)
    actual = y[issues[:, None] + np.arange(HORIZON_STEPS)]
    oracle = actual[:, 0] - actual.min(axis=1)
    return float((actual[:, 0] - y[start.astype(np.int64)]).sum() / oracle.sum())


def start_check_share(y: np.ndarray, issues: np.ndarray, fc_rows: np.ndarray, max_checks: int = MAX_START_CHECKS,
                      min_savings_pct: float = MIN_SAVINGS_PCT) -> float:
    """Share of the oracle's savings when every 1 h job is planned once at arrival and checked again
    at its planned start (up to ``max_checks`` times, as ``care_flows.orchestration.start_check``):
    at a start ``s`` before the latest start, the forecast issued at ``s`` moves the job to its lowest
    slot in ``[s, latest]`` when that is at least ``min_savings_pct`` (the policy's default, 1 %)
    below starting at ``s`` (ties: now). ``fc_rows[k]`` is the forecast issued at slot ``issues[0] + k``."""
    first = int(issues[0])
    latest = issues + HORIZON_STEPS - 1
    start = issues + np.argmin(fc_rows[issues - first, :HORIZON_STEPS], axis=1)
    for _ in range(max_checks):
        checked = start > issues  # a job planned to start at arrival was planned with the same forecast
        rows = fc_rows[start - first]
        left = latest - start  # slots after the start still in the window
        masked = np.where(np.arange(rows.shape[1])[None, :] <= left[:, None], rows, np.inf)
        best = np.argmin(masked, axis=1)
        k = np.arange(len(start))
        worth = masked[k, best] <= rows[:, 0] * (1 - min_savings_pct / 100.0)
        start = np.where(checked & (left > 0) & worth, start + best, start)
    actual = y[issues[:, None] + np.arange(HORIZON_STEPS)]
    oracle = actual[:, 0] - actual.min(axis=1)
    return float((actual[:, 0] - y[start]).sum() / oracle.sum())


def tune_threshold(quick: bool = False, grid: tuple[float, ...] = THRESHOLD_GRID) -> tuple[float, dict[float, float]]:
    """The re-planning threshold with the best mean share over the five zones on 2021-2022 (no 2023 value read).

    Issues: every hour from 2021-01-08 whose 24 h window ends before 2023-01-01 (``quick``: 8 weeks of 2022).
    """
    scores = {g: [] for g in grid}
    for zone in EMBEDDED_ZONES:
        series = embedded_intensity(zone)[:"2022"]
        y = series.to_numpy(dtype=float)
        first = 7 * 24 + 1
        last = len(y) - HORIZON_STEPS
        if quick:
            first = last - 56 * 24
        issues = np.arange(first, last + 1)
        rows = forecast_matrix(y, np.arange(first, last + HORIZON_STEPS), HORIZON_STEPS, 24, "ridge")
        for g in grid:
            scores[g].append(replan_share(y, issues, rows, g))
    means = {g: float(np.mean(v)) for g, v in scores.items()}
    return max(means, key=lambda g: (means[g], -abs(g))), means


def run(quick: bool = False, threshold: float | None = None) -> list[dict]:
    """One row per zone plus the 4-zone (ES DE GB SE) and 5-zone averages.

    ``threshold`` of the re-planning rule: default the one :func:`tune_threshold` picks on 2021-2022.
    """
    if threshold is None:
        threshold, _ = tune_threshold(quick)
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
        scores, replan, seconds = {}, {}, 0.0
        for label, model in MODELS.items():
            t0 = time.perf_counter()
            fc = forecast_matrix(y, issues, HORIZON_STEPS, 24, model)
            if label == "model":
                seconds = time.perf_counter() - t0
            scores[label] = score(actual, fc)
            rows_all = forecast_matrix(y, np.arange(first, last + HORIZON_STEPS), HORIZON_STEPS, 24, model)
            replan[label] = replan_share(y, issues, rows_all, threshold)
            if label == "model":
                check = start_check_share(y, issues, rows_all)
        row: dict = {"zone": zone, "issues": len(issues), "threshold": threshold}
        row.update({f"wape_{label}": w for label, (w, _) in scores.items()})
        row.update({f"share_{label}": sh for label, (_, sh) in scores.items()})
        row.update({f"replan_{label}": sh for label, sh in replan.items()})
        row["check_model"] = check
        row["forecast_seconds"] = seconds
        rows.append(row)
    for name, zones in (("avg4 (ES DE GB SE)", AVERAGE_ZONES), ("avg5", EMBEDDED_ZONES)):
        sel = [r for r in rows if r["zone"] in zones]
        avg = {"zone": name, "issues": sum(r["issues"] for r in sel), "threshold": threshold}
        for key in sel[0]:
            if key.startswith(("wape_", "share_", "replan_", "check_")) or key == "forecast_seconds":
                avg[key] = float(np.mean([r[key] for r in sel]))
        rows.append(avg)
    return rows


def diagnostics(quick: bool = False) -> list[dict]:
    """What forecast quality 90% would need: avg4 shares (plan once, re-plan) with forecasts made *better by
    peeking* at the real 2023 values (labelled oracle diagnostics, not policies):

    - ``perfect first N h``: the first N leads of every forecast replaced by the real values;
    - ``errors x k``: every forecast moved towards the truth, ``actual + k x (forecast - actual)``.
    """
    variants = {"ridge (honest)": None, "oracle: perfect first 1 h": 1, "oracle: perfect first 3 h": 3,
                "oracle: perfect first 6 h": 6, "oracle: errors x 0.75": 0.75, "oracle: errors x 0.5": 0.5}
    acc: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for zone in AVERAGE_ZONES:
        series = embedded_intensity(zone)
        y = series.to_numpy(dtype=float)
        first = int(np.searchsorted(series.index, pd.Timestamp("2023-01-01", tz="UTC")))
        last = len(y) - HORIZON_STEPS
        if quick:
            last = min(last, first + 28 * 24)
        issues = np.arange(first, last + 1)
        slots = np.arange(first, last + HORIZON_STEPS)
        fc = forecast_matrix(y, slots, HORIZON_STEPS, 24, "ridge")
        truth = y[np.minimum(slots[:, None] + np.arange(HORIZON_STEPS), len(y) - 1)]
        actual = y[issues[:, None] + np.arange(HORIZON_STEPS)]
        for name, v in variants.items():
            rows = fc.copy()
            if isinstance(v, int):
                rows[:, :v] = truth[:, :v]
            elif isinstance(v, float):
                rows = truth + v * (fc - truth)
            _, once = score(actual, rows[: len(issues)])
            acc[name].append((once, replan_share(y, issues, rows, 0.0)))
    return [{"variant": k, "avg4_once": float(np.mean([a for a, _ in v])), "avg4_replan": float(np.mean([b for _, b in v]))} for k, v in acc.items()]


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
        f" {'once model':>10}{'s-naive':>9}{'mean7d':>8} | {'check model':>11} | {'replan model':>12}{'s-naive':>9}{'mean7d':>8} | {'fc s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['zone']:<20}{r['issues']:>7} | {r['wape_model']:>10.3f}{r['wape_seasonal_naive']:>9.3f}"
            f"{r['wape_mean_7d']:>8.3f} | {r['share_model']:>10.3f}{r['share_seasonal_naive']:>9.3f}"
            f"{r['share_mean_7d']:>8.3f} | {r['check_model']:>11.3f} | {r['replan_model']:>12.3f}{r['replan_seasonal_naive']:>9.3f}"
            f"{r['replan_mean_7d']:>8.3f} | {r['forecast_seconds']:>6.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path

    args = parse(__doc__, flags=[(("--starts",), dict(type=int, default=None, metavar="N",
                                                      help="candidate starts per job: 24 (default: the 24 h forecast's slots) or 25 (latest start = arrival + 24 h)")),
                                 (("--diagnostics",), dict(action="store_true", help="also print the oracle rows of 'what 90%% would need'"))])
    quick = args.quick
    if args.starts is not None:
        HORIZON_STEPS = args.starts
        if HORIZON_STEPS < 2:
            raise SystemExit("--starts must be at least 2, e.g. 24 or 25")
    print(f"carbon forecast quality, test year 2023, {HORIZON_STEPS} candidate starts per job{' (quick: 4 weeks)' if quick else ''}")
    chosen, means = tune_threshold(quick)
    print("re-planning threshold tuned on 2021-2022 (mean share, 5 zones): " + ", ".join(f"{g:+.2f}: {m:.3f}" for g, m in means.items()) + f" -> {chosen:+.2f}")
    print("share of the oracle's savings: 'once' = planned at arrival; 'check' = planned at arrival and checked again at the planned "
          "start (a @care trigger's run); 'replan' = re-planned every hour (all honest)")
    print(_table(run(quick=quick, threshold=chosen)))
    if args.diagnostics:
        print("\nwhat 90% would need (avg4 share; 'oracle:' rows peek at the real values, they are not policies)")
        for r in diagnostics(quick):
            print(f"  {r['variant']:<28} plan once {r['avg4_once']:.3f}   re-plan {r['avg4_replan']:.3f}")
    for r in batch_speed(quick):
        print(f"forecast_matrix, {r['data']}: {r['issues']} issues x {r['horizon_steps']} steps in {r['seconds']:.2f} s")
