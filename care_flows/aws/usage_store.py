"""Usage histories in S3, for flows that run on instances that do not outlive them.

A local :class:`care_flows.usage_capture.UsageStore` keeps a flow's usage history on the machine
that ran it; an EC2 instance launched by the ``care-ec2`` worker is terminated after the run, and
its history with it. :class:`S3UsageStore` keeps the history under an S3 prefix instead, one
CSV object per run (``<prefix>/<history>/<first sample time>-<flow run id>-<sampler id>.csv``, e.g.
``histories/etl/20261129T021250-65c2f513-...-7bf0e16bbc91.csv``: the Prefect flow run id, so an
operator can map an object to its run, then the id ``@care`` gives each sampled run segment),
rewritten with all the run's samples at every flush (S3 has no append; one object per run means
concurrent runs never overwrite each other, and a long run stays one object). Its columns are
``time, cpu_vcpu, memory_gib, n_processes`` and, when the rows have it, ``cpu_vcpu_mean`` (the
10-second mean CPU; objects written before it existed are read with it empty).

Select it for every ``@care`` run and the controller with ``CARE_USAGE_STORE=s3://bucket/prefix``
(see :func:`care_flows.usage_capture.default_usage_store`). The identities that run flows need
``s3:PutObject``; the ones that plan (``@care`` trigger runs, ``care controller``) need
``s3:GetObject`` and ``s3:ListBucket`` on the prefix: :func:`care_flows.aws.iam.usage_store_policy`.

Objects are immutable, so :meth:`S3UsageStore.load` lists the prefix and downloads
(:data:`READ_WORKERS` at a time) only the objects this process has not read before; the newest
:data:`MAX_OBJECTS` are read. :meth:`S3UsageStore.load_runs` reads the run records the same way.
A fresh process (a trigger run on a new instance) downloads them all once.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import pandas as pd

from care_flows.aws.faults import is_unreachable
from care_flows.errors import AwsError, CareError, ConfigError
from care_flows.usage_capture import RunRecord, UsageSample, safe_history_name, samples_frame, stored_columns

__all__ = ["S3UsageStore", "parse_s3_url", "current_flow_run_id", "object_stem", "MAX_OBJECTS", "MAX_RUN_RECORDS", "READ_WORKERS", "LISTING_REUSE_S", "UNREACHABLE_COOLDOWN_S", "OPERATIONS"]

log = logging.getLogger("care_flows.aws")

MAX_OBJECTS = 500
"""At most this many of a history's newest objects (runs) are read."""

MAX_RUN_RECORDS = 100
"""At most this many of a history's newest run records (``<history>/runs/*.json``) are read."""

READ_WORKERS = 8
"""Objects (samples, run records) not read before are downloaded this many at a time."""

UNREACHABLE_COOLDOWN_S = 30.0
"""After S3 could not be reached at all (connection refused, DNS, connect timeout) or stalled (no
answer within :data:`STALL_TIMEOUT_S`), reads (what planning does: durations, sizing) fail at once
for this long instead of each waiting for the same failure; writes are always tried (a run's failed
flush is rewritten with its next one)."""

STALL_TIMEOUT_S = 10.0
"""The default clients' read timeout: an endpoint that accepts connections and never answers (a
broken proxy or VPC endpoint) costs a call 3 x 10 s, not 3 x 30 s (it held a 3 s run for 8 minutes
over five calls, review 46e M2)."""

LISTING_REUSE_S = 5.0
"""A load this soon after a fingerprint of the same history reuses its listing (one LIST per plan)."""

OPERATIONS = {"s3": ("PutObject", "GetObject", "ListObjectsV2")}
"""The S3 operations this module calls (``care_flows.aws.iam.usage_store_policy`` allows exactly these)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix without slashes at the ends).

    >>> parse_s3_url("s3://care-usage/team-a/")
    ('care-usage', 'team-a')
    >>> parse_s3_url("s3://b/p")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: usage store 's3://b/p': bucket name 'b' is not valid; S3 bucket names are 3-63 characters ...
    """
    m = re.fullmatch(r"s3://([^/]*)(?:/(.*))?", url.strip())
    if not m:
        raise ConfigError(f"usage store {url!r} is not an S3 URL; give s3://<bucket>/<prefix>, e.g. s3://care-usage/histories")
    bucket = m.group(1)
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"usage store {url!r}: bucket name {bucket!r} is not valid; S3 bucket names are 3-63 characters "
                          "(lowercase letters, digits, dots, hyphens) starting and ending with a letter or digit, e.g. s3://care-usage/histories")
    return bucket, (m.group(2) or "").strip("/")


