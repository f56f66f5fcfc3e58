"""``run_demo``: the whole demo, from an empty machine to a report folder.

1. measure the right-sizing workload's CPU and memory on this machine (a short calibration);
2. start a local Prefect server (or use the API given as ``--api-url``; never ``$PREFECT_API_URL``), register the CaRE blocks, create
   the two local work pools standing in for eu-south-2 and eu-north-1, deploy the demo flows,
   start one worker per pool (:class:`~care_flows.demo.runner.DemoStack`);
3. start the demo clock and trigger every scenario's deployment in its home pool: each trigger
   run plans with CaRE and runs now, or dispatches the real run to a later window / the other
   pool / a right-sized instance type, through Prefect;
4. follow the flow runs until all are final, printing what happens in grid time;
5. summarize (expected vs realized vs baseline), write the report, stop everything it started.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from care_flows.demo.clock import DemoClock
from care_flows.demo.report import actual_trace, summarize, summary_table, write_report
from care_flows.demo.runner import DemoStack
from care_flows.demo.scenario import (
    DAYS,
    DEFAULT_DAY,
    DEFAULT_SECONDS_PER_HOUR,
    ENV_DIR,
    ENV_SPH,
    PLAN_FILE,
    POOLS,
    SCENARIOS,
    read_decisions,
    read_marks,
    start_budget_h,
)
from care_flows.errors import ConfigError, OrchestrationError
from care_flows.timeutil import parse_time, utcnow

__all__ = ["DemoOptions", "run_demo", "calibrate_usage", "auto_seconds_per_hour", "dispatch_lead_s", "progress_line", "demo_notes"]

_REGION_OF_POOL = {pool: region for region, pool in POOLS.items()}
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class DemoOptions:
    """What ``care demo`` was asked to do."""

    out: Path = Path("care-report")
    seconds_per_hour: float | None = None
    """The fastest clock: wall seconds per grid hour (None: 4). The demo slows it down when this
    machine starts flow-run processes too slowly for runs to start on time at that rate."""
    day: str = DEFAULT_DAY
    keep_ui: bool = False
    timeout_s: float | None = None
    """Give up following the runs after this long (default: 26 grid hours + 120 s)."""
    ready_timeout_s: float = 240.0
    """How long the trigger runs may take to start (a Python process each) before the demo gives up."""
    api_url: str | None = None
    """Use this Prefect API instead of starting a local server (``--api-url``; never read from
    ``$PREFECT_API_URL``). What the demo creates there is removed at the end, its unfinished runs
    cancelled first (``keep_ui``: only cancelled)."""

    def validate(self) -> pd.Timestamp:
        """Check the options; returns the replayed day (midnight UTC)."""
        if self.seconds_per_hour is not None and not 0.5 <= self.seconds_per_hour <= 60:
            raise ConfigError(f"--seconds-per-hour {self.seconds_per_hour:g} is outside 0.5-60; use e.g. 4")
        text = str(self.day).strip()
        day = parse_time(text + "T00:00:00Z" if len(text) == 10 else text, name="--day").floor("D")
        lo, hi = (pd.Timestamp(d, tz="UTC") for d in DAYS)
        if not lo <= day <= hi:
            raise ConfigError(f"--day {self.day} is outside the embedded 2023 traces; give a day from {DAYS[0]} to {DAYS[1]}")
        if self.api_url is not None:
            self._check_api_url(str(self.api_url))
            self._check_api_listens(str(self.api_url))
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s >= 0):
            raise ConfigError(f"--timeout {self.timeout_s:g} must be a number of seconds >= 0 (0: 26 grid hours + 120 s)")
        # the report is written after minutes of running: a path that cannot become a folder fails now, not then
        out = Path(self.out).expanduser()
        blocker = next((p for p in (out, *out.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ConfigError(f"--out {self.out} cannot be the report folder: {blocker} is a file; give a folder path")
        if blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
            raise ConfigError(f"--out {self.out} cannot be written: no write permission in {blocker}; give a folder you may write to")
        try:  # what access() cannot tell (/proc, a read-only mount): the folder is made and written to now
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".care-demo-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"--out {self.out} cannot be written ({exc.strerror or type(exc).__name__}); give a folder you may write to") from None
        return day


    @staticmethod
    def _check_api_listens(url: str) -> None:
        """A ConfigError when nothing listens at ``url`` (a refused connection), before the workload is
        measured and the report folder made (review 46c L3); a slow or other answer is the run's to wait for."""
        import urllib.request

        from care_flows.demo.runner import _refused

        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2):
                return
        except OSError as exc:
            if _refused(exc):
                raise ConfigError(f"cannot reach the Prefect API at {url} (connection refused); start it (prefect server start) "
                                  "or fix --api-url") from None

    @staticmethod
    def _check_api_url(url: str) -> None:
        """An http(s) URL without credentials, else a one-line error that never echoes them (urllib
        would also take ``user:pw@host`` for a host name and wait out its timeout). Any ``@`` counts:
        a password may hold ``#``, ``?`` or ``/``, and an API URL has no other use for one.

        >>> DemoOptions._check_api_url("http://[::1]:4200/api")
        >>> DemoOptions._check_api_url("http://127.0.0.1:4200/api?token=SEKRET123")
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: --api-url http://127.0.0.1:4200/api?... has a query or fragment; give the API's base URL, ...
        >>> DemoOptions._check_api_url("user:s3cret@127.0.0.1:4200/api")
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: --api-url ***@127.0.0.1:4200/api has credentials in it; give the URL without them and set PREFECT_API_AUTH_STRING (basic auth) or PREFECT_API_KEY in the environment
        """
        if "@" in url:  # user information (a password may hold '#', '?' or '/'): never echoed, whatever else is wrong
            scheme = m.group(0) if (m := re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)) else ""
            shown = scheme + "***@" + url.rsplit("@", 1)[1]
            raise ConfigError(f"--api-url {shown} has credentials in it; give the URL without them "
                              "and set PREFECT_API_AUTH_STRING (basic auth) or PREFECT_API_KEY in the environment")
        cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=None)
        shown = url if cut is None else url[:cut + 1] + "..."  # a query (?token=...) is never echoed
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"--api-url {shown} is not an http(s) URL; give e.g. http://127.0.0.1:4200/api, or leave it out to start a local server")
        if cut is not None:  # Prefect appends its paths to the URL: a query breaks every call
            raise ConfigError(f"--api-url {shown} has a query or fragment; give the API's base URL, e.g. http://127.0.0.1:4200/api "
                              "(credentials go in PREFECT_API_KEY or PREFECT_API_AUTH_STRING)")


