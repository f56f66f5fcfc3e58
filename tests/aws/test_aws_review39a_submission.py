"""Review 39a M2 and L1: set-up errors at submission, and the secret named in the worker's log.

M2: a misspelt ``region`` job variable, or a worker with no AWS credentials, raised out of
``CareEC2Worker.run`` into Prefect's base worker, whose ``_submit_run_and_capture_errors`` logs it
with ``logger.exception``: a 12-line traceback (about 70 with botocore's stack and "The above
exception was the direct cause ...") in the worker's log and in the run's log in the UI, where
docs/AWS.md promises one line. Without credentials the launch's clean-up also warned "could not
check for instances left by flow run ... (NoCredentialsError ...); the reaper will catch them",
although nothing can have been launched.

L1: the worker logged the secret's ARN; Prefect's console handler (Rich, emoji codes on) printed
``...:123456789012:secret:care/...`` as ``...123456789012㊙care/...``.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import anyio
import pytest
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from prefect.states import Completed, Running

from care_flows.aws.clients import AwsClients
from care_flows.aws.launch import LaunchSpec, launch
from care_flows.aws.worker import CareEC2JobConfiguration, CareEC2Worker
from care_flows.errors import AwsError, UnknownRegionError
from test_aws_support import FakePrefect, aws, care_instances, fast_worker, make_flow_run, moto_clients, moto_url, no_aws_credentials  # noqa: F401

API = "http://10.0.0.5:4200/api"  # not loopback, never connected to (logs to the API are off)
SECRET_ARN = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-zPgfLX"


class Records(logging.Handler):
    """Every record of the loggers it is attached to (Prefect's loggers do not propagate to caplog's root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.INFO) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


@pytest.fixture
def records() -> Any:
    handler = Records()
    names = ("prefect.flow_runs", "test.care-ec2.39a", "care_flows.aws.launch")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler
    for name in names:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(saved[name])


