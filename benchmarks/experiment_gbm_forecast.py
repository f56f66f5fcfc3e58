"""Experiment: does a nonlinear direct multi-horizon model (LightGBM) capture materially more of the oracle's savings?

Same task and score as ``bench_carbon_forecast.py`` (its ``score`` and ``replan_share``, re-plan threshold 0 as
shipped): 2023, a 1 h job arriving every hour with 24 h slack, share of the oracle's savings, avg4 = ES DE GB SE.

Model: one LightGBM regressor per zone with the lead hour (0..23) as a feature (direct multi-horizon: one row per
(issue time, lead)); target = actual / mean of the 24 h before the issue time (scale-free, as the ridge).
Fitted on issue times 2021-01-08 .. 2022-12-30 whose 24 targets all lie in 2021-2022 (early stopping on the
last 60 days of those issue times), scored on every issue time of 2023. Variants:

- ``own``: the ridge's 19 features (relative) + own last 24 hourly values (relative) + calendar of the target
  slot (hour of day, day of week, month) + lead;
- ``+nbr``: ``own`` + the other four zones' recent intensity (``experiment_forecast_rules._neighbour_features``);
- ``+nbr+re``: ``+nbr`` + own RE% and CFE% (last 1/2/4/7/13 h, 24 h mean, target slot one and seven days back).

No peeking: every feature of issue time t reads only rows < t (calendar of the target slot is known in advance);
:func:`check_no_peeking` rebuilds the features of sampled 2023 issue times after overwriting every row >= t of
every input series with garbage and asserts they are identical (run at start-up).

Needs lightgbm (not a CaRE dependency: this experiment is why it is not one). Run in a separate venv::

    python3.11 -m venv /tmp/gbmvenv
    /tmp/gbmvenv/bin/pip install -r requirements.lock --no-deps && /tmp/gbmvenv/bin/pip install lightgbm==4.7.0
    nice -n 19 /tmp/gbmvenv/bin/python benchmarks/experiment_gbm_forecast.py [--quick]

About 1.5-8 min on this 2-core machine, with its load. Not part of ``benchmarks/run.py``. Result (docs/FORECAST.md):
avg4 re-plan share 0.685 / 0.677 / 0.688 for the three variants vs 0.756 for the shipped ridge
measured in the same run; the trees overfit two years of training data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

try:  # not in requirements.lock: `pip install lightgbm` for this experiment; --help works without it
    import lightgbm as lgb  # noqa: E402
except ImportError:
    lgb = None

from bench_carbon_forecast import AVERAGE_ZONES, replan_share, score  # noqa: E402
from care_flows.data import EMBEDDED_ZONES, embedded_intensity  # noqa: E402
from care_flows.forecast.carbon import forecast_matrix, ridge_features  # noqa: E402
from experiment_forecast_rules import _mean_before, _neighbour_features, _ridge_rows  # noqa: E402

__all__ = ["run", "features", "check_no_peeking", "VARIANTS"]

H = 24
TEST_START = pd.Timestamp("2023-01-01", tz="UTC")
DATA = Path("/work/shared/data/carbon_intensity")
VARIANTS = ("own", "+nbr", "+nbr+re")
# Strongly regularised: with num_leaves=63, min_data_in_leaf=200, learning_rate=0.05 the validation loss rose after
# 15-55 rounds (train l2 0.008 vs validation 0.033 at 400 rounds on DE) and avg4 shares were 0.68 / 0.69.
PARAMS = dict(objective="l2", learning_rate=0.03, num_leaves=15, min_data_in_leaf=2000, feature_fraction=0.5,
              bagging_fraction=0.7, bagging_freq=1, lambda_l2=10.0, num_threads=2, verbose=-1, seed=0)


def _load() -> tuple[pd.DatetimeIndex, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    idx = embedded_intensity("DE").index
    ys, re, cfe = {}, {}, {}
    for z in EMBEDDED_ZONES:
        ys[z] = embedded_intensity(z).to_numpy(dtype=float)
        df = pd.concat([pd.read_csv(DATA / f"electricitymaps_{z}_{yr}_hourly.csv") for yr in (2021, 2022, 2023)])
        ts = pd.to_datetime(df["Datetime (UTC)"]).dt.tz_localize("UTC")
        assert (ts.to_numpy() == idx.to_numpy()).all(), z
        assert np.allclose(df["Carbon intensity gCO₂eq/kWh (Life cycle)"].to_numpy(), ys[z]), z
        re[z] = df["Renewable energy percentage (RE%)"].to_numpy(dtype=float)
        cfe[z] = df["Carbon-free energy percentage (CFE%)"].to_numpy(dtype=float)
    return idx, ys, re, cfe


def features(variant: str, zone: str, t: np.ndarray, idx, ys, re, cfe) -> tuple[np.ndarray, np.ndarray]:
    """``(X, scale)``: X is ``(len(t) * 24, n)`` rows ordered (issue, lead); scale = mean of the 24 h before t."""
    y = ys[zone]
    n = len(t)
    scale = _mean_before(y, t, 24)
    blocks = [ridge_features(y, t, H, 24) / scale[:, None, None]]  # (n, 24, 19)
    per_row = [np.column_stack([y[t - k] for k in range(1, 25)]) / scale[:, None]]
    if variant != "own":
        others = [w for w in EMBEDDED_ZONES if w != zone]
        per_row.append(_neighbour_features(ys, t, others))
    if variant == "+nbr+re":
        for s in (re[zone], cfe[zone]):
            per_row.append(np.column_stack([s[t - k] for k in (1, 2, 4, 7, 13)] + [_mean_before(s, t, 24)]))
            lead = np.arange(H)
            # target slot d days back: t + h - d*24 (< t for d >= 1 and h < 24)
            blocks.append(np.stack([s[t[:, None] + lead - 24], s[t[:, None] + lead - 168]], axis=2))
    rows = np.concatenate(per_row, axis=1)
    slot = t[:, None] + np.arange(H)
    cal = np.stack([np.broadcast_to(np.arange(H), (n, H)).astype(float),  # lead
                    _cal(idx, slot, "hour"),
                    _cal(idx, slot, "day_of_week"), _cal(idx, slot, "month")], axis=2)
    x = np.concatenate(blocks + [np.broadcast_to(rows[:, None, :], (n, H, rows.shape[1])), cal], axis=2)
    return x.reshape(n * H, -1).astype(np.float32), scale


def _cal(idx: pd.DatetimeIndex, slot: np.ndarray, attr: str) -> np.ndarray:
    """Calendar of target slots (known in advance; extends past the data end by hourly steps)."""
    start = idx[0]
    times = start + pd.to_timedelta(slot.reshape(-1), unit="h")
    return np.asarray(getattr(times, attr), dtype=float).reshape(slot.shape)


def check_no_peeking(idx, ys, re, cfe, n_checks: int = 12) -> int:
    """Rebuild features of sampled 2023 issue times with every row >= t of every series overwritten; assert equal."""
    split = int(np.searchsorted(idx, TEST_START))
    rng = np.random.default_rng(1)
    checked = 0
    for t0 in rng.integers(split, len(idx), n_checks):
        t = np.array([t0])
        garbage = lambda d: {k: np.r_[v[:t0], rng.uniform(-1e6, 1e6, len(v) - t0)] for k, v in d.items()}  # noqa: E731
        ys2, re2, cfe2 = garbage(ys), garbage(re), garbage(cfe)
        for variant in VARIANTS:
            for z in EMBEDDED_ZONES:
                a, _ = features(variant, z, t, idx, ys, re, cfe)
                b, _ = features(variant, z, t, idx, ys2, re2, cfe2)
                assert np.array_equal(a, b), (variant, z, t0)
                checked += 1
    return checked


def _fit_predict(variant: str, zone: str, idx, ys, re, cfe, split: int, quick: bool) -> tuple[np.ndarray, float, int]:
    y = ys[zone]
    t_train = np.arange(7 * 24 + 1, split - H + 1)  # issues 2021-01-08 01:00 .. 2022-12-31 00:00: targets < split
    if quick:
        t_train = t_train[-120 * 24:]
    x, scale = features(variant, zone, t_train, idx, ys, re, cfe)
    target = (y[t_train[:, None] + np.arange(H)] / scale[:, None]).reshape(-1)
    n_val = 60 * 24 * H
    rng = np.random.default_rng(0)
    keep = rng.random(len(x) - n_val) < 0.5  # subsample training rows (CPU budget)
    t0 = time.process_time()
    dtrain = lgb.Dataset(x[:-n_val][keep], target[:-n_val][keep], free_raw_data=True)
    dval = lgb.Dataset(x[-n_val:], target[-n_val:], reference=dtrain)
    booster = lgb.train(PARAMS, dtrain, num_boost_round=200 if quick else 1500, valid_sets=[dval],
                        callbacks=[lgb.early_stopping(100, verbose=False)])
    t_test = np.arange(split, len(y))  # every hour of 2023 (rows for re-planning)
    xt, scale_t = features(variant, zone, t_test, idx, ys, re, cfe)
    pred = booster.predict(xt, num_iteration=booster.best_iteration).reshape(len(t_test), H) * scale_t[:, None]
    return pred, time.process_time() - t0, booster.best_iteration


def _evaluate(y: np.ndarray, split: int, rows: np.ndarray, quick: bool) -> tuple[float, float, float]:
    last = len(y) - H
    if quick:
        last = min(last, split + 28 * 24)
    issues = np.arange(split, last + 1)
    wape, once = score(y[issues[:, None] + np.arange(H)], rows[: len(issues)])
    return wape, once, replan_share(y, issues, rows[: len(issues) + H - 1], 0.0)


def run(quick: bool = False) -> list[dict]:
    idx, ys, re, cfe = _load()
    split = int(np.searchsorted(idx, TEST_START))
    n = check_no_peeking(idx, ys, re, cfe, 3 if quick else 12)
    print(f"no-peeking check: {n} feature rebuilds with rows >= t replaced by garbage, all identical", flush=True)
    out = []
    res: dict[str, dict] = {"shipped ridge": {}, "nbr ridge (experiment_forecast_rules)": {}}
    for z in EMBEDDED_ZONES:
        y = ys[z]
        res["shipped ridge"][z] = _evaluate(y, split, forecast_matrix(y, np.arange(split, len(y)), H, 24, "ridge"), quick)
        _, rows = _ridge_rows(ys, z, [w for w in EMBEDDED_ZONES if w != z], split)
        res["nbr ridge (experiment_forecast_rules)"][z] = _evaluate(y, split, rows, quick)
    for variant in VARIANTS:
        label = f"lgbm {variant}"
        res[label], cpu, iters = {}, 0.0, []
        for z in EMBEDDED_ZONES:
            rows, c, it = _fit_predict(variant, z, idx, ys, re, cfe, split, quick)
            cpu += c
            iters.append(it)
            res[label][z] = _evaluate(ys[z], split, rows, quick)
        print(f"{label}: fit+predict CPU {cpu:.0f} s, best iterations {iters}", flush=True)
    for label, per_zone in res.items():
        row = {"variant": label}
        for z in EMBEDDED_ZONES:
            row[z] = per_zone[z]
        row["avg4"] = tuple(float(np.mean([per_zone[z][i] for z in AVERAGE_ZONES])) for i in range(3))
        out.append(row)
    return out


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path

    quick = parse(__doc__).quick
    if lgb is None:
        raise SystemExit("this experiment needs lightgbm, which requirements.lock does not pin: .venv/bin/pip install lightgbm")
    t0 = time.time()
    rows = run(quick)
    cols = list(EMBEDDED_ZONES) + ["avg4"]
    print("\nWAPE / plan-once share / re-plan share (threshold 0), 2023" + (" (quick: 4 weeks)" if quick else ""))
    print(f"{'variant':<40}" + "".join(f"{c:>20}" for c in cols))
    for r in rows:
        print(f"{r['variant']:<40}" + "".join(f"{r[c][0]:>6.3f}/{r[c][1]:.3f}/{r[c][2]:.3f}" for c in cols))
    print(f"wall {time.time() - t0:.0f} s")
