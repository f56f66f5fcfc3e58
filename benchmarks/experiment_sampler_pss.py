"""Experiment: CPU the usage sampler's thread spends on a large flow process, with and without
short commands being started (review 33 #4: a new process used to force a PSS re-read of the
whole tree, i.e. of the big process's page tables, at every sample).

Run: ``.venv/bin/python benchmarks/experiment_sampler_pss.py [GIB]`` (default 4 GiB resident;
about 40 s, Linux). Prints one line per case: the sampler thread's CPU per wall second while the
process holds GIB of private, resident memory, idle or running a 0.7 s ``sleep`` after every 0.25 s pause
(a new process about every 0.95 s).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from care_flows.usage_capture import UsageSampler  # noqa: E402


def sampler_cpu_share(gib: float, commands: bool, seconds: float = 20.0) -> tuple[float, int]:
    """(sampler thread CPU s per wall s, commands run) over ``seconds``."""
    blob = b"\x01" * int(gib * 2**30)  # resident and private  # noqa: F841
    sampler = UsageSampler(interval_s=1.0).start()
    tid = sampler._thread.native_id  # type: ignore[union-attr]

    def thread_cpu() -> float:
        return next(t.user_time + t.system_time for t in psutil.Process().threads() if t.id == tid)

    c0, w0, n = thread_cpu(), time.monotonic(), 0
    while time.monotonic() < w0 + seconds:
        if commands:
            subprocess.run(["sleep", "0.7"], check=True)
            n += 1
        time.sleep(0.25)
    share = (thread_cpu() - c0) / (time.monotonic() - w0)
    sampler.stop()
    return share, n


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path

    gib = parse(__doc__, quick=False, flags=[(("gib",), dict(type=float, nargs="?", default=4.0, help="GiB the child keeps resident (default 4)"))]).gib
    for commands in (False, True):
        share, n = sampler_cpu_share(gib, commands)
        print(f"{gib:g} GiB resident, {'a 0.7 s command after every 0.25 s pause' if commands else 'no commands'} ({n} run): "
              f"sampler thread {100 * share:.1f} % of a core")


if __name__ == "__main__":
    main()
