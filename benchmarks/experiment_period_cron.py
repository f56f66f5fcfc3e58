"""Period detection on cron-like load: a 30-minute job every 1, 2, 3, 6 or 12 h, 14 days of 5-minute data.

Such a series repeats daily *and* within 12 h, so its autocorrelation ties at P/2, 3P/4, P and 5P/4;
the local-peak test that detect_period used before review 35c rejected the daily period (WAPE
45.6-65.1 % at h=12 for jobs every 1-6 h); the drift test keeps it, also when the load differs
from day to day (review 35g), at the cost of a few random walks taken for periodic.

Run: .venv/bin/python benchmarks/experiment_period_cron.py
"""

from __future__ import annotations

import logging

import numpy as np

from care_flows.forecast.usage import detect_period, evaluate_usage


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path

    parse(__doc__, quick=False)  # --help, and no flag taken for "run in full"
    logging.disable(logging.WARNING)
    t = np.arange(288 * 14)
    print("| job every | detected period | WAPE auto % (h=12) | WAPE --period 288 % | persistence % |")
    print("|---|---|---|---|---|")
    for every_h in (1, 2, 3, 6, 12):
        y = np.maximum(5 + 40 * ((t % (every_h * 12)) < 6) + np.random.default_rng(1).normal(0, 1.0, t.size), 0)
        auto, given = evaluate_usage(y, horizon=12, period="auto"), evaluate_usage(y, horizon=12, period=288)
        print(f"| {every_h} h | {detect_period(y, step_s=300)} | {auto.wape_pct:.1f} | {given.wape_pct:.1f} | {given.persistence_wape_pct:.1f} |")
    # review 35g: the same jobs with a load that differs by day (+-10 %), 40 seeds each, and the false
    # periods the drift test lets through on 200 eight-day random walks
    print()
    print("| job every | series without a period, day-to-day load +-10 % (of 40) |")
    print("|---|---|")
    for every_h in (1, 2, 3, 6, 12):
        none = 0
        for seed in range(40):
            rng = np.random.default_rng(seed)
            level = 1 + rng.normal(0, 0.10, 14)[t // 288]
            y = np.maximum(5 + 40 * level * ((t % (every_h * 12)) < 6) + rng.normal(0, 1.0, t.size), 0)
            none += detect_period(y, step_s=300) is None
        print(f"| {every_h} h | {none} |")
    walks = sum(detect_period(50 + np.cumsum(np.random.default_rng(s).normal(0, 0.3, 288 * 8)), step_s=300) is not None for s in range(200))
    print(f"\neight-day random walks given a daily period: {walks} of 200")


if __name__ == "__main__":
    main()
