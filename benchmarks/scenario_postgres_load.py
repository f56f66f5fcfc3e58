"""Load scenario: 500 CaRE-scheduled runs on a PostgreSQL-backed Prefect, two pools, the controller.

What it starts (all on 127.0.0.1, all stopped by PID at the end, also on errors and Ctrl-C):

1. PostgreSQL (Debian's ``postgresql``; installed with ``apt-get install -y postgresql`` when
   missing), run as the ``postgres`` user in a temporary folder, with a ``prefect`` database;
2. ``prefect server start`` with ``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``;
3. two *process* work pools standing in for eu-south-2 and eu-north-1, one
   ``prefect worker start --pool ... --limit N`` each;
4. one CaRE-decorated flow (:func:`load_flow`, in this file) deployed five times:
   ``ctl-es-8h``, ``ctl-es-3h`` (pool eu-south-2) and ``ctl-se-6h`` (pool eu-north-1) tagged
   ``care`` (policy: the deployment's ``care_policy`` parameter) for the controller; ``trg-eu-south-2`` / ``trg-eu-north-1``
   untagged, where the ``@care`` trigger path plans itself and dispatches
   (``run_deployment(scheduled_time=..., idempotency_key=...)``) across the two pools;
5. CaRE's controller (:func:`care_flows.orchestration.controller.control_once`), run in this
   process every ``--interval`` seconds, timed pass by pass.

The demo clock (:class:`care_flows.demo.clock.DemoClock`) plays one grid hour of a real day
(2023-03-26, embedded Electricity Maps traces, forecasts issued from history only) in
``--seconds-per-hour`` wall seconds. Policies are written in grid hours and stored scaled to
wall time; :class:`LoadPlanner` plans in grid time and answers in wall time, for the
controller and for the trigger runs alike. ``--runs`` flow runs are created up front as
*Scheduled* runs (what a cron schedule does), arriving uniformly over ``--span-hours`` grid
hours. Each run's parameter ``logical_id`` names the logical job; the flow body appends one
line per execution to ``executions.jsonl`` (a single ``O_APPEND`` write), so a job executed
twice or never shows up directly.

Measured: runs created, completed, lost (never executed), run twice, started inside their
planned window (``[plan start, plan end)``, wall time) or outside with the recorded reason
(Prefect's *Late* state / Pending and Running times show a worker or start-up backlog; a plan
warning; no plan), the controller's time per pass (p50/p95/max) and runs moved per pass, and
the total wall time. Exit code 1 if any job is lost, run twice, or outside its window without
a reason.

Run: ``.venv/bin/python benchmarks/scenario_postgres_load.py [--runs 500] [--seconds-per-hour 180]``
(``--quick``: 20 runs). Not part of ``make test``.

>>> p = _scale(load_policy(KINDS["es-8h"]["policy"]), 30 / 3600)
>>> p.expected_duration.total_seconds(), p.deadline_within.total_seconds()
(30.0, 240.0)
>>> _pct([1.0, 2.0, 3.0, 4.0], 50)
2.5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from prefect import flow  # noqa: E402

from care_flows.demo.clock import POLICY_DURATION_FIELDS, DemoClock, compress_series, scale_policy  # noqa: E402
from care_flows.orchestration import care  # noqa: E402
from care_flows.orchestration.plan import Plan, plan_run  # noqa: E402
from care_flows.policy import CarePolicy, load_policy  # noqa: E402
from care_flows.timeutil import iso, parse_time, utcnow  # noqa: E402

__all__ = ["run", "main", "load_flow", "LoadPlanner", "KINDS", "POOLS", "TRIGGER_POLICY"]

ENV_DIR = "CARE_LOAD_DIR"
ENV_SPH = "CARE_LOAD_SECONDS_PER_HOUR"
GRID_DAY = "2023-03-26"
DEFAULT_SPH = 180.0  # 90 s overloads a 2-core machine (docs/LOAD.md)
FLOW_NAME = "care-load"
EXECUTIONS = "executions.jsonl"
POOLS = {"eu-south-2": "care-load-eu-south-2", "eu-north-1": "care-load-eu-north-1"}

KINDS: dict[str, dict[str, Any]] = {
    "es-8h": {"deployment": "ctl-es-8h", "region": "eu-south-2", "weight": 0.35,
              "policy": {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h", "replan_every": "1h"}},
    "es-3h": {"deployment": "ctl-es-3h", "region": "eu-south-2", "weight": 0.25,
              "policy": {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "3h", "replan_every": "1h"}},
    "se-6h": {"deployment": "ctl-se-6h", "region": "eu-north-1", "weight": 0.30,
              "policy": {"home_region": "eu-north-1", "regions": ["eu-north-1"], "expected_duration": "1h", "deadline_within": "6h", "replan_every": "1h"}},
    "trigger": {"deployment": "trg-eu-south-2", "region": "eu-south-2", "weight": 0.10, "policy": None},
}
"""Run kinds: controller-managed deployments (with their grid-time policy) and the trigger path."""

TRIGGER_POLICY: dict[str, Any] = {
    "home_region": "eu-south-2",
    "regions": ["eu-south-2", "eu-north-1"],
    "expected_duration": "1h",
    "deadline_within": "4h",
    "targets": {"eu-south-2": {"deployment": "trg-eu-south-2"}, "eu-north-1": {"deployment": "trg-eu-north-1"}},
}
"""The ``@care`` policy of :func:`load_flow` (grid time): used by runs nobody planned before."""


_scale = scale_policy  # grid <-> wall time: every duration of a policy times a factor


def _wall_policy_doc(grid: dict[str, Any], scale: float) -> dict[str, Any]:
    """A grid-time policy dict with its durations scaled to wall time, as ``"<seconds>s"`` text.

    >>> _wall_policy_doc({"expected_duration": "1h", "deadline_within": "8h"}, 30 / 3600)
    {'expected_duration': '30s', 'deadline_within': '240s'}
    """
    out = dict(grid)
    for key in POLICY_DURATION_FIELDS:
        if out.get(key) is not None:
            out[key] = f"{pd.Timedelta(out[key]).total_seconds() * scale:g}s"
    return out


def _state_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or tempfile.gettempdir())


class LoadPlanner:
    """Plan in grid time on the embedded 2023 traces; answer in wall time (demo clock).

    Callable as the controller's ``planner(policy, now, signal=..., deadline=...)`` and as a
    ``@care(planner=...)``. ``policy`` is in wall time; forecasts are issued at the start of the
    grid hour of ``now`` (history strictly before it) and cached per region and issue hour.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._clock: DemoClock | None = None
        self._signal: Any = None
        self._cache: dict[tuple[str, pd.Timestamp], pd.Series] = {}

    def __repr__(self) -> str:
        return "LoadPlanner()"

    def clock(self) -> DemoClock:
        if self._clock is None:
            self._clock = DemoClock.load(self.folder or _state_dir())
        return self._clock

    def _forecast(self, region: str, issued: pd.Timestamp) -> pd.Series:
        key = (region, issued)
        if key not in self._cache:
            if self._signal is None:
                from care_flows.signals.trace import TraceSignal

                self._signal = TraceSignal.embedded()
            self._cache[key] = self._signal.forecast(region, issued, pd.Timedelta(hours=26))
        return self._cache[key]

    def __call__(self, policy: CarePolicy, now: pd.Timestamp, signal: Any = None, deadline: pd.Timestamp | None = None) -> Plan:
        clock = self.clock()
        grid_policy = _scale(policy, clock.speedup)
        gnow = clock.to_grid(now)
        gdl = clock.to_grid(deadline) if deadline is not None else gnow + pd.Timedelta(grid_policy.deadline_within)
        issued = gnow.floor("h")
        forecasts = {r: self._forecast(r, issued) for r in grid_policy.candidate_regions}
        p = plan_run(grid_policy, gnow, forecasts=forecasts, deadline=gdl)
        return Plan(
            region=p.region, zone=p.zone, instance_type=p.instance_type,
            start=clock.to_wall(p.start), end=clock.to_wall(p.end),
            segments=[(clock.to_wall(a), clock.to_wall(b)) for a, b in p.segments],
            decided_at=pd.Timestamp(now), deadline=clock.to_wall(gdl), home_region=p.home_region, now_here=p.now_here,
            expected_g=p.expected_g, expected_usd=p.expected_usd, expected_g_per_kwh=p.expected_g_per_kwh,
            baseline_g=p.baseline_g, baseline_g_per_kwh=p.baseline_g_per_kwh, latency_ms=p.latency_ms,
            source=f"embedded {GRID_DAY} trace at {clock.seconds_per_hour:g} s per grid hour", planner=f"{p.planner} (demo clock)",
            warnings=p.warnings, options=p.options, forecast=None if p.forecast is None else compress_series(p.forecast, clock),
        )


