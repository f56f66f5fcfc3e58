"""How CaRE reacts to each EC2 error: the errors mapping.

Each ``botocore`` ``ClientError`` code falls in one class:

===================  =====================================================  =======================
class                codes                                                   reaction
===================  =====================================================  =======================
``capacity``         InsufficientInstanceCapacity, InsufficientCapacity,     try the next option
                     InsufficientHostCapacity, InsufficientFreeAddresses-    (subnet, type, region)
                     InSubnet, InstanceLimitExceeded, VcpuLimitExceeded,
                     MaxSpotInstanceCountExceeded
``unsupported``      Unsupported, InvalidInstanceType*, UnsupportedOperation try the next option
                     (type not offered in that region/zone)
``throttle``         RequestLimitExceeded, Throttling*, the other throttling back off with jitter,
                     and transient codes botocore's standard retry mode      then retry the same
                     retries, InternalError, Unavailable, ServiceUnavailable;
                     any other HTTP 5xx answer (a generic body from a load
                     balancer or proxy gives the bare code "503" etc.);
                     a dropped connection or read timeout
``propagating``      InvalidParameterValue naming the IAM instance profile   back off, retry (IAM is
                     (a just-created profile EC2 cannot see yet)             eventually consistent)
``token``            IdempotentParameterMismatch (the ClientToken was used   retry once with a
                     by a different request)                                 fresh token
``region``           AuthFailure, OptInRequired, PendingVerification (EC2),  skip the region: try
                     UnrecognizedClientException, InvalidClientTokenId       the next region
                     (SSM, STS): a region not enabled for the account (an
                     opt-in region, e.g. eu-south-2) or credentials not
                     valid there
``fatal``            anything else (bad AMI, subnet, key pair, profile,      fail with that message
                     permissions)                                            (in a fallback region:
                                                                             try the next region)
===================  =====================================================  =======================

An ``InvalidParameterValue`` saying the instance type's architecture does not match the AMI's
(an x86_64 ``image_id`` with an arm64 type) is ``unsupported`` for that type: a fallback type of
the AMI's architecture may launch. So is an ``InvalidParameterCombination`` about the type alone
(review 55b L1): "not eligible for Free Tier" (a free-plan account), or ENA support the AMI lacks
but the type requires.

:data:`QUOTA_CODES` (a subset of ``capacity``) are regional account quotas: another zone of the
same region cannot help, so the launch skips to the next type or region.

>>> from botocore.exceptions import ClientError
>>> err = ClientError({"Error": {"Code": "InsufficientInstanceCapacity", "Message": "no"}}, "RunInstances")
>>> classify(err), error_code(err)
('capacity', 'InsufficientInstanceCapacity')
>>> classify(ClientError({"Error": {"Code": "RequestLimitExceeded"}}, "RunInstances"))
'throttle'
>>> classify(ClientError({"Error": {"Code": "503", "Message": "Service Unavailable"}}, "DescribeInstances"))
'throttle'
>>> classify(ClientError({"Error": {"Code": "AuthFailure", "Message": "AWS was not able to validate the provided access credentials"}}, "RunInstances"))
'region'
>>> classify(ClientError({"Error": {"Code": "AuthFailure", "Message": "Not authorized for images: [ami-0123456789abcdef0]"}}, "RunInstances"))
'fatal'
>>> classify(ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "The architecture 'arm64' of the specified instance type "
...                        "does not match the architecture 'x86_64' of the specified AMI."}}, "RunInstances"))
'unsupported'
>>> classify(ClientError({"Error": {"Code": "InvalidParameterCombination", "Message": "The specified instance type is not "
...                        "eligible for Free Tier. For a list of Free Tier instance types, run 'describe-instance-types'."}}, "RunInstances"))
'unsupported'
>>> classify(ValueError("x"))
'fatal'
>>> backoff_s(3, base_s=1.0, cap_s=20.0, rng=__import__("random").Random(0)) <= 8.0
True
"""

from __future__ import annotations

import random
import re
from typing import Literal

