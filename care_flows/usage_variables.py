"""Usage histories in Prefect variables, for flows whose machines keep nothing and have no S3.

A local :class:`care_flows.usage_capture.UsageStore` keeps a flow's usage history on the machine
that ran it (lost with a container or an instance), :class:`care_flows.aws.usage_store.S3UsageStore`
needs a bucket. :class:`PrefectVariableUsageStore` keeps it in the Prefect server (or Prefect Cloud)
the runs already talk to, as Prefect variables: nothing else to set up, no AWS credentials.

Select it for every ``@care`` run and ``care controller`` with
``CARE_USAGE_STORE=prefect-variables://care-usage`` (the part after ``//`` is the variables' name
prefix, default ``care-usage``; see :func:`care_flows.usage_capture.default_usage_store`), or read
one with ``care usage NAME --usage-dir prefect-variables://care-usage``.

Layout. A Prefect variable holds at most 5,000 characters of JSON, so a run's samples (10-second
maxima and the 10-second mean CPU ``cpu_vcpu_mean`` when the rows have it,
``learned_sizing.RECORD_STEP_S``) are kept as zlib-compressed CSV, in parts of at most
:data:`ROWS_PER_PART` rows (about an hour, ~1-2 kB), one variable per part:

- ``<prefix>-<history>-s-<first sample time>-<run id>-<part>``: samples, rewritten while the run
  flushes (a part whose rows did not change is not written again);
- ``<prefix>-<history>-r-<finished>-<run id>``: one completed run's duration (a ``RunRecord``).

``<history>`` is the history's name made safe for a variable name (lower case, at most 40
characters) and 8 hex characters of its SHA-1, so two names that read alike stay apart. Every
variable is tagged ``care-usage``, ``care-usage-<history>`` and ``<prefix>-<history>-s`` (or
``-r``): samples and run records are each read with one tag filter, paged. Reading first takes a
snapshot of two small requests (the count, and the newest update): a history this process has
read is downloaded again only when it changed, and ``fingerprint`` (what planning memoises on) is
only that snapshot. The newest :data:`MAX_PARTS` sample parts and :data:`MAX_RUN_RECORDS` run
records of a history are kept; the oldest are deleted when a new run is written, so the variables
page does not grow without end.

>>> history_id("nightly-training")
'nightly-training-426d1731'
>>> history_id("ETL/nightly run")
'etl-nightly-run-394b0139'
>>> store_prefix("prefect-variables://team-a")
'team-a'
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import threading
import uuid
import zlib
from typing import Any, Callable, Iterable

import pandas as pd

from care_flows.errors import ConfigError, OrchestrationError
from care_flows.usage_capture import RunRecord, UsageSample, samples_frame, stored_columns

__all__ = ["PrefectVariableUsageStore", "SCHEME", "history_id", "store_prefix", "ROWS_PER_PART", "MAX_PARTS", "MAX_RUN_RECORDS", "MAX_VALUE_CHARS"]

log = logging.getLogger("care_flows.usage")

SCHEME = "prefect-variables://"
"""``CARE_USAGE_STORE`` values starting with this select the store; the rest is the name prefix."""

ROWS_PER_PART = 360
"""Rows (10-second maxima: one hour) per variable, fewer when they would not fit."""

MAX_VALUE_CHARS = 4800
"""A part's JSON stays under this (Prefect refuses a value over 5,000 characters)."""

MAX_PARTS = 200
"""A history keeps its newest this many parts of samples (each at most an hour of running; a
shorter run is one part): the oldest are deleted first, so a full load reads at most ~1 MB."""

MAX_RUN_RECORDS = 100
"""A history keeps its newest this many run records (what learned durations read)."""

_PAGE = 200  # Prefect's default (and maximum) page of a filter call


def store_prefix(url: str) -> str:
    """The variable-name prefix of a ``prefect-variables://<prefix>`` store (default ``care-usage``)."""
    if not url.startswith(SCHEME):
        raise ConfigError(f"usage store {url!r} is not a Prefect variables store; give {SCHEME}<prefix>, e.g. {SCHEME}care-usage")
    prefix = url[len(SCHEME):].strip("/") or "care-usage"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", prefix):
        raise ConfigError(f"usage store {url!r}: prefix {prefix!r} is not a Prefect variable name part; use 1-40 lower-case "
                          f"letters, digits, - or _, e.g. {SCHEME}care-usage")
    return prefix


