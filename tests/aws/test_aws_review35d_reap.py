"""Review 35d H2, M6, L1: the reaper ends only its own Prefect API's finished runs; a missing AMI
parameter in one fallback region skips that region; `care aws reap` says which regions it swept.

Against moto's server mode (tests/aws/test_aws_support.py) and, for the CLI, a real ``prefect server``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from care_flows.aws.clients import AwsClients
from care_flows.aws.launch import LaunchSpec, launch
from care_flows.cli import main
from care_flows.errors import AwsError
from test_aws_support import aws, faulty_clients, moto_url  # noqa: F401

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
PROD = "https://prod-user:s3cr3t-pw@prefect.prod.example:4200/api"  # never contacted: the worker's URL is only hashed
STAGING = "https://prefect.staging.example/api"


def _launch(aws: AwsClients, api_url: str | None, run_id: str | None = None, *, now: datetime = NOW) -> str:
    """Launch one instance as a worker whose PREFECT_API_URL is ``api_url`` (``None``: not set)."""
    spec = LaunchSpec(flow_run_id=run_id or str(uuid.uuid4()), deployment="etl/nightly", region="eu-north-1", instance_type="t3.micro", ttl_minutes=180)
    settings = {PREFECT_API_URL: api_url} if api_url else {}
    with temporary_settings(settings, restore_defaults=set() if api_url else {PREFECT_API_URL}):
        return launch(spec, aws, now=now, sleep=lambda s: None).instance_id


def _tags(aws: AwsClients, iid: str) -> dict[str, str]:
    inst = aws.ec2("eu-north-1").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def _state(aws: AwsClients, iid: str) -> str:
    return aws.ec2("eu-north-1").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


# ---- H2: which Prefect API an instance belongs to ----------------------------------------------


def test_launch_tags_the_instance_with_a_hash_of_the_workers_prefect_api_never_the_url(aws: AwsClients) -> None:
    from care_flows.aws.launch import TAG_PREFECT_API, prefect_api_id

    tags = _tags(aws, _launch(aws, PROD))
    assert tags[TAG_PREFECT_API] == prefect_api_id(PROD) == prefect_api_id("https://prefect.prod.example:4200/api/")
    assert len(tags[TAG_PREFECT_API]) == 16 and prefect_api_id(PROD) != prefect_api_id(STAGING)
    assert not any(s in v for v in tags.values() for s in ("s3cr3t", "prod-user", "prefect.prod.example"))
    assert TAG_PREFECT_API not in _tags(aws, _launch(aws, None))  # no API configured: no tag (the reaper applies the TTL only)


def test_the_reaper_ends_only_its_own_apis_finished_runs_others_wait_for_their_ttl(aws: AwsClients) -> None:
    from care_flows.aws.launch import prefect_api_id
    from care_flows.aws.reaper import reap

    ours, theirs, untagged = _launch(aws, STAGING), _launch(aws, PROD), _launch(aws, None)
    run_of = {_tags(aws, i)["care:flow-run-id"]: i for i in (ours, theirs, untagged)}
    asked: list[str] = []

    def oracle(run_id: str):  # the staging API: says every run is long finished (as a stale or confused API might)
        asked.append(run_of[run_id])
        return ("COMPLETED", NOW - timedelta(hours=1))

    report = reap(["eu-north-1"], aws, now=NOW + timedelta(minutes=5), flow_run_state=oracle, prefect_api=prefect_api_id(STAGING))
    reasons = {r.instance_id: r.reason for r in report.instances}
    assert reasons == {ours: "flow run is COMPLETED", theirs: None, untagged: None}
    assert asked == [ours]  # another API's runs are not even asked about
    assert {r.instance_id for r in report.instances if not r.state_rule} == {theirs, untagged}
    assert _state(aws, theirs) == "running" and _state(aws, untagged) == "running"
    # past the TTL every CaRE instance goes, whichever API launched it
    later = reap(["eu-north-1"], aws, now=NOW + timedelta(minutes=181), flow_run_state=oracle, prefect_api=prefect_api_id(STAGING))
    assert {r.instance_id for r in later.terminated} == {theirs, untagged}
    assert all(r.reason.startswith("expired at") for r in later.terminated)


def test_a_run_its_api_does_not_know_keeps_its_instance_until_the_ttl_unless_reap_missing(aws: AwsClients) -> None:
    from care_flows.aws.launch import prefect_api_id
    from care_flows.aws.reaper import reap, reap_reason

    iid = _launch(aws, STAGING)
    tags = _tags(aws, iid)
    assert reap_reason(tags, NOW, "MISSING") is None
    assert reap_reason(tags, NOW + timedelta(minutes=181), "MISSING").startswith("expired at")
    api = prefect_api_id(STAGING)
    kept = reap(["eu-north-1"], aws, now=NOW, flow_run_state=lambda r: "MISSING", prefect_api=api)
    assert kept.to_reap == [] and _state(aws, iid) == "running"
    other = reap(["eu-north-1"], aws, now=NOW, flow_run_state=lambda r: "MISSING", prefect_api=prefect_api_id(PROD), reap_missing=True)
    assert other.to_reap == [] and _state(aws, iid) == "running"  # --reap-missing too ends only its own API's instances
    gone = reap(["eu-north-1"], aws, now=NOW, flow_run_state=lambda r: "MISSING", prefect_api=api, reap_missing=True)
    assert [r.instance_id for r in gone.terminated] == [iid] and "MISSING" in gone.terminated[0].reason


def test_cli_reap_against_another_server_keeps_the_live_instances_of_the_workers_api(aws: AwsClients, moto_url: str, prefect_server, capsys) -> None:  # noqa: F811
    """Review 35d's reproduction: `care aws reap` with a PREFECT_API_URL (a real local server) that knows none of the runs."""
    now = datetime.now(timezone.utc)
    prod = _launch(aws, PROD, now=now)  # another workspace's run, RUNNING, TTL far away
    local = _launch(aws, prefect_server["url"], now=now)  # this API's worker launched it; the run was deleted since
    argv = ["aws", "reap", "-r", "eu-north-1", "--endpoint-url", moto_url]
    with temporary_settings({PREFECT_API_URL: prefect_server["url"]}):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert _state(aws, prod) == "running" and _state(aws, local) == "running", out
        assert f"keep            eu-north-1:{prod}" in out and "TTL only" in out
        assert main([*argv, "--reap-missing"]) == 0
        out = capsys.readouterr().out
    assert _state(aws, prod) == "running"
    assert _state(aws, local) in ("shutting-down", "terminated") and f"terminated      eu-north-1:{local}" in out and "MISSING" in out


