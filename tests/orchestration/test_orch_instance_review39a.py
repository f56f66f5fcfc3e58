"""Review 39a H1 and M1: on a CaRE instance (the care-ec2 worker exports CARE_REGION and CARE_INSTANCE_TYPE in
its user data) a @care trigger knows where it runs and on what. Its "run now, here" used to run the body in the
pool's default region (eu-north-1) for a Spain-only policy, accounted as Spain, and on the pool's default
t3.micro for a job sized for more memory. Against a real Prefect server (the session harness)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.aws.worker import CareEC2Worker
from care_flows.orchestration import care
from tests.orchestration.test_orch_overrides import _decision
from tests.orchestration.test_start_check import _others, _run_existing

pytestmark = pytest.mark.usefixtures("prefect_harness")
RAN: list[str] = []


def _ec2_pool() -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="r39a-ec2", type="care-ec2", base_job_template=CareEC2Worker.get_default_base_job_template()),
                                overwrite=True)
    return "r39a-ec2"


def _spain_only(name, now, forecast, pool=None, **need):
    """A Spain-only @care flow (the data may not leave it) on a care-ec2 deployment (or ``pool``) with no region
    variable, planned by decide (which right-sizes)."""

    @care(policy=dict(home_region="eu-south-2", regions=[], deadline_within="1h", expected_duration="10m", **need), clock=lambda: now,
          planner="decide", sample_usage=False, signal={"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)})
    @flow(name=name)
    def spain_only() -> str:
        RAN.append(name)
        return "ran"

    dep_id = spain_only.to_deployment(name="prod", work_pool_name=pool or _ec2_pool()).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    return spain_only, dep_id, trigger


def test_a_trigger_on_an_instance_in_another_region_than_its_plan_dispatches_there_instead_of_running_here(forecast, monkeypatch):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    monkeypatch.setenv("CARE_REGION", "eu-north-1")  # the pool's default region, where the worker launched the trigger
    monkeypatch.setenv("CARE_INSTANCE_TYPE", "m5.2xlarge")
    flow_obj, dep_id, trigger = _spain_only("r39a-spain-only", now, forecast)
    state = _run_existing(flow_obj, trigger.id)
    assert state.is_completed() and "r39a-spain-only" not in RAN  # not run in Sweden
    (child,) = _others(dep_id, trigger.id)
    assert child.job_variables["region"] == "eu-south-2"
    with get_client(sync_client=True) as client:
        assert _decision(client, trigger.id).startswith("# CaRE decision: moved to eu-south-2, starting now")


def test_a_trigger_on_an_instance_smaller_than_the_planned_type_starts_the_work_on_that_type(forecast, monkeypatch):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    monkeypatch.setenv("CARE_REGION", "eu-south-2")
    monkeypatch.setenv("CARE_INSTANCE_TYPE", "t3.micro")  # the pool's default: 1 GiB for a 4 GiB job
    flow_obj, dep_id, trigger = _spain_only("r39a-small", now, forecast, vcpu=2, memory_gib=4)
    state = _run_existing(flow_obj, trigger.id)
    assert state.is_completed() and "r39a-small" not in RAN
    (child,) = _others(dep_id, trigger.id)
    planned = child.job_variables["instance_type"]
    assert child.job_variables["region"] == "eu-south-2" and planned != "t3.micro"
    with get_client(sync_client=True) as client:
        assert _decision(client, trigger.id).startswith(f"# CaRE decision: moved to a {planned} in eu-south-2, starting now")


def test_a_trigger_on_an_instance_in_its_planned_region_and_big_enough_runs_here(forecast, monkeypatch):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    monkeypatch.setenv("CARE_REGION", "eu-south-2")
    monkeypatch.setenv("CARE_INSTANCE_TYPE", "m5.2xlarge")  # 8 vCPU, 32 GiB: more than the plan needs, already paid for
    flow_obj, dep_id, trigger = _spain_only("r39a-here", now, forecast, vcpu=2, memory_gib=4)
    state = _run_existing(flow_obj, trigger.id)
    assert state.is_completed() and state.result() == "ran" and RAN.pop() == "r39a-here"
    assert _others(dep_id, trigger.id) == []


@pytest.mark.parametrize("pinned, on, need", [("t3.micro", "t3.micro", (2, 4)), ("m5.2xlarge", "t3.large", (1, 1))])
def test_a_target_that_pins_the_type_this_instance_has_runs_here_and_care_region_counts_only_on_care_ec2(forecast, monkeypatch,
                                                                                                          pinned, on, need):
    """Review 39d M3: a region target pinning instance_type (t3.micro) wins over the plan's type in the
    dispatched run, so a trigger already on a t3.micro launched another t3.micro; 39e M2: one pinning a bigger
    m5.2xlarge relaunched a trigger whose t3.large already fits the plan. L1: CARE_REGION in the environment
    of a process pool's run (not a CaRE instance) moved its accounting to that region."""
    from prefect.client.schemas.actions import WorkPoolCreate

    now = pd.Timestamp.now(tz="UTC").floor("h")
    monkeypatch.setenv("CARE_REGION", "eu-south-2")
    monkeypatch.setenv("CARE_INSTANCE_TYPE", on)

    @care(policy=dict(home_region="eu-south-2", regions=[], deadline_within="1h", expected_duration="10m", vcpu=need[0], memory_gib=need[1],
                      targets={"eu-south-2": {"job_variables": {"instance_type": pinned}}}),
          clock=lambda: now, planner="decide", sample_usage=False, signal={"eu-south-2": forecast(now, [300.0] * 10)})
    @flow(name=f"r39d-pinned-{pinned}")
    def pinned_flow() -> str:
        RAN.append("r39d-pinned")
        return "ran"

    dep_id = pinned_flow.to_deployment(name="prod", work_pool_name=_ec2_pool()).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(pinned_flow, trigger.id).result() == "ran" and RAN.pop() == "r39d-pinned"
    assert _others(dep_id, trigger.id) == []

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="r39d-process-eu-south-2", type="process"), overwrite=True)
    monkeypatch.setenv("CARE_REGION", "eu-north-1")  # e.g. left in a worker's environment: not where this pool runs
    flow_obj, dep_id, trigger = _spain_only(f"r39d-process-{on}", now, forecast, pool="r39d-process-eu-south-2")
    state = _run_existing(flow_obj, trigger.id)
    assert state.result() == "ran" and RAN.pop() == f"r39d-process-{on}" and _others(dep_id, trigger.id) == []
    with get_client(sync_client=True) as client:
        assert _decision(client, trigger.id).startswith("# CaRE decision: run now in eu-south-2")