def history_id(name: str) -> str:
    """A history's name as a variable-name part: safe characters, at most 40 of them, + 8 hex of its SHA-1."""
    if not name or not name.strip():
        raise ConfigError("usage history name is empty; give the flow name or the policy's usage_key")
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:40] or "history"
    return f"{slug}-{hashlib.sha1(name.strip().encode()).hexdigest()[:8]}"


def _encode(frame: pd.DataFrame) -> str:
    out = frame[stored_columns(frame)].copy()
    out["time"] = out["time"].map(lambda t: t.isoformat())
    return base64.b64encode(zlib.compress(out.to_csv(index=False, float_format="%.6g").encode(), 9)).decode()


def _decode(data: str) -> pd.DataFrame:
    return samples_frame(pd.read_csv(io.BytesIO(zlib.decompress(base64.b64decode(data)))), bad_rows="drop")


def _parts(frame: pd.DataFrame, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The frame as variable values, each under :data:`MAX_VALUE_CHARS` of JSON."""
    values: list[dict[str, Any]] = []
    start = 0
    while start < len(frame):
        rows = ROWS_PER_PART
        while True:
            value = {**meta, "part": len(values), "format": "csv+zlib+base64", "data": _encode(frame.iloc[start:start + rows])}
            if len(json.dumps(value)) <= MAX_VALUE_CHARS or rows == 1:
                break
            rows = max(1, rows // 2)
        values.append(value)
        start += rows
    return values


def _flow_run_id() -> str | None:
    """The Prefect flow run this code runs in, else None (names a run's variables for an operator)."""
    try:
        from prefect.runtime.flow_run import get_id

        return get_id() or None
    except Exception:  # noqa: BLE001 - naming a variable must never fail a flush
        return None


class PrefectVariableUsageStore:
    """The :class:`~care_flows.usage_capture.UsageStoreBackend` protocol over Prefect variables.

    ``client_factory``: returns a context manager giving a sync Prefect client (default
    ``prefect.get_client(sync_client=True)``, i.e. ``PREFECT_API_URL`` or the profile's server).
    API failures raise :class:`OrchestrationError` in one line; ``@care`` logs them and runs on
    (recording never fails a run, planning then sizes from the policy).

    >>> store = PrefectVariableUsageStore("prefect-variables://team-a")
    >>> store.url, store.prefix
    ('prefect-variables://team-a', 'team-a')

    ``store.append("etl", samples, run_id=...)``, ``store.load("etl")``, ``store.append_run("etl",
    record)`` and ``store.load_runs("etl")`` then talk to the Prefect API (tests/test_usage_variables.py).
    """

    def __init__(self, url: str = SCHEME + "care-usage", *, client_factory: Callable[[], Any] | None = None) -> None:
        self.prefix = store_prefix(url)
        self.url = SCHEME + self.prefix
        self._client_factory = client_factory
        self._runs: dict[tuple[str, str], tuple[str, pd.DataFrame, list[str]]] = {}  # (history, run id) -> (stem, samples, parts as written)
        self._cache: dict[tuple[str, str], tuple[tuple[int, str], list[dict[str, Any]]]] = {}  # (history, kind) -> (snapshot, variables)
        self._page = _PAGE
        self._lock = threading.Lock()

    # -- Prefect API ---------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory()
        from prefect import get_client

        return get_client(sync_client=True)

    def _fail(self, what: str, exc: BaseException) -> OrchestrationError:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return OrchestrationError(f"could not {what} in the Prefect variables {self.url} ({detail}); check PREFECT_API_URL "
                                  "and that the Prefect API answers")

    def _tags(self, hid: str, kind: str) -> list[str]:
        return ["care-usage", f"care-usage-{hid}", self._kind_tag(hid, kind)]

    def _kind_tag(self, hid: str, kind: str) -> str:
        """The tag a history's variables of one kind are read by (with the prefix: two stores apart)."""
        return f"{self.prefix}-{hid}-{kind}"

    def _count(self, client: Any, hid: str, kind: str) -> int:
        return int(client.request("POST", "/variables/count", json={"variables": {"tags": {"all_": [self._kind_tag(hid, kind)]}}}).json())

    def _put(self, client: Any, name: str, value: dict[str, Any], tags: list[str], *, new: bool) -> None:
        """Create the variable, or update it (a part written before: update first, one request)."""
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate
        from prefect.exceptions import ObjectAlreadyExists

        if not new:
            try:
                client.update_variable(VariableUpdate(name=name, value=value, tags=tags))
                return
            except Exception as exc:  # noqa: BLE001 - a 404: deleted meanwhile (or never written), create it
                if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                    raise
        try:
            client.create_variable(VariableCreate(name=name, value=value, tags=tags))
        except ObjectAlreadyExists:  # written by an earlier process of the same run
            client.update_variable(VariableUpdate(name=name, value=value, tags=tags))

    def _filter(self, client: Any, hid: str, kind: str, *, sort: str = "NAME_ASC", limit: int | None = None) -> list[dict[str, Any]]:
        """The history's variables of ``kind`` (``s`` samples, ``r`` run records) in ``sort`` order,
        all of them or the first ``limit``, paged (a server whose page limit is below ours says
        422: the page is halved and the call repeated)."""
        found: list[dict[str, Any]] = []
        offset = 0
        while limit is None or len(found) < limit:
            size = self._page if limit is None else min(self._page, limit - len(found))
            body = {"variables": {"tags": {"all_": [self._kind_tag(hid, kind)]}}, "limit": size, "offset": offset, "sort": sort}
            try:
                page = client.request("POST", "/variables/filter", json=body).json()
            except Exception as exc:  # noqa: BLE001
                if getattr(getattr(exc, "response", None), "status_code", None) == 422 and self._page > 10:
                    self._page //= 2  # PREFECT_SERVER_API_DEFAULT_LIMIT is below our page
                    continue
                raise
            found += [v for v in page if str(v.get("name", "")).startswith(f"{self.prefix}-{hid}-{kind}-")]
            if len(page) < size:
                break
            offset += size
        return found

    def _snapshot(self, client: Any, hid: str, kind: str) -> tuple[int, str]:
        """(how many variables of ``kind``, the newest update's name and time): two small requests,
        the values of all the others are not downloaded. Any write, rewrite or delete changes it."""
        count = self._count(client, hid, kind)
        newest = self._filter(client, hid, kind, sort="UPDATED_DESC", limit=1) if count else []
        return count, (f"{newest[0]['name']}@{newest[0].get('updated')}" if newest else "")

    def _read(self, deployment: str, kind: str, what: str) -> list[dict[str, Any]]:
        """The history's variables of ``kind``, name order: downloaded again only when their
        snapshot changed since this process last read them."""
        hid = history_id(deployment)
        try:
            with self._client() as client:
                snap = self._snapshot(client, hid, kind)
                with self._lock:
                    cached = self._cache.get((hid, kind))
                if cached is not None and cached[0] == snap:
                    return cached[1]
                found = self._filter(client, hid, kind) if snap[0] else []
        except Exception as exc:  # noqa: BLE001 - httpx and Prefect errors are not one family
            raise self._fail(f"{what} {deployment!r}", exc) from None
        with self._lock:  # the snapshot taken before the listing: a change meanwhile makes the next read list again
            self._cache[(hid, kind)] = (snap, found)
        return found

    # -- samples -------------------------------------------------------------------------------
    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame, *, run_id: str | None = None) -> None:
        """Write the samples (nothing when there are none). With ``run_id`` (one per run, what
        ``@care`` passes) the run's variables are rewritten with all it sampled so far: only the
        parts that changed. Writing a new run deletes the history's oldest parts beyond :data:`MAX_PARTS`."""
        frame = samples_frame(samples)
        if frame.empty:
            return
        hid = history_id(deployment)
        run = run_id or uuid.uuid4().hex[:12]
        with self._lock:
            stem, before, written = self._runs.get((hid, run), (None, None, []))
            first = not written  # no part of this run written yet
            if stem is None:
                flow_run = _flow_run_id()
                named = run if not flow_run or flow_run in run else f"{flow_run}-{run}"  # @care's run ids start with the flow run's
                tail = re.sub(r"[^a-z0-9-]", "-", named.lower())[:60]
                stem = f"{frame['time'].min().strftime('%Y%m%dt%H%M%S')}-{tail}"
                self._runs[(hid, run)] = (stem, None, [])  # the name, kept for the run's later writes
            frame = frame if before is None else pd.concat([before, frame], ignore_index=True)
        values = _parts(frame, {"history": deployment, "run": stem})
        tags = self._tags(hid, "s")
        done = list(written)
        try:
            with self._client() as client:
                for i, value in enumerate(values):
                    digest = hashlib.sha1(value["data"].encode()).hexdigest()
                    if i < len(done) and done[i] == digest:
                        continue  # this part did not change since it was written
                    self._put(client, f"{self.prefix}-{hid}-s-{stem}-{i:03d}", value, tags, new=i >= len(written))
                    done[i:i + 1] = [digest]
                with self._lock:
                    self._runs[(hid, run)] = (stem, frame, done)
                if first:
                    self._prune(client, hid, "s", MAX_PARTS)
        except Exception as exc:  # noqa: BLE001 - httpx and Prefect errors are not one family
            with self._lock:  # the parts written stay known; the samples not written are the caller's to hand over again (the
                # @care sampler keeps them and sends them with the next batch), so they are never held twice (review 44e H1)
                self._runs[(hid, run)] = (stem, before, done)
            raise self._fail(f"write the usage of {deployment!r}", exc) from None

    def _prune(self, client: Any, hid: str, kind: str, keep: int) -> None:
        """Delete the history's oldest variables of ``kind`` beyond ``keep`` (names start with the
        time): one count request, and a listing of only the surplus when there is one. Never
        raises: pruning is housekeeping, a write that succeeded is not reported as failed."""
        try:
            count = self._count(client, hid, kind)
            surplus = self._filter(client, hid, kind, limit=count - keep) if count > keep else []
        except Exception as exc:  # noqa: BLE001
            log.info("CaRE: could not prune the usage variables of %s (%s)", hid, type(exc).__name__)
            return
        for v in surplus:
            try:
                client.delete_variable_by_name(v["name"])
            except Exception as exc:  # noqa: BLE001 - pruning is housekeeping: the next write tries again
                log.info("CaRE: could not delete the old usage variable %s (%s)", v["name"], type(exc).__name__)

    def fingerprint(self, deployment: str) -> tuple[int, str] | None:
        """(number of sample variables, the newest update), None without samples: two small
        requests (a controller pass plans many runs of one flow; the history is read only when it changed)."""
        hid = history_id(deployment)
        try:
            with self._client() as client:
                count, newest = self._snapshot(client, hid, "s")
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"list the usage history {deployment!r}", exc) from None
        return (count, hashlib.sha1(newest.encode()).hexdigest()) if count else None

    def load(self, deployment: str) -> pd.DataFrame:
        """All samples of the history, sorted by time (a part that does not decode is skipped with a warning naming it)."""
        found = self._read(deployment, "s", "read the usage history")
        frames = []
        for v in found:
            try:
                frames.append(_decode(v["value"]["data"]))
            except Exception as exc:  # noqa: BLE001 - one bad part must not make the history unusable
                log.warning("CaRE: skipping malformed usage variable %s (%s); delete it", v["name"], type(exc).__name__)
        frames = [f for f in frames if not f.empty]
        if not frames:
            return samples_frame([])
        out = pd.concat(frames, ignore_index=True)  # parts written before cpu_vcpu_mean existed: NaN there
        return out[stored_columns(out)].sort_values("time", kind="stable").reset_index(drop=True)

    # -- run records ---------------------------------------------------------------------------
    def append_run(self, deployment: str, record: RunRecord) -> None:
        """Write one completed run's record; deletes the history's records beyond :data:`MAX_RUN_RECORDS`."""
        hid = history_id(deployment)
        run = re.sub(r"[^a-z0-9-]", "-", record.run_id.lower())[:60]
        name = f"{self.prefix}-{hid}-r-{record.finished.strftime('%Y%m%dt%H%M%S')}-{run}"
        try:
            with self._client() as client:
                self._put(client, name, {"history": deployment, **record.to_dict()}, self._tags(hid, "r"), new=True)
                self._prune(client, hid, "r", MAX_RUN_RECORDS)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"write the run record of {deployment!r}", exc) from None

    def load_runs(self, deployment: str) -> list[RunRecord]:
        """The newest :data:`MAX_RUN_RECORDS` run records, oldest first (a malformed one is skipped with a warning)."""
        found = self._read(deployment, "r", "read the run records of")
        records = []
        for v in found[-MAX_RUN_RECORDS:]:
            try:
                records.append(RunRecord.from_dict(v["value"]))
            except Exception as exc:  # noqa: BLE001
                log.warning("CaRE: skipping malformed run record variable %s (%s); delete it", v["name"], " ".join(str(exc).split())[:200])
        return sorted(records, key=lambda r: r.finished)
