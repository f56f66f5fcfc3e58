"""A deferred run starts in its window only if its flow-run process is up by then (the worker starts it
early and the server holds it until its scheduled time; Prefect's WaitForScheduledTime rounds the hold
to whole seconds, so up to 0.5 s early).

The trigger runs used to plan and dispatch after the demo clock had started: with 4 of them on 2
cores their real runs were created 1-9 wall s after grid 00:00 (hours of grid time), and a run whose
window opened at 04:00-05:00 had only what was left for its process to start. Now the triggers plan
once all are up (at grid 00:01, TRIGGER_DECIDES_AT: exactly 00:00 plans differently on the default
day), the runner saves the clock with grid 00:00 a few seconds ahead (dispatch_lead_s), and the
triggers answer at once: their runs are dispatched, and their processes starting, before the replay begins.
"""

from __future__ import annotations

import json
import threading
import time

import pandas as pd

from care_flows.demo.clock import DemoClock
from care_flows.demo.main import auto_seconds_per_hour, dispatch_lead_s
from care_flows.demo.scenario import DEFAULT_DAY, PLAN_FILE, TRIGGER_DECIDES_AT, DemoPlanner, read_decisions, scenario, wall_policy
from care_flows.timeutil import parse_time

DAY = pd.Timestamp(f"{DEFAULT_DAY}T00:00Z")


def test_a_trigger_plans_when_all_are_up_and_answers_as_soon_as_the_clock_is_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("CARE_DEMO_DIR", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"day": DEFAULT_DAY, "usage": {"peak_vcpu": 0.3, "peak_memory_gib": 0.3}}))
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("plan", DemoPlanner("greener-region")(wall_policy(scenario("greener-region"), 4),
                                                                                            pd.Timestamp.now(tz="UTC"))))
    t.start()
    _wait(tmp_path / "ready" / "greener-region")  # up: waits for every trigger to be up before it plans
    time.sleep(0.3)
    assert not (tmp_path / "planned").exists() and t.is_alive()
    (tmp_path / PLAN_FILE).write_text("")
    _wait(tmp_path / "planned" / "greener-region")
    assert not (tmp_path / "decisions").exists() and t.is_alive()  # planned, not yet answered: no clock yet
    clock = DemoClock(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=20), DAY, 4)  # grid 00:00 some seconds ahead
    clock.save(tmp_path)
    t.join(15)
    plan = out["plan"]
    assert pd.Timestamp.now(tz="UTC") < clock.wall_t0  # answered at once: the run is dispatched before the replay begins
    assert plan.decided_at == clock.to_wall(DAY + TRIGGER_DECIDES_AT)  # decided at grid 00:01
    rec = read_decisions(tmp_path)["greener-region"]
    # the window, in wall time: 04:00-06:00 give or take the minute the plan was made past the hour
    # (a start whose end is on a slot boundary is a candidate too: 04:01-06:01 when 06:00-06:01 is greener than 04:00-04:01)
    grid_start = parse_time(rec["decision"]["chosen"]["start"])
    assert DAY + pd.Timedelta(hours=4) <= grid_start <= DAY + pd.Timedelta(hours=4, minutes=1)
    assert abs((plan.segments[0][0] - clock.to_wall(grid_start)).total_seconds()) < 1e-3
    assert parse_time(rec["decided_at_grid"]) == DAY + TRIGGER_DECIDES_AT and parse_time(rec["decided_at_wall"]) == plan.decided_at


def _wait(path, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert path.exists(), path


def test_the_clock_leaves_the_dispatch_its_lead_and_the_start_up_its_budget():
    for startup_s in (2, 8, 15, 25):
        assert dispatch_lead_s(startup_s) >= 1.2 * startup_s  # dispatching took about as long as the triggers' start-up
        assert 1.2 * startup_s + 3.0 <= 4.0 * auto_seconds_per_hour(startup_s, fastest=3)  # a 04:00 window: room to start
