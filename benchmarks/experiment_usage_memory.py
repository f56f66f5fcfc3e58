"""Experiment: time and peak memory of ``evaluate_usage`` on long series (review 35c M6).

Run: ``.venv/bin/python benchmarks/experiment_usage_memory.py`` (about 1-2 min; prints a table).
``--cases N:H,N:H`` picks other cases; ``--module PATH`` times another copy of ``usage.py`` (e.g.
the code before a change, to compare).

Each case runs in a fresh subprocess, so the peak resident set (``resource.getrusage(
RUSAGE_SELF).ru_maxrss``) is that case's own: the synthetic series is a daily sine (period 288 of
5-minute steps) plus noise, ``evaluate_usage(y, horizon=H)`` with the auto period (rolling origins
over the second half). ``output MiB`` is one origins x horizon float64 matrix (the prediction);
an evaluation keeps four of them (prediction, two-model prediction, persistence, actual), so the
least a run can need is about 4x that plus the interpreter (~150 MiB with numpy and pandas).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = "105120:12,105120:288,30000:2016"

CHILD = r"""
import importlib.util, json, logging, resource, sys, time
import numpy as np
logging.disable(logging.WARNING)
n, h, module = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, sys.argv[4])
if module:
    spec = importlib.util.spec_from_file_location("usage_under_test", module)
    U = importlib.util.module_from_spec(spec)
    sys.modules["usage_under_test"] = U
    spec.loader.exec_module(U)
else:
    from care_flows.forecast import usage as U
t = np.arange(n)
y = 10 + 5 * np.sin(2 * np.pi * t / 288) + np.random.default_rng(0).normal(0, 1, n)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
ev = U.evaluate_usage(y, horizon=h, period="auto")
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "h": h, "period": ev.period_steps, "origins": int(len(ev.origins)), "seconds": dt,
                  "peak_mib": peak / 1024, "before_mib": base / 1024, "output_mib": ev.prediction.nbytes / 2**20,
                  "wape": ev.wape_pct}))
"""


def run_case(n: int, h: int, module: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(h), module, str(ROOT)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated N:H pairs (default %(default)s)")
    ap.add_argument("--module", default="", help="path of another usage.py to time instead of care_flows.forecast.usage")
    args = ap.parse_args(argv)
    print(f"{'n':>7} {'h':>5} {'P':>4} {'origins':>7} {'seconds':>8} {'peak MiB':>9} {'start MiB':>9} {'output MiB':>10} {'peak/output':>11}  wape %")
    for case in args.cases.split(","):
        n, h = (int(v) for v in case.split(":"))
        r = run_case(n, h, args.module)
        print(f"{r['n']:>7} {r['h']:>5} {str(r['period']):>4} {r['origins']:>7} {r['seconds']:>8.1f} {r['peak_mib']:>9.0f} "
              f"{r['before_mib']:>9.0f} {r['output_mib']:>10.0f} {r['peak_mib'] / r['output_mib']:>11.1f}  {r['wape']:.6f}", flush=True)


if __name__ == "__main__":
    main()
