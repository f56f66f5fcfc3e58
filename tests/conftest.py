"""Shared test fixtures. Network traffic in tests goes only to 127.0.0.0/8."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# No test may reach a real carbon API or AWS: providers are pointed at loopback servers per test.
for _var in ("ELECTRICITYMAPS_API_TOKEN", "WATTTIME_USERNAME", "WATTTIME_PASSWORD", "AWS_PROFILE"):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-north-1")
# This process's own temporary folder (the usage history below, the CA file), removed when it exits: a test run
# leaves nothing in /tmp (pytest's tmp_path folders are pytest's, kept for its usual three runs).
_SESSION_TMP = tempfile.mkdtemp(prefix="care-tests-")
atexit.register(shutil.rmtree, _SESSION_TMP, ignore_errors=True)
# Usage histories (learned sizing) never come from or go to ~/.cache: processes started by the
# session (servers, workers) write to a session folder, and every test gets a fresh one below.
os.environ["CARE_USAGE_DIR"] = tempfile.mkdtemp(prefix="usage-", dir=_SESSION_TMP)
os.environ.pop("CARE_USAGE_STORE", None)  # a developer's s3:// history must not receive test runs


def _one_ca_file() -> str:
    """A CA file holding one certificate (the first of certifi's bundle).

    Every Prefect client loads ``PREFECT_API_SSL_CERT_FILE`` (default: certifi's ~150 certificates)
    into a new SSL context when it is created, https or not: 50-100 ms here, and the suite creates
    thousands of clients, all for http://127.0.0.1. No test uses TLS (``_loopback_only``)."""
    import certifi

    with open(certifi.where(), encoding="utf-8") as bundle:
        pem = bundle.read()
    end = "-----END CERTIFICATE-----"
    path = os.path.join(_SESSION_TMP, "one-ca.pem")
    with open(path, "w", encoding="ascii") as f:
        f.write(pem[pem.index("-----BEGIN CERTIFICATE-----"): pem.index(end) + len(end)] + "\n")
    return path


os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", _one_ca_file())


@pytest.fixture(autouse=True)
def _fresh_usage_history(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test starts with an empty usage history, so learned sizing never leaks between tests."""
    monkeypatch.setenv("CARE_USAGE_DIR", str(tmp_path_factory.mktemp("usage")))


@pytest.fixture(autouse=True)
def _api_logs_sent_before_the_next_test() -> Iterator[None]:
    """Prefect sends logs to its API from a background worker (one per API URL), in batches: a
    test that ran a flow against an API that is gone by then would have the worker's "--- Error
    logging to API ---" written to stderr during a later test (and fail one that checks stderr is
    one line, as it did in CI with tests spread over two workers). Send or fail them here."""
    yield
    handlers = sys.modules.get("prefect.logging.handlers")
    if handlers is not None and handlers.APILogWorker._instances:
        handlers.APILogWorker.drain_all(timeout=10, at_exit=False)


@pytest.fixture(autouse=True)
def _closed_provider_breaker() -> Iterator[None]:
    """Each test starts with every provider's circuit breaker closed (a failing server in one test
    must not make a later test on the same port fail fast)."""
    from care_flows.signals.breaker import BREAKER

    BREAKER.reset()
    yield
    BREAKER.reset()


@pytest.fixture(autouse=True)
def _short_lease_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller taking its lease waits ``LEASE_SETTLE_S`` (0.5 s) before reading it back; the
    ~60 controllers the tests start in-process wait 10 ms (tests of the race set their own)."""
    from care_flows.orchestration import controller

    monkeypatch.setattr(controller, "LEASE_SETTLE_S", 0.01)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any TCP connection that is not to the loopback range."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address):  # type: ignore[no-untyped-def]
        if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                raise ConnectionRefusedError(f"test tried to reach {host}: tests may only use 127.0.0.0/8")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API + database for the whole session (heartbeats off, private storage)."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = str(tmp_path_factory.mktemp("results"))
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False, PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=180):  # 2 shared cores: startup took up to 57 s
            yield

