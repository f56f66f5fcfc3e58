"""Review 39b M6: an empty path ("" from an unset shell variable, `--out "$OUT"`) was the current folder:
". is a folder" errors, an --out silently ignored, and `care demo --out ""` writing its report into the
working directory. Every path option now refuses it in one line, exit 2, before doing anything."""

from __future__ import annotations

import pytest

from care_flows.cli import PATH_OPTIONS, main

NOW = ["--now", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "4h"]


@pytest.mark.parametrize("argv, flag", [
    (["plan", "--carbon-csv", "", *NOW], "--carbon-csv"),
    (["forecast-usage", "--csv", "", "--column", "v"], "--csv"),
    (["forecast-usage", "--csv=  ", "--column", "v"], "--csv"),
    (["simulate", "--jobs", "", "--carbon-csv", "embedded:ES", "--policy", "now"], "--jobs"),
    (["simulate", "--jobs", "jobs.csv", "--carbon-csv", "", "--policy", "now"], "--carbon-csv"),
    (["simulate", "--jobs", "jobs.csv", "--carbon-csv", "embedded:ES", "--policy", "now", "--out", ""], "--out"),
    (["simulate", "convert-gaia", "", "--start", "2023-06-01T00:00:00Z"], "the GAIA trace path"),
    (["simulate", "poisson", "--n", "10", "--out", " "], "--out"),
    (["usage", "etl", "--usage-dir", ""], "--usage-dir"),
    (["demo", "--out", ""], "--out"),
])
def test_an_empty_path_is_refused_naming_the_option(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {flag} is empty; give a path (an unset shell variable?)\n"
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_every_path_option_of_every_command_refuses_an_empty_value():
    import typer

    from care_flows.cli import build_app, refuse_empty_paths

    command = typer.main.get_command(build_app())
    refuse_empty_paths(command)
    found = []

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")
        for param in cmd.params:
            if param.param_type_name == "option" and PATH_OPTIONS & set(param.opts):
                found.append((path, param.opts[0], getattr(param, "_refuses_empty", False)))

    walk(command, "care")
    assert len(found) >= 9 and all(ok for *_, ok in found), found
