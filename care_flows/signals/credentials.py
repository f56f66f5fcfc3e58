"""Provider credentials: :class:`~pydantic.SecretStr` from arguments or the environment.

A credential is read once, at construction, checked and wrapped in ``SecretStr`` so that ``repr``,
logs and error messages show ``**********``. Each provider unwraps it to send it in exactly one
method (where it builds the request's auth header). A missing credential is a
:class:`~care_flows.errors.ProviderAuthError` at start-up that names the variable to set.

>>> resolve_secret("s3cr3t", env_var="X_TOKEN", provider="demo", argument="api_token")
SecretStr('**********')
>>> resolve_secret(None, env_var="CARE_SURELY_UNSET_TOKEN", provider="demo", argument="api_token")
Traceback (most recent call last):
...
care_flows.errors.ProviderAuthError: demo is not configured: set the environment variable CARE_SURELY_UNSET_TOKEN (from Python you may pass api_token=... instead)

Line breaks around a value (what a secret file or ``echo`` leaves) are dropped, spaces are kept (a
password may hold them); a line break, control or non-Latin-1 character left inside it cannot
travel in an HTTP header, and is a one-line error naming where the value came from, never the value:

>>> resolve_secret("s3cr3t\\n", env_var="X_TOKEN", provider="demo", argument="api_token").get_secret_value()
's3cr3t'
>>> resolve_secret("s3\\u2019cr3t", env_var="X_TOKEN", provider="demo", argument="api_token")
Traceback (most recent call last):
...
care_flows.errors.ProviderAuthError: demo: api_token holds a line break, a control character or a non-Latin-1 character (such as a typographic quote), which HTTP cannot send; copy the credential again
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from care_flows.errors import ProviderAuthError

__all__ = ["resolve_secret", "credentials_hint", "ENV_VARS"]

ENV_VARS = {
    "electricitymaps": ("ELECTRICITYMAPS_API_TOKEN",),
    "watttime": ("WATTTIME_USERNAME", "WATTTIME_PASSWORD"),
    "gb": (),
}
"""Environment variables each provider reads (the GB Carbon Intensity API needs no key)."""

_BLOCKS = {"electricitymaps": "ElectricityMapsCredentials", "watttime": "WattTimeCredentials"}


def credentials_hint(provider: str) -> str:
    """Where ``provider``'s credentials are set, for an error that they were refused (review 46b L2).

    >>> credentials_hint("watttime")
    'the credentials in WATTTIME_USERNAME/WATTTIME_PASSWORD or the WattTimeCredentials block'
    >>> credentials_hint("gb")
    'the gb credentials'
    """
    names = "/".join(ENV_VARS.get(provider, ()))
    if not names:
        return f"the {provider} credentials"
    return f"the credentials in {names}" + (f" or the {_BLOCKS[provider]} block" if provider in _BLOCKS else "")


def resolve_secret(value: str | SecretStr | None, *, env_var: str, provider: str, argument: str) -> SecretStr:
    """``value`` (or ``$env_var``) as a SecretStr; ProviderAuthError naming ``env_var`` if neither is set."""
    if isinstance(value, SecretStr):
        secret, origin = value, argument
    elif value:
        secret, origin = SecretStr(str(value)), argument
    else:
        secret, origin = SecretStr(os.environ.get(env_var, "")), f"the environment variable {env_var}"
    raw = secret.get_secret_value()  # checked here, not kept: providers unwrap it where they send it
    kept = raw.strip("\r\n")  # the line break a secret file or echo leaves; a space may be part of a password
    if kept != raw:
        secret = SecretStr(kept)
    if raw and not kept.strip():
        raise ProviderAuthError(f"{provider}: {origin} is blank; give the credential itself", source=provider)
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or ord(c) > 255 for c in kept):
        raise ProviderAuthError(
            f"{provider}: {origin} holds a line break, a control character or a non-Latin-1 character (such as a typographic quote), "
            "which HTTP cannot send; copy the credential again",
            source=provider,
        )
    if len(secret) == 0:  # length check only: the value is unwrapped by the provider, nowhere else
        raise ProviderAuthError(
            f"{provider} is not configured: set the environment variable {env_var} (from Python you may pass {argument}=... instead)",
            source=provider,
        )
    return secret
