"""A loopback HTTP server replaying recorded provider responses (for tests/signals only)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Reply:
    """One scripted answer: status, body (bytes, dict/list -> JSON, or fixture file name), headers, delay."""

    def __init__(self, status: int = 200, body=b"{}", headers: dict | None = None, delay_s: float = 0.0) -> None:
        if isinstance(body, str) and body.endswith(".json"):
            body = fixture_body(body)
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.status, self.body, self.headers, self.delay_s = status, body, dict(headers or {}), delay_s


class FakeProvider:
    """Routes: path -> list of Reply (consumed in order; the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                with outer.lock:
                    outer.requests.append({"path": parts.path, "query": parse_qs(parts.query), "headers": dict(self.headers)})
                    queue = outer.routes.get(parts.path)
                    reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Reply(404, {"error": "no route"})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    reply = staticmethod(Reply)

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r["path"] == path)


@pytest.fixture
def provider_server():
    fake = FakeProvider()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


class Sleeps(list):
    """An injectable sleep that records the requested delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def no_sleep() -> Sleeps:
    return Sleeps()


class Clock:
    """An injectable clock (``clock.now`` is what it returns); ``advance(seconds)`` moves it."""

    def __init__(self, t: str = "2024-05-01T10:00Z") -> None:
        import pandas as pd

        self.now = pd.Timestamp(t)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        import pandas as pd

        self.now += pd.Timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _fresh_breaker():
    """Each test starts with the process-wide circuit breaker closed (and leaves it so), and no cache
    folder said to be unusable yet."""
    from care_flows.signals.breaker import BREAKER
    from care_flows.signals.cache import _UNUSABLE_WARNED

    BREAKER.reset()
    _UNUSABLE_WARNED.clear()
    yield
    BREAKER.reset()
    _UNUSABLE_WARNED.clear()
