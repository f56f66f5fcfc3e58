"""Record the CPU and memory a flow run really used, so usage forecasts learn from real runs.

- :class:`UsageSampler` samples a process tree (the process ``pid`` and all its descendants,
  default: this process) every ``interval_s`` seconds in a background thread: CPU in
  vCPU-equivalents (``1.0`` = one core busy for the whole interval; the CPU of children that
  exited, however short-lived, is kept) and memory in GiB: the proportional set size (PSS: a
  page shared by N processes counts 1/N in each, so forked workers are not counted once each) on
  Linux, the resident set size (RSS) where PSS cannot be read (other systems, a process of
  another user); :attr:`UsageSample.memory_kind` says which. Use it as a context manager around
  the flow body.
- :class:`UsageStore` keeps the samples per deployment in CSV files under a folder
  (``$CARE_USAGE_DIR`` or ``~/.cache/care/usage``): ``append(deployment, samples)`` and
  ``load(deployment) -> DataFrame``. ``@care`` stores 10-second rows
  (``learned_sizing.record_usage``): ``cpu_vcpu`` and ``memory_gib`` are the bucket's largest
  samples, the optional :data:`CPU_MEAN_COLUMN` its mean CPU (rows written before it existed
  lack it: :func:`cpu_vcpu_means` then falls back to the maximum, an upper bound), and the optional
  :data:`CAPACITY_COLUMN` the vCPU the run could use. Other back
  ends implement the same two methods of :class:`UsageStoreBackend`:
  :class:`care_flows.aws.usage_store.S3UsageStore` keeps histories under an S3 prefix
  (``CARE_USAGE_STORE=s3://bucket/prefix``, :func:`default_usage_store`),
  :class:`care_flows.usage_variables.PrefectVariableUsageStore` in Prefect variables
  (``CARE_USAGE_STORE=prefect-variables://care-usage``);
  nothing in this module touches the network.

>>> import tempfile
>>> store = UsageStore(tempfile.mkdtemp())
>>> with UsageSampler(interval_s=0.05) as sampler:
...     _ = sum(i * i for i in range(200_000))
>>> store.append("etl/nightly", sampler.samples)
>>> frame = store.load("etl/nightly")
>>> list(frame.columns)  # the local store always writes the optional columns (the mean is empty here: raw samples)
['time', 'cpu_vcpu', 'memory_gib', 'n_processes', 'cpu_vcpu_mean', 'capacity_vcpu']
>>> bool((frame["memory_gib"] > 0).all())
True
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import pandas as pd
import psutil

try:  # POSIX; elsewhere appends are single writes without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from care_flows.errors import CareError, ConfigError, DataError

log = logging.getLogger("care_flows.usage")

__all__ = ["KEEP_ROWS", "KEEP_RUN_RECORDS", "UsageSample", "RunRecord", "UsageSampler", "is_prefect_server", "UsageStoreBackend", "UsageStore", "usage_series", "running_seconds", "samples_frame", "safe_history_name",
           "default_usage_dir", "default_usage_store", "cpu_vcpu_means", "COLUMNS", "CPU_MEAN_COLUMN", "CAPACITY_COLUMN", "stored_columns"]

COLUMNS = ["time", "cpu_vcpu", "memory_gib", "n_processes"]
"""The columns every usage sample and stored row has."""
CPU_MEAN_COLUMN = "cpu_vcpu_mean"
"""Optional column: a stored row's mean CPU over its bucket (``cpu_vcpu`` is the bucket's largest
sample). Kept by :func:`samples_frame` and every store when present; empty (NaN) when not known."""
CAPACITY_COLUMN = "capacity_vcpu"
"""Optional column: the vCPU the sampled process tree could use when the row was recorded
(:func:`usable_cpus`: its CPU affinity, at most a cgroup quota). A run whose CPU peak reached it was
CPU-bound: its usage says it used the cores it had, not how many it would use (learned sizing
says so, and caps the CPU need at the policy's ``max_vcpu``; review 44b M3). Kept like
:data:`CPU_MEAN_COLUMN`; empty (NaN) in rows written before it existed."""
OPTIONAL_COLUMNS = [CPU_MEAN_COLUMN, CAPACITY_COLUMN]
"""The optional columns, in the order the local store writes them after :data:`COLUMNS`."""
KEEP_ROWS = 8 * 14 * 1440
"""The local store keeps the newest this many sample rows (pruned when it holds half as many again):
sizing reads the last 14 days of running at one-minute steps
(:data:`care_flows.orchestration.learned_sizing.MAX_STEPS`), at most 6 rows a minute (10-s buckets)
and more only where runs overlap. About 14 MB; a 24/7 service reaches it after about 19 days."""
KEEP_RUN_RECORDS = 200
"""The local store keeps the newest this many run records (learned durations read the newest 20)."""
_GIB = 1024.0**3


def usable_cpus(cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup") -> float:
    """The most vCPU this process (and the children that inherit its limits) can use: the logical CPUs
    it may run on (its affinity, e.g. ``taskset``), and at most the smallest CPU quota of its cgroups
    (a container's ``--cpus``, a systemd ``CPUQuota=``): cgroup v2 ``cpu.max`` and cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, from its own cgroup (``/proc/self/cgroup``) up to the
    root (reviews 44d L3, 45b L2).

    >>> 0 < usable_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        n = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        n = float(psutil.cpu_count(logical=True) or os.cpu_count() or 1)
    quotas = [q for q in map(_cpu_quota, _cgroup_dirs(Path(cgroup_root), Path(proc_cgroup))) if q is not None]
    return min([n, *(max(q, 0.01) for q in quotas)])


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The cgroup folders whose CPU quota bounds this process: for each of its v2 and v1 ``cpu``
    hierarchies, its own cgroup and every parent up to the mount point (and the v2 root, which a
    container with its own cgroup namespace sees as its cgroup)."""
    dirs = [root]
    try:
        lines = proc_cgroup.read_text(errors="replace").splitlines()  # it runs at import: nothing in it may raise (review 45d L1)
    except (OSError, ValueError):
        return dirs
    for line in lines:
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2 (hybrid systems mount it at <root>/unified)
            mounts = [root, root / "unified"]
        elif "cpu" in controllers.split(","):  # v1: mounted as cpu,cpuacct, with a cpu link on most systems
            mounts = [root / controllers, root / "cpu"]
        else:
            continue
        for mount in mounts:
            here = mount / path.strip("/")
            while True:
                dirs.append(here)
                if here == mount or mount not in here.parents:
                    break
                here = here.parent
    return list(dict.fromkeys(dirs))


def _cpu_quota(folder: Path) -> float | None:
    """The CPU quota of one cgroup folder in CPUs (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), None when it sets none or cannot be read."""
    try:
        quota, period = (folder / "cpu.max").read_text(errors="replace").split()[:2]
        return float(quota) / float(period) if quota != "max" and float(period) > 0 else None
    except (OSError, ValueError):
        pass
    try:
        quota_us = float((folder / "cpu.cfs_quota_us").read_text(errors="replace").strip())
        period_us = float((folder / "cpu.cfs_period_us").read_text(errors="replace").strip())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None  # -1: no quota
    except (OSError, ValueError):
        return None


_CPU_COUNT = usable_cpus()
"""The most vCPU a process tree here can use: the bound of a measured CPU rate."""
_PSS_CPU_SHARE = 0.02
"""Periodic re-reads of every process's PSS take at most this share of one core (between reads: last PSS +
RSS change). A new process in the tree gets its own PSS read at once; only a large one (a fork of a
big process, :data:`_PSS_FORK_RSS_BYTES`) forces a re-read of every process, because it changes every
sharer's PSS (review 33 #4: re-reading the tree for every short command cost 4.5-5.7 % of a core at
4-8 GiB resident)."""
_PSS_FORK_RSS_BYTES = 64 * 2**20
"""A new process with at least this RSS forces a PSS re-read of the whole tree (a fork shares its parent's pages)."""


@dataclass(frozen=True)
class UsageSample:
    """One sample: UTC time, CPU in vCPU-equivalents over the last interval, memory in GiB, processes.

    ``memory_kind``: what ``memory_gib`` sums, ``"pss"`` (proportional set size, Linux),
    ``"rss"`` (resident set size: shared pages counted in every process that maps them) or
    ``"pss+rss"`` (PSS where it could be read, RSS for the rest); None when not known (a sample
    read back from a store, which keeps :data:`COLUMNS` only). ``capacity_vcpu``: the vCPU the
    tree could use (:func:`usable_cpus`; :data:`CAPACITY_COLUMN`), None when not known.
    """

    time: pd.Timestamp
    cpu_vcpu: float
    memory_gib: float
    n_processes: int
    memory_kind: str | None = None
    capacity_vcpu: float | None = None


def is_prefect_server(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a Prefect API server: the temporary one Prefect starts for a local run
    without ``PREFECT_API_URL`` (``python -m uvicorn ... prefect.server.api.server:create_app``) or
    ``prefect server start``. It serves Prefect, not the flow, so its CPU and memory are not the flow's.

    >>> is_prefect_server(psutil.Process())
    False
    """
    try:
        args = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if any("prefect.server" in a for a in args):
        return True
    words = [os.path.basename(a) for a in args]
    uvicorn = any(w in ("uvicorn", "uvicorn.exe") for w in words)
    prefect_cli = any(w in ("prefect", "prefect.exe") for w in words)
    return (uvicorn and any("prefect" in a for a in args)) or (prefect_cli and "server" in args and "start" in args)


@dataclass(frozen=True)
class RunRecord:
    """One completed run of a flow: when it finished and how long its body ran (all its
    segments together, waiting excluded), for learning the flow's expected duration.

    >>> r = RunRecord.from_dict({"run_id": "a1", "finished": "2026-01-01T02:00:00Z", "duration_s": 754.5})
    >>> r.duration_s, r.to_dict()["finished"]
    (754.5, '2026-01-01T02:00:00+00:00')
    >>> RunRecord.from_dict({"run_id": "a1", "finished": "2026-01-01T02:00:00Z", "duration_s": -1})
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: run record a1 has duration_s -1; a run's duration is a finite number of seconds >= 0
    """

    run_id: str
    finished: pd.Timestamp
    duration_s: float

    def to_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "finished": self.finished.isoformat(), "duration_s": round(float(self.duration_s), 3)}

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> "RunRecord":
        """Parse a stored record; a malformed one raises :class:`DataError` naming it."""
        try:
            run_id, duration_s = str(doc["run_id"]), float(doc["duration_s"])  # type: ignore[arg-type]
            finished = pd.Timestamp(doc["finished"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"run record {str(doc)[:120]} is malformed ({type(exc).__name__}: {exc}); "
                            "it needs run_id, finished (ISO 8601) and duration_s") from None
        if finished.tzinfo is None:
            raise DataError(f"run record {run_id} has a finished time without an offset ({doc['finished']}); use ISO 8601 with Z or +00:00")
        if not math.isfinite(duration_s) or duration_s < 0:
            raise DataError(f"run record {run_id} has duration_s {duration_s:g}; a run's duration is a finite number of seconds >= 0")
        return cls(run_id=run_id, finished=finished.tz_convert("UTC"), duration_s=duration_s)


class UsageSampler:
    """Sample the CPU and memory of a process tree at a fixed interval in a daemon thread.

    A Prefect server subprocess in the tree (the temporary server of a local run, see
    :func:`is_prefect_server`) and its children are left out: they are Prefect's, not the flow's.

    CPU is the CPU seconds the tree used between two samples, divided by the wall-clock time
    between them. Each live process counts its own user+system time plus ``children_user`` +
    ``children_system``: the CPU of the children it has reaped (and of theirs, recursively), so a
    child that starts and exits between two samples is not lost, nor the last interval of one
    that was seen. A process seen at one sample and gone at the next has been reaped into its
    parent's ``children_*``: what was already counted of it is taken off that parent's increase,
    so nothing counts twice (an increase is never negative). A Prefect server reaped by the flow
    is taken off the same way. Memory is the tree's PSS (see the module docstring; RSS where PSS
    cannot be read, :attr:`memory_kind`). ``samples`` holds :class:`UsageSample` objects. With
    ``on_flush``, the thread hands new samples to it every ``flush_every_s`` seconds (and
    :meth:`flush` hands over the rest), so a killed process still leaves its samples behind.
    """

    def __init__(self, pid: int | None = None, interval_s: float = 1.0, *,
                 on_flush: Callable[[pd.DataFrame], None] | None = None, flush_every_s: float = 60.0) -> None:
        if interval_s <= 0:
            raise ConfigError(f"interval_s {interval_s} is not positive; use e.g. 1.0")
        if flush_every_s <= 0:
            raise ConfigError(f"flush_every_s {flush_every_s} is not positive; use e.g. 60")
        self.on_flush = on_flush
        self.flush_every_s = float(flush_every_s)
        self._flushed = 0
        self._flush_lock = threading.Lock()
        self.pid = os.getpid() if pid is None else int(pid)
        try:
            self._root = psutil.Process(self.pid)
        except psutil.NoSuchProcess as exc:
            raise ConfigError(f"no process with pid {self.pid}; give the pid of a running process") from exc
        self.interval_s = float(interval_s)
        self.samples: list[UsageSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # per process (pid, start time) at the last sample: own CPU s, reaped children's CPU s,
        # parent's key, whether it is an excluded Prefect server (see _cpu_and_rss)
        self._cpu_state: dict[tuple[int, float], tuple[float, float, tuple[int, float] | None, bool]] = {}
        self._zombies: set[tuple[int, float]] = set()  # children that exited and are not reaped yet (not counted as processes)
        self._cpu_total = 0.0  # CPU seconds accounted since the first sample
        self._use_pss = True  # until a system without PSS says otherwise
        self._pss_last: dict[tuple[int, float], tuple[float, float]] = {}  # key -> (PSS, RSS) at the last PSS read
        self._pss_seen: set[tuple[int, float]] = set()  # the processes of the last PSS read
        self._pss_next = 0.0  # monotonic time of the next PSS read of every process
        self._memory_kinds: set[str] = set()
        self._last_kinds: set[str] = set()
        self._server_seen: dict[tuple[int, float], bool] = {}
        self._last_total = 0.0
        self._last_wall = 0.0
        self._pass_wall: float | None = None  # when the last pass began reading CPU times
        self._before_last = (0.0, 0.0)  # (_last_total, _last_wall) before the last sample

    @property
    def memory_kind(self) -> str | None:
        """What the samples' ``memory_gib`` sums: ``"pss"``, ``"rss"`` or ``"pss+rss"`` (None before a sample)."""
        return _memory_kind(self._memory_kinds)

    def _tree(self) -> list[psutil.Process]:
        """The root and its descendants, without a Prefect server subprocess and its children."""
        return self._tree_parts()[0]

    def _tree_parts(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """The kept processes (parents before children, as psutil lists them) and the Prefect
        servers left out whose parent is kept (a kept process that reaps one gets its CPU)."""
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return [], []
        skipped: set[int] = set()
        kept, servers = [self._root], []
        for proc in procs[1:]:
            try:
                ppid = proc.ppid()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if ppid in skipped:
                skipped.add(proc.pid)
            elif self._is_prefect_server(proc):
                skipped.add(proc.pid)
                servers.append(proc)
            else:
                kept.append(proc)
        return kept, servers

    def _is_prefect_server(self, proc: psutil.Process) -> bool:
        """Memoised :func:`is_prefect_server` per process (pid + start time)."""
        try:
            key = (proc.pid, proc.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False
        if key not in self._server_seen:
            self._server_seen[key] = is_prefect_server(proc)
        return self._server_seen[key]

    def _read_cpu(self, strict: bool) -> tuple[list[tuple[psutil.Process, tuple[int, float]]], dict] | None:
        """One pass over the tree, parents before children: ``(kept processes read, {key: (own CPU s,
        reaped children's CPU s, parent key, excluded)})``. ``strict``: None when a listed process
        vanished during the pass (then whether its parent's reading holds its CPU is unknown)."""
        kept, servers = self._tree_parts()
        self._pass_wall = time.monotonic()  # the CPU times are read from here on (see sample)
        state: dict[tuple[int, float], tuple[float, float, tuple[int, float] | None, bool]] = {}
        key_of: dict[int, tuple[int, float]] = {}
        read: list[tuple[psutil.Process, tuple[int, float]]] = []
        zombies: set[tuple[int, float]] = set()
        for proc, excluded in [*((p, False) for p in kept), *((p, True) for p in servers)]:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    t = proc.cpu_times()
                    ppid = proc.ppid()
                    if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped: its CPU counts, it is no process running
                        zombies.add(key)
            except (psutil.ZombieProcess, psutil.AccessDenied) as exc:  # keep what was read last time
                old = next((k for k in self._cpu_state if k[0] == proc.pid), None)
                if old is not None:
                    state[old] = self._cpu_state[old]
                    key_of[proc.pid] = old
                    if isinstance(exc, psutil.ZombieProcess):  # exited, not yet reaped: its CPU counts, it is no process running
                        zombies.add(old)
                continue
            except psutil.NoSuchProcess:
                if strict:
                    return None
                continue
            # every parent is read before its children: a child read here was not reaped when its
            # parent was read, so the parent's children_* does not hold it yet
            state[key] = (t.user + t.system, t.children_user + t.children_system, key_of.get(ppid), excluded)
            key_of[proc.pid] = key
            if not excluded:
                read.append((proc, key))
        self._zombies = zombies
        return read, state

    def _cpu_and_rss(self) -> tuple[float, float, int]:
        """(CPU seconds accounted since the first sample, memory in bytes, processes)."""
        for _ in range(3):  # a process that exits during the pass: read the tree again
            got = self._read_cpu(strict=True)
            if got is not None:
                break
        else:
            got = self._read_cpu(strict=False)
        procs, now = got
        prev = self._cpu_state
        if prev:
            # a process gone since the last sample was reaped into the children_* of its nearest
            # ancestor still here: what was counted of it (a server: all of it) comes off that increase
            debit: dict[tuple[int, float], float] = {}
            for key, (own, reaped, parent, _excluded) in prev.items():
                if key in now or _still_running(key):  # still here, or alive outside the tree (orphaned)
                    continue
                while parent is not None and parent not in now:
                    parent = prev[parent][2] if parent in prev else None
                if parent is not None:
                    debit[parent] = debit.get(parent, 0.0) + own + reaped
            for key, (own, reaped, _parent, excluded) in now.items():
                if excluded:
                    continue
                own0, reaped0, _, _ = prev.get(key, (0.0, 0.0, None, False))  # a new process: all of its CPU is new
                self._cpu_total += max(own - own0, 0.0) + max(reaped - reaped0 - debit.get(key, 0.0), 0.0)
        self._cpu_state = now
        memory, kinds = self._memory(procs)
        self._last_kinds = kinds
        self._memory_kinds |= kinds
        return self._cpu_total, memory, sum(1 for k, v in now.items() if not v[3] and k not in self._zombies)

    def _memory(self, procs: list[tuple[psutil.Process, tuple[int, float]]]) -> tuple[float, set[str]]:
        """(bytes, kinds): the tree's PSS, or RSS for the processes whose PSS cannot be read.

        Reading PSS walks a process's page tables (``smaps_rollup``: about 13 ms of CPU per GiB
        resident here, against 0.02 ms for RSS), so the PSS of every process is read again only
        after the last read's CPU time / :data:`_PSS_CPU_SHARE`, or when a large process (RSS of at
        least :data:`_PSS_FORK_RSS_BYTES`, e.g. a fork of the flow: it changes every sharer's PSS)
        joins the tree; a small new process (a command) has only its own PSS read. Between reads a
        process counts its last PSS plus its RSS change since (growth counted in full, never below
        what it has)."""
        wall = time.monotonic()
        started = time.thread_time()
        full = self._use_pss and wall >= self._pss_next
        new = {key for _, key in procs if key not in self._pss_seen} if self._use_pss and not full else set()
        for proc, key in procs:  # a big new process (a fork) changes every sharer's PSS: read them all
            if key in new and not full:
                try:
                    full = proc.memory_info().rss >= _PSS_FORK_RSS_BYTES
                except psutil.Error:
                    pass
        memory, kinds, last = 0.0, set(), {}
        for proc, key in procs:
            try:
                with proc.oneshot():
                    pss = None
                    if full or key in new:  # every process, or only the new ones (small commands)
                        try:
                            info = proc.memory_full_info()
                            pss = getattr(info, "pss", None)
                            self._use_pss = pss is not None  # no PSS on this system (not Linux): RSS from now on
                        except psutil.AccessDenied:  # e.g. a process of another user: its RSS
                            info = proc.memory_info()
                    else:
                        info = proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if pss is not None:
                last[key] = (float(pss), float(info.rss))
                used, kind = float(pss), "pss"
            elif not full and key in self._pss_last:
                pss0, rss0 = self._pss_last[key]
                used, kind = max(pss0 + info.rss - rss0, 0.0), "pss"
            else:
                used, kind = float(info.rss), "rss"
            memory += used
            kinds.add(kind)
        if full:
            self._pss_last, self._pss_seen = last, {key for _, key in procs}
            self._pss_next = wall + (time.thread_time() - started) / _PSS_CPU_SHARE
        elif new:  # the new processes' first PSS; the others keep theirs until the next full read
            self._pss_last.update(last)
            self._pss_seen |= new
            self._pss_next += (time.thread_time() - started) / _PSS_CPU_SHARE
        return memory, kinds

    def sample(self, *, min_elapsed_s: float = 0.0) -> UsageSample:
        """Take one sample now (also called by the thread); the first one reports 0 vCPU.

        The CPU rate is over the time since the previous sample, at least ``min_elapsed_s``, and at
        most the machine's logical CPUs (a physical bound: CPU time is counted in ticks, so a rate
        over a few milliseconds can read as more cores than there are; review 44b H1).
        """
        self._pass_wall = None
        before = time.monotonic()
        total, memory, n = self._cpu_and_rss()
        # when the CPU times were read: after the tree walk, which waits for the GIL at each /proc read while the
        # flow's own Python code is busy (16-281 ms here), so a time taken before it read 1 vCPU as 2 (review 47c H1)
        wall = before if self._pass_wall is None else self._pass_wall
        elapsed = max(wall - self._last_wall, min_elapsed_s) if self._last_wall else 0.0
        cpu = min(max(total - self._last_total, 0.0) / elapsed, _CPU_COUNT) if elapsed > 0 else 0.0
        self._before_last = (self._last_total, self._last_wall)
        self._last_total, self._last_wall = total, wall
        s = UsageSample(time=pd.Timestamp.now(tz="UTC"), cpu_vcpu=cpu, memory_gib=memory / _GIB, n_processes=n,
                        memory_kind=_memory_kind(self._last_kinds), capacity_vcpu=_CPU_COUNT)
        self.samples.append(s)
        return s

    def _run(self) -> None:
        last_flush = time.monotonic()
        failures = 0
        while not self._stop.wait(self.interval_s):
            self.sample()
            if self.on_flush is not None and time.monotonic() - last_flush >= self.flush_every_s:
                try:
                    self.flush()
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - keep sampling; the batch is retried next time
                    failures += 1  # said once, then every 10th time: a store that stays down must not fill the log (review 44d L2)
                    if failures % 10 == 1:
                        log.warning("usage flush failed%s (%s); retrying with the next batch",
                                    "" if failures == 1 else f" {failures} times in a row", " ".join(str(exc).split())[:200])
                last_flush = time.monotonic()

    @property
    def pending(self) -> int:
        """How many samples have not been handed to ``on_flush`` yet (a failed flush keeps them here)."""
        return len(self.samples) - self._flushed

    def flush(self) -> None:
        """Hand the samples not flushed yet to ``on_flush`` (from the thread every ``flush_every_s``,
        so a run killed with SIGKILL, e.g. by the OOM killer, leaves all but its last seconds)."""
        if self.on_flush is None:
            return
        with self._flush_lock:  # one flush at a time; samples count as flushed only once handed over
            new = self.samples[self._flushed:]
            if new:
                self.on_flush(samples_frame(new))
                self._flushed += len(new)

    def start(self) -> "UsageSampler":
        """Start sampling in a daemon thread (one baseline sample is taken at once)."""
        if self._thread is not None:
            return self
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"care-usage-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[UsageSample]:
        """Stop the thread, take a final sample, and return all samples.

        A final interval under half ``interval_s`` is not measured on its own (over a few
        milliseconds, one 10 ms CPU tick would read as vCPUs): the thread's last sample is replaced
        by one over both intervals, or, when it was already flushed (kept in the store), the final
        sample takes its CPU rate over both intervals. A run shorter than half ``interval_s`` (only
        the baseline sample before it) has its CPU rate taken over half ``interval_s``: its few
        ticks are spread over that, not read as a rate over milliseconds (review 44b H1). A replaced
        sample's memory and process count stay in its replacement (the larger of the two): a peak
        freed just before the body returned is still the run's (review 45b M2).
        """
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            short = time.monotonic() - self._last_wall < self.interval_s / 2
            dropped = None
            with self._flush_lock:
                if len(self.samples) >= 2 and short:
                    if len(self.samples) > self._flushed:
                        dropped = self.samples.pop()
                    self._last_total, self._last_wall = self._before_last
            last = self.sample(min_elapsed_s=self.interval_s / 2 if short else 0.0)
            if dropped is not None:
                self.samples[-1] = replace(last, memory_gib=max(last.memory_gib, dropped.memory_gib),
                                           n_processes=max(last.n_processes, dropped.n_processes))
        return self.samples

    def __enter__(self) -> "UsageSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def to_frame(self) -> pd.DataFrame:
        """The samples as a DataFrame with :data:`COLUMNS` and :data:`CAPACITY_COLUMN`."""
        return samples_frame(self.samples)


def _memory_kind(kinds: set[str]) -> str | None:
    """``{"pss"}`` -> ``"pss"``, ``{"pss", "rss"}`` -> ``"pss+rss"``, nothing -> None."""
    return "+".join(sorted(kinds)) or None


def _still_running(key: tuple[int, float]) -> bool:
    """Whether the process (pid, start time) still exists (e.g. orphaned out of the tree, not reaped by it)."""
    try:
        return psutil.Process(key[0]).create_time() == key[1]
    except psutil.Error:
        return False


def samples_frame(samples: Iterable[UsageSample] | pd.DataFrame, *, bad_rows: str = "raise") -> pd.DataFrame:
    """Samples as a :data:`COLUMNS` frame with UTC times and numbers, plus :data:`CPU_MEAN_COLUMN`
    and :data:`CAPACITY_COLUMN` when the input has them (samples: the capacity when one of them
    knows it; empty or unparsable cells: NaN, "not known"; a mean above the row's ``cpu_vcpu`` is
    cut to it).

    ``bad_rows``: a row whose time is not ISO 8601, or whose numbers do not parse or are negative
    or infinite, raises :class:`DataError` (``"raise"``) or is dropped (``"drop"``, for reading a
    history that one bad write must not make unusable).

    >>> rows = pd.DataFrame({"time": ["2026-01-01T00:00:00Z"] * 2, "cpu_vcpu": [1.5, 1.5], "memory_gib": 1.0,
    ...                      "n_processes": 1, "cpu_vcpu_mean": [0.6, None]})
    >>> samples_frame(rows)["cpu_vcpu_mean"].tolist()
    [0.6, nan]

    >>> samples_frame(pd.DataFrame({"time": ["2026-01-01T00:00:00+00:00"], "cpu_vcpu": [-1.0], "memory_gib": [0.5], "n_processes": [1]}))
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: usage sample row 0 has a negative or infinite cpu_vcpu (-1); usage is >= 0 vCPU and GiB
    """
    if isinstance(samples, pd.DataFrame):
        missing = [c for c in COLUMNS if c not in samples.columns]
        if missing:
            raise DataError(f"usage samples lack column(s) {missing}; give columns {COLUMNS}")
        frame = samples[stored_columns(samples)].copy()
    else:
        samples = list(samples)
        frame = pd.DataFrame([(s.time, s.cpu_vcpu, s.memory_gib, s.n_processes) for s in samples], columns=COLUMNS)
        if any(s.capacity_vcpu is not None for s in samples):
            frame[CAPACITY_COLUMN] = [math.nan if s.capacity_vcpu is None else s.capacity_vcpu for s in samples]
    # ISO8601: stored times mix "…:39.284123+00:00" and "…:40+00:00" (a sample on a whole second)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601", errors="coerce")
    numeric = [c for c in frame.columns if c != "time"]
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    unparsed = frame["time"].isna() | frame[["cpu_vcpu", "memory_gib"]].isna().any(axis=1)
    values = frame[numeric]
    out_of_range_cells = (values < 0) | values.isin([float("inf"), float("-inf")])
    out_of_range = ~unparsed & out_of_range_cells.any(axis=1)
    bad = unparsed | out_of_range
    if bad.any():
        if bad_rows == "raise":
            first = frame.index[bad.to_numpy()][0]
            if unparsed.loc[first]:
                raise DataError(f"usage sample row {first} has a time or value that does not parse; give ISO 8601 times and numbers")
            col = next(c for c in numeric if bool(out_of_range_cells.loc[first, c]))
            raise DataError(f"usage sample row {first} has a negative or infinite {col} ({float(frame.loc[first, col]):g}); "
                            "usage is >= 0 vCPU and GiB")
        frame = frame[~bad].reset_index(drop=True)
    frame["n_processes"] = frame["n_processes"].fillna(0).astype(int)
    if CPU_MEAN_COLUMN in frame:
        frame[CPU_MEAN_COLUMN] = frame[CPU_MEAN_COLUMN].astype(float).clip(upper=frame["cpu_vcpu"])
    return frame


def stored_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a store keeps of ``frame``: :data:`COLUMNS`, and those of :data:`OPTIONAL_COLUMNS` it has."""
    return COLUMNS + [c for c in OPTIONAL_COLUMNS if c in frame.columns]


def cpu_vcpu_means(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(each row's mean CPU in vCPU, whether it is the row's ``cpu_vcpu`` standing in for a mean
    that was not stored): rows without :data:`CPU_MEAN_COLUMN` (written before it existed) give
    their maximum, an upper bound of their mean.

    >>> rows = pd.DataFrame({"cpu_vcpu": [1.5, 1.5, 2.0], "cpu_vcpu_mean": [0.6, 0.5, None]})
    >>> means, from_max = cpu_vcpu_means(rows)
    >>> means.tolist(), from_max.tolist()
    ([0.6, 0.5, 2.0], [False, False, True])
    """
    cpu = frame["cpu_vcpu"].astype(float)
    if CPU_MEAN_COLUMN not in frame.columns:
        return cpu, pd.Series(True, index=frame.index)
    stored = frame[CPU_MEAN_COLUMN].astype(float)
    return stored.fillna(cpu), stored.isna()


def safe_history_name(name: str) -> str:
    """A usage history's name as a file or S3 key part: ``/`` -> ``__``, other unsafe characters -> ``_``.

    >>> safe_history_name("etl/nightly run")
    'etl__nightly_run'
    """
    if not name or not name.strip():
        raise ConfigError("usage history name is empty; give the flow name or the policy's usage_key")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip().replace("/", "__"))


def usage_series(frame: pd.DataFrame, column: str = "cpu_vcpu", *, step_s: float = 300.0, how: str = "max") -> pd.Series:
    """Samples (a :data:`COLUMNS` frame) on a regular ``step_s`` grid, empty steps dropped.

    ``column`` :data:`CPU_MEAN_COLUMN`: the rows' mean CPU, their ``cpu_vcpu`` where no mean is
    stored (:func:`cpu_vcpu_means`)."""
    if column not in ("cpu_vcpu", "memory_gib", "n_processes", CPU_MEAN_COLUMN):
        raise ConfigError(f"column {column!r} is not stored; use cpu_vcpu, memory_gib, n_processes or {CPU_MEAN_COLUMN}")
    if how not in ("max", "mean"):
        raise ConfigError(f"how {how!r} is not known; use 'max' (for sizing) or 'mean'")
    if step_s <= 0:
        raise ConfigError(f"step_s {step_s!r} is not positive; use e.g. 300")
    if frame.empty:
        return pd.Series([], dtype=float, name=column, index=pd.DatetimeIndex([], tz="UTC"))
    rows = samples_frame(frame)
    values = cpu_vcpu_means(rows)[0] if column == CPU_MEAN_COLUMN else rows[column].astype(float)
    grouped = values.set_axis(pd.DatetimeIndex(rows["time"])).resample(pd.Timedelta(seconds=step_s))
    out = grouped.max() if how == "max" else grouped.mean()
    return out.dropna().rename(column)


def running_seconds(frame: pd.DataFrame, *, step_s: float = 10.0) -> float:
    """Seconds of running a history holds: the number of distinct ``step_s`` buckets with a sample,
    times ``step_s``.

    ``@care`` stores one row per 10-second bucket, labelled with the bucket's start
    (``learned_sizing.RECORD_STEP_S``), so a 28-second run from 12:50.4 to 13:18.4 is three rows
    (12:50, 13:00, 13:10) and counts 30 s, not the two minutes its rows touch. Rows a periodic
    flush split (two rows with one label) count once. Samples sparser than ``step_s`` count
    ``step_s`` each.

    >>> t = pd.to_datetime(["2026-01-01T02:12:50Z", "2026-01-01T02:13:00Z", "2026-01-01T02:13:10Z", "2026-01-01T02:13:10Z"])
    >>> running_seconds(pd.DataFrame({"time": t, "cpu_vcpu": 1.0, "memory_gib": 0.5, "n_processes": 1}))
    30.0
    """
    if step_s <= 0:
        raise ConfigError(f"step_s {step_s!r} is not positive; use e.g. 10")
    if frame.empty:
        return 0.0
    times = pd.DatetimeIndex(samples_frame(frame)["time"])
    return float(times.floor(pd.Timedelta(seconds=step_s)).nunique() * step_s)


class UsageStoreBackend(Protocol):
    """What a usage store does; the S3 store and the Prefect variables store implement the same."""

    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame, *, run_id: str | None = None) -> None:
        """Add samples; the calls of one run carry the same ``run_id`` (each with new samples only)."""

    def load(self, deployment: str) -> pd.DataFrame: ...

    # Optional (the local and the S3 store have them): ``append_run(deployment, record: RunRecord)``
    # and ``load_runs(deployment) -> list[RunRecord]`` (oldest first), the completed runs' durations.


_STORES: dict[str, "UsageStoreBackend"] = {}


def default_usage_store() -> "UsageStoreBackend":
    """The store ``@care`` runs record to and planning reads from.

    ``$CARE_USAGE_STORE`` = ``s3://bucket/prefix`` -> :class:`care_flows.aws.usage_store.S3UsageStore`
    (for flows on instances that do not outlive their run), ``prefect-variables://prefix`` ->
    :class:`care_flows.usage_variables.PrefectVariableUsageStore` (in the Prefect server or Cloud the
    runs report to: nothing else to set up), any other value -> a local
    :class:`UsageStore` in that folder; unset -> ``UsageStore()`` (``$CARE_USAGE_DIR`` or
    ``~/.cache/care/usage``). One store object per URL per process (the S3 store caches objects).

    >>> import os, tempfile
    >>> os.environ["CARE_USAGE_STORE"] = tempfile.mkdtemp()
    >>> type(default_usage_store()).__name__
    'UsageStore'
    >>> del os.environ["CARE_USAGE_STORE"]
    """
    spec = os.environ.get("CARE_USAGE_STORE", "").strip()
    if not spec:
        return UsageStore()
    if spec not in _STORES:
        if spec.startswith("s3://"):
            from care_flows.aws.usage_store import S3UsageStore

            _STORES[spec] = S3UsageStore(spec)
        elif spec.startswith("prefect-variables://"):
            from care_flows.usage_variables import PrefectVariableUsageStore

            _STORES[spec] = PrefectVariableUsageStore(spec)
        elif "://" in spec:
            raise ConfigError(f"CARE_USAGE_STORE {spec!r} is neither s3://<bucket>/<prefix>, prefect-variables://<prefix> nor a local folder")
        else:
            _STORES[spec] = UsageStore(spec)
    return _STORES[spec]


def default_usage_dir() -> Path:
    """``$CARE_USAGE_DIR`` when set, else ``~/.cache/care/usage``."""
    env = os.environ.get("CARE_USAGE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "care" / "usage"


class UsageStore:
    """Local CSV store: one file per deployment (``<dir>/<safe name>.csv``), appended to.

    Rows are written with :data:`COLUMNS` and :data:`OPTIONAL_COLUMNS` (empty when not known). A
    file begun before an optional column existed keeps its shorter header: its newer rows carry the
    new columns as further fields, which :meth:`load` reads (older rows: NaN).

    Deployment names such as ``"flow/deployment"`` are made file-safe (``/`` and other characters
    become ``__``/``_``). ``load`` of an unknown deployment returns an empty frame.

    >>> import tempfile
    >>> import pandas as pd
    >>> store = UsageStore(tempfile.mkdtemp())
    >>> t = pd.date_range("2026-01-01", periods=3, freq="1s", tz="UTC")
    >>> store.append("etl/nightly", pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 2.0, "n_processes": 1}))
    >>> len(store.load("etl/nightly")), len(store.load("unknown"))
    (3, 0)
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_usage_dir()

    def path(self, deployment: str) -> Path:
        return self.directory / f"{safe_history_name(deployment)}.csv"

    def append(self, deployment: str, samples: Iterable[UsageSample] | pd.DataFrame, *, run_id: str | None = None) -> None:
        """Append under an exclusive lock in one write: runs of one flow that finish together (a
        process pool) never interleave rows or write the header twice. ``run_id`` is accepted for
        the :class:`UsageStoreBackend` protocol and not needed here (rows are appended)."""
        frame = samples_frame(samples)
        if frame.empty:
            return
        path = self.path(deployment)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = frame.reindex(columns=COLUMNS + OPTIONAL_COLUMNS)
        out["time"] = out["time"].map(lambda t: t.isoformat())
        _append_locked(path, lambda empty: out.to_csv(index=False, header=empty).encode(), keep_lines=KEEP_ROWS, header_lines=1)

    def fingerprint(self, deployment: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of the history file, None when there is none: changes on every append."""
        try:
            st = self.path(deployment).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def runs_path(self, deployment: str) -> Path:
        """``<dir>/<safe name>.runs.jsonl``: one JSON line per completed run (:class:`RunRecord`)."""
        return self.directory / f"{safe_history_name(deployment)}.runs.jsonl"

    def append_run(self, deployment: str, record: RunRecord) -> None:
        """Append one completed run's record (one locked write, like :meth:`append`)."""
        path = self.runs_path(deployment)
        path.parent.mkdir(parents=True, exist_ok=True)
        _append_locked(path, (json.dumps(record.to_dict()) + "\n").encode(), keep_lines=KEEP_RUN_RECORDS)

    def load_runs(self, deployment: str) -> list[RunRecord]:
        """The completed runs recorded for ``deployment``, oldest first (malformed lines skipped with a warning).

        >>> import tempfile
        >>> store = UsageStore(tempfile.mkdtemp())
        >>> store.append_run("etl", RunRecord("r1", pd.Timestamp("2026-01-01T02:00:00Z"), 600.0))
        >>> [r.duration_s for r in store.load_runs("etl")], store.load_runs("other")
        ([600.0], [])
        """
        path = self.runs_path(deployment)
        if not path.exists():
            return []
        records, bad = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                records.append(RunRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, AttributeError, DataError):
                bad += 1
        if bad:
            log.warning("run records file %s: skipped %d malformed line(s); fix or delete them", path, bad)
        return sorted(records, key=lambda r: r.finished)

    def series(self, deployment: str, column: str = "cpu_vcpu", *, step_s: float = 300.0, how: str = "max") -> pd.Series:
        """Stored samples on a regular ``step_s`` grid (``max`` or ``mean`` per step), for the forecaster.

        Steps without samples (between runs) are dropped, so consecutive runs form one series of
        "while running" usage; feed ``.to_numpy()`` to :func:`care_flows.forecast.usage.forecast_usage`
        and the result to ``usage_need`` (``cpu_scale_vcpu=1.0``: the values are vCPU already).
        """
        return usage_series(self.load(deployment), column, step_s=step_s, how=how)

    def load(self, deployment: str) -> pd.DataFrame:
        path = self.path(deployment)
        if not path.exists() or path.stat().st_size == 0:  # empty: a first write cut back after a full disk (review 44e L2)
            return samples_frame([])
        torn: list[list[str]] = []  # lines with too many fields (a row torn by a full disk, joined with the next)

        def read(**kw: Any) -> pd.DataFrame:
            with path.open(encoding="utf-8") as fh:
                header = fh.readline().strip().split(",")
            full = COLUMNS + OPTIONAL_COLUMNS
            if len(COLUMNS) <= len(header) < len(full) and header == full[:len(header)]:  # begun before the newer columns: newer rows carry them as further fields
                return pd.read_csv(path, header=None, skiprows=1, names=full, index_col=False, **kw)
            return pd.read_csv(path, **kw)

        try:
            try:
                frame = read()
            except pd.errors.ParserError:  # one bad line costs that line, not the history (the slower parser only then)
                frame = read(engine="python", on_bad_lines=lambda fields: torn.append(fields))
        except UnicodeDecodeError:
            raise DataError(f"usage store file {path} is not UTF-8 text; fix or delete it to start over") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"usage store file {path} is malformed; delete it to start over") from exc
        if torn:
            log.warning("usage store file %s: skipped %d line(s) with too many fields (first: %s); fix or delete them",
                        path, len(torn), ",".join(torn[0])[:120])
        try:
            good = samples_frame(frame, bad_rows="drop")
        except DataError as exc:  # e.g. missing columns: say which file
            raise DataError(f"usage store file {path}: {exc}; fix or delete the file") from None
        if good.empty and len(frame):
            times = pd.to_numeric(frame["time"], errors="coerce")
            why = ("times are numbers (epoch?), but the history needs ISO 8601 times such as 2026-01-01T00:00:00+00:00"
                   if times.notna().all() else "each row needs an ISO 8601 time and numbers >= 0")
            raise DataError(f"usage store file {path}: no valid rows among {len(frame)}: {why}; fix or delete the file")
        if len(good) < len(frame):
            log.warning("usage store file %s: skipped %d malformed row(s) (times must be ISO 8601, values numbers >= 0)",
                        path, len(frame) - len(good))
        return good.sort_values("time", kind="stable").reset_index(drop=True)


def _open_locked(path: Path) -> int:
    """``path`` opened for reading and appending under an exclusive lock, on the file the path
    names now: a writer that waited for the lock while another pruned the file (replaced it)
    opens the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:  # replaced and not yet renamed into place: open again
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _append_locked(path: Path, data: bytes | Callable[[bool], bytes], *, keep_lines: int | None = None, header_lines: int = 0) -> None:
    """Append ``data`` to ``path`` in one write under an exclusive lock (``data(empty)`` when
    what is written depends on whether the file is empty, e.g. a CSV header). With
    ``keep_lines``, a file that grew past about 1.5 x that many lines is rewritten (a temporary
    file, then :func:`os.replace`, still under the lock) with its first ``header_lines`` and its
    newest ``keep_lines`` lines."""
    fd = _open_locked(path)
    try:
        size = os.fstat(fd).st_size
        payload = data(size == 0) if callable(data) else data
        if size > 0 and _read_at(fd, size - 1, 1) != b"\n":  # a write cut short (full disk): keep its torn row on a line of its own
            payload = b"\n" + payload
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:  # a full disk part way: the file as it was, so the batch, handed over again, is not stored twice (review 44d M1)
            if fcntl is not None:  # without the lock another writer may have appended meanwhile: its rows stay (review 44e L1)
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
            raise
        if keep_lines is not None and fcntl is not None:  # without a lock, a rewrite could drop another writer's rows
            _prune_locked(path, fd, keep_lines, header_lines)
    finally:
        os.close(fd)  # releases the lock


def _read_at(fd: int, offset: int, n: int) -> bytes:
    """``n`` bytes of ``fd`` from ``offset`` (``os.pread`` is Unix-only; appends ignore the position)."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while n > 0:
        chunk = os.read(fd, n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


_TAIL_BYTES = 1 << 16


def _prune_locked(path: Path, fd: int, keep_lines: int, header_lines: int) -> None:
    """Rewrite the locked file ``fd`` at ``path`` keeping its header and newest ``keep_lines``
    lines, once it holds more than half as many again (estimated from its size and the line length
    of its last 64 KiB, then counted). A failure leaves the file as it was."""
    size = os.fstat(fd).st_size
    tail = _read_at(fd, max(0, size - _TAIL_BYTES), min(size, _TAIL_BYTES))
    line_bytes = len(tail) / max(tail.count(b"\n"), 1)
    if size < 1.5 * keep_lines * line_bytes:
        return
    content = _read_at(fd, 0, size)
    lines = content.splitlines(keepends=True)
    if len(lines) - header_lines <= 1.5 * keep_lines:
        return
    kept = b"".join(lines[:header_lines] + lines[-keep_lines:])
    try:
        from care_flows.atomic import atomic_open

        text = kept.decode("utf-8")
        with atomic_open(path, fsync=True) as fh:
            fh.write(text)
    except (OSError, CareError, UnicodeDecodeError) as exc:  # a full disk, not UTF-8: the history stays whole, longer
        log.warning("could not prune the usage history %s (%s); it keeps growing", path, getattr(exc, "strerror", None) or exc)
        return
    log.info("pruned the usage history %s to its newest %d lines (of %d)", path.name, keep_lines, len(lines) - header_lines)
