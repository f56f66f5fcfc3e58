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
maxima, ``learned_sizing.RECORD_STEP_S``) are kept as zlib-compressed CSV, in parts of at most
:data:`ROWS_PER_PART` rows (about an hour, ~1-2 kB), one variable per part:

- ``<prefix>-<history>-s-<first sample time>-<run id>-<part>``: samples, rewritten while the run
  flushes (a part whose rows did not change is not written again);
- ``<prefix>-<history>-r-<finished>-<run id>``: one completed run's duration (a ``RunRecord``).

``<history>`` is the history's name made safe for a variable name (lower case, at most 40
characters) and 8 hex characters of its SHA-1, so two names that read alike stay apart. Every
variable is tagged ``care-usage`` and ``care-usage-<history>``: a history is read with one tag
filter, paged. The newest :data:`MAX_RUNS` runs' samples and :data:`MAX_RUN_RECORDS` run records
of a history are kept; older ones are deleted when a new run is written, so the variables page
does not grow without end.

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
from care_flows.usage_capture import COLUMNS, RunRecord, UsageSample, samples_frame

__all__ = ["PrefectVariableUsageStore", "SCHEME", "history_id", "store_prefix", "ROWS_PER_PART", "MAX_RUNS", "MAX_RUN_RECORDS", "MAX_VALUE_CHARS"]

log = logging.getLogger("care_flows.usage")

SCHEME = "prefect-variables://"
"""``CARE_USAGE_STORE`` values starting with this select the store; the rest is the name prefix."""

ROWS_PER_PART = 360
"""Rows (10-second maxima: one hour) per variable, fewer when they would not fit."""

MAX_VALUE_CHARS = 4800
"""A part's JSON stays under this (Prefect refuses a value over 5,000 characters)."""

MAX_RUNS = 100
"""A history keeps its newest this many runs' samples."""

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
    out = frame[COLUMNS].copy()
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

    def _tags(self, hid: str) -> list[str]:
        return ["care-usage", f"care-usage-{hid}"]

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

    def _list(self, client: Any, hid: str) -> list[dict[str, Any]]:
        """Every variable of the history: ``{"name", "value", "updated"}``, name order."""
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = {"variables": {"tags": {"all_": [f"care-usage-{hid}"]}}, "limit": _PAGE, "offset": offset, "sort": "NAME_ASC"}
            page = client.request("POST", "/variables/filter", json=body).json()
            found += [v for v in page if str(v.get("name", "")).startswith(f"{self.prefix}-{hid}-")]
            if len(page) < _PAGE:
                return found
            offset += _PAGE

    def _read(self, deployment: str, kind: str, what: str) -> list[dict[str, Any]]:
        """The history's variables of ``kind`` (``s`` samples, ``r`` run records), name order."""
        hid = history_id(deployment)
        try:
            with self._client() as client:
                return [v for v in self._list(client, hid) if v["name"].startswith(f"{self.prefix}-{hid}-{kind}-")]
        except Exception as exc:  # noqa: BLE001 - httpx and Prefect errors are not one family
            raise self._fail(f"{what} {deployment!r}", exc) from None

    # -- samples -------------------------------------------------------------------------------
    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame, *, run_id: str | None = None) -> None:
        """Write the samples (nothing when there are none). With ``run_id`` (one per run, what
        ``@care`` passes) the run's variables are rewritten with all it sampled so far: only the
        parts that changed. Writing a new run deletes the history's runs beyond :data:`MAX_RUNS`."""
        frame = samples_frame(samples)
        if frame.empty:
            return
        hid = history_id(deployment)
        run = run_id or uuid.uuid4().hex[:12]
        with self._lock:
            stem, before, written = self._runs.get((hid, run), (None, None, []))
            first = stem is None
            if stem is None:
                flow_run = _flow_run_id()
                named = run if not flow_run or flow_run in run else f"{flow_run}-{run}"  # @care's run ids start with the flow run's
                tail = re.sub(r"[^a-z0-9-]", "-", named.lower())[:60]
                stem = f"{frame['time'].min().strftime('%Y%m%dt%H%M%S')}-{tail}"
            frame = frame if before is None else pd.concat([before, frame], ignore_index=True)
            self._runs[(hid, run)] = (stem, frame, written)  # kept before the write: a failed write is redone with the next
        values = _parts(frame, {"history": deployment, "run": stem})
        tags = self._tags(hid)
        try:
            with self._client() as client:
                done = list(written)
                for i, value in enumerate(values):
                    digest = hashlib.sha1(value["data"].encode()).hexdigest()
                    if i < len(done) and done[i] == digest:
                        continue  # this part did not change since it was written
                    self._put(client, f"{self.prefix}-{hid}-s-{stem}-{i:03d}", value, tags, new=i >= len(written))
                    done[i:i + 1] = [digest]
                with self._lock:
                    self._runs[(hid, run)] = (stem, frame, done)
                if first:
                    self._prune(client, hid, "s", MAX_RUNS)
        except Exception as exc:  # noqa: BLE001 - httpx and Prefect errors are not one family
            raise self._fail(f"write the usage of {deployment!r}", exc) from None

    def _prune(self, client: Any, hid: str, kind: str, keep: int) -> None:
        """Delete the history's oldest runs of ``kind`` beyond ``keep`` (names start with the time)."""
        names = [v["name"] for v in self._list(client, hid) if v["name"].startswith(f"{self.prefix}-{hid}-{kind}-")]
        runs = sorted({n.rsplit("-", 1)[0] if kind == "s" else n for n in names})
        old = set(runs[:-keep]) if len(runs) > keep else set()
        for name in names:
            if (name.rsplit("-", 1)[0] if kind == "s" else name) in old:
                try:
                    client.delete_variable_by_name(name)
                except Exception as exc:  # noqa: BLE001 - pruning is housekeeping: the next write tries again
                    log.info("CaRE: could not delete the old usage variable %s (%s)", name, type(exc).__name__)

    def fingerprint(self, deployment: str) -> tuple[int, str] | None:
        """(number of sample variables, digest of their names and update times), None without samples."""
        found = self._read(deployment, "s", "list the usage history")
        if not found:
            return None
        return len(found), hashlib.sha1("|".join(f"{v['name']}@{v.get('updated')}" for v in found).encode()).hexdigest()

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
        out = pd.concat(frames, ignore_index=True)[COLUMNS]
        return out.sort_values("time", kind="stable").reset_index(drop=True)

    # -- run records ---------------------------------------------------------------------------
    def append_run(self, deployment: str, record: RunRecord) -> None:
        """Write one completed run's record; deletes the history's records beyond :data:`MAX_RUN_RECORDS`."""
        hid = history_id(deployment)
        run = re.sub(r"[^a-z0-9-]", "-", record.run_id.lower())[:60]
        name = f"{self.prefix}-{hid}-r-{record.finished.strftime('%Y%m%dt%H%M%S')}-{run}"
        try:
            with self._client() as client:
                self._put(client, name, {"history": deployment, **record.to_dict()}, self._tags(hid), new=True)
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
