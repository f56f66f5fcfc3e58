"""Review 27 of the AWS path, reproduced against moto over HTTP: the grace period after a final
state (M1), secret-looking env (M2), DescribeParameters pages (L1), EC2's StateReason and a
relaunch (L2), one-line set-up errors (L3), a loopback API URL (L4), image_id and fallback
regions (L5), `care aws reap` without credentials and the EBS KMS statement (L6)."""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from prefect.states import Completed, Pending, Running
from prefect_aws import AwsCredentials

from care_flows.aws.clients import AwsClients, add_call_observer, remove_call_observer
from care_flows.aws.launch import LaunchSpec, launch
from care_flows.aws.preflight import check_secret
from care_flows.aws.userdata import is_secret_name, safe_env
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker, api_url_problem, build_launch_spec
from care_flows.cli import main
from care_flows.errors import AwsError, ConfigError
from test_aws_support import (  # noqa: F401
    PLANTED_SECRET,
    FakePrefect,
    aws,
    care_instances,
    client_error,
    fast_worker,
    faulty_clients,
    make_flow_run,
    moto_clients,
    moto_url,
    shared_session,
)

API = "http://10.0.0.5:4200/api"  # not loopback (L4), no DNS; nothing connects to it (logs to the API are off)


class Prefect(FakePrefect):
    """FakePrefect that also records ``update_flow_run`` (the new infrastructure id of a relaunch)."""

    def __init__(self, flow_run: Any) -> None:
        super().__init__(flow_run)
        self.pids: list[str] = []

    async def update_flow_run(self, flow_run_id: Any, infrastructure_pid: str | None = None, **_: Any) -> None:
        self.pids.append(str(infrastructure_pid))


def _worker(prefect: FakePrefect, clients: AwsClients) -> CareEC2Worker:
    return fast_worker(clients, prefect)


def _conf(flow_run: Any, **kw: Any) -> CareEC2JobConfiguration:
    conf = CareEC2JobConfiguration(**{"region": "eu-north-1", "instance_type": "t3.micro", "poll_interval_s": 10.0, "max_poll_interval_s": 30.0,
                                      "api_key_secret": "care/prefect-api-key", "associate_public_ip": True, **kw})
    conf.prepare_for_flow_run(flow_run)
    return conf


def _state(aws: AwsClients, region: str, instance_id: str) -> str:
    return aws.ec2(region).describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def _run_instance(aws: AwsClients, flow_run: Any, region: str = "eu-north-1") -> str:
    rows = care_instances(aws, region)
    return [i for i in rows if {"Key": "care:flow-run-id", "Value": str(flow_run.id)} in i["Tags"]][0]["InstanceId"]


# M1 ---------------------------------------------------------------------------------------------

def test_a_final_run_keeps_its_instance_for_the_grace_period_then_it_is_terminated(aws: AwsClients, moto_url: str) -> None:
    """The on_completion hooks and last logs run after the final state: no terminate for final_grace_s."""
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Completed()]
    worker = _worker(prefect, moto_clients(moto_url))
    clock = {"t": datetime.now(timezone.utc)}
    worker.now = lambda: clock["t"]
    seen: list[tuple[float, str]] = []  # (seconds since the run was seen completed, instance state) at each wait
    completed_at: dict[str, datetime] = {}

    async def tick(seconds: float) -> None:
        if prefect.flow_run.state.is_completed():
            completed_at.setdefault("t", clock["t"])
            seen.append(((clock["t"] - completed_at["t"]).total_seconds(), _state(aws, "eu-north-1", _run_instance(aws, flow_run))))
        clock["t"] += timedelta(seconds=seconds)

    worker.async_sleep = tick
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = anyio.run(lambda: worker.run(flow_run, _conf(flow_run, final_grace_s=120)))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert seen and all(state == "running" for _, state in seen), seen  # never terminated within the grace period
    assert (clock["t"] - completed_at["t"]).total_seconds() >= 120
    assert _state(aws, "eu-north-1", result.instance_id) in ("shutting-down", "terminated")  # ... and terminated after it


def test_an_instance_that_powers_itself_off_after_the_run_is_not_terminated_again(aws: AwsClients, moto_url: str) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Completed()]
    worker = _worker(prefect, moto_clients(moto_url))
    calls: list[tuple[str, str]] = []
    mine = {"now": False}

    async def power_off_after_completion(seconds: float) -> None:
        if prefect.flow_run.state.is_completed():  # what `trap 'shutdown -h now' EXIT` does on the instance
            mine["now"] = True
            aws.ec2("eu-north-1").terminate_instances(InstanceIds=[_run_instance(aws, flow_run)])
            mine["now"] = False

    worker.async_sleep = power_off_after_completion
    observer = lambda service, op: mine["now"] or calls.append((service, op))  # noqa: E731 - the worker's calls only
    add_call_observer(observer)
    try:
        with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
            result = anyio.run(lambda: worker.run(flow_run, _conf(flow_run)))  # default final_grace_s
    finally:
        remove_call_observer(observer)
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert ("ec2", "TerminateInstances") not in calls  # it powered itself off: the worker terminates nothing
    assert _state(aws, "eu-north-1", result.instance_id) in ("shutting-down", "terminated")


