"""Launch answers of real AWS that moto does not give (review 43b), injected with AWS's codes and messages.

- A region the account has not enabled (opt-in regions launched after March 2019, such as eu-south-2,
  CaRE's default home region, are off until enabled): EC2 answers ``AuthFailure`` (HTTP 401), SSM
  ``UnrecognizedClientException``. One such region, even a fallback, ended every launch with a message
  about the credentials that named another region (H1).
- A fallback region's own set-up error (a key pair that exists in other regions only) ended the launch
  before the next fallback region was tried (M1).
- An x86_64 ``image_id`` with an arm64 type: EC2's ``InvalidParameterValue`` on architectures was fatal,
  so the x86 fallback type was never tried (M2).
- EC2 answers ``Unsupported`` for a type the region does not offer: its other zones need no try (L3).

The answers are made by botocore itself (a ``before-call`` handler returning ``(http, parsed)``, as
``botocore.stub.Stubber`` does); everything else goes to moto over HTTP.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from care_flows.aws.launch import LaunchSpec, launch
from care_flows.errors import AwsError
from test_aws_support import aws, care_instances, moto_clients, moto_url  # noqa: F401

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
NOT_ENABLED = {"ec2": ("AuthFailure", "AWS was not able to validate the provided access credentials", 401),
               "ssm": ("UnrecognizedClientException", "The security token included in the request is invalid.", 400)}
ARCH = ("The architecture 'arm64' of the specified instance type does not match the architecture 'x86_64' of the specified AMI. "
        "Specify an instance type and an AMI that have matching architectures, and try again.")


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code, self.headers, self.content, self.text = status, {}, b"", ""


def _answer(code: str, message: str, status: int) -> tuple[_Http, dict[str, Any]]:
    return _Http(status), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def clients_with(moto_url: str, rule: Any) -> Any:  # noqa: F811
    """Clients on moto whose calls ``rule(service, region, operation, params)`` may answer instead (a tuple
    ``(code, message, status)``), or pass on (None)."""
    def wrap(service: str, region: str, client: Any) -> Any:
        def handler(model: Any = None, params: Any = None, **_: Any) -> Any:
            said = rule(service, region, model.name, (params or {}).get("body", {}))
            return None if said is None else _answer(*said)

        client.meta.events.register_first(f"before-call.{client.meta.service_model.endpoint_prefix}.*", handler)
        return client

    return moto_clients(moto_url, wrap=wrap)


def not_enabled(*regions: str) -> Any:
    return lambda service, region, op, body: NOT_ENABLED.get(service) if region in regions else None


def _spec(region: str, itype: str = "t3.micro", **kw: Any) -> LaunchSpec:
    return LaunchSpec(flow_run_id=str(uuid.uuid4()), region=region, instance_type=itype, user_data="#!/bin/bash\necho hi\n", **kw)


def test_a_fallback_region_not_enabled_does_not_stop_a_launch_in_the_planned_one(aws: Any, moto_url: str) -> None:  # noqa: F811
    result = launch(_spec("eu-north-1", fallback_regions=("eu-south-2",)), clients_with(moto_url, not_enabled("eu-south-2")), now=NOW)
    assert (result.region, result.instance_type) == ("eu-north-1", "t3.micro")
    assert len(care_instances(aws, "eu-north-1")) == 1


def test_a_planned_region_not_enabled_falls_back_to_the_next_region(aws: Any, moto_url: str) -> None:  # noqa: F811
    result = launch(_spec("eu-south-2", fallback_regions=("eu-north-1",)), clients_with(moto_url, not_enabled("eu-south-2")), now=NOW)
    assert result.region == "eu-north-1"
    refused = [a for a in result.attempts if a.outcome == "region"]
    assert [(a.region, a.code) for a in refused] == [("eu-south-2", "AuthFailure")]  # once, not per type and zone
    assert result.fallback_reasons == ["eu-south-2/-/-: AuthFailure"]  # the worker's "fell back to" line names it (43c L4)


def test_no_usable_region_names_the_region_and_how_to_enable_it(aws: Any, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    with pytest.raises(AwsError) as info:
        launch(_spec("eu-south-2"), clients_with(moto_url, not_enabled("eu-south-2")), now=NOW)
    message = str(info.value)
    assert "\n" not in message and "eu-south-2/-/-: AuthFailure (AWS was not able to validate" in message
    assert "aws account enable-region --region-name eu-south-2" in message
    assert "eu-north-1" not in message  # it named the session's region before
    assert "could not check for instances" not in caplog.text  # the clean-up skips the region too


def test_a_fallback_region_set_up_error_tries_the_next_region(aws: Any, moto_url: str) -> None:  # noqa: F811
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        if op != "RunInstances":
            return None
        if region == "eu-north-1":
            return ("InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested.", 500)
        if region == "eu-south-2":
            return ("InvalidKeyPair.NotFound", "The key pair 'care-key' does not exist", 400)
        return None

    result = launch(_spec("eu-north-1", fallback_regions=("eu-south-2", "eu-west-1"), key_name="care-key"), clients_with(moto_url, rule), now=NOW)
    assert result.region == "eu-west-1"
    failed = [(a.region, a.outcome, a.code) for a in result.attempts if a.region == "eu-south-2"]
    assert failed == [("eu-south-2", "fatal", "InvalidKeyPair.NotFound")]  # its other options are skipped


def test_a_set_up_error_in_the_planned_region_still_stops_the_launch(aws: Any, moto_url: str) -> None:  # noqa: F811
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        return ("InvalidKeyPair.NotFound", "The key pair 'care-key' does not exist", 400) if op == "RunInstances" and region == "eu-north-1" else None

    with pytest.raises(AwsError, match="launching t3.micro in eu-north-1 .* InvalidKeyPair.NotFound"):
        launch(_spec("eu-north-1", fallback_regions=("eu-west-1",), key_name="care-key"), clients_with(moto_url, rule), now=NOW)
    assert care_instances(aws, "eu-west-1") == []  # a wrong set-up is not hidden by running elsewhere


def test_an_instance_type_of_the_other_architecture_than_the_image_falls_back_to_the_next_type(aws: Any, moto_url: str) -> None:  # noqa: F811
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        return ("InvalidParameterValue", ARCH, 400) if op == "RunInstances" and body.get("InstanceType", "").startswith("t4g.") else None

    image = aws.ec2("eu-north-1").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    spec = _spec("eu-north-1", "t4g.large", fallback_instance_types=("t3.large",), image_id=image)
    result = launch(spec, clients_with(moto_url, rule), now=NOW)
    assert result.instance_type == "t3.large"
    assert [(a.instance_type, a.outcome) for a in result.attempts] == [("t4g.large", "unsupported"), ("t3.large", "launched")]


@pytest.mark.parametrize(("message", "tries"), [
    ("The requested configuration is currently not supported. Please check the documentation for supported configurations.", 1),
    ("Your requested instance type (t3a.large) is not supported in your requested Availability Zone (eu-north-1a). "
     "Please retry your request by not specifying an Availability Zone or choosing eu-north-1b, eu-north-1c.", 3),
])
def test_unsupported_in_the_region_skips_its_zones_unsupported_in_one_zone_does_not(aws: Any, moto_url: str, message: str, tries: int) -> None:  # noqa: F811
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        return ("Unsupported", message, 400) if op == "RunInstances" and body.get("InstanceType") == "t3a.large" else None

    result = launch(_spec("eu-north-1", "t3a.large", fallback_instance_types=("t3.large",)), clients_with(moto_url, rule), now=NOW)
    assert result.instance_type == "t3.large"
    assert sum(a.instance_type == "t3a.large" for a in result.attempts) == tries


def test_preflight_asks_whether_a_refusing_region_is_enabled(aws: Any, moto_url: str) -> None:  # noqa: F811
    from care_flows.aws.preflight import preflight

    sts = {"sts": ("InvalidClientTokenId", "The security token included in the request is invalid.", 403)}
    report = preflight("eu-south-2", clients_with(moto_url, lambda service, region, op, body: {**NOT_ENABLED, **sts}.get(service)),
                       instance_type="t3.large")
    [credentials] = [c for c in report.checks if c.name == "credentials"]
    assert not credentials.ok and "is eu-south-2 enabled for this account?" in credentials.detail
    assert "aws account enable-region --region-name eu-south-2" in credentials.detail


def test_a_connection_never_made_is_tried_again_a_few_times(aws: Any, moto_url: str) -> None:  # noqa: F811
    """Review 43b L2: one DNS failure or refused connection on RunInstances crashed the submission, though the
    request never reached AWS; a wrong endpoint still fails after a few tries."""
    from botocore.exceptions import EndpointConnectionError

    failures = {"left": 1}

    def wrap(service: str, region: str, client: Any) -> Any:
        def handler(model: Any = None, **_: Any) -> Any:
            if model.name in ("RunInstances", "DescribeInstances") and failures["left"] > 0:
                failures["left"] -= 1
                raise EndpointConnectionError(endpoint_url=f"https://ec2.{region}.amazonaws.com/")
            return None

        client.meta.events.register_first("before-call.ec2.*", handler)
        return client

    waits: list[float] = []
    result = launch(_spec("eu-north-1"), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=waits.append)
    assert result.region == "eu-north-1" and len(waits) == 1 and failures["left"] == 0
    failures["left"] = 100  # never reachable: a one-line error after CONNECT_RETRIES more tries, not minutes of back-off
    waits.clear()
    with pytest.raises(AwsError, match="EndpointConnectionError") as info:
        launch(_spec("eu-north-1"), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=waits.append)
    assert "\n" not in str(info.value) and len(waits) <= 4


def test_the_credentials_blocks_client_parameters_reach_the_clients(tmp_path: Any) -> None:
    """Review 43b L1: only the block's endpoint_url was used; its CA bundle and proxies were dropped."""
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    from care_flows.aws.clients import AwsClients

    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    creds = AwsCredentials(aws_access_key_id="x", aws_secret_access_key="y", region_name="eu-north-1",
                           aws_client_parameters=AwsClientParameters(verify_cert_path=str(bundle), endpoint_url="http://127.0.0.1:9",
                                                                     config={"proxies": {"https": "http://proxy.example:3128"}}))
    clients = AwsClients.from_credentials(creds)
    ec2 = clients.ec2("eu-north-1")
    session = ec2._endpoint.http_session
    assert str(session._verify) == str(bundle)
    assert session._proxy_config._proxies == {"https": "http://proxy.example:3128"}
    assert clients.endpoint_url == "http://127.0.0.1:9"
    assert ec2.meta.config.retries["total_max_attempts"] == 1 and ec2.meta.config.connect_timeout == 10  # CaRE's own


