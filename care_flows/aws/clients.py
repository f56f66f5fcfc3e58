"""One place that makes boto3 clients for CaRE's AWS code.

Every AWS call CaRE makes goes through an :class:`AwsClients`: it builds one client per
(service, region) from a boto3 session (a prefect-aws ``AwsCredentials`` block, or the default
credential chain), points it at ``endpoint_url`` when one is set (moto, LocalStack), turns
botocore's own retries off (CaRE backs off itself, see :mod:`care_flows.aws.launch`), and lets
tests wrap clients (fault injection) or observe calls (the IAM policy check).

>>> clients = AwsClients(endpoint_url="http://127.0.0.1:5000")
>>> clients.endpoint_url
'http://127.0.0.1:5000'
>>> check_endpoint_url("notaurl", name="--endpoint-url")
Traceback (most recent call last):
...
care_flows.errors.ConfigError: --endpoint-url 'notaurl' is not an http(s) URL with a host; give http(s)://host[:port], e.g. http://127.0.0.1:5000 for moto, or leave it out for AWS
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from care_flows.errors import ConfigError

__all__ = ["AwsClients", "CallObserver", "ClientWrapper", "add_call_observer", "remove_call_observer", "check_endpoint_url", "check_region",
           "aws_regions"]

CallObserver = Callable[[str, str], None]
"""Called as ``observer(service, operation)`` (e.g. ``("ec2", "RunInstances")``) before each call."""

ClientWrapper = Callable[[str, str, Any], Any]
"""Called as ``wrap(service, region, client)``; returns the client to use (e.g. a fault injector)."""

_OBSERVERS: list[CallObserver] = []


def add_call_observer(observer: CallObserver) -> None:
    """Observe every AWS operation made through any :class:`AwsClients` (used by tests)."""
    _OBSERVERS.append(observer)


def remove_call_observer(observer: CallObserver) -> None:
    """Stop observing (no error if it was not registered)."""
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


def check_endpoint_url(url: str | None, *, name: str = "endpoint_url") -> str | None:
    """``url`` if it is an ``http``/``https`` URL with a host (``None``/empty means AWS itself), else a :class:`ConfigError`.

    botocore only says ``Invalid endpoint`` when it builds a client; this names the setting (``name``).
    """
    if url is None or not url.strip():
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} {url!r} is not an http(s) URL with a host; give http(s)://host[:port], e.g. http://127.0.0.1:5000 for moto, or leave it out for AWS")
    return url.strip()


def check_region(region: str, *, name: str = "--region") -> str:
    """``region`` if CaRE's registry knows it, or botocore's bundled endpoint data lists it as a real
    EC2 region (a worker may launch outside the registry); otherwise the registry's one-line error
    naming the setting (``name``). No network.

    >>> check_region("eu-north-1"), check_region("ap-southeast-1")
    ('eu-north-1', 'ap-southeast-1')
    >>> check_region("eu-moon-1")
    Traceback (most recent call last):
    ...
    care_flows.errors.UnknownRegionError: --region: unknown region 'eu-moon-1'; known regions: ...
    >>> check_region("eu-north-1a")
    Traceback (most recent call last):
    ...
    care_flows.errors.UnknownRegionError: --region: 'eu-north-1a' is an availability zone of eu-north-1, not a region; give eu-north-1 (a subnet in that zone pins the instance to it)
    """
    import re

    from care_flows.errors import UnknownRegionError
    from care_flows.regions import region_info

    text = str(region)
    if text != text.strip():  # accepted by the registry, refused by boto3 later with no setting named
        raise UnknownRegionError(f"{name}: region {text!r} has spaces around it; give {text.strip()}")
    try:
        region_info(region)
        return region
    except UnknownRegionError as exc:
        if region in aws_regions():
            return region
        zone = re.fullmatch(r"([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]", text)
        if zone and zone.group(1) in aws_regions():
            raise UnknownRegionError(f"{name}: {text!r} is an availability zone of {zone.group(1)}, not a region; give {zone.group(1)} "
                                     "(a subnet in that zone pins the instance to it)") from None
        raise UnknownRegionError(f"{name}: {exc} (or any other AWS region, e.g. ap-southeast-1)") from None


def aws_regions() -> frozenset[str]:
    """Every EC2 region botocore's bundled endpoint data knows, in every partition (no network; read once)."""
    from care_flows.regions import _aws_regions

    return _aws_regions()