_SPH = float(os.environ.get(ENV_SPH) or DEFAULT_SPH)


@care(policy=_scale(load_policy(TRIGGER_POLICY), _SPH / 3600.0), planner=LoadPlanner())
@flow(name=FLOW_NAME)
def load_flow(logical_id: str, care_policy: dict[str, Any] | None = None) -> str:
    """Record this execution of job ``logical_id`` (one atomic line), then a little numpy work.

    ``care_policy`` (a deployment default) is what the controller plans with; the body ignores it.
    """
    from prefect.context import FlowRunContext

    from care_flows.orchestration.checkpoint import current_run

    state = current_run()
    ctx = FlowRunContext.get()
    plan = state.plan if state is not None else None
    rec = {
        "logical_id": logical_id,
        "flow_run_id": str(ctx.flow_run.id) if ctx is not None else None,
        "pid": os.getpid(),
        "body_start": iso(utcnow()),
        "region": None if state is None else state.region,
        "plan": None if plan is None else {"start": iso(plan.start), "end": iso(plan.end), "deadline": iso(plan.deadline),
                                           "now_here": plan.now_here, "region": plan.region, "warnings": list(plan.warnings)[:2]},
    }
    fd = os.open(_state_dir() / EXECUTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)
    float(np.linalg.norm(np.arange(10_000.0)))
    return logical_id


