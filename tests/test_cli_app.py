import json

from care_flows.cli import main


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "info" in out


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["definitely-not-a-command"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_unknown_option_is_one_line_exit_2(capsys):
    assert main(["info", "--bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--bogus" in err and "\n" not in err


def test_info_json_lists_reference_regions(capsys):
    assert main(["info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {r["region"]: r for r in doc["regions"]}
    assert by_name["eu-south-2"]["zone"] == "ES"
    assert by_name["eu-north-1"]["zone"] == "SE-SE3"


def test_version_prints_care_prefect_and_python_versions(capsys):
    import prefect

    from care_flows import __version__

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"care {__version__} (prefect {prefect.__version__}, python 3.") and len(out.splitlines()) == 1


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():  # typer vendors click: duck-type groups
        yield from _commands(sub, (*path, name))


def test_every_visible_command_and_option_has_help_text():
    """Review 38a H5: every subcommand's --help is complete (e.g. `care compare --hours` had no help text)."""
    import typer

    from care_flows.cli import build_app

    walked = list(_commands(typer.main.get_command(build_app())))
    assert {("compare",), ("aws", "reap")} <= {path for path, _ in walked}  # the walk reaches nested subcommands
    missing = []
    for path, cmd in walked:
        if getattr(cmd, "hidden", False):
            continue
        if path and not (cmd.help or cmd.short_help or "").strip():
            missing.append(f"care {' '.join(path)} (the command)")
        for param in cmd.params:
            if getattr(param, "param_type_name", "") == "option" and not param.hidden and not (param.help or "").strip():
                missing.append(f"care {' '.join(path)} {param.opts[0]}")
    assert not missing, missing
