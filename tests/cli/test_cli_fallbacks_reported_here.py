"""``fallbacks_reported_here``: the fallback log is dropped in the block's own context only, so
threads overlapping (a CLI command and the controller, two commands) neither silence nor
un-silence each other, and blocks nest."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from care_flows.cli import fallbacks_reported_here

FALLBACK = logging.getLogger("care_flows.signals.fallback")


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return sorted(r.getMessage() for r in caplog.records if r.name == FALLBACK.name)


@contextmanager
def _threads(*targets: Callable[[], None]) -> Iterator[None]:
    """Run the targets in threads for the block; joined at its end, their failures re-raised."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for t in threads:
            t.join(10)
    assert not errors and not any(t.is_alive() for t in threads), errors


def test_a_thread_outside_the_block_is_still_logged_while_another_is_inside(caplog: pytest.LogCaptureFixture) -> None:
    inside_entered, outside_logged, inside_may_leave = threading.Event(), threading.Event(), threading.Event()

    def inside() -> None:
        with fallbacks_reported_here():
            inside_entered.set()
            FALLBACK.warning("inside before")
            assert outside_logged.wait(10)
            FALLBACK.warning("inside while the other logs")
            assert inside_may_leave.wait(10)

    def outside() -> None:
        assert inside_entered.wait(10)
        FALLBACK.warning("outside while the other is inside")
        outside_logged.set()

    with caplog.at_level(logging.WARNING):
        with _threads(inside, outside):
            assert outside_logged.wait(10)
            FALLBACK.warning("main thread while the other is inside")
            inside_may_leave.set()
        FALLBACK.warning("after")
    assert _said(caplog) == ["after", "main thread while the other is inside", "outside while the other is inside"]


def test_overlapping_blocks_in_two_threads_leave_the_log_on(caplog: pytest.LogCaptureFixture) -> None:
    """A enters, B enters, A leaves (B still inside: still dropped there), B leaves: logged again."""
    a_in, b_in, a_out, b_may_leave = (threading.Event() for _ in range(4))

    def a() -> None:
        with fallbacks_reported_here():
            a_in.set()
            assert b_in.wait(10)
        a_out.set()

    def b() -> None:
        assert a_in.wait(10)
        with fallbacks_reported_here():
            b_in.set()
            assert a_out.wait(10)
            FALLBACK.warning("b inside after a left")
            assert b_may_leave.wait(10)

    caplog.set_level(logging.WARNING)
    with _threads(a, b):
        assert a_out.wait(10)
        FALLBACK.warning("main while b is inside")
        b_may_leave.set()
    FALLBACK.warning("after both")
    assert _said(caplog) == ["after both", "main while b is inside"]


def test_blocks_nest(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        with fallbacks_reported_here():
            with fallbacks_reported_here():
                FALLBACK.warning("nested")
            FALLBACK.warning("outer, after the inner block")
        FALLBACK.warning("outside")
        with pytest.raises(RuntimeError):
            with fallbacks_reported_here():
                raise RuntimeError("a command failing inside")
        FALLBACK.warning("after a failed block")
    assert _said(caplog) == ["after a failed block", "outside"]
