"""Review 36f N1, N2: two CLI messages.

- N1: ``care usage``'s "did you mean" lookup read the dashed history outside the warning collection,
  so a malformed row there was printed as a raw ``WARNING care_flows.usage:`` log line;
- N2: ``care intensity``'s end-before-start error read "is not after start Y (--start)".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import care_flows
from care_flows.cli import main

CODE = Path(care_flows.__file__).resolve().parents[1]  # the tree under test, for the console-script subprocess


def _care(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``care ARGS`` as the console script runs it (its own stderr log handler)."""
    env = {**os.environ, "PYTHONPATH": str(CODE), "PREFECT_HOME": str(tmp_path / "prefect")}
    return subprocess.run([sys.executable, "-c", "import sys; from care_flows.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_usage_did_you_mean_lookup_reports_a_malformed_row_as_a_warning_line(tmp_path):
    store = tmp_path / "usage"
    store.mkdir()
    (store / "my-etl.csv").write_text("time,cpu_vcpu,memory_gib,n_processes\nbad,1,1,1\n2026-01-01T00:00:00Z,1,1,1\n")
    for mode in ([], ["--json"]):
        proc = _care(["usage", "my_etl", "--usage-dir", str(store), *mode], tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout)
        lines = proc.stderr.splitlines()
        # was: "WARNING care_flows.usage: usage store file .../my-etl.csv: skipped 1 malformed row(s) (...)"
        assert not [line for line in lines if line.startswith("WARNING ")], proc.stderr
        assert len(lines) == 2, proc.stderr
        assert lines[0].startswith(f"warning: usage store file {store / 'my-etl.csv'}: skipped 1 malformed row(s)"), proc.stderr
        assert lines[1].startswith(f"error: no usage history named 'my_etl' in {store} (did you mean 'my-etl'?"), proc.stderr


def test_intensity_end_not_after_start_names_both_flags(capsys):
    code = main(["intensity", "--zone", "ES", "--start", "2023-06-02T00:00Z", "--end", "2023-06-01T03:00:00Z", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    # was: "--end 2023-06-01T03:00:00+00:00 is not after start 2023-06-02T00:00:00+00:00 (--start); give an --end later than --start"
    assert err.strip().splitlines() == ["error: --end 2023-06-01T03:00:00+00:00 is not after --start 2023-06-02T00:00:00+00:00; "
                                        "give an --end later than --start"]