def _notify(event_name: str = "", **_: Any) -> None:
    # event_name is "before-call.<service>.<Operation>"
    parts = event_name.split(".")
    if len(parts) >= 3:
        for observer in list(_OBSERVERS):
            observer(parts[1], parts[2])


class AwsClients:
    """A cache of boto3 clients, one per (service, region).

    Args:
        session_factory: returns a ``boto3.Session`` (default: ``boto3.Session()``, the default
            credential chain). :meth:`from_credentials` uses a prefect-aws ``AwsCredentials`` block.
        endpoint_url: send every call to this URL (moto, LocalStack); ``None`` means AWS.
        wrap: optional :data:`ClientWrapper` applied to each new client.
        max_attempts: botocore attempts per call, the first one included (1 = no hidden retries;
            CaRE retries itself). Passed as ``total_max_attempts``: botocore reads a ``max_attempts``
            key in ``Config(retries=...)`` as *retries* and adds one (``botocore/args.py``
            ``_compute_retry_max_attempts``), so ``{"max_attempts": 1}`` made two attempts.
        client_params: further ``session.client(...)`` arguments, e.g. ``verify`` (a CA bundle
            path, or False), ``use_ssl``; a botocore ``Config`` under ``config`` (proxies, signature
            version...) is merged under CaRE's own retry and timeout settings.
        read_timeout_s: botocore's read timeout (seconds without a byte from an open connection);
            the usage store uses 10 s, so an endpoint that accepts and then stalls costs it at most
            ``max_attempts`` x 10 s per call (review 46e M2).
    """

    def __init__(
        self,
        session_factory: Callable[[], Any] | None = None,
        *,
        endpoint_url: str | None = None,
        wrap: ClientWrapper | None = None,
        max_attempts: int = 1,
        client_params: dict[str, Any] | None = None,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._session_factory = session_factory
        self._read_timeout_s = read_timeout_s
        self._client_params = dict(client_params or {})
        self.endpoint_url = check_endpoint_url(endpoint_url)
        self._wrap = wrap
        self._max_attempts = max_attempts
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_credentials(cls, credentials: Any = None, **kwargs: Any) -> "AwsClients":
        """Clients from a prefect-aws ``AwsCredentials`` block: its session, and its client parameters
        as prefect-aws applies them (``AwsClientParameters.get_params_override``): ``endpoint_url``,
        ``verify`` / ``verify_cert_path`` (a CA bundle behind a TLS-inspecting proxy), ``use_ssl``,
        ``api_version`` and ``config`` (proxies; CaRE's retries and timeouts win). Before, only
        ``endpoint_url`` was used (review 43b L1)."""
        if credentials is None:
            return cls(**kwargs)
        params = getattr(credentials, "aws_client_parameters", None)
        override = dict(params.get_params_override()) if params is not None and hasattr(params, "get_params_override") else {}
        kwargs.setdefault("endpoint_url", override.pop("endpoint_url", None))
        override.pop("endpoint_url", None)
        kwargs.setdefault("client_params", override)
        return cls(credentials.get_boto3_session, **kwargs)

    def client(self, service: str, region: str) -> Any:
        """The (cached) client for ``service`` in ``region``."""
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = self._session_factory() if self._session_factory else boto3.Session()
                config = Config(retries={"total_max_attempts": max(1, int(self._max_attempts)), "mode": "standard"}, connect_timeout=10, read_timeout=self._read_timeout_s)
                extra = dict(self._client_params)
                given = extra.pop("config", None)
                if given is not None:
                    config = given.merge(config)  # the block's proxies etc.; CaRE's retries and timeouts
                raw = self._session.client(service, region_name=region, endpoint_url=self.endpoint_url, config=config, **extra)
                raw.meta.events.register("before-call.*.*", _notify)
                self._clients[key] = self._wrap(service, region, raw) if self._wrap else raw
            return self._clients[key]

    def ec2(self, region: str) -> Any:
        """The EC2 client of ``region``."""
        return self.client("ec2", region)

    def ssm(self, region: str) -> Any:
        """The SSM client of ``region``."""
        return self.client("ssm", region)