__all__ = ["FaultClass", "CAPACITY_CODES", "QUOTA_CODES", "UNSUPPORTED_CODES", "THROTTLE_CODES", "REGION_CODES", "classify", "error_code", "error_message",
           "encoded_authorization_message", "is_unreachable", "is_iam_propagation", "backoff_s", "is_network_error", "is_server_error",
           "log_encoded_authorization_message", "is_connect_error", "CONNECT_RETRIES", "CONNECT_ERRORS", "OPT_IN_REGIONS"]

FaultClass = Literal["capacity", "unsupported", "throttle", "propagating", "token", "region", "fatal"]

REGION_CODES = frozenset({"AuthFailure", "OptInRequired", "PendingVerification", "UnrecognizedClientException", "InvalidClientTokenId"})
"""Answers of a region the account cannot use: not enabled (opt-in regions launched after March
2019, such as eu-south-2, are off until enabled; EC2 answers AuthFailure there, SSM
UnrecognizedClientException, STS InvalidClientTokenId), still being enabled (PendingVerification),
or credentials not valid in it. Another region may work."""
_ARCH_MISMATCH = re.compile(r"architecture .* does not match the architecture", re.IGNORECASE)
_TYPE_COMBINATION = re.compile(r"instance type is not eligible for Free Tier|Elastic Network Adapter \(ENA\) is required for", re.IGNORECASE)
_NOT_VALIDATED = re.compile(r"not able to validate the provided access credentials", re.IGNORECASE)

OPT_IN_REGIONS = frozenset({
    "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6",
    "ap-southeast-7", "ca-west-1", "eu-central-2", "eu-south-1", "eu-south-2", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1",
})
"""Regions launched after 20 March 2019, off in an account until enabled (AWS Account Management,
"Specify which AWS Regions your account can use"); every other region is always enabled, so an
AuthFailure there means the credentials."""

CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientFreeAddressesInSubnet",  # the subnet is full: another subnet (zone) may have room
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
})
QUOTA_CODES = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"})
"""Account quotas per region (EC2 API error codes list): no other zone of the region can help."""
UNSUPPORTED_CODES = frozenset({"Unsupported", "UnsupportedOperation", "InvalidInstanceType", "InvalidInstanceType.NotFound"})
THROTTLE_CODES = frozenset({
    # throttling codes of botocore's standard retry mode (botocore/retries/standard.py)
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    # transient codes of the same mode, and the EC2 server errors (HTTP 5xx)
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "Unavailable",
    "InternalError",
    "InternalFailure",
})
_TRANSIENT_EXCEPTIONS = ("ConnectionClosedError", "ReadTimeoutError")
"""botocore exceptions for a request that reached AWS but got no answer; RunInstances carries a
ClientToken, so sending it again cannot launch a second instance."""
_ENCODED = re.compile(r"\s*Encoded authorization failure message:\s*(\S+)", re.IGNORECASE)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    """The AWS error message (one line), or ``str(exc)``.

    Two botocore errors get a shorter line: an unreachable endpoint names the URL and the reason,
    and an answer that is not an AWS response (an HTML error page from a proxy or a broken mock)
    is summarised by its title instead of dumping the body.

    >>> from botocore.parsers import ResponseParserError
    >>> error_message(ResponseParserError("Unable to parse response (syntax error), invalid XML received: "
    ...     "b'<!doctype html>\\n<title>500 Internal Server Error</title>\\n<h1>Internal Server Error</h1>'"))
    "the endpoint's answer is not an AWS response ('500 Internal Server Error'); check the endpoint URL"
    """
    unreachable = _unreachable(exc)
    if unreachable:
        return unreachable
    if type(exc).__name__ == "ResponseParserError":
        return f"the endpoint's answer is not an AWS response ({_body_summary(str(exc))!r}); check the endpoint URL"
    response = getattr(exc, "response", None)
    text = str(response.get("Error", {}).get("Message", "")) if isinstance(response, dict) else ""
    text = " ".join((text or str(exc)).split())
    encoded = _ENCODED.search(text)
    if encoded:
        text = (text[: encoded.start()].rstrip() + f" (the reason is in an encoded authorization message of {len(encoded.group(1))} "
                "characters; CaRE logs it once: decode it with aws sts decode-authorization-message --encoded-message <it>)")
    return text