# ---------------------------------------------------------------------------------------------
# the scenario


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def _read_executions(folder: Path) -> list[dict[str, Any]]:
    path = folder / EXECUTIONS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _all_runs(client: Any, flow_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    out, offset = [], 0
    while True:
        page = client.read_flow_runs(flow_filter=FlowFilter(id=FlowFilterId(any_=[flow_id])), limit=200, offset=offset)
        out.extend(page)
        if len(page) < 200:
            return out
        offset += 200


def _open_count(client: Any, flow_id: Any) -> int:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    open_types = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
    return int(client.count_flow_runs(flow_filter=FlowFilter(id=FlowFilterId(any_=[flow_id])),
                                      flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=open_types)))))


def _why_outside(client: Any, run: Any, ex: dict[str, Any], started: pd.Timestamp) -> str | None:
    """The recorded reason a run started outside its planned window (None: no reason found)."""
    plan = ex.get("plan")
    if plan is None:
        return "no plan (planning failed): ran at once, CaRE decision note"
    if plan.get("warnings"):
        return "plan warning: " + plan["warnings"][0][:120]
    p_start, p_end = parse_time(plan["start"]), parse_time(plan["end"])
    if started < p_start - pd.Timedelta(seconds=2):
        return None  # early: nothing explains that
    states = sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp)
    late = any((s.name or "") == "Late" for s in states)
    pending = [pd.Timestamp(s.timestamp) for s in states if s.type.value == "PENDING"]
    picked = pending[0] if pending else None
    rel = lambda t: f"{(t - p_start).total_seconds():+.0f} s"  # noqa: E731
    if late or (picked is not None and picked >= p_end):
        return f"worker backlog: Prefect marked it Late={late}, picked up (Pending) at {rel(picked) if picked is not None else '?'}, Running at {rel(started)}"
    if picked is not None:
        return f"process start-up backlog: picked up (Pending) at {rel(picked)}, Running at {rel(started)} after the window opened"
    return None


