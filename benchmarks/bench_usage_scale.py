"""How `care forecast-usage` scales with the length of the series (review 39b M1).

Run: ``.venv/bin/python benchmarks/bench_usage_scale.py [--quick]`` (prints a table; ``run()``
returns rows; also ``benchmarks/run.py usage_scale``).

Each size is forecast on two synthetic 5-minute CPU series: ``periodic`` (a daily cycle, noise,
and a level-shift anomaly of 20-200 steps about every two days) and ``noise`` (uniform random
values, no period: the detector enters and leaves the anomalous state thousands of times, the
case that was slow). Each is written as a CSV with ISO timestamps and forecast by the real command,
in this process:
``care forecast-usage --csv F --column value --timestamp-column timestamp --horizon 12 --out
PRED.csv --json`` (every origin of the second half, 12 steps each). Reported: rows, wall seconds of
the command, rows per second, PRED.csv rows, and the peak resident memory of this process so far.
The command was quadratic in the number of anomalous steps before 5dfe63f (300,000 rows: 238 s;
2,000,000 rows did not finish in 20 min): rows/s should stay roughly flat as the size grows.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from care_flows.cli import main  # noqa: E402

__all__ = ["run", "synthetic_usage", "SIZES", "QUICK_SIZES"]

SIZES = (100_000, 300_000, 1_000_000, 2_000_000)
QUICK_SIZES = (20_000, 60_000)


def synthetic_usage(rows: int, kind: str = "periodic", seed: int = 0) -> pd.DataFrame:
    """A 5-minute usage series: ``periodic`` (daily cycle + noise + level-shift anomalies of 20-200
    steps, about every 576) or ``noise`` (uniform on [0.1, 1), no period).

    >>> df = synthetic_usage(1000)
    >>> list(df.columns), len(df), bool((df["value"] > 0).all())
    (['timestamp', 'value'], 1000, True)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    if kind == "noise":
        value = rng.uniform(0.1, 1.0, rows)
    else:
        value = 50 + 20 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, rows)
        start = 0
        while True:
            start += int(rng.integers(300, 850))
            if start >= rows:
                break
            value[start : start + int(rng.integers(20, 200))] *= rng.choice([0.3, 2.0])
    stamps = pd.date_range("2023-01-01", periods=rows, freq="5min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return pd.DataFrame({"timestamp": stamps, "value": np.round(np.maximum(value, 0.1), 3)})


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _row(rows: int, kind: str, folder: Path) -> dict:
    csv, pred = folder / f"usage_{kind}_{rows}.csv", folder / f"pred_{kind}_{rows}.csv"
    synthetic_usage(rows, kind).to_csv(csv, index=False)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["forecast-usage", "--csv", str(csv), "--column", "value", "--timestamp-column", "timestamp",
                     "--horizon", "12", "--out", str(pred), "--json"])
    wall_s = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"care forecast-usage exited {code} on {rows} rows")
    doc = json.loads(out.getvalue())
    with pred.open() as fh:
        pred_rows = sum(1 for _ in fh) - 1
    return {"series": kind, "rows": rows, "seconds": round(wall_s, 2), "rows_per_s": round(rows / wall_s), "pred_rows": pred_rows,
            "anomalous_fraction": round(float(doc["anomalous_fraction"]), 3), "peak_rss_mib": round(_peak_rss_mib())}


def run(quick: bool = False, sizes: tuple[int, ...] | None = None, kinds: tuple[str, ...] = ("periodic", "noise")) -> list[dict]:
    """One row per series and length (``quick``: two small lengths)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="care-bench-usage-scale-") as tmp:
        for kind in kinds:
            for n in sizes or (QUICK_SIZES if quick else SIZES):
                print(f"forecasting {n:,} rows of the {kind} series ...", file=sys.stderr, flush=True)
                rows.append(_row(n, kind, Path(tmp)))
    return rows


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path

    result = run(quick=parse(__doc__).quick)
    cols = list(result[0])
    print(" | ".join(cols))
    for r in result:
        print(" | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols))
