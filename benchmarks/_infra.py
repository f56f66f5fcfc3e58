"""Infrastructure for benchmark scenarios: a throwaway PostgreSQL and a Prefect server backed by it.

Everything listens on 127.0.0.1 only and is stopped by PID. PostgreSQL refuses to run as
root, so its binaries run as the ``postgres`` OS user (``runuser -u postgres --``) on a data
folder owned by that user; the server is reached over TCP on 127.0.0.1 (password auth,
``scram-sha-256``) and over a private Unix socket folder (trust, for ``createdb``).

The Prefect server, work pools and workers reuse the demo's process helpers
(:mod:`care_flows.demo.runner`: ``child_env``, ``free_port``, ``prefect_command``,
``stop_process``); this module adds the database and a worker ``--limit``.

>>> pg = Postgres(root=Path("/tmp/x"), port=5999, password=SecretStr("s3cret"))
>>> pg.safe_url()
'postgresql+asyncpg://care:***@127.0.0.1:5999/prefect'
>>> "s3cret" in repr(pg)
False
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from care_flows.demo.runner import child_env, free_port, prefect_command, stop_marked_processes, stop_process  # noqa: E402
from care_flows.errors import OrchestrationError  # noqa: E402

__all__ = ["Postgres", "pg_bin", "start_postgres", "stop_postgres", "PrefectStack", "stop_marked_processes"]

PG_ROOT = Path("/usr/lib/postgresql")


def _versions() -> list[Path]:
    if not PG_ROOT.is_dir():
        return []
    found = [p / "bin" for p in PG_ROOT.iterdir() if (p / "bin" / "initdb").exists() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.parent.name))


def pg_bin(say: Callable[[str], None] = print, install: bool = True) -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin``; installs Debian's ``postgresql`` if none."""
    found = _versions()
    if not found and install:
        say("PostgreSQL not found under /usr/lib/postgresql: running `apt-get install -y postgresql` ...")
        subprocess.run(["apt-get", "install", "-y", "postgresql"], check=False, stdout=subprocess.DEVNULL, timeout=900)
        found = _versions()
    if not found:
        raise OrchestrationError("PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql; install the postgresql package")
    return found[-1]


