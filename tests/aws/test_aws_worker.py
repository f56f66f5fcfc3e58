"""The care-ec2 worker's run()/kill_infrastructure() against moto, with the Prefect client injected."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling, Completed, Running
from prefect_aws import AwsCredentials

from care_flows.aws.clients import AwsClients
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker, build_launch_spec
from test_aws_support import PLANTED_SECRET, FakePrefect, aws, care_instances, make_flow_run, moto_clients, moto_url  # noqa: F401


class Started:
    def __init__(self) -> None:
        self.value: Any = None

    def started(self, value: Any = None) -> None:
        self.value = value


async def _no_wait(seconds: float) -> None:
    await anyio.sleep(0)


def _worker(prefect: FakePrefect, moto_url: str | None = None) -> CareEC2Worker:
    """A worker with the Prefect client injected; with ``moto_url``, AWS clients share one session
    (fast); without, they are built from the job's AwsCredentials block (the production path)."""
    worker = CareEC2Worker(work_pool_name="care-eu")
    if moto_url:
        worker.clients_factory = lambda conf: moto_clients(moto_url)
    worker.prefect_client = prefect
    worker.async_sleep = _no_wait
    worker.sync_sleep = lambda s: None
    return worker


def _config(moto_url: str, flow_run: Any, **kw: Any) -> CareEC2JobConfiguration:
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key=PLANTED_SECRET, aws_session_token=PLANTED_SECRET,
                           region_name="eu-north-1", aws_client_parameters={"endpoint_url": moto_url})
    conf = CareEC2JobConfiguration(aws_credentials=creds, poll_interval_s=0.01, api_key_secret="care/prefect-api-key",
                                   env={"MY_TOKEN": PLANTED_SECRET, "STAGE": "prod"}, **kw)
    conf.prepare_for_flow_run(flow_run)
    return conf


def _instance(aws: AwsClients, region: str, instance_id: str) -> dict:
    return aws.ec2(region).describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.mark.parametrize("region", ["eu-north-1", "eu-south-2"])
