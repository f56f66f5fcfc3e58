"""The runs ``care demo`` makes: four CaRE policies replayed on a real grid day.

Every scenario is a Prefect flow (in :mod:`care_flows.demo.flows`) deployed to two local
*process* work pools that stand in for ``eu-south-2`` (Spain, grid zone ES) and ``eu-north-1``
(Sweden, SE). Policies are written in grid time (hours of the replayed day);
:func:`wall_policy` scales them to the demo clock for the ``@care`` decorator (so checkpoints
count wall seconds), and :class:`DemoPlanner` plans in grid time on the embedded 2023 trace
with :func:`care_flows.planning.decide` and maps the chosen window back to wall time. Each
decision is also written as JSON into the demo state folder for the report.

>>> [s.key for s in SCENARIOS]
['deferral', 'greener-region', 'right-sizing', 'checkpointed']
>>> p = wall_policy(scenario("deferral"), seconds_per_hour=4)
>>> p.expected_duration.total_seconds(), p.deadline_within.total_seconds(), p.targets["eu-north-1"].work_pool
(8.0, 60.0, 'care-demo-eu-north-1')
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from care_flows.demo.clock import CLOCK_FILE, DemoClock, compress_series, scale_policy
from care_flows.errors import ConfigError
from care_flows.orchestration.plan import Plan, plan_from_decision
from care_flows.policy import CarePolicy, RegionTarget, load_policy
from care_flows.timeutil import iso, parse_time, utcnow

__all__ = [
    "POOLS",
    "PLAN_MARGIN",
    "TRIGGER_DECIDES_AT",
    "PLAN_FILE",
    "DEFAULT_DAY",
    "DAYS",
    "DEFAULT_SECONDS_PER_HOUR",
    "Scenario",
    "SCENARIOS",
    "scenario",
    "start_budget_h",
    "wall_policy",
    "demo_dir",
    "DemoPlanner",
    "read_decisions",
    "read_marks",
    "mark",
]

POOLS: dict[str, str] = {"eu-south-2": "care-demo-eu-south-2", "eu-north-1": "care-demo-eu-north-1"}
"""Local process work pools standing in for the two AWS regions (region -> pool name)."""
DEFAULT_DAY = "2023-01-03"
"""The replayed grid day: its traces show all four behaviours with the default policies (and the
checkpointed flow's green slots lie hours apart, so its continuation run has time to start)."""
DAYS = ("2023-01-02", "2023-12-29")
"""The first and last day ``--day`` may replay: the embedded 2023 traces with a day of history
before and the deadlines' hours after."""
DEFAULT_SECONDS_PER_HOUR = 4.0
"""Wall seconds per grid hour."""
PLAN_MARGIN = pd.Timedelta(hours=1)
"""Grid time the demo planner keeps free before each deadline (see :meth:`Scenario.planning_policy`)."""
TRIGGER_DECIDES_AT = pd.Timedelta(minutes=1)
"""Grid time after the replayed day's midnight at which the trigger runs decide (they plan while they
wait for the clock, so their real runs are dispatched before the replay begins). They used to plan a
few hundredths of a wall second after the clock had started, about this late; exactly 00:00 plans
differently on the default day (both spatial jobs would start with the day's first hour, which no
dispatched run can: its process takes wall seconds to start)."""
PLAN_FILE = "plan-now"
"""Written into the demo folder when every trigger run is up: they plan then (at grid 00:01)."""
ENV_DIR = "CARE_DEMO_DIR"
ENV_SPH = "CARE_DEMO_SECONDS_PER_HOUR"


@dataclass(frozen=True)
class Scenario:
    """One demo run: a flow, its CaRE policy (grid time) and what it shows."""

    key: str
    flow_name: str
    shows: str
    policy: Mapping[str, Any]
    stages: int = 1
    """Work stages of the body (interruptible flows checkpoint between stages)."""
    sized_from_usage: bool = False
    """Right-size from the usage measured by the demo (instead of the policy's declared vCPU/GiB)."""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def grid_policy(self) -> CarePolicy:
        """The policy in grid time, with the stand-in pools as region targets."""
        return load_policy({**self.policy, "targets": {r: RegionTarget(work_pool=p) for r, p in POOLS.items()}})

    def planning_policy(self) -> CarePolicy:
        """:meth:`grid_policy` with :data:`PLAN_MARGIN` taken off the deadline: what the planner is
        given, so a window that ends at the planning deadline still leaves the demo clock's few wall
        seconds of run start-up and shut-down (most of a grid hour) before the real deadline."""
        p = self.grid_policy()
        return p.model_copy(update={"deadline_within": (pd.Timedelta(p.deadline_within) - PLAN_MARGIN).to_pytimedelta()})


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "deferral",
        "care-demo-deferral",
        "temporal shifting: a 2 h job due within 16 h waits for the greenest window at home",
        {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "2h", "deadline_within": "16h"},
    ),
    Scenario(
        "greener-region",
        "care-demo-greener-region",
        "spatial shifting: a 2 h job due within 7 h goes to the greener region",
        {"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "2h", "deadline_within": "7h"},
    ),
    Scenario(
        "right-sizing",
        "care-demo-right-sizing",
        "right-sizing: declared 8 vCPU / 32 GiB, sized from the usage measured on this machine",
        {"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "1h", "deadline_within": "7h",
         "vcpu": 8, "memory_gib": 32},
        sized_from_usage=True,
    ),
    Scenario(
        "checkpointed",
        "care-demo-checkpointed",
        "interruptible: a 3 h job in 3 stages runs in Sweden's greenest slots, checkpointing between them",
        {"home_region": "eu-north-1", "regions": ["eu-north-1"], "expected_duration": "3h", "deadline_within": "20h",
         "interruptible": True, "max_segments": 3},
        stages=3,
    ),
)


