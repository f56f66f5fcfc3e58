"""Produce the `care report` example in docs/PREFECT.md on a throw-away Prefect test server.

    .venv/bin/python scripts/report_example.py

Runs, with injected clocks and a synthetic forecast (no network): three local runs of a
`daily-report` flow (two planned by `decide`, one by `window`, which prices nothing) and one
interruptible `etl-nightly` job that checkpoints out of its first green slot and finishes in a
continuation run; then prints `care report --since 1h`.

The usage histories those runs record go to a temporary folder (``CARE_USAGE_DIR``, with
``CARE_USAGE_STORE`` unset for the run), removed at the end: never to the user's own store, where
an `etl-nightly` row would feed the learned sizing of a real flow of that name, and a history left
by an earlier run would change this example's figures.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pandas as pd
from prefect import flow, get_client
from prefect.flow_engine import run_flow_sync
from prefect.states import Scheduled
from prefect.testing.utilities import prefect_test_harness

from care_flows.cli import main
from care_flows.orchestration import care

H = pd.Timedelta(hours=1)


def _series(start: pd.Timestamp, values: list[float]) -> pd.Series:
    s = pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1h"), dtype=float)
    s.attrs["source"] = "synthetic"
    return s


def _run_existing(flow_obj, flow_run_id):  # type: ignore[no-untyped-def]
    """Run an existing flow run in this process, as a worker would."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def run_examples() -> None:
    t0 = pd.Timestamp("2026-03-02T00:00:00Z")
    clock = [t0]

    def report_body(n: int = 1) -> int:
        clock[0] = clock[0] + H * 0.5  # the body takes half an hour on the injected clock
        return n

    for planner in ("decide", "decide", "window"):
        daily = care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], deadline_within="8h", expected_duration="30m"),
                     signal={"eu-south-2": _series(t0, [200.0] * 10)}, clock=lambda: clock[0], planner=planner)(flow(report_body, name="daily-report"))
        clock[0] = t0
        daily()

    base = pd.Timestamp.now(tz="UTC").floor("h")
    split_clock = [base]

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], deadline_within="8h", expected_duration="2h", interruptible=True),
          signal={"eu-south-2": _series(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}, clock=lambda: split_clock[0])
    @flow(name="etl-nightly")
    def etl_nightly(x: int = 1) -> int:
        if split_clock[0] < base + H:
            split_clock[0] = base + H  # the first green slot is over: continue in the next one
        care.checkpoint()
        split_clock[0] = split_clock[0] + H
        return x

    dep_id = etl_nightly.to_deployment(name="report-example").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    _run_existing(etl_nightly, trigger.id)
    with get_client(sync_client=True) as client:
        [continuation] = [r for r in client.read_flow_runs() if r.deployment_id == dep_id and r.id != trigger.id]
    split_clock[0] = base + 3 * H
    _run_existing(etl_nightly, continuation.id)


@contextlib.contextmanager
def throwaway_usage_store() -> Iterator[str]:
    """``CARE_USAGE_DIR`` set to a new temporary folder and ``CARE_USAGE_STORE`` unset while inside;
    both restored, and the folder removed, on the way out."""
    saved = {name: os.environ.get(name) for name in ("CARE_USAGE_DIR", "CARE_USAGE_STORE")}
    with tempfile.TemporaryDirectory(prefix="care-report-example-usage-") as folder:
        os.environ["CARE_USAGE_DIR"] = folder
        os.environ.pop("CARE_USAGE_STORE", None)
        try:
            yield folder
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description="Print the `care report` example of docs/PREFECT.md: starts a throw-away Prefect "
                            "test server, runs the example flows on it (about 40 s) and stops it.").parse_args()
    with throwaway_usage_store(), prefect_test_harness(server_startup_timeout=180):  # 2 shared cores: startup took up to 57 s (review 46c M2)
        run_examples()
        print("$ care report --since 1h")
        main(["report", "--since", "1h"])
