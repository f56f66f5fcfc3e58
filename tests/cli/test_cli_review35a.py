"""Review 35a (a new user's error paths): L2 `care controller --source csv`, L3 `--once --json` with the
API down, L4 `scripts/report_example.py` and the usage store, L6 `--duration 0`, L7 `care plan`
naming the region typed and from when the embedded data can forecast, L9 `care forecast-usage
--out` checked before the work.

The contract: exit 2, one ``error:`` line on stderr naming the bad value and the fix, nothing on stdout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from care_flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
PLAN = ["plan", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "24h"]


from test_cli_bad_input_review15 import usage_error  # noqa: E402 - exit 2, nothing on stdout, one error: line


# ------------------------------------------------------------------ L2: care controller --source
def test_controller_source_csv_is_refused_naming_the_sources_it_can_use(capsys):
    # was: "carbon source 'csv' needs path=<Electricity Maps CSV> (or {zone: path})" (no option takes a path)
    line = usage_error(["controller", "--once", "--source", "csv"], capsys)
    assert line == ("error: --source 'csv' needs a CSV file, which care controller cannot take; "
                    "use one of electricitymaps, embedded, gb, watttime")
    # was: "unknown carbon source 'foo'; known sources: csv, electricitymaps, ..." (offering csv)
    line = usage_error(["controller", "--once", "--source", "foo"], capsys)
    assert line == "error: unknown --source 'foo'; use one of electricitymaps, embedded, gb, watttime"
    assert "csv" not in line


def test_controller_source_help_lists_the_usable_sources():
    import typer

    from care_flows.cli import build_app

    command = typer.main.get_command(build_app()).commands["controller"]
    helps = {p.name: p.help for p in command.params}
    assert "embedded, electricitymaps, watttime or gb" in helps["source"] and "csv" not in helps["source"]


# ------------------------------------------------------------------ L3: --once --json, API down
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_controller_json_help_says_what_once_does_when_the_pass_fails():
    # was: 'a failed pass: {"error": ...}', yet `--once --json` with the API down prints nothing on stdout
    import typer

    from care_flows.cli import build_app

    command = typer.main.get_command(build_app()).commands["controller"]
    text = {p.name: p.help for p in command.params}["json_out"]
    assert 'a failed pass of the loop: {"error": ...}' in text
    assert "With --once a pass that fails (API unreachable, lease held) is an error: line on stderr, exit 2, nothing on stdout" in text


def test_controller_once_json_with_the_api_down_is_the_error_line_and_exit_2(capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{_closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        line = usage_error(["controller", "--once", "--json"], capsys)
    assert line.startswith(f"error: cannot reach the Prefect API at {url}")


# ------------------------------------------------------------------ L6: --duration 0
def test_duration_zero_without_unit_says_it_must_be_positive(capsys):
    # was: "--duration '0' has no unit; give e.g. 0h, 0m or 0s", and 0h is then refused
    line = usage_error(["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "0", "--within", "24h"], capsys)
    assert line == "error: --duration '0' must be positive and have a unit; give e.g. 1h, 30m or 300s"
    assert "0h" not in line
    line = usage_error(["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2", "--within", "24h"], capsys)
    assert line == "error: --duration '2' has no unit; give e.g. 2h, 2m or 2s"


# ------------------------------------------------------------------ L7: care plan --region, --now before the data
def test_plan_region_without_embedded_data_names_the_region_typed(capsys):
    # was: "zone 'US-MIDA-PJM' has no embedded data; ..." (a zone the user never typed)
    line = usage_error([*PLAN, "--region", "us-east-1"], capsys)
    assert line.startswith("error: region us-east-1 (grid zone US-MIDA-PJM) has no embedded data; "
                           "embedded regions: eu-south-2 (ES), eu-north-1 (SE), eu-central-1 (DE), eu-west-3 (FR), eu-west-2 (GB); ")
    assert "--source electricitymaps or watttime" in line


def test_plan_now_before_the_embedded_data_says_from_when_it_exists(capsys):
    # was: "embedded trace for ES starts 2021-01-01T00:00:00+00:00; a forecast issued at ... has no history before it"
    args = ["plan", "--zone", "ES", "--now", "2019-06-01T08:00:00Z", "--duration", "2h", "--within", "24h"]
    line = usage_error(args, capsys)
    assert line.startswith("error: --now 2019-06-01T08:00:00+00:00 is before the embedded data for ES can forecast")
    assert line.endswith("give --now from 2021-01-02T00:00:00+00:00 on")
    # the first hour is refused the same way (was: "carbon history has fewer than 2 points"); the data's third hour plans
    assert "give --now from 2021-01-02" in usage_error(["plan", "--region", "eu-south-2", "--now", "2021-01-01T01:00:00Z",
                                                         "--duration", "2h", "--within", "24h"], capsys)
    assert main(["plan", "--zone", "ES", "--now", "2021-01-01T02:00:00Z", "--duration", "2h", "--within", "24h", "--json"]) == 0
    capsys.readouterr()


# ------------------------------------------------------------------ L9: care forecast-usage --out
def _usage_csv(path: Path) -> Path:
    path.write_text("cpu\n" + "".join(f"{(i % 12) + 1}\n" for i in range(400)))
    return path


def test_forecast_usage_checks_the_out_folder_before_the_evaluation(tmp_path, monkeypatch, capsys):
    # was: the whole rolling evaluation ran, then "output folder ... does not exist"
    import care_flows.forecast.usage as usage

    def never(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("evaluated before --out was checked")

    monkeypatch.setattr(usage, "evaluate_usage", never)
    csv = _usage_csv(tmp_path / "u.csv")
    missing = tmp_path / "no-such-folder" / "pred.csv"
    line = usage_error(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--out", str(missing)], capsys)
    assert f"--out {missing}: output folder '{missing.parent}' does not exist; create it or choose another path" in line
    line = usage_error(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--out", str(tmp_path)], capsys)
    assert f"--out {tmp_path} is a folder; give a file name" in line


def test_forecast_usage_checks_a_read_only_out_folder_first(tmp_path, monkeypatch, capsys):
    import care_flows.forecast.usage as usage

    monkeypatch.setattr(usage, "evaluate_usage", lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated")))
    csv = _usage_csv(tmp_path / "u.csv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root (CI) may write anyway: the folder then refuses the check's temporary file
        import tempfile

        real_mkstemp = tempfile.mkstemp

        def refusing(*a, dir=None, **k):  # noqa: A002 - mkstemp's own keyword
            if dir is not None and Path(dir) == locked:
                raise PermissionError(13, "Permission denied")
            return real_mkstemp(*a, dir=dir, **k)

        monkeypatch.setattr(tempfile, "mkstemp", refusing)
    try:
        line = usage_error(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--out", str(locked / "p.csv")], capsys)
    finally:
        locked.chmod(0o755)
    assert f"output folder '{locked}' is not writable" in line


def test_forecast_usage_still_writes_a_good_out(tmp_path, capsys):
    csv = _usage_csv(tmp_path / "u.csv")
    out = tmp_path / "pred.csv"
    assert main(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--period", "12", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert out.read_text().startswith("origin_index,step,target_index,prediction,anomalous")


# ------------------------------------------------------------------ L4: scripts/report_example.py
def test_report_example_leaves_the_usage_store_alone_and_prints_the_documented_table(tmp_path):
    # was: daily-report.csv and etl-nightly.csv written into $CARE_USAGE_DIR (default ~/.cache/care/usage)
    store = tmp_path / "my-usage"
    store.mkdir()
    env = {**os.environ, "CARE_USAGE_DIR": str(store), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("CARE_USAGE_STORE", None)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report_example.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in store.iterdir()) == []
    doc = (ROOT / "docs" / "PREFECT.md").read_text()
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all(row in doc for row in rows), rows


@pytest.mark.parametrize("args, typed", [
    (["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "6h", "--threshold", "abc"], "'abc'"),
    (["simulate", "poisson", "--n=0"], "'0'"),
])
def test_a_value_the_option_type_refuses_is_repeated_in_the_error(args, typed, capsys):
    """Review 35a L5: 'Input should be a valid number' without the value the user typed."""
    line = usage_error(args, capsys)
    assert f"(got {typed})" in line, line
