"""Spatial shifting: score (region, start, instance type) options and pick one under priorities.

Input is an options table (one row per option) with at least::

    region, start, instance_type, usd_per_hour, expected_g, expected_usd, latency_ms,
    waste_vcpu, waste_memory_gib

and optionally ``reason`` (a non-empty string marks an option infeasible before scoring: type not
offered, no carbon data...). Everything is vectorised over the rows.

Objectives (lower is better): ``carbon`` -> ``expected_g`` (gCO2eq per run), ``cost`` ->
``expected_usd`` (USD per run), ``latency`` -> ``latency_ms`` (round trip from the origin
region), ``resource`` -> ``waste`` = ``waste_vcpu + waste_memory_gib / 4`` (idle capacity in
vCPU-equivalents, 4 GiB per vCPU as in general-purpose types).

Hard constraints (:func:`apply_constraints`) exclude options but keep them in the table with
``feasible=False`` and the ``reason``. Choice (:func:`rank_options`):

- lexicographic (default): keep the options whose first objective is within ``tolerance_pct`` of
  the best (``value <= best + |best| x tol``), then apply the next objective to the survivors, and
  so on; the survivors are ordered by ``tie_break``;
- weighted (``weights`` given): each weighted objective is divided by its largest value over the
  feasible options (a column of zeros counts 0), so a 2 % price gap stays 2 % next to a 10x carbon
  gap, and the weighted sum is minimised; equal scores are ordered by ``tie_break``. (Min-max
  scaling, used before, stretched any spread to the full range: a 0.5/0.5 weighting took 3.7x the
  carbon for 1.7 % less cost.)

``tie_break`` (``CarePolicy.tie_break``, default ``["home", "carbon", "earliest"]``) lists the keys that order
tied options, first key first: ``home`` (home region first), ``earliest`` (earliest start) or an
objective (its exact value, lower first); the objectives it does not name follow by exact value in
priority order, then the option (row) order, so the result is deterministic. ``[]`` goes straight
to the exact values.

>>> import pandas as pd
>>> t0 = pd.Timestamp("2023-06-01T00:00Z")
>>> opts = pd.DataFrame({
...     "region": ["eu-south-2", "eu-north-1"], "start": [t0, t0], "instance_type": ["t3.large"] * 2,
...     "usd_per_hour": [0.0912, 0.0864], "expected_g": [3.3, 0.32], "expected_usd": [0.0912, 0.0864],
...     "latency_ms": [1.0, 37.4], "waste_vcpu": [0.0, 0.0], "waste_memory_gib": [0.0, 0.0]})
>>> table, best = choose(opts, priorities=["carbon", "cost"], home_region="eu-south-2")
>>> table.loc[best, "region"]
'eu-north-1'
>>> table, best = choose(opts, priorities=["carbon"], home_region="eu-south-2", max_latency_ms=20)
>>> table.loc[best, "region"], table.loc[1, "reason"]
('eu-south-2', 'latency 37.4 ms > max 20 ms')

Within a 5% carbon tolerance the home region wins by default; ``tie_break=["earliest", "home"]``
prefers the earlier start elsewhere:

>>> tied = opts.assign(start=[t0 + pd.Timedelta("1h"), t0], expected_g=[1.00, 0.98], expected_usd=[0.09, 0.09], latency_ms=1.0)
>>> tied.loc[choose(tied, priorities=["carbon"], home_region="eu-south-2")[1], "region"]
'eu-south-2'
>>> tied.loc[choose(tied, priorities=["carbon"], home_region="eu-south-2", tie_break=["earliest", "home"])[1], "region"]
'eu-north-1'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError
from care_flows.policy import DEFAULT_TIE_BREAK

__all__ = ["OBJECTIVE_COLUMNS", "apply_constraints", "rank_options", "choose"]

OBJECTIVE_COLUMNS = {"carbon": "expected_g", "cost": "expected_usd", "latency": "latency_ms", "resource": "waste"}
_DEFAULT_ORDER = ["carbon", "cost", "latency", "resource"]
_TIE_KEYS = ("home", "earliest", *OBJECTIVE_COLUMNS)


def _names(objs: Sequence[Any] | None) -> list[str]:
    out = []
    for o in objs or []:
        name = getattr(o, "value", o)
        if name not in OBJECTIVE_COLUMNS:
            raise ConfigError(f"unknown objective {name!r}; use {', '.join(OBJECTIVE_COLUMNS)}")
        out.append(str(name))
    return out


def _with_waste(options: pd.DataFrame) -> pd.DataFrame:
    df = options.copy()
    if "waste" not in df:
        wv = df["waste_vcpu"] if "waste_vcpu" in df else 0.0
        wm = df["waste_memory_gib"] if "waste_memory_gib" in df else 0.0
        df["waste"] = np.asarray(wv, dtype=float) + np.asarray(wm, dtype=float) / 4.0
    if "reason" not in df:
        df["reason"] = ""
    df["reason"] = df["reason"].fillna("").astype(str)
    return df


def apply_constraints(
    options: pd.DataFrame,
    *,
    max_latency_ms: float | None = None,
    budget_usd_per_run: float | None = None,
    budget_usd_per_hour: float | None = None,
    max_g_per_run: float | None = None,
) -> pd.DataFrame:
    """A copy with ``feasible`` (bool) and ``reason`` (all violated constraints, ``"; "``-joined)."""
    df = _with_waste(options)
    reasons = [df["reason"].to_numpy(dtype=object)]
    nan_carbon = ~np.isfinite(df["expected_g"].to_numpy(dtype=float))

    def rule(mask: np.ndarray, texts: pd.Series) -> None:
        reasons.append(np.where(mask, texts.to_numpy(dtype=object), ""))

    rule(nan_carbon & (df["reason"] == "").to_numpy(), pd.Series(["no carbon data"] * len(df), index=df.index))
    if max_latency_ms is not None:
        lat = df["latency_ms"].to_numpy(dtype=float)
        rule(lat > max_latency_ms, df["latency_ms"].map(lambda v: f"latency {v:.1f} ms > max {max_latency_ms:g} ms"))
    if budget_usd_per_run is not None:
        usd = df["expected_usd"].to_numpy(dtype=float)
        rule(usd > budget_usd_per_run, df["expected_usd"].map(lambda v: f"cost {v:.4f} USD/run > budget {budget_usd_per_run:g}"))
    if budget_usd_per_hour is not None:
        # what an hour really costs: the list price plus a burstable type's CPU-credit surcharge
        credit = df["credit_usd_per_hour"] if "credit_usd_per_hour" in df else pd.Series(0.0, index=df.index)
        hourly = df["usd_per_hour"].astype(float) + credit.astype(float).fillna(0.0)
        rule(hourly.to_numpy(dtype=float) > budget_usd_per_hour, hourly.map(lambda v: f"price {v:.4f} USD/h > budget {budget_usd_per_hour:g}"))
    if max_g_per_run is not None:
        g = df["expected_g"].to_numpy(dtype=float)
        rule(np.nan_to_num(g, nan=0.0) > max_g_per_run, df["expected_g"].map(lambda v: f"carbon {v:.2f} g/run > max {max_g_per_run:g}"))
    stacked = np.vstack(reasons)
    df["reason"] = ["; ".join(r for r in col if r) for col in stacked.T]
    df["feasible"] = df["reason"] == ""
    return df


def _tie_names(tie_break: Sequence[Any] | None) -> list[str]:
    """The validated tie-break keys (``None`` -> the default ``home, carbon, earliest``)."""
    if tie_break is None:
        return list(DEFAULT_TIE_BREAK)
    names = [str(getattr(t, "value", t)) for t in tie_break]
    for name in names:
        if name not in _TIE_KEYS:
            raise ConfigError(f"unknown tie-break key {name!r}; use {', '.join(_TIE_KEYS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"tie-break keys {names} repeat a key; give each at most once, e.g. home,earliest")
    return names


def _tiebreak_keys(df: pd.DataFrame, home_region: str | None, order: list[str], tie_break: list[str]) -> list[np.ndarray]:
    """Sort keys, most significant first: ``tie_break`` in its order, then the other objectives' exact values."""
    keys = []
    for name in tie_break:
        if name == "home":
            keys.append((df["region"] != home_region).to_numpy(dtype=int) if home_region else np.zeros(len(df), dtype=int))
        elif name == "earliest":
            if "start" in df:
                start = pd.to_datetime(df["start"], utc=True)
                keys.append((start - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float))
        else:
            keys.append(df[OBJECTIVE_COLUMNS[name]].to_numpy(dtype=float))
    keys += [df[OBJECTIVE_COLUMNS[o]].to_numpy(dtype=float) for o in order if o not in tie_break]
    return keys or [np.zeros(len(df))]


