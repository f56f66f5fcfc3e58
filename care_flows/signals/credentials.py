"""Provider credentials: :class:`~pydantic.SecretStr` from arguments or the environment.

A credential is read once, at construction, and wrapped in ``SecretStr`` so that ``repr``,
logs and error messages show ``**********``. Each provider unwraps it in exactly one method
(where it builds the request's auth header). A missing credential is a
:class:`~care_flows.errors.ProviderAuthError` at start-up that names the variable to set.

>>> resolve_secret("s3cr3t", env_var="X_TOKEN", provider="demo", argument="api_token")
SecretStr('**********')
>>> resolve_secret(None, env_var="CARE_SURELY_UNSET_TOKEN", provider="demo", argument="api_token")
Traceback (most recent call last):
...
care_flows.errors.ProviderAuthError: demo is not configured: set the environment variable CARE_SURELY_UNSET_TOKEN (from Python you may pass api_token=... instead)
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from care_flows.errors import ProviderAuthError

__all__ = ["resolve_secret", "ENV_VARS"]

ENV_VARS = {
    "electricitymaps": ("ELECTRICITYMAPS_API_TOKEN",),
    "watttime": ("WATTTIME_USERNAME", "WATTTIME_PASSWORD"),
    "gb": (),
}
"""Environment variables each provider reads (the GB Carbon Intensity API needs no key)."""


def resolve_secret(value: str | SecretStr | None, *, env_var: str, provider: str, argument: str) -> SecretStr:
    """``value`` (or ``$env_var``) as a SecretStr; ProviderAuthError naming ``env_var`` if neither is set."""
    if isinstance(value, SecretStr):
        secret = value
    elif value:
        secret = SecretStr(str(value))
    else:
        secret = SecretStr(os.environ.get(env_var, ""))
    if len(secret) == 0:  # length check only: the value is unwrapped by the provider, nowhere else
        raise ProviderAuthError(
            f"{provider} is not configured: set the environment variable {env_var} (from Python you may pass {argument}=... instead)",
            source=provider,
        )
    return secret
