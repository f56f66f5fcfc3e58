"""Launching over HTTP against moto: regions, tags, IMDSv2, user data, idempotency, faults, chaos."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import datetime, timezone

import pytest

from care_flows.aws.clients import AwsClients
from care_flows.aws.launch import LaunchSpec, client_token, launch, plan_options
from care_flows.aws.userdata import render_user_data
from care_flows.errors import AwsError
from test_aws_support import PLANTED_SECRET, aws, care_instances, faulty_clients, moto_clients, moto_url  # noqa: F401

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _spec(region: str = "eu-north-1", itype: str = "t3.large", **kw) -> LaunchSpec:
    run_id = kw.pop("flow_run_id", str(uuid.uuid4()))
    ud = render_user_data(flow_run_id=run_id, api_url="http://127.0.0.1:4200/api", env={"PREFECT_API_KEY": PLANTED_SECRET},
                          install="care-flows", api_key_secret="care/prefect-api-key", region=region, ttl_minutes=60)
    return LaunchSpec(flow_run_id=run_id, region=region, instance_type=itype, deployment="etl/nightly", user_data=ud, ttl_minutes=60, **kw)


def _describe(clients: AwsClients, region: str, instance_id: str) -> dict:
    return clients.ec2(region).describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.mark.parametrize("region", ["eu-north-1", "eu-south-2"])
def test_launch_sets_type_tags_imdsv2_shutdown_and_no_public_ip(aws: AwsClients, region: str) -> None:
    spec = _spec(region)
    result = launch(spec, aws, now=NOW)
    assert result.region == region and result.identifier == f"{region}:{result.instance_id}"
    inst = _describe(aws, region, result.instance_id)
    assert inst["InstanceType"] == "t3.large"
    assert inst["Placement"]["AvailabilityZone"].startswith(region)
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["care:flow-run-id"] == spec.flow_run_id
    assert tags["care:deployment"] == "etl/nightly"
    assert tags["care:expires-at"] == "2026-01-05T13:00:00+00:00"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert "PublicIpAddress" not in inst
    # the AMI is the region's Amazon Linux 2023 x86_64 image from the SSM public parameter
    ami = aws.ssm(region).get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    assert inst["ImageId"] == ami["Parameter"]["Value"]
    ec2 = aws.ec2(region)
    assert ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    user_data = base64.b64decode(ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")["UserData"]["Value"]).decode()
    assert f"prefect flow-run execute {spec.flow_run_id}" in user_data
    assert "care/prefect-api-key" in user_data and PLANTED_SECRET not in user_data


def test_arm_type_gets_the_arm64_image(aws: AwsClients) -> None:
    result = launch(_spec("eu-north-1", "t4g.large"), aws, now=NOW)
    ami = aws.ssm("eu-north-1").get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
    assert _describe(aws, "eu-north-1", result.instance_id)["ImageId"] == ami["Parameter"]["Value"]


def test_public_ip_only_when_asked(aws: AwsClients) -> None:
    result = launch(_spec(associate_public_ip=True), aws, now=NOW)
    assert "PublicIpAddress" in _describe(aws, "eu-north-1", result.instance_id)


def test_retried_submission_reuses_the_instance(aws: AwsClients) -> None:
    spec = _spec("eu-south-2")
    first = launch(spec, aws, now=NOW)
    second = launch(spec, aws, now=NOW)
    assert second.instance_id == first.instance_id and second.reused
    assert len(care_instances(aws, "eu-south-2")) == 1


def test_retried_submission_after_a_regional_fallback_reuses_it_too(aws: AwsClients, moto_url: str) -> None:
    spec = _spec("eu-north-1", fallback_regions=("eu-south-2",))
    ice = faulty_clients(moto_url, lambda op, region, kw: "InsufficientInstanceCapacity" if op == "run_instances" and region == "eu-north-1" else None)
    first = launch(spec, ice, now=NOW)
    assert first.region == "eu-south-2"
    second = launch(spec, aws, now=NOW)  # capacity is back in eu-north-1, but the run already has an instance
    assert (second.region, second.instance_id) == ("eu-south-2", first.instance_id)
    assert care_instances(aws, "eu-north-1") == []


def test_client_token_is_stable_per_option_and_differs_across_options() -> None:
    spec = _spec(subnet_ids=("subnet-a", "subnet-b"))
    a, b = list(plan_options(spec, lambda r: ()))[:2]
    assert client_token(spec.flow_run_id, a) == client_token(spec.flow_run_id, a)
    assert client_token(spec.flow_run_id, a) != client_token(spec.flow_run_id, b)
    assert len(client_token(spec.flow_run_id, a)) <= 64


def test_a_retried_submission_sends_the_same_client_token_when_the_tag_lookup_misses(aws: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 38a H1: the ClientToken sent to RunInstances, not only client_token(), is the flow run's own, so a
    retry whose DescribeInstances has not caught up yet is still de-duplicated by EC2 (moto does not do that)."""
    import care_flows.aws.launch as launch_module

    sent: list[str] = []
    real = aws.ec2

    def recording(region):
        client = real(region)
        client.meta.events.register("provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(params["ClientToken"]),
                                    unique_id="record-client-token")  # once per (cached) client
        return client

    aws.ec2 = recording  # type: ignore[method-assign]
    monkeypatch.setattr(launch_module, "find_flow_run_instances", lambda *a, **k: [])  # the tag lookup lags
    run_id = str(uuid.uuid4())
    launch(_spec(flow_run_id=run_id), aws, now=NOW)
    launch(_spec(flow_run_id=run_id), aws, now=NOW)  # another worker retries the same flow run
    assert len(sent) == 2 and sent[0] == sent[1], sent
    assert 0 < len(sent[0]) <= 64