def test_final_grace_is_a_documented_job_variable() -> None:
    props = CareEC2Worker.get_default_base_job_template()["variables"]["properties"]
    assert props["final_grace_s"]["default"] == 120 and "hooks" in props["final_grace_s"]["description"]


def test_the_reaper_leaves_a_just_finished_run_its_grace_period(aws: AwsClients) -> None:
    from care_flows.aws.reaper import reap

    now = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    tags = [{"Key": "care:flow-run-id", "Value": "run-1"}, {"Key": "care:expires-at", "Value": (now + timedelta(hours=1)).isoformat()}]
    iid = aws.ec2("eu-north-1").run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                              TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]
    just = reap(["eu-north-1"], aws, now=now, flow_run_state=lambda r: ("COMPLETED", now - timedelta(seconds=30)))
    assert just.to_reap == [] and _state(aws, "eu-north-1", iid) == "running"
    later = reap(["eu-north-1"], aws, now=now, flow_run_state=lambda r: ("COMPLETED", now - timedelta(minutes=20)))
    assert [r.instance_id for r in later.terminated] == [iid] and later.terminated[0].reason == "flow run is COMPLETED"


# M2 ---------------------------------------------------------------------------------------------

REVIEW_ENV = {"DB_PASS": "hunter2-plain", "GITHUB_PAT": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "MYSQL_PWD": "pw-plain-77",
              "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
              "NOTE": "xoxb-123456789012-abcdefghijklmnop", "ALERTS": "https://hooks.slack.com/services/T001/B001/YYYYSECRETYYYY",
              "CALLBACK": "https://api.example.org/v1/done?api_key=abcd1234efgh", "STAGE": "prod", "PYTHONPATH": "/opt/flows",
              "GIT_SHA": "3f786850e387550fdab836ed7e6dc881de23001b"}


def test_secret_names_and_values_of_the_review_are_not_written() -> None:
    kept, dropped = safe_env(REVIEW_ENV)
    assert kept == {"STAGE": "prod", "PYTHONPATH": "/opt/flows", "GIT_SHA": "3f786850e387550fdab836ed7e6dc881de23001b"}
    assert set(dropped) == set(REVIEW_ENV) - set(kept)
    assert not is_secret_name("PATH") and is_secret_name("GITHUB_PAT") and is_secret_name("MY_PAT_2")


def test_the_worker_drops_them_with_one_warning_naming_each_and_the_way_to_pass_secrets(moto_url: str, caplog) -> None:
    log = logging.getLogger("test.care-ec2.m2")
    flow_run = make_flow_run()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        conf = _conf(flow_run, env=dict(REVIEW_ENV))
        with caplog.at_level(logging.INFO, logger="test.care-ec2.m2"):
            script = build_launch_spec(flow_run, conf, log=log).user_data("eu-north-1")
    for name, value in REVIEW_ENV.items():
        if name in ("STAGE", "PYTHONPATH", "GIT_SHA"):
            assert f"export {name}=" in script
        else:
            assert value not in script and name not in script
            assert value not in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "user data" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert all(name in warnings[0] for name in ("DB_PASS", "GITHUB_PAT", "MYSQL_PWD", "SLACK_WEBHOOK_URL", "NOTE", "ALERTS", "CALLBACK"))
    assert "Secrets Manager" in warnings[0] and "its value looks like a token" in warnings[0]


# L1 ---------------------------------------------------------------------------------------------