# ---------------------------------------------------------------------------------------- review 43c
NOT_VALIDATED = ("AuthFailure", "AWS was not able to validate the provided access credentials", 401)


def test_an_image_the_account_may_not_use_is_still_a_set_up_error_not_a_region_to_skip(aws: Any, moto_url: str) -> None:  # noqa: F811
    """43c M1: EC2 also answers AuthFailure for an AMI the account may not use; that is the planned region's set-up."""
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        return ("AuthFailure", "Not authorized for images: [ami-0123456789abcdef0]", 401) if op == "RunInstances" and region == "eu-north-1" else None

    with pytest.raises(AwsError, match="launching t3.micro in eu-north-1 .* AuthFailure: Not authorized for images") as info:
        launch(_spec("eu-north-1", fallback_regions=("eu-west-1",)), clients_with(moto_url, rule), now=NOW)
    assert "enable-region" not in str(info.value) and care_instances(aws, "eu-west-1") == []


def test_credentials_refused_in_always_enabled_regions_blame_the_credentials(aws: Any, moto_url: str) -> None:  # noqa: F811
    """43c M2: wrong keys answer AuthFailure everywhere; eu-north-1 and eu-west-1 cannot be disabled."""
    tokens = {"sts": ("InvalidClientTokenId", "The security token included in the request is invalid.", 403),
              "ssm": ("UnrecognizedClientException", "The security token included in the request is invalid.", 400), "ec2": NOT_VALIDATED}
    clients = clients_with(moto_url, lambda service, region, op, body: tokens.get(service))
    with pytest.raises(AwsError) as info:
        launch(_spec("eu-north-1", fallback_regions=("eu-west-1",)), clients, now=NOW)
    message = str(info.value)
    assert "the credentials are not valid in eu-north-1, eu-west-1" in message and "enable-region" not in message
    from care_flows.aws.preflight import preflight

    [credentials] = [c for c in preflight("eu-north-1", clients, instance_type="t3.large").checks if c.name == "credentials"]
    assert "configure AWS credentials" in credentials.detail and "enable-region" not in credentials.detail


