"""Review 39a H2: a deployment whose flow code is only on the machine it was deployed from (prefect deploy's
set_working_directory pull step, or a file entrypoint with no pull step or storage) crashed on its instance
after boot and install, with no word from the worker. The worker now says so when it submits the run."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import pytest
from prefect.client.schemas.responses import DeploymentResponse
from prefect.states import Completed, Running

from care_flows.aws.worker import CareEC2JobConfiguration
from test_aws_support import FakePrefect, aws, fast_worker, make_flow_run, moto_clients, moto_url  # noqa: F401

WORKDIR = {"prefect.deployments.steps.set_working_directory": {"directory": "/home/me/proj"}}
CLONE = {"prefect.deployments.steps.git_clone": {"repository": "https://example.org/flows.git"}}


def _deployment(entrypoint: str, pull_steps: list[dict[str, Any]], path: str | None = None) -> DeploymentResponse:
    return DeploymentResponse(id=uuid.uuid4(), name="prod", flow_id=uuid.uuid4(), entrypoint=entrypoint, pull_steps=pull_steps, path=path)


@pytest.mark.parametrize("deployment, problem", [
    (_deployment("flows/etl.py:etl", [WORKDIR]), "loads flows/etl.py:etl from /home/me/proj, a directory on the machine"),
    (_deployment("flows/etl.py:etl", [], path="/srv/deploy"), "loads flows/etl.py:etl from /srv/deploy"),
    (_deployment("my_flows.etl.etl", []), None),
    (_deployment("flows/etl.py:etl", [WORKDIR, CLONE]), None),
])
def test_the_worker_says_when_an_instance_will_not_find_the_flow_code(aws: Any, moto_url: str, caplog: pytest.LogCaptureFixture,  # noqa: F811
                                                                      deployment: DeploymentResponse, problem: str | None) -> None:
    flow_run = make_flow_run(state=Running())
    conf = CareEC2JobConfiguration(region="eu-north-1", instance_type="t3.micro", poll_interval_s=0.01, api_key_secret="care/prefect-api-key",
                                   final_grace_s=0, env={"PREFECT_API_URL": "https://prefect.internal/api"})
    conf.prepare_for_flow_run(flow_run, deployment)
    prefect = FakePrefect(flow_run)
    prefect.script = [Completed()]
    worker = fast_worker(moto_clients(moto_url), prefect)
    with caplog.at_level(logging.WARNING):
        result = anyio.run(lambda: worker.run(flow_run, conf))
    said = [r.getMessage() for r in caplog.records if "a fresh EC2 instance does not have" in r.getMessage()]
    assert result.status_code == 0
    if problem is None:
        assert said == []
    else:
        (line,) = said
        assert problem in line and "entrypoint_type=EntrypointType.MODULE_PATH" in line and "docs/AWS.md section 1" in line
