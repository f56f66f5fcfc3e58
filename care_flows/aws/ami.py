"""Which AMI an instance boots: Amazon Linux 2023 for the instance type's architecture.

AWS publishes the newest Amazon Linux AMI ids as SSM *public parameters*, one per region and
architecture, e.g. ``/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64``.
CaRE looks the id up at launch time (``ssm:GetParameter``), so it never hard-codes an AMI id.

>>> al2023_parameter("arm64")
'/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64'
>>> al2023_parameter("i386")
Traceback (most recent call last):
...
care_flows.errors.ConfigError: architecture 'i386' has no Amazon Linux 2023 AMI; use x86_64 or arm64
"""

from __future__ import annotations

import threading
from typing import Any

from care_flows.errors import AwsError, ConfigError

__all__ = ["AL2023_PARAMETER", "ARCHITECTURES", "AmiParameterNotFound", "al2023_parameter", "instance_architecture", "resolve_image_id"]

AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
ARCHITECTURES = ("x86_64", "arm64")

_ARCH_CACHE: dict[str, str] = {}
_LOCK = threading.Lock()


def al2023_parameter(architecture: str) -> str:
    """The SSM public parameter holding the newest AL2023 AMI for ``architecture``."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture {architecture!r} has no Amazon Linux 2023 AMI; use x86_64 or arm64")
    return AL2023_PARAMETER.format(arch=architecture)


def instance_architecture(ec2: Any, instance_type: str) -> str:
    """``x86_64`` or ``arm64`` for an instance type (``ec2:DescribeInstanceTypes``, cached)."""
    with _LOCK:
        if instance_type in _ARCH_CACHE:
            return _ARCH_CACHE[instance_type]
    response = ec2.describe_instance_types(InstanceTypes=[instance_type])
    types = response.get("InstanceTypes", [])
    if not types:
        raise ConfigError(f"instance type {instance_type!r} is unknown to EC2; check the spelling (e.g. t3.large)")
    archs = types[0].get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    arch = "arm64" if "arm64" in archs and "x86_64" not in archs else "x86_64"
    with _LOCK:
        _ARCH_CACHE[instance_type] = arch
    return arch


class AmiParameterNotFound(AwsError):
    """The SSM parameter naming the AMI does not exist in a region (``parameter``, ``region``); the
    launch skips that region like an unsupported option and tries the next one."""

    def __init__(self, message: str, *, parameter: str, region: str | None) -> None:
        super().__init__(message)
        self.parameter, self.region = parameter, region


def resolve_image_id(ssm: Any, ec2: Any, instance_type: str, *, image_id: str | None = None, parameter: str | None = None,
                     region: str | None = None) -> str:
    """The AMI id to boot: ``image_id`` if given, else the value of ``parameter``, else AL2023.

    ``parameter`` may contain ``{arch}``, filled with the instance type's architecture. ``region``
    (default: the SSM client's) is named in the :class:`AmiParameterNotFound` error when the
    parameter does not exist there.
    """
    if image_id:
        return image_id
    if parameter and "{arch}" not in parameter:
        name = parameter
    else:
        arch = instance_architecture(ec2, instance_type)
        name = (parameter or AL2023_PARAMETER).format(arch=arch)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:  # noqa: BLE001 - re-raised as one clear line
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        if code in ("ParameterNotFound", "InvalidParameter"):
            where = region or getattr(getattr(ssm, "meta", None), "region_name", None)
            raise AmiParameterNotFound(
                f"AMI parameter {name!r} does not exist in {where or 'this region'}; set image_id (image_id_by_region) "
                "or an SSM parameter path that exists in every region the pool launches in",
                parameter=name, region=where,
            ) from exc
        raise
    return str(value)
