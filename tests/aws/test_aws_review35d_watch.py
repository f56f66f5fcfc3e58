"""Review 35d H1, M1, M4: the care-ec2 worker's watch loop, HTTP 5xx answers, suspended runs and
the instance lifetime (ttl_minutes) of a long planned run.

H1: a 5xx with a generic body (a load balancer's or proxy's page) gives botocore's bare code "503";
it was classified fatal, so one such answer to a poll terminated a running flow's instance (and one
to RunInstances failed the launch). A loopback proxy in front of moto answers chosen EC2 calls with
that page, so botocore parses a real response.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs

import anyio
import pytest
import requests
from botocore.exceptions import ClientError
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Running, Scheduled, Suspended

from care_flows.aws import worker as worker_module
from care_flows.aws.clients import AwsClients
from care_flows.aws.faults import classify
from care_flows.aws.launch import LaunchSpec, launch
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker
from care_flows.policy import CarePolicy, RegionTarget
from test_aws_support import FakePrefect, aws, care_instances, fast_worker, make_flow_run, moto_clients, moto_url  # noqa: F401

PAGE_503 = b"<html><body><b>Http/1.1 Service Unavailable</b></body></html>"


class Proxy:
    """Loopback proxy to moto; ``fail(action, params)`` True answers that call with the generic 503 page."""

    def __init__(self, upstream: str, fail: Callable[[str, dict[str, str]], bool]) -> None:
        self.calls: list[tuple[str, dict[str, str], int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
                action = params.get("Action", "")
                if fail(action, params):
                    proxy.calls.append((action, params, 503))
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(PAGE_503)))
                    self.end_headers()
                    self.wfile.write(PAGE_503)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.post(upstream + self.path, data=body, headers=headers, timeout=30)
                proxy.calls.append((action, params, r.status_code))
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def actions(self) -> list[tuple[str, int]]:
        return [(a, status) for a, _, status in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_factory(moto_url: str) -> Any:  # noqa: F811
    made: list[Proxy] = []

    def make(fail: Callable[[str, dict[str, str]], bool]) -> Proxy:
        made.append(Proxy(moto_url, fail))
        return made[-1]

    yield make
    for p in made:
        p.close()


_worker = fast_worker  # (clients, prefect)


def _conf(flow_run: Any, **kw: Any) -> CareEC2JobConfiguration:
    args = dict(region="eu-north-1", instance_type="t3.micro", poll_interval_s=0.01, api_key_secret="care/prefect-api-key", final_grace_s=0,
                env={"PREFECT_API_URL": "https://prefect.internal/api"})
    conf = CareEC2JobConfiguration(**{**args, **kw})
    conf.prepare_for_flow_run(flow_run)
    return conf


# ---- H1: classification -------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["500", "502", "503", "504"])
def test_a_bare_5xx_code_is_transient(code: str) -> None:
    err = ClientError({"Error": {"Code": code, "Message": "Service Unavailable"}, "ResponseMetadata": {"HTTPStatusCode": int(code)}}, "DescribeInstances")
    assert classify(err) == "throttle"
    assert classify(ClientError({"Error": {"Code": code, "Message": ""}}, "RunInstances")) == "throttle"  # the code alone


def test_any_5xx_status_is_transient_but_codes_with_their_own_class_keep_it() -> None:
    status = lambda code, http: ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": http}}, "RunInstances")  # noqa: E731
    assert classify(status("SomethingNew", 503)) == "throttle"
    assert classify(status("InsufficientInstanceCapacity", 500)) == "capacity"  # EC2 answers it with a 500
    assert classify(status("AuthFailure", 401)) == "fatal"  # e.g. "Not authorized for images": the set-up (review 43c M1)
    not_validated = ClientError({"Error": {"Code": "AuthFailure", "Message": "AWS was not able to validate the provided access credentials"},
                                 "ResponseMetadata": {"HTTPStatusCode": 401}}, "RunInstances")
    assert classify(not_validated) == "region"  # a region not enabled, or credentials not valid there
    assert classify(status("SomethingNew", 400)) == "fatal"


def test_a_503_page_answering_run_instances_is_retried_with_the_same_client_token(aws: AwsClients, proxy_factory: Any) -> None:  # noqa: F811
    n = {"run": 0}

    def fail(action: str, params: dict[str, str]) -> bool:
        if action == "RunInstances":
            n["run"] += 1
            return n["run"] == 1
        return False

    proxy = proxy_factory(fail)
    spec = LaunchSpec(flow_run_id="r35d-503", region="eu-north-1", instance_type="t3.micro", fallback_instance_types=("t3.small",))
    result = launch(spec, moto_clients(proxy.url), sleep=lambda s: None)
    assert [(a.outcome, a.code) for a in result.attempts] == [("throttled", "503"), ("launched", "")]
    assert result.instance_type == "t3.micro"  # the same option again, not the fallback
    tokens = [params.get("ClientToken") for action, params, _ in proxy.calls if action == "RunInstances"]
    assert len(tokens) == 2 and tokens[0] and tokens[0] == tokens[1]
    assert len(care_instances(aws, "eu-north-1")) == 1


# ---- H1: the watch loop -------------------------------------------------------------------------


def test_a_503_page_answering_a_poll_does_not_terminate_a_running_flow_run(aws: AwsClients, proxy_factory: Any) -> None:  # noqa: F811
    polls = {"n": 0}

    def fail(action: str, params: dict[str, str]) -> bool:
        if action == "DescribeInstances" and "InstanceId.1" in params:
            polls["n"] += 1
            return polls["n"] == 2
        return False

    proxy = proxy_factory(fail)
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Running(), Running(), Completed()]
    result = anyio.run(lambda: _worker(moto_clients(proxy.url), prefect).run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert not prefect.set_states  # never crashed
    actions = [a for a in proxy.actions() if a[0] in ("DescribeInstances", "TerminateInstances")]
    failed_at = actions.index(("DescribeInstances", 503))
    terminated_at = actions.index(("TerminateInstances", 200))
    # polled again after the 503 and terminated only once the run had completed
    assert ("DescribeInstances", 200) in actions[failed_at + 1:terminated_at]
    assert prefect.reads >= 4


def _failing_polls(polls: dict[str, int], error_at: Any) -> Any:
    """A client wrapper whose n-th poll of an instance (DescribeInstances with InstanceIds) raises ``error_at(n)``
    when that is not None; ``polls["n"]`` counts the polls."""

    def wrap(service: str, region: str, client: Any) -> Any:
        if service != "ec2":
            return client

        class Polls:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(client, name)
                if name != "describe_instances":
                    return attr

                def call(**kw: Any) -> Any:
                    if kw.get("InstanceIds"):
                        polls["n"] += 1
                        error = error_at(polls["n"])
                        if error is not None:
                            raise error
                    return attr(**kw)

                return call

        return Polls()

    return wrap


@pytest.mark.parametrize("code", ["503", "AuthFailure", "SomethingUnknown"])
def test_an_unclassified_or_5xx_poll_error_is_checked_again_not_a_termination(aws: AwsClients, moto_url: str, code: str) -> None:  # noqa: F811
    polls = {"n": 0}
    wrap = _failing_polls(polls, lambda n: ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                                                       "DescribeInstances") if n == 1 else None)

    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Running(), Completed()]
    result = anyio.run(lambda: _worker(moto_clients(moto_url, wrap=wrap), prefect).run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run completed"
    assert polls["n"] >= 2 and not prefect.set_states


def test_the_watch_gives_up_after_many_failed_polls_without_terminating_and_marks_the_run(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    polls = {"n": 0}
    wrap = _failing_polls(polls, lambda n: ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform this operation."},
                                                        "ResponseMetadata": {"HTTPStatusCode": 403}}, "DescribeInstances"))

    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)  # the run stays Running
    result = anyio.run(lambda: _worker(moto_clients(moto_url, wrap=wrap), prefect).run(flow_run, _conf(flow_run)))
    assert polls["n"] == worker_module.MAX_FAILED_POLLS
    assert result.status_code == 1 and "stopped watching" in result.reason and "not terminated" in result.reason
    assert "UnauthorizedOperation" in result.reason and "care aws reap" in result.reason
    assert [s.type for s in prefect.set_states] == [StateType.CRASHED]  # not left Running with nobody watching
    assert len(care_instances(aws, "eu-north-1")) == 1  # still running: the worker could not see it, so it did not kill it


# ---- M1: suspended / handed-back runs --------------------------------------------------------------


def _power_off_after(aws: AwsClients, sleeps: int, how: str = "terminate") -> Callable[[float], Any]:
    calls = {"n": 0}

    async def sleep(_s: float) -> None:
        calls["n"] += 1
        if calls["n"] == sleeps:  # the flow process exited; the user data powers the instance off
            ids = [i["InstanceId"] for i in care_instances(aws, "eu-north-1")]
            ec2 = aws.ec2("eu-north-1")
            (ec2.terminate_instances if how == "terminate" else ec2.stop_instances)(InstanceIds=ids)
        await anyio.sleep(0)

    return sleep


@pytest.mark.parametrize("handed_back, reason", [
    (lambda: Suspended(timeout_seconds=3600), "flow run paused/suspended"),
    (lambda: Scheduled(), "flow run scheduled again (handed back to Prefect)"),
])
def test_a_suspended_or_handed_back_run_whose_instance_powered_off_is_not_crashed(aws: AwsClients, moto_url: str, handed_back: Any, reason: str) -> None:  # noqa: F811
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), handed_back()]
    w = _worker(moto_clients(moto_url), prefect)
    w.async_sleep = _power_off_after(aws, 2)
    result = anyio.run(lambda: w.run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == reason
    assert prefect.set_states == []  # was: Crashed, which a suspended run cannot be resumed from


def test_a_suspended_runs_stopped_instance_is_terminated(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Suspended(timeout_seconds=3600)]
    w = _worker(moto_clients(moto_url), prefect)
    w.async_sleep = _power_off_after(aws, 2, how="stop")
    result = anyio.run(lambda: w.run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run paused/suspended" and prefect.set_states == []
    assert care_instances(aws, "eu-north-1", ("pending", "running", "stopping", "stopped")) == []  # not left holding its volume


def test_a_paused_run_whose_instance_is_still_up_is_watched_on(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    # pause_flow_run() keeps the flow process waiting on the instance: nothing is done while it is up
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Running(), Suspended(timeout_seconds=3600), Running(), Completed()]
    result = anyio.run(lambda: _worker(moto_clients(moto_url), prefect).run(flow_run, _conf(flow_run)))
    assert result.status_code == 0 and result.reason == "flow run completed" and prefect.set_states == []


# ---- M4: ttl_minutes of a long planned run ----------------------------------------------------------


def test_job_variables_for_leaves_the_instance_lifetime_to_the_worker_unless_the_region_target_pins_it() -> None:
    from care_flows.orchestration.targets import job_variables_for, ttl_for_work_minutes, ttl_pinned

    long = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="24h", expected_duration="4h")
    assert job_variables_for(long, "eu-north-1", "t3.large") == {"region": "eu-north-1", "instance_type": "t3.large"}  # the pool's own value
    assert not ttl_pinned(long, "eu-north-1")
    pinned = long.model_copy(update={"targets": {"eu-north-1": RegionTarget(job_variables={"ttl_minutes": 600})}})
    assert job_variables_for(pinned, "eu-north-1", None)["ttl_minutes"] == 600 and ttl_pinned(pinned, "eu-north-1")  # the region target's value wins
    assert ttl_for_work_minutes(timedelta(minutes=100)) == 180 and ttl_for_work_minutes(timedelta(minutes=101)) == 182
    assert ttl_for_work_minutes(timedelta(hours=4)) == 390 and ttl_for_work_minutes(timedelta(hours=10)) == 930


def test_a_4h_planned_run_is_not_killed_at_the_default_3h(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    from care_flows.orchestration.targets import job_variables_for

    policy = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="24h", expected_duration="4h")
    jv = job_variables_for(policy, "eu-north-1", "t3.large")
    t0 = datetime.now(timezone.utc)
    clock = {"t": t0}

    class FourHours(FakePrefect):
        async def read_flow_run(self, flow_run_id: Any) -> Any:
            self.reads += 1
            done = clock["t"] - t0 >= timedelta(hours=4)
            self.flow_run = self.flow_run.model_copy(update={"state": Completed() if done else Running()})
            return self.flow_run

    flow_run = _planned_flow_run(4)  # the care marker the trigger wrote: 4 h of work
    prefect = FourHours(flow_run)
    w = _worker(moto_clients(moto_url), prefect)
    w.now = lambda: clock["t"]

    async def time_passes(s: float) -> None:
        clock["t"] += timedelta(seconds=s)
        await anyio.sleep(0)

    w.async_sleep = time_passes
    conf = _conf(flow_run, poll_interval_s=60, max_poll_interval_s=600, **jv)
    assert conf.ttl_minutes == 390  # the pool's default 180, raised by the worker
    result = anyio.run(lambda: w.run(flow_run, conf))
    assert result.status_code == 0 and result.reason == "flow run completed", result.reason
    assert prefect.set_states == []  # was: Crashed at the TTL of 180 min after 3 h of the 4 h job


def _planned_flow_run(hours: float, **marker: Any) -> Any:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    end = t + timedelta(hours=hours)
    plan = {"region": "eu-north-1", "start": t.isoformat(), "end": end.isoformat(), "segments": [[t.isoformat(), end.isoformat()]]}
    care = {"plan": plan, "segment": 0, "root": "r", "work_done_s": 0.0, **marker}
    return make_flow_run(state=Running()).model_copy(update={"job_variables": {"care": care}})


@pytest.mark.parametrize("ttl, pinned, effective", [(180, False, 390), (600, False, 600), (60, False, 390), (180, True, 180)])
def test_the_worker_raises_a_short_ttl_to_cover_the_planned_work_but_keeps_a_longer_or_pinned_one(ttl: int, pinned: bool, effective: int) -> None:
    # a pool, deployment or run with a longer ttl_minutes keeps it (CaRE used to set 390 over a pool's 600)
    flow_run = _planned_flow_run(4, **({"ttl_pinned": True} if pinned else {}))
    assert _conf(flow_run, ttl_minutes=ttl).ttl_minutes == effective
    assert _conf(make_flow_run(state=Running()), ttl_minutes=ttl).ttl_minutes == ttl  # a run CaRE did not plan: as configured
    assert _conf(_planned_flow_run(4, work_done_s=3 * 3600.0), ttl_minutes=60).ttl_minutes == 120  # a continuation: the work left


@pytest.mark.parametrize("ttl, warned", [(180, True), (390, False)])
def test_the_worker_warns_when_a_pinned_ttl_minutes_is_shorter_than_the_planned_work(aws: AwsClients, moto_url: str, caplog: pytest.LogCaptureFixture,  # noqa: F811
                                                                                     ttl: int, warned: bool) -> None:
    flow_run = _planned_flow_run(4, ttl_pinned=True)
    prefect = FakePrefect(flow_run)
    prefect.script = [Completed()]
    w = _worker(moto_clients(moto_url), prefect)
    logger = logging.getLogger("test.care.r35d.worker")
    w.get_flow_run_logger = lambda fr: logger  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger=logger.name):
        result = anyio.run(lambda: w.run(flow_run, _conf(flow_run, ttl_minutes=ttl)))
    assert result.status_code == 0
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name and "ttl_minutes" in r.getMessage()]
    if warned:
        assert len(messages) == 1 and "ttl_minutes 180 is shorter than the 240 min of work CaRE planned" in messages[0]
        assert "at least 390" in messages[0]
    else:
        assert messages == []