def calibrate_usage(seconds: float = 1.5) -> dict[str, float]:
    """Measure the right-sizing flow's workload here: p95 vCPU and GiB + 20 % headroom (UsageSampler)."""
    from care_flows.demo.flows import workload
    from care_flows.forecast.usage import usage_need
    from care_flows.usage_capture import UsageSampler

    end = time.monotonic() + seconds
    with UsageSampler(interval_s=0.25) as sampler:  # not shorter: CPU-time ticks make short intervals noisy
        while time.monotonic() < end:
            workload(200_000)
    samples = sampler.samples[1:] or sampler.samples
    need = usage_need([s.cpu_vcpu for s in samples], memory_forecast=[s.memory_gib for s in samples])
    return {"peak_vcpu": round(max(need.peak_vcpu, 0.25), 3), "peak_memory_gib": round(float(need.peak_memory_gib or 0.5), 3),
            "mean_vcpu": round(max(need.mean_vcpu, 0.05), 3), "samples": len(samples)}


def _run_dict(fr: Any, scenario_of: dict[str, str], triggers: set[str]) -> dict[str, Any]:
    jv = dict(fr.job_variables or {})
    marker = jv.get("care") or {}
    rid = str(fr.id)
    role = "trigger" if rid in triggers else ("continuation" if int(marker.get("segment", 0) or 0) > 0 else "dispatched")
    ts = lambda v: None if v is None else pd.Timestamp(v).tz_convert("UTC")  # noqa: E731
    return {
        "id": rid,
        "name": fr.name,
        "scenario": scenario_of.get(str(fr.deployment_id), "?"),
        "role": role,
        "state": fr.state.type.value if fr.state is not None else "PENDING",
        "state_name": fr.state.name if fr.state is not None else "Pending",
        "pool": fr.work_pool_name or "",
        "instance_type": jv.get("instance_type"),
        "root": str(marker.get("root")) if marker.get("root") else None,
        "expected_start": ts(fr.expected_start_time),
        "start": ts(fr.start_time),
        "end": ts(fr.end_time),
    }