def encoded_authorization_message(exc: BaseException) -> str:
    """The encoded authorization failure message of an ``UnauthorizedOperation``, or ``""``.

    EC2 appends it to the error message ("You are not authorized to perform this operation.
    Encoded authorization failure message: ..."); ``sts:DecodeAuthorizationMessage`` decodes it.

    >>> from botocore.exceptions import ClientError
    >>> err = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform this "
    ...     "operation. Encoded authorization failure message: AbC123-_x"}}, "RunInstances")
    >>> encoded_authorization_message(err)
    'AbC123-_x'
    >>> error_message(err)
    'You are not authorized to perform this operation. (the reason is in an encoded authorization message of 9 characters; ...)'
    """
    response = getattr(exc, "response", None)
    text = str(response.get("Error", {}).get("Message", "")) if isinstance(response, dict) else ""
    found = _ENCODED.search(text)
    return found.group(1) if found else ""


CONNECT_RETRIES = 2
"""Retries of a call whose connection was never made (DNS failure, refused, connect timeout): the
request did not reach AWS, so sending it again is safe; a few, so that a wrong endpoint still fails
in seconds (review 43b L2)."""


CONNECT_ERRORS = frozenset({"EndpointConnectionError", "ConnectTimeoutError"})
"""botocore's errors (by class name) of a request that never reached AWS; an ``Attempt`` keeps the name."""


def is_connect_error(exc: BaseException) -> bool:
    """A request that never reached AWS: botocore's ``EndpointConnectionError`` (DNS, refused) or
    ``ConnectTimeoutError``.

    >>> from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
    >>> [is_connect_error(e) for e in (EndpointConnectionError(endpoint_url="https://x/"), ConnectTimeoutError(endpoint_url="https://x/"),
    ...                                ReadTimeoutError(endpoint_url="https://x/"), ValueError("x"))]
    [True, True, False, False]
    """
    return any(cls.__name__ in CONNECT_ERRORS for cls in type(exc).__mro__)


def is_network_error(exc: BaseException) -> bool:
    """A request that got no answer from AWS at all (endpoint unreachable, connect or read timeout,
    connection dropped): the state of the resource is unknown, not bad.

    >>> from botocore.exceptions import EndpointConnectionError
    >>> is_network_error(EndpointConnectionError(endpoint_url="https://ec2.eu-north-1.amazonaws.com/"))
    True
    """
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


def log_encoded_authorization_message(exc: BaseException, log: Any, what: str) -> None:
    """Log the encoded reason of an ``UnauthorizedOperation`` once, with the command that decodes it
    (the one-line error only names its length)."""
    encoded = encoded_authorization_message(exc)
    if encoded:
        log.warning("%s: UnauthorizedOperation; decode the reason with: aws sts decode-authorization-message --encoded-message %s",
                    what, encoded)


def _unreachable(exc: BaseException) -> str:
    """``"endpoint URL is unreachable (reason)"`` for a botocore connection failure, else ``""``."""
    try:
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
    except ImportError:  # pragma: no cover
        return ""
    if not isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return ""
    kwargs = getattr(exc, "kwargs", {}) or {}
    url = kwargs.get("endpoint_url", "")
    cause = str(kwargs.get("error", "")) or type(exc).__name__
    m = re.search(r"\[Errno -?\d+\]\s*([^'\")]+)", cause)
    reason = m.group(1).strip() if m else ("connect timeout" if isinstance(exc, ConnectTimeoutError) else " ".join(cause.split())[:120])
    return f"endpoint {url} is unreachable ({reason})"


