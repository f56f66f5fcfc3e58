"""Demo pieces without a Prefect server: clock, planner in grid time -> plan in wall time, summary, report, CLI errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.demo.clock import DemoClock, compress_series
from care_flows.accounting import mean_intensity
from care_flows.demo.report import summarize, write_report
from care_flows.demo.scenario import DEFAULT_DAY, SCENARIOS, DemoPlanner, read_decisions, scenario, wall_policy
from care_flows.planning.decide import decide
from care_flows.signals.trace import TraceSignal
from care_flows.timeutil import parse_time

DAY = pd.Timestamp(f"{DEFAULT_DAY}T00:00Z")


def test_clock_maps_grid_hours_to_wall_seconds_and_back():
    c = DemoClock("2026-01-01T12:00:00Z", DAY, 2.5)
    g = DAY + pd.Timedelta(hours=9, minutes=30)
    assert c.to_grid(c.to_wall(g)) == g
    assert (c.to_wall(DAY + pd.Timedelta(hours=1)) - c.wall_t0).total_seconds() == 2.5
    s = pd.Series([1.0, 2.0, 3.0], index=pd.date_range(DAY, periods=3, freq="h"))
    assert list((compress_series(s, c).index - c.wall_t0).total_seconds()) == [0.0, 2.5, 5.0]


def test_mean_intensity_is_time_weighted():
    s = pd.Series([100.0, 300.0, 500.0], index=pd.date_range(DAY, periods=3, freq="h"))
    assert mean_intensity(s, DAY + pd.Timedelta("45min"), DAY + pd.Timedelta("2h")) == pytest.approx((100 * 15 + 300 * 60) / 75)


@pytest.fixture
def demo_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CARE_DEMO_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("key", [s.key for s in SCENARIOS])
def test_planner_plans_in_grid_time_and_answers_in_wall_time(demo_dir, key):
    sph = 4.0
    now = pd.Timestamp.now(tz="UTC").floor("s")
    clock = DemoClock(now, DAY, sph)
    clock.save(demo_dir)
    usage = {"peak_vcpu": 1.2, "peak_memory_gib": 0.6, "mean_vcpu": 0.8}
    (demo_dir / "config.json").write_text(json.dumps({"usage": usage}))
    sc = scenario(key)
    plan = DemoPlanner(key)(wall_policy(sc, sph), now)
    grid_now = clock.to_grid(plan.decided_at)
    sig = TraceSignal.embedded()
    gp = sc.planning_policy()  # the policy's deadline less the demo's margin for run start-up and shut-down
    assert gp.deadline_within == sc.grid_policy().deadline_within - pd.Timedelta(hours=1)
    fc = {r: sig.forecast(r, grid_now, gp.deadline_within) for r in gp.candidate_regions}
    d = decide(gp, fc, grid_now, usage=usage if sc.sized_from_usage else None)
    # the same decision, its times played on the demo clock; its figures those of the real (grid-time) job
    assert plan.region == d.chosen.region and plan.instance_type == d.chosen.instance_type
    assert [(a, b) for a, b in plan.segments] == [(clock.to_wall(a), clock.to_wall(b)) for a, b in d.chosen.segments]
    assert plan.expected_g == pytest.approx(d.chosen.expected_g) and plan.baseline_g == pytest.approx(d.baseline.expected_g)
    assert plan.baseline_usd == pytest.approx(d.baseline.expected_usd) and plan.baseline_instance_type == d.baseline.instance_type  # the care-decision shows the baseline cost
    assert plan.deadline == clock.to_wall(grid_now + gp.deadline_within)
    assert plan.forecast is not None and plan.forecast.index[0] >= clock.to_wall(grid_now.floor("h"))
    rec = read_decisions(demo_dir)[key]
    assert rec["decision"]["chosen"]["region"] == plan.region
    if sc.sized_from_usage:  # right-sized from the measured usage, not the declared 8 vCPU / 32 GiB
        assert rec["declared"]["instance_type"] != plan.instance_type
        assert rec["declared"]["usd_per_hour"] > d.chosen.usd_per_hour


def test_default_day_shows_every_behaviour(demo_dir):
    """On the default day: deferral waits, the tight job moves to Sweden, the interruptible one has 2 far-apart segments."""
    clock = DemoClock(pd.Timestamp.now(tz="UTC"), DAY, 4)
    clock.save(demo_dir)
    (demo_dir / "config.json").write_text(json.dumps({"usage": {"peak_vcpu": 1.2, "peak_memory_gib": 0.6}}))
    plans = {s.key: DemoPlanner(s.key)(wall_policy(s, 4), clock.wall_t0) for s in SCENARIOS}
    assert plans["deferral"].region == "eu-south-2" and not plans["deferral"].now_here
    assert plans["greener-region"].region == "eu-north-1"
    segs = plans["checkpointed"].segments
    assert len(segs) == 2 and (segs[1][0] - segs[0][1]).total_seconds() >= 4 * 4  # >= 4 grid hours apart


def _runs(clock: DemoClock, lag_s: float) -> tuple[dict, list]:
    w = clock.to_wall
    g = lambda h: DAY + pd.Timedelta(hours=h)  # noqa: E731
    triggers = {s.key: f"t-{s.key}" for s in SCENARIOS}
    runs = []
    for s in SCENARIOS:
        runs.append({"id": f"t-{s.key}", "name": "trig", "scenario": s.key, "role": "trigger", "state": "COMPLETED", "pool": "care-demo-eu-south-2",
                     "instance_type": None, "root": None, "expected_start": w(g(0)), "start": w(g(0)), "end": w(g(0.2))})
    body = {"deferral": [(12, 14)], "greener-region": [(0.1, 2.1)], "right-sizing": [(0.1, 1.1)], "checkpointed": [(6, 8), (17, 18)]}
    for s in SCENARIOS:
        for i, (a, b) in enumerate(body[s.key]):
            runs.append({"id": f"b-{s.key}-{i}", "name": "body", "scenario": s.key, "role": "continuation" if i else "dispatched", "state": "COMPLETED",
                         "pool": "care-demo-eu-north-1" if s.key != "deferral" else "care-demo-eu-south-2", "instance_type": "t3.large",
                         "root": f"t-{s.key}", "expected_start": w(g(a)), "start": w(g(a)) + pd.Timedelta(seconds=lag_s), "end": w(g(b))})
    return triggers, runs


def _decisions(clock: DemoClock) -> dict:
    sig = TraceSignal.embedded()
    out = {}
    for s in SCENARIOS:
        gp = s.grid_policy()
        d = decide(gp, {r: sig.forecast(r, DAY, gp.deadline_within) for r in gp.candidate_regions}, DAY)
        out[s.key] = {"scenario": s.key, "decision": d.to_dict(), "decided_at_wall": clock.wall_t0.isoformat(), "decided_at_grid": DAY.isoformat(),
                      "wall_segments": [[clock.to_wall(a).isoformat(), clock.to_wall(b).isoformat()] for a, b in d.chosen.segments],
                      "forecasts": {r: [[t.isoformat(), 100.0] for t in pd.date_range(DAY, periods=20, freq="h")] for r in gp.candidate_regions}}
    return out


def test_summary_realized_figures_and_window_check(tmp_path):
    clock = DemoClock("2026-01-01T12:00:00Z", DAY, 4)
    actual = {r: TraceSignal.embedded().history(r, DAY, DAY + pd.Timedelta(hours=30)) for r in ("eu-south-2", "eu-north-1")}
    decisions = _decisions(clock)
    triggers, runs = _runs(clock, lag_s=0.5)
    s = summarize(clock=clock, triggers=triggers, runs=runs, decisions=decisions, actual=actual, marks={"one": 1, "two": 1, "three": 1})
    assert s["all_completed"] and s["deferred_in_window"]
    row = {r["scenario"]: r for r in s["rows"]}["deferral"]
    chosen = decisions["deferral"]["decision"]["chosen"]
    hours = 2.0 - 0.5 / 4  # measured: started 0.5 wall s = 7.5 grid minutes late
    gpk = mean_intensity(actual["eu-south-2"], DAY + pd.Timedelta(hours=12, minutes=7.5), DAY + pd.Timedelta(hours=14))
    assert row["realized_g"] == pytest.approx(chosen["kwh"] / 2.0 * hours * gpk)
    assert row["realized_usd"] == pytest.approx((chosen["usd_per_hour"] + chosen["credit_usd_per_hour"]) * hours)
    # a burstable type's CPU credits are part of what its hours cost, as in the plan's expected USD
    chosen["credit_usd_per_hour"] = 0.02
    s2 = summarize(clock=clock, triggers=triggers, runs=runs, decisions=decisions, actual=actual, marks={"one": 1, "two": 1, "three": 1})
    row2 = {r["scenario"]: r for r in s2["rows"]}["deferral"]
    assert row2["realized_usd"] == pytest.approx((chosen["usd_per_hour"] + 0.02) * hours)
    assert {r["scenario"]: r for r in s["rows"]}["checkpointed"]["body_runs"] == 2
    # summary.json carries instants, not display strings: ISO 8601 with an offset, in grid time
    assert parse_time(row["decided_at_grid"]) == DAY and row["decided_at_grid"].endswith("+00:00")
    assert [(parse_time(x["start"]), parse_time(x["end"])) for x in row["planned_segments_grid"]] == [
        (parse_time(a), parse_time(b)) for a, b in ((x["start"], x["end"]) for x in chosen["segments"])]
    body_run = next(d for d in s["runs"] if d["scenario"] == "deferral" and d["body"])
    assert parse_time(body_run["start_grid"]) == DAY + pd.Timedelta(hours=12, minutes=7.5)
    assert all(d[k] is None or d[k].endswith("+00:00") for d in s["runs"] for k in ("expected_start_grid", "start_grid", "end_grid"))
    # the realized abatement cost: what the runs really emitted and cost against the same work at home (care report's
    # baseline), so the 7.5 grid minutes the clock cut off the run are neither a saving nor a cost
    home, at_home_usd = row["at_home_g"], row["at_home_usd"]
    assert row["realized_abatement_usd_per_tco2"] == pytest.approx((row["realized_usd"] - at_home_usd) / ((home - row["realized_g"]) / 1e6))
    assert row["realized_abatement_usd_per_tco2"] == 0.0  # same instance at home: no extra cost
    late = summarize(clock=clock, triggers=triggers, runs=_runs(clock, lag_s=30)[1], decisions=decisions, actual=actual)
    assert not late["deferred_in_window"]
    paths = write_report(tmp_path / "r", s, decisions, actual, notes=["n"])
    for key in ("intensity", "carbon_cost"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert 'src="intensity.png"' in page and "deferral" in page and "stand in" in page


@pytest.mark.parametrize("args, needle", [
    (["--day", "2022-05-01"], "--day"),
    (["--seconds-per-hour", "0"], "--seconds-per-hour"),
    (["--day", "yesterday"], "--day"),
])
def test_cli_rejects_bad_options_in_one_line(capsys, args, needle):
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


def test_cli_help_lists_every_option(capsys):
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--out", "--seconds-per-hour", "--keep-ui", "--day", "--timeout"):
        assert opt in out


def test_stop_marked_processes_ends_a_child_in_its_own_session(tmp_path):
    # Prefect 3.9 runs each flow run in a session of its own: stopping the worker's process group
    # misses it; the demo finds such processes by its PREFECT_HOME and ends them
    import os
    import subprocess
    import sys

    from care_flows.demo.runner import stop_marked_processes

    env = {**os.environ, "PREFECT_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    try:
        found = stop_marked_processes("PREFECT_HOME", str(tmp_path), timeout_s=5)
        assert proc.pid in found
        assert proc.wait(timeout=5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
