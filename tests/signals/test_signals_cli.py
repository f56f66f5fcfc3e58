"""``care intensity``: table, --json document, and one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest

from care_flows.cli import main

WINDOW = ["--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T03:00:00Z"]


def test_json_output_is_exactly_the_documented_document(capsys):
    assert main(["intensity", "--zone", "ES", *WINDOW, "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert set(doc) == {"source", "signal", "unit", "zone", "points", "warnings"}  # warnings: review 36b
    assert doc["warnings"] == []
    assert (doc["source"], doc["signal"], doc["unit"], doc["zone"]) == ("embedded", "lifecycle", "gCO2eq/kWh", "ES")
    assert [p["time"] for p in doc["points"]] == ["2023-06-01T00:00:00+00:00", "2023-06-01T01:00:00+00:00", "2023-06-01T02:00:00+00:00"]
    assert all(set(p) == {"time", "g_per_kwh"} and isinstance(p["g_per_kwh"], float) for p in doc["points"])


def test_region_and_direct_kind(capsys):
    assert main(["intensity", "--region", "eu-north-1", "--kind", "direct", *WINDOW, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["zone"] == "SE" and doc["signal"] == "direct" and len(doc["points"]) == 3


def test_table_output(capsys):
    assert main(["intensity", "--region", "eu-south-2", *WINDOW]) == 0
    out = capsys.readouterr().out
    assert "gCO2eq/kWh" in out and "2023-06-01T02:00:00+00:00" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--zone", "XX", *WINDOW], "zone 'XX' has no embedded data"),
        (["--region", "mars-1", *WINDOW], "unknown region 'mars-1'; known regions"),
        (["--zone", "ES", "--start", "yesterday", "--end", "2023-06-01T03:00:00Z"], "start 'yesterday' is not an ISO 8601 time"),
        (["--zone", "ES", "--start", "2023-06-01T00:00", "--end", "2023-06-01T03:00:00Z"], "has no UTC offset"),
        (["--zone", "ES", "--start", "2023-06-02T00:00Z", "--end", "2023-06-01T03:00:00Z"], "is not after --start 2023-06-02T00:00:00+00:00"),
        (["--zone", "ES", "--region", "eu-south-2", *WINDOW], "exactly one of --zone"),
        (WINDOW, "exactly one of --zone"),
        (["--zone", "ES", "--kind", "green", *WINDOW], "--kind 'green' is not a signal kind"),
        (["--zone", "ES", "--source", "nope", *WINDOW], "unknown carbon source 'nope'"),
        (["--zone", "ES", "--source", "electricitymaps", *WINDOW], "set the environment variable ELECTRICITYMAPS_API_TOKEN"),
        (["--zone", "ES", "--start", "2020-01-01T00:00Z", "--end", "2020-01-02T00:00Z"], "is outside the embedded data for ES"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    assert main(["intensity", *args, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_help_documents_every_option(capsys):
    assert main(["intensity", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--zone", "--region", "--source", "--kind", "--start", "--end", "--json"):
        assert opt in out


def test_live_source_falls_back_and_warns_on_stderr(provider_server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "cli-token-xyz")
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/v3/carbon-intensity/past-range", provider_server.reply(401, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["electricitymaps"]
    monkeypatch.setitem(registry.SOURCES, "electricitymaps", lambda kind, **s: real(kind, base_url=provider_server.url + "/v3", **s))
    assert main(["intensity", "--zone", "ES", "--source", "electricitymaps", *WINDOW, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["source"] == "embedded" and len(doc["points"]) == 3
    assert "warning: electricitymaps failed for ES (HTTP 401" in captured.err and "cli-token-xyz" not in captured.err


def test_a_failed_live_source_after_the_embedded_data_shows_the_replay(provider_server, monkeypatch, tmp_path, capsys):
    """Review 14: the check TUTORIAL section 5 recommends failed for today's window when the provider was down,
    advising 'use a zone with embedded data' for SE, which is one; the planner falls back to the replay."""
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "cli-token-xyz")
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/v3/carbon-intensity/past-range", provider_server.reply(401, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["electricitymaps"]
    monkeypatch.setitem(registry.SOURCES, "electricitymaps", lambda kind, **s: real(kind, base_url=provider_server.url + "/v3", **s))
    window = ["--start", "2026-11-29T00:00:00Z", "--end", "2026-11-29T03:00:00Z"]
    assert main(["intensity", "--region", "eu-north-1", "--source", "electricitymaps", *window, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["source"] == "embedded+replay(2023)" and len(doc["points"]) == 3 and doc["replayed_from"].startswith("2023-")
    # review 39f L1: a few words, not the aggregate error cut at 300 characters
    assert "warning: electricitymaps failed for SE-SE3 (HTTP 401, refused: check the credentials in ELECTRICITYMAPS_API_TOKEN or the ElectricityMapsCredentials block); showing the embedded trace replayed instead\n" in captured.err
    assert "cli-token-xyz" not in captured.err


def test_window_after_the_embedded_data_replays_the_last_year_labelled(capsys):
    # review 4 #7: this said "... ask within it or set shift=" (a Python parameter)
    from care_flows.signals import TraceSignal

    argv = ["intensity", "--zone", "ES", "--start", "2026-06-01T00:00:00Z", "--end", "2026-06-01T02:00:00Z", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["source"] == "embedded+replay(2023)" and doc["replayed_from"] == "2023-06-05T00:00:00+00:00"
    assert [p["time"] for p in doc["points"]] == ["2026-06-01T00:00:00+00:00", "2026-06-01T01:00:00+00:00"]
    real = TraceSignal.embedded().history("ES", "2023-06-05T00:00Z", "2023-06-05T02:00Z")
    assert [p["g_per_kwh"] for p in doc["points"]] == [round(float(v), 3) for v in real]
    assert "replayed from 2023-06-05T00:00:00+00:00" in err and "not measured" in err
    assert main(argv[:-1]) == 0
    assert "embedded+replay(2023)" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    assert main([*argv[:3], "--source", "Embedded", *argv[3:]]) == 0  # sources are case-insensitive, as in get_signal
    assert json.loads(capsys.readouterr().out)["source"] == "embedded+replay(2023)"


def test_window_before_the_embedded_data_names_the_cli_fix(capsys):
    assert main(["intensity", "--zone", "ES", "--start", "2019-06-01T00:00:00Z", "--end", "2019-06-01T02:00:00Z"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --start 2019-06-01T00:00:00+00:00") and err.count("\n") == 1
    assert "2021-01-01T00:00:00+00:00 to 2024-01-01T00:00:00+00:00" in err and "shift" not in err


def test_missing_credentials_give_the_env_var_first(capsys, monkeypatch):
    monkeypatch.delenv("WATTTIME_USERNAME", raising=False)
    monkeypatch.delenv("WATTTIME_PASSWORD", raising=False)
    assert main(["intensity", "--region", "eu-south-2", "--source", "watttime", *WINDOW]) == 2
    err = capsys.readouterr().err
    assert err == ("error: watttime is not configured: set the environment variable WATTTIME_USERNAME "
                   "(from Python you may pass username=... instead)\n")


@pytest.mark.parametrize("command", [
    ["intensity", "--zone", "ES", *WINDOW],
    ["plan", "--zone", "ES", "--now", "2023-03-01T00:00:00Z", "--duration", "1h", "--within", "6h"],
    ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-03-01T00:00:00Z", "--duration", "1h"],
])
def test_each_fallback_is_reported_once_by_the_command_not_also_logged(command, provider_server, monkeypatch, tmp_path, capsys, caplog):
    """Review 14 #8: stderr showed the fallback log line and then the command's own warning line."""
    import logging

    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "cli-token-xyz")
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/v3/carbon-intensity/past-range", provider_server.reply(503, b"{}"))
    provider_server.route("/v3/carbon-intensity/forecast", provider_server.reply(503, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["electricitymaps"]
    monkeypatch.setitem(registry.SOURCES, "electricitymaps", lambda kind, **s: real(kind, base_url=provider_server.url + "/v3", max_retries=0, **s))
    with caplog.at_level(logging.WARNING):
        assert main([*command, "--source", "electricitymaps", "--json"]) == 0
    captured = capsys.readouterr()
    assert not [r for r in caplog.records if r.name == "care_flows.signals.fallback"]
    said = captured.err if command[0] == "intensity" else " ".join(json.loads(captured.out)["warnings"])
    assert said.count("electricitymaps failed for") >= 1 and "using embedded" in said
    with caplog.at_level(logging.WARNING):
        logging.getLogger("care_flows.signals.fallback").warning("after the command")
    assert [r.getMessage() for r in caplog.records if r.name == "care_flows.signals.fallback"] == ["after the command"]  # the log is back for everything else (the controller)


def _gb_down(provider_server, monkeypatch, tmp_path) -> None:
    """The GB API (on the loopback test server) answers 503 to everything: the embedded data serves."""
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/", provider_server.reply(503, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["gb"]
    monkeypatch.setitem(registry.SOURCES, "gb", lambda kind, **s: real(kind, base_url=provider_server.url, max_retries=0, **s))


@pytest.mark.parametrize("command", [
    ["regions", "--regions", "eu-west-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h"],
    ["plan", "--zone", "GB", "--now", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "6h"],
])
def test_a_source_serving_one_kind_works_without_naming_it(command, provider_server, monkeypatch, tmp_path, capsys):
    """Review 35b #3: `care regions` asked every source for lifecycle (so --source gb/watttime could never
    work) and `care plan --kind` defaulted to lifecycle; both now default to the source's own kind."""
    _gb_down(provider_server, monkeypatch, tmp_path)
    assert main([*command, "--source", "gb", "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert any("gb failed" in w and "using embedded (direct)" in w for w in doc["warnings"]), doc["warnings"]
    if command[0] == "plan":
        assert doc["kind"] == "direct"


@pytest.mark.parametrize("command, fix", [
    (["regions", "--regions", "eu-west-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--kind", "lifecycle"], "use --kind direct"),
    (["plan", "--zone", "GB", "--now", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "6h", "--kind", "lifecycle"], "--kind direct"),
])
def test_a_kind_the_source_does_not_serve_names_the_cli_option(command, fix, capsys):
    assert main([*command, "--source", "gb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fix in err and "lifecycle" in err, err


def test_the_console_script_logs_to_stderr_so_json_stdout_stays_one_document(tmp_path):
    """Review 38a H3: `care ... --json` in its own process (where main() sets up logging): a library WARNING goes to
    stderr and stdout is only the JSON document. Under pytest the root logger already has handlers, so only a
    fresh process sees where main()'s logging.basicConfig sends log lines."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import care_flows

    code = Path(care_flows.__file__).resolve().parents[1]  # the tree under test
    script = Path(sys.executable).with_name("care")  # the installed console script
    care = [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from care_flows.cli import main; sys.exit(main())"]
    (tmp_path / "a-file").write_text("")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update(PYTHONPATH=str(code), HOME=str(tmp_path), PREFECT_HOME=str(tmp_path / "prefect"), ELECTRICITYMAPS_API_TOKEN="tok",
               # the unusable cache folder logs a WARNING (care_flows.signals.cache); the live source is refused at a
               # loopback proxy, so the command falls back to the embedded data without leaving 127.0.0.1
               CARE_CACHE_DIR=str(tmp_path / "a-file" / "cache"), HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([*care, "intensity", "--zone", "ES", "--source", "electricitymaps", *WINDOW, "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("{"), proc.stdout[:300]  # was: "WARNING care_flows.signals.cache: cache folder ..." first
    doc = json.loads(proc.stdout)
    assert doc["source"] == "embedded" and len(doc["points"]) == 3
    assert "WARNING care_flows.signals.cache: cache folder" in proc.stderr, proc.stderr


def test_regions_with_a_failing_live_source_scores_a_region_no_source_serves_without_carbon_data(provider_server, monkeypatch, tmp_path, capsys):
    """Review 39f M1: one candidate region without embedded data (eu-west-1, IE) and the provider down made
    `care regions` exit 2; with the embedded source the same region is a row without carbon data."""
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "cli-token-xyz")
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/", provider_server.reply(500, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["electricitymaps"]
    monkeypatch.setitem(registry.SOURCES, "electricitymaps", lambda kind, **s: real(kind, base_url=provider_server.url + "/v3", max_retries=0, **s))
    argv = ["regions", "--regions", "eu-south-2,eu-north-1,eu-west-1", "--at", "2023-06-01T10:00:00Z", "--duration", "2h",
            "--source", "electricitymaps", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    west = next(o for o in doc["options"] if o["region"] == "eu-west-1")
    assert not west["feasible"] and doc["chosen"]["region"] == "eu-north-1"
    said = [w for w in doc["warnings"] if w.startswith("no carbon forecast for eu-west-1 from --source electricitymaps (every source failed")]
    assert len(said) == 1 and said[0].endswith("scored without carbon data") and "cli-token-xyz" not in captured.err
    # the home region unserved is still an error: there is no baseline
    assert main(["regions", "--regions", "eu-west-1,eu-north-1", "--at", "2023-06-01T10:00:00Z", "--source", "electricitymaps"]) == 2
    assert "eu-west-1" in capsys.readouterr().err
