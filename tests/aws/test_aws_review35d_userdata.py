"""Review 35d M2, M3, M5: what the user data may hold, and telling the run where it really executes."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import anyio
import pandas as pd
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Pending, Running
from prefect_aws import AwsCredentials

from care_flows.aws.userdata import secret_reason
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker, build_launch_spec
from care_flows.errors import ConfigError
from test_aws_support import FakePrefect, aws, faulty_clients, moto_clients, moto_url  # noqa: F401

SECRET_ARN = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:prod/db-AbCdEf"


def _user_data(env: dict[str, str]) -> str:
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending())
    conf = CareEC2JobConfiguration(env=env, api_key_secret="care/prefect-api-key")
    conf.prepare_for_flow_run(flow_run)
    with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api"}):
        return build_launch_spec(flow_run, conf).user_data("eu-north-1")


@pytest.mark.parametrize("env", [{"AUTH_PROVIDER": "prefect"}, {"CREDENTIALS_SOURCE": "instance"}])
def test_a_harmless_value_of_a_secret_looking_name_does_not_refuse_the_launch(env: dict[str, str]) -> None:
    """M2: the dropped variable's value also spelled a word of the fixed script (prefect, instance), so
    assert_no_secrets refused every launch with 'user data would contain a secret value'."""
    script = _user_data(env)
    assert f"export {next(iter(env))}=" not in script  # still not written: its name looks secret


def test_a_reference_to_a_secret_is_written_so_the_flow_can_read_it() -> None:
    """M2: DB_SECRET_ARN (an ARN) and API_KEY_SECRET_NAME (a name) were dropped, so a flow could not read
    its secret from Secrets Manager as the dropped-variable warning advises."""
    script = _user_data({"DB_SECRET_ARN": SECRET_ARN, "API_KEY_SECRET_NAME": "care/prefect-api-key", "DB_PASSWORD": "hunter2hunter2"})
    assert f"export DB_SECRET_ARN={SECRET_ARN}" in script and "export API_KEY_SECRET_NAME=care/prefect-api-key" in script
    assert "hunter2hunter2" not in script and "DB_PASSWORD" not in script


@pytest.mark.parametrize("name, value", [
    ("PREFECT_CLIENT_CUSTOM_HEADERS", '{"X-API-Key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc"}'),
    ("EXTRA_HEADERS_JSON", '{"Authorization": "Basic YWRtaW46aHVudGVyMg=="}'),
    ("JAVA_TOOL_OPTIONS", "-Djavax.net.ssl.trustStorePassword=hunter2hunter2"),
    ("SPARK_CONF", "spark.hadoop.fs.s3a.secret.key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("CURL_OPTS", "-H 'Authorization: Bearer abcdef0123456789abcdef'"),
])
def test_a_credential_inside_a_value_is_not_written(name: str, value: str) -> None:
    """M3: only whole-token values and URL credentials were caught; these went into user data unmasked."""
    assert secret_reason(name, value) is not None
    script = _user_data({name: value, "STAGE": "prod"})
    assert f"export {name}=" not in script and "export STAGE=prod" in script


@pytest.mark.parametrize("name, value", [
    ("JAVA_TOOL_OPTIONS", "-Xmx4g -Dfile.encoding=UTF-8"), ("LLM_ARGS", "--max-tokens=1000"),
    ("DATA_DIR", "/opt/care/data"), ("RUN_ID", "0b7c1d2e-0000-4000-8000-000000000001"),
    # review 35g M1: a keyword at the start of a longer key, prose, URLs, ARNs and image digests are not credentials
    ("ARGS", "--tokenizer=gpt2-medium --max-new-tokens=256"), ("CONFIG_JSON", '{"tokenizer": "bert-base-uncased", "max_tokens": 512}'),
    ("FEATURES", "secret_rotation=enabled,token_cache=disabled"), ("EXTRA_ARGS", "--access-key-id-file=/run/secrets/key --log-level=debug"),
    ("SPARK_SUBMIT_OPTS", "-Dspark.authenticate.secret.file=/etc/spark/secret"), ("JVM", "-Dtoken.endpoint=https://login/oauth2/token"),
    ("NOTE", "rotate the token: weekly"), ("HEADERS_TIMEOUT", "30"),
    ("DATA_URL", "https://data.example.org/export/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/file.csv"),
    ("SAGEMAKER_ROLE", "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-20240501T123456"),
    ("ECR_IMAGE", "123456789012.dkr.ecr.eu-north-1.amazonaws.com/care@sha256:AbCdEf0123456789AbCdEf0123456789"),
])
def test_ordinary_values_are_still_written(name: str, value: str) -> None:
    assert secret_reason(name, value) is None


def test_a_secret_value_exported_under_another_name_is_still_refused() -> None:
    """The template comparison must not let through a secret the env writes under a harmless name."""
    with pytest.raises(ConfigError, match="secret value"):
        _user_data({"MY_TOKEN": "tok-abcdef123", "NOTE": "tok-abcdef123"})


def test_after_a_capacity_fallback_the_user_data_names_the_region_and_type_that_ran(moto_url: str) -> None:  # noqa: F811
    """M5: planned eu-north-1/t3.large, launched eu-south-2/t3.xlarge; the run accounted Sweden's carbon
    and a t3.large's price because nothing told it where it ran."""
    faulty = faulty_clients(moto_url, lambda op, region, kw: "InsufficientInstanceCapacity"
                            if op == "run_instances" and (region == "eu-north-1" or kw.get("InstanceType") == "t3.large") else None)
    plain = moto_clients(moto_url)
    jv = {"region": "eu-north-1", "instance_type": "t3.large", "care": {"segment": 0}}
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="x", state=Running(), job_variables=jv)
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Completed()]
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="x", region_name="eu-north-1")
    conf = CareEC2JobConfiguration(aws_credentials=creds, poll_interval_s=0.01, final_grace_s=0, region="eu-north-1", instance_type="t3.large",
                                   fallback_instance_types=["t3.xlarge"], fallback_regions=["eu-south-2"],
                                   env={"PREFECT_API_URL": "https://p.internal/api"})
    conf.prepare_for_flow_run(flow_run)
    worker = CareEC2Worker(work_pool_name="care-eu")
    worker.clients_factory = lambda c: faulty
    worker.prefect_client = prefect
    worker.sync_sleep = lambda s: None

    async def no_wait(seconds: float) -> None:
        await anyio.sleep(0)

    worker.async_sleep = no_wait
    result = anyio.run(lambda: worker.run(flow_run, conf))
    assert (result.region, result.instance_type) == ("eu-south-2", "t3.xlarge")
    raw = plain.ec2("eu-south-2").describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(raw).decode()
    assert "export CARE_REGION=eu-south-2" in script and "export CARE_INSTANCE_TYPE=t3.xlarge" in script


