"""Infrastructure for benchmark scenarios: a throwaway PostgreSQL and a Prefect server backed by it.

Everything listens on 127.0.0.1 only and is stopped by PID. PostgreSQL refuses to run as
root, so its binaries run as the ``postgres`` OS user (``runuser -u postgres --``) on a data
folder owned by that user; the server is reached over TCP on 127.0.0.1 (password auth,
``scram-sha-256``) and over a private Unix socket folder (trust, for ``createdb``).

The Prefect server, work pools and workers are the demo's
(:class:`care_flows.demo.runner.LocalPrefect`, with ``server_env`` for the database URL and
``worker_limit``); this module adds the database.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from care_flows.demo.runner import LocalPrefect, free_port, pid_alive, stop_marked_processes  # noqa: E402
from care_flows.errors import OrchestrationError  # noqa: E402

__all__ = ["Postgres", "pg_bin", "start_postgres", "stop_postgres", "LocalPrefect", "stop_marked_processes"]

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
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait_s
        while pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.2)