def test_a_misspelt_type_keeps_its_hint_next_to_a_refused_region(aws: Any, moto_url: str) -> None:  # noqa: F811
    """43c M3: the region hint replaced the 'did you mean' of the planned region's real problem."""
    with pytest.raises(AwsError) as info:
        launch(_spec("eu-north-1", "t3.micor", fallback_regions=("eu-south-2",)), clients_with(moto_url, not_enabled("eu-south-2")), now=NOW)
    message = str(info.value)
    assert "did you mean 't3.micro'?" in message and "aws account enable-region --region-name eu-south-2" in message


def test_a_fallback_regions_set_up_error_is_named_in_the_advice_and_its_encoded_reason_logged(
        aws: Any, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """43c L3, L4: the advice said 'add fallback regions' though one existed and failed on its own set-up, and
    an UnauthorizedOperation there never logged its encoded reason."""
    def rule(service: str, region: str, op: str, body: dict[str, Any]) -> Any:
        if op != "RunInstances":
            return None
        if region == "eu-north-1":
            return ("InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity.", 500)
        return ("UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: AbC-123_x", 403)

    with pytest.raises(AwsError) as info:
        launch(_spec("eu-north-1", fallback_regions=("eu-west-1",)), clients_with(moto_url, rule), now=NOW)
    assert "fix the set-up of eu-west-1 (its error is in the list tried)" in str(info.value)
    assert "add fallback_instance_types or fallback_regions" not in str(info.value)
    assert "aws sts decode-authorization-message --encoded-message AbC-123_x" in caplog.text


def test_a_connection_failure_on_run_instances_is_tried_again_and_an_unreachable_endpoint_fails_fast(aws: Any, moto_url: str) -> None:  # noqa: F811
    """43c M5, L5: the earlier test never reached RunInstances' retry; and after a launch that failed on a connection
    the clean-up tried again as well (6 connection attempts, about a minute, instead of 3)."""
    from botocore.exceptions import EndpointConnectionError

    calls = {"RunInstances": 0, "DescribeInstances": 0}
    failing = {"ops": ("RunInstances",), "left": 1}

    def wrap(service: str, region: str, client: Any) -> Any:
        def handler(model: Any = None, **_: Any) -> Any:
            if model.name in calls:
                calls[model.name] += 1
            if model.name in failing["ops"] and failing["left"] > 0:
                failing["left"] -= 1
                raise EndpointConnectionError(endpoint_url=f"https://ec2.{region}.amazonaws.com/")
            return None

        client.meta.events.register_first("before-call.ec2.*", handler)
        return client

    result = launch(_spec("eu-north-1"), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=lambda s: None)
    assert result.region == "eu-north-1" and calls["RunInstances"] == 2
    assert [(a.outcome, a.code) for a in result.attempts] == [("retried", "EndpointConnectionError"), ("launched", "")]
    calls.update(RunInstances=0, DescribeInstances=0)
    failing.update(ops=("RunInstances", "DescribeInstances"), left=10**6)
    with pytest.raises(AwsError, match="EndpointConnectionError"):
        launch(_spec("eu-north-1"), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=lambda s: None)
    assert calls["DescribeInstances"] == 3 + 1  # the look-up and its two tries again, then one clean-up call


def test_an_unreachable_fallback_region_is_said_to_be_unreachable_not_misconfigured(aws: Any, moto_url: str) -> None:  # noqa: F811
    """Review 43e L2: a fallback region that could not be reached got 'fix the set-up', and every connection retry
    was listed in the error as a try of its own."""
    from botocore.exceptions import EndpointConnectionError

    def wrap(service: str, region: str, client: Any) -> Any:
        def handler(model: Any = None, **_: Any) -> Any:
            if region == "eu-west-1" and model.name == "RunInstances":
                raise EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com/")
            if region == "eu-north-1" and model.name == "RunInstances":
                return _answer("InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity.", 500)
            return None

        client.meta.events.register_first("before-call.ec2.*", handler)
        return client

    with pytest.raises(AwsError) as info:
        launch(_spec("eu-north-1", fallback_regions=("eu-west-1",)), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=lambda s: None)
    message = str(info.value)
    assert "eu-west-1 could not be reached: check the network, proxy or endpoint" in message and "fix the set-up" not in message
    assert message.count("eu-west-1/t3.micro/") == 1


def test_a_fallback_region_that_cannot_be_reached_at_all_does_not_stop_the_planned_one(aws: Any, moto_url: str) -> None:  # noqa: F811
    """Review 43f M2: every EC2 call to the fallback region failing to connect ended the launch in the look-up for an
    earlier instance, before the planned region (with capacity) was tried, naming the planned region."""
    from botocore.exceptions import EndpointConnectionError

    def wrap(service: str, region: str, client: Any) -> Any:
        def handler(model: Any = None, **_: Any) -> Any:
            if region == "eu-west-1":
                raise EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com/")
            return None

        client.meta.events.register_first("before-call.ec2.*", handler)
        return client

    result = launch(_spec("eu-north-1", fallback_regions=("eu-west-1",)), moto_clients(moto_url, wrap=wrap), now=NOW, sleep=lambda s: None)
    assert result.region == "eu-north-1"
    assert [(a.region, a.outcome, a.code) for a in result.attempts] == [("eu-west-1", "fatal", "EndpointConnectionError"),
                                                                         ("eu-north-1", "launched", "")]