def current_flow_run_id() -> str | None:
    """The Prefect flow run this code runs in: from the run context, else ``PREFECT__FLOW_RUN_ID``
    (which a worker sets for the run's process, e.g. in a care-ec2 instance's user data), else None.

    >>> import os; os.environ["PREFECT__FLOW_RUN_ID"] = "65c2f513-0000-4000-8000-000000000001"
    >>> current_flow_run_id()
    '65c2f513-0000-4000-8000-000000000001'
    >>> del os.environ["PREFECT__FLOW_RUN_ID"]; current_flow_run_id() is None
    True
    """
    try:
        from prefect.runtime.flow_run import get_id

        return get_id() or None
    except Exception:  # noqa: BLE001 - naming an object must never fail a flush
        return None


def object_stem(first: pd.Timestamp, run_id: str, flow_run_id: str | None) -> str:
    """``<first sample time>-[<flow run id>-]<run id>``, every part safe for an S3 key.

    >>> object_stem(pd.Timestamp("2026-11-29T02:12:50Z"), "7bf0e16bbc91", "65c2f513-e0a4-4c5e-9a3c-6b1f2d0e9a10")
    '20261129T021250-65c2f513-e0a4-4c5e-9a3c-6b1f2d0e9a10-7bf0e16bbc91'
    >>> object_stem(pd.Timestamp("2026-11-29T02:12:50Z"), "7bf0e16bbc91", None)
    '20261129T021250-7bf0e16bbc91'
    """
    parts = [first.strftime("%Y%m%dT%H%M%S")]
    if flow_run_id and flow_run_id not in run_id:
        parts.append(safe_history_name(flow_run_id))
    return "-".join(parts + [safe_history_name(run_id)])