def scenario(*, runs: int = 500, seconds_per_hour: float = DEFAULT_SPH, span_hours: float = 12.0, worker_limit: int = 8, interval_s: float = 2.0,
             prefetch_s: float = 30.0, min_lead_margin_s: float = 20.0, lookahead_hours: float = 3.0, drain_s: float = 600.0, seed: int = 7, keep: bool = False,
             say: Any = print) -> dict[str, Any]:
    """Start everything, create the runs, drive the controller, wait, measure, stop everything."""
    import _infra
    from prefect import Flow, get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    from care_flows.orchestration.controller import control_once

    t_total = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="care-load-"))
    state_dir = base / "state"
    state_dir.mkdir()
    os.chmod(base, 0o755)
    scale = seconds_per_hour / 3600.0
    pg = None
    stack = None
    result: dict[str, Any] = {"runs": runs, "seconds_per_hour": seconds_per_hour, "state_dir": str(state_dir)}
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        t = time.monotonic()
        pg = _infra.start_postgres(base, say=say)
        os.environ[ENV_DIR] = str(state_dir)  # after PostgreSQL: the marker finds only Prefect's children
        os.environ[ENV_SPH] = f"{seconds_per_hour:g}"
        stack = _infra.LocalPrefect(state_dir=state_dir, pools=POOLS, worker_limit=worker_limit, ui=False,
                                    server_env={"PREFECT_API_DATABASE_CONNECTION_URL": pg.connection_url()},
                                    env_extra={ENV_DIR: str(state_dir), ENV_SPH: f"{seconds_per_hour:g}", "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
                                               "PREFECT_LOGGING_TO_API_ENABLED": "false"},
                                    prefetch_s=prefetch_s, say=say)
        stack.start_server(timeout_s=240.0)
        result["startup_s"] = time.monotonic() - t
        say(f"Prefect server on PostgreSQL up after {result['startup_s']:.1f} s")
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            stack.create_pools()
            dep_ids: dict[str, Any] = {}
            src = Flow.from_source(source=str(HERE), entrypoint=f"{Path(__file__).name}:load_flow")
            quiet = contextlib.redirect_stdout(io.StringIO())  # deploy() prints a table per deployment
            quiet.__enter__()
            for key, kind in KINDS.items():
                if kind["policy"] is None:
                    continue
                dep_ids[kind["deployment"]] = src.deploy(name=kind["deployment"], work_pool_name=POOLS[kind["region"]], tags=["care"],
                                                         parameters={"care_policy": _wall_policy_doc(kind["policy"], scale)},
                                                         print_next_steps=False, ignore_warnings=True)
            for region, pool in POOLS.items():
                dep_ids[f"trg-{region}"] = src.deploy(name=f"trg-{region}", work_pool_name=pool, tags=["care-load-trigger"], print_next_steps=False, ignore_warnings=True)
            quiet.__exit__(None, None, None)
            say(f"Deployed {FLOW_NAME} {len(dep_ids)} times: {', '.join(dep_ids)}")
            stack.start_workers()
            with get_client(sync_client=True) as client:
                flow_id = client.read_deployment(dep_ids["ctl-es-8h"]).flow_id
                # the demo clock starts once the runs exist; the first arrival is one grid hour later
                rng = random.Random(seed)
                kinds = rng.choices(list(KINDS), weights=[k["weight"] for k in KINDS.values()], k=runs)
                arrivals = sorted(rng.uniform(1.0, 1.0 + span_hours) for _ in range(runs))
                expected = {f"job-{i:04d}": (kinds[i], arrivals[i]) for i in range(runs)}
                est_create_s = 15 + 0.3 * runs
                clock = DemoClock(wall_t0=utcnow() + pd.Timedelta(seconds=est_create_s), grid_t0=f"{GRID_DAY}T00:00:00Z", seconds_per_hour=seconds_per_hour)
                clock.save(state_dir)
                t = time.monotonic()
                for lid, (kind, hour) in expected.items():
                    at = clock.to_wall(clock.grid_t0 + pd.Timedelta(hours=hour))
                    client.create_flow_run_from_deployment(dep_ids[KINDS[kind]["deployment"]], parameters={"logical_id": lid}, name=lid,
                                                           state=Scheduled(scheduled_time=at.to_pydatetime()), tags=["care-load", f"care-load:{kind}"],
                                                           idempotency_key=f"care-load-{lid}")
                result["create_s"] = time.monotonic() - t
                say(f"Created {runs} Scheduled runs in {result['create_s']:.1f} s ({dict(Counter(kinds))}); "
                    f"demo clock: grid {GRID_DAY} 00:00 = {iso(clock.wall_t0)}, {seconds_per_hour:g} s per grid hour")
                if utcnow() > clock.wall_t0:
                    say("warning: creating the runs took longer than planned; the first arrivals may reach the workers before the controller")

                # the controller loop, timed; stops when every job ran and nothing is open, or at the time limit
                max_deadline_h = max(load_policy(k["policy"] or TRIGGER_POLICY).deadline_within.total_seconds() / 3600 for k in KINDS.values())
                wall_end = clock.to_wall(clock.grid_t0 + pd.Timedelta(hours=1 + span_hours + max_deadline_h + 1)) + pd.Timedelta(seconds=drain_s)
                planner = LoadPlanner(state_dir)
                min_lead = timedelta(seconds=prefetch_s + min_lead_margin_s)
                lookahead = timedelta(seconds=lookahead_hours * seconds_per_hour)
                passes: list[dict[str, Any]] = []
                pass_errors: list[str] = []
                first_action: dict[str, Any] = {}
                last_check, last_say = 0.0, time.monotonic()
                while utcnow() < wall_end:
                    t = time.perf_counter()
                    try:
                        actions = control_once(client, lookahead=lookahead, planner=planner, min_lead=min_lead)
                    except Exception as exc:  # noqa: BLE001 - a supervisor restarts `care controller`; so do we
                        actions, error = [], " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                        pass_errors.append(error)
                        say(f"  controller pass raised (the next pass retries): {error}")
                    dt = time.perf_counter() - t
                    c = Counter(a.action for a in actions)
                    passes.append({"duration_s": dt, "seen": len(actions), **{k: c.get(k, 0) for k in ("moved", "replanned", "kept", "skipped", "failed")}})
                    for a in actions:
                        if a.action != "skipped":
                            first_action.setdefault(a.flow_run_id, a)
                    if time.monotonic() - last_check > 5:
                        last_check = time.monotonic()
                        done = {e["logical_id"] for e in _read_executions(state_dir)}
                        open_runs = _open_count(client, flow_id)
                        if time.monotonic() - last_say > 30:
                            last_say = time.monotonic()
                            say(f"  grid {clock.to_grid(utcnow()).strftime('%H:%M')}: {len(done)}/{runs} jobs executed, {open_runs} runs open, "
                                f"{len(passes)} controller passes (last {dt * 1000:.0f} ms, saw {len(actions)})")
                        if len(done) >= runs and open_runs == 0:
                            break
                    time.sleep(max(0.0, interval_s - (time.perf_counter() - t)))
                result["timed_out"] = utcnow() >= wall_end
                result["controller_pass_errors"] = len(pass_errors)
                result["controller_pass_error_examples"] = sorted(set(pass_errors))[:5]
                (state_dir / "passes.json").write_text(json.dumps(passes))
                try:
                    result.update(_measure(client, flow_id, expected, state_dir, passes, first_action))
                except Exception as exc:  # keep the raw data: the server stops in the finally block
                    result["measure_error"] = f"{type(exc).__name__}: {exc}"
                    say(f"measuring failed ({result['measure_error']}); raw runs dumped to {state_dir / 'runs.json'}")
                    (state_dir / "runs.json").write_text(json.dumps([r.model_dump(mode="json") for r in _all_runs(client, flow_id)]))
        result["total_wall_s"] = time.monotonic() - t_total
        return result
    finally:
        signal.signal(signal.SIGTERM, old_term)
        stopped = stack.stop() if stack is not None else []
        left = _infra.stop_marked_processes(ENV_DIR, str(state_dir))  # flow runs outlive their worker's process group
        if left:
            stopped.append(f"{len(left)} flow-run processes (PIDs {', '.join(map(str, left[:10]))}{' ...' if len(left) > 10 else ''})")
        if pg is not None:
            _infra.stop_postgres(pg)
            stopped.append(f"postgres (PID {pg.pid})")
        say("Stopped: " + ", ".join(stopped))
        if not keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


