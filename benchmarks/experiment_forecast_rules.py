"""Two ideas for closing the gap to 90% of the oracle's savings, measured (negative results, kept reproducible).

Same task and score as ``bench_carbon_forecast.py``: 2023, a 1 h job arriving every hour with 24 h
slack, share of the oracle's savings averaged over ES, DE, GB, SE; everything fitted on 2021-2022 only
and every decision at hour t reads only data before t.

1. **Optimal stopping by least-squares Monte Carlo** (Longstaff-Schwartz): instead of "start now iff
   the forecast now is the lowest left", regress, per number of remaining start slots, the cost the
   policy will realise by waiting on features of the forecast issued now (now, min / mean / second
   lowest later, lead-1, last observed, squares), backwards from the deadline on 2021-2022, and start
   when the regressed cost of starting now is lower. It prices the uncertainty of far leads.
2. **Neighbouring zones as features**: a per-zone ridge per lead hour on the shipped model's 19
   features plus, for each of the other four embedded zones, its last 1/2/4/7/13 h relative to its
   24 h mean and its 24 h / 7 day level ratio (weather moves across Europe within hours).

Run: ``.venv/bin/python benchmarks/experiment_forecast_rules.py`` (5-30 s with the machine's load). Not part of
``benchmarks/run.py``: the shipped forecast and rule are in ``bench_carbon_forecast.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_carbon_forecast import AVERAGE_ZONES, replan_share, score  # noqa: E402
from care_flows.data import EMBEDDED_ZONES, embedded_intensity  # noqa: E402
from care_flows.forecast.carbon import forecast_matrix, ridge_features  # noqa: E402

__all__ = ["run", "lsm_shares", "neighbour_shares"]

H = 24  # start slots in a window (arrival .. arrival + 23 h)
TEST_START = pd.Timestamp("2023-01-01", tz="UTC")


def _series() -> dict[str, np.ndarray]:
    return {z: embedded_intensity(z).to_numpy(dtype=float) for z in EMBEDDED_ZONES}


def _split() -> int:
    return int(np.searchsorted(embedded_intensity("DE").index, TEST_START))


def _mean_before(y: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    c = np.r_[0.0, np.cumsum(y)]
    return (c[t] - c[t - n]) / n


# -- 1. optimal stopping --------------------------------------------------------------------------
def _stop_features(fc: np.ndarray, last: np.ndarray, scale: np.ndarray, r: int) -> np.ndarray:
    f = fc[:, : r + 1] / scale[:, None]
    now, later = f[:, 0], f[:, 1 : r + 1]
    lo, mean = later.min(1), later.mean(1)
    second = np.sort(later, 1)[:, min(1, r - 1)]
    return np.column_stack([np.ones(len(f)), now, lo, mean, f[:, 1], last / scale, now * now, lo * lo, now * lo, second])


def _windowed(y: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    slots = np.arange(lo, hi)
    return slots, forecast_matrix(y, slots, H, 24, "ridge"), _mean_before(y, slots, 24)


def _fit_stopping(train: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], lam: float = 1e-3) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    coefs = {}
    cost = [{0: y[s] / sc} for y, s, _, sc in train]  # realised cost (relative to the 24 h mean) with r slots left
    for r in range(1, H):
        xs, cs, ys = [], [], []
        for (y, s, fc, sc), c in zip(train, cost):
            n = len(s) - 1
            xs.append(_stop_features(fc[:n], y[s[:n] - 1], sc[:n], r))
            cs.append(c[r - 1][1:] * sc[1:] / sc[:n])
            ys.append(y[s[:n]] / sc[:n])
        x, cont, now = np.vstack(xs), np.concatenate(cs), np.concatenate(ys)
        ok = np.isfinite(cont) & np.isfinite(x).all(1)
        x, cont, now = x[ok], cont[ok], now[ok]
        a = x.T @ x + lam * len(x) * np.diag(np.r_[0.0, np.ones(x.shape[1] - 1)])
        b_cont, b_now = np.linalg.solve(a, x.T @ cont), np.linalg.solve(a, x.T @ now)
        coefs[r] = (b_cont, b_now)
        for (y, s, fc, sc), c in zip(train, cost):
            n = len(s) - 1
            x = _stop_features(fc[:n], y[s[:n] - 1], sc[:n], r)
            stop = x @ b_now <= x @ b_cont
            c[r] = np.r_[np.where(stop, y[s[:n]] / sc[:n], c[r - 1][1:] * sc[1:] / sc[:n]), np.nan]
    return coefs


def _stopping_share(coefs, y: np.ndarray, s: np.ndarray, fc: np.ndarray, sc: np.ndarray, issues: np.ndarray) -> float:
    start = np.full(len(issues), -1)
    for k in range(H):
        r, t = H - 1 - k, issues + k
        todo = start < 0
        if r == 0:
            start[todo] = t[todo]
            break
        i = t - s[0]
        b_cont, b_now = coefs[r]
        x = _stop_features(fc[i], y[t - 1], sc[i], r)
        go = (x @ b_now <= x @ b_cont) & todo
        start[go] = t[go]
    actual = y[issues[:, None] + np.arange(H)]
    return float((actual[:, 0] - y[start]).sum() / (actual[:, 0] - actual.min(1)).sum())


def lsm_shares() -> dict[str, float]:
    """Share of the oracle's savings per zone with the least-squares Monte Carlo stopping rule (pooled fit)."""
    ys, split = _series(), _split()
    train = [(y, *_windowed(y, 8 * 24, split)) for y in ys.values()]
    coefs = _fit_stopping(train)
    out = {}
    for z in AVERAGE_ZONES:
        y = ys[z]
        s, fc, sc = _windowed(y, split, len(y))
        out[z] = _stopping_share(coefs, y, s, fc, sc, np.arange(split, len(y) - H + 1))
    return out


# -- 2. neighbouring zones -------------------------------------------------------------------------
def _neighbour_features(ys: dict[str, np.ndarray], t: np.ndarray, others: list[str]) -> np.ndarray:
    cols = []
    for w in others:
        y = ys[w]
        m24 = _mean_before(y, t, 24)
        cols += [y[t - lag] / m24 for lag in (1, 2, 4, 7, 13)]
        cols.append(m24 / _mean_before(y, t, 168))
    return np.column_stack(cols) if cols else np.zeros((len(t), 0))


def _ridge_rows(ys: dict[str, np.ndarray], zone: str, others: list[str], split: int, lam: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    y = ys[zone]

    def design(t):
        scale = _mean_before(y, t, 24)
        return ridge_features(y, t, H, 24) / scale[:, None, None], _neighbour_features(ys, t, others), scale

    t_train = np.arange(7 * 24 + 1, split - H)
    f, x, scale = design(t_train)
    target = y[t_train[:, None] + np.arange(H)] / scale[:, None]
    t_test = np.arange(split, len(y))  # every hour of 2023 (rows for re-planning)
    ft, xt, scale_t = design(t_test)
    out = np.empty((len(t_test), H))
    for h in range(H):
        a = np.column_stack([f[:, h], x, np.ones(len(t_train))])
        at = np.column_stack([ft[:, h], xt, np.ones(len(t_test))])
        g = a.T @ a + lam * np.diag(np.r_[np.ones(a.shape[1] - 1), 0.0])
        out[:, h] = at @ np.linalg.solve(g, a.T @ target[:, h]) * scale_t
    return t_test, out


def neighbour_shares() -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{"own": {zone: (WAPE, plan-once share, re-plan share)}, "with neighbours": {...}}``."""
    ys, split = _series(), _split()
    out: dict[str, dict[str, tuple[float, float, float]]] = {"own zone only": {}, "with the other 4 zones": {}}
    for label in out:
        for z in AVERAGE_ZONES:
            others = [w for w in EMBEDDED_ZONES if w != z] if label.startswith("with") else []
            _, rows = _ridge_rows(ys, z, others, split)
            y = ys[z]
            issues = np.arange(split, len(y) - H + 1)
            wape, once = score(y[issues[:, None] + np.arange(H)], rows[: len(issues)])
            out[label][z] = (wape, once, replan_share(y, issues, rows[: len(issues) + H - 1], 0.0))
    return out


def run(quick: bool = False) -> list[dict]:
    """One row per variant: avg4 share (plan once / re-plan) and per-zone re-plan shares."""
    rows = []
    lsm = lsm_shares()
    rows.append({"variant": "shipped ridge + least-squares Monte Carlo stopping rule", "wape": float("nan"), "once": float("nan"),
                 "replan": float(np.mean(list(lsm.values()))), **{z: lsm[z] for z in AVERAGE_ZONES}})
    for label, per_zone in neighbour_shares().items():
        rows.append({"variant": f"per-zone ridge, {label}", "wape": float(np.mean([v[0] for v in per_zone.values()])),
                     "once": float(np.mean([v[1] for v in per_zone.values()])), "replan": float(np.mean([v[2] for v in per_zone.values()])),
                     **{z: per_zone[z][2] for z in AVERAGE_ZONES}})
    return rows


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path

    parse(__doc__, quick=False)  # --help, and no flag taken for "run in full"
    print("share of the oracle's savings, 2023, 1 h jobs hourly, 24 h slack; fitted on 2021-2022 (avg4 = ES DE GB SE)")
    print(f"{'variant':<58}{'WAPE':>7}{'once':>7}{'re-plan':>9} | " + "".join(f"{z:>7}" for z in AVERAGE_ZONES))
    for r in run():
        print(f"{r['variant']:<58}{r['wape']:>7.3f}{r['once']:>7.3f}{r['replan']:>9.3f} | " + "".join(f"{r[z]:>7.3f}" for z in AVERAGE_ZONES))
