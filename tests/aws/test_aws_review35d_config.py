"""Review 35d L2, L3: job variables a launch would silently ignore or pass to boto3 unchecked."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending

from care_flows.aws.clients import check_region
from care_flows.aws.worker import CareEC2JobConfiguration, build_launch_spec
from care_flows.cli import main
from care_flows.errors import ConfigError, UnknownRegionError


def _spec(caplog: pytest.LogCaptureFixture | None = None, **kw: object):  # type: ignore[no-untyped-def]
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending())
    conf = CareEC2JobConfiguration(api_key_secret="care/prefect-api-key", **kw)
    conf.prepare_for_flow_run(flow_run)
    with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api"}):
        return build_launch_spec(flow_run, conf, log=logging.getLogger("care-test"))


@pytest.mark.parametrize("network, said", [
    ({"eu-south-2": {"subnet_id": ["subnet-1"], "security_group_ids": ["sg-1"]}}, "has key(s) 'subnet_id'; use subnet_ids and security_group_ids"),
    ({"eu-south2": {"subnet_ids": ["subnet-1"]}}, "job variable network_by_region: unknown region 'eu-south2'"),
])
def test_a_misspelt_network_by_region_entry_is_refused_not_ignored(network: dict, said: str) -> None:
    """L2: the fallback launched into the default VPC with the default security group."""
    with pytest.raises(ConfigError) as info:
        _spec(region="eu-north-1", fallback_regions=["eu-south-2"], network_by_region=network)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_a_network_entry_for_a_region_the_job_never_uses_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _spec(region="eu-north-1", network_by_region={"eu-west-1": {"subnet_ids": ["subnet-1"]}})
    assert "network_by_region names eu-west-1, which is neither the job's region nor one of its fallback_regions" in caplog.text


def test_a_region_with_spaces_is_refused_naming_the_setting() -> None:
    """L3: 'eu-north-1 ' passed the check and failed inside boto3 with a message naming no job variable."""
    with pytest.raises(UnknownRegionError, match=r"^job variable region: region 'eu-north-1 ' has spaces around it; give eu-north-1$"):
        _spec(region="eu-north-1 ")


def test_an_availability_zone_given_as_a_region_says_which_region(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownRegionError, match="'eu-north-1a' is an availability zone of eu-north-1, not a region; give eu-north-1"):
        check_region("eu-north-1a", name="job variable region")
    assert main(["aws", "preflight", "--region", "eu-north-1a", "--instance-type", "t3.large"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "availability zone of eu-north-1" in err
