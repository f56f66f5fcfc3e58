"""End to end over real processes: a local ``prefect server``, a ``prefect worker --type care-ec2``
and ``moto_server``, all on 127.0.0.1 and stopped by PID.

A deployment in a care-ec2 pool gets a run with job variables region=eu-north-1 and
instance_type=t3.large (what CaRE's planner sets); the worker launches exactly that instance
with the flow run id in its tags and user data; when the run completes the instance is
terminated; a cancelled run's instance is terminated and the run ends Cancelled."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from test_aws_support import PLANTED_SECRET, _free_port, moto_clients, moto_url  # noqa: F401

pytestmark = pytest.mark.e2e
PY = Path(sys.executable)
PREFECT = str(PY.with_name("prefect"))  # the real CLI: care-ec2 comes from the package's prefect.collections entry point


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _tags(inst: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def test_worker_launches_the_planned_instance_and_cleans_up(prefect_server: dict, moto_url: str) -> None:
    env = {**prefect_server["env"], "AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET,
           "AWS_DEFAULT_REGION": "eu-north-1", "PREFECT_API_KEY": PLANTED_SECRET, "PREFECT_WORKER_QUERY_SECONDS": "1",
           "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true", "PREFECT_LOGGING_LEVEL": "INFO"}
    run = lambda *args: subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    created = run("work-pool", "create", "care-e2e", "--type", "care-ec2")
    assert created.returncode == 0, created.stdout + created.stderr

    async def setup() -> tuple[str, str]:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        async with get_client() as client:
            flow_id = await client.create_flow_from_name("nightly-etl")
            await client.create_deployment(flow_id=flow_id, name="care", work_pool_name="care-e2e", job_variables={"poll_interval_s": 1, "max_poll_interval_s": 2, "install": "care-flows==0.1.0",
                                                                                          "final_grace_s": 3})
        a = await run_deployment("nightly-etl/care", timeout=0, job_variables={"region": "eu-north-1", "instance_type": "t3.large"})
        b = await run_deployment("nightly-etl/care", timeout=0, job_variables={"region": "eu-south-2", "instance_type": "t3.micro"})
        return str(a.id), str(b.id)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server["url"]}):
        run_a, run_b = asyncio.run(setup())
        log = open(Path(prefect_server["env"]["PREFECT_HOME"]) / "worker.log", "w")
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "care-e2e", "--type", "care-ec2"], env=env, stdout=log, stderr=subprocess.STDOUT)
        aws = moto_clients(moto_url)
        try:
            def instance_of(region: str, run_id: str) -> dict | None:
                resp = aws.ec2(region).describe_instances(Filters=[{"Name": "tag:care:flow-run-id", "Values": [run_id]}])
                found = [i for r in resp["Reservations"] for i in r["Instances"]]
                return found[0] if found else None

            inst_a = _wait(lambda: instance_of("eu-north-1", run_a), 90, "the instance of run A")
            inst_b = _wait(lambda: instance_of("eu-south-2", run_b), 90, "the instance of run B")
            assert inst_a["InstanceType"] == "t3.large" and inst_b["InstanceType"] == "t3.micro"
            assert _tags(inst_a)["care:deployment"] == "nightly-etl/care"
            ud = base64.b64decode(aws.ec2("eu-north-1").describe_instance_attribute(InstanceId=inst_a["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
            assert f"prefect flow-run execute {run_a}" in ud and PLANTED_SECRET not in ud

            async def drive() -> tuple[str, str]:
                from prefect.client.orchestration import get_client
                from prefect.states import Cancelling, Completed, Running

                async with get_client() as client:
                    fr = await client.read_flow_run(run_a)
                    assert fr.infrastructure_pid == f"eu-north-1:{inst_a['InstanceId']}"
                    # what `prefect flow-run execute` on the instance would do: run, then complete
                    await client.set_flow_run_state(run_a, Running(), force=True)
                    await client.set_flow_run_state(run_a, Completed(), force=True)
                    await client.set_flow_run_state(run_b, Running(), force=True)
                    await client.set_flow_run_state(run_b, Cancelling(), force=True)
                    for _ in range(120):
                        b = await client.read_flow_run(run_b)
                        if b.state.is_cancelled():
                            break
                        await asyncio.sleep(0.5)
                    return (await client.read_flow_run(run_a)).state.type.value, b.state.type.value

            state_a, state_b = asyncio.run(drive())
            assert state_a == "COMPLETED" and state_b == "CANCELLED"
            gone = ("shutting-down", "terminated")
            _wait(lambda: instance_of("eu-north-1", run_a)["State"]["Name"] in gone, 60, "run A's instance to terminate")
            _wait(lambda: instance_of("eu-south-2", run_b)["State"]["Name"] in gone, 60, "run B's instance to terminate")
        finally:
            _stop(worker)
            log.close()