class EmptyFirstPage:
    """SSM as its API reference allows: a first DescribeParameters page with no item and a NextToken."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokens = inner, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def describe_parameters(self, **kw: Any) -> Any:
        self.tokens.append(kw.get("NextToken"))
        if not kw.get("NextToken"):
            return {"Parameters": [], "NextToken": "page2"}
        return self.inner.describe_parameters(**{k: v for k, v in kw.items() if k != "NextToken"})


def test_preflight_follows_next_token_when_the_first_page_is_empty(aws: AwsClients, moto_url: str) -> None:
    aws.ssm("eu-north-1").put_parameter(Name="/care/prefect-api-key", Value=PLANTED_SECRET, Type="SecureString")
    wrapped: dict[str, EmptyFirstPage] = {}

    def wrap(service: str, region: str, client: Any) -> Any:
        return wrapped.setdefault(region, EmptyFirstPage(client)) if service == "ssm" else client

    check = check_secret(moto_clients(moto_url, wrap=wrap), "eu-north-1", "/care/prefect-api-key")
    assert check.ok, check.line()
    assert wrapped["eu-north-1"].tokens == [None, "page2"]
    assert PLANTED_SECRET not in check.line()


# L2 ---------------------------------------------------------------------------------------------

class DiesAtLaunch:
    """EC2 accepts the first instance, then terminates it during launch with ``reason``."""

    def __init__(self, inner: Any, reason: tuple[str, str]) -> None:
        self.inner, self.reason, self.first = inner, reason, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run_instances(self, **kw: Any) -> Any:
        resp = self.inner.run_instances(**kw)
        if self.first is None:
            self.first = resp["Instances"][0]["InstanceId"]
        return resp

    def describe_instances(self, **kw: Any) -> Any:
        if self.first and kw.get("InstanceIds") == [self.first]:
            self.inner.terminate_instances(InstanceIds=[self.first])
            resp = self.inner.describe_instances(**kw)
            for reservation in resp["Reservations"]:
                for inst in reservation["Instances"]:
                    inst["State"] = {"Code": 48, "Name": "terminated"}
                    inst["StateReason"] = {"Code": self.reason[0], "Message": self.reason[1]}
            return resp
        return self.inner.describe_instances(**kw)


def _dying(moto_url: str, reason: tuple[str, str]) -> tuple[AwsClients, dict[str, DiesAtLaunch]]:
    made: dict[str, DiesAtLaunch] = {}

    def wrap(service: str, region: str, client: Any) -> Any:
        return made.setdefault(region, DiesAtLaunch(client, reason)) if service == "ec2" else client

    return moto_clients(moto_url, wrap=wrap), made


def test_an_instance_ec2_drops_for_capacity_during_launch_is_relaunched_on_the_next_option(aws: AwsClients, moto_url: str) -> None:
    clients, made = _dying(moto_url, ("Server.InsufficientInstanceCapacity", "Server.InsufficientInstanceCapacity: Insufficient capacity."))
    flow_run = make_flow_run(state=Pending())
    prefect = Prefect(flow_run)
    prefect.script = [Pending(), Pending(), Running(), Completed()]
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        conf = _conf(flow_run, fallback_instance_types=["t3.small"], fallback_regions=["eu-south-2"], final_grace_s=0)
        result = anyio.run(lambda: _worker(prefect, clients).run(flow_run, conf))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert result.instance_id != made["eu-north-1"].first  # the next option: the type's next zone (subnet)
    assert prefect.pids == [result.identifier]  # the new instance is the run's infrastructure id
    codes = [(a["outcome"], a["code"]) for a in result.attempts]
    assert ("capacity", "Server.InsufficientInstanceCapacity") in codes and codes[-1] == ("launched", "")
    assert not any(s.is_crashed() for s in prefect.set_states)
    assert care_instances(aws, "eu-north-1") == []


def test_an_instance_ec2_kills_for_another_reason_crashes_the_run_with_that_reason(aws: AwsClients, moto_url: str) -> None:
    clients, _ = _dying(moto_url, ("Client.InternalError", "Client.InternalError: Client error on launch"))
    flow_run = make_flow_run(state=Pending())
    prefect = Prefect(flow_run)
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = anyio.run(lambda: _worker(prefect, clients).run(flow_run, _conf(flow_run, fallback_instance_types=["t3.small"])))
    assert result.status_code == 1 and "\n" not in result.reason
    assert "Client.InternalError: Client error on launch" in result.reason and "KMS" in result.reason
    assert prefect.set_states[-1].is_crashed() and prefect.set_states[-1].message == result.reason
    assert prefect.pids == []  # not relaunched: another type would die the same way


# L3 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("region", "eu-west-9"), ("fallback_regions", ["eu-south-2", "eu-west-9"])])
def test_an_unknown_region_job_variable_is_one_line_naming_it(field: str, value: Any) -> None:
    flow_run = make_flow_run()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        conf = _conf(flow_run, **{field: value})
        with pytest.raises(ConfigError, match=rf"^job variable {field}: unknown region 'eu-west-9'") as info:
            build_launch_spec(flow_run, conf)
    assert "\n" not in str(info.value)


def _no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credential source botocore could find: env, shared files, instance metadata."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_launch_without_credentials_is_one_aws_error_and_no_traceback(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:
    _no_aws_credentials(monkeypatch, tmp_path)
    spec = LaunchSpec(flow_run_id="run-nocreds", region="eu-north-1", instance_type="t3.micro", user_data="#!/bin/bash\n")
    with caplog.at_level(logging.INFO), pytest.raises(AwsError, match="no AWS credentials found") as info:
        launch(spec, AwsClients(endpoint_url=moto_url), sleep=lambda s: None)
    assert "\n" not in str(info.value) and "aws_credentials job variable" in str(info.value)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_misspelt_instance_type_says_check_the_spelling(aws: AwsClients, moto_url: str) -> None:
    spec = LaunchSpec(flow_run_id="run-typo", region="eu-north-1", instance_type="t3.lage", user_data="#!/bin/bash\n")
    with pytest.raises(AwsError) as info:
        launch(spec, moto_clients(moto_url), sleep=lambda s: None)
    message = str(info.value)
    assert "'t3.lage' is not an EC2 instance type (did you mean 't3.large'?)" in message and "check the spelling" in message
    assert "add fallback" not in message


# L4 ---------------------------------------------------------------------------------------------

def test_a_loopback_api_url_is_warned_about_once_in_the_worker_log(aws: AwsClients, moto_url: str, caplog) -> None:
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    worker = _worker(prefect, moto_clients(moto_url))
    worker._logger = logging.getLogger("test.care-ec2.l4")
    with caplog.at_level(logging.WARNING, logger="test.care-ec2.l4"), temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4797/api", PREFECT_LOGGING_TO_API_ENABLED: False}):
        for _ in range(2):
            prefect.script = [Completed()]
            anyio.run(lambda: worker.run(flow_run, _conf(flow_run, final_grace_s=0)))
    lines = [r.getMessage() for r in caplog.records if "loopback" in r.getMessage()]
    assert len(lines) == 1 and "http://127.0.0.1:4797/api" in lines[0] and "cannot reach it" in lines[0]
    assert api_url_problem(None) and "not set" in api_url_problem(None)
    assert api_url_problem("http://localhost:4200/api") and api_url_problem("http://169.254.1.1:4200/api")
    assert api_url_problem("http://10.0.0.5:4200/api") is None


# L5 ---------------------------------------------------------------------------------------------

def _ami(aws: AwsClients, region: str) -> str:
    return aws.ec2(region).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def _capacity_in(region: str):
    return lambda op, r, kw: "InsufficientInstanceCapacity" if (op == "run_instances" and r == region) else None


def test_image_id_is_not_silently_swapped_for_another_os_in_a_fallback_region(aws: AwsClients, moto_url: str, caplog) -> None:
    ami = _ami(aws, "eu-north-1")
    spec = LaunchSpec(flow_run_id="run-img", region="eu-north-1", instance_type="t3.micro", fallback_regions=("eu-south-2",),
                      image_id=ami, user_data="#!/bin/bash\n", associate_public_ip=True)
    with caplog.at_level(logging.WARNING), pytest.raises(AwsError, match="image_id_by_region") as info:
        launch(spec, faulty_clients(moto_url, _capacity_in("eu-north-1")), sleep=lambda s: None)
    assert "NoImageForRegion" in str(info.value) and care_instances(aws, "eu-south-2") == []
    assert any(f"image_id {ami} is an AMI of eu-north-1" in r.getMessage() for r in caplog.records)
    south = _ami(aws, "eu-south-2")
    spec = LaunchSpec(**{**spec.__dict__, "image_id_by_region": {"eu-south-2": south}})
    result = launch(spec, faulty_clients(moto_url, _capacity_in("eu-north-1")), sleep=lambda s: None)
    inst = aws.ec2("eu-south-2").describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][0]
    assert result.region == "eu-south-2" and inst["ImageId"] == south


# L6 ---------------------------------------------------------------------------------------------

def test_reap_without_credentials_is_one_line_and_exit_2(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    _no_aws_credentials(monkeypatch, tmp_path)
    code = main(["aws", "reap", "--no-prefect", "--regions", "eu-north-1,eu-south-2,eu-west-1", "--endpoint-url", moto_url])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == [lines[0]] and lines[0].startswith("error: no AWS credentials found;"), err


def test_iam_policy_adds_the_ebs_kms_statements_only_when_asked(capsys) -> None:
    key = "arn:aws:kms:eu-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert main(["aws", "iam-policy", "--ebs-kms-key-arn", key]) == 0
    statements = {s["Sid"]: s for s in __import__("json").loads(capsys.readouterr().out)["Statement"]}
    assert statements["GrantTheDefaultEbsKmsKeyToEbs"]["Action"] == ["kms:CreateGrant"]
    assert statements["GrantTheDefaultEbsKmsKeyToEbs"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert set(statements["UseTheDefaultEbsKmsKey"]["Action"]) == {"kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"}
    assert statements["UseTheDefaultEbsKmsKey"]["Resource"] == [key]
    assert main(["aws", "iam-policy"]) == 0
    assert "kms:" not in capsys.readouterr().out
    assert main(["aws", "iam-policy", "--ebs-kms-key-arn", "alias/aws/ebs"]) == 2
    assert "is not a KMS key ARN" in capsys.readouterr().err