def _measure(client: Any, flow_id: Any, expected: dict[str, Any], state_dir: Path, passes: list[dict[str, Any]], first_action: dict[str, Any]) -> dict[str, Any]:
    runs = _all_runs(client, flow_id)
    by_id = {str(r.id): r for r in runs}
    execs = _read_executions(state_dir)
    per_job = Counter(e["logical_id"] for e in execs)
    missing = sorted(set(expected) - set(per_job))
    open_jobs = {r.parameters.get("logical_id") for r in runs if r.state is not None and not r.state.is_final()}
    unfinished = [j for j in missing if j in open_jobs]  # still Scheduled/Late/Pending/Running at the time limit
    lost = [j for j in missing if j not in open_jobs]  # every run of the job is final, and none executed it
    twice = sorted(j for j, n in per_job.items() if n > 1)
    completed_jobs = {e["logical_id"] for e in execs if (r := by_id.get(e["flow_run_id"])) is not None and r.state is not None and r.state.is_completed()}
    inside = outside = unexplained = by_deadline = 0
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    lags: list[float] = []
    for e in execs:
        r = by_id.get(e["flow_run_id"])
        if r is None or r.start_time is None:
            continue
        started = pd.Timestamp(r.start_time)
        plan = e.get("plan")
        if plan is not None:
            p_start, p_end = parse_time(plan["start"]), parse_time(plan["end"])
            lags.append((started - p_start).total_seconds())
            ok_start = started >= p_start - pd.Timedelta(seconds=2) or plan.get("now_here")
            if started <= parse_time(plan["deadline"]) - (p_end - p_start):
                by_deadline += 1
            if ok_start and started < p_end:
                inside += 1
                continue
        outside += 1
        why = _why_outside(client, r, e, started)
        if why is None:
            unexplained += 1
            examples.append(f"{e['logical_id']} ({r.name}): started {iso(started)}, plan {plan}")
        else:
            reasons[why.split(":")[0]] += 1
            if len(examples) < 5:
                examples.append(f"{e['logical_id']} ({r.name}): {why}")
    durations = [p["duration_s"] for p in passes]
    busy = [p for p in passes if p["seen"]]
    moved = [p["moved"] for p in passes]
    acts = Counter(a.action for a in first_action.values())
    lost_states = {j: sorted({(r.state.name if r.state else "?") for r in runs if r.parameters.get("logical_id") == j}) for j in lost[:20]}
    return {
        "flow_runs_created": len(runs),
        "dispatched_runs": sum(1 for r in runs if "care:dispatched" in (r.tags or [])),
        "states": dict(Counter(r.state.name if r.state else "?" for r in runs)),
        "jobs": len(expected),
        "jobs_completed": len(completed_jobs),
        "jobs_lost": len(lost),
        "jobs_unfinished": len(unfinished),
        "unfinished_states": dict(Counter(r.state.name for r in runs if r.parameters.get("logical_id") in set(unfinished) and r.state is not None)),
        "lost_examples": lost_states,
        "jobs_run_twice": len(twice),
        "twice_examples": twice[:20],
        "executions": len(execs),
        "started_inside_window": inside,
        "started_outside_window": outside,
        "outside_unexplained": unexplained,
        "outside_reasons": dict(reasons),
        "outside_examples": examples[:8],
        "started_by_latest_start": by_deadline,
        "start_lag_s_p50": _pct(lags, 50),
        "start_lag_s_p95": _pct(lags, 95),
        "start_lag_s_max": max(lags) if lags else float("nan"),
        "controller_passes": len(passes),
        "controller_pass_ms_p50": 1000 * _pct(durations, 50),
        "controller_pass_ms_p95": 1000 * _pct(durations, 95),
        "controller_pass_ms_max": 1000 * max(durations) if durations else float("nan"),
        "controller_runs_seen_per_pass_max": max((p["seen"] for p in passes), default=0),
        "controller_moved_per_pass_mean": float(np.mean(moved)) if moved else 0.0,
        "controller_moved_per_pass_max": max(moved, default=0),
        "controller_busy_passes": len(busy),
        "controller_moved": acts.get("moved", 0),
        "controller_kept": acts.get("kept", 0),
        "controller_replanned": sum(p.get("replanned", 0) for p in passes),
        "controller_failed": acts.get("failed", 0),
    }