def _stalled(exc: BaseException) -> bool:
    """Whether ``exc`` is botocore's read timeout: the endpoint took the request and never answered."""
    try:
        from botocore.exceptions import ReadTimeoutError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ReadTimeoutError)


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

            clients = AwsClients(max_attempts=3, read_timeout_s=STALL_TIMEOUT_S)
        self._clients = clients
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "eu-north-1"
        self._read: dict[tuple[str, str], pd.DataFrame | None] = {}  # (key, ETag) -> samples (None: malformed)
        self._runs: dict[tuple[str, str], tuple[str, pd.DataFrame]] = {}  # (folder, run id) -> (key, samples so far)
        self._listed: dict[str, tuple[float, list[tuple[str, str]]]] = {}  # folder -> (monotonic time, fingerprint's listing)
        self._records: dict[str, RunRecord | None] = {}  # run record key -> record (objects are written once)
        self._down_until = 0.0  # monotonic time until which S3 is taken as unreachable
        self._down_why = ""
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        return self._clients.client("s3", self.region)

    def _reachable(self, what: str) -> None:
        """Fail at once while S3 is known to be unreachable (see :data:`UNREACHABLE_COOLDOWN_S`)."""
        left = self._down_until - time.monotonic()
        if left > 0:
            raise AwsError(f"could not {what} s3://{self.bucket}/{self.prefix} ({self._down_why}; not retried for "
                           f"another {left:.0f} s); check the endpoint and the network")

    def _failed(self, exc: BaseException) -> None:
        if is_unreachable(exc) or _stalled(exc):
            self._down_until, self._down_why = time.monotonic() + UNREACHABLE_COOLDOWN_S, _short(exc)

    def _folder(self, name: str) -> str:
        return f"{self.prefix}/{safe_history_name(name)}/" if self.prefix else f"{safe_history_name(name)}/"

    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame, *, run_id: str | None = None) -> None:
        """Write the samples to S3 (nothing when there are none).

        Without ``run_id`` each call writes a new object. With it (what ``@care`` passes: one id per
        run, flushed every minute), the run's object is rewritten with everything the run has
        sampled so far, so a run stays one object however long it runs. The object's name holds the
        Prefect flow run id when the first write knows it (:func:`current_flow_run_id`).
        """
        frame = samples_frame(samples)
        if frame.empty:
            return
        folder = self._folder(deployment)
        if run_id is None:
            key = f"{folder}{object_stem(frame['time'].min(), uuid.uuid4().hex[:12], current_flow_run_id())}.csv"
        else:
            with self._lock:
                key, before = self._runs.get((folder, run_id), (None, None))
                if key is None:  # named at the first flush, kept for the run's later flushes (one object)
                    key = f"{folder}{object_stem(frame['time'].min(), run_id, current_flow_run_id())}.csv"
                    self._runs[(folder, run_id)] = (key, None)
                frame = frame if before is None else pd.concat([before, frame], ignore_index=True)
        out = frame.copy()
        out["time"] = out["time"].map(lambda t: t.isoformat())
        body = out.to_csv(index=False).encode()
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv")
        except Exception as exc:  # noqa: BLE001 - botocore errors are not one family
            self._failed(exc)
            raise AwsError(f"could not write usage history object s3://{self.bucket}/{key} ({_short(exc)}); "
                           "check the bucket and s3:PutObject on the prefix") from None
        if run_id is not None:
            # kept once written: a batch whose write failed is the caller's to hand over again (the @care sampler
            # keeps it and sends it with the next one), so it is never held twice (review 44d H1)
            with self._lock:
                self._runs[(folder, run_id)] = (key, frame)
        self._down_until = 0.0  # S3 answers again: reads need not wait out the cooldown

    def _keys(self, folder: str) -> list[tuple[str, str]]:
        """(key, ETag) of the newest :data:`MAX_OBJECTS` objects: a run's object is rewritten while
        it runs, so what was read is cached per version, not per key."""
        keys: list[tuple[str, str]] = []
        for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            keys += [(obj["Key"], str(obj.get("ETag", ""))) for obj in page.get("Contents", []) if obj["Key"].endswith(".csv")]
        return sorted(keys)[-MAX_OBJECTS:]  # names start with the first sample's time

    def fingerprint(self, deployment: str) -> tuple[int, str] | None:
        """(number of objects, digest of their keys and ETags), None without a history (one listing)."""
        folder = self._folder(deployment)
        self._reachable("list the usage history")
        try:
            keys = self._keys(folder)
            with self._lock:
                self._listed[folder] = (time.monotonic(), keys)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            raise AwsError(f"could not list usage history s3://{self.bucket}/{folder} ({_short(exc)}); "
                           "check the bucket and s3:ListBucket on the prefix") from None
        if not keys:
            return None
        return len(keys), hashlib.sha1("|".join(f"{k}@{e}" for k, e in keys).encode()).hexdigest()  # a rewrite changes an ETag

    @staticmethod
    def _download(items: list[Any], read: Callable[[Any], Any]) -> dict[Any, Any]:
        """``{item: read(item)}``, :data:`READ_WORKERS` reads at a time (the first error is raised).

        Each read runs in a copy of the caller's context, so what it logs (a malformed object's
        warning) still reaches the flow run's log in Prefect."""
        if not items:
            return {}
        contexts = [contextvars.copy_context() for _ in items]  # one each: a context is entered by one thread at a time
        with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(items))) as pool:
            return dict(zip(items, pool.map(lambda ctx, item: ctx.run(read, item), contexts, items)))

    def _get(self, version: tuple[str, str]) -> pd.DataFrame | None:
        key = version[0]
        raw = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            return samples_frame(pd.read_csv(io.BytesIO(raw)))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, CareError) as exc:
            log.warning("CaRE: skipping malformed usage object s3://%s/%s (%s); delete it", self.bucket, key, _short(exc))
            return None

    def load(self, deployment: str) -> pd.DataFrame:
        """All samples of the history (its newest :data:`MAX_OBJECTS` objects), sorted by time.

        Objects not read before are downloaded in parallel (:data:`READ_WORKERS` at a time); a
        malformed object is skipped with a warning naming it. A load that follows :meth:`fingerprint` within
        :data:`LISTING_REUSE_S` reads the objects that fingerprint listed instead of listing again,
        so a memoised plan lists the prefix once and learns from exactly the version it fingerprinted.
        """
        folder = self._folder(deployment)
        self._reachable("read the usage history")
        try:
            with self._lock:
                listed = self._listed.pop(folder, None)
            fresh = listed is not None and time.monotonic() - listed[0] <= LISTING_REUSE_S
            keys = listed[1] if fresh else self._keys(folder)
            with self._lock:  # this load's own view: a concurrent load may evict from the cache meanwhile
                known = {k: self._read[k] for k in keys if k in self._read}
            fetched = self._download([k for k in keys if k not in known], self._get)
            known.update(fetched)
            with self._lock:
                self._read.update(fetched)
            with self._lock:
                current = set(keys)
                for stale in [v for v in self._read if v[0].startswith(folder) and v not in current]:
                    del self._read[stale]  # rewritten, beyond MAX_OBJECTS or deleted
            frames = [known[v] for v in keys if known.get(v) is not None]
        except Exception as exc:  # noqa: BLE001 - botocore errors are not one family
            self._failed(exc)
            raise AwsError(f"could not read usage history s3://{self.bucket}/{folder} ({_short(exc)}); "
                           "check the bucket, s3:ListBucket and s3:GetObject on the prefix") from None
        if not frames:
            return samples_frame([])
        out = pd.concat(frames, ignore_index=True)  # objects written before cpu_vcpu_mean existed: NaN there
        return out[stored_columns(out)].sort_values("time", kind="stable").reset_index(drop=True)


    def append_run(self, deployment: str, record: RunRecord) -> None:
        """Write one completed run's record as ``<history>/runs/<finished>-<run id>.json`` (the
        samples' listing reads ``.csv`` objects only)."""
        key = f"{self._folder(deployment)}runs/{record.finished.strftime('%Y%m%dT%H%M%S')}-{safe_history_name(record.run_id)}.json"
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=json.dumps(record.to_dict()).encode(), ContentType="application/json")
        except Exception as exc:  # noqa: BLE001 - botocore errors are not one family
            self._failed(exc)
            raise AwsError(f"could not write run record s3://{self.bucket}/{key} ({_short(exc)}); "
                           "check the bucket and s3:PutObject on the prefix") from None
        self._down_until = 0.0

    def _get_record(self, key: str) -> RunRecord | None:
        raw = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            record: RunRecord | None = RunRecord.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError, CareError) as exc:
            log.warning("CaRE: skipping malformed run record s3://%s/%s (%s); delete it", self.bucket, key, _short(exc))
            record = None
        with self._lock:  # kept at once: a later GET that fails does not make this one be read again
            self._records[key] = record
        return record

    def load_runs(self, deployment: str) -> list[RunRecord]:
        """The newest :data:`MAX_RUN_RECORDS` run records, oldest first (each object is read once
        per process, those not read before :data:`READ_WORKERS` at a time; a malformed one is
        skipped with a warning naming it)."""
        folder = f"{self._folder(deployment)}runs/"
        self._reachable("read the run records")
        try:
            keys: list[str] = []
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                keys += [obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith(".json")]
            keys = sorted(keys)[-MAX_RUN_RECORDS:]  # names start with the finish time
            with self._lock:  # this call's own view: a concurrent call may prune the cache meanwhile
                known = {k: self._records[k] for k in keys if k in self._records}
            known.update(self._download([k for k in keys if k not in known], self._get_record))
            with self._lock:  # records deleted or beyond MAX_RUN_RECORDS are not kept
                current = set(keys)
                for stale in [k for k in self._records if k.startswith(folder) and k not in current]:
                    del self._records[stale]
        except Exception as exc:  # noqa: BLE001 - botocore errors are not one family
            self._failed(exc)
            raise AwsError(f"could not read run records s3://{self.bucket}/{folder} ({_short(exc)}); "
                           "check the bucket, s3:ListBucket and s3:GetObject on the prefix") from None
        found = [known[k] for k in keys]
        return sorted((r for r in found if r is not None), key=lambda r: r.finished)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