def test_insufficient_capacity_falls_back_zone_then_type_then_region(aws: AwsClients, moto_url: str) -> None:
    def plan(op, region, kw):
        if op != "run_instances":
            return None
        if region == "eu-north-1":
            return "InsufficientInstanceCapacity" if kw["InstanceType"] == "t3.large" else "Unsupported"
        return None

    spec = _spec("eu-north-1", fallback_instance_types=("m5.large",), fallback_regions=("eu-south-2",))
    result = launch(spec, faulty_clients(moto_url, plan), now=NOW)
    assert (result.region, result.instance_type) == ("eu-south-2", "t3.large")
    outcomes = [(a.region, a.instance_type, a.outcome, a.code) for a in result.attempts]
    # three default subnets (zones) for t3.large in eu-north-1, each tried; m5.large answered Unsupported with no
    # zone named (EC2's answer for a type the region does not offer): its other zones skipped; then eu-south-2
    assert outcomes[:3] == [("eu-north-1", "t3.large", "capacity", "InsufficientInstanceCapacity")] * 3
    assert outcomes[3:4] == [("eu-north-1", "m5.large", "unsupported", "Unsupported")]
    assert outcomes[4] == ("eu-south-2", "t3.large", "launched", "")
    assert len({a.subnet_id for a in result.attempts[:3]}) == 3
    assert len(result.fallback_reasons) == 4
    assert care_instances(aws, "eu-north-1") == [] and len(care_instances(aws, "eu-south-2")) == 1


def test_type_not_offered_in_region_is_skipped(aws: AwsClients) -> None:
    # moto validates offerings: x1.16xlarge is offered in neither region (InvalidInstanceType)
    result = launch(_spec("eu-north-1", "x1.16xlarge", fallback_instance_types=("t3.large",)), aws, now=NOW)
    assert result.instance_type == "t3.large"
    assert [a.outcome for a in result.attempts] == ["unsupported", "launched"]


def test_throttling_backs_off_with_jitter_then_succeeds(aws: AwsClients, moto_url: str) -> None:
    left = {"n": 3}

    def plan(op, region, kw):
        if op == "run_instances" and left["n"] > 0:
            left["n"] -= 1
            return "RequestLimitExceeded"
        return None

    waits: list[float] = []
    result = launch(_spec(), faulty_clients(moto_url, plan), sleep=waits.append, rng=random.Random(7), now=NOW)
    assert [a.outcome for a in result.attempts] == ["throttled"] * 3 + ["launched"]
    assert len(waits) == 3 and all(w > 0 for w in waits)
    # exponential bounds (1, 2, 4 s) with jitter inside them
    assert waits[0] <= 1.0 and waits[1] <= 2.0 and waits[2] <= 4.0
    assert len(set(waits)) == 3


def test_backoff_waits_are_spread_over_the_bound_not_the_bound_itself() -> None:
    """Review 38a H6: "back off with jitter": many draws for one attempt differ and straddle the middle of the bound."""
    from care_flows.aws.faults import backoff_s

    rng = random.Random(3)
    waits = [backoff_s(3, base_s=1.0, cap_s=20.0, rng=rng) for _ in range(50)]
    assert all(0.4 <= w <= 4.0 for w in waits)  # at least 10% of the bound (4 s), at most the bound
    assert len({round(w, 6) for w in waits}) > 40
    assert min(waits) < 2.0 < max(waits)

def test_persistent_throttling_fails_cleanly(aws: AwsClients, moto_url: str) -> None:
    clients = faulty_clients(moto_url, lambda op, region, kw: "RequestLimitExceeded" if op == "run_instances" else None)
    with pytest.raises(AwsError, match="RequestLimitExceeded"):
        launch(_spec(), clients, sleep=lambda s: None, max_throttle_retries=2, now=NOW)
    assert care_instances(aws, "eu-north-1") == []


def test_other_errors_fail_with_a_clear_message(aws: AwsClients, moto_url: str) -> None:
    clients = faulty_clients(moto_url, lambda op, region, kw: "UnauthorizedOperation" if op == "run_instances" else None)
    with pytest.raises(AwsError, match=r"launching t3.large in eu-north-1 .* failed: UnauthorizedOperation"):
        launch(_spec(fallback_regions=("eu-south-2",)), clients, now=NOW)


