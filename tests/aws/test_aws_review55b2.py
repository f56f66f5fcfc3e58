"""Review 55b, second part: launch answers of real AWS that moto does not give, injected with AWS's codes.

- M5: a fallback region that denies ``DescribeInstances`` or ``DescribeSubnets`` (a Control Tower "region
  deny" SCP) ended the launch before the planned region was tried, and the error named the planned region.
- M6: a misspelt region or malformed ARN in ``api_key_secret`` launched (and billed) an instance that could only fail.
- M7: SSM parameter ARNs of the aws-cn and aws-us-gov partitions were read with ``aws secretsmanager``.
- L1: an ``InvalidParameterCombination`` about the type alone (Free Tier, ENA) ended the launch; the next type was not tried.
"""

from __future__ import annotations

from typing import Any

import pytest

from care_flows.aws.launch import launch
from test_aws_review43b_regions import NOW, _answer, _spec, clients_with
from test_aws_support import aws, moto_clients, moto_url  # noqa: F401

DENY = ("You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/care-worker is not authorized "
        "to perform: ec2:{op} with an explicit deny in a service control policy")


def _denying(moto_url: str, region: str, operation: str, full: str = "") -> Any:  # noqa: F811
    """Clients on moto where ``region`` denies ``operation`` and ``full`` has no capacity."""
    def wrap(service: str, where: str, client: Any) -> Any:
        def handler(model: Any = None, **_: Any) -> Any:
            if where == region and model.name == operation:
                return _answer("UnauthorizedOperation", DENY.format(op=operation), 403)
            if where == full and model.name == "RunInstances":
                return _answer("InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity.", 500)
            return None

        client.meta.events.register_first("before-call.ec2.*", handler)
        return client

    return moto_clients(moto_url, wrap=wrap)


@pytest.mark.parametrize("operation", ["DescribeInstances", "DescribeSubnets"])
def test_a_fallback_region_denying_its_look_ups_does_not_stop_the_launch(aws: Any, moto_url: str, operation: str) -> None:  # noqa: F811
    """The planned region has no capacity, the first fallback denies a look-up: the second fallback launches."""
    spec = _spec("eu-north-1", fallback_regions=("eu-south-2", "eu-west-1"))
    result = launch(spec, _denying(moto_url, "eu-south-2", operation, full="eu-north-1"), now=NOW, sleep=lambda s: None)
    assert result.region == "eu-west-1"
    assert ("eu-south-2", "fatal", "UnauthorizedOperation") in [(a.region, a.outcome, a.code) for a in result.attempts]


def test_the_planned_region_denying_its_look_up_still_stops_the_launch_and_names_it(aws: Any, moto_url: str) -> None:  # noqa: F811
    from care_flows.errors import AwsError

    with pytest.raises(AwsError, match=r"in eu-north-1 failed: UnauthorizedOperation"):
        launch(_spec("eu-north-1", fallback_regions=("eu-south-2",)), _denying(moto_url, "eu-north-1", "DescribeInstances"),
               now=NOW, sleep=lambda s: None)


def _spec_of(**variables: Any) -> Any:
    """The launch spec a worker builds for a job with ``variables``."""
    import logging
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Pending

    from care_flows.aws.worker import CareEC2JobConfiguration, build_launch_spec

    conf = CareEC2JobConfiguration(**variables)
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending())
    conf.prepare_for_flow_run(run)
    with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api"}):
        return build_launch_spec(run, conf, log=logging.getLogger("care-test"))


@pytest.mark.parametrize("variable, secret, said", [
    ("api_key_secret", "arn:aws:secretsmanager:eu-nort-1:123456789012:secret:care/key-AbCdEf", "unknown region 'eu-nort-1'"),
    ("api_key_secret", "arn:aws:secretsmanager:eu-north-1:1234:secret:care/key", "is not a Secrets Manager or SSM parameter ARN"),
    ("api_auth_string_secret", "arn:aws:ssm:eu-north-1:123456789012:paramter/care/auth", "is not a Secrets Manager or SSM parameter ARN"),
])
def test_m6_a_malformed_secret_arn_is_refused_before_an_instance_exists(variable: str, secret: str, said: str) -> None:
    from care_flows.errors import ConfigError

    with pytest.raises(ConfigError, match=f"job variable {variable}") as info:
        _spec_of(**{variable: secret})
    assert said in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arn", ["arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/care/key",
                                 "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/care/key"])
def test_m7_an_ssm_arn_of_another_partition_is_read_from_ssm(arn: str) -> None:
    from care_flows.aws.worker import describe_secret

    region = arn.split(":")[3]
    script = _spec_of(api_key_secret=arn).user_data("eu-north-1", "t3.micro")
    assert f"aws ssm get-parameter --region {region} --name /care/key --with-decryption" in script
    assert "secretsmanager" not in script
    assert describe_secret(arn).startswith(f"/care/key (SSM parameter in {region}")


@pytest.mark.parametrize("message", [
    "The specified instance type is not eligible for Free Tier. For a list of Free Tier instance types, run 'describe-instance-types' "
    "with the filter 'free-tier-eligible=true'.",
    "Enhanced networking with the Elastic Network Adapter (ENA) is required for the 'm7i.large' instance type. Ensure that you are "
    "using an AMI that is enabled for ENA.",
])
def test_l1_a_type_specific_combination_error_tries_the_next_type(aws: Any, moto_url: str, message: str) -> None:  # noqa: F811
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        return ("InvalidParameterCombination", message, 400) if op == "RunInstances" and body.get("InstanceType") == "m7i.large" else None

    result = launch(_spec("eu-north-1", "m7i.large", fallback_instance_types=("t3.micro",)), clients_with(moto_url, rule), now=NOW)
    assert [(a.instance_type, a.outcome) for a in result.attempts] == [("m7i.large", "unsupported"), ("t3.micro", "launched")]
