"""Usage histories in S3, for flows that run on instances that do not outlive them.

A local :class:`care_flows.usage_capture.UsageStore` keeps a flow's usage history on the machine
that ran it; an EC2 instance launched by the ``care-ec2`` worker is terminated after the run, and
its history with it. :class:`S3UsageStore` keeps the history under an S3 prefix instead, one
object per appended run (``<prefix>/<history>/<first sample time>-<random>.csv``): S3 has no
append, and one object per run means concurrent runs never overwrite each other.

Select it for every ``@care`` run and the controller with ``CARE_USAGE_STORE=s3://bucket/prefix``
(see :func:`care_flows.usage_capture.default_usage_store`). The identities that run flows need
``s3:PutObject``; the ones that plan (``@care`` trigger runs, ``care controller``) need
``s3:GetObject`` and ``s3:ListBucket`` on the prefix: :func:`care_flows.aws.iam.usage_store_policy`.

Objects are immutable, so :meth:`S3UsageStore.load` lists the prefix and downloads only objects it
has not read before (kept in memory); the newest :data:`MAX_OBJECTS` are read.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from typing import Any, Iterable

import pandas as pd

from care_flows.errors import AwsError, ConfigError
from care_flows.usage_capture import COLUMNS, UsageSample, _frame

__all__ = ["S3UsageStore", "parse_s3_url", "MAX_OBJECTS", "OPERATIONS"]

MAX_OBJECTS = 2000
"""At most this many of a history's newest objects (runs) are read."""

OPERATIONS = {"s3": ("PutObject", "GetObject", "ListObjectsV2")}
"""The S3 operations this module calls (``care_flows.aws.iam.usage_store_policy`` allows exactly these)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix without slashes at the ends).

    >>> parse_s3_url("s3://care-usage/team-a/")
    ('care-usage', 'team-a')
    """
    m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?", url.strip())
    if not m:
        raise ConfigError(f"usage store {url!r} is not an S3 URL; give s3://<bucket>/<prefix>, e.g. s3://care-usage/histories")
    return m.group(1), (m.group(2) or "").strip("/")


def _safe(name: str) -> str:
    if not name or not name.strip():
        raise ConfigError("usage history name is empty; give the flow name or the policy's usage_key")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip().replace("/", "__"))


class S3UsageStore:
    """The :class:`~care_flows.usage_capture.UsageStoreBackend` protocol over an S3 prefix.

    ``clients``: a :class:`care_flows.aws.clients.AwsClients` (default: the default credential
    chain, with ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` honoured by boto3); ``region``:
    the bucket's region (default ``AWS_DEFAULT_REGION`` or ``eu-north-1``).
    """

    def __init__(self, url: str, *, clients: Any = None, region: str | None = None) -> None:
        import os

        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        if clients is None:
            from care_flows.aws.clients import AwsClients

            clients = AwsClients(max_attempts=3)
        self._clients = clients
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "eu-north-1"
        self._read: dict[str, pd.DataFrame] = {}
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        return self._clients.client("s3", self.region)

    def _folder(self, name: str) -> str:
        return f"{self.prefix}/{_safe(name)}/" if self.prefix else f"{_safe(name)}/"

    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame) -> None:
        """Write the samples as one new object (nothing when there are none)."""
        frame = _frame(samples)
        if frame.empty:
            return
        first = frame["time"].min().strftime("%Y%m%dT%H%M%S")
        key = f"{self._folder(deployment)}{first}-{uuid.uuid4().hex[:12]}.csv"
        out = frame.copy()
        out["time"] = out["time"].map(lambda t: t.isoformat())
        body = out.to_csv(index=False).encode()
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv")
        except Exception as exc:  # noqa: BLE001 - botocore errors are not one family
            raise AwsError(f"could not write usage history object s3://{self.bucket}/{key} ({_short(exc)}); "
                           "check the bucket and s3:PutObject on the prefix") from None

    def load(self, deployment: str) -> pd.DataFrame:
        """All samples of the history (its newest :data:`MAX_OBJECTS` objects), sorted by time."""
        folder = self._folder(deployment)
        try:
            keys: list[str] = []
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                keys += [obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith(".csv")]
            keys = sorted(keys)[-MAX_OBJECTS:]  # names start with the first sample's time
            frames = []
            for key in keys:
                with self._lock:
                    cached = self._read.get(key)
                if cached is None:
                    raw = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    cached = _frame(pd.read_csv(io.BytesIO(raw)))
                    with self._lock:
                        self._read[key] = cached
                frames.append(cached)
        except (AwsError, ConfigError):
            raise
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise AwsError(f"usage history object under s3://{self.bucket}/{folder} is malformed ({_short(exc)}); delete it") from None
        except Exception as exc:  # noqa: BLE001
            raise AwsError(f"could not read usage history s3://{self.bucket}/{folder} ({_short(exc)}); "
                           "check the bucket, s3:ListBucket and s3:GetObject on the prefix") from None
        if not frames:
            return _frame([])
        out = pd.concat(frames, ignore_index=True)[COLUMNS]
        return out.sort_values("time", kind="stable").reset_index(drop=True)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