def _read_runs(client: Any, deployment_ids: list[str], since: pd.Timestamp, scenario_of: dict[str, str], triggers: set[str]) -> list[dict[str, Any]]:
    from uuid import UUID

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    found = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(d) for d in deployment_ids])), limit=200)
    return [_run_dict(fr, scenario_of, triggers) for fr in found if pd.Timestamp(fr.created) >= since]


def _follow(stack: DemoStack, clock: DemoClock, triggers: dict[str, str], console: Any, timeout_s: float, *, since: pd.Timestamp) -> list[dict[str, Any]]:
    """Poll the runs until every one is final; print each state change in grid time."""
    from prefect import get_client

    scenario_of = {dep: key for key, deps in stack.deployments.items() for dep in deps.values()}
    trig_ids = set(triggers.values())
    seen: dict[str, str] = {}
    day = clock.grid_t0
    end = time.monotonic() + timeout_s
    runs: list[dict[str, Any]] = []

    def grid(t: pd.Timestamp | None = None) -> str:
        g = clock.to_grid(t if t is not None else utcnow())
        m = int((g - day).total_seconds() // 60)
        return f"{m // 60:02d}:{m % 60:02d}"

    with get_client(sync_client=True) as client:
        while True:
            runs = _read_runs(client, list(scenario_of), since, scenario_of, trig_ids)
            for r in sorted(runs, key=lambda r: r["expected_start"] or clock.wall_t0):
                key = f"{r['state_name']}"
                if seen.get(r["id"]) == key:
                    continue
                console.print(progress_line(r, grid, grid(), first_seen=r["id"] not in seen), markup=False)  # "[grid ..]" is not markup
                seen[r["id"]] = key
            bad = [f"worker for {pool} exited" for pool, p in stack.workers.items() if p.poll() is not None]
            if bad:
                raise OrchestrationError("; ".join(bad) + f"; see {stack.logs}")
            by_id = {r["id"]: r for r in runs}
            triggers_final = all(by_id.get(t, {}).get("state") in _FINAL for t in trig_ids)
            if triggers_final and runs and all(r["state"] in _FINAL for r in runs):
                return runs
            if time.monotonic() > end:
                console.print(f"[bold red]Gave up waiting after {timeout_s:.0f} s; the report shows the runs as they are.[/]")
                return runs
            time.sleep(0.5)


def auto_seconds_per_hour(startup_s: float, fastest: float = DEFAULT_SECONDS_PER_HOUR, budget_h: float | None = None) -> float:
    """A clock slow enough that a run dispatched at grid 00:00 to start now starts within its
    slack (and a deferred run's process is up before the first window): starting the trigger
    runs' processes took ``startup_s``, so a dispatched run needs about as long; ``budget_h``
    (default :func:`~care_flows.demo.scenario.start_budget_h`, the least slack of any scenario,
    4 grid hours) must hold it with a 20 % + 3 s margin. Never faster than ``fastest``, at most
    15 s per grid hour.

    >>> auto_seconds_per_hour(8), auto_seconds_per_hour(15), auto_seconds_per_hour(38), auto_seconds_per_hour(300)
    (4.0, 5.5, 12.5, 15.0)
    >>> auto_seconds_per_hour(8, fastest=3), auto_seconds_per_hour(15, budget_h=6.0)
    (3.5, 4.0)
    """
    budget = start_budget_h() if budget_h is None else budget_h
    need = (1.2 * startup_s + 3.0) / budget
    return float(max(fastest, min(15.0, math.ceil(need * 2) / 2)))


def dispatch_lead_s(startup_s: float) -> float:
    """Wall seconds between saving the demo clock and its grid 00:00: the trigger runs (which planned
    while they waited) answer at once, and dispatching their real runs took about as long as their
    processes took to start (4 of them at a time on 2 cores), so a dispatched run is created and its
    process starting before the replay begins instead of hours of grid time into it.

    >>> dispatch_lead_s(2.0), dispatch_lead_s(8.6)
    (5.0, 10.3)
    """
    return round(max(5.0, 1.2 * startup_s), 1)


def progress_line(r: dict[str, Any], grid: Callable[[Any], str], now: str, first_seen: bool) -> str:
    """One progress line: a state change of run ``r`` in grid time (``grid`` maps a wall instant to HH:MM).

    The planned start is given for a scheduled run, and for a run first seen past Scheduled.

    >>> r = {"scenario": "greener-region", "role": "dispatched", "name": "swift-fox", "state": "PENDING", "state_name": "Pending",
    ...      "expected_start": "w", "instance_type": "t3.nano", "pool": "care-demo-eu-north-1"}
    >>> progress_line(r, lambda t: "06:00", "06:02", first_seen=True)
    '[grid 06:02] greener-region  dispatched   swift-fox                Pending,   planned for grid 06:00, instance type t3.nano in care-demo-eu-north-1 (stand-in for eu-north-1)'
    >>> progress_line({**r, "state_name": "Running"}, lambda t: "06:00", "06:03", first_seen=False)
    '[grid 06:03] greener-region  dispatched   swift-fox                Running, instance type t3.nano in care-demo-eu-north-1 (stand-in for eu-north-1)'
    """
    where = f"{r['pool']} (stand-in for {_REGION_OF_POOL.get(r['pool'], '?')})"
    extra = []
    if r["state"] == "SCHEDULED" and r.get("expected_start") is not None:
        extra.append(f"for grid {grid(r['expected_start'])}")
    elif first_seen and r.get("expected_start") is not None and r.get("role") != "trigger":
        extra.append(f"planned for grid {grid(r['expected_start'])}")
    if r.get("instance_type"):
        extra.append(f"instance type {r['instance_type']}")
    state = r["state_name"] + ("," if extra else "")
    tail = (" " + ", ".join(extra)) if extra else ""
    return f"[grid {now}] {r['scenario']:<15} {r['role']:<12} {r['name']:<24} {state:<10}{tail} in {where}"


def _wait_ready(stack: DemoStack, state: Path, triggers: dict[str, str], timeout_s: float, what: str = "ready") -> float:
    """Wait until every trigger run is up (``what="planned"``: has planned) and waits; returns the seconds waited."""
    t = time.monotonic()
    ready = state / what
    while True:
        done = {p.name for p in ready.iterdir()} if ready.exists() else set()
        if set(triggers) <= done:
            return time.monotonic() - t
        dead = [pool for pool, p in stack.workers.items() if p.poll() is not None]
        if dead:
            raise OrchestrationError(f"the worker for {', '.join(dead)} exited; see {stack.logs}")
        if time.monotonic() - t > timeout_s:
            missing = ", ".join(sorted(set(triggers) - done))
            raise OrchestrationError(f"trigger runs of {missing} did not {'start' if what == 'ready' else 'plan'} within {timeout_s:.0f} s; see {stack.logs}")
        time.sleep(0.1)


def demo_notes(summary: dict[str, Any], *, day: pd.Timestamp, usage: dict[str, Any]) -> list[str]:
    """The report's notes: the clock, the stand-ins, the trigger runs' measured length, right-sizing.

    >>> notes = demo_notes({"seconds_per_hour": 4.0, "wall_t0": "2026-01-01T12:00:00+00:00", "trigger_wall_s": [6.8, 10.9],
    ...                     "startup_s": 14.0, "start_budget_grid_h": 4.0}, day=pd.Timestamp("2023-01-03T00:00Z"),
    ...                    usage={"peak_vcpu": 0.3, "peak_memory_gib": 0.2})
    >>> notes[2]
    'Trigger runs only plan (6.8-10.9 wall s here, process start-up included) and are not counted; bodies wait out their expected duration after a small real pandas workload.'
    """
    sph = summary["seconds_per_hour"]
    trig = summary.get("trigger_wall_s")
    took = f"{trig[0]:g}-{trig[1]:g} wall s here, process start-up included" if trig else "a few seconds"
    notes = [
        f"Demo clock: one grid hour = {sph:g} wall seconds; grid 00:00 of {day.date()} = {summary['wall_t0']} (wall).",
        "Work pools care-demo-eu-south-2 and care-demo-eu-north-1 are local process pools standing in for the AWS regions.",
        f"Trigger runs only plan ({took}) and are not counted; bodies wait out their expected duration after a small real pandas workload.",
        f"Right-sizing used the usage measured here: {usage['peak_vcpu']:g} vCPU, {usage['peak_memory_gib']:g} GiB (p95 + 20 % headroom).",
    ]
    if summary.get("startup_s") is not None:
        notes.append(f"Starting the trigger runs' processes took {summary['startup_s']:g} s; a run dispatched to start now needs about as long, "
                     f"so the clock was set for it to start within {summary.get('start_budget_grid_h', 0):g} grid hours "
                     f"({summary.get('start_budget_grid_h', 0) * sph:g} wall s), the least slack of any scenario.")
    return notes


def _clean_external(stack: DemoStack, console: Any, *, keep: bool, since: pd.Timestamp | None) -> None:
    """On a Prefect API the demo did not start: cancel its unfinished runs, then (unless ``keep``)
    delete what it created there (its runs and their artifacts, deployments, pools, policy blocks); say so."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, DeploymentFilter, DeploymentFilterId
    from prefect.states import Cancelled

    done: list[str] = []
    try:
        with stack.client_settings(), get_client(sync_client=True) as client:
            dep_ids = [UUID(d) for deps in stack.deployments.values() for d in deps.values()]
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=dep_ids)), limit=200) if dep_ids else []
            runs = [r for r in runs if since is None or pd.Timestamp(r.created) >= since]
            unfinished = [r for r in runs if r.state is None or r.state.type.value not in _FINAL]
            for r in unfinished:
                client.set_flow_run_state(r.id, Cancelled(message="care demo ended before this run finished"), force=True)
            done.append(f"cancelled {len(unfinished)} unfinished run(s)")
            if not keep:
                ids = [r.id for r in runs]
                arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))) if ids else []
                for a in arts:
                    client.delete_artifact(a.id)
                for r in runs:
                    client.delete_flow_run(r.id)
                for d in dep_ids:
                    client.delete_deployment(d)
                for pool in stack.pools.values():
                    client.delete_work_pool(pool)
                blocks = 0
                for sc in SCENARIOS:
                    try:
                        client.delete_block_document(client.read_block_document_by_name(f"care-demo-{sc.key}", "care-policy").id)
                        blocks += 1
                    except Exception:  # noqa: BLE001 - not saved, or another type slug
                        pass
                done.append(f"deleted {len(runs)} run(s), {len(arts)} artifact(s), {len(dep_ids)} deployment(s), "
                            f"{len(stack.pools)} work pool(s) and {blocks} policy block(s) it had created")
    except Exception as exc:  # noqa: BLE001 - say what is left, never hide the demo's own result
        done.append(f"clean-up stopped: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    left = "" if not keep else " (--keep-ui: its runs, deployments, pools and care-demo-* blocks are left there to browse)"
    console.print(f"On the Prefect API at {stack.api_url} (not started by the demo): " + "; ".join(done) + left + ".")


def run_demo(opts: DemoOptions, console: Any, *, api_url: str | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary (also in ``summary.json``)."""
    day = opts.validate()
    sph = float(opts.seconds_per_hour or DEFAULT_SECONDS_PER_HOUR)
    out = Path(opts.out).resolve()
    api_url = api_url if api_url is not None else opts.api_url  # never $PREFECT_API_URL: the demo writes pools, deployments, runs
    state = Path(tempfile.mkdtemp(prefix="care-demo-"))
    t_start = time.monotonic()
    console.print(f"[bold]CaRE demo[/]: replaying {day.date()} (real 2023 grid data, embedded traces ES and SE) on a demo clock "
                  f"where one grid hour plays in a few wall seconds ({'set below' if opts.seconds_per_hour is None else f'{sph:g} s'}).")
    console.print("The two AWS regions are played by two LOCAL Prefect process work pools (local stand-ins; no AWS account, no network).")
    console.print(f"The report goes to {out} (--out).", markup=False)  # before minutes of running: a mistyped path shows now
    usage = calibrate_usage()
    console.print(f"Measured the right-sizing workload here: p95 + 20 % headroom = {usage['peak_vcpu']:g} vCPU, {usage['peak_memory_gib']:g} GiB.")
    (state / "config.json").write_text(json.dumps({"day": str(day.date()), "usage": usage}))
    stack = DemoStack(state, api_url=api_url, keep_server=opts.keep_ui, env_extra={ENV_DIR: str(state), ENV_SPH: repr(sph), "CARE_USAGE_DIR": str(state / "usage"), "CARE_USAGE_STORE": ""}, say=console.print,
                      prefetch_s=max(60.0, 10 * sph))  # start each run's process up to this long before its window

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, _term) if _main_thread() else None
    summary: dict[str, Any] = {}
    triggered_at: pd.Timestamp | None = None
    try:
        stack.start_server()
        with stack.client_settings():
            from prefect.deployments import run_deployment

            stack.register_blocks({sc.key: sc.grid_policy() for sc in SCENARIOS})
            stack.create_pools()
            stack.deploy()
            stack.start_workers()
            triggers = {}
            triggered_at = utcnow() - pd.Timedelta(seconds=2)
            for sc in SCENARIOS:
                home = sc.grid_policy().home_region
                run = run_deployment(f"{sc.flow_name}/{home}", timeout=0, as_subflow=False, tags=["care-demo"])
                triggers[sc.key] = str(run.id)
            console.print(f"Triggered the {len(triggers)} CaRE flows in their home pools; waiting until their runs are up "
                          f"(Prefect UI while it runs: {stack.ui_url}) ...")
            waited = _wait_ready(stack, state, triggers, opts.ready_timeout_s)
            (state / PLAN_FILE).write_text("")  # every trigger is up: they plan (at grid 00:01) now
            _wait_ready(stack, state, triggers, opts.ready_timeout_s, what="planned")
            fastest = sph
            sph = auto_seconds_per_hour(waited, fastest)
            budget_h = start_budget_h()
            # the trigger runs answer as soon as the clock is saved; their dispatching (1-9 s here with 4
            # of them on 2 cores) and the dispatched runs' process start-up happen before grid 00:00
            lead_s = dispatch_lead_s(waited)
            clock = DemoClock(utcnow() + pd.Timedelta(seconds=lead_s), day, sph)
            clock.save(state)
            time.sleep(max(0.0, (clock.wall_t0 - utcnow()).total_seconds()))
            console.print(f"[bold]Demo clock started[/]: grid {day.date()} 00:00 = now; [bold]one grid hour = {sph:g} wall seconds[/] "
                          f"({3600 / sph:,.0f}x). Each trigger run planned with CaRE at grid 00:01 and, in the {lead_s:g} s before this, "
                          f"dispatched its work (or runs it now).")
            if sph > fastest:
                console.print(f"[yellow]The clock runs slower than {fastest:g} s per grid hour because starting the flow-run "
                              f"processes took {waited:.0f} s on this (busy?) machine: a run dispatched to start now needs about "
                              f"that long, and must start within {budget_h:g} grid hours to meet its deadline.[/]")
            timeout_s = opts.timeout_s or 26 * sph + 120
            runs = _follow(stack, clock, triggers, console, timeout_s, since=triggered_at)
        decisions = read_decisions(state)
        actual = {r: actual_trace(r, day) for r in POOLS}
        summary = summarize(clock=clock, triggers=triggers, runs=runs, decisions=decisions, actual=actual, marks=read_marks(state))
        summary.update(startup_s=round(waited, 1), start_budget_grid_h=budget_h, start_budget_s=round(budget_h * sph, 1), dispatch_lead_s=lead_s)
        notes = demo_notes(summary, day=day, usage=usage)
        console.print(summary_table(summary))  # first: a report that cannot be written then loses nothing the run showed
        for row in summary["rows"]:
            if row.get("declared"):
                d, sz = row["declared"], row.get("sizing") or {}
                line = (f"right-sizing: declared {d['vcpu']:g} vCPU / {d['memory_gib']:g} GiB would be {d['instance_type']} "
                        f"({d['usd_per_hour']:.4f} USD/h); measured usage -> {row['instance_type']}")
                if sz:
                    line += (f". In the same plan the declared size would emit {sz['declared_g']:.2f} g for {sz['declared_usd']:.4f} USD: "
                             f"right-sizing itself saved {sz['saved_g_pct']:.0f} % gCO2eq and {sz['saved_usd_pct']:.0f} % USD; the row's "
                             f"savings % compare with the same right-sized instance at home (the move)")
                console.print(line + ".")
        missed = [r["scenario"] for r in summary["rows"] if r.get("met_deadline") is False]
        if missed:
            console.print(f"[bold red]Missed deadline: {', '.join(missed)}[/] (the demo clock: starting a run's process took longer than "
                          f"its slack; try a slower --seconds-per-hour).")
        console.print(f"Stage executions of the checkpointed flow (finished stages are not recomputed): {summary['stage_executions']}")
        paths = write_report(out, summary, decisions, actual, notes=notes)
        summary["report"] = {k: str(v) for k, v in paths.items()}
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    finally:
        stopped = stack.stop()
        if not stack.started_server and stack.api_url and stack.touched:  # nothing created: nothing to clean
            _clean_external(stack, console, keep=opts.keep_ui, since=triggered_at)
        if stack.logs.exists() and out.parent.exists():
            try:
                shutil.copytree(stack.logs, out / "logs", dirs_exist_ok=True)
            except OSError as exc:  # the temp folder below is removed all the same
                console.print(f"[yellow]Could not copy the logs to {out / 'logs'} ({exc.strerror or type(exc).__name__}).[/]")
        if stopped:
            console.print("Stopped by PID: " + ", ".join(stopped) + ".")
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if not (opts.keep_ui and stack.server is not None):
            shutil.rmtree(state, ignore_errors=True)
    wall = time.monotonic() - t_start
    summary["wall_s"] = wall
    console.print(f"Report: {out / 'index.html'} (plots: intensity.png, carbon_cost.png; data: summary.json). Wall time {wall:.0f} s.")
    if opts.keep_ui and stack.server is not None:
        console.print(f"Prefect UI kept running: {stack.ui_url} (server PID {stack.server.pid}, PREFECT_HOME {stack.home}); "
                      f"stop it with: kill {stack.server.pid} && rm -rf {state}")
    elif stack.started_server:
        console.print("The demo server is stopped. To browse the runs in the Prefect UI next time: care demo --keep-ui")
    return summary


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
