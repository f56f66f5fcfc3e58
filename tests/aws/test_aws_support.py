"""Shared helpers for the AWS tests (no tests here): a moto server over HTTP, fault injection,
a fake Prefect client. Imported by the other tests/aws/test_aws_*.py files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from care_flows.aws.clients import AwsClients

PLANTED_SECRET = "PLANTED-s3cr3t-9f2b7c"  # put in every credential; must never reach user data
_SERVER: dict[str, Any] = {}
_SESSION: dict[str, Any] = {}


def shared_session() -> Any:
    """One boto3 session for all tests (loading service models once keeps tests fast)."""
    if "s" not in _SESSION:
        import boto3

        _SESSION["s"] = boto3.Session(aws_access_key_id="testing", aws_secret_access_key=PLANTED_SECRET, region_name="eu-north-1")
    return _SESSION["s"]


def moto_clients(url: str, **kwargs: Any) -> AwsClients:
    return AwsClients(shared_session, endpoint_url=url, **kwargs)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> str:
    """Start (once per process) ``moto_server`` on a free loopback port; returns its URL."""
    if "url" in _SERVER:
        return _SERVER["url"]
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"}
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:  # pragma: no cover
        proc.kill()
        raise RuntimeError("moto_server did not start")
    _SERVER.update(url=url, pid=proc.pid, proc=proc)
    return url


def stop_moto() -> None:
    """Stop the moto server by its PID (idempotent)."""
    proc = _SERVER.pop("proc", None)
    pid = _SERVER.pop("pid", None)
    _SERVER.pop("url", None)
    if proc is not None and pid is not None:
        os.kill(pid, signal.SIGINT)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # pragma: no cover
            os.kill(pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def moto_url() -> Any:
    url = start_moto()
    yield url
    stop_moto()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """Fresh moto state and clients pointed at it (credentials carry the planted secret)."""
    requests.post(moto_url + "/moto-api/reset", timeout=120)  # slower with every region set up: 3.8 s idle, 7.8 s loaded (review 47b H2)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET)
    return moto_clients(moto_url)


def care_instances(clients: AwsClients, region: str, states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
    """Instances with a care:flow-run-id tag in ``states``."""
    resp = clients.ec2(region).describe_instances(
        Filters=[{"Name": "tag-key", "Values": ["care:flow-run-id"]}, {"Name": "instance-state-name", "Values": list(states)}]
    )
    return [i for r in resp["Reservations"] for i in r["Instances"]]


def client_error(code: str, operation: str = "RunInstances", message: str = "injected") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


class FaultyClient:
    """Wraps a real (moto) client; ``plan(operation, region, kwargs)`` returns an error code to raise or None."""

    def __init__(self, inner: Any, region: str, plan: Callable[[str, str, dict[str, Any]], str | None]) -> None:
        self._inner, self._region, self._plan = inner, region, plan
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_") or name in ("get_paginator", "meta", "exceptions", "can_paginate"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            code = self._plan(name, self._region, kwargs)
            if code:
                raise client_error(code, name)
            return attr(*args, **kwargs)

        return call


def faulty_clients(moto_url: str, plan: Callable[[str, str, dict[str, Any]], str | None]) -> AwsClients:
    return moto_clients(moto_url, wrap=lambda service, region, client: FaultyClient(client, region, plan) if service == "ec2" else client)


class FakePrefect:
    """Async stand-in for the Prefect client: a flow run whose state a test drives."""

    def __init__(self, flow_run: Any) -> None:
        self.flow_run = flow_run
        self.set_states: list[Any] = []
        self.reads = 0
        self.script: list[Any] = []  # states to switch to on successive reads

    async def read_flow_run(self, flow_run_id: Any) -> Any:
        self.reads += 1
        if self.script:
            self.flow_run = self.flow_run.model_copy(update={"state": self.script.pop(0)})
        return self.flow_run

    async def set_flow_run_state(self, flow_run_id: Any, state: Any, force: bool = False) -> Any:
        self.set_states.append(state)
        self.flow_run = self.flow_run.model_copy(update={"state": state})
        return state


def make_flow_run(name: str = "gentle-otter", state: Any = None) -> Any:
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Pending

    return FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name=name, state=state or Pending())


async def _no_wait(_s: float) -> None:
    import anyio

    await anyio.sleep(0)


def fast_worker(clients: AwsClients, prefect: Any) -> Any:
    """A care-ec2 worker on ``clients`` and a (fake) Prefect client that never sleeps between polls."""
    from care_flows.aws.worker import CareEC2Worker

    w = CareEC2Worker(work_pool_name="care-eu")
    w.clients_factory = lambda conf: clients
    w.prefect_client = prefect
    w.async_sleep = _no_wait
    w.sync_sleep = lambda s: None
    return w


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No credential source botocore could find: env, shared files, instance metadata."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