def test_run_launches_reports_and_terminates_on_completion(aws: AwsClients, moto_url: str, region: str) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Running(), Completed()]
    status = Started()
    with temporary_settings({PREFECT_API_KEY: PLANTED_SECRET, PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        conf = _config(moto_url, flow_run, region=region, instance_type="t3.large", final_grace_s=0)  # the grace period: test_aws_final_grace.py
        result = anyio.run(lambda: _worker(prefect).run(flow_run, conf, task_status=status))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert status.value == result.identifier == f"{region}:{result.instance_id}"
    inst = _instance(aws, region, result.instance_id)
    assert inst["State"]["Name"] in ("shutting-down", "terminated")
    assert inst["InstanceType"] == "t3.large"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["care:flow-run-id"] == str(flow_run.id)
    ud = base64.b64decode(aws.ec2(region).describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")["UserData"]["Value"]).decode()
    assert f"prefect flow-run execute {flow_run.id}" in ud
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in ud and "STAGE=prod" in ud
    assert PLANTED_SECRET not in ud  # not from env, not from the API key setting, not from the AWS credentials
    assert "MY_TOKEN" not in ud and "care/prefect-api-key" in ud


def test_cancellation_terminates_and_marks_cancelled(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Cancelling()]
    conf = _config(moto_url, flow_run, region="eu-south-2", instance_type="t3.micro")
    result = anyio.run(lambda: _worker(prefect, moto_url).run(flow_run, conf))
    assert result.reason == "flow run cancelled"
    assert _instance(aws, "eu-south-2", result.instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    assert prefect.set_states and prefect.set_states[-1].is_cancelled()


def test_a_cancellation_whose_terminate_fails_once_is_tried_again(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    """A terminate EC2 refused on Cancelling raised out of the watch (the run stayed Cancelling with nobody
    watching); it is now logged and tried again at the next poll (35d-A's leftover)."""
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Cancelling(), Cancelling()]
    conf = _config(moto_url, flow_run, region="eu-south-2", instance_type="t3.micro")
    worker = _worker(prefect, moto_url)
    real, calls = worker._terminate, []

    async def flaky(clients, launched, log):  # type: ignore[no-untyped-def]
        calls.append(launched.identifier)
        if len(calls) == 1:
            raise RuntimeError("RequestLimitExceeded after the retries")
        await real(clients, launched, log)

    worker._terminate = flaky  # type: ignore[method-assign]
    result = anyio.run(lambda: worker.run(flow_run, conf))
    assert result.reason == "flow run cancelled" and len(calls) == 2
    assert _instance(aws, "eu-south-2", result.instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    assert prefect.set_states and prefect.set_states[-1].is_cancelled()


def test_instance_dying_early_reports_a_crash(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    conf = _config(moto_url, flow_run, region="eu-north-1", instance_type="t3.micro")
    worker = _worker(prefect, moto_url)
    killed = {}

    async def kill_on_first_wait(seconds: float) -> None:
        if not killed:
            rows = care_instances(aws, "eu-north-1")
            instance = [i for i in rows if {"Key": "care:flow-run-id", "Value": str(flow_run.id)} in i["Tags"]][0]
            aws.ec2("eu-north-1").terminate_instances(InstanceIds=[instance["InstanceId"]])
            killed["id"] = instance["InstanceId"]

    worker.async_sleep = kill_on_first_wait
    result = anyio.run(lambda: worker.run(flow_run, conf))
    assert result.status_code == 1 and "before the flow run finished" in result.reason
    assert prefect.set_states[-1].is_crashed()


def test_ttl_terminates_the_instance(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    conf = _config(moto_url, flow_run, region="eu-north-1", instance_type="t3.micro", ttl_minutes=5)
    worker = _worker(prefect, moto_url)
    clock = {"t": datetime.now(timezone.utc), "sleeps": 0}
    worker.now = lambda: clock["t"]

    async def time_flies(seconds: float) -> None:
        # review 38a M1: a bounded clock, so a TTL that is never enforced fails here instead of hanging the run
        clock["sleeps"] += 1
        if clock["sleeps"] > 20:
            raise AssertionError("the worker still watches the instance 60 min after launch: its 5 min TTL was not enforced")
        clock["t"] += timedelta(minutes=3)

    worker.async_sleep = time_flies
    result = anyio.run(lambda: worker.run(flow_run, conf))
    assert result.status_code == 1 and "TTL of 5 min" in result.reason
    assert _instance(aws, "eu-north-1", result.instance_id)["State"]["Name"] in ("shutting-down", "terminated")


def test_launch_failure_raises_and_leaves_nothing(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run()
    conf = _config(moto_url, flow_run, region="eu-north-1", instance_type="x1.16xlarge")  # not offered -> no option left
    from care_flows.errors import AwsError

    with pytest.raises(AwsError, match="no instance could be launched"):
        anyio.run(lambda: _worker(FakePrefect(flow_run), moto_url).run(flow_run, conf))
    assert care_instances(aws, "eu-north-1") == []


def test_kill_infrastructure(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run()
    conf = _config(moto_url, flow_run, region="eu-north-1", instance_type="t3.micro")
    worker = _worker(FakePrefect(flow_run), moto_url)
    spec = build_launch_spec(flow_run, conf)
    from care_flows.aws.launch import launch

    launched = launch(spec, worker.clients_factory(conf))
    anyio.run(lambda: worker.kill_infrastructure(launched.identifier, conf))
    assert _instance(aws, "eu-north-1", launched.instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    with pytest.raises(InfrastructureNotFound):
        anyio.run(lambda: worker.kill_infrastructure(launched.identifier, conf))
    other = aws.ec2("eu-north-1").run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]
    with pytest.raises(InfrastructureNotAvailable, match="CaRE only terminates its own"):
        anyio.run(lambda: worker.kill_infrastructure(f"eu-north-1:{other['InstanceId']}", conf))
    with pytest.raises(InfrastructureNotAvailable):
        anyio.run(lambda: worker.kill_infrastructure("not-an-id", conf))


def test_base_job_template_exposes_the_variables() -> None:
    template = CareEC2Worker.get_default_base_job_template()
    props = template["variables"]["properties"]
    for name in ("region", "instance_type", "image_id", "image_ssm_parameter", "subnet_id", "security_group_ids", "iam_instance_profile",
                 "key_name", "ttl_minutes", "env", "install", "associate_public_ip", "aws_credentials", "fallback_instance_types", "fallback_regions"):
        assert name in props and props[name].get("description"), name
    assert props["associate_public_ip"]["default"] is False
    assert template["job_configuration"]["region"] == "{{ region }}"


def test_the_workers_own_prefect_settings_stay_out_of_the_user_data(tmp_path) -> None:
    from prefect.settings import PREFECT_HOME, PREFECT_LOGGING_LEVEL, PREFECT_SERVER_DATABASE_CONNECTION_URL

    db_url = "postgresql+asyncpg://care:hunter2pw@db.internal/prefect"
    with temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: db_url, PREFECT_HOME: tmp_path / "worker-home",
                             PREFECT_API_URL: "http://prefect.internal:4200/api", PREFECT_LOGGING_LEVEL: "DEBUG"}):
        conf = CareEC2JobConfiguration(env={"STAGE": "prod", "PREFECT_HOME": "/opt/care/home", "REPORT_URL": "https://u:p@x.example/r"})
        run = make_flow_run()
        conf.prepare_for_flow_run(run)
        assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in conf.env
        assert conf.env["PREFECT_HOME"] == "/opt/care/home"  # the job's own env wins and is kept
        assert conf.env["PREFECT_API_URL"] == "http://prefect.internal:4200/api" and conf.env["PREFECT_LOGGING_LEVEL"] == "DEBUG"
        assert conf.env["PREFECT__FLOW_RUN_ID"] == str(run.id) and conf.env["STAGE"] == "prod"
        script = build_launch_spec(run, conf).user_data("eu-north-1")
    assert "hunter2pw" not in script and "worker-home" not in script and "u:p@" not in script
    assert "export STAGE=prod" in script and "export PREFECT_API_URL=http://prefect.internal:4200/api" in script


def test_basic_auth_string_is_read_on_the_instance_and_its_value_is_guarded(moto_url: str) -> None:
    from prefect.settings import PREFECT_API_AUTH_STRING

    from care_flows.aws.worker import _known_secrets
    from care_flows.errors import ConfigError

    props = CareEC2Worker.get_default_base_job_template()["variables"]["properties"]
    assert "api_auth_string_secret" in props and "PREFECT_API_AUTH_STRING" in props["api_auth_string_secret"]["description"]
    flow_run = make_flow_run()
    auth = "care-admin:Hunter2-basic-auth"
    with temporary_settings({PREFECT_API_AUTH_STRING: auth, PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        conf = _config(moto_url, flow_run, api_auth_string_secret="/care/prefect-auth")
        assert auth in _known_secrets(conf)
        script = build_launch_spec(flow_run, conf).user_data("eu-north-1")
        assert 'PREFECT_API_AUTH_STRING="$(aws ssm get-parameter --region eu-north-1 --name /care/prefect-auth' in script
        assert auth not in script
        leaky = _config(moto_url, flow_run, api_auth_string_secret="/care/prefect-auth")
        leaky.env["NOTE"] = auth  # a name that does not look secret, holding the worker's auth string
        with pytest.raises(ConfigError, match="secret value") as info:
            build_launch_spec(flow_run, leaky)
        assert auth not in str(info.value)


def test_the_worker_warns_when_its_api_key_cannot_reach_the_instance(caplog) -> None:
    import logging

    log = logging.getLogger("test.care-ec2")
    with temporary_settings({PREFECT_API_URL: "https://api.prefect.cloud/api/accounts/a/workspaces/w", PREFECT_API_KEY: PLANTED_SECRET}):
        conf = CareEC2JobConfiguration(env={"STAGE": "prod"})
        run = make_flow_run()
        conf.prepare_for_flow_run(run)
        with caplog.at_level(logging.INFO, logger="test.care-ec2"):
            script = build_launch_spec(run, conf, log=log).user_data("eu-north-1")
    assert PLANTED_SECRET not in script and PLANTED_SECRET not in caplog.text
    assert "the worker has PREFECT_API_KEY but the job has no api_key_secret" in caplog.text
    assert "worker settings not passed to the instance:" in caplog.text and "PREFECT_API_KEY" in caplog.text
    caplog.clear()
    with temporary_settings({PREFECT_API_URL: "https://api.prefect.cloud/api/accounts/a/workspaces/w", PREFECT_API_KEY: PLANTED_SECRET}):
        conf = CareEC2JobConfiguration(env={}, api_key_secret="care/prefect-api-key")
        conf.prepare_for_flow_run(run)
        with caplog.at_level(logging.INFO, logger="test.care-ec2"):
            build_launch_spec(run, conf, log=log)
    assert "will not authenticate" not in caplog.text and "read on the instance from care/prefect-api-key" in caplog.text
