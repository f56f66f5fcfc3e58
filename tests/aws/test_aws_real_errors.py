"""Real-AWS behaviours moto does not emulate, injected with the error shapes AWS really returns.

moto never throttles, answers DescribeInstances at once after RunInstances, ignores ClientToken
and knows no IAM propagation delay; these tests replay what EC2 answers in those cases (codes and
messages as AWS returns them) on top of the moto server, or against a local HTTP stub that speaks
EC2's XML error format.
"""

from __future__ import annotations

import http.server
import logging
import random
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import anyio
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from prefect.states import Completed, Running

from care_flows.aws import launch as launch_module
from care_flows.aws.clients import AwsClients
from care_flows.aws.faults import classify, error_message
from care_flows.aws.launch import LaunchSpec, launch
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker
from care_flows.errors import AwsError
from test_aws_support import PLANTED_SECRET, FakePrefect, _free_port, aws, care_instances, make_flow_run, moto_clients, moto_url  # noqa: F401

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)

# Messages as EC2 returns them (EC2 API error codes list; IAM propagation as in Terraform/Packer reports)
IAM_NOT_YET = "Value (care-flow-run) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
VCPU_LIMIT = ("You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the "
              "specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.")
NO_ADDRESSES = "There are not enough free addresses in subnet '{subnet}' to satisfy the requested number of instances."
TOKEN_MISMATCH = "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."
ENCODED = "AbCdEf0123456789-_" * 40
UNAUTHORIZED = f"You are not authorized to perform this operation. Encoded authorization failure message: {ENCODED}"


def _error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class Scripted:
    """Wraps a moto EC2 client; ``plan(operation, kwargs)`` returns a ClientError to raise, or None."""

    def __init__(self, inner: Any, plan: Callable[[str, dict[str, Any]], ClientError | None]) -> None:
        self._inner, self._plan = inner, plan
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_") or name in ("get_paginator", "meta", "exceptions", "can_paginate"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            err = self._plan(name, kwargs)
            if err is not None:
                raise err
            return attr(*args, **kwargs)

        return call


def _scripted(moto_url: str, plan: Callable[[str, dict[str, Any]], ClientError | None]) -> tuple[AwsClients, dict[str, Scripted]]:
    made: dict[str, Scripted] = {}

    def wrap(service: str, region: str, client: Any) -> Any:
        if service != "ec2":
            return client
        made[region] = Scripted(client, plan)
        return made[region]

    return moto_clients(moto_url, wrap=wrap), made


def _spec(**kw: Any) -> LaunchSpec:
    return LaunchSpec(flow_run_id=str(uuid.uuid4()), region=kw.pop("region", "eu-north-1"), instance_type=kw.pop("instance_type", "t3.large"),
                      user_data="#!/bin/bash\necho hi\n", ttl_minutes=60, **kw)


def _instance_profile(clients: AwsClients) -> None:
    """moto checks the profile exists (AWS does too, once IAM has propagated)."""
    iam = clients.client("iam", "eu-north-1")
    iam.create_role(RoleName="care-flow-run", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="care-flow-run")
    iam.add_role_to_instance_profile(InstanceProfileName="care-flow-run", RoleName="care-flow-run")


def _runs(scripted: Scripted) -> list[dict[str, Any]]:
    return [kw for name, kw in scripted.calls if name == "run_instances"]