def _plan_for_two_regions() -> Any:
    from care_flows.orchestration.plan import plan_run
    from care_flows.policy import CarePolicy

    policy = CarePolicy(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], expected_duration="1h", deadline_within="4h",
                        vcpu=2, memory_gib=8)
    return plan_run(policy, pd.Timestamp("2023-06-01T08:00Z"))


def test_the_realized_figures_use_the_type_that_ran_not_the_planned_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """M5, the accounting half: publish_realized priced the planned type for the region; with the type
    the worker fell back to, the rates are that type's, and without a measured CPU there are none."""
    from care_flows.orchestration import artifacts

    monkeypatch.setattr("prefect.artifacts.create_markdown_artifact", lambda **kw: None)
    plan = _plan_for_two_regions()
    started = pd.Timestamp("2023-06-01T08:00Z")
    finished = started + pd.Timedelta("1h")
    planned = artifacts._planned_type(plan, plan.region)
    usage = pd.DataFrame({"time": pd.date_range(started, finished, freq="10s"), "cpu_vcpu": 1.0, "memory_gib": 1.0})
    same = artifacts.publish_realized(plan, started=started, finished=finished, region=plan.region, usage=usage, instance_type=planned)
    bigger = "m5.4xlarge" if planned != "m5.4xlarge" else "m5.8xlarge"
    other = artifacts.publish_realized(plan, started=started, finished=finished, region=plan.region, usage=usage, instance_type=bigger)
    assert "instance_type" not in same and other["instance_type"] == bigger
    assert other["realized_usd"] > 2 * same["realized_usd"] and other["realized_kwh"] > same["realized_kwh"]
    assert other["realized_rates_from"] == f"measured CPU on {bigger} (planned {planned})"
    blind = artifacts.publish_realized(plan, started=started, finished=finished, region=plan.region, instance_type=bigger)
    assert blind["realized_kwh"] is None and blind["realized_usd"] is None and blind["realized_rates_from"].startswith("unknown: ran on")
