"""The check at start: a run a ``@care`` trigger deferred looks at a fresh forecast when it starts.

A ``@care`` trigger plans once and dispatches the work to its window's start. ``care
controller``, when one runs, re-plans such a run every ``replan_every`` while it waits (it records
the policy for that: :func:`care_flows.orchestration.controller.trigger_replan_fields`). Without a
controller nothing looks at the plan again before the start, so the dispatched run, when a worker
starts it, checks the plan once more: with a forecast issued now (the plan's was issued at least
``replan_every`` earlier), is a start before its latest start forecast at least the policy's
``min_savings_pct`` greener than starting now? Then the run hands its work on to that start (a new
run of the same deployment, same region, instance type and parameters) and ends ``Deferred``;
otherwise the body runs. Each run checks once; a work item is checked at most
:data:`MAX_START_CHECKS` times, so it cannot keep slipping. A run started early on purpose (more
than :data:`EARLY_START_TOLERANCE` before its planned start) is not checked.

The rule is the re-planning rule of :mod:`care_flows.planning.replan` (start now unless a later
start is greener; ties start now), applied at the planned starts only, with the minimum saving (a
hand-on is a whole new flow run). Share of the oracle's savings on 2023 (ES, DE, GB, SE): 75.2 %
checking at start vs 74.5 % planning once and 75.6 % re-planning hourly for 1 h jobs on the hour
(``benchmarks/bench_carbon_forecast.py``); 72.3 % (``care-check``) vs 71.9 % (``care-once``) and
75.2 % (``care``) on docs/EVALUATION.md's jobs. It can only move a run later; re-planning can also
start it earlier.

:func:`check_at_start` is the pure decision; the decorator fetches the forecast and dispatches.

>>> import pandas as pd
>>> t = pd.Timestamp("2026-01-01T00:00Z")
>>> plan = Plan("eu-north-1", t + pd.Timedelta("2h"), t + pd.Timedelta("3h"), t, t + pd.Timedelta("8h"), "eu-south-2", False,
...             expected_g=3.0, expected_g_per_kwh=30.0, baseline_g=20.0, baseline_g_per_kwh=200.0)
>>> fc = pd.Series([40.0, 35.0, 20.0, 50.0, 50.0, 50.0], index=pd.date_range(t + pd.Timedelta("2h"), periods=6, freq="h"))
>>> later, now_g_per_kwh = check_at_start(plan, fc, t + pd.Timedelta("2h"))   # 40 now, 20 two hours later: wait
>>> later.start.isoformat(), later.expected_g_per_kwh, later.expected_g, now_g_per_kwh
('2026-01-01T04:00:00+00:00', 20.0, 2.0, 40.0)
>>> check_at_start(plan, fc.iloc[2:], t + pd.Timedelta("4h"))     # now is the lowest: start
(None, 20.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from care_flows.orchestration.plan import Plan, planning_deadline
from care_flows.planning.replan import REPLAN_THRESHOLD, policy_threshold
from care_flows.policy import CarePolicy

__all__ = ["MAX_START_CHECKS", "START_CHECKS", "EARLY_START_TOLERANCE", "check_at_start", "latest_later_start", "replanned_start", "same_provider", "start_check_due",
           "threshold_of"]

MAX_START_CHECKS = 3
"""How many times one work item is checked at a start (then it runs whatever the forecast says).
On 2023 the check converged within 3 in every zone (``benchmarks/bench_carbon_forecast.py``)."""

START_CHECKS = "start_checks"
"""The ``care`` marker field counting the checks at start so far (written by the trigger; a marker
without it, from the controller or an older CaRE, is not checked)."""

_MIN_GAIN = 1e-9  # g/kWh: a later start must be lower by more than float noise

EARLY_START_TOLERANCE = pd.Timedelta(seconds=60)
"""A run starting more than this before its planned start was started early on purpose (the UI's
"start now", a reschedule): it is not checked (the operator wins). Within it, a worker's clock
slightly behind the server's: the check counts from the planned start."""


