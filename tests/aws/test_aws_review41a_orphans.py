"""Review 41a M2: a care-ec2 run whose worker was killed is watched by no one; when its instance
then dies, the run stayed Pending or Running for good and ``care aws reap`` listed nothing.

The reaper now crashes such a run: Pending or Running on an instance (its ``infrastructure_pid``)
that is shutting down or terminated and was launched more than ``orphan_grace_s`` ago.
Against moto's server mode and the session's Prefect test harness.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prefect import flow, get_client
from prefect.states import Completed, Running

from care_flows.aws.clients import AwsClients
from care_flows.aws.reaper import ANY_API, reap
from test_aws_support import aws, moto_url  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow(name="r41a-orphan")
def body() -> None:
    return None


def _run_on_instance(aws: AwsClients, state, *, pid_of: str | None = None) -> tuple[str, str]:
    """A flow run in ``state`` and a CaRE instance tagged with it; the run's infrastructure_pid names
    that instance (or ``pid_of``, the instance a relaunch moved it to)."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(body)
        client.set_flow_run_state(run.id, state, force=True)
        tags = [{"Key": "care:flow-run-id", "Value": str(run.id)}, {"Key": "care:expires-at", "Value": "2099-01-01T00:00:00+00:00"}]
        iid = aws.ec2("eu-north-1").run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                                  TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]
        client.update_flow_run(run.id, infrastructure_pid=f"eu-north-1:{pid_of or iid}")
    return str(run.id), iid


def _state(run_id: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def test_the_reaper_crashes_a_run_whose_instance_died_while_no_worker_watched(aws: AwsClients) -> None:
    orphan, dead = _run_on_instance(aws, Running())
    moved, old = _run_on_instance(aws, Running(), pid_of="i-0relaunched0000000")  # relaunched elsewhere: not this instance's
    done, ended = _run_on_instance(aws, Completed())
    alive, live = _run_on_instance(aws, Running())  # its instance still runs: the worker or the TTL handle it
    aws.ec2("eu-north-1").terminate_instances(InstanceIds=[dead, old, ended])
    later = datetime.now(timezone.utc) + timedelta(minutes=11)

    # launched less than orphan_grace_s (10 min) ago: a worker relaunching after a capacity shortage may not have reported yet
    assert reap(["eu-north-1"], aws, prefect_api=ANY_API, dry_run=True).orphaned == []

    listed = reap(["eu-north-1"], aws, now=later, prefect_api=ANY_API, dry_run=True)
    assert [(o.flow_run_id, o.instance_id, o.run_state, o.crashed) for o in listed.orphaned] == [(orphan, dead, "RUNNING", False)]
    assert _state(orphan).is_running()  # a dry run changes nothing
    assert listed.as_dict()["orphaned_runs"][0]["instance_state"] in ("shutting-down", "terminated")

    report = reap(["eu-north-1"], aws, now=later, prefect_api=ANY_API)
    assert [(o.flow_run_id, o.crashed) for o in report.orphaned] == [(orphan, True)]
    state = _state(orphan)
    assert state.is_crashed() and f"eu-north-1:{dead}" in state.message and "no worker watches it" in state.message
    assert _state(moved).is_running() and _state(done).is_completed() and _state(alive).is_running()
    assert reap(["eu-north-1"], aws, now=later, prefect_api=ANY_API).orphaned == []  # once


def test_without_the_prefect_api_rule_no_run_is_crashed(aws: AwsClients) -> None:
    orphan, dead = _run_on_instance(aws, Running())
    aws.ec2("eu-north-1").terminate_instances(InstanceIds=[dead])
    later = datetime.now(timezone.utc) + timedelta(minutes=11)
    assert reap(["eu-north-1"], aws, now=later, flow_run_state=None).orphaned == []  # care aws reap --no-prefect
    assert reap(["eu-north-1"], aws, now=later).orphaned == []  # an instance of another (here: untagged) Prefect API
    assert _state(orphan).is_running()


def test_review55b_m3_a_run_a_worker_is_relaunching_is_not_crashed(aws: AwsClients) -> None:
    """A resumed (or UI-retried) run is Pending on its old, terminated instance while a worker launches its new one:
    Prefect names the new instance only once it is up. The reaper crashed it as orphaned."""
    from care_flows.aws.reaper import prefect_crash_orphaned_run
    from prefect.states import Pending

    relaunched, old = _run_on_instance(aws, Pending())
    tags = [{"Key": "care:flow-run-id", "Value": relaunched}, {"Key": "care:expires-at", "Value": "2099-01-01T00:00:00+00:00"}]
    aws.ec2("eu-north-1").run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])  # the new instance, booting
    aws.ec2("eu-north-1").terminate_instances(InstanceIds=[old])
    later = datetime.now(timezone.utc) + timedelta(minutes=11)
    assert reap(["eu-north-1"], aws, now=later, prefect_api=ANY_API).orphaned == []  # a live instance carries the run
    assert _state(relaunched).is_pending()
    # before the new instance exists: a state entered less than the grace ago is a worker at work, not an orphan
    now = datetime.now(timezone.utc)
    assert prefect_crash_orphaned_run(relaunched, f"eu-north-1:{old}", "test", True, now=now) is None
    assert prefect_crash_orphaned_run(relaunched, f"eu-north-1:{old}", "test", True, now=later) == "PENDING"
