"""Review 55b (AWS layer against moto server mode on 127.0.0.1).

M4: a ``network_by_region`` entry for the region a run is planned in was ignored there: the top-level
subnet (of another region) or the default VPC won.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending
from test_aws_support import aws, moto_url  # noqa: F401

from care_flows.aws.launch import launch
from care_flows.aws.worker import CareEC2JobConfiguration, build_launch_spec
from care_flows.errors import ConfigError


def _private_network(ec2, az: str, cidr: str) -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/24"), AvailabilityZone=az)["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"care-private-{uuid.uuid4().hex[:6]}", Description="CaRE test", VpcId=vpc)["GroupId"]
    return subnet, group


def test_m4_the_planned_regions_network_entry_wins_over_the_pools_top_level_subnet(aws):  # noqa: F811
    north, north_sg = _private_network(aws.ec2("eu-north-1"), "eu-north-1a", "10.9.0.0/16")
    south, south_sg = _private_network(aws.ec2("eu-south-2"), "eu-south-2a", "10.8.0.0/16")
    # the pool's home is eu-north-1 (top-level subnet); CaRE planned this run in eu-south-2, which has its own entry
    conf = CareEC2JobConfiguration(region="eu-south-2", instance_type="t3.micro", api_key_secret="care/prefect-api-key",
                                   subnet_id=north, security_group_ids=[north_sg],
                                   network_by_region={"eu-south-2": {"subnet_ids": [south], "security_group_ids": [south_sg]}})
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending())
    conf.prepare_for_flow_run(run)
    with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api"}):
        spec = build_launch_spec(run, conf, log=logging.getLogger("care-test"))
    result = launch(spec, aws, sleep=lambda s: None, log=logging.getLogger("care-test"))
    inst = aws.ec2("eu-south-2").describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][0]
    groups = [g["GroupId"] for nic in inst["NetworkInterfaces"] for g in nic["Groups"]]
    assert (result.region, inst["SubnetId"], groups) == ("eu-south-2", south, [south_sg])  # was the eu-north-1 subnet: NotFound


def _build(**kw):  # type: ignore[no-untyped-def]
    from prefect.settings import PREFECT_API_KEY

    conf = CareEC2JobConfiguration(api_key_secret="care/prefect-api-key", **kw)
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending())
    conf.prepare_for_flow_run(run)
    with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api", PREFECT_API_KEY: "plainkey-77"}):
        return build_launch_spec(run, conf, log=logging.getLogger("care-test"))


@pytest.mark.parametrize("command, said", [
    ("env GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB prefect flow-run execute", "word 2, GITHUB_TOKEN=...: its name looks secret"),
    ("bash -c 'DB_URL=postgresql://care:hunter2hunter2@db/x prefect flow-run execute'", "word 3, DB_URL=...: its value is a URL with credentials"),
    ("prefect flow-run execute --token pnu_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "word 5, a value: it holds a credential"),
])
def test_m1_a_secret_in_the_command_job_variable_is_refused(command: str, said: str) -> None:
    with pytest.raises(ConfigError, match="job variable command holds a secret") as info:
        _build(command=command)
    assert said in str(info.value) and "ghp_" not in str(info.value) and "hunter2" not in str(info.value) and "pnu_" not in str(info.value)


def test_m1_the_workers_own_api_key_in_the_command_is_refused_whatever_it_looks_like() -> None:
    with pytest.raises(ConfigError, match="user data would contain a secret value"):  # the template held the same command: passed
        _build(command="prefect flow-run execute plainkey-77")
    assert _build(command="env STAGE=prod prefect flow-run execute") is not None  # a harmless command still launches


def test_m2_an_env_value_from_a_prefect_secret_block_never_reaches_user_data(caplog: pytest.LogCaptureFixture) -> None:
    """Prefect resolves ``{{ prefect.blocks.secret.db-pw }}`` before the worker sees the job: under a plain name
    (DB_LOGIN) and with a value that looks like no token, it went into user data in plain text."""
    import asyncio

    from prefect.blocks.system import Secret
    from prefect.testing.utilities import prefect_test_harness

    from care_flows.aws.worker import CareEC2Worker

    variables = {"env": {"DB_LOGIN": "{{ prefect.blocks.secret.db-pw }}", "STAGE": "prod"}, "api_key_secret": "care/prefect-api-key"}
    with prefect_test_harness(server_startup_timeout=180):
        Secret(value="Tr0ub4dor&3-horse").save("db-pw", overwrite=True)
        conf = asyncio.run(CareEC2JobConfiguration.from_template_and_values(CareEC2Worker.get_default_base_job_template(), variables))
        assert conf.env["DB_LOGIN"] == "Tr0ub4dor&3-horse"  # what the worker gets: resolved
        run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", state=Pending(), job_variables=variables)
        conf.prepare_for_flow_run(run)
        with temporary_settings({PREFECT_API_URL: "https://prefect.internal/api"}), caplog.at_level(logging.WARNING):
            script = build_launch_spec(run, conf, log=logging.getLogger("care-test")).user_data("eu-north-1", "t3.micro")
    assert "Tr0ub4dor" not in script and "DB_LOGIN" not in script and "export STAGE=prod" in script
    assert "DB_LOGIN (its value comes from a Prefect block)" in caplog.text and "Tr0ub4dor" not in caplog.text