def start_check_due(plan: Plan | None, marker: Mapping[str, Any], policy: CarePolicy, now: pd.Timestamp) -> bool:
    """Whether a dispatched run checks its plan at start: a trigger's marker with checks left, a
    contiguous plan in one piece (a continuation or a checkpointed plan follows its segments), a
    policy that re-plans (``replan_every`` not None), a plan decided at least ``replan_every``
    before ``now`` (a run moved to start at once, or moved by a check less than that ago, has
    nothing new to learn), a run not started early on purpose (more than
    :data:`EARLY_START_TOLERANCE` before its planned start), with time left before its latest start.

    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> p = Plan("eu-north-1", t + pd.Timedelta("3h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("8h"), "eu-south-2", False)
    >>> start_check_due(p, {"start_checks": 0, "segment": 0}, CarePolicy(), t + pd.Timedelta("3h"))
    True
    >>> start_check_due(p, {"start_checks": 0}, CarePolicy(replan_every=None), t + pd.Timedelta("3h"))
    False
    >>> start_check_due(p, {"start_checks": 0}, CarePolicy(), t + pd.Timedelta("30min"))   # planned half an hour ago
    False
    >>> start_check_due(p, {}, CarePolicy(), t + pd.Timedelta("3h"))   # planned by the controller (it re-plans)
    False
    >>> start_check_due(p, {"start_checks": 0}, CarePolicy(), t + pd.Timedelta("90min"))   # started early from the UI
    False
    """
    checks = marker.get(START_CHECKS)
    if plan is None or not isinstance(checks, int) or isinstance(checks, bool) or checks >= MAX_START_CHECKS:
        return False
    if int(marker.get("segment", 0) or 0) != 0 or len(plan.segments) > 1 or float(marker.get("work_done_s", 0) or 0) > 0:
        return False
    if policy.replan_every is None or now - plan.decided_at < pd.Timedelta(policy.replan_every):
        return False
    return plan.start - EARLY_START_TOLERANCE <= now < latest_later_start(plan, policy)


def latest_later_start(plan: Plan, policy: CarePolicy) -> pd.Timestamp:
    """The latest start a check can move ``plan`` to: its work and the policy's ``start_margin``
    (a moved run is picked up again) before the deadline (review 49b L1).

    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> p = Plan("eu-north-1", t + pd.Timedelta("3h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("8h"), "eu-south-2", False)
    >>> latest_later_start(p, CarePolicy(start_margin="5m")).isoformat()
    '2026-01-01T06:55:00+00:00'
    """
    return plan.deadline - plan.work - pd.Timedelta(policy.start_margin)


def same_provider(served: str | None, planned: str) -> bool:
    """Whether a forecast served by ``served`` comes from the provider a plan was made on
    (``planned``): a fresh cache entry is the provider's own data (``cache:electricitymaps`` is
    ``electricitymaps``); a stale cache or a fallback says so in a note, which callers refuse apart.

    >>> same_provider("electricitymaps", "cache:electricitymaps"), same_provider("embedded", "electricitymaps")
    (True, False)
    """
    from care_flows.signals.base import base_source

    return served is not None and base_source(served) == base_source(planned)


def _best_start(plan: Plan, forecast: pd.Series, now: pd.Timestamp, start_margin: Any = None) -> tuple[Any, pd.Series | None]:
    """The contiguous planner's greenest start for ``plan``'s work in ``[now, deadline]`` on
    ``forecast`` (issued around ``now``), and the forecast as issued; ``(None, None)`` when the
    forecast cannot be used (fewer than two values, or not covering ``now``). A later start must
    end ``start_margin`` before the deadline (:func:`~care_flows.orchestration.plan.planning_deadline`)."""
    from care_flows.planning.windows import plan_contiguous

    fc = issued = forecast.dropna()
    if len(fc) < 2:
        return None, None
    step = fc.index[1] - fc.index[0]
    if fc.index[0] - step <= now < fc.index[0]:  # a forecast from the next slot boundary: the rest of this slot at its first value
        fc = pd.concat([pd.Series([fc.iloc[0]], index=[fc.index[0] - step]), fc])
    if not fc.index[0] <= now < fc.index[-1]:
        return None, None  # not a forecast issued now
    end_by = planning_deadline(plan.deadline, now, plan.work, start_margin or pd.Timedelta(0))
    return plan_contiguous(fc, plan.work, now, end_by), issued


def _moved(plan: Plan, start: pd.Timestamp, g_per_kwh: float, issued: pd.Series, now: pd.Timestamp) -> Plan:
    """``plan`` at ``start`` (forecast ``g_per_kwh`` over its work), decided at ``now`` on ``issued``:
    region, instance type, work, deadline, cost and baseline kept (``baseline_at``: the first
    decision's time), expected gCO2eq scaled to the new expected intensity (the same energy)."""
    g = float(g_per_kwh)
    kwh = plan.energy_kwh
    expected_g = None if kwh is None else kwh * g
    return dataclasses.replace(plan, start=start, end=start + plan.work, segments=[(start, start + plan.work)],
                               expected_g_per_kwh=g, expected_g=expected_g, now_here=False, forecast=issued,
                               decided_at=now, baseline_at=plan.baseline_start)


