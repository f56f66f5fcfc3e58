"""End to end from the decorator to EC2: a CaRE-decorated flow chooses eu-north-1 and t3.large,
dispatches its run to a ``care-ec2`` pool, and the worker launches exactly that instance in moto.

Real processes on 127.0.0.1, all stopped by PID at the end (also on failure): ``prefect server
start`` (the session ``prefect_server`` fixture of tests/aws/conftest.py), ``moto_server`` (test_aws_support),
a ``process`` worker that runs the trigger run, and a ``care-ec2`` worker whose
``aws_credentials`` is a prefect-aws ``AwsCredentials`` block whose ``endpoint_url`` is moto.

The flow (care_e2e_flows.py) is deployed twice: to the process pool (the trigger) and to the
care-ec2 pool (what the policy's eu-north-1 target names). Its synthetic forecast makes SE far
greener than ES and flat in time, so the plan is a spatial shift starting now; 2 vCPU / 8 GiB
with no headroom at 30 % CPU right-sizes to t3.large. The dispatched run is then cancelled and the worker
terminates its instance: no ``care:`` instance is left running.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from care_flows.demo.runner import stop_process
from test_aws_e2e import PREFECT, _tags, _wait
from test_aws_support import PLANTED_SECRET, care_instances, moto_clients, moto_url  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
FLOW = "care-ec2-etl"
PROCESS_POOL = "care-trigger-e2e"
EC2_POOL = "care-ec2-e2e"
REGIONS = ("eu-south-2", "eu-north-1")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A worker in its own process group (its flow-run subprocesses die with it)."""
    return subprocess.Popen([PREFECT, *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _tail(*logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in logs if p.exists())


def test_care_flow_chooses_eu_north_1_t3_large_and_the_worker_launches_it(prefect_server: dict, moto_url: str, tmp_path: Path) -> None:
    from prefect import Flow, get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelling
    from prefect_aws import AwsCredentials

    from care_flows.aws.worker import CareEC2Worker

    requests.post(moto_url + "/moto-api/reset", timeout=120)  # a clean account: every care: instance is ours
    aws = moto_clients(moto_url)
    env = {
        **prefect_server["env"],
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "CARE_E2E_EC2_POOL": EC2_POOL,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("AWS_ENDPOINT_URL", None)  # the worker reaches moto only through the credentials block
    logs = {"process": tmp_path / "process-worker.log", "ec2": tmp_path / "ec2-worker.log"}
    workers: list[subprocess.Popen] = []
    t_start, phases = time.monotonic(), {}
    mark = lambda name: phases.setdefault(name, round(time.monotonic() - t_start, 1))  # noqa: E731 - phase times, printed
    with temporary_settings({PREFECT_API_URL: prefect_server["url"]}):
        try:
            with get_client(sync_client=True) as client:
                client.create_work_pool(WorkPoolCreate(name=PROCESS_POOL, type="process"))
            creds_id = AwsCredentials(
                aws_access_key_id="testing", aws_secret_access_key=PLANTED_SECRET, region_name="eu-north-1",
                aws_client_parameters={"endpoint_url": moto_url},
            ).save("moto-e2e")
            # the pool's default credentials, as an operator sets them in the UI (a deployment's
            # job_variables cannot carry a block $ref: Prefect finds it valid under both branches
            # of its oneOf and rejects it, the same for prefect-aws's ECS worker)
            template = CareEC2Worker.get_default_base_job_template()
            template["variables"]["properties"]["aws_credentials"]["default"] = {"$ref": {"block_document_id": str(creds_id)}}
            with get_client(sync_client=True) as client:
                client.create_work_pool(WorkPoolCreate(name=EC2_POOL, type="care-ec2", base_job_template=template))
            source = Flow.from_source(source=str(HERE), entrypoint="care_e2e_flows.py:care_ec2_etl")
            trigger_dep = source.deploy(name="trigger", work_pool_name=PROCESS_POOL, print_next_steps=False, ignore_warnings=True)
            ec2_dep = source.deploy(
                name="ec2", work_pool_name=EC2_POOL, print_next_steps=False, ignore_warnings=True,
                job_variables={"install": "care-flows==0.1.0", "poll_interval_s": 1, "max_poll_interval_s": 2},
            )
            mark("deployed")
            workers.append(_start(["worker", "start", "--pool", PROCESS_POOL, "--type", "process"], env, logs["process"]))
            workers.append(_start(["worker", "start", "--pool", EC2_POOL, "--type", "care-ec2"], env, logs["ec2"]))
            with get_client(sync_client=True) as client:
                for pool, proc in ((PROCESS_POOL, workers[0]), (EC2_POOL, workers[1])):
                    _wait(lambda: proc.poll() is None and client.read_workers_for_work_pool(pool), 120, f"a worker polling {pool}")

                mark("workers polling")
                # the trigger: what a schedule or a manual "run" of the deployment does
                trigger = run_deployment(f"{FLOW}/trigger", timeout=0, as_subflow=False)
                final = _wait(lambda: (fr := client.read_flow_run(trigger.id)).state.is_final() and fr, 180, "the trigger run to finish")
                assert final.state.is_completed(), _tail(*logs.values())
                mark("trigger completed")

                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[ec2_dep])))
                assert len(runs) == 1, _tail(*logs.values())
                run = runs[0]
                assert run.work_pool_name == EC2_POOL and "care:planned" in run.tags and "care:region:eu-north-1" in run.tags
                assert run.job_variables["region"] == "eu-north-1" and run.job_variables["instance_type"] == "t3.large"
                assert run.job_variables["ttl_minutes"] == 15 and run.job_variables["care"]["ttl_pinned"]  # the region target's own, kept
                plan = run.job_variables["care"]["plan"]
                assert plan["region"] == "eu-north-1" and plan["instance_type"] == "t3.large" and plan["home_region"] == "eu-south-2"
                assert plan["start"] == plan["decided_at"] and not plan["now_here"]  # spatial shift only: move, start now
                assert plan["savings_pct"] > 80  # 30 vs 300 g/kWh
                assert run.job_variables["care"]["root"] == str(trigger.id)
                assert not client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[trigger_dep])))[0].job_variables.get("region")
                run_id = str(run.id)

                def launched() -> list[dict[str, Any]]:
                    return [i for r in REGIONS for i in care_instances(aws, r)]

                instances = _wait(launched, 90, "the care-ec2 worker to launch the instance")
                mark("instance launched")
                time.sleep(2)  # a second launch (retried submission) would show up by now
                instances = launched()
                assert len(instances) == 1, instances
                inst = instances[0]
                assert inst["Placement"]["AvailabilityZone"].startswith("eu-north-1") and inst["InstanceType"] == "t3.large"
                tags = _tags(inst)
                assert tags["care:flow-run-id"] == run_id and tags["care:deployment"] == f"{FLOW}/ec2"
                assert pd.Timestamp(tags["care:expires-at"]) > pd.Timestamp.now(tz="UTC")
                raw = aws.ec2("eu-north-1").describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]
                user_data = base64.b64decode(raw).decode()
                assert run_id in user_data and "prefect flow-run execute" in user_data and f"prefect flow-run execute {run_id}" in user_data
                assert PLANTED_SECRET not in user_data
                reported = _wait(lambda: client.read_flow_run(run_id).infrastructure_pid, 30, "the instance id to be reported")
                assert reported == f"eu-north-1:{inst['InstanceId']}"

                # cancel the dispatched run: the worker terminates its instance
                client.set_flow_run_state(run_id, Cancelling(), force=True)
                cancelled = _wait(lambda: (fr := client.read_flow_run(run_id)).state.is_final() and fr, 60, "the run to be cancelled")
                assert cancelled.state.is_cancelled(), _tail(logs["ec2"])

                def state() -> str:
                    resp = aws.ec2("eu-north-1").describe_instances(InstanceIds=[inst["InstanceId"]])
                    return resp["Reservations"][0]["Instances"][0]["State"]["Name"]

                _wait(lambda: state() in ("shutting-down", "terminated"), 60, "the instance to terminate")
                assert launched() == []  # no care: instance pending or running in any candidate region
                mark("cancelled, terminated")
                print(f"phases (s after the server was up): {phases}")
        finally:
            for proc in reversed(workers):
                stop_process(proc)