def start_budget_h(scenarios: tuple[Scenario, ...] = SCENARIOS, first_window_h: float = 6.0) -> float:
    """Grid hours a run may take to start and still meet its deadline: the least slack (deadline -
    expected duration - :data:`PLAN_MARGIN`) of any scenario, and at most ``first_window_h`` (the
    first deferred window).
    A run dispatched to start now starts only after its flow-run process is up (seconds of wall
    time, hours of grid time), so the demo clock must play this many grid hours slower than that.

    >>> start_budget_h()
    4.0
    """
    slack = [(pd.Timedelta(s.policy["deadline_within"]) - pd.Timedelta(s.policy["expected_duration"]) - PLAN_MARGIN).total_seconds() / 3600.0
             for s in scenarios]
    return float(min([first_window_h, *slack]))


def scenario(key: str) -> Scenario:
    """The scenario called ``key``."""
    for s in SCENARIOS:
        if s.key == key:
            return s
    raise ConfigError(f"unknown demo scenario {key!r}; known: {', '.join(s.key for s in SCENARIOS)}")


def wall_policy(sc: Scenario, seconds_per_hour: float) -> CarePolicy:
    """``sc``'s policy with every duration played on the demo clock (for ``@care`` and checkpoints)."""
    return scale_policy(sc.planning_policy(), seconds_per_hour / 3600.0)


def demo_dir() -> Path:
    """The demo state folder (``$CARE_DEMO_DIR``): clock, config, decisions, stage marks."""
    value = os.environ.get(ENV_DIR)
    if not value:
        raise ConfigError(f"{ENV_DIR} is not set: demo flows run under `care demo`, which sets it")
    return Path(value)


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _flow_run_id() -> str | None:
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None
    except Exception:  # noqa: BLE001
        return None


def _price(region: str, instance_type: str, default: float) -> float:
    """On-demand USD per hour of ``instance_type`` in ``region`` (``default`` when not listed)."""
    from care_flows.data import price_table

    t = price_table()
    hit = t[(t["region"] == region) & (t["instance_type"] == instance_type)]
    return float(hit["usd_per_hour"].iloc[0]) if len(hit) else float(default)