def _lexi_pick(values: np.ndarray, tol: float, tie: list[np.ndarray]) -> int:
    """Index (into the given rows) of the lexicographic winner with tolerance; ``values`` is (n, k)."""
    alive = np.ones(values.shape[0], dtype=bool)
    for j in range(values.shape[1]):
        col = values[:, j]
        best = col[alive].min()
        alive &= col <= best + abs(best) * tol + 1e-12
    idx = np.flatnonzero(alive)
    keys = [k[idx] for k in reversed(tie)]
    return int(idx[np.lexsort(keys)[0]])


def rank_options(
    options: pd.DataFrame,
    *,
    priorities: Sequence[Any] | None = None,
    weights: Mapping[Any, float] | None = None,
    tolerance_pct: float = 5.0,
    home_region: str | None = None,
    tie_break: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """A copy with ``rank`` (1 = chosen; ``NaN`` when infeasible) and ``score`` (weighted mode), sorted by rank.

    ``tie_break`` orders tied options (module docstring); ``None`` is ``["home", "carbon", "earliest"]``.
    """
    df = options if "feasible" in options else apply_constraints(options)
    df = _with_waste(df)
    order = _names(priorities) or list(_DEFAULT_ORDER)
    order += [o for o in _DEFAULT_ORDER if o not in order]  # later objectives break remaining ties
    ties = _tie_names(tie_break)
    feas = np.flatnonzero(df["feasible"].to_numpy(dtype=bool))
    rank = np.full(len(df), np.nan)
    df["score"] = np.nan
    if len(feas):
        sub = df.iloc[feas]
        tie = _tiebreak_keys(sub, home_region, order, ties)
        if weights:
            w = {str(getattr(k, "value", k)): float(v) for k, v in weights.items()}
            _names(list(w))
            if any(not math.isfinite(v) or v < 0 for v in w.values()) or sum(w.values()) <= 0:
                raise ConfigError(f"weights {w} must be >= 0 and finite with a positive sum, e.g. carbon=0.7,cost=0.3")
            # scores in [0, 1] whatever the weights' scale, so the rounding below is relative; by the largest weight
            # first, so that weights near the float maximum do not sum to infinity
            top_w = max(w.values())
            total = sum(v / top_w for v in w.values())
            score = np.zeros(len(sub))
            for name, weight in ((n, v / top_w / total) for n, v in w.items()):
                col = sub[OBJECTIVE_COLUMNS[name]].to_numpy(dtype=float)
                top = col.max()
                score += weight * (col / top if top > 0 else 0.0)
            df.iloc[feas, df.columns.get_loc("score")] = score
            # np.lexsort sorts by the LAST key first: score, then the tie-break keys; it is stable (row order last)
            order_idx = np.lexsort([*reversed([np.round(score, 12), *tie])])
            rank[feas[order_idx]] = np.arange(1, len(feas) + 1)
        else:
            tol = tolerance_pct / 100.0
            values = np.column_stack([sub[OBJECTIVE_COLUMNS[o]].to_numpy(dtype=float) for o in order])
            remaining = np.arange(len(sub))
            r = 1
            while len(remaining):
                pick = _lexi_pick(values[remaining], tol, [k[remaining] for k in tie])
                rank[feas[remaining[pick]]] = r
                remaining = np.delete(remaining, pick)
                r += 1
    df["rank"] = rank
    return df.sort_values("rank", kind="stable", na_position="last")


def choose(
    options: pd.DataFrame,
    *,
    priorities: Sequence[Any] | None = None,
    weights: Mapping[Any, float] | None = None,
    tolerance_pct: float = 5.0,
    home_region: str | None = None,
    max_latency_ms: float | None = None,
    budget_usd_per_run: float | None = None,
    budget_usd_per_hour: float | None = None,
    max_g_per_run: float | None = None,
    tie_break: Sequence[Any] | None = None,
) -> tuple[pd.DataFrame, Any | None]:
    """Constraints then ranking; returns the ranked table and the index label of the winner (``None`` if none is feasible)."""
    df = apply_constraints(
        options, max_latency_ms=max_latency_ms, budget_usd_per_run=budget_usd_per_run,
        budget_usd_per_hour=budget_usd_per_hour, max_g_per_run=max_g_per_run,
    )
    ranked = rank_options(
        df, priorities=priorities, weights=weights, tolerance_pct=tolerance_pct, home_region=home_region, tie_break=tie_break
    )
    winners = ranked.index[ranked["rank"] == 1]
    return ranked, (winners[0] if len(winners) else None)
