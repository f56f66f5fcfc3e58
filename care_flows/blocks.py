"""CaRE's Prefect Blocks: the policy, carbon-data credentials and region targets.

Registered with Prefect through the ``prefect.collections`` entry point
(``care_flows.prefect_plugin``) or explicitly with ``prefect block register -m care_flows.blocks``;
``blocks/create_blocks.py`` saves example documents from ``blocks/*.json``.

Credentials are :class:`~pydantic.SecretStr`: they are never unwrapped here, only handed to the
signal provider, which unwraps them in one place (where it builds the request's auth header).

>>> CarePolicyBlock(policy={"home_region": "eu-north-1"}).to_policy().home_region
'eu-north-1'
>>> ElectricityMapsCredentials(api_token="t0ken")
ElectricityMapsCredentials(api_token=SecretStr('**********'), base_url='https://api.electricitymaps.com/v3')
>>> RegionTargets(targets={"eu-north-1": {"work_pool": "care-eu-north-1"}}).for_region("eu-north-1").work_pool
'care-eu-north-1'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, ValidationError, field_validator

from care_flows.errors import ConfigError
from care_flows.policy import CarePolicy, RegionTarget, _error_text, _invalid, load_policy
from care_flows.regions import region_info

__all__ = ["CarePolicyBlock", "ElectricityMapsCredentials", "WattTimeCredentials", "RegionTargets", "BLOCK_TYPES", "load_policy_block", "load_targets_block"]

_LOGO = "https://raw.githubusercontent.com/care-flows/care-flows/main/blocks/care-logo.png"
_DOCS = "https://github.com/care-flows/care-flows/blob/main/docs/PREFECT.md"


def _policy_doc(policy: CarePolicy) -> dict[str, Any]:
    """A JSON-ready policy dict whose durations read back (``"3600s"``, not ``"PT1H"``)."""
    out: dict[str, Any] = {}
    for key, value in policy.model_dump(exclude_defaults=True).items():
        if isinstance(value, timedelta):
            value = f"{value.total_seconds():g}s"
        out[key] = value
    load_policy(out)  # it must read back as the same policy
    return out


class CarePolicyBlock(Block):
    """A CaRE policy stored on the Prefect server, shared by flows and the CaRE controller.

    Use its name in ``@care(policy="BLOCK_NAME")``, ``CARE_POLICY_BLOCK`` or a deployment tag
    ``care-policy:BLOCK_NAME`` (read by ``care controller``). ``.save("green-batch")`` stores it on
    the Prefect server (not run here: it needs one).

    >>> block = CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-north-1"], "deadline_within": "12h"})
    >>> block.to_policy().candidate_regions
    ['eu-south-2', 'eu-north-1']
    """

    _block_type_name = "CaRE Policy"
    _block_type_slug = "care-policy"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    _description = "What a flow cares about (carbon, cost, latency, resources), where it may run and its deadline."
    _code_example = '''
    ```python
    from care_flows.blocks import CarePolicyBlock

    care_policy_block = CarePolicyBlock.load("BLOCK_NAME")
    policy = care_policy_block.to_policy()
    ```
    '''

    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="CarePolicy fields as a JSON object; durations as text such as '2h' (see docs/PREFECT.md).",
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        """Build the block; a bad policy is one :class:`~care_flows.errors.ConfigError` line naming the field.

        >>> CarePolicyBlock(policy={"deadlin_within": "12h"})
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: invalid CaRE policy: unknown field 'deadlin_within'; did you mean 'deadline_within'?
        >>> CarePolicyBlock(policy=CarePolicy(deadline_within="6h")).policy["deadline_within"]   # a CarePolicy, as from_policy
        '21600s'
        """
        try:
            super().__init__(*args, **data)
        except ValidationError as exc:  # the policy's own message (invalid CaRE policy: ...), else the block's field
            raise ConfigError("; ".join(str(e.get("ctx", {}).get("error") or "") or f"invalid CaRE policy block: {_error_text(e, CarePolicyBlock)}"
                                        for e in exc.errors())) from None

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_object(cls, value: Any) -> Any:
        return _policy_doc(value) if isinstance(value, CarePolicy) else value

    @field_validator("policy")
    @classmethod
    def _valid_policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        load_policy(value)  # ConfigError (a ValueError) names the bad field
        return value

    def to_policy(self) -> CarePolicy:
        """The validated :class:`CarePolicy`."""
        return load_policy(self.policy)

    @classmethod
    def from_policy(cls, policy: CarePolicy) -> "CarePolicyBlock":
        """A block holding ``policy`` (only the fields that differ from the defaults)."""
        return cls(policy=_policy_doc(policy))


class ElectricityMapsCredentials(Block):
    """Electricity Maps API token (carbon-intensity history and forecasts)."""

    _block_type_name = "CaRE Electricity Maps Credentials"
    _block_type_slug = "care-electricitymaps-credentials"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    _description = "API token for Electricity Maps, used by CaRE's electricitymaps carbon source."
    _code_example = '''
    ```python
    from care_flows.blocks import ElectricityMapsCredentials

    electricity_maps_credentials = ElectricityMapsCredentials.load("BLOCK_NAME")
    signal = electricity_maps_credentials.get_signal(kind="lifecycle")
    ```
    '''

    api_token: SecretStr = Field(..., description="The Electricity Maps API token (auth-token header).")
    base_url: str = Field("https://api.electricitymaps.com/v3", description="API base URL (change it for a proxy or a test server).")

    def signal_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``get_signal("electricitymaps", ...)``; the token stays a SecretStr."""
        return {"api_token": self.api_token, "base_url": self.base_url}

    def get_signal(self, kind: str = "lifecycle", **options: Any) -> Any:
        """The (cached, fallback-wrapped) Electricity Maps carbon signal."""
        from care_flows.signals import get_signal

        return get_signal("electricitymaps", kind=kind, **{**self.signal_settings(), **options})