class Status:
    """A stand-in for the anyio task status Prefect's base worker passes to ``run``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        status = self

        class Future:  # the base worker checks ``task_status._future.done()``
            def done(self) -> bool:
                return bool(status.calls)

        self._future = Future()

    def started(self, value: Any = None) -> None:
        self.calls.append(value)


def _worker(prefect: FakePrefect, clients: AwsClients) -> CareEC2Worker:
    w = fast_worker(clients, prefect)
    w._logger = logging.getLogger("test.care-ec2.39a")
    return w


def _conf(flow_run: Any, **kw: Any) -> CareEC2JobConfiguration:
    args = dict(region="eu-north-1", instance_type="t3.micro", poll_interval_s=0.01, final_grace_s=0, api_key_secret="care/prefect-api-key",
                env={"PREFECT_API_URL": API})
    conf = CareEC2JobConfiguration(**{**args, **kw})
    conf.prepare_for_flow_run(flow_run)
    return conf


def _no_traceback(records: Records) -> None:
    assert not [r.getMessage() for r in records.records if r.exc_info and r.levelno >= logging.INFO], "a traceback was logged"


# M2: run() at submission -------------------------------------------------------------------------

def test_a_misspelt_region_is_one_line_the_run_crashed_with_it_and_a_failed_result(moto_url: str, records: Records) -> None:  # noqa: F811
    flow_run = make_flow_run()
    prefect = FakePrefect(flow_run)
    status = Status()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = anyio.run(lambda: _worker(prefect, moto_clients(moto_url)).run(flow_run, _conf(flow_run, region="eu-nort-1"), task_status=status))
    assert result.status_code == 1 and result.identifier == ""
    assert result.reason.startswith("Failed to submit flow run to infrastructure: UnknownRegionError: job variable region: unknown region 'eu-nort-1'")
    assert "\n" not in result.reason
    # reported as the base worker reports an exception: the run did not start, no infrastructure id
    assert len(status.calls) == 1 and isinstance(status.calls[0], UnknownRegionError)
    assert [s.type.value for s in prefect.set_states] == ["CRASHED"] and prefect.set_states[0].message == result.reason
    errors = [r.getMessage() for r in records.records if r.levelno >= logging.ERROR]
    assert errors == [f"Failed to submit flow run 'gentle-otter' to infrastructure: {result.reason.split(': ', 1)[1]}"]
    _no_traceback(records)


def test_no_credentials_is_one_line_without_the_leftover_check_warning(moto_url: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                                       tmp_path: Any, records: Records) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    flow_run = make_flow_run()
    prefect = FakePrefect(flow_run)
    status = Status()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = anyio.run(lambda: _worker(prefect, AwsClients(endpoint_url=moto_url)).run(flow_run, _conf(flow_run), task_status=status))
    assert result.status_code == 1 and "AwsError: launching for flow run" in result.reason and "no AWS credentials found for the worker" in result.reason
    assert isinstance(status.calls[0], AwsError) and prefect.set_states[-1].is_crashed() and prefect.set_states[-1].message == result.reason
    assert "could not check for instances left" not in records.text(logging.DEBUG)
    assert len([r for r in records.records if r.levelno >= logging.ERROR]) == 1
    _no_traceback(records)


def test_launch_without_credentials_raises_without_botocores_stack_and_skips_the_leftover_check(moto_url: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                                                                   tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    spec = LaunchSpec(flow_run_id="run-nocreds-39a", region="eu-north-1", instance_type="t3.micro", user_data="#!/bin/bash\n")
    with caplog.at_level(logging.DEBUG, logger="care_flows.aws.launch"), pytest.raises(AwsError, match="no AWS credentials found") as info:
        launch(spec, AwsClients(endpoint_url=moto_url), sleep=lambda s: None)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no "The above exception was the direct cause"
    assert "could not check for instances left" not in caplog.text


def test_other_launch_failures_still_clean_up_and_keep_their_cause(aws: AwsClients, moto_url: str) -> None:  # noqa: F811
    """Only no-credentials skips the clean-up; a ParamValidationError (possibly CaRE's bug) keeps botocore's error as its cause."""
    from botocore.exceptions import ParamValidationError

    plain = moto_clients(moto_url)
    left = plain.ec2("eu-north-1").run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                                  TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "care:flow-run-id", "Value": "run-bad-39a"}]}])

    class Broken:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "describe_subnets":
                def broken(**kw: Any) -> Any:
                    raise ParamValidationError(report="bad request")
                return broken
            return getattr(self._inner, name)

    clients = moto_clients(moto_url, wrap=lambda s, r, c: Broken(c) if s == "ec2" else c)
    # the run's instance in pending/running would be reused: stop it first so the launch goes on to describe_subnets
    plain.ec2("eu-north-1").stop_instances(InstanceIds=[left["Instances"][0]["InstanceId"]])
    spec = LaunchSpec(flow_run_id="run-bad-39a", region="eu-north-1", instance_type="t3.micro", user_data="#!/bin/bash\n")
    with pytest.raises(AwsError, match="ParamValidationError") as info:
        launch(spec, clients, sleep=lambda s: None)
    assert isinstance(info.value.__cause__, ParamValidationError)
    assert care_instances(aws, "eu-north-1", ("pending", "running", "stopping", "stopped")) == []  # the clean-up ran


def test_an_unexpected_exception_still_reaches_prefect_with_its_traceback(moto_url: str) -> None:  # noqa: F811
    flow_run = make_flow_run()
    worker = _worker(FakePrefect(flow_run), moto_clients(moto_url))

    def bug(conf: Any) -> Any:
        raise RuntimeError("a bug in CaRE")

    worker.clients_factory = bug
    status = Status()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}), pytest.raises(RuntimeError, match="a bug in CaRE"):
        anyio.run(lambda: worker.run(flow_run, _conf(flow_run), task_status=status))
    assert status.calls == []  # left to the base worker, which logs it with logger.exception


def test_through_prefects_base_worker_nothing_is_logged_with_a_traceback_and_the_crash_is_not_replaced(
        moto_url: str, monkeypatch: pytest.MonkeyPatch, records: Records) -> None:  # noqa: F811
    """Prefect's own ``_submit_run_and_capture_errors`` around ``run``: no ``logger.exception``; its Crashed
    proposal for the failed result comes after the worker's (the server aborts it: the run is final)."""
    flow_run = make_flow_run()
    prefect = FakePrefect(flow_run)
    worker = _worker(prefect, moto_clients(moto_url))
    conf = _conf(flow_run, region="eu-nort-1")
    proposed: list[str] = []

    async def resolve(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return conf

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    async def propose_crashed(flow_run: Any, message: str, client: Any = None) -> None:
        proposed.append(message)

    from prefect.client.schemas.objects import WorkPool

    worker._client, worker._work_pool = prefect, WorkPool(name="care-eu", type="care-ec2")  # what `async with worker` sets
    monkeypatch.setattr(CareEC2JobConfiguration, "resolve_for_flow_run", classmethod(resolve))
    monkeypatch.setattr(worker, "_give_worker_labels_to_flow_run", nothing)
    monkeypatch.setattr(worker, "_propose_submitting_state", nothing)
    monkeypatch.setattr(worker, "_propose_crashed_state", propose_crashed)
    monkeypatch.setattr(worker, "_emit_flow_run_submitted_event", lambda configuration: None)
    status = Status()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = anyio.run(lambda: worker._submit_run_and_capture_errors(flow_run, task_status=status))
    assert not isinstance(result, Exception) and result.status_code == 1
    assert len(status.calls) == 1 and isinstance(status.calls[0], UnknownRegionError)
    assert [s.message for s in prefect.set_states] == [result.reason]  # the worker's Crashed came first ...
    assert len(proposed) == 1  # ... then the base worker's proposal for status 1, which a real server aborts
    assert "Failed to submit flow run 'gentle-otter' to infrastructure: UnknownRegionError" in records.text(logging.ERROR)
    assert "Infrastructure returned without reporting" not in records.text()
    _no_traceback(records)


def test_a_direct_call_without_task_status_still_raises(moto_url: str) -> None:  # noqa: F811
    flow_run = make_flow_run()
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}), pytest.raises(UnknownRegionError):
        anyio.run(lambda: _worker(FakePrefect(flow_run), moto_clients(moto_url)).run(flow_run, _conf(flow_run, region="eu-nort-1")))


# L1: the secret in the worker's console ----------------------------------------------------------

def test_the_secret_arn_is_logged_so_the_console_cannot_turn_it_into_an_emoji(aws: AwsClients, moto_url: str, records: Records) -> None:  # noqa: F811
    flow_run = make_flow_run(state=Running())
    prefect = FakePrefect(flow_run)
    prefect.script = [Completed()]
    with temporary_settings({PREFECT_API_URL: API, PREFECT_LOGGING_TO_API_ENABLED: False}):
        anyio.run(lambda: _worker(prefect, moto_clients(moto_url)).run(flow_run, _conf(flow_run, api_key_secret=SECRET_ARN)))
    [record] = [r for r in records.records if "PREFECT_API_KEY is read on the instance" in r.getMessage()]
    console = io.StringIO()
    PrefectConsoleHandler(stream=console).emit(record)  # what `prefect worker start` prints
    shown = console.getvalue()
    assert "read on the instance from care/prefect-api-key-zPgfLX (Secrets Manager secret in eu-north-1, account 123456789012)" in shown, shown
    assert "\u3299" not in shown and ":secret:" not in record.getMessage()
