"""End to end: a real `prefect server start` and `prefect worker start --pool` on 127.0.0.1.

Both scenarios are triggered at once against one server and one worker (to keep the suite fast):
- defer: the green window starts 30 s after the trigger plans; the trigger run completes at once, the
  dispatched run is Scheduled for the window start, the worker starts it then, it completes;
- resume: an interruptible flow whose first green slot ends mid-run continues in a second run
  at the next green slot without re-running the finished stage.
Server and worker are stopped by PID (their process groups) even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "care-e2e"
WINDOW_S = 30  # the green window opens this long after the trigger plans (room for process start-up)
RESUME_S = 25  # the resumable flow's second green slot (first: [0, 10 s), stage one lasts 11 s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we created with start_new_session
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    end, last = time.monotonic() + timeout_s, None
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with opener.open(f"{url}/health", timeout=10) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {timeout_s} s ({last}): {log.read_text()[-2000:]}")


def _runs(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])), sort=FlowRunSort.EXPECTED_START_TIME_ASC)


def _wait_final(client, run_id, timeout_s: float):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        fr = client.read_flow_run(run_id)
        if fr.state is not None and fr.state.is_final():
            return fr
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} not final after {timeout_s} s: {fr.state}")


def _artifact_keys(client, run_id) -> set[str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    return {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Server + worker + both deployments, both scenarios triggered; yields ids and times."""
    from prefect import Flow, get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("e2e")
    marks = tmp / "marks"
    marks.mkdir()
    scenario = tmp / "scenario.json"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        "PREFECT_WORKER_PREFETCH_SECONDS": "20",  # start the process early; the server holds Running until the window
        "PREFECT_LOGGING_LEVEL": "INFO",
        "CARE_E2E_SCENARIO": str(scenario),
        "CARE_E2E_MARKS": str(marks),
        "PYTHONPATH": str(HERE),
    }
    env.pop("PREFECT_PROFILE", None)
    procs: list[subprocess.Popen] = []
    server_log, worker_log = tmp / "server.log", tmp / "worker.log"
    try:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(server)
        _wait_healthy(url, server, server_log)
        with temporary_settings({PREFECT_API_URL: url}):
            with get_client(sync_client=True) as client:
                client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            ids = {}
            for entry, name in (("green_etl", "e2e-green-etl"), ("resumable_etl", "e2e-resumable")):
                f = Flow.from_source(source=str(HERE), entrypoint=f"e2e_flows.py:{entry}")
                ids[name] = f.deploy(name="e2e", work_pool_name=POOL, print_next_steps=False, ignore_warnings=True)
            worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--type", "process"], env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(worker)
            with get_client(sync_client=True) as client:  # wait until the worker polls the pool
                end = time.monotonic() + 90
                while not client.read_workers_for_work_pool(POOL) and time.monotonic() < end:
                    assert worker.poll() is None, worker_log.read_text()[-2000:]
                    time.sleep(0.5)
            t0 = pd.Timestamp.now(tz="UTC")
            scenario.write_text(json.dumps({
                "defer": {"step_s": 5, "pieces": [[WINDOW_S, 400], [600, 50]]},
                "resume": {"step_s": 5, "pieces": [[10, 40], [RESUME_S, 400], [600, 50]], "stage_one_s": 11},
            }))
            triggers = {
                name: run_deployment(f"{name}/e2e", timeout=0, as_subflow=False).id for name in ids
            }
            yield {"ids": ids, "triggers": triggers, "t0": t0, "marks": marks, "logs": (server_log, worker_log)}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_deferred_run_is_dispatched_and_started_in_its_window(stack):
    from prefect import get_client

    dep, trig = stack["ids"]["e2e-green-etl"], stack["triggers"]["e2e-green-etl"]
    with get_client(sync_client=True) as client:
        trigger = _wait_final(client, trig, 120)
        assert trigger.state.is_completed(), stack["logs"][1].read_text()[-3000:]
        dispatched = [r for r in _runs(client, dep) if r.id != trig]
        assert len(dispatched) == 1
        child = dispatched[0]
        assert "care:planned" in child.tags
        t0 = pd.Timestamp(child.job_variables["care"]["plan"]["decided_at"])  # when the trigger planned
        window = t0 + pd.Timedelta(seconds=WINDOW_S)
        assert pd.Timestamp(trigger.end_time) < window  # completed at once, held nothing
        assert pd.Timestamp(child.expected_start_time) == window
        first = client.read_flow_run_states(child.id)[0]
        assert first.is_scheduled() and pd.Timestamp(first.state_details.scheduled_time) == window
        if pd.Timestamp.now(tz="UTC") < window - pd.Timedelta(seconds=1):  # waiting, maybe prefetched
            assert child.state.is_scheduled() or child.state.is_pending()
        assert {"care-decision", "care-decision-table"} <= _artifact_keys(client, trig)
        child = _wait_final(client, child.id, 90)
        assert child.state.is_completed(), stack["logs"][1].read_text()[-3000:]
        lag_s = (pd.Timestamp(child.start_time) - window).total_seconds()
        rel = lambda ts: f"{(pd.Timestamp(ts) - t0).total_seconds():+.1f}s"  # noqa: E731
        print(f"t0+: trigger start {rel(trigger.start_time)} end {rel(trigger.end_time)}; window {rel(window)}; "
              f"dispatched created {rel(child.created)} start {rel(child.start_time)} (lag {lag_s:.2f} s) end {rel(child.end_time)}")
        running = [s for s in client.read_flow_run_states(child.id) if s.is_running()]
        assert pd.Timestamp(running[0].timestamp) >= window - pd.Timedelta(seconds=1)  # never before its window
        assert lag_s <= 15.0  # "within a few seconds" (generous: 2 shared, busy cores)
        assert "care-realized" in _artifact_keys(client, child.id)


def test_interrupted_run_resumes_without_recomputing(stack):
    from prefect import get_client

    dep, trig = stack["ids"]["e2e-resumable"], stack["triggers"]["e2e-resumable"]
    with get_client(sync_client=True) as client:
        trigger = _wait_final(client, trig, 150)
        assert trigger.state.is_completed(), stack["logs"][1].read_text()[-3000:]
        assert "care-continued" in _artifact_keys(client, trig)
        cont = [r for r in _runs(client, dep) if r.id != trig]
        assert len(cont) == 1 and "care:continuation" in cont[0].tags
        t0 = pd.Timestamp(cont[0].job_variables["care"]["plan"]["decided_at"])
        assert pd.Timestamp(cont[0].expected_start_time) == t0 + pd.Timedelta(seconds=RESUME_S)
        cont_run = _wait_final(client, cont[0].id, 90)
        assert cont_run.state.is_completed(), stack["logs"][1].read_text()[-3000:]
    counts = {p.name: len(p.read_text().split()) for p in stack["marks"].iterdir()}
    assert counts == {"one": 1, "two": 1, "three": 1}
