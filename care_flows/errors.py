"""The one exception hierarchy of CaRE.

Every error CaRE raises on purpose is a :class:`CareError`; its message is one line that names
the bad value and says how to fix it. The CLI turns any ``CareError`` into ``error: <message>``
on stderr and exit code 2, never a traceback.

::

    CareError
    ├── ConfigError (also ValueError)          bad input: policy, arguments, durations, times
    │   ├── UnknownRegionError                 region not in the registry (lists the known ones)
    │   ├── UnknownZoneError                   grid zone not known to a source
    │   └── DeadlineError                      deadline before now / before the job can finish
    ├── DataError (also ValueError)            malformed CSV or payload (gaps, duplicates, NaN...)
    ├── ProviderError                          a carbon-data provider failed
    │   ├── ProviderAuthError                  401/403: credentials missing or rejected
    │   ├── ProviderRateLimitError             429 (``retry_after_s`` when the provider said)
    │   ├── ProviderUnavailableError           5xx, timeout, connection refused
    │   └── ProviderResponseError              a 2xx whose body is not what the API documents
    ├── PlanningError                          no feasible option (reasons attached)
    ├── OrchestrationError                     Prefect-side failures (dispatch, deployment lookup)
    └── AwsError                               EC2 / pricing failures after retries and fallbacks

>>> from care_flows.errors import CareError, UnknownRegionError
>>> issubclass(UnknownRegionError, ValueError) and issubclass(UnknownRegionError, CareError)
True
"""

from __future__ import annotations

__all__ = [
    "CareError",
    "ConfigError",
    "UnknownRegionError",
    "UnknownZoneError",
    "DeadlineError",
    "DataError",
    "NoBaselineDataError",
    "ProviderError",
    "ProviderAuthError",
    "ProviderRateLimitError",
    "ProviderUnavailableError",
    "ProviderResponseError",
    "PlanningError",
    "OrchestrationError",
    "AwsError",
]


class CareError(Exception):
    """Base class of every error CaRE raises on purpose."""


class ConfigError(CareError, ValueError):
    """Bad input or configuration; the message names the value and the fix."""


class UnknownRegionError(ConfigError):
    """A cloud region that the registry does not know."""


class UnknownZoneError(ConfigError):
    """A grid zone that the registry or a source does not know."""


class DeadlineError(ConfigError):
    """A deadline that lies before now, or before an earliest start."""


class DataError(CareError, ValueError):
    """Malformed data: a CSV or payload with gaps, duplicates, bad timestamps or values."""


class NoBaselineDataError(DataError):
    """The home region's zone has no carbon data in the source, so there is no baseline to plan against."""


class ProviderError(CareError):
    """A carbon-intensity provider failed. ``source`` names the provider."""

    def __init__(self, message: str, *, source: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.status = status


class ProviderAuthError(ProviderError):
    """Credentials missing or rejected (HTTP 401/403)."""


class ProviderRateLimitError(ProviderError):
    """Rate limited (HTTP 429); ``retry_after_s`` is the provider's Retry-After, if given."""

    def __init__(self, message: str, *, source: str = "", status: int | None = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, source=source, status=status)
        self.retry_after_s = retry_after_s


class ProviderUnavailableError(ProviderError):
    """Server error, timeout or connection failure; ``retry_after_s`` is a 5xx's Retry-After, if given."""

    def __init__(self, message: str, *, source: str = "", status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, source=source, status=status)
        self.retry_after_s = retry_after_s


class ProviderResponseError(ProviderError):
    """A successful HTTP status whose body is not in the documented format."""


class PlanningError(CareError):
    """No feasible plan; ``reasons`` maps each excluded option to why."""

    def __init__(self, message: str, *, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = dict(reasons or {})


class OrchestrationError(CareError):
    """A Prefect-side operation failed (deployment missing, dispatch refused...)."""


class AwsError(CareError):
    """An AWS operation failed after retries and fallbacks."""
