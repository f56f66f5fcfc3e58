"""Produce the "Accounted when they end" example in docs/OPERATIONS.md on a throw-away Prefect test server.

    .venv/bin/python scripts/controller_accounting_example.py

A plain (undecorated) flow ``nightly`` that works for one minute, deployed to a ``care-ec2`` pool
with the tags ``care`` and ``care-policy:green-batch`` (home eu-south-2, candidate eu-north-1,
1 min of work within 3 min, the embedded carbon data); one run scheduled 50 s ahead. Prints
``care controller --once`` (which plans it), runs it at its planned start as a worker would
(``run_flow_sync``: the body knows nothing of CaRE), then ``care controller --once`` again (which
accounts it) and ``care report --since 1h``. About two minutes; no network, no AWS.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # before Prefect reads its settings: no telemetry, offline

import pandas as pd  # noqa: E402
from prefect import flow, get_client  # noqa: E402
from prefect.client.schemas.actions import WorkPoolCreate  # noqa: E402
from prefect.flow_engine import run_flow_sync  # noqa: E402
from prefect.states import Scheduled  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from care_flows.blocks import CarePolicyBlock  # noqa: E402
from care_flows.cli import main  # noqa: E402


@flow(name="nightly")
def nightly() -> str:
    time.sleep(60)
    return "ok"


def run() -> None:
    with prefect_test_harness(server_startup_timeout=180):  # 2 shared cores: startup took up to 57 s (review 46c M2)
        CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "1m",
                                "deadline_within": "3m"}).save("green-batch", overwrite=True)
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="care-ec2", type="care-ec2"))
            dep = nightly.to_deployment(name="nightly-ec2", tags=["care", "care-policy:green-batch"], work_pool_name="care-ec2").apply()
            at = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=50)).ceil("s").to_pydatetime()
            flow_run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=at))
            print("$ care controller --once", flush=True)
            main(["controller", "--once"])
            start = pd.Timestamp(client.read_flow_run(flow_run.id).next_scheduled_start_time)
            time.sleep(max(0.0, (start - pd.Timestamp.now(tz="UTC")).total_seconds()))
            print(f"(a worker runs it at {start})", flush=True)
            run_flow_sync(nightly, flow_run=client.read_flow_run(flow_run.id), return_type="state")
            print("$ care controller --once", flush=True)
            main(["controller", "--once"])
            print("$ care report --since 1h", flush=True)
            main(["report", "--since", "1h"])


if __name__ == "__main__":
    run()
