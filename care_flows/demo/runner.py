"""Start and stop what ``care demo`` needs: a local Prefect server, work pools, deployments, workers.

:class:`DemoStack` (a :class:`LocalPrefect`, which the benchmark scenarios use too) starts ``prefect server start`` on 127.0.0.1 (a free port, a temporary
``PREFECT_HOME``, analytics off), or uses the API URL it is given; registers the
CaRE block types; creates two *process* work pools standing in for eu-south-2 and eu-north-1;
deploys every demo flow to both; and starts one ``prefect worker start`` per pool. Every child
runs in its own session, and :meth:`DemoStack.stop` ends exactly those process groups by PID
(SIGTERM, then SIGKILL), also after errors and Ctrl-C. ``keep_server=True`` leaves the server
running (for the UI) and reports its URL and PID.

>>> env = child_env({"PATH": "/bin", "PREFECT_PROFILE": "x", "HOME": "/h"}, api_url="http://127.0.0.1:1/api", home="/t/h",
...                 extra={"CARE_DEMO_DIR": "/t"})
>>> env["PREFECT_API_URL"], env["PREFECT_HOME"], env["PREFECT_SERVER_ANALYTICS_ENABLED"], "PREFECT_PROFILE" in env
('http://127.0.0.1:1/api', '/t/h', 'false', False)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from care_flows.demo.scenario import POOLS, SCENARIOS
from care_flows.errors import OrchestrationError

__all__ = ["DemoStack", "LocalPrefect", "child_env", "pid_alive", "free_port", "prefect_command", "stop_marked_processes", "stop_process"]

FLOWS_FILE = Path(__file__).with_name("flows.py")
_ENTRYPOINTS = {"deferral": "deferral", "greener-region": "greener_region", "right-sizing": "right_sizing", "checkpointed": "checkpointed"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefect_command() -> list[str]:
    """The ``prefect`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).with_name("prefect")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]


def child_env(base: Mapping[str, str], *, api_url: str, home: str, extra: Mapping[str, str] | None = None, keep_prefect: bool = False,
              prefetch_s: float = 10.0) -> dict[str, str]:
    """Environment of a server/worker child: the caller's without its ``PREFECT_*`` settings
    (unless ``keep_prefect``, for a user's own server), plus the demo's own.

    ``prefetch_s``: a worker starts a run's process this long before its scheduled time; the
    server holds the run until then, so a deferred run starts on time even when starting a
    Python process takes many seconds on a loaded machine."""
    env = {k: v for k, v in base.items() if keep_prefect or not k.startswith("PREFECT_")}
    ui = api_url[: -len("/api")] if api_url.endswith("/api") else api_url
    env.update({
        "PREFECT_HOME": home,
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_URL": ui,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": f"{prefetch_s:g}",
        "PREFECT_LOGGING_LEVEL": "INFO",
    })
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """End ``proc``'s process group (it was started with ``start_new_session``): TERM, then KILL."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_marked_processes(name: str, value: str, timeout_s: float = 10.0, exclude: tuple[int, ...] = ()) -> list[int]:
    """End the processes whose environment has ``name=value`` (TERM, then KILL); returns their PIDs.

    Prefect 3.9's process worker starts each flow run under a workspace supervisor in its own
    session, so stopping a worker's process group leaves running flow runs behind. A marker
    variable unique to one scenario run (its temporary folder) finds exactly those children.
    """
    needle = f"{name}={value}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid() or int(d.name) in exclude:
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        live = [p for p in found if pid_alive(p)]
        for pid in live:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait_s
        while any(pid_alive(p) for p in live) and time.monotonic() < end:
            time.sleep(0.2)
    return found


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (a zombie child of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _process_group(pgid: int) -> tuple[int, ...]:
    """PIDs whose process group is ``pgid`` (the kept server and its children)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(d.name)) == pgid:
                    out.append(int(d.name))
    return tuple(out)


@dataclass
class LocalPrefect:
    """A loopback Prefect server (or an existing API), process work pools and one worker per pool.

    Shared by ``care demo`` (:class:`DemoStack`) and the benchmark scenarios
    (``benchmarks/scenario_postgres_load.py``). ``pools`` maps a region to the *process* work
    pool standing in for it; ``server_env`` holds settings only the server gets (e.g. a database
    URL with its password); ``env_extra`` goes to the server, the workers and, through them, the
    flow-run processes. Every child runs in a session of its own and :meth:`stop` ends exactly
    those process groups by PID (SIGTERM, then SIGKILL), plus flow-run processes left behind
    (found by this stack's ``PREFECT_HOME``).
    """

    state_dir: Path
    api_url: str | None = None
    """A Prefect API to use instead of starting a server (``care demo --api-url``)."""
    pools: Mapping[str, str] = field(default_factory=dict)
    worker_limit: int | None = None
    """``prefect worker start --limit``: concurrent flow runs per worker (None: Prefect's default)."""
    keep_server: bool = False
    ui: bool = True
    env_extra: Mapping[str, str] = field(default_factory=dict)
    server_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    say: Callable[[str], None] = print
    prefetch_s: float = 10.0
    server: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_server: bool = False
    workers_started: bool = False
    """Workers were started (their flow-run processes carry this stack's ``PREFECT_HOME``)."""

    @property
    def home(self) -> Path:
        return self.state_dir / "prefect-home"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def ui_url(self) -> str:
        assert self.api_url is not None
        return self.api_url[: -len("/api")] if self.api_url.endswith("/api") else self.api_url

    def env(self, *, server: bool = False) -> dict[str, str]:
        """A child's environment (``server``: also the server-only settings)."""
        assert self.api_url is not None
        env = child_env(os.environ, api_url=self.api_url, home=str(self.home), extra=dict(self.env_extra), keep_prefect=not self.started_server,
                        prefetch_s=self.prefetch_s)
        if not self.ui:
            env["PREFECT_UI_ENABLED"] = "false"
        if server:
            env.update(self.server_env)
        return env

    def _spawn(self, args: list[str], log_name: str, *, server: bool = False) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / log_name).open("w")
        try:
            return subprocess.Popen(prefect_command() + args, env=self.env(server=server), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(self.state_dir))
        finally:
            log.close()

    def log_tail(self, name: str, chars: int = 1500) -> str:
        path = self.logs / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- server -------------------------------------------------------------------------
    def start_server(self, timeout_s: float = 180.0) -> None:
        """Start a loopback Prefect server (unless an API URL was given) and wait for /health."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.api_url:
            self._wait_healthy(None, timeout_s=30)  # first: an API nothing listens on is one error line, no promises before it
            self.say(f"Using the Prefect API at {self.api_url} as asked (--api-url); no server started. What the demo creates there "
                     "is removed at the end (its unfinished runs cancelled first).")
            return
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.started_server = True
        self.server = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(port)], "server.log", server=True)
        self.say(f"Starting a local Prefect server on 127.0.0.1:{port} (PID {self.server.pid}, PREFECT_HOME {self.home}) ...")
        self._wait_healthy(self.server, timeout_s)

    def _wait_healthy(self, proc: subprocess.Popen | None, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                raise OrchestrationError(f"the Prefect server exited with code {proc.returncode}; see {self.logs / 'server.log'}: "
                                         + " ".join(self.log_tail("server.log", 300).split()))
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                if proc is None and _refused(exc):  # an API given with --api-url that nothing listens on: say so now, not in 30 s
                    raise OrchestrationError(f"cannot reach the Prefect API at {self.api_url} (connection refused); start it "
                                             "(prefect server start) or fix --api-url") from None
                time.sleep(0.5)
        raise OrchestrationError(f"the Prefect API at {self.api_url} did not answer /health within {timeout_s:.0f} s; see {self.logs}")

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point this process's Prefect client at this API (without touching os.environ)."""
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url, PREFECT_UI_URL: self.ui_url}):
            yield

    # -- pools and workers ----------------------------------------------------------------
    def create_pools(self) -> None:
        """Create one *process* work pool per region of ``pools`` (idempotent)."""
        from prefect import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        with get_client(sync_client=True) as client:
            for region, pool in self.pools.items():
                try:
                    client.create_work_pool(WorkPoolCreate(name=pool, type="process", description=f"Local stand-in for AWS {region} (CaRE)"))
                except ObjectAlreadyExists:
                    pass

    def start_workers(self, timeout_s: float = 120.0) -> None:
        """One ``prefect worker start --pool P --type process [--limit N]`` per pool; wait until each polls."""
        from prefect import get_client

        for region, pool in self.pools.items():
            args = ["worker", "start", "--pool", pool, "--type", "process", "--name", f"{pool}-worker"]
            if self.worker_limit:
                args += ["--limit", str(self.worker_limit)]
            self.workers[pool] = self._spawn(args, f"worker-{region}.log")
            self.workers_started = True
        end = time.monotonic() + timeout_s
        with get_client(sync_client=True) as client:
            pending = set(self.pools.values())
            while pending and time.monotonic() < end:
                for pool in sorted(pending):
                    proc = self.workers[pool]
                    if proc.poll() is not None:
                        raise OrchestrationError(f"the worker for {pool} exited with code {proc.returncode}; see {self.logs}")
                    if client.read_workers_for_work_pool(pool):
                        pending.discard(pool)
                time.sleep(0.5)
            if pending:
                raise OrchestrationError(f"workers for {', '.join(sorted(pending))} did not start polling within {timeout_s:.0f} s; see {self.logs}")
        self.say("Started one worker per pool: " + ", ".join(f"{pool} (PID {p.pid})" for pool, p in self.workers.items()))

    # -- shutdown ------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop the workers and (unless ``keep_server``) the server this stack started, by PID."""
        stopped = []
        for pool, proc in self.workers.items():
            stop_process(proc)
            stopped.append(f"worker {pool} (PID {proc.pid})")
        self.workers = {}

        if self.server is not None and not self.keep_server:
            stop_process(self.server)
            stopped.append(f"server (PID {self.server.pid})")
        if self.started_server or self.workers_started:
            # Prefect 3.9 starts each flow run in a session of its own, so stopping a worker's
            # process group can leave a running flow behind: find those by this stack's PREFECT_HOME
            keep = _process_group(self.server.pid) if (self.server is not None and self.keep_server) else ()
            leftovers = stop_marked_processes("PREFECT_HOME", str(self.home), exclude=keep)
            if leftovers:
                stopped.append("flow-run processes (PIDs " + ", ".join(map(str, leftovers)) + ")")
        return stopped


@dataclass
class DemoStack(LocalPrefect):
    """The local Prefect machinery of one demo (see the module docstring): the demo's two pools,
    CaRE's block types and every demo flow deployed to both pools."""

    pools: Mapping[str, str] = field(default_factory=lambda: dict(POOLS))
    deployments: dict[str, dict[str, str]] = field(default_factory=dict)
    """scenario key -> region -> deployment id."""
    touched: bool = False
    """Whether the demo began creating anything on the API (the first step, :meth:`register_blocks`)."""

    def register_blocks(self, policies: Mapping[str, Any] | None = None) -> list[str]:
        """Register CaRE's block types and save one ``care-demo-<scenario>`` CarePolicyBlock each."""
        self.touched = True
        try:
            from care_flows import blocks
        except ImportError as exc:
            self.say(f"CaRE block types not available ({exc}); skipped registering them.")
            return []
        names = []
        for cls in getattr(blocks, "BLOCK_TYPES", ()):
            cls.register_type_and_schema()
            names.append(cls.__name__)
        saved = 0
        for key, policy in (policies or {}).items():
            block_cls = getattr(blocks, "CarePolicyBlock", None)
            if block_cls is not None and hasattr(block_cls, "from_policy"):
                block_cls.from_policy(policy).save(f"care-demo-{key}", overwrite=True)
                saved += 1
        self.say(f"Registered the CaRE block types ({', '.join(names)}) and saved {saved} CarePolicyBlock documents (care-demo-*).")
        return names

    def create_pools(self) -> None:
        """Create the two local process work pools (idempotent)."""
        super().create_pools()
        self.say("Created two LOCAL process work pools as stand-ins for the AWS regions (nothing runs on AWS): "
                 + ", ".join(f"{pool} -> {region}" for region, pool in self.pools.items()))

    def deploy(self) -> dict[str, dict[str, str]]:
        """Deploy every demo flow to both pools (deployment name = region)."""
        import io

        from prefect import Flow

        quiet = io.StringIO()  # Prefect prints a table per deploy; the demo says it in one line
        for sc in SCENARIOS:
            f = Flow.from_source(source=str(FLOWS_FILE.parent), entrypoint=f"{FLOWS_FILE.name}:{_ENTRYPOINTS[sc.key]}")
            self.deployments[sc.key] = {}
            for region, pool in self.pools.items():
                with contextlib.redirect_stdout(quiet):
                    dep_id = f.deploy(name=region, work_pool_name=pool, print_next_steps=False, ignore_warnings=True,
                                      tags=["care-demo"], description=sc.shows)
                self.deployments[sc.key][region] = str(dep_id)
        self.say(f"Deployed {len(SCENARIOS)} CaRE flows to both pools ({len(SCENARIOS) * len(self.pools)} deployments).")
        return self.deployments


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` (as ``urllib`` raises it) is a refused TCP connection: nothing listens there.

    >>> import urllib.error
    >>> _refused(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))), _refused(TimeoutError())
    (True, False)
    """
    return isinstance(exc, ConnectionRefusedError) or isinstance(getattr(exc, "reason", None), ConnectionRefusedError)