class WattTimeCredentials(Block):
    """WattTime account (marginal emissions signal)."""

    _block_type_name = "CaRE WattTime Credentials"
    _block_type_slug = "care-watttime-credentials"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    _description = "WattTime username and password, used by CaRE's watttime (marginal) carbon source."
    _code_example = '''
    ```python
    from care_flows.blocks import WattTimeCredentials

    watttime_credentials = WattTimeCredentials.load("BLOCK_NAME")
    signal = watttime_credentials.get_signal()
    ```
    '''

    username: str = Field(..., description="The WattTime account user name.")
    password: SecretStr = Field(..., description="The WattTime account password.")
    base_url: str = Field("https://api.watttime.org", description="API base URL (change it for a proxy or a test server).")

    def signal_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``get_signal("watttime", ...)``; the password stays a SecretStr."""
        return {"username": self.username, "password": self.password, "base_url": self.base_url}

    def get_signal(self, kind: str = "marginal", **options: Any) -> Any:
        """The (cached, fallback-wrapped) WattTime carbon signal."""
        from care_flows.signals import get_signal

        return get_signal("watttime", kind=kind, **{**self.signal_settings(), **options})


class RegionTargets(Block):
    """Where each region's runs go: a work pool, a deployment and/or job variables.

    >>> RegionTargets(targets={"eu-north-1": {"work_pool": "care-eu-north-1"}}).for_region("eu-north-1").work_pool
    'care-eu-north-1'
    """

    _block_type_name = "CaRE Region Targets"
    _block_type_slug = "care-region-targets"
    _logo_url = _LOGO
    _documentation_url = _DOCS
    _description = "Per-region work pool, deployment and job variables for runs CaRE moves to that region."
    _code_example = '''
    ```python
    from care_flows.blocks import RegionTargets

    region_targets = RegionTargets.load("BLOCK_NAME")
    target = region_targets.for_region("eu-north-1")
    ```
    '''

    targets: dict[str, RegionTarget] = Field(
        default_factory=dict,
        description="AWS region -> target (work_pool, deployment 'flow/deployment', job_variables).",
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        """Build the block; bad input is one :class:`~care_flows.errors.ConfigError` line naming the place.

        >>> RegionTargets(targets={"eu-moon-1": {"work_pool": "x"}})
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: invalid region targets: targets: unknown region 'eu-moon-1'...
        """
        try:
            super().__init__(*args, **data)
        except ValidationError as exc:
            raise _invalid("region targets", exc, RegionTargets) from None

    @field_validator("targets")
    @classmethod
    def _known_regions(cls, value: dict[str, RegionTarget]) -> dict[str, RegionTarget]:
        for region in value:
            region_info(region)
        return value

    def for_region(self, region: str) -> RegionTarget:
        """The target of ``region`` (empty: the deployment's own pool)."""
        return self.targets.get(region) or RegionTarget()


BLOCK_TYPES: tuple[type[Block], ...] = (CarePolicyBlock, ElectricityMapsCredentials, WattTimeCredentials, RegionTargets)
"""Every CaRE block type (for registration and the standard test suite)."""


def _load_named(cls: Any, name: str, *, given_as: str, example: str, field: str) -> Any:
    """``cls.load(name)``; an empty or unknown name is one :class:`ConfigError` line saying how to
    create the document (``Block.load`` raises a bare ``ValueError`` after a 404)."""
    kind = cls.__name__
    if not str(name).strip():
        raise ConfigError(f"the {kind} name is empty; give the name of a saved document, e.g. {example!r}")
    try:
        return cls.load(name)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise ConfigError(
            f"no {kind} named {name!r}; create it ({kind}({field}={{...}}).save({name!r}), or in a checkout of CaRE "
            f"python blocks/create_blocks.py for the examples) or fix {given_as}"
        ) from None
    except RuntimeError as exc:  # Prefect: "Unable to load ... due to failed validation" (a UI edit, another CaRE version)
        if "failed validation" not in str(exc):
            raise
        raise ConfigError(
            f"{kind} {name!r} holds an invalid document ({_invalid_reason(exc)}); fix it in the Prefect UI (Blocks) "
            f"or re-save it ({kind}({field}={{...}}).save({name!r}, overwrite=True)), or fix {given_as}"
        ) from None


def _invalid_reason(exc: BaseException) -> str:
    """The first validation error under Prefect's "failed validation" wrapper, in one line."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        msg = str(first.get("msg", "")).removeprefix("Value error, ").removeprefix("invalid CaRE policy: ")
        where = ".".join(str(p) for p in first.get("loc", ()))
        text = msg if msg.startswith(where) or not where else f"{where}: {msg}"
    else:
        text = str(cause or exc)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "..."


def load_targets_block(name: str, *, given_as: str = "the targets name") -> dict[str, RegionTarget]:
    """The targets in the ``RegionTargets`` document ``name``; a missing document is a :class:`ConfigError`
    naming it and how to create it (as :func:`load_policy_block` does for policies).

    >>> load_targets_block(" ")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: the RegionTargets name is empty; give the name of a saved document, e.g. 'eu'
    """
    return dict(_load_named(RegionTargets, name, given_as=given_as, example="eu", field="targets").targets)


def load_policy_block(name: str, *, given_as: str = "the block name") -> CarePolicy:
    """The policy in the ``CarePolicyBlock`` document ``name``; a missing document is a :class:`ConfigError`.

    ``CarePolicyBlock.load`` raises a bare ``ValueError`` for a name the server does not hold;
    this names the block type and how to create the document instead (``given_as``: where the
    name came from, e.g. ``"--policy-block"``).

    >>> load_policy_block("")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: the CarePolicyBlock name is empty; give the name of a saved document, e.g. 'green-batch'
    """
    return _load_named(CarePolicyBlock, name, given_as=given_as, example="green-batch", field="policy").to_policy()