def test_no_capacity_anywhere_says_what_was_tried(aws: AwsClients, moto_url: str) -> None:
    clients = faulty_clients(moto_url, lambda op, region, kw: "InsufficientInstanceCapacity" if op == "run_instances" else None)
    with pytest.raises(AwsError, match="no instance could be launched.*eu-south-2/t3.large"):
        launch(_spec(fallback_regions=("eu-south-2",)), clients, now=NOW)


def test_a_lost_answer_after_the_instance_exists_still_leaves_nothing_running(aws: AwsClients, moto_url: str) -> None:
    # run_instances succeeds server-side but the connection drops before the answer arrives
    class LosesAnswer:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            attr = getattr(self._inner, name)
            if name != "run_instances":
                return attr

            def call(**kwargs):
                attr(**kwargs)
                raise ConnectionResetError("connection reset by peer")

            return call

    clients = moto_clients(moto_url, wrap=lambda service, region, c: LosesAnswer(c) if service == "ec2" else c)
    with pytest.raises(AwsError, match="ConnectionResetError"):
        launch(_spec(), clients, now=NOW)
    assert care_instances(aws, "eu-north-1", ("pending", "running", "stopping", "stopped")) == []
    assert len(care_instances(aws, "eu-north-1", ("terminated", "shutting-down"))) == 1


def test_chaos_50_submissions_leave_no_running_care_instance(aws: AwsClients, moto_url: str) -> None:
    rng = random.Random(2026)
    faults = ["InsufficientInstanceCapacity", "Unsupported", "RequestLimitExceeded", "InternalError", "UnauthorizedOperation", None, None, None]

    def plan(op, region, kw):
        if op in ("run_instances", "describe_instances", "terminate_instances", "describe_subnets"):
            return rng.choice(faults) if op == "run_instances" else (rng.choice(["RequestLimitExceeded", None, None, None, None]))
        return None

    clients = faulty_clients(moto_url, plan)
    launched, failed = [], 0
    for _ in range(50):
        spec = _spec(rng.choice(["eu-north-1", "eu-south-2"]), rng.choice(["t3.large", "t3.micro", "m5.large"]),
                     fallback_instance_types=("c5.large",), fallback_regions=("eu-west-3",))
        try:
            result = launch(spec, clients, sleep=lambda s: None, rng=rng, max_throttle_retries=3, now=NOW)
        except AwsError:
            failed += 1
            continue
        launched.append(result)
        # the run finishes (or is cancelled): the worker terminates its instance, through the faults
        from care_flows.aws.launch import terminate_instance

        terminate_instance(clients.ec2(result.region), result.instance_id, sleep=lambda s: None, rng=rng)
    assert launched and failed  # the faults really hit both paths
    for region in ("eu-north-1", "eu-south-2", "eu-west-3"):
        assert care_instances(aws, region, ("pending", "running", "stopping", "stopped")) == []


def test_a_token_matching_a_finished_instance_launches_a_fresh_one(aws: AwsClients, moto_url: str) -> None:
    # Real EC2 answers a reused ClientToken with the instance it launched then, even if terminated.
    class OldAnswerFirst:
        def __init__(self, inner):
            self._inner, self.tokens = inner, []

        def __getattr__(self, name):
            attr = getattr(self._inner, name)
            if name != "run_instances":
                return attr

            def call(**kwargs):
                self.tokens.append(kwargs["ClientToken"])
                if len(self.tokens) == 1:
                    return {"Instances": [{"InstanceId": "i-0123456789abcdef0", "State": {"Name": "terminated"}}]}
                return attr(**kwargs)

            return call

    wrappers: list[OldAnswerFirst] = []
    clients = moto_clients(moto_url, wrap=lambda s, r, c: wrappers.append(OldAnswerFirst(c)) or wrappers[-1] if s == "ec2" else c)
    result = launch(_spec(), clients, now=NOW)
    assert result.instance_id != "i-0123456789abcdef0"
    tokens = wrappers[0].tokens
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert len(care_instances(aws, "eu-north-1")) == 1


def test_a_burstable_type_is_launched_in_unlimited_mode_as_it_is_priced(aws: AwsClients) -> None:
    """Review 33: CaRE prices t2/t3/t3a/t4g as unlimited (list + surplus credits), but launched them in the
    account's default mode (t2: standard, throttled to its baseline). moto accepts the request over HTTP."""
    from care_flows.aws.launch import LaunchOption, run_instances_params

    sent = []
    real = aws.ec2

    def recording(region):
        client = real(region)
        client.meta.events.register("provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params)))
        return client

    aws.ec2 = recording  # type: ignore[method-assign]
    result = launch(_spec("eu-north-1", "t3.large"), aws, now=NOW)
    assert result.instance_type == "t3.large" and sent and sent[-1]["CreditSpecification"] == {"CpuCredits": "unlimited"}
    params = run_instances_params(_spec(itype="m5.large"), LaunchOption(region="eu-north-1", instance_type="m5.large"),
                                  "ami-1", "", NOW, "tok")
    assert "CreditSpecification" not in params  # AWS rejects it for a type without credits
