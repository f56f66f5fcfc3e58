"""An injectable clock: every "now" in orchestration goes through :func:`now`.

>>> from care_flows.orchestration.clock import fixed_clock
>>> fixed_clock("2026-01-01T00:00:00Z")().isoformat()
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from care_flows.timeutil import parse_time, utcnow

__all__ = ["Clock", "system_clock", "fixed_clock"]

Clock = Callable[[], pd.Timestamp]
"""A zero-argument callable returning the current UTC time."""


def system_clock() -> pd.Timestamp:
    """The wall clock, UTC."""
    return utcnow()


def fixed_clock(at: str | pd.Timestamp) -> Clock:
    """A clock frozen at ``at`` (for tests and replays)."""
    ts = parse_time(at)
    return lambda: ts