def threshold_of(policy: CarePolicy) -> float:
    """``policy``'s re-planning threshold within one region (its tie-break, tolerance and weights,
    :func:`care_flows.planning.replan.policy_threshold`), for :func:`check_at_start` and
    :func:`replanned_start`.

    >>> threshold_of(CarePolicy()), threshold_of(CarePolicy(tie_break=["home", "earliest"]))
    (0.0, -0.05)
    """
    return policy_threshold(policy.tie_break, policy.tolerance_pct, policy.weights)


def _later_wins(run_now: float, later: float, threshold: float) -> bool:
    """Does a later start forecast at ``later`` g/kWh beat starting now at ``run_now`` under the
    re-planning ``threshold`` (start now iff ``run_now <= (1 - threshold) x later``,
    :mod:`care_flows.planning.replan`)?"""
    return threshold != -math.inf and run_now > (1.0 - threshold) * later + _MIN_GAIN


def check_at_start(plan: Plan, forecast: pd.Series, now: pd.Timestamp, *, min_savings_pct: float = 0.0,
                   threshold: float = REPLAN_THRESHOLD, start_margin: Any = None) -> tuple[Plan | None, float | None]:
    """``(None, run-now g/kWh)`` to start now, or ``(the plan moved to the greenest later start,
    run-now g/kWh)`` on ``forecast`` (the run-now intensity is None when the forecast cannot be used).
    A later start is taken only when it is forecast at least ``min_savings_pct`` below starting now
    (the policy's ``min_savings_pct``: a hand-on is a new flow run, a new instance on ``care-ec2``)
    and beats now under ``threshold`` (the policy's tie-break within the region,
    :func:`care_flows.planning.replan.policy_threshold`: with ``tie_break=["home", "earliest"]``
    a start within ``tolerance_pct`` of the greenest is now).

    ``forecast``: the plan's region, issued at ``now`` (the slot holding ``now`` or the next one
    first). The start is the contiguous planner's (:func:`care_flows.planning.windows.plan_contiguous`,
    ties to the earliest, so to now) over ``[now, deadline]``, within what the forecast covers; the
    moved plan is :func:`_moved`'s. A later start ends ``start_margin`` (the policy's) before the deadline.
    """
    best, issued = _best_start(plan, forecast, now, start_margin)
    if best is None:
        return None, None
    run_now = float(best.run_now_g_per_kwh)
    later = float(best.expected_g_per_kwh)
    enough = _later_wins(run_now, later, threshold) and later <= run_now * (1 - min_savings_pct / 100.0)
    if not best.feasible or best.start <= now + pd.Timedelta(seconds=1) or not enough:
        return None, run_now
    return _moved(plan, best.start, later, issued, now), run_now


def replanned_start(plan: Plan, forecast: pd.Series, now: pd.Timestamp, *, threshold: float = REPLAN_THRESHOLD,
                    start_margin: Any = None) -> Plan | None:
    """``plan`` with only its start planned again at ``now`` (what ``care controller`` does to a run a
    ``@care`` trigger deferred): the greenest start in ``[now, latest start]`` on ``forecast``, now
    itself on a tie or when ``run now <= (1 - threshold) x greenest`` (receding horizon: start now
    iff now is the best start left; ``threshold`` is the policy's tie-break within the region,
    :func:`care_flows.planning.replan.policy_threshold`); region, instance
    type, work, energy, cost, deadline and baseline kept. None when the forecast cannot be used, or
    does not cover the whole window (a short one would make an earlier start look best by default).

    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> p = Plan("eu-north-1", t + pd.Timedelta("3h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("8h"), "eu-south-2", False,
    ...          expected_g=3.0, expected_g_per_kwh=30.0)
    >>> fc = pd.Series([15.0, 40.0, 30.0, 30.0, 50.0, 50.0, 50.0], index=pd.date_range(t + pd.Timedelta("1h"), periods=7, freq="h"))
    >>> q = replanned_start(p, fc, t + pd.Timedelta("1h"))     # the hour at hand is the greenest now: brought forward
    >>> q.start.isoformat(), q.expected_g, q.decided_at.isoformat(), q.baseline_start.isoformat()
    ('2026-01-01T01:00:00+00:00', 1.5, '2026-01-01T01:00:00+00:00', '2026-01-01T00:00:00+00:00')
    """
    best, issued = _best_start(plan, forecast, now, start_margin)
    if best is None or not best.feasible or best.warnings:  # e.g. a forecast that stops short of the window
        return None
    if best.start > now and not _later_wins(float(best.run_now_g_per_kwh), float(best.expected_g_per_kwh), threshold):
        return _moved(plan, now, float(best.run_now_g_per_kwh), issued, now)
    return _moved(plan, best.start, float(best.expected_g_per_kwh), issued, now)
