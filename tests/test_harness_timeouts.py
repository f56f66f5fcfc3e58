"""Every script that starts Prefect's temporary server waits long enough for it on a 2-core machine
(review 46c M2): PREFECT.md's ``care report`` example (scripts/report_example.py) ended in "Timed out
while attempting to connect to ephemeral Prefect API server" with Prefect's 30 s default, where the
server took 57 s to start."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_prefect_test_harness_call_sets_a_startup_timeout_of_at_least_180_s():
    calls = {}
    for folder in ("scripts", "benchmarks", "tests", "care_flows"):
        for path in (ROOT / folder).rglob("*.py"):
            for m in re.finditer(r"prefect_test_harness\(([^)]*)\)", path.read_text(encoding="utf-8")):
                calls[f"{path.relative_to(ROOT)}:{m.group(0)}"] = m.group(1)
    calls = {k: v for k, v in calls.items() if "test_harness_timeouts.py" not in k}
    assert calls, "no prefect_test_harness call found"
    short = {k: v for k, v in calls.items()
             if not (t := re.search(r"server_startup_timeout=(\d+)", v)) or int(t.group(1)) < 180}
    assert short == {}
