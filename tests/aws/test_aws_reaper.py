"""The reaper and `care aws reap` against moto over HTTP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from care_flows.aws.clients import AwsClients
from care_flows.aws.reaper import reap
from care_flows.cli import main
from test_aws_support import aws, care_instances, moto_url  # noqa: F401

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _instance(aws: AwsClients, region: str, run_id: str | None, expires: str | None) -> str:
    tags = [{"Key": "Name", "Value": "x"}]
    if run_id is not None:
        tags.append({"Key": "care:flow-run-id", "Value": run_id})
    if expires is not None:
        tags.append({"Key": "care:expires-at", "Value": expires})
    inst = aws.ec2(region).run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                         TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
    return inst["InstanceId"]


def _setup(aws: AwsClients) -> dict[str, str]:
    later, earlier = (NOW + timedelta(hours=1)).isoformat(), (NOW - timedelta(minutes=1)).isoformat()
    return {
        "expired": _instance(aws, "eu-north-1", "run-expired", earlier),
        "done": _instance(aws, "eu-south-2", "run-done", later),
        "running": _instance(aws, "eu-south-2", "run-running", later),
        "untagged_ttl": _instance(aws, "eu-north-1", "run-nottl", None),
        "foreign": _instance(aws, "eu-north-1", None, earlier),  # not CaRE's: never touched
    }


STATES = {"run-done": "COMPLETED", "run-running": "RUNNING", "run-expired": "RUNNING", "run-nottl": None}


def _state(aws: AwsClients, region: str, iid: str) -> str:
    return aws.ec2(region).describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_dry_run_lists_only(aws: AwsClients) -> None:
    ids = _setup(aws)
    report = reap(["eu-north-1", "eu-south-2"], aws, dry_run=True, now=NOW, flow_run_state=STATES.get)
    assert {r.instance_id for r in report.to_reap} == {ids["expired"], ids["done"], ids["untagged_ttl"]}
    assert report.terminated == []
    assert all(_state(aws, r, ids[k]) == "running" for k, r in [("expired", "eu-north-1"), ("done", "eu-south-2")])


def test_reap_terminates_expired_and_final_runs_in_all_regions(aws: AwsClients) -> None:
    ids = _setup(aws)
    asked: list[str] = []
    report = reap(["eu-north-1", "eu-south-2"], aws, now=NOW, flow_run_state=lambda r: asked.append(r) or STATES.get(r))
    reasons = {r.instance_id: r.reason for r in report.instances}
    assert reasons[ids["expired"]].startswith("expired at")
    assert reasons[ids["done"]] == "flow run is COMPLETED"
    assert reasons[ids["untagged_ttl"]] == "no care:expires-at tag"
    assert reasons[ids["running"]] is None
    assert ids["foreign"] not in reasons
    assert _state(aws, "eu-north-1", ids["expired"]) in ("shutting-down", "terminated")
    assert _state(aws, "eu-south-2", ids["done"]) in ("shutting-down", "terminated")
    assert _state(aws, "eu-south-2", ids["running"]) == "running"
    assert _state(aws, "eu-north-1", ids["foreign"]) == "running"
    assert sorted(asked) == sorted(set(asked))  # one question per flow run


def test_prefect_unreachable_means_ttl_only(aws: AwsClients) -> None:
    ids = _setup(aws)
    report = reap(["eu-south-2"], aws, now=NOW, flow_run_state=lambda r: None)
    assert report.to_reap == [] and _state(aws, "eu-south-2", ids["done"]) == "running"


def test_cli_reap_dry_run_json(aws: AwsClients, moto_url: str, capsys, monkeypatch) -> None:
    _setup(aws)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    code = main(["aws", "reap", "--dry-run", "--no-prefect", "--regions", "eu-north-1,eu-south-2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["dry_run"] is True
    # the CLI uses the real clock: every CaRE instance listed (all their expiry tags are in the past); the foreign one is not
    assert {r["flow_run_id"] for r in out["instances"]} == {"run-expired", "run-done", "run-running", "run-nottl"}
    assert len(care_instances(aws, "eu-north-1")) == 2  # nothing terminated


def test_cli_reap_terminates(aws: AwsClients, moto_url: str, capsys) -> None:
    _setup(aws)
    code = main(["aws", "reap", "--no-prefect", "-r", "eu-north-1", "--endpoint-url", moto_url])
    captured = capsys.readouterr()
    assert code == 0 and "terminated" in captured.out
    assert care_instances(aws, "eu-north-1") == []


def test_cli_reap_bad_region_is_a_one_line_error(capsys) -> None:
    assert main(["aws", "reap", "--regions", "mars"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --regions: unknown region 'mars'") and err.count("\n") == 1


def test_without_a_prefect_api_the_state_is_unknown_not_missing() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from care_flows.aws.reaper import prefect_flow_run_state

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert prefect_flow_run_state("00000000-0000-4000-8000-000000000000") is None


def test_operations_md_shows_the_json_reap_really_prints(aws: AwsClients, moto_url: str, capsys) -> None:
    """docs/OPERATIONS.md quotes `care aws reap --dry-run ... --no-prefect --json` on an empty account byte for byte."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    quoted = doc.split("--no-prefect --json`\nprinted:\n\n```json\n", 1)[1].split("```", 1)[0]
    assert main(["aws", "reap", "--dry-run", "--regions", "eu-west-3", "--no-prefect", "--json", "--endpoint-url", moto_url]) == 0  # a region no test uses
    assert capsys.readouterr().out == quoted


def test_a_prefect_api_that_cannot_be_asked_is_a_warning_in_the_json_too(aws: AwsClients, moto_url: str, capsys) -> None:  # noqa: F811
    """Review 38c M3: the failed look-up was only a logger line; --json said "warnings": [] and state_rule: true."""
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from care_flows.aws.launch import prefect_api_id

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://admin:pw-SECRET-777@127.0.0.1:{port}/api"  # nothing listens there
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    iid = aws.ec2("eu-north-1").run_instances(
        ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "care:flow-run-id", "Value": "00000000-0000-4000-8000-000000000001"},
                                                                  {"Key": "care:expires-at", "Value": later},
                                                                  {"Key": "care:prefect-api", "Value": prefect_api_id(url)}]}])["Instances"][0]["InstanceId"]
    with temporary_settings({PREFECT_API_URL: url}):
        assert main(["aws", "reap", "--dry-run", "--regions", "eu-north-1", "--endpoint-url", moto_url, "--json"]) == 0
        out, err = capsys.readouterr()
        assert main(["aws", "reap", "--dry-run", "--regions", "eu-north-1", "--endpoint-url", moto_url]) == 0
        text = capsys.readouterr()
    doc = json.loads(out)
    (row,) = [r for r in doc["instances"] if r["instance_id"] == iid]
    assert row["reason"] is None and row["state_rule"] is False and row["state_unknown"] is True  # kept: TTL rule only
    (warning,) = doc["warnings"]
    assert warning.startswith("cannot ask the Prefect API about 1 flow run(s) (first: 00000000-0000-4000-8000-000000000001:")
    assert f"warning: {warning}" in err.splitlines()
    assert "(TTL only: the Prefect API could not be asked)" in text.out
    assert "pw-SECRET-777" not in out + err + text.out + text.err


def test_reap_goes_on_with_the_ttl_rule_when_the_state_look_up_fails(aws: AwsClients) -> None:  # noqa: F811
    from care_flows.errors import OrchestrationError

    ids = _setup(aws)

    def failing(run_id: str) -> str | None:
        if run_id == "run-done":
            raise OrchestrationError("connection refused")
        return STATES.get(run_id)

    report = reap(["eu-south-2"], aws, now=NOW, dry_run=True, flow_run_state=failing)
    rows = {r.instance_id: r for r in report.instances}
    assert rows[ids["done"]].reason is None and rows[ids["done"]].state_unknown and not rows[ids["done"]].state_rule
    assert rows[ids["running"]].state_rule and not rows[ids["running"]].state_unknown
    assert report.warnings == ["cannot ask the Prefect API about 1 flow run(s) (first: run-done: connection refused); only the care:expires-at "
                               "(TTL) rule applied to their instances; check PREFECT_API_URL and that the API answers, or pass --no-prefect"]


def test_reap_missing_without_the_prefect_api_is_a_usage_error(capsys) -> None:
    """Review 38c L18: --reap-missing was silently ignored next to --no-prefect."""
    assert main(["aws", "reap", "--no-prefect", "--reap-missing", "--regions", "eu-north-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: give --no-prefect or --reap-missing, not both") and err.count("\n") == 1


def test_a_flow_run_id_tag_that_is_no_uuid_is_named_as_such_not_blamed_on_the_api() -> None:
    """Review 38d L5: a garbled care:flow-run-id read as 'badly formed hexadecimal UUID string' from the API."""
    import pytest
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from care_flows.aws.reaper import prefect_flow_run_state
    from care_flows.errors import OrchestrationError

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        with pytest.raises(OrchestrationError, match=r"^its care:flow-run-id tag is not a flow run id \(a UUID\)"):
            prefect_flow_run_state("garbage")
