"""Reporting: the JSON summary of a simulation and PLAN.csv (one row per execution segment).

JSON keys: ``policy``, ``jobs``, ``carbon_g``, ``baseline_carbon_g`` (every job run at its
arrival in its home region), ``savings_pct``, ``cost_usd``, ``baseline_cost_usd``,
``deadline_misses``, ``mean_delay_h`` and ``p95_delay_h`` (finish time minus the earliest
possible finish, arrival + duration), ``forecast_model``, ``regions``, and with several regions
``jobs_per_region``.

>>> import pandas as pd
>>> seg = pd.DataFrame({"job_id": ["a"], "region": ["eu-north-1"],
...                     "start": pd.to_datetime(["2023-06-01T10:00Z"]), "end": pd.to_datetime(["2023-06-01T11:00Z"])})
>>> print(plan_csv_text(seg), end="")
job_id,region,start,end
a,eu-north-1,2023-06-01T10:00:00+00:00,2023-06-01T11:00:00+00:00
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from care_flows.atomic import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from care_flows.simulate.engine import Outcome

__all__ = ["summary", "plan_csv_text", "write_plan_csv", "savings_share"]


def _r(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


def summary(outcome: "Outcome") -> dict[str, Any]:
    """The ``care simulate --json`` document for one policy's outcome."""
    ctx = outcome.ctx
    carbon = float(outcome.carbon_g.sum())
    base = float(outcome.baseline_carbon_g.sum())
    doc: dict[str, Any] = {
        "policy": outcome.policy,
        "jobs": int(ctx.n),
        "carbon_g": _r(carbon),
        "baseline_carbon_g": _r(base),
        "savings_pct": _r(100.0 * (base - carbon) / base if base > 0 else 0.0, 3),
        "cost_usd": _r(outcome.cost_usd.sum(), 6),
        "baseline_cost_usd": _r(outcome.baseline_cost_usd.sum(), 6),
        "deadline_misses": int(outcome.missed.sum()),
        "mean_delay_h": _r(outcome.delay_h.mean(), 4),
        "p95_delay_h": _r(np.percentile(outcome.delay_h, 95), 4),
        "forecast_model": "oracle (real trace)" if outcome.policy == "oracle" else ("none" if outcome.policy == "now" else ctx.forecast_model),
        "regions": list(ctx.trace.regions),
    }
    if len(ctx.trace.regions) > 1:
        counts = np.bincount(outcome.decision.region, minlength=len(ctx.trace.regions))
        doc["jobs_per_region"] = {r: int(c) for r, c in zip(ctx.trace.regions, counts)}
    return doc


def savings_share(policy_savings_pct: float, oracle_savings_pct: float) -> float | None:
    """Share (%) of the oracle's savings a policy captured; None when the oracle saves nothing.

    >>> savings_share(18.0, 24.0)
    75.0
    """
    if oracle_savings_pct <= 0:
        return None
    return 100.0 * policy_savings_pct / oracle_savings_pct


def plan_csv_text(segments: pd.DataFrame) -> str:
    """PLAN.csv content: ``job_id,region,start,end`` with ISO 8601 UTC times (``+00:00``)."""
    out = segments[["job_id", "region", "start", "end"]].copy()
    for col in ("start", "end"):
        idx = pd.DatetimeIndex(out[col])
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        out[col] = [t.isoformat() for t in idx]
    return out.to_csv(index=False, lineterminator="\n")


def write_plan_csv(segments: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write PLAN.csv atomically (:func:`care_flows.atomic.atomic_write_text`)."""
    atomic_write_text(path, plan_csv_text(segments))