class DemoPlanner:
    """A ``@care(planner=...)`` callable that plans in grid time and answers in wall time.

    It reads the clock from the demo folder, asks the embedded 2023 trace for a forecast issued
    at the grid "now" (history strictly before it), calls :func:`~care_flows.planning.decide`
    with the scenario's grid policy (and the measured usage for right-sizing), records the
    decision, and returns a :class:`~care_flows.orchestration.plan.Plan` whose times (window,
    segments, deadline, forecast index) are wall-clock instants. Energy, gCO2eq and USD stay
    the grid-time figures of the real job.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"DemoPlanner({self.key!r})"

    def _wait_for(self, folder: Path, name: str, timeout_s: float = 600.0) -> None:
        end = time.monotonic() + timeout_s
        while not (folder / name).exists():
            if time.monotonic() > end:
                raise ConfigError(f"the demo clock did not start within {timeout_s:.0f} s; is `care demo` still running?")
            time.sleep(0.05)

    def _say(self, folder: Path, what: str) -> None:
        (folder / what).mkdir(exist_ok=True)
        (folder / what / self.key).write_text(str(os.getpid()))

    def _decide(self, folder: Path, sig: Any, grid_now: pd.Timestamp) -> dict[str, Any]:
        """The decision at ``grid_now`` (grid time): CaRE's ``decide`` on the embedded trace's forecasts."""
        from care_flows.planning.decide import decide

        sc = scenario(self.key)
        grid_policy = sc.planning_policy()
        deadline = grid_now + pd.Timedelta(grid_policy.deadline_within)
        forecasts = {r: sig.forecast(r, grid_now, grid_policy.deadline_within) for r in grid_policy.candidate_regions}
        usage = _config(folder).get("usage") if sc.sized_from_usage else None
        decision = decide(grid_policy, forecasts, grid_now, usage=usage)
        declared = decide(grid_policy, forecasts, grid_now) if usage else None
        plan = plan_from_decision(decision, policy=grid_policy, now=grid_now, deadline=deadline, forecasts=forecasts)
        return {"grid_now": grid_now, "grid_policy": grid_policy, "deadline": deadline, "forecasts": forecasts, "usage": usage,
                "decision": decision, "declared": declared, "plan": plan}

    def __call__(self, policy: CarePolicy, now: pd.Timestamp, signal: Any = None) -> Plan:
        from care_flows.signals.trace import TraceSignal

        folder = demo_dir()
        sig = TraceSignal.embedded()
        if (folder / CLOCK_FILE).exists():  # the clock runs: plan at the grid "now"
            clock = DemoClock.load(folder)
            now = pd.Timestamp(now)
            planned = self._decide(folder, sig, clock.to_grid(now))
        else:
            # a trigger run at demo start-up: it decides at grid 00:01 of the replayed day, so it plans once every
            # trigger is up, and the runner saves the clock once every trigger has planned. Dispatching after the
            # clock had started took 1-9 wall s with 4 triggers on 2 cores (hours of grid time), and a run
            # whose window opened 4-5 grid hours later could start after it
            self._say(folder, "ready")  # up: the runner measures how long the processes took to start
            self._wait_for(folder, PLAN_FILE)  # every trigger is up: plan now (not while others still start)
            decide_at = parse_time(str(_config(folder).get("day") or DEFAULT_DAY)[:10] + "T00:00:00Z", name="day") + TRIGGER_DECIDES_AT
            planned = self._decide(folder, sig, decide_at)
            self._say(folder, "planned")
            self._wait_for(folder, CLOCK_FILE)
            clock = DemoClock.load(folder)
            now = clock.to_wall(decide_at)  # the instant it decided at, in wall time
            if planned["decision"].is_now_here:  # it runs the body itself: not before its time
                time.sleep(max(0.0, (now - utcnow()).total_seconds()))
            # otherwise it answers at once: the runner starts the clock a few wall seconds after saving it,
            # so the real run is dispatched (and its process starting) before the replay begins
        return self._answer(folder, clock, now, planned)

    def _answer(self, folder: Path, clock: DemoClock, now: pd.Timestamp, planned: Mapping[str, Any]) -> Plan:
        """The decision as a wall-clock :class:`Plan`; also recorded in the demo folder for the report."""
        grid_policy, decision, declared, usage = planned["grid_policy"], planned["decision"], planned["declared"], planned["usage"]
        plan, deadline, forecasts, grid_now = planned["plan"], planned["deadline"], planned["forecasts"], planned["grid_now"]
        wall = Plan(
            region=plan.region,
            zone=plan.zone,
            instance_type=plan.instance_type,
            start=clock.to_wall(plan.start),
            end=clock.to_wall(plan.end),
            segments=[(clock.to_wall(a), clock.to_wall(b)) for a, b in plan.segments],
            decided_at=pd.Timestamp(now),
            deadline=clock.to_wall(deadline),
            home_region=plan.home_region,
            now_here=bool(decision.is_now_here),
            expected_g=plan.expected_g,
            expected_usd=plan.expected_usd,
            expected_g_per_kwh=plan.expected_g_per_kwh,
            expected_kwh=plan.expected_kwh,
            baseline_kwh=plan.baseline_kwh,
            baseline_g=plan.baseline_g,
            baseline_g_per_kwh=plan.baseline_g_per_kwh,
            baseline_usd=plan.baseline_usd,
            baseline_instance_type=plan.baseline_instance_type,
            latency_ms=plan.latency_ms,
            source=f"embedded 2023 trace replayed at {clock.seconds_per_hour:g} s per grid hour",
            planner="decide (demo clock)",
            warnings=plan.warnings,
            sizing=(f"usage measured by the demo before it started: p95 + 20 % = {usage['peak_vcpu']:g} vCPU, {usage['peak_memory_gib']:g} GiB"
                    if usage else f"declared need {grid_policy.vcpu:g} vCPU, {grid_policy.memory_gib:g} GiB"),
            options=plan.options,
            forecast=None if plan.forecast is None else compress_series(plan.forecast, clock),
        )
        record = {
            "scenario": self.key,
            "flow_run_id": _flow_run_id(),
            "decided_at_wall": iso(pd.Timestamp(now)),
            "decided_at_grid": iso(grid_now),
            "decision": decision.to_dict(),
            "wall_segments": [[iso(a), iso(b)] for a, b in wall.segments],
            "usage": usage,
            "declared": None if declared is None else {
                "instance_type": declared.chosen.instance_type, "usd_per_hour": declared.chosen.usd_per_hour,
                "vcpu": grid_policy.vcpu, "memory_gib": grid_policy.memory_gib, "kwh": declared.chosen.kwh,
                # the declared size's price where the right-sized run went (what right-sizing alone saved)
                "usd_per_hour_in_chosen_region": _price(decision.chosen.region, declared.chosen.instance_type, declared.chosen.usd_per_hour),
            },
            "forecasts": {r: [[iso(t), float(v)] for t, v in s.items()] for r, s in forecasts.items()},
        }
        out = folder / "decisions"
        out.mkdir(exist_ok=True)
        name = f"{self.key}-{record['flow_run_id'] or os.getpid()}.json"
        (out / (name + ".tmp")).write_text(json.dumps(record, indent=1))
        (out / (name + ".tmp")).replace(out / name)
        return wall


def read_decisions(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The first decision recorded per scenario (the one its trigger run made)."""
    out: dict[str, dict[str, Any]] = {}
    files = sorted((Path(folder) / "decisions").glob("*.json"), key=lambda p: p.stat().st_mtime)
    for p in files:
        rec = json.loads(p.read_text())
        out.setdefault(rec["scenario"], rec)
    return out


def mark(stage: str) -> None:
    """Record that a stage body executed (one line per execution), for the resume check."""
    with open(demo_dir() / "marks.txt", "a") as fh:
        fh.write(f"{stage}\n")


def read_marks(folder: str | Path) -> dict[str, int]:
    """How many times each stage body executed."""
    path = Path(folder) / "marks.txt"
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts
