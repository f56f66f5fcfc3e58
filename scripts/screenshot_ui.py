"""Screenshot of the Prefect UI showing a CaRE decision artifact (part of the docs build, not of ``make test``).

    .venv/bin/python scripts/screenshot_ui.py                    # writes docs/img/prefect-ui-decision.png
    .venv/bin/python scripts/screenshot_ui.py --out /tmp/x.png --keep-dir

What it does, all on 127.0.0.1 and in a temporary ``PREFECT_HOME`` (your own Prefect data is not
touched):

1. starts ``prefect server start`` on a free port (``PREFECT_UI_API_URL`` set to that port, so
   the UI's JavaScript talks to the right API);
2. deploys a small ``@care``-decorated flow (home eu-south-2, candidate eu-north-1, embedded
   data) from a temporary folder to a ``process`` work pool per region (the policy's ``targets``
   name the Swedish deployment, as in docs/TUTORIAL.md section 3), triggers a run of the deployment and
   executes that trigger run with ``prefect flow-run execute <id>``: CaRE plans and, when the
   plan is "later" or "elsewhere", dispatches the real run (left *Scheduled*; no worker is
   started) and writes the ``care-decision-nightly-training`` artifact (the key names the flow). If
   the deployment path fails, the flow is called locally instead, which writes the same artifact
   for a local run;
3. opens the artifact's page with headless Chromium (``/usr/bin/chromium``, Debian package
   ``chromium``) and saves the screenshot;
4. stops the server by the PID (process group) it started.

Exit codes: 0 screenshot written; 1 a step failed (one line on stderr saying which); 2 Chromium
is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from pathlib import Path

from care_flows.demo.runner import LocalPrefect
from care_flows.errors import CareError
from care_flows.orchestration.artifacts import artifact_key

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "prefect-ui-decision.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

__all__ = ["FLOW_SOURCE", "CHROMIUM_FLAGS", "find_chromium", "chromium_command", "main"]

FLOW_SOURCE = textwrap.dedent(
    '''
    from prefect import flow, task

    from care_flows import care


    @task
    def extract(day: str) -> list[float]:
        return [float(i) for i in range(1_000)]


    @task
    def train(rows: list[float]) -> float:
        return sum(rows) / len(rows)


    @care(policy={
        "home_region": "eu-south-2",
        "regions": ["eu-north-1"],
        "deadline_within": "12h",
        "expected_duration": "1h",
        "priorities": ["carbon", "cost"],
        "vcpu": 2, "memory_gib": 8,
        # a pool per region: the deployment in the Swedish pool is where a move to eu-north-1 goes
        "targets": {"eu-north-1": {"deployment": "nightly-training/docs-se"}},
    })
    @flow
    def nightly_training(day: str) -> float:
        return train(extract(day))
    '''
)

TRIGGER_SOURCE = textwrap.dedent(
    '''
    import os, subprocess, sys
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    here = os.path.dirname(os.path.abspath(__file__))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="care-docs", type="process"))
        client.create_work_pool(WorkPoolCreate(name="care-docs-eu-north-1", type="process"))
    f = flow.from_source(source=here, entrypoint="care_docs_flow.py:nightly_training")
    f.deploy(name="docs", work_pool_name="care-docs", build=False, push=False, print_next_steps=False)
    f.deploy(name="docs-se", work_pool_name="care-docs-eu-north-1", build=False, push=False, print_next_steps=False)
    run = run_deployment("nightly-training/docs", parameters={"day": "2026-01-01"}, timeout=0)
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    sys.exit(subprocess.call([prefect, "flow-run", "execute", str(run.id)]))
    '''
)

LOCAL_SOURCE = textwrap.dedent(
    '''
    from care_docs_flow import nightly_training
    nightly_training("2026-01-01")
    '''
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_command(binary: str, url: str, out: Path, user_data_dir: str, *, size: str = "1400,1000", budget_ms: int = 15000) -> list[str]:
    """The headless Chromium command line that screenshots ``url`` into ``out``.

    ``--virtual-time-budget`` lets the JavaScript app fetch and render before the shot.

    >>> chromium_command("chromium", "http://127.0.0.1:1/x", Path("o.png"), "/tmp/u")[-1]
    'http://127.0.0.1:1/x'
    """
    return [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={user_data_dir}",
        f"--screenshot={out}",
        f"--window-size={size}",
        f"--virtual-time-budget={budget_ms}",
        url,
    ]


def _get_json(url: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read().decode())


def _say(msg: str) -> None:
    print(f"screenshot_ui: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write (default docs/img/prefect-ui-decision.png)")
    parser.add_argument("--keep-dir", action="store_true", help="keep the temporary PREFECT_HOME/flow folder (printed)")
    parser.add_argument("--server-timeout-s", type=float, default=180.0, help="how long to wait for the Prefect server (default 180)")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        print("error: chromium not found; install it with: apt-get install -y chromium", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="care-shot-"))
    # the demo's local server (loopback, free port, PREFECT_HOME in `work`, stopped by PID)
    local = LocalPrefect(state_dir=work, say=_say,
                         env_extra={"CARE_CACHE_DIR": str(work / "care-cache"),
                                    "PYTHONPATH": str(work / "flow") + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        local.start_server(timeout_s=args.server_timeout_s)
        api = local.api_url
        env = local.env()
        flow_dir = work / "flow"
        flow_dir.mkdir()
        (flow_dir / "care_docs_flow.py").write_text(FLOW_SOURCE, encoding="utf-8")
        (flow_dir / "trigger.py").write_text(TRIGGER_SOURCE, encoding="utf-8")
        (flow_dir / "local.py").write_text(LOCAL_SOURCE, encoding="utf-8")
        _say("deploying the example flow and executing a triggered run")
        rc = subprocess.call([sys.executable, str(flow_dir / "trigger.py")], env=env, cwd=flow_dir, timeout=600)
        if rc != 0:
            _say(f"deployment path failed (exit {rc}); running the flow locally instead")
            rc = subprocess.call([sys.executable, str(flow_dir / "local.py")], env=env, cwd=flow_dir, timeout=600)
            if rc != 0:
                print(f"error: the example flow failed (exit {rc}); see the output above", file=sys.stderr)
                return 1
        key = artifact_key("care-decision", "nightly-training")  # the example flow's decision
        found = _get_json(f"{api}/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1})
        if not found:
            print(f"error: no {key} artifact was created", file=sys.stderr)
            return 1
        artifact_id = found[0]["id"]  # type: ignore[index]
        url = f"{local.ui_url}/artifacts/artifact/{artifact_id}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_png = work / "shot.png"
        cmd = chromium_command(chromium, url, tmp_png, str(work / "chromium-profile"))
        _say(f"chromium -> {url}")
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180, check=False)
        if not tmp_png.exists() or tmp_png.stat().st_size < 20_000:
            print("error: chromium wrote no screenshot or a blank one (the UI did not render)", file=sys.stderr)
            return 1
        shutil.copyfile(tmp_png, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {url}")
        return 0
    except (CareError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        local.stop()
        if args.keep_dir:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