def _as_postgres(args: list[str], *, timeout_s: float, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool as the ``postgres`` user (when we are root)."""
    cmd = (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args
    out = log.open("a") if log is not None else subprocess.PIPE
    try:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s, check=False, text=True)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


@dataclass
class Postgres:
    """One PostgreSQL cluster in ``root`` (data in ``root/data``, socket in ``root/sock``)."""

    root: Path
    port: int
    password: SecretStr = field(repr=False)
    user: str = "care"
    database: str = "prefect"
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sock(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        """Output of initdb/createdb/pg_ctl (written by this process)."""
        return self.root / "tools.log"

    @property
    def server_log(self) -> Path:
        """The PostgreSQL server's own log (written by the postgres user)."""
        return self.root / "server.log"

    def connection_url(self) -> str:
        """The SQLAlchemy URL with the password (the one place it is unwrapped; never print it)."""
        return f"postgresql+asyncpg://{self.user}:{self.password.get_secret_value()}@127.0.0.1:{self.port}/{self.database}"

    def safe_url(self) -> str:
        """The URL with the password masked (for logs)."""
        return f"postgresql+asyncpg://{self.user}:***@127.0.0.1:{self.port}/{self.database}"

    def server_pid(self) -> int | None:
        """The postmaster's PID from ``postmaster.pid`` (None when not running)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def start_postgres(base: str | Path, *, say: Callable[[str], None] = print, timeout_s: float = 120.0, max_connections: int = 200) -> Postgres:
    """initdb + pg_ctl start on 127.0.0.1:<free port> + createdb; returns the running cluster.

    On any failure the half-started cluster is stopped before the error propagates.
    """
    bindir = pg_bin(say)
    root = Path(base) / "pg"
    root.mkdir(parents=True)
    pg = Postgres(root=root, port=free_port(), password=SecretStr(secrets.token_urlsafe(18)), bin_dir=bindir)
    pg.sock.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(pg.password.get_secret_value() + "\n")
    os.chmod(pwfile, 0o600)
    if os.geteuid() == 0:
        shutil.chown(Path(base), "postgres", "postgres")  # postgres must traverse the parent
        for p in (root, pg.sock, pwfile):
            shutil.chown(p, "postgres", "postgres")
    try:
        res = _as_postgres([str(bindir / "initdb"), "-D", str(pg.data), "-U", pg.user, "--pwfile", str(pwfile), "--auth-local=trust",
                            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"], timeout_s=timeout_s, log=pg.log)
        pwfile.unlink()
        if res.returncode != 0:
            raise OrchestrationError(f"initdb failed (exit {res.returncode}); see {pg.log}")
        opts = f"-p {pg.port} -k {pg.sock} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
        res = _as_postgres([str(bindir / "pg_ctl"), "-D", str(pg.data), "-l", str(pg.server_log), "-w", "-t", str(int(timeout_s)), "-o", opts, "start"],
                           timeout_s=timeout_s + 10)
        pg.pid = pg.server_pid()
        if res.returncode != 0 or pg.pid is None:
            raise OrchestrationError(f"pg_ctl start failed (exit {res.returncode}); see {pg.server_log}")
        res = _as_postgres([str(bindir / "createdb"), "-h", str(pg.sock), "-p", str(pg.port), "-U", pg.user, pg.database], timeout_s=60, log=pg.log)
        if res.returncode != 0:
            raise OrchestrationError(f"createdb failed (exit {res.returncode}); see {pg.log}")
    except BaseException:
        stop_postgres(pg)
        raise
    say(f"PostgreSQL {bindir.parent.name} started: PID {pg.pid}, {pg.safe_url()} (data {pg.data})")
    return pg


def stop_postgres(pg: Postgres, timeout_s: float = 60.0) -> None:
    """``pg_ctl stop -m fast``; if that fails, SIGTERM/SIGKILL the postmaster by its PID."""
    pid = pg.server_pid() or pg.pid
    if pid is None:
        return
    try:
        _as_postgres([str(pg.bin_dir / "pg_ctl"), "-D", str(pg.data), "-m", "fast", "-w", "-t", str(int(timeout_s)), "stop"], timeout_s=timeout_s + 10)
    except subprocess.TimeoutExpired:
        pass
    for sig, wait_s in ((15, 10.0), (9, 5.0)):
        if not _alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.2)




@dataclass
class PrefectStack:
    """``prefect server start`` (optionally on PostgreSQL), process work pools and one worker each.

    ``server_env`` holds settings only the server gets (the database URL with its password);
    ``env_extra`` goes to the server, the workers and, through them, the flow-run processes.
    """

    state_dir: Path
    server_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    env_extra: Mapping[str, str] = field(default_factory=dict)
    prefetch_s: float = 10.0
    say: Callable[[str], None] = print
    api_url: str | None = None
    server: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def env(self, *, server: bool = False) -> dict[str, str]:
        assert self.api_url is not None
        env = child_env(os.environ, api_url=self.api_url, home=str(self.state_dir / "prefect-home"), extra=dict(self.env_extra), prefetch_s=self.prefetch_s)
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

    def start_server(self, timeout_s: float = 240.0) -> None:
        """Start the server on a free loopback port; wait until ``/health`` answers."""
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.server = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(port)], "server.log", server=True)
        self.say(f"Prefect server starting on 127.0.0.1:{port} (PID {self.server.pid}) ...")
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.server.poll() is not None:
                raise OrchestrationError(f"the Prefect server exited with code {self.server.returncode}: {self.log_tail('server.log', 600)}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise OrchestrationError(f"the Prefect API at {self.api_url} did not answer /health within {timeout_s:.0f} s; see {self.logs}")

    def create_pools(self, pools: Mapping[str, str]) -> None:
        """Create one *process* work pool per region (``region -> pool name``)."""
        from prefect import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        with get_client(sync_client=True) as client:
            for region, pool in pools.items():
                try:
                    client.create_work_pool(WorkPoolCreate(name=pool, type="process", description=f"Local stand-in for AWS {region}"))
                except ObjectAlreadyExists:
                    pass

    def start_workers(self, pools: Mapping[str, str], *, limit: int | None = None, timeout_s: float = 120.0) -> None:
        """One ``prefect worker start --pool P --type process [--limit N]`` per pool; wait until each polls."""
        from prefect import get_client

        for region, pool in pools.items():
            args = ["worker", "start", "--pool", pool, "--type", "process", "--name", f"{pool}-worker"]
            if limit:
                args += ["--limit", str(limit)]
            self.workers[pool] = self._spawn(args, f"worker-{region}.log")
        end = time.monotonic() + timeout_s
        pending = set(pools.values())
        with get_client(sync_client=True) as client:
            while pending and time.monotonic() < end:
                for pool in sorted(pending):
                    proc = self.workers[pool]
                    if proc.poll() is not None:
                        raise OrchestrationError(f"the worker for {pool} exited with code {proc.returncode}; see {self.logs}")
                    if client.read_workers_for_work_pool(pool):
                        pending.discard(pool)
                time.sleep(0.5)
        if pending:
            raise OrchestrationError(f"workers for {', '.join(sorted(pending))} did not poll within {timeout_s:.0f} s; see {self.logs}")
        self.say("Workers polling: " + ", ".join(f"{pool} (PID {p.pid})" for pool, p in self.workers.items()))

    def stop(self) -> list[str]:
        """Stop the workers, then the server, by PID (process groups: TERM, then KILL)."""
        stopped = []
        for pool, proc in self.workers.items():
            stop_process(proc)
            stopped.append(f"worker {pool} (PID {proc.pid})")
        self.workers = {}
        if self.server is not None:
            stop_process(self.server)
            stopped.append(f"server (PID {self.server.pid})")
            self.server = None
        return stopped