def _body_summary(text: str) -> str:
    """A short, tag-free summary of an HTML/text body quoted in an exception message."""
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return " ".join(title.group(1).split())[:100]
    body = text.split("b'", 1)[-1].replace("\\n", " ")
    return " ".join(re.sub(r"<[^>]*>", " ", body).split())[:100]


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the endpoint could not be reached (connection refused, DNS, connect timeout)."""
    return bool(_unreachable(exc))


def is_iam_propagation(exc: BaseException) -> bool:
    """Whether RunInstances refused an instance profile EC2 cannot see yet.

    IAM is eventually consistent: right after ``CreateInstanceProfile``/``AddRoleToInstanceProfile``
    RunInstances answers ``InvalidParameterValue`` "Value (name) for parameter iamInstanceProfile.name
    is invalid. Invalid IAM Instance Profile name" for some seconds.

    >>> from botocore.exceptions import ClientError
    >>> is_iam_propagation(ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "Value (care-flow-run) for "
    ...     "parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"}}, "RunInstances"))
    True
    >>> is_iam_propagation(ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "Invalid value 'x' for InstanceType."}}, "RunInstances"))
    False
    """
    if error_code(exc) != "InvalidParameterValue":
        return False
    text = error_message(exc).lower()
    return "iaminstanceprofile" in text or "invalid iam instance profile" in text


def classify(exc: BaseException) -> FaultClass:
    """Which reaction an error calls for (see the table in the module docstring)."""
    code = error_code(exc)
    if not code and type(exc).__name__ in _TRANSIENT_EXCEPTIONS:
        return "throttle"
    if code in CAPACITY_CODES:
        return "capacity"
    if code in UNSUPPORTED_CODES or code.startswith("InvalidInstanceType"):
        return "unsupported"
    if code in THROTTLE_CODES:
        return "throttle"
    if code == "IdempotentParameterMismatch":
        return "token"
    if code in REGION_CODES and (code != "AuthFailure" or not error_message(exc) or _NOT_VALIDATED.search(error_message(exc))):
        return "region"  # AuthFailure also answers an AMI the account may not use ("Not authorized for images"): fatal
    if code == "InvalidParameterValue" and _ARCH_MISMATCH.search(error_message(exc)):
        return "unsupported"
    if code == "InvalidParameterCombination" and _TYPE_COMBINATION.search(error_message(exc)):
        return "unsupported"
    if is_iam_propagation(exc):
        return "propagating"
    if is_server_error(exc):
        return "throttle"
    return "fatal"


def is_server_error(exc: BaseException) -> bool:
    """An HTTP 5xx answer: botocore's bare status code (``"500"``, ``"503"``...) for a generic or
    empty body (a load balancer's or proxy's page), or ``HTTPStatusCode >= 500``. Transient as in
    botocore's standard retry mode; RunInstances is safe to resend with its ClientToken. (Codes
    classified otherwise come first: EC2 answers InsufficientInstanceCapacity with a 500 too.)

    >>> from botocore.exceptions import ClientError
    >>> is_server_error(ClientError({"Error": {"Code": "502", "Message": "Bad Gateway"}}, "RunInstances"))
    True
    >>> is_server_error(ClientError({"Error": {"Code": "Oops"}, "ResponseMetadata": {"HTTPStatusCode": 504}}, "RunInstances"))
    True
    >>> is_server_error(ClientError({"Error": {"Code": "AuthFailure"}, "ResponseMetadata": {"HTTPStatusCode": 401}}, "RunInstances"))
    False
    """
    code = error_code(exc).strip()
    if code.isdigit() and 500 <= int(code) <= 599:
        return True
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, dict) else None
    try:
        status = int(meta.get("HTTPStatusCode") or 0) if isinstance(meta, dict) else 0
    except (TypeError, ValueError):
        return False
    return 500 <= status <= 599


def backoff_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 20.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): "full jitter" exponential back-off.

    Uniform in ``[0, min(cap_s, base_s * 2**(attempt-1))]`` (AWS Architecture Blog, "Exponential
    Backoff And Jitter"), but never below 10% of that bound so a retry always waits a little.
    """
    bound = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    r = (rng or random).random()
    return bound * (0.1 + 0.9 * r)