def test_the_documented_care_ec2_deployment_recipe_loads_the_flow_from_its_installed_module(tmp_path, monkeypatch):
    """Review 39a H2, docs/AWS.md section 1 step 5: a care-ec2 instance has none of the deploying machine's
    files, so the flow is deployed with a module entrypoint and no pull steps, and the instance imports it from
    the package `install` put there. Here the "instance" is another working directory whose sys.path has the
    package (what pip install gives), and Prefect's own loader (what `prefect flow-run execute` runs) finds the
    @care flow."""
    import asyncio
    import importlib
    import sys
    import textwrap

    from prefect.deployments.runner import EntrypointType
    from prefect.flows import load_flow_from_flow_run

    site = tmp_path / "site-packages" / "r39a_flows"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "nightly.py").write_text(textwrap.dedent('''
        from prefect import flow

        from care_flows import care

        @care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"]})
        @flow(name="r39a-installed")
        def nightly(day: str = "x") -> str:
            return day
    '''))
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    nightly = importlib.import_module("r39a_flows.nightly").nightly
    dep_id = nightly.to_deployment(name="prod", work_pool_name=_ec2_pool(), entrypoint_type=EntrypointType.MODULE_PATH).apply()
    with get_client(sync_client=True) as client:
        dep = client.read_deployment(dep_id)
        run = client.create_flow_run_from_deployment(dep_id)
    assert dep.entrypoint == "r39a_flows.nightly.nightly" and dep.pull_steps == []
    elsewhere = tmp_path / "instance-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in [m for m in sys.modules if m.startswith("r39a_flows")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as on the instance

    with get_client(sync_client=True) as client:
        fresh = client.read_flow_run(run.id)
    loaded = asyncio.run(load_flow_from_flow_run(fresh))  # the client is injected, as in `prefect flow-run execute`
    assert loaded.name == "r39a-installed" and getattr(loaded, "__care_config__", None) is not None
