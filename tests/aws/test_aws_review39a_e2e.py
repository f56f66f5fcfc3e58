"""Review 39a M2 end to end: ``prefect worker start --type care-ec2`` (a real process, a real ``prefect
server``, moto, all on 127.0.0.1 and stopped by PID) with no AWS credentials gets two runs: one with a
misspelt ``region`` job variable, one with a good region (its launch finds no credentials).

Before the fix each gave Prefect's "Failed to submit flow run ... to infrastructure." with a traceback
(12 lines for the region; about 70 with botocore's stack for the credentials) in the worker's output
and in the run's logs, and the second also warned "could not check for instances left by flow run".
Now each is one ERROR line, the run ends Crashed with that message (one Crashed state: the base
worker's second proposal is aborted by the server), and nothing is logged with a traceback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from test_aws_e2e import PREFECT, _stop, _wait
from test_aws_support import moto_url  # noqa: F401

pytestmark = pytest.mark.e2e


def test_set_up_errors_at_submission_are_one_line_in_the_worker_and_the_run(prefect_server: dict, moto_url: str, tmp_path: Path) -> None:  # noqa: F811
    env = {k: v for k, v in prefect_server["env"].items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL": moto_url, "AWS_DEFAULT_REGION": "eu-north-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO", "COLUMNS": "400"})
    created = subprocess.run([PREFECT, "work-pool", "create", "care-39a", "--type", "care-ec2"], env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr

    async def setup() -> tuple[str, str]:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        async with get_client() as client:
            flow_id = await client.create_flow_from_name("etl-39a")
            await client.create_deployment(flow_id=flow_id, name="care", work_pool_name="care-39a", job_variables={"install": "care-flows==0.1.0"})
        typo = await run_deployment("etl-39a/care", timeout=0, job_variables={"region": "eu-nort-1"})
        nocreds = await run_deployment("etl-39a/care", timeout=0, job_variables={"region": "eu-north-1"})
        return str(typo.id), str(nocreds.id)

    async def read(run_id: str) -> tuple[Any, list[Any], list[Any]]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            states = await client.read_flow_run_states(run_id)
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        return run, states, logs

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server["url"]}):
        typo, nocreds = asyncio.run(setup())
        out_path = tmp_path / "worker-39a.log"
        with out_path.open("w") as out:
            worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "care-39a", "--type", "care-ec2"], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
            try:
                def final(run_id: str) -> Any:
                    run, states, logs = asyncio.run(read(run_id))
                    return (run, states, logs) if run.state.is_final() and any(log.level >= 40 for log in logs) else None

                results = {run_id: _wait(lambda: final(run_id), 120, f"flow run {run_id} to crash") for run_id in (typo, nocreds)}
                time.sleep(3)  # the base worker's own proposal and log lines after run() returned
                results = {run_id: asyncio.run(read(run_id)) for run_id in (typo, nocreds)}
            finally:
                _stop(worker)
    shown = out_path.read_text()
    expected = {typo: "Failed to submit flow run to infrastructure: UnknownRegionError: job variable region: unknown region 'eu-nort-1'",
                nocreds: "Failed to submit flow run to infrastructure: AwsError: launching for flow run"}
    for run_id, (run, states, logs) in results.items():
        assert run.state.is_crashed() and run.state.message.startswith(expected[run_id]), run.state
        assert "\n" not in run.state.message
        assert [s.type.value for s in states].count("CRASHED") == 1, [(s.type.value, s.message) for s in states]
        errors = [log.message for log in logs if log.level >= 40]
        assert len(errors) == 1 and "\n" not in errors[0] and f"to infrastructure: {expected[run_id].split(': ', 1)[1]}" in errors[0], errors
        assert not [log.message for log in logs if "Traceback" in log.message or "\n" in log.message.strip()]
    assert "no AWS credentials found for the worker" in results[nocreds][0].state.message
    assert "Traceback" not in shown and "direct cause" not in shown, shown
    assert "could not check for instances left" not in shown, shown
    assert shown.count("Failed to submit flow run") == 2, shown
