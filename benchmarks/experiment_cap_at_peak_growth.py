"""Capping capacity at the historical peak on a growing series: why ``cap_at_peak`` stays off.

The synthetic series of ``tests/forecast/test_usage_forecast.py::test_cap_at_peak_under_provisions_a_growing_series``
(10 days of 5-minute data, a daily cycle of +-30 % growing 8 %/day, noise sd 0.3, seed 7): the share
of 5-minute intervals under-provisioned by ``capacity_plan`` with and without ``cap_at_peak``, and by
sizing for the historical peak. The historical peak lags the growth, so a capped plan under-provisions
about as often as peak sizing does.

Run: .venv/bin/python benchmarks/experiment_cap_at_peak_growth.py
"""

from __future__ import annotations

import numpy as np

from care_flows.forecast.usage import capacity_plan, evaluate_usage

DAY = 288


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path

    parse(__doc__, quick=False)  # --help, and no flag taken for "run in full"
    rng = np.random.default_rng(7)
    t = np.arange(10 * DAY)
    y = (10 + 3 * np.sin(2 * np.pi * t / DAY)) * (1 + 0.08 * t / DAY) + rng.normal(0, 0.3, t.size)  # +8 %/day
    ev = evaluate_usage(y, horizon=12, period=DAY)
    free = capacity_plan(ev, history=y)
    capped = capacity_plan(ev, history=y, cap_at_peak=True)

    def under_pct(plan: dict, key: str = "forecast") -> float:
        return 100.0 * float((plan["demand"] > plan[key]).mean())

    print(f"under-provisioned intervals: capped at the peak {under_pct(capped):.2f} %, uncapped {under_pct(free):.2f} %, "
          f"peak sizing {under_pct(free, 'peak'):.2f} %")


if __name__ == "__main__":
    main()