FIGURES = [
    ("flow_runs_created", "flow runs created (jobs + @care dispatches)"),
    ("dispatched_runs", "runs dispatched by @care trigger runs"),
    ("jobs", "jobs (logical runs)"),
    ("jobs_completed", "jobs completed"),
    ("jobs_lost", "jobs lost (all runs final, none executed it)"),
    ("jobs_unfinished", "jobs not executed yet at the time limit (a run still open)"),
    ("jobs_run_twice", "jobs executed more than once"),
    ("started_inside_window", "started inside the planned window"),
    ("started_outside_window", "started outside the planned window"),
    ("outside_unexplained", "  ... of which without a recorded reason"),
    ("started_by_latest_start", "started no later than the latest start (deadline - duration)"),
    ("start_lag_s_p50", "start lag after the planned start, s, p50"),
    ("start_lag_s_p95", "start lag after the planned start, s, p95"),
    ("start_lag_s_max", "start lag after the planned start, s, max"),
    ("controller_passes", "controller passes"),
    ("controller_pass_ms_p50", "controller time per pass, ms, p50"),
    ("controller_pass_ms_p95", "controller time per pass, ms, p95"),
    ("controller_pass_ms_max", "controller time per pass, ms, max"),
    ("controller_runs_seen_per_pass_max", "runs examined in one pass, max"),
    ("controller_moved_per_pass_mean", "runs moved per pass, mean"),
    ("controller_moved_per_pass_max", "runs moved per pass, max"),
    ("controller_moved", "runs moved by the controller"),
    ("controller_kept", "runs planned but kept at their time"),
    ("controller_replanned", "re-plans that moved a waiting run (receding horizon, every grid hour)"),
    ("controller_failed", "controller plan failures"),
    ("controller_pass_errors", "controller passes that raised (retried next pass)"),
    ("startup_s", "PostgreSQL + Prefect server start-up, s"),
    ("create_s", "creating the Scheduled runs, s"),
    ("total_wall_s", "total wall time, s"),
]


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"figure": label, "value": result.get(key, "")} for key, label in FIGURES if key in result]


