"""Scheduling policies for the simulation, each a vectorised decision rule over all jobs at once.

Every policy returns a :class:`~care_flows.simulate.engine.Decision` (a region per job and its
execution segments) that never starts before the arrival and always finishes by the deadline
(the deadline is feasible by construction: JOBS.csv rejects ``deadline < arrival + duration``).
All forecast-driven policies (``care``, ``threshold`` and the peers) read the *same* forecast,
issued at the arrival from past data only (:class:`~care_flows.simulate.engine.SimContext`);
only ``oracle`` reads the real trace, and is labelled so.

Candidate start times:

- ``grid+ends``: the arrival, the latest start, every slot boundary in between and every time
  at which the job would *end* on a slot boundary. The carbon of a contiguous run is piecewise
  linear in its start with breaks exactly there, so the best start over this set is the best
  start over all real-valued starts (this is what makes ``oracle`` exact).
- ``a+grid``: the arrival and every slot boundary up to the latest start (CaRE's
  ``plan_contiguous`` before review 30, which now uses ``grid+ends``);
- ``grid``: slot boundaries only (carbonaware.dev); ``arrival+k``: the arrival plus whole steps
  (Let's Wait Awhile, GAIA).

>>> POLICIES["oracle"].__doc__.splitlines()[0]
'Perfect knowledge of the real trace (labelled oracle): the least-carbon (region, start) or slot set.'
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from care_flows.errors import ConfigError
from care_flows.simulate.engine import Decision, SimContext

__all__ = [
    "POLICIES",
    "PEER_POLICIES",
    "policy_now",
    "policy_oracle",
    "policy_care",
    "policy_care_once",
    "policy_care_check",
    "policy_threshold",
    "policy_carbonaware_prefect",
    "policy_lets_wait_awhile",
    "policy_gaia_carbon_time",
    "run_policy",
    "start_candidates",
    "greedy_fill",
    "slack_chunks",
    "CHUNK_CELLS",
]

_EPS = 1e-9


# ------------------------------------------------------------------------------------- building blocks
def start_candidates(ctx: SimContext, jobs: np.ndarray, kind: str) -> np.ndarray:
    """Candidate starts (steps since t0) for ``jobs``, shape (n, M), sorted, NaN where unused."""
    a, L = ctx.a[jobs], ctx.L[jobs]
    span = float(np.max(L - a)) if len(jobs) else 0.0
    m = int(np.ceil(span + _EPS)) + 2
    k = np.arange(m)[None, :]
    if kind == "arrival+k":
        cand = a[:, None] + k
    elif kind == "grid":
        cand = np.ceil(a - _EPS)[:, None] + k
    elif kind == "a+grid":
        cand = np.concatenate([a[:, None], np.ceil(a - _EPS)[:, None] + k], axis=1)
    elif kind == "grid+ends":
        d = ctx.d[jobs]
        grid = np.ceil(a - _EPS)[:, None] + k
        ends = np.ceil(a + d - _EPS)[:, None] + k - d[:, None]
        cand = np.concatenate([a[:, None], grid, ends, L[:, None]], axis=1)
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    ok = (cand >= a[:, None] - _EPS) & (cand <= L[:, None] + _EPS)
    cand = np.where(ok, np.clip(cand, a[:, None], L[:, None]), np.nan)
    cand.sort(axis=1)  # NaN last
    return cand


TIE_RTOL = 1e-9
"""Scores within this relative distance of a row's minimum are ties (they go to the first column,
the earliest start): window totals built from cumulative sums differ by float noise (~1e-14 of a
year's sum) where the forecast is flat, which must not pick a later start."""


def _pick_min(score: np.ndarray) -> np.ndarray:
    """Column of the first minimum per row, scores within :data:`TIE_RTOL` of it counting as equal
    (NaN/inf never chosen when a finite one exists).

    >>> _pick_min(np.array([[3.0 + 1e-13, 3.0, 5.0], [np.nan, 2.0, 1.0]])).tolist()
    [0, 2]
    """
    s = np.where(np.isnan(score), np.inf, score)
    low = s.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # a row of inf: inf - inf
        near = s <= low + TIE_RTOL * np.maximum(1.0, np.abs(low))
    return np.argmax(near | np.isinf(low), axis=1)


def greedy_fill(caps: np.ndarray, rank: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Fill ``need`` (n,) from chunks of capacity ``caps`` (n, K) in increasing ``rank`` order.

    Ties go to the earlier chunk. Returns the amount used per chunk. On constant-intensity slots
    with the real intensity as rank this is the optimal interruptible schedule (a fractional
    knapsack).

    >>> greedy_fill(np.array([[1.0, 1.0, 1.0]]), np.array([[3.0, 1.0, 2.0]]), np.array([1.5])).tolist()
    [[0.0, 1.0, 0.5]]
    """
    rank = np.where(caps > _EPS, rank, np.inf)
    order = np.argsort(rank, axis=1, kind="stable")
    cs = np.take_along_axis(caps, order, axis=1)
    before = np.cumsum(cs, axis=1) - cs
    amt = np.clip(need[:, None] - before, 0.0, cs)
    out = np.zeros_like(caps)
    np.put_along_axis(out, order, amt, axis=1)
    return out


def _slot_chunks(ctx: SimContext, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot-aligned chunks of [arrival, deadline): (slot index, chunk start, capacity), (n, K)."""
    a, dl = ctx.a[jobs], ctx.dl[jobs]
    first = np.floor(a + _EPS).astype(np.int64)
    K = int(np.ceil(np.max(dl - first) + _EPS)) + 1 if len(jobs) else 1
    slot = first[:, None] + np.arange(K)[None, :]
    start = np.maximum(slot, a[:, None])
    end = np.minimum(slot + 1, dl[:, None])
    cap = np.clip(end - start, 0.0, None)
    slot = np.minimum(slot, ctx.trace.values.shape[1] - 1)
    return slot, start, cap


def _arrival_chunks(ctx: SimContext, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chunks [a + k, a + k + 1) cut at the deadline: (chunk start, capacity), (n, K)."""
    a, dl = ctx.a[jobs], ctx.dl[jobs]
    K = int(np.ceil(np.max(dl - a) + _EPS)) + 1 if len(jobs) else 1
    start = a[:, None] + np.arange(K)[None, :]
    cap = np.clip(np.minimum(start + 1, dl[:, None]) - start, 0.0, None)
    return start, cap


def _contiguous(policy: str, ctx: SimContext, jobs: np.ndarray, region: np.ndarray, start: np.ndarray) -> Decision:
    return Decision(policy, region, jobs, start, ctx.d[jobs])


def _combine(policy: str, ctx: SimContext, region: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Decision:
    jobs = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    lens = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    return Decision(policy, region, jobs.astype(np.int64), starts, lens)


def _chunk_segments(jobs: np.ndarray, start: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(amount > _EPS)
    return jobs[rows], start[rows, cols], amount[rows, cols]


def _split(ctx: SimContext) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(ctx.n)
    return idx[~ctx.interruptible], idx[ctx.interruptible]


# ---------------------------------------------------------------------------------------- job groups
CHUNK_CELLS = 1 << 21
"""Budget of one job group: jobs x (longest window in steps + 2); see :func:`slack_chunks`."""


def slack_chunks(ctx: SimContext, cells: int | None = None) -> list[np.ndarray]:
    """Job indices in groups of similar window (deadline - arrival): in a group the longest window
    is at most twice the shortest, and jobs x (longest window + 2 steps) is at most ``cells``
    (default :data:`CHUNK_CELLS`; one job alone may exceed it).

    A policy's per-job matrices are (jobs, ~window steps), so :func:`run_policy` runs it group by
    group: one job with a long slack widens only its own group, not every job's row. Jobs are
    sorted by window (stable); one group ``[arange(n)]`` when all jobs fit in the budget.

    >>> import pandas as pd
    >>> from care_flows.simulate.engine import CarbonTrace
    >>> from care_flows.simulate.jobs import jobs_from_frame
    >>> idx = pd.date_range("2023-01-01", periods=240, freq="h", tz="UTC")
    >>> trace = CarbonTrace.from_series({"eu-south-2": pd.Series(100.0, index=idx)})
    >>> js = jobs_from_frame(pd.DataFrame({"job_id": list("abcd"), "arrival": idx[30], "duration_h": 1.0, "slack_h": [99.0, 3.0, 3.0, 5.0]}))
    >>> ctx = SimContext.build(trace, js, home_region="eu-south-2")
    >>> [g.tolist() for g in slack_chunks(ctx, cells=20)], [g.tolist() for g in slack_chunks(ctx)]
    ([[1, 2], [3], [0]], [[0, 1, 2, 3]])
    """
    cells = CHUNK_CELLS if cells is None else int(cells)
    n = ctx.n
    width = np.ceil(ctx.dl - ctx.a - _EPS) + 2.0
    if n == 0 or n * width.max() <= cells:
        return [np.arange(n)]
    order = np.argsort(width, kind="stable")
    ws = width[order]
    groups, lo = [], 0
    while lo < n:
        top = int(np.searchsorted(ws, 2.0 * ws[lo], side="right"))  # at most twice the narrowest window
        w = ws[lo : min(top, lo + cells // 2 + 1)]  # width >= 2: a group never holds more jobs
        fits = np.arange(1, len(w) + 1) * w <= cells  # True then False (ws is sorted)
        k = max(1, len(w) if fits.all() else int(np.argmin(fits)))
        groups.append(order[lo : lo + k])
        lo += k
    return groups


def _by_groups(policy: Callable[..., Decision], ctx: SimContext, **params) -> Decision:
    """Run ``policy`` on each group of :func:`slack_chunks` and join the decisions (segments by job)."""
    groups = slack_chunks(ctx)
    if len(groups) == 1:
        return policy(ctx, **params)
    parts = [(g, policy(ctx.subset(g), **params)) for g in groups]
    region = np.empty(ctx.n, dtype=parts[0][1].region.dtype)
    for g, dec in parts:
        region[g] = dec.region
    job = np.concatenate([g[dec.seg_job] for g, dec in parts])
    order = np.argsort(job, kind="stable")  # keeps each job's segments in the policy's order
    start = np.concatenate([dec.seg_start for _, dec in parts])[order]
    length = np.concatenate([dec.seg_len for _, dec in parts])[order]
    return Decision(parts[0][1].policy, region, job[order], start, length)


# ------------------------------------------------------------------------------------------ policies
def policy_now(ctx: SimContext) -> Decision:
    """Run every job at its arrival in its home region (the baseline)."""
    jobs = np.arange(ctx.n)
    return _contiguous("now", ctx, jobs, ctx.home.copy(), ctx.a.copy())


def _per_region_best(ctx: SimContext, jobs_c: np.ndarray, jobs_i: np.ndarray, regions: list[int], *, use_forecast: bool):
    """Best start / slot set per candidate region: (score (R, n), start (R, n_c), amounts (R, n_i, K), chunk starts)."""
    n = ctx.n
    score = np.full((ctx.R, n), np.inf)
    starts = np.full((ctx.R, len(jobs_c)), np.nan)
    cand = start_candidates(ctx, jobs_c, "grid+ends") if len(jobs_c) else None
    slot, cstart, cap = _slot_chunks(ctx, jobs_i) if len(jobs_i) else (None, None, None)
    amounts = {}
    for r in regions:
        if len(jobs_c):
            e = cand + ctx.d[jobs_c][:, None]
            if use_forecast:
                val = ctx.fc_int(r, jobs_c, np.nan_to_num(cand, nan=0.0), np.nan_to_num(e, nan=0.0))
            else:
                val = ctx.true_int(r, np.nan_to_num(cand, nan=0.0), np.nan_to_num(e, nan=0.0))
            val = np.where(np.isnan(cand), np.inf, val)
            col = _pick_min(val)
            rows = np.arange(len(jobs_c))
            starts[r] = cand[rows, col]
            score[r, jobs_c] = val[rows, col] * ctx.kwh_per_step[jobs_c]
        if len(jobs_i):
            vals = ctx.fc_slot(r, jobs_i, slot) if use_forecast else ctx.trace.values[r][slot]
            amt = greedy_fill(cap, vals, ctx.d[jobs_i])
            amounts[r] = amt
            score[r, jobs_i] = (amt * vals).sum(axis=1) * ctx.kwh_per_step[jobs_i]
        score[r, ~ctx.offered[r]] = np.inf  # the job's type is not sold there
    return score, starts, amounts, cstart


def _assemble(policy: str, ctx: SimContext, jobs_c, jobs_i, region, starts, amounts, cstart) -> Decision:
    parts = []
    if len(jobs_c):
        rc = region[jobs_c]
        parts.append((jobs_c, starts[rc, np.arange(len(jobs_c))], ctx.d[jobs_c]))
    if len(jobs_i):
        ri = region[jobs_i]
        amt = np.zeros_like(cstart)
        for r, a in amounts.items():
            sel = ri == r
            amt[sel] = a[sel]
        parts.append(_chunk_segments(jobs_i, cstart, amt))
    return _combine(policy, ctx, region, parts)


def policy_oracle(ctx: SimContext, *, regions: list[int] | None = None) -> Decision:
    """Perfect knowledge of the real trace (labelled oracle): the least-carbon (region, start) or slot set.

    Contiguous jobs: the exact minimum over all real-valued starts in [arrival, deadline -
    duration] (see ``grid+ends``); interruptible jobs: the lowest-intensity slot fractions
    (greedy, optimal on a step function). Across regions the least carbon wins; ties go to the
    cheaper region, then to the home region. It is an upper bound on what any forecast-driven
    policy can save, not a policy one can run.
    """
    regions = list(range(ctx.R)) if regions is None else regions
    jobs_c, jobs_i = _split(ctx)
    score, starts, amounts, cstart = _per_region_best(ctx, jobs_c, jobs_i, regions, use_forecast=False)
    cost = ctx.usd_per_step * ctx.d[None, :]
    region = _lexicographic(ctx, score, cost, regions, tol_carbon=0.0, tol_cost=0.0)
    return _assemble("oracle", ctx, jobs_c, jobs_i, region, starts, amounts, cstart)


def _lexicographic(ctx: SimContext, carbon: np.ndarray, cost: np.ndarray, regions: list[int], *, tol_carbon: float, tol_cost: float) -> np.ndarray:
    """Per job: keep regions within ``tol_carbon`` of the least carbon, then within ``tol_cost`` of the
    cheapest of those, then take the least carbon (ties: home region first, then listed order)."""
    n = ctx.n
    c = np.full((ctx.R, n), np.inf)
    c[regions] = carbon[regions]
    best_c = c.min(axis=0)
    keep = c <= best_c * (1 + tol_carbon) + 1e-12
    cc = np.where(keep, cost, np.inf)
    best_cost = cc.min(axis=0)
    keep &= cc <= best_cost * (1 + tol_cost) + 1e-12
    final = np.where(keep, c, np.inf)
    # home first on ties: put the home region's score a hair ahead
    home_val = final[ctx.home, np.arange(n)]
    order_bias = np.zeros_like(final)
    order_bias[ctx.home, np.arange(n)] = np.where(np.isfinite(home_val), -1e-12 * np.maximum(np.abs(home_val), 1.0), 0.0)
    return np.argmin(final + order_bias, axis=0)


def policy_care(
    ctx: SimContext,
    *,
    regions: list[int] | None = None,
    tolerance_pct: float | None = None,
    min_savings_pct: float | None = None,
    priorities: tuple[str, ...] = ("carbon", "cost", "latency"),
    replan: bool = True,
    replan_threshold: float | None = None,
    tie_break: tuple[str, ...] | None = None,
) -> Decision:
    """CaRE's planner, vectorised: the rules of ``care_flows.planning.decide.decide`` under the default
    priorities of ``CarePolicy`` (carbon, cost, latency, resource; lexicographic, 5% tolerance),
    then (``replan=True``, the default, as CaRE runs in production) receding-horizon re-planning.

    Re-planning (:mod:`care_flows.planning.replan`): a contiguous job that the plan at arrival
    deferred stays a Prefect *Scheduled* run; CaRE's controller looks at it again at every slot
    boundary up to its latest start with a forecast issued then (data before that slot only) and
    starts it at that pass iff the forecast of running now is at most ``(1 - replan_threshold)``
    x the best later start (default: the policy's tie-break within the region,
    :func:`~care_flows.planning.replan.policy_threshold`, as the controller: under the default
    tie-break :data:`~care_flows.planning.replan.REPLAN_THRESHOLD`, chosen on 2021-2022; with
    ``earliest`` before ``carbon``, ``-tolerance_pct / 100``); at the latest start it runs. The region chosen at arrival is kept.
    A plan that starts before the first slot boundary after the arrival starts as planned (no pass
    comes before it). The passes are the slot boundaries: on hourly data the controller's default
    ``replan_every`` of 1 h; on sub-hourly data more often than the controller looks (review 45a L1).
    Interruptible jobs keep their slot set from arrival. ``replan=False`` is the plan-once policy
    ``care-once`` (the whole decision at arrival, which the paragraph below describes).

    Per job and candidate region, two options on the job's forecast (issued at its arrival):
    run now, and the planned one (contiguous: the least mean forecast over the ``grid+ends``
    starts, ties -> earliest, as ``plan_contiguous``;
    interruptible: the lowest forecast slots, ties -> earliest, as ``plan_interruptible``
    without segment limits, which keeps the best contiguous run when the slots are no greener). Options are filtered objective by objective: forecast gCO2eq
    within ``tolerance_pct`` of the best, then USD within it, then round-trip latency from the
    home region (:func:`care_flows.latency.rtt_ms`) within it (resource waste is the same
    everywhere: one instance type per job); the survivors are ordered by ``tie_break`` (as
    ``CarePolicy.tie_break``; default the home region first, then the least forecast gCO2eq, then the earliest start; ``resource``
    is a no-op here), then by the exact values of the objectives it does not name. An option
    that saves less than ``min_savings_pct`` (default 1%) of the forecast carbon of running now at
    home is not a candidate (running now at home always is), nor is a planned option that saves less than it
    against running now in its own region. ``priorities`` reorders the objectives (e.g. ``("cost", "carbon",
    "latency")`` for a cost-first policy). ``tests/simulate/test_sim_care_decide.py`` checks job by job that this
    equals the scalar ``decide()``.
    """
    from care_flows.latency import rtt_ms
    from care_flows.planning.replan import policy_threshold
    from care_flows.policy import DEFAULT_TIE_BREAK, CarePolicy

    defaults = CarePolicy.model_fields
    tie_break = DEFAULT_TIE_BREAK if tie_break is None else tie_break
    for name, value in (("tolerance_pct", tolerance_pct), ("min_savings_pct", min_savings_pct)):
        if value is not None and not 0.0 <= float(value) <= 100.0:  # as CarePolicy (review 45a L3)
            raise ConfigError(f"{name} {value!r} must be between 0 and 100 (a percentage), e.g. {name}=5")
    tol = (defaults["tolerance_pct"].default if tolerance_pct is None else tolerance_pct) / 100.0
    min_sav = (defaults["min_savings_pct"].default if min_savings_pct is None else min_savings_pct) / 100.0
    regions = list(range(ctx.R)) if regions is None else regions
    n = ctx.n
    idx = np.arange(n)
    jobs_c, jobs_i = _split(ctx)
    names = ctx.trace.regions
    # options: (now, planned) x regions; columns 2*i and 2*i + 1
    R2 = 2 * len(regions)
    carbon = np.full((n, R2), np.inf)
    cost = np.full((n, R2), np.inf)
    latency = np.full((n, R2), np.inf)
    start = np.zeros((n, R2))
    plan_start = np.full((ctx.R, n), np.nan)
    amounts: dict[int, np.ndarray] = {}
    cand = start_candidates(ctx, jobs_c, "grid+ends") if len(jobs_c) else None  # = plan_contiguous (review 30 #4)
    slot, cstart, cap = _slot_chunks(ctx, jobs_i) if len(jobs_i) else (None, None, None)
    icand = start_candidates(ctx, jobs_i, "grid+ends") if len(jobs_i) else None
    # an interruptible job whose slot fill is no greener than its best contiguous run takes that run
    # (one segment), as plan_interruptible: ties -> the contiguous plan (review 54d L2); NaN elsewhere
    icontig = np.full((ctx.R, n), np.nan)
    homes = np.unique(ctx.home)
    for i, r in enumerate(regions):
        now_val = ctx.fc_int(r, idx, ctx.a, ctx.a + ctx.d) * ctx.kwh_per_step
        carbon[:, 2 * i] = now_val
        cost[:, 2 * i] = cost[:, 2 * i + 1] = ctx.usd_per_step[r] * ctx.d
        lat = np.zeros(n)
        for h in homes:
            lat[ctx.home == h] = rtt_ms(names[int(h)], names[r])
        latency[:, 2 * i] = latency[:, 2 * i + 1] = lat
        start[:, 2 * i] = ctx.a
        if len(jobs_c):
            e = cand + ctx.d[jobs_c][:, None]
            val = ctx.fc_int(r, jobs_c, np.nan_to_num(cand), np.nan_to_num(e))
            val = np.where(np.isnan(cand), np.inf, val)
            col = _pick_min(np.round(val / ctx.d[jobs_c][:, None], 9))  # means to 1e-9, ties -> earliest, as plan_contiguous
            rows = np.arange(len(jobs_c))
            plan_start[r, jobs_c] = cand[rows, col]
            carbon[jobs_c, 2 * i + 1] = val[rows, col] * ctx.kwh_per_step[jobs_c]
            start[jobs_c, 2 * i + 1] = cand[rows, col]
        if len(jobs_i):
            vals = ctx.fc_slot(r, jobs_i, slot)
            amt = greedy_fill(cap, vals, ctx.d[jobs_i])
            amounts[r] = amt
            di = ctx.d[jobs_i]
            fill = (amt * vals).sum(axis=1)
            cval = ctx.fc_int(r, jobs_i, np.nan_to_num(icand), np.nan_to_num(icand + di[:, None]))
            cval = np.where(np.isnan(icand), np.inf, cval)
            ccol = _pick_min(np.round(cval / di[:, None], 9))
            rows = np.arange(len(jobs_i))
            c_best = cval[rows, ccol]
            contig = ~(np.round(fill / di, 9) < np.round(c_best / di, 9))
            icontig[r, jobs_i[contig]] = icand[rows, ccol][contig]
            carbon[jobs_i, 2 * i + 1] = np.where(contig, c_best, fill) * ctx.kwh_per_step[jobs_i]
            first = np.where(amt > _EPS, cstart, np.inf).min(axis=1)
            start[jobs_i, 2 * i + 1] = np.where(contig, icand[rows, ccol], first)
        # the planned option exists only when it differs from running now
        same = np.abs(start[:, 2 * i + 1] - ctx.a) <= _EPS
        if len(jobs_i):
            same_i = np.zeros(n, dtype=bool)
            nseg = np.zeros(n)
            nseg[jobs_i] = np.where(contig, 1, _count_runs(amounts[r], cstart))
            same_i[jobs_i] = True
            same &= ~same_i | (nseg <= 1)
        carbon[same, 2 * i + 1] = np.inf
        carbon[~ctx.offered[r], 2 * i : 2 * i + 2] = np.inf  # the job's type is not sold there (decide(): not offered)
    alive = np.isfinite(carbon)
    # min saving against running now at home (forecast): an option that saves less is not a candidate
    # (run-now-at-home itself always is), so the next-best option that saves enough wins, as in decide()
    base = ctx.fc_int(ctx.home, idx, ctx.a, ctx.a + ctx.d) * ctx.kwh_per_step
    home_now = np.zeros((n, R2), dtype=bool)
    for i, r in enumerate(regions):
        home_now[:, 2 * i] = ctx.home == r
    saves = (carbon <= base[:, None] * (1 - min_sav) + 1e-12) | home_now
    alive &= saves
    # waiting must also save the minimum against starting now in the same region (decide(): review 43d M2),
    # when starting now there is itself a candidate (review 54a M1)
    for i in range(len(regions)):
        here = carbon[:, 2 * i]
        weighed = np.isfinite(here) & (here > 0) & saves[:, 2 * i]
        alive[:, 2 * i + 1] &= ~weighed | (carbon[:, 2 * i + 1] <= here * (1 - min_sav) + 1e-12)
    columns = {"carbon": carbon, "cost": cost, "latency": latency}
    order = [p for p in priorities if p in columns] + [p for p in ("carbon", "cost", "latency") if p not in priorities]
    for col in (columns[p] for p in order):
        v = np.where(alive, col, np.inf)
        best = v.min(axis=1, keepdims=True)
        alive &= v <= best + np.abs(best) * tol + 1e-12
    is_home = np.zeros((n, R2))
    for i, r in enumerate(regions):
        is_home[:, 2 * i] = is_home[:, 2 * i + 1] = (ctx.home != r).astype(float)
    tie_keys = {"home": is_home, "earliest": start, **columns}
    for name in tie_break:
        if name not in tie_keys and name != "resource":
            raise ConfigError(f"unknown tie-break key {name!r}; use home, earliest, carbon, cost, latency, resource")
    keys = [tie_keys[t] for t in tie_break if t in tie_keys] + [columns[p] for p in order if p not in tie_break]
    for key in keys:
        v = np.where(alive, key, np.inf)
        alive &= v <= v.min(axis=1, keepdims=True) + 1e-12
    pick = np.argmax(alive, axis=1)
    region = np.asarray(regions)[pick // 2]
    planned = (pick % 2) == 1
    chosen = carbon[idx, pick]
    run_now = chosen > base * (1 - min_sav) + 1e-12
    region = np.where(run_now, ctx.home, region)
    planned &= ~run_now
    if replan and len(jobs_c):
        _replan_deferred(ctx, jobs_c[planned[jobs_c]], region, plan_start,
                         policy_threshold(tie_break, tol * 100.0) if replan_threshold is None else replan_threshold)
    parts = []
    now_jobs = np.nonzero(~planned)[0]
    parts.append((now_jobs, ctx.a[now_jobs], ctx.d[now_jobs]))
    if len(jobs_c):
        pc = jobs_c[planned[jobs_c]]
        parts.append((pc, plan_start[region[pc], pc], ctx.d[pc]))
    if len(jobs_i):
        sel = planned[jobs_i]
        one = icontig[region[jobs_i], jobs_i]
        run = sel & ~np.isnan(one)  # planned as one contiguous run
        parts.append((jobs_i[run], one[run], ctx.d[jobs_i[run]]))
        amt = np.zeros_like(cstart)
        for r, a in amounts.items():
            m = sel & ~run & (region[jobs_i] == r)
            amt[m] = a[m]
        parts.append(_chunk_segments(jobs_i, cstart, amt))
    return _combine("care" if replan else "care-once", ctx, region, parts)


def _replan_deferred(ctx: SimContext, jobs: np.ndarray, region: np.ndarray, plan_start: np.ndarray, threshold: float | None) -> None:
    """Receding-horizon re-planning of deferred contiguous ``jobs`` in their chosen region (updates ``plan_start``)."""
    from care_flows.planning.replan import REPLAN_THRESHOLD, replan_starts

    thr = REPLAN_THRESHOLD if threshold is None else float(threshold)
    for r in np.unique(region[jobs]):
        sel = jobs[region[jobs] == r]
        # a plan that starts before the first pass after the arrival starts as planned: no pass looks at it again
        # (the controller's first re-plan comes a pass after the trigger; review 45a M1)
        sel = sel[plan_start[r, sel] >= np.floor(ctx.a[sel] + _EPS) + 1.0 - _EPS]
        if not len(sel):
            continue
        a, L, d = ctx.a[sel], ctx.L[sel], ctx.d[sel]
        first_dec = np.floor(a + _EPS) + 1.0  # the pass after the arrival's
        first = int(first_dec.min())
        last = int(np.floor(np.max(np.maximum(L, first_dec)) + _EPS))
        H = int(np.ceil(np.max(L + d - first_dec) + _EPS)) + 1
        rows = ctx.forecast_at_slots(int(r), first, last, max(H, 1))
        plan_start[r, sel] = replan_starts(rows, first, a, L, d, threshold=thr, first_decision=first_dec)


def policy_care_once(ctx: SimContext, **params) -> Decision:
    """CaRE planning once at arrival (no re-planning): ``policy_care(..., replan=False)``."""
    return policy_care(ctx, replan=False, **params)


def policy_care_check(ctx: SimContext, **params) -> Decision:
    """CaRE as a ``@care`` flow's runs do it: plan once at arrival, then check the plan at start.

    Source: :mod:`care_flows.orchestration.start_check` (what the run a ``@care`` trigger
    deferred does when a worker starts it). The decision at arrival is ``care-once``'s
    (``policy_care(..., replan=False)``: region, run now or defer, start or slot set). A deferred
    contiguous job whose plan was made at least ``CarePolicy.replan_every`` (default 1 h) before
    its planned start, and whose planned start is before its latest start, checks the plan at that
    start ``t`` with the forecast issued then (the row of slot ``floor(t)``: data before that slot
    only): over the starts ``t``, every slot boundary in ``(t, L]``, every start that ends on a slot
    boundary and ``L`` (the latest start; the candidates of ``plan_contiguous``, which
    ``check_at_start`` calls), the least mean forecast over ``[s, s + duration)`` (partial slots
    pro rata) wins, ties to the earliest, so to ``t``. If that is a later start, the job moves there
    and is checked again there, at most ``MAX_START_CHECKS`` (3) checks per job; otherwise it starts
    at ``t``. The region chosen at arrival is kept; interruptible jobs keep their slot set (as in
    ``care``). It differs from ``care`` (which ``care controller`` applies to the runs it moved) in
    when the forecast is looked at again: ``care`` re-plans a deferred job at every slot boundary
    until it starts (and may start it *earlier* than planned), ``care-check`` only at its planned
    starts (it can only move a job later).
    """
    once = policy_care(ctx, replan=False, **params)
    from care_flows.planning.replan import policy_threshold
    from care_flows.policy import CarePolicy

    min_sav = params.get("min_savings_pct")
    min_sav = CarePolicy.model_fields["min_savings_pct"].default if min_sav is None else float(min_sav)
    n = ctx.n
    cont = ~ctx.interruptible[once.seg_job]  # a contiguous job has exactly one segment
    start = np.full(n, np.nan)
    start[once.seg_job[cont]] = once.seg_start[cont]
    jobs = np.nonzero(~ctx.interruptible & (start > ctx.a + _EPS))[0]  # deferred at arrival
    seg_start = once.seg_start.copy()
    if len(jobs):
        plan_start = np.full((ctx.R, n), np.nan)
        plan_start[once.region[jobs], jobs] = start[jobs]
        tol = params.get("tolerance_pct")
        tol = CarePolicy.model_fields["tolerance_pct"].default if tol is None else float(tol)
        _check_deferred_at_start(ctx, jobs, once.region, plan_start, min_savings_pct=min_sav,
                                 threshold=policy_threshold(params.get("tie_break"), tol))
        new = start.copy()
        new[jobs] = plan_start[once.region[jobs], jobs]
        seg_start[cont] = new[once.seg_job[cont]]
    return Decision("care-check", once.region, once.seg_job, seg_start, once.seg_len)


def _check_deferred_at_start(ctx: SimContext, jobs: np.ndarray, region: np.ndarray, plan_start: np.ndarray,
                             *, max_checks: int | None = None, replan_every_h: float | None = None, min_savings_pct: float = 0.0,
                             threshold: float = 0.0) -> None:
    """The checks at start (:mod:`care_flows.orchestration.start_check`) of deferred contiguous
    ``jobs`` in their chosen region, planned at their arrival (updates ``plan_start``, (R, n)).

    A job is checked at its planned start ``t`` when ``t`` is at least ``replan_every`` after the
    plan's decision (the arrival; after a move, the check that moved it: the moved plan is decided
    then) and ``t < L``; each check reads the forecast row issued at ``floor(t)`` and moves the job
    to the least-mean later start if that is at least ``min_savings_pct`` lower than starting at
    ``t`` and starting at ``t`` exceeds ``(1 - threshold)`` x it (the policy's tie-break,
    :func:`~care_flows.planning.replan.policy_threshold`; as ``check_at_start``), at most ``max_checks`` (default ``MAX_START_CHECKS``) times.
    All jobs of one check round are one numpy step.
    """
    from care_flows.orchestration.start_check import MAX_START_CHECKS
    from care_flows.planning.replan import _integral
    from care_flows.policy import CarePolicy

    checks = MAX_START_CHECKS if max_checks is None else int(max_checks)
    if replan_every_h is None:
        every = CarePolicy.model_fields["replan_every"].default
        if every is None:  # pragma: no cover - the default re-plans
            return
        replan_every_h = every.total_seconds() / 3600.0
    step_h = ctx.trace.step_h
    gap = float(replan_every_h) / step_h  # steps
    one_s = 1.0 / (3600.0 * step_h)  # check_at_start keeps a start within 1 s of now
    for r in np.unique(region[jobs]):
        r = int(r)
        sel = jobs[region[jobs] == r]
        t = plan_start[r, sel].copy()
        a, L, d = ctx.a[sel], ctx.L[sel], ctx.d[sel]
        due = (t - a >= gap - _EPS) & (t < L - _EPS)
        if not due.any():
            continue
        first = int(np.floor(np.min(t[due]) + _EPS))
        last = int(np.floor(np.max(L[due]) + _EPS))
        H = int(np.ceil(np.max((L + d - np.floor(t + _EPS))[due]) + _EPS)) + 1
        fc = ctx.forecast_at_slots(r, first, last, max(H, 1))
        fcum = np.concatenate([np.zeros((fc.shape[0], 1)), np.cumsum(fc, axis=1)], axis=1)
        for _ in range(checks):
            idx = np.nonzero(due)[0]
            if not len(idx):
                break
            tt, LL, dd = t[idx], L[idx], d[idx]
            q = np.floor(tt + _EPS).astype(np.int64)
            row = (q - first)[:, None]
            # candidates (plan_contiguous's): now, slot boundaries in (t, L], starts ending on a boundary, L
            M = int(np.max(np.floor(LL + _EPS) - q)) + 1
            k = np.arange(max(M, 1))[None, :]
            grid = (q + 1)[:, None] + k
            ends = np.ceil(tt + dd - _EPS)[:, None] + k - dd[:, None]
            cand = np.concatenate([tt[:, None], grid, ends, LL[:, None]], axis=1).astype(float)
            ok = (cand >= tt[:, None] - _EPS) & (cand <= LL[:, None] + _EPS)
            cand = np.where(ok, np.clip(cand, tt[:, None], LL[:, None]), np.nan)
            cand.sort(axis=1)  # NaN last; column 0 is t itself
            c0 = np.nan_to_num(cand, nan=0.0) - q[:, None]
            mean = (_integral(fcum, fc, row, c0 + dd[:, None]) - _integral(fcum, fc, row, c0)) / dd[:, None]
            mean = np.where(np.isnan(cand), np.inf, mean)
            col = _pick_min(np.round(mean, 9))  # means to 1e-9, ties -> earliest (so to now), as plan_contiguous
            rows = np.arange(len(idx))
            best, best_mean, now_mean = cand[rows, col], mean[rows, col], mean[:, 0]
            beats = np.zeros(len(idx), dtype=bool) if threshold == -np.inf else now_mean > (1.0 - threshold) * best_mean + 1e-9
            move = (best > tt + one_s) & beats & (best_mean <= now_mean * (1 - min_savings_pct / 100.0))
            t[idx[move]] = best[move]
            due[idx[~move]] = False  # it starts now
            # checked again at the new start if it is before L and replan_every after this check (the moved plan's decision)
            due[idx[move]] = (t[idx[move]] < LL[move] - _EPS) & (best[move] - tt[move] >= gap - _EPS)
        plan_start[r, sel] = t


def _count_runs(amount: np.ndarray, cstart: np.ndarray) -> np.ndarray:
    """Number of separate runs (maximal adjacent used chunks) per row."""
    used = amount > _EPS
    ends = cstart + amount
    adjacent = np.zeros_like(used)
    adjacent[:, 1:] = used[:, 1:] & used[:, :-1] & (np.abs(cstart[:, 1:] - ends[:, :-1]) <= 1e-9)
    return used.sum(axis=1) - adjacent.sum(axis=1)


def policy_threshold(ctx: SimContext, *, percentile: float = 25.0, g_per_kwh: float | None = None) -> Decision:
    """Threshold mode of CaRE (home region): run only while the forecast is at or below a threshold.

    The threshold is ``g_per_kwh`` if given, else the ``percentile`` (default 25th) of the job's
    forecast over its window [arrival, deadline) (time-weighted, as ``plan_threshold``:
    :func:`care_flows.planning.windows.window_percentile`). Interruptible jobs follow
    ``plan_threshold`` exactly, through the same kernel
    (:func:`care_flows.planning.windows.threshold_amounts`): the at-or-below slots in time order,
    then, only if those cannot hold the job, the lowest remaining slots (ties -> earliest); with
    nothing at or below, one contiguous run at the least-forecast start (``grid+ends``, as
    ``plan_contiguous``). CaRE's threshold mode needs an interruptible job (``CarePolicy``), so
    for a job that cannot pause this is an extension: it starts at the first candidate start whose
    forecast mean over the run is at or below the threshold (else at the least-forecast start).
    """
    n = ctx.n
    h = ctx.home
    jobs_c, jobs_i = _split(ctx)
    region = h.copy()
    parts = []
    # per-job threshold from the forecast over the window (slot values)
    all_jobs = np.arange(n)
    slot, cstart, cap = _slot_chunks(ctx, all_jobs)
    fvals = np.empty(slot.shape)
    for r in np.unique(h):
        sel = h == r
        fvals[sel] = ctx.fc_slot(int(r), all_jobs[sel], slot[sel])
    from care_flows.planning.windows import threshold_amounts, window_percentile

    cap = np.where(cap > _EPS, cap, 0.0)
    if g_per_kwh is not None:
        thr = np.full(n, float(g_per_kwh))
    else:  # the time-weighted percentile of plan_threshold (numpy's linear one on whole slots)
        thr = window_percentile(fvals, cap, percentile, 1.0)
    if len(jobs_i):
        # the rule of plan_threshold, through the same kernel
        amt, _, any_below = threshold_amounts(cap[jobs_i], fvals[jobs_i], ctx.d[jobs_i], threshold_g_per_kwh=thr[jobs_i])
        parts.append(_chunk_segments(jobs_i[any_below], cstart[jobs_i][any_below], amt[any_below]))
        # nothing at or below the threshold: one contiguous run, as plan_threshold (the rule below
        # then picks the least-forecast start: no run's mean can be at or below the threshold)
        jobs_c = np.concatenate([jobs_c, jobs_i[~any_below]])
    if len(jobs_c):
        cand = start_candidates(ctx, jobs_c, "grid+ends")
        e = cand + ctx.d[jobs_c][:, None]
        val = np.full(cand.shape, np.inf)
        for r in np.unique(h[jobs_c]):
            sel = h[jobs_c] == r
            v = ctx.fc_int(int(r), jobs_c[sel], np.nan_to_num(cand[sel]), np.nan_to_num(e[sel]))
            val[sel] = np.where(np.isnan(cand[sel]), np.inf, v)
        mean = val / ctx.d[jobs_c][:, None]
        below = mean <= thr[jobs_c][:, None] + 1e-9
        first_below = np.argmax(below, axis=1)
        # least-forecast start: means to 1e-9, ties -> earliest, as plan_contiguous
        col = np.where(below.any(axis=1), first_below, _pick_min(np.round(mean, 9)))
        parts.append((jobs_c, cand[np.arange(len(jobs_c)), col], ctx.d[jobs_c]))
    return _combine("threshold", ctx, region, parts)


def policy_carbonaware_prefect(ctx: SimContext, *, regions: list[int] | None = None) -> Decision:
    """carbonaware-prefect / carbonaware.dev scheduler: least rolling mean over the duration.

    Source: ``carbonaware_prefect.delay.carbonaware_delay`` (PyPI carbonaware-prefect 0.1.3)
    asks the carbonaware.dev scheduler for a window ``[now, now + window]`` and the job
    duration, then sleeps until ``response.ideal.time``. The scheduler
    (github.com/carbon-aware/scheduler, ``scheduler/src/modeling/schedule.py``) trims the
    forecast to each window, takes a rolling mean of ``int(duration / interval)`` points (the
    raw point if that is below 1), labels it with the window's first point, sorts all (zone,
    time) options by that mean and returns the lowest as ``ideal``. Its forecast has 5-minute
    points, so that mean is over the job's duration (to 5 min); on the coarser traces simulated
    here it is the forecast's time-weighted mean over the job's duration (the raw point for a job
    shorter than one step), not over ``floor(duration)`` whole steps, which judged a 1.9 h job on
    its first hour alone (review 35f). So: starts only on forecast points (slot boundaries) at or
    after the arrival, every zone passed (here: every simulated region; the decorator passes
    one), and no notion of interruption. Differences, to keep the comparison about decisions: the window
    ends at the latest start that meets the deadline (the original's inclusive window end lets
    a job start one step later and finish past it); ties go to the earliest time and the home
    region (the original's sort is unstable); with no slot boundary before the latest start it
    runs at the arrival (the original would raise).
    """
    regions = list(range(ctx.R)) if regions is None else regions
    jobs = np.arange(ctx.n)
    cand = start_candidates(ctx, jobs, "grid")
    # the mean over the job's duration (the scheduler averages int(duration / 5 min) points of its
    # 5-minute forecast: the duration to 5 min); under one step, the raw point, as the original
    w = np.where(ctx.d >= 1.0 - _EPS, ctx.d, 1.0)
    best = np.full(ctx.n, np.inf)
    best_start = ctx.a.copy()
    region = ctx.home.copy()
    ordered = [int(h) for h in np.unique(ctx.home)]
    for r in sorted(regions, key=lambda x: (x not in ordered, x)):
        c0 = np.nan_to_num(cand, nan=0.0)
        tot = ctx.fc_int(r, jobs, c0, c0 + w[:, None])  # the forecast's integral over [start, start + w)
        mean = np.where(np.isnan(cand) | ~ctx.offered[r][:, None], np.inf, tot / w[:, None])
        col = _pick_min(mean)
        val, at = mean[jobs, col], cand[jobs, col]
        better = val < best - 1e-12
        # ties: the home region wins; between two other regions the earlier start (not the order of the
        # traces: review 54d L3)
        with np.errstate(invalid="ignore"):
            tie = np.abs(val - best) <= 1e-12
            better |= tie & ((r == ctx.home) | ((region != ctx.home) & (at < best_start - _EPS)))
        best = np.where(better, val, best)
        best_start = np.where(better & np.isfinite(val), at, best_start)
        region = np.where(better, r, region)
    none = ~np.isfinite(best)
    best_start[none] = ctx.a[none]
    region[none] = ctx.home[none]
    return _contiguous("carbonaware-prefect", ctx, jobs, region, best_start)


def policy_lets_wait_awhile(ctx: SimContext) -> Decision:
    """Let's Wait Awhile (Wiesner et al., Middleware 2021), ad-hoc workloads, home region.

    Source: github.com/dos-group/lets-wait-awhile ``strategy.py`` (``AdHocStrategy.run``) and
    the paper, Sec. 4: time advances in forecast steps from the job's submission.
    Non-interruptible: the mean forecast over the job's duration for every start ``arrival + k
    steps`` within the allowed shift, and the first minimum (``np.argmin``). Interruptible: the
    ``duration`` steps of lowest forecast intensity among the steps ``[arrival + k, arrival + k
    + 1)`` before the deadline, each run for one step; a fractional remainder is taken off the
    worst chosen step (the original has whole-step durations only).
    Temporal shifting only.
    """
    jobs_c, jobs_i = _split(ctx)
    h = ctx.home
    parts = []
    if len(jobs_c):
        cand = start_candidates(ctx, jobs_c, "arrival+k")
        e = cand + ctx.d[jobs_c][:, None]
        val = np.full(cand.shape, np.inf)
        for r in np.unique(h[jobs_c]):
            sel = h[jobs_c] == r
            v = ctx.fc_int(int(r), jobs_c[sel], np.nan_to_num(cand[sel]), np.nan_to_num(e[sel]))
            val[sel] = np.where(np.isnan(cand[sel]), np.inf, v)
        col = _pick_min(val)
        parts.append((jobs_c, cand[np.arange(len(jobs_c)), col], ctx.d[jobs_c]))
    if len(jobs_i):
        cs, cp = _arrival_chunks(ctx, jobs_i)
        rank = np.full(cs.shape, np.inf)
        for r in np.unique(h[jobs_i]):
            sel = h[jobs_i] == r
            rank[sel] = ctx.fc_int(int(r), jobs_i[sel], cs[sel], cs[sel] + 1.0)
        # whole steps first; the excess of a fractional duration comes off the worst chosen steps
        need = ctx.d[jobs_i]
        amt = greedy_fill(cp, rank, np.ceil(need - _EPS))
        excess = amt.sum(axis=1) - need
        order = np.argsort(np.where(amt > _EPS, -rank, np.inf), axis=1, kind="stable")
        srt = np.take_along_axis(amt, order, axis=1)
        before = np.cumsum(srt, axis=1) - srt
        srt = srt - np.clip(np.maximum(excess, 0.0)[:, None] - before, 0.0, srt)
        np.put_along_axis(amt, order, srt, axis=1)
        short = amt.sum(axis=1) < need - 1e-9  # not enough whole steps before the deadline
        if short.any():
            amt[short] = greedy_fill(cp[short], rank[short], need[short])
        parts.append(_chunk_segments(jobs_i, cs, amt))
    return _combine("lets-wait-awhile", ctx, h.copy(), parts)


def policy_gaia_carbon_time(ctx: SimContext) -> Decision:
    """GAIA Carbon-Time (Hanafy et al., "Going Green for Less Green", ASPLOS 2024), home region.

    Source: github.com/umassos/GAIA ``src/scheduling/carbon_waiting_policy.py``
    (``average_carbon_slot_waiting``, policy ``cst_average``): the job's length is unknown at
    arrival, so the rule uses the mean length ``Lm`` of its queue (GAIA's loader: jobs shorter
    than 2 h, and the rest; computed over the simulated job set). For every wait ``k`` whole
    hours in ``[0, max wait]`` it computes the carbon ``C_k`` of running ``Lm`` from ``arrival +
    k`` (``C_0`` is running now) and picks the first maximum of ``(C_0 - C_k) / (k + Lm)``, the
    carbon saved per unit of completion time; the real job then runs from there for its real
    length (non-interruptible), so the wait is capped at the job's slack.
    """
    jobs = np.arange(ctx.n)
    h = ctx.home
    step_h = ctx.trace.step_h
    per_hour = max(1.0, round(1.0 / step_h))
    a, L = ctx.a, ctx.L
    m = int(np.floor(np.max(L - a) / per_hour + _EPS)) + 1
    k = np.arange(m)[None, :] * per_hour
    cand = a[:, None] + k
    ok = cand <= L[:, None] + _EPS
    Lm = np.maximum(ctx.mean_len, _EPS)
    C = np.full(cand.shape, np.inf)
    for r in np.unique(h):
        sel = h == r
        C[sel] = ctx.fc_int(int(r), jobs[sel], cand[sel], cand[sel] + Lm[sel][:, None])
    ratio = (C[:, :1] - C) / (k + Lm[:, None])
    ratio = np.where(ok, ratio, -np.inf)
    col = _pick_min(-ratio)  # the first maximum, float-noise ties included
    return _contiguous("gaia-carbon-time", ctx, jobs, h.copy(), cand[jobs, col])


POLICIES: dict[str, Callable[..., Decision]] = {
    "now": policy_now,
    "oracle": policy_oracle,
    "care": policy_care,
    "care-once": policy_care_once,
    "care-check": policy_care_check,
    "threshold": policy_threshold,
    "carbonaware-prefect": policy_carbonaware_prefect,
    "lets-wait-awhile": policy_lets_wait_awhile,
    "gaia-carbon-time": policy_gaia_carbon_time,
}
"""Policy name -> decision rule (each documented with its source)."""

PEER_POLICIES = ["carbonaware-prefect", "lets-wait-awhile", "gaia-carbon-time"]


def run_policy(ctx: SimContext, name: str, **params) -> Decision:
    """Run policy ``name`` (see :data:`POLICIES`) on a prepared context, one job group of
    :func:`slack_chunks` at a time (the decisions do not depend on the grouping)."""
    from care_flows.errors import ConfigError

    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; use one of {', '.join(POLICIES)}")
    return _by_groups(POLICIES[name], ctx, **params)
