"""End to end: `care demo` with a faster clock, a real Prefect server and real workers on 127.0.0.1.

Runs the installed console script as a subprocess (as `make demo` does) with a faster clock (3 wall
seconds per grid hour; the demo slows it only when starting flow-run processes is too slow on a
busy machine for runs to start on time), then checks the summary it wrote: every run completed, every deferred run (the
deferral, both segments of the checkpointed flow) started inside its planned window, the
checkpointed flow continued in a second run without recomputing finished stages, the report
files exist and the PNGs are real images, and the processes it started are gone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.e2e

CARE = str(Path(sys.executable).with_name("care"))
SECONDS_PER_HOUR = 3.0
TOLERANCE_S = 3.0  # a run may start this much after its window ends (process start-up on 2 busy cores)
EARLY_S = 1.0  # Prefect lets a held run start up to 0.5 s before its scheduled time (it rounds the hold to whole seconds)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, dict | None]:
    """One demo run per test process (session scope: an xdist worker whose queue ran dry between two
    tests of this module tore a module fixture down, and the demo of 2-4 minutes ran twice)."""
    out = tmp_path_factory.mktemp("demo-e2e") / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_HOME")}
    # --timeout: how long the demo follows its runs after triggering them; it returns as soon as all are final. At
    # 200 s the checkpointed job's continuation was still RUNNING (all its stages done) when CI's 2 cores were busy
    proc = subprocess.run([CARE, "demo", "--out", str(out), "--seconds-per-hour", f"{SECONDS_PER_HOUR:g}", "--timeout", "420"],
                          env=env, capture_output=True, text=True, timeout=720)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    return proc, out, summary


def test_demo_exits_cleanly_and_says_what_it_does(demo):
    proc, out, summary = demo
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = " ".join(proc.stdout.split())
    rate = float(re.search(r"one grid hour = ([0-9.]+) wall seconds", text).group(1))
    assert rate == summary["seconds_per_hour"] and rate >= SECONDS_PER_HOUR
    assert "LOCAL Prefect process work pools" in text and "stand-in" in text
    assert "gCO2eq expected" in text and "abatement" in text  # the summary table
    assert f"Report: {out / 'index.html'}" in text
    assert "care demo --keep-ui" in text
    # every process it started (server, workers) was stopped by PID and is gone
    pids = [int(p) for p in re.findall(r"PID (\d+)\)", text.split("Stopped by PID:")[1].split("Report:")[0])]
    assert len(pids) == 3
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_every_run_completed_and_each_behaviour_happened(demo):
    _, _, summary = demo
    rows = {r["scenario"]: r for r in summary["rows"]}
    assert set(rows) == {"deferral", "greener-region", "right-sizing", "checkpointed"}
    assert summary["all_completed"], [(r["scenario"], r["state"]) for r in summary["rows"]]
    assert all(d["state"] == "COMPLETED" for d in summary["runs"])
    assert rows["deferral"]["decision"].startswith("defer") and rows["deferral"]["region"] == "eu-south-2"
    assert rows["greener-region"]["region"] == "eu-north-1"
    assert rows["right-sizing"]["instance_type"] != rows["right-sizing"]["declared"]["instance_type"]
    ck = rows["checkpointed"]
    assert ck["body_runs"] == 2  # paused at its checkpoint, continued in a second run
    assert summary["stage_executions"] == {"one": 1, "two": 1, "three": 1}  # finished stages were not recomputed
    for r in summary["rows"]:
        for key in ("expected_g", "realized_g", "baseline_g", "expected_usd", "realized_usd", "baseline_usd"):
            assert r[key] is not None and r[key] > 0, (r["scenario"], key)


def test_deferred_runs_started_inside_their_windows(demo):
    _, _, summary = demo
    sph = summary["seconds_per_hour"]
    wall_t0, day = pd.Timestamp(summary["wall_t0"]), pd.Timestamp(summary["day"])
    deferred = [d for d in summary["runs"] if d.get("deferred")]
    assert {d["scenario"] for d in deferred} >= {"deferral", "checkpointed"}
    for d in deferred:
        scheduled, started = pd.Timestamp(d["expected_start"]), pd.Timestamp(d["start"])
        # its planned segment, from the decision (grid time) played on the demo clock
        row = {r["scenario"]: r for r in summary["rows"]}[d["scenario"]]
        segs = [tuple(day + pd.Timedelta(hours=int(x[:2]), minutes=int(x[3:])) for x in part.split("-")) for part in row["window"].split(" + ")]
        wall = [(wall_t0 + (a - day) / (3600 / sph), wall_t0 + (b - day) / (3600 / sph)) for a, b in segs]
        seg = min(wall, key=lambda ab: abs((ab[0] - scheduled).total_seconds()))
        assert abs((seg[0] - scheduled).total_seconds()) < 1.0, (d, wall)
        # the worker starts the process early (prefetch) and the server holds Running until the scheduled
        # time, rounding its hold to whole seconds (Prefect's WaitForScheduledTime): up to 0.5 s early
        assert seg[0] - pd.Timedelta(seconds=EARLY_S) <= started <= seg[1] + pd.Timedelta(seconds=TOLERANCE_S), (d["scenario"], d["lag_s"], seg)


def test_report_files_and_images(demo):
    import matplotlib.image as mpimg

    _, out, _ = demo
    for name in ("intensity.png", "carbon_cost.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    page = (out / "index.html").read_text()
    assert '<img src="intensity.png"' in page and '<img src="carbon_cost.png"' in page
    assert page.count("<tr>") >= 5 and "checkpointed" in page
    assert (out / "logs" / "server.log").exists()