def run(quick: bool = False, **options: Any) -> list[dict[str, Any]]:
    """Run the scenario (``quick``: 20 runs at 30 s per grid hour) and return the figures as rows."""
    if quick:
        options = {"runs": 20, "seconds_per_hour": 30.0, "span_hours": 3.0, "drain_s": 240.0, **options}
    return _rows(scenario(**options))


def _ok(result: dict[str, Any]) -> bool:
    return (result.get("jobs_lost") == 0 and result.get("jobs_unfinished") == 0 and result.get("jobs_run_twice") == 0
            and result.get("outside_unexplained") == 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="Scheduled runs (jobs) to create (default 500).")
    parser.add_argument("--seconds-per-hour", type=float, default=DEFAULT_SPH, help="Wall seconds per grid hour of the demo clock (default 180).")
    parser.add_argument("--span-hours", type=float, default=12.0, help="Grid hours over which the runs arrive (default 12).")
    parser.add_argument("--worker-limit", type=int, default=8, help="Concurrent flow runs per worker (prefect worker --limit; default 8).")
    parser.add_argument("--prefetch", type=float, default=30.0, help="Worker prefetch, wall s: a run's process starts this early and the server holds it until its time (default 30).")
    parser.add_argument("--min-lead-margin", type=float, default=20.0,
                        help="The controller leaves runs due within prefetch + this many wall s alone (a worker may hold them; default 20).")
    parser.add_argument("--interval", type=float, default=2.0, help="Wall seconds between controller passes (default 2).")
    parser.add_argument("--drain", type=float, default=600.0, help="Extra wall seconds allowed after the last deadline (default 600).")
    parser.add_argument("--seed", type=int, default=7, help="Random seed for arrival times and run kinds.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (logs, executions.jsonl) after the run.")
    parser.add_argument("--json", action="store_true", help="Also print the full result as JSON.")
    parser.add_argument("--quick", action="store_true", help="20 runs at 30 s per grid hour over 3 grid hours.")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds_per_hour <= 0 or args.span_hours <= 0 or args.worker_limit < 1 or args.interval <= 0:
        parser.error("--runs, --seconds-per-hour, --span-hours, --worker-limit and --interval must be positive")
    opts: dict[str, Any] = {"runs": args.runs, "seconds_per_hour": args.seconds_per_hour, "span_hours": args.span_hours, "worker_limit": args.worker_limit,
                            "interval_s": args.interval, "prefetch_s": args.prefetch, "min_lead_margin_s": args.min_lead_margin, "drain_s": args.drain, "seed": args.seed, "keep": args.keep}
    if args.quick:
        opts.update(runs=20, seconds_per_hour=30.0, span_hours=3.0, drain_s=240.0)
    result = scenario(**opts)
    from run import _table  # benchmarks/run.py's table printer

    print()
    print(_table(_rows(result)))
    print(f"\nstates: {result.get('states')}")
    print(f"outside-window reasons: {result.get('outside_reasons')}")
    for line in result.get("outside_examples", []):
        print(f"  {line}")
    for line in result.get("controller_pass_error_examples", []):
        print(f"  controller pass error: {line}")
    if result.get("jobs_unfinished"):
        print(f"unfinished at the time limit, by state of their open runs: {result.get('unfinished_states')}")
    if result.get("jobs_lost"):
        print(f"lost: {result.get('lost_examples')}")
    if result.get("jobs_run_twice"):
        print(f"run twice: {result.get('twice_examples')}")
    if args.json:
        print(json.dumps(result, default=str, indent=1))
    if not _ok(result):
        print("FAIL: a job was lost, not executed by the time limit, run twice, or started outside its window without a recorded reason")
        return 1
    print("OK: no job lost, none run twice, every start inside its window or explained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
