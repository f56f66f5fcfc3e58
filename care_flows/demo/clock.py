"""The demo clock: one grid hour of a real 2023 day plays in a few wall-clock seconds.

A :class:`DemoClock` links a wall-clock instant ``wall_t0`` (when the demo's runs are
triggered) to a grid instant ``grid_t0`` (midnight UTC of the replayed day) and plays
``seconds_per_hour`` wall seconds per grid hour. Planning happens in grid time on the real
trace; every time the planner returns is mapped back to wall time, so a Prefect flow run
scheduled for the start of a green window starts when the demo reaches that grid hour.

>>> c = DemoClock(wall_t0="2026-01-01T12:00:00Z", grid_t0="2023-05-21T00:00:00Z", seconds_per_hour=4)
>>> c.to_grid(pd.Timestamp("2026-01-01T12:00:40Z")).isoformat()
'2023-05-21T10:00:00+00:00'
>>> c.to_wall(pd.Timestamp("2023-05-21T14:00Z")).isoformat()
'2026-01-01T12:00:56+00:00'
>>> c.grid_duration(pd.Timedelta(seconds=8))
Timedelta('0 days 02:00:00')
>>> DemoClock.from_json(c.to_json()) == c
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from care_flows.errors import ConfigError
from care_flows.policy import CarePolicy
from care_flows.timeutil import iso, parse_time, utcnow

__all__ = ["DemoClock", "compress_series", "scale_policy", "POLICY_DURATION_FIELDS", "CLOCK_FILE"]

CLOCK_FILE = "clock.json"
"""Name of the clock file inside the demo state folder (``$CARE_DEMO_DIR``)."""


@dataclass(frozen=True)
class DemoClock:
    """Wall time <-> grid time, ``seconds_per_hour`` wall seconds per grid hour."""

    wall_t0: pd.Timestamp
    grid_t0: pd.Timestamp
    seconds_per_hour: float

    def __init__(self, wall_t0: Any, grid_t0: Any, seconds_per_hour: float) -> None:
        if not seconds_per_hour or seconds_per_hour <= 0:
            raise ConfigError(f"seconds_per_hour {seconds_per_hour!r} must be positive, e.g. 4")
        object.__setattr__(self, "wall_t0", parse_time(wall_t0, name="wall_t0"))
        object.__setattr__(self, "grid_t0", parse_time(grid_t0, name="grid_t0"))
        object.__setattr__(self, "seconds_per_hour", float(seconds_per_hour))

    @property
    def speedup(self) -> float:
        """Grid seconds per wall second (900 at 4 s per hour)."""
        return 3600.0 / self.seconds_per_hour

    def to_grid(self, wall: Any) -> pd.Timestamp:
        """The grid instant that wall instant ``wall`` plays."""
        w = parse_time(wall, name="wall")
        return self.grid_t0 + (w - self.wall_t0) * self.speedup

    def to_wall(self, grid: Any) -> pd.Timestamp:
        """The wall instant at which grid instant ``grid`` plays (rounded to the microsecond)."""
        g = parse_time(grid, name="grid")
        return (self.wall_t0 + (g - self.grid_t0) / self.speedup).round("us")

    def grid_duration(self, wall_duration: Any) -> pd.Timedelta:
        """A wall-clock duration expressed in grid time."""
        return pd.Timedelta(wall_duration) * self.speedup

    def wall_duration(self, grid_duration: Any) -> pd.Timedelta:
        """A grid duration expressed in wall-clock time."""
        return (pd.Timedelta(grid_duration) / self.speedup).round("us")

    def grid_now(self) -> pd.Timestamp:
        """The grid instant playing now."""
        return self.to_grid(utcnow())

    def to_json(self) -> str:
        """JSON text (ISO times with +00:00)."""
        return json.dumps({"wall_t0": iso(self.wall_t0), "grid_t0": iso(self.grid_t0), "seconds_per_hour": self.seconds_per_hour})

    @classmethod
    def from_json(cls, text: str) -> "DemoClock":
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(d["wall_t0"], d["grid_t0"], d["seconds_per_hour"])

    def save(self, folder: str | Path) -> Path:
        """Write :data:`CLOCK_FILE` into ``folder`` (atomically)."""
        path = Path(folder) / CLOCK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "DemoClock":
        """Read :data:`CLOCK_FILE` from ``folder``."""
        path = Path(folder) / CLOCK_FILE
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} not found: the demo clock starts when `care demo` triggers the runs") from None


def compress_series(series: pd.Series, clock: DemoClock) -> pd.Series:
    """``series`` (grid-time index) re-indexed to the wall instants that play it (attrs kept).

    >>> c = DemoClock("2026-01-01T12:00:00Z", "2023-05-21T00:00:00Z", 4)
    >>> s = pd.Series([1.0, 2.0], index=pd.date_range("2023-05-21", periods=2, freq="h", tz="UTC"))
    >>> [t.isoformat() for t in compress_series(s, c).index]
    ['2026-01-01T12:00:00+00:00', '2026-01-01T12:00:04+00:00']
    """
    idx = pd.DatetimeIndex([clock.to_wall(t) for t in series.index])
    out = pd.Series(series.to_numpy(), index=idx, name=series.name)
    out.attrs.update(series.attrs)
    return out


POLICY_DURATION_FIELDS = tuple(
    name for name, f in CarePolicy.model_fields.items() if "timedelta" in str(f.annotation)
)
"""The policy's durations (what a compressed clock scales): deadline_within, expected_duration, ..."""


def scale_policy(policy: CarePolicy, factor: float) -> CarePolicy:
    """``policy`` with every duration multiplied by ``factor`` (grid time <-> demo wall time).

    >>> p = scale_policy(CarePolicy(expected_duration="1h", deadline_within="8h"), 30 / 3600)
    >>> p.expected_duration.total_seconds(), p.deadline_within.total_seconds(), p.replan_every.total_seconds()
    (30.0, 240.0, 30.0)
    """
    update = {name: pd.Timedelta(value * factor).round("us").to_pytimedelta()
              for name in POLICY_DURATION_FIELDS if (value := getattr(policy, name)) is not None}
    return policy.model_copy(update=update)