def test_botocore_makes_exactly_one_attempt_so_the_back_off_is_cares() -> None:
    # An EC2-format 503 RequestLimitExceeded from a local stub: botocore must not retry it itself
    # (Config(retries={"max_attempts": 1}) meant two attempts: botocore/args.py adds one).
    hits = {"n": 0}
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
            b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            hits["n"] += 1
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        clients = moto_clients(f"http://127.0.0.1:{port}")
        assert clients.ec2("eu-north-1").meta.config.retries["total_max_attempts"] == 1
        with pytest.raises(ClientError) as caught:
            clients.ec2("eu-north-1").describe_instances()
        assert classify(caught.value) == "throttle"
        assert hits["n"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_just_created_instance_profile_is_waited_for(aws: AwsClients, moto_url: str) -> None:
    left = {"n": 3}

    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op == "run_instances" and left["n"] > 0:
            left["n"] -= 1
            return _error("InvalidParameterValue", IAM_NOT_YET, "RunInstances")
        return None

    clients, _ = _scripted(moto_url, plan)
    _instance_profile(aws)
    waits: list[float] = []
    result = launch(_spec(iam_instance_profile="care-flow-run"), clients, sleep=waits.append, rng=random.Random(3), now=NOW)
    assert [a.outcome for a in result.attempts] == ["propagating"] * 3 + ["launched"]
    assert len(waits) == 3 and all(0 < w <= 20 for w in waits)
    # same option each time: IAM propagation is not a capacity problem
    assert len({(a.region, a.instance_type, a.subnet_id) for a in result.attempts}) == 1


def test_an_instance_profile_that_never_appears_fails_in_one_line(aws: AwsClients, moto_url: str) -> None:
    clients, _ = _scripted(moto_url, lambda op, kw: _error("InvalidParameterValue", IAM_NOT_YET, "RunInstances") if op == "run_instances" else None)
    with pytest.raises(AwsError) as caught:
        launch(_spec(iam_instance_profile="care-flow-run"), clients, sleep=lambda s: None, max_iam_retries=2, now=NOW)
    assert "Invalid IAM Instance Profile name" in str(caught.value) and "\n" not in str(caught.value)
    assert [a.outcome for a in caught.value.attempts] == ["propagating", "propagating", "fatal"]  # type: ignore[attr-defined]


def test_a_regional_vcpu_quota_skips_the_other_zones_of_that_type(aws: AwsClients, moto_url: str) -> None:
    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op == "run_instances" and kw["InstanceType"] == "m5.xlarge":
            return _error("VcpuLimitExceeded", VCPU_LIMIT, "RunInstances")
        return None

    clients, made = _scripted(moto_url, plan)
    result = launch(_spec(instance_type="m5.xlarge", fallback_instance_types=("t3.large",)), clients, now=NOW)
    assert result.instance_type == "t3.large"
    # the default VPC has three zones; a regional quota is not retried in the other two
    assert [kw["InstanceType"] for kw in _runs(made["eu-north-1"])] == ["m5.xlarge", "t3.large"]
    assert result.fallback_reasons == [f"eu-north-1/m5.xlarge/{result.attempts[0].subnet_id}: VcpuLimitExceeded"]


def test_a_full_subnet_moves_to_the_next_subnet(aws: AwsClients, moto_url: str) -> None:
    first: dict[str, str] = {}

    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op != "run_instances":
            return None
        subnet = kw["NetworkInterfaces"][0]["SubnetId"]
        first.setdefault("subnet", subnet)
        return _error("InsufficientFreeAddressesInSubnet", NO_ADDRESSES.format(subnet=subnet), "RunInstances") if subnet == first["subnet"] else None

    clients, _ = _scripted(moto_url, plan)
    result = launch(_spec(), clients, now=NOW)
    assert [a.outcome for a in result.attempts] == ["capacity", "launched"]
    assert result.subnet_id != first["subnet"] and result.instance_type == "t3.large"


def test_a_client_token_spent_on_another_request_is_replaced_once(aws: AwsClients, moto_url: str) -> None:
    tokens: list[str] = []

    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op != "run_instances":
            return None
        tokens.append(kw["ClientToken"])
        return _error("IdempotentParameterMismatch", TOKEN_MISMATCH, "RunInstances") if len(tokens) == 1 else None

    clients, _ = _scripted(moto_url, plan)
    result = launch(_spec(), clients, now=NOW)
    assert [a.outcome for a in result.attempts] == ["token", "launched"]
    assert len(tokens) == 2 and tokens[0] != tokens[1] and all(len(t) <= 64 for t in tokens)


def test_unauthorized_keeps_the_error_one_short_line_and_logs_how_to_decode(aws: AwsClients, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:
    clients, _ = _scripted(moto_url, lambda op, kw: _error("UnauthorizedOperation", UNAUTHORIZED, "RunInstances", 403) if op == "run_instances" else None)
    with caplog.at_level(logging.WARNING, logger="care_flows.aws.launch"), pytest.raises(AwsError) as caught:
        launch(_spec(), clients, now=NOW)
    text = str(caught.value)
    assert "UnauthorizedOperation: You are not authorized to perform this operation." in text
    assert ENCODED not in text and "\n" not in text and len(text) < 400
    assert "decode-authorization-message" in text
    assert any(ENCODED in r.getMessage() and "aws sts decode-authorization-message" in r.getMessage() for r in caplog.records)


def test_transient_botocore_failures_are_retried_like_throttling() -> None:
    assert classify(ReadTimeoutError(endpoint_url="https://ec2.eu-north-1.amazonaws.com/")) == "throttle"
    for code in ("InternalError", "Unavailable", "RequestTimeout", "TooManyRequestsException", "ThrottlingException"):
        assert classify(_error(code, "x", "RunInstances", 503)) == "throttle"
    assert classify(_error("InsufficientFreeAddressesInSubnet", "x", "RunInstances")) == "capacity"
    assert classify(_error("InvalidParameterValue", "Invalid value 'foo.bar' for InstanceType.", "RunInstances")) == "fatal"
    assert "Encoded" not in error_message(_error("UnauthorizedOperation", UNAUTHORIZED, "RunInstances", 403))


async def _no_wait(seconds: float) -> None:
    await anyio.sleep(0)


def _watching_worker(moto_url: str, plan: Callable[[str, dict[str, Any]], ClientError | None], prefect: FakePrefect) -> tuple[CareEC2Worker, dict[str, Scripted]]:
    clients, made = _scripted(moto_url, plan)
    worker = CareEC2Worker(work_pool_name="care-eu")
    worker.clients_factory = lambda conf: clients
    worker.prefect_client = prefect
    worker.async_sleep = _no_wait
    worker.sync_sleep = lambda s: None
    return worker, made


def _conf(flow_run: Any) -> CareEC2JobConfiguration:
    conf = CareEC2JobConfiguration(region="eu-north-1", instance_type="t3.micro", poll_interval_s=0.01, api_key_secret="care/prefect-api-key",
                                   final_grace_s=0)
    conf.prepare_for_flow_run(flow_run)
    return conf


def test_an_instance_not_yet_visible_after_launch_is_not_a_crash(aws: AwsClients, moto_url: str) -> None:
    # EC2 is eventually consistent: DescribeInstances may not know an instance RunInstances just returned
    polls = {"n": 0}

    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op == "describe_instances" and kw.get("InstanceIds"):
            polls["n"] += 1
            if polls["n"] <= 2:
                return _error("InvalidInstanceID.NotFound", f"The instance ID '{kw['InstanceIds'][0]}' does not exist", "DescribeInstances")
        return None

    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Running(), Running(), Completed()]
    worker, _ = _watching_worker(moto_url, plan, prefect)
    result = anyio.run(lambda: worker.run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert polls["n"] >= 3 and not prefect.set_states  # never marked crashed
    assert care_instances(aws, "eu-north-1") == []  # terminated at the end


def _failed_poll(kind: str) -> Exception:
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    url = "https://ec2.eu-north-1.amazonaws.com/"
    return {"throttled": lambda: _error("RequestLimitExceeded", "Request limit exceeded.", "DescribeInstances", 503),
            "endpoint": lambda: EndpointConnectionError(endpoint_url=url),
            "connect-timeout": lambda: ConnectTimeoutError(endpoint_url=url)}[kind]()


@pytest.mark.parametrize("kind", ["throttled", "endpoint", "connect-timeout"])
def test_a_throttled_or_dropped_poll_does_not_terminate_a_running_flow_run(aws: AwsClients, moto_url: str, kind: str) -> None:
    """Review 13 #1: a dropped connection (unreachable endpoint, connect timeout) ended the watch too, and
    the instance of a run still Running was terminated; only throttling was checked again later."""
    polls = {"n": 0}

    def plan(op: str, kw: dict[str, Any]) -> Exception | None:
        if op == "describe_instances" and kw.get("InstanceIds"):
            polls["n"] += 1
            if polls["n"] == 1:
                return _failed_poll(kind)
        return None

    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Running(), Completed()]
    worker, _ = _watching_worker(moto_url, plan, prefect)
    result = anyio.run(lambda: worker.run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert polls["n"] >= 2 and not prefect.set_states


def test_a_token_mismatch_reuses_the_runs_instance_the_first_lookup_missed(aws: AwsClients, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # An earlier submission launched the instance (other expires-at tag, same token); the first
    # DescribeInstances did not see it yet (eventual consistency), RunInstances says the token is taken.
    spec = _spec()
    first = launch(spec, aws, now=NOW)

    def plan(op: str, kw: dict[str, Any]) -> ClientError | None:
        if op == "run_instances":
            return _error("IdempotentParameterMismatch", TOKEN_MISMATCH, "RunInstances")
        return None

    clients, _ = _scripted(moto_url, plan)
    hidden = {"done": False}
    real_find = launch_module.find_flow_run_instances

    def find_once_empty(ec2: Any, flow_run_id: str, states: Any = launch_module.LIVE_STATES) -> list[dict[str, Any]]:
        if not hidden["done"]:
            hidden["done"] = True
            return []  # the first lookup misses the just-launched instance
        return real_find(ec2, flow_run_id, states)

    monkeypatch.setattr(launch_module, "find_flow_run_instances", find_once_empty)
    second = launch(spec, clients, now=NOW.replace(minute=5))
    assert second.instance_id == first.instance_id and second.reused
    assert [a.outcome for a in second.attempts] == ["reused"] and second.attempts[0].code == "IdempotentParameterMismatch"
    assert len(care_instances(aws, "eu-north-1")) == 1


def test_the_reaper_backs_off_on_a_throttled_listing(aws: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    from care_flows.aws import reaper

    launch(_spec(), aws, now=NOW)  # expired long before the reaper's clock below
    real_list, listings = reaper.list_care_instances, {"n": 0}

    def throttled_once(ec2: Any) -> list[dict[str, Any]]:
        listings["n"] += 1
        if listings["n"] == 1:  # DescribeInstances goes through a paginator: throttle the listing itself
            raise _error("RequestLimitExceeded", "Request limit exceeded.", "DescribeInstances", 503)
        return real_list(ec2)

    monkeypatch.setattr(reaper, "list_care_instances", throttled_once)
    waits: list[float] = []
    report = reaper.reap(["eu-north-1"], aws, now=datetime(2026, 2, 1, tzinfo=timezone.utc), flow_run_state=None, sleep=waits.append)
    assert report.errors == {} and len(report.terminated) == 1 and len(waits) == 1


def test_default_vpc_without_a_public_ip_is_warned_about(aws: AwsClients, caplog: pytest.LogCaptureFixture) -> None:
    # moto has no routing; on AWS a default-VPC instance without a public IP has no way out (no NAT)
    with caplog.at_level(logging.WARNING, logger="care_flows.aws.launch"):
        launch(_spec(), aws, now=NOW)
        launch(_spec(associate_public_ip=True), aws, now=NOW)
    warned = [r.getMessage() for r in caplog.records if "default VPC" in r.getMessage()]
    assert len(warned) == 1 and "associate_public_ip=true" in warned[0]


class _TokenEc2:
    """EC2's ClientToken rule, which moto ignores: the same token with other parameters is a mismatch."""

    def __init__(self, inner: Any, seen: dict[str, tuple[str, str]]) -> None:
        self._inner, self._seen = inner, seen

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != "run_instances":
            return attr

        def call(**kw: Any) -> Any:
            import json

            key = json.dumps({k: v for k, v in kw.items() if k != "ClientToken"}, sort_keys=True, default=str)
            if kw["ClientToken"] in self._seen:
                old_key, instance_id = self._seen[kw["ClientToken"]]
                if old_key != key:
                    raise _error("IdempotentParameterMismatch", TOKEN_MISMATCH, "RunInstances")
                return {"Instances": self._inner.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]}
            out = attr(**kw)
            self._seen[kw["ClientToken"]] = (key, out["Instances"][0]["InstanceId"])
            return out

        return call


def test_every_resubmission_of_a_run_whose_instances_died_gets_an_instance(aws: AwsClients, moto_url: str) -> None:
    """Review 13 #2: the 'fresh' token was the same on every call, so a third submission (the first two
    instances died before running, e.g. no route out) hit the mismatch twice and failed for good."""
    from datetime import timedelta

    seen: dict[str, tuple[str, str]] = {}
    clients = moto_clients(moto_url, wrap=lambda s, r, c: _TokenEc2(c, seen) if s == "ec2" else c)
    spec = _spec()
    ids = []
    for n in range(3):
        result = launch(spec, clients, now=NOW + timedelta(minutes=10 * n), sleep=lambda s: None)
        ids.append(result.instance_id)
        aws.ec2("eu-north-1").terminate_instances(InstanceIds=[result.instance_id])  # died before the run started
    assert len(set(ids)) == 3


def test_the_reaper_logs_how_to_decode_a_denied_termination(aws: AwsClients, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Review 13 #3: the one-line error says CaRE logs the encoded reason, but only launch did."""
    from care_flows.aws import reaper

    class Deny:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "terminate_instances":
                def call(**kw: Any) -> Any:
                    raise _error("UnauthorizedOperation", UNAUTHORIZED, "TerminateInstances", 403)
                return call
            return getattr(self._inner, name)

    launch(_spec(), aws, now=NOW)  # expired long before the reaper's clock below
    clients = moto_clients(moto_url, wrap=lambda s, r, c: Deny(c) if s == "ec2" else c)
    with caplog.at_level(logging.WARNING, logger="care_flows.aws.reaper"):
        report = reaper.reap(["eu-north-1"], clients, now=datetime(2026, 2, 1, tzinfo=timezone.utc), flow_run_state=None, sleep=lambda s: None)
    assert report.errors and ENCODED not in str(report.errors)
    assert any(f"decode-authorization-message --encoded-message {ENCODED}" in r.getMessage() for r in caplog.records)
