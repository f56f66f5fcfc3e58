"""`care controller` start-up errors are one-line exit-2 errors naming the fix (review 4 #2, #3)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from care_flows.cli import main
from care_flows.errors import ConfigError


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "internal error" not in err, err
    return err


def _closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (nothing listens on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_prefect_api_names_the_url_and_the_fix(capsys):
    url = f"http://127.0.0.1:{_closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        assert main(["controller", "--once"]) == 2
        err = _one_line_error(capsys)
        assert f"cannot reach the Prefect API at {url}" in err and "prefect server start" in err and "PREFECT_API_URL" in err
        # the same when the first call is the --policy-block look-up
        assert main(["controller", "--once", "--policy-block", "green-batch"]) == 2
        assert f"cannot reach the Prefect API at {url}" in _one_line_error(capsys)


@pytest.mark.usefixtures("prefect_harness")
def test_missing_policy_block_says_how_to_create_it(capsys):
    assert main(["controller", "--once", "--policy-block", "nope"]) == 2
    err = _one_line_error(capsys)
    assert ("no CarePolicyBlock named 'nope'; create it (CarePolicyBlock(policy={...}).save('nope'), or in a checkout of CaRE "
            "python blocks/create_blocks.py for the examples) or fix --policy-block") in err


@pytest.mark.usefixtures("prefect_harness")
def test_a_care_deployment_without_a_policy_is_skipped_naming_every_way_to_give_one(forecast):
    """Review 39a L5: the reason left out the care_policy parameter; the fix names only what the package has."""
    from datetime import timedelta

    import pandas as pd
    from prefect import flow, get_client
    from prefect.states import Scheduled

    from care_flows.orchestration.controller import control_once

    @flow(name="r39a-no-policy")
    def no_policy() -> str:
        return "x"

    dep_id = no_policy.to_deployment(name="r39a-no-policy", tags=["care"]).apply()
    at = pd.Timestamp.now(tz="UTC").ceil("h") + pd.Timedelta(hours=1)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=at.to_pydatetime()))
        (action,) = [a for a in control_once(client, lookahead=timedelta(hours=24), signal={"eu-south-2": forecast(at, [300.0] * 12)})
                     if a.flow_run_id == str(run.id)]
    assert action.action == "skipped"
    assert action.reason == "no policy (a deployment tag care-policy:<block>, a care_policy parameter, or --policy-block)"


@pytest.mark.usefixtures("prefect_harness")
def test_a_deployment_tag_naming_a_missing_block_fails_that_run_with_the_fix():
    from types import SimpleNamespace

    from care_flows.orchestration.controller import policy_for_deployment

    dep = SimpleNamespace(tags=["care", "care-policy:no-such-block"], parameters={})
    with pytest.raises(ConfigError, match="no CarePolicyBlock named 'no-such-block'.* or fix the deployment tag 'care-policy:no-such-block'"):
        policy_for_deployment(dep, SimpleNamespace(parameters={}), None)


@pytest.mark.usefixtures("prefect_harness")
def test_policies_from_tags_and_policy_block_get_the_targets_block_merged(monkeypatch, capsys):
    from types import SimpleNamespace

    from care_flows.blocks import CarePolicyBlock, RegionTargets
    from care_flows.orchestration.controller import policy_for_deployment

    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-north-1"]}).save("tgt-policy", overwrite=True)
    RegionTargets(targets={"eu-north-1": {"work_pool": "se-workers"}}).save("tgt-targets", overwrite=True)
    monkeypatch.setenv("CARE_TARGETS_BLOCK", "tgt-targets")
    dep = SimpleNamespace(tags=["care", "care-policy:tgt-policy"], parameters={})
    pol = policy_for_deployment(dep, SimpleNamespace(parameters={}), None)
    assert pol.targets["eu-north-1"].work_pool == "se-workers"  # so the pool rule knows se-workers runs in eu-north-1
    # --policy-block takes inline JSON as well as a block name
    monkeypatch.delenv("CARE_TARGETS_BLOCK")
    assert main(["controller", "--once", "--json", "--policy-block", '{"home_region": "eu-north-1"}']) == 0
    assert capsys.readouterr().out.strip().startswith("{")


def test_the_loop_logs_an_unreachable_api_as_the_fix_and_keeps_going():
    import logging

    import pandas as pd

    from care_flows.orchestration.controller import run_controller

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    url = f"http://127.0.0.1:{_closed_port()}/api"
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    collect, logger = Collect(), logging.getLogger("care_flows.orchestration.controller")
    logger.addHandler(collect)
    try:
        with temporary_settings({PREFECT_API_URL: url}), pytest.raises(KeyboardInterrupt):
            run_controller(interval=pd.Timedelta("5s"), lookahead=pd.Timedelta("1h"), sleep=sleep)
    finally:
        logger.removeHandler(collect)
    lines = [m for m in collect.messages if "care controller" in m]
    assert len(lines) == 2 and all(f"cannot reach the Prefect API at {url}" in m and "retrying in 5s" in m for m in lines), lines
    assert sleeps == [5.0, 5.0]


def test_a_password_in_the_api_url_is_not_printed(capsys):
    """Review 38c M1: a user:password in PREFECT_API_URL is a secret; the error shows it as ***."""
    url = f"http://admin:pw-SECRET-777@127.0.0.1:{_closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        assert main(["controller", "--once"]) == 2
        err = _one_line_error(capsys)
    assert "pw-SECRET-777" not in err and "cannot reach the Prefect API at http://***@127.0.0.1:" in err


def test_the_controller_says_once_that_passes_work_again_after_the_api_came_back(monkeypatch):
    """Review 41a L5: after a server restart the controller went on with a plain summary, nothing
    saying the failures were over."""
    from care_flows.orchestration import controller

    answers = iter([ConnectionRefusedError("refused"), ConnectionRefusedError("refused"), [], []])

    def control_once(**_kw):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(controller, "control_once", control_once)
    errors, recovered, passes, sleeps = [], [], [], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        controller.run_controller(interval=timedelta(seconds=5), lease=False, sleep=sleep, on_error=errors.append,
                                  on_recover=recovered.append, on_pass=passes.append)
    assert len(errors) == 2 and len(passes) == 2
    assert len(recovered) == 1 and recovered[0].startswith("passes work again after 2 failed passes ("), recovered


@pytest.mark.usefixtures("prefect_harness")
def test_a_page_larger_than_the_server_allows_is_halved_not_a_failed_pass():
    """Review 41b M2: the controller took its page size from its own PREFECT_SERVER_API_DEFAULT_LIMIT;
    larger than the server's (200), every pass failed with 422 and exit 1."""
    from prefect import get_client
    from prefect.settings import PREFECT_SERVER_API_DEFAULT_LIMIT, temporary_settings

    from care_flows.orchestration.controller import control_once, iter_pages

    with temporary_settings({PREFECT_SERVER_API_DEFAULT_LIMIT: 450}), get_client(sync_client=True) as client:
        assert isinstance(control_once(client, lookahead=timedelta(minutes=1)), list)
    asked = []

    def read(limit, offset):
        asked.append(limit)
        if limit > 100:
            raise type("E", (Exception,), {"response": type("R", (), {"status_code": 422})()})()
        return list(range(offset, min(offset + limit, 250)))

    assert list(iter_pages(read, limit=450)) == list(range(250)) and asked[:3] == [450, 225, 112]