def test_the_cli_warning_names_the_workers_api_url_not_a_loopback_example(aws: AwsClients, moto_url: str, capsys, monkeypatch) -> None:  # noqa: F811
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["aws", "reap", "--dry-run", "-r", "eu-north-1", "--endpoint-url", moto_url]) == 0
    warning = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:"))
    assert "127.0.0.1" not in warning and "the API URL your care-ec2 worker uses" in warning


# ---- M6: a custom AMI parameter missing in one fallback region -----------------------------------


def _put_parameter(moto_url: str, regions: tuple[str, ...], name: str = "/my/amis/care-x86_64") -> None:
    from test_aws_support import moto_clients

    plain = moto_clients(moto_url)
    for region in regions:
        ami = plain.ec2(region).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        plain.ssm(region).put_parameter(Name=name, Value=ami, Type="String")


def _no_capacity_in(region: str):
    return lambda op, r, kw: "InsufficientInstanceCapacity" if (op == "run_instances" and r == region) else None


def test_a_missing_ami_parameter_in_one_fallback_region_skips_only_that_region(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    _put_parameter(moto_url, ("eu-north-1", "eu-west-1"))
    clients = faulty_clients(moto_url, _no_capacity_in("eu-north-1"))
    spec = LaunchSpec(flow_run_id="r-ami", region="eu-north-1", instance_type="t3.micro", fallback_regions=("eu-south-2", "eu-west-1"),
                      image_parameter="/my/amis/care-{arch}")
    result = launch(spec, clients, sleep=lambda s: None)
    assert result.region == "eu-west-1"
    skipped = [a for a in result.attempts if a.region == "eu-south-2"]
    assert [(a.outcome, a.code) for a in skipped] == [("unsupported", "ParameterNotFound")]
    assert "'/my/amis/care-x86_64' does not exist in eu-south-2" in skipped[0].message
    assert any(r.startswith("eu-south-2/t3.micro/-: ParameterNotFound") for r in result.fallback_reasons)


def test_when_every_option_fails_the_error_lists_the_attempts_and_the_missing_parameter(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    _put_parameter(moto_url, ("eu-north-1",))
    clients = faulty_clients(moto_url, _no_capacity_in("eu-north-1"))
    spec = LaunchSpec(flow_run_id="r-ami-all", region="eu-north-1", instance_type="t3.micro", fallback_regions=("eu-south-2",),
                      image_parameter="/my/amis/care-{arch}")
    with pytest.raises(AwsError) as caught:
        launch(spec, clients, sleep=lambda s: None)
    message = str(caught.value)
    assert message.startswith("no instance could be launched for flow run r-ami-all; tried eu-north-1/t3.micro/subnet-")
    assert "InsufficientInstanceCapacity" in message
    assert "eu-south-2/t3.micro/-: ParameterNotFound (AMI parameter '/my/amis/care-x86_64' does not exist in eu-south-2" in message
    assert [a.outcome for a in caught.value.attempts][-1] == "unsupported"  # type: ignore[attr-defined]


def test_resolve_image_id_names_the_region(aws: AwsClients) -> None:
    from care_flows.aws.ami import resolve_image_id

    with pytest.raises(AwsError, match=r"AMI parameter '/nope/x86_64' does not exist in eu-south-2;"):
        resolve_image_id(aws.ssm("eu-south-2"), aws.ec2("eu-south-2"), "t3.micro", parameter="/nope/{arch}")


# ---- L1: which regions `care aws reap` swept -----------------------------------------------------


def test_reap_without_regions_says_which_it_swept_and_how_to_add_others(aws: AwsClients, moto_url: str, capsys, monkeypatch) -> None:  # noqa: F811
    from care_flows.regions import known_regions

    monkeypatch.delenv("CARE_AWS_REGIONS", raising=False)
    assert main(["aws", "reap", "--dry-run", "--no-prefect", "--endpoint-url", moto_url]) == 0
    note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and f"swept the {len(known_regions())} regions of CaRE's registry" in note[0]
    assert "eu-north-1" in note[0] and "--regions" in note[0] and "CARE_AWS_REGIONS" in note[0] and "every region your pools" in note[0]
    for argv_env in ((["--regions", "eu-north-1"], None), ([], "eu-north-1")):
        if argv_env[1]:
            monkeypatch.setenv("CARE_AWS_REGIONS", argv_env[1])
        assert main(["aws", "reap", "--dry-run", "--no-prefect", "--endpoint-url", moto_url, *argv_env[0]]) == 0
        assert "note:" not in capsys.readouterr().err  # the user listed the regions
