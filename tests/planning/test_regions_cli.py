"""`care regions`: JSON options + chosen; bad input exits 2 with one line."""

import json

import pytest

from care_flows.cli import main

BASE = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T12:00:00Z", "--duration", "1h",
        "--vcpu", "2", "--memory-gib", "8"]


def _run(capsys, *extra):
    code = main([*BASE, *extra, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_json_options_and_chosen(capsys):
    doc = _run(capsys, "--priorities", "carbon,cost", "--headroom-pct", "0")
    assert len(doc["options"]) == 2
    for o in doc["options"]:
        assert {"region", "zone", "instance_type", "usd_per_hour", "g_per_kwh", "expected_g", "expected_usd", "latency_ms",
                "feasible", "reason"} <= set(o)
        # t3.large (0.0912 / 0.0864) at the default 50 % CPU costs 0.02 USD/h of CPU credits more (review 30 #6)
        assert o["instance_type"] == "m7i-flex.large" and o["feasible"]
    by = {o["region"]: o for o in doc["options"]}
    assert by["eu-south-2"]["usd_per_hour"] == 0.10673 and by["eu-north-1"]["usd_per_hour"] == 0.10175
    assert by["eu-north-1"]["g_per_kwh"] < by["eu-south-2"]["g_per_kwh"]
    assert doc["chosen"]["region"] == "eu-north-1" and doc["at"] == "2023-06-01T12:00:00+00:00"
    assert doc["chosen"]["start"].endswith("+00:00") and "estimate" in doc["latency_source"]


def test_latency_sla_budget_and_weights(capsys):
    doc = _run(capsys, "--origin-region", "eu-south-2", "--max-latency-ms", "20")
    north = next(o for o in doc["options"] if o["region"] == "eu-north-1")
    assert not north["feasible"] and "latency" in north["reason"] and doc["chosen"]["region"] == "eu-south-2"
    assert doc["feasible"] is True  # one option meets every constraint
    doc = _run(capsys, "--budget-usd", "0.001")
    assert not any(o["feasible"] for o in doc["options"]) and doc["is_now_here"]
    assert doc["feasible"] is False  # review 38c M2: was true when only the budget (or latency) ruled every option out
    assert _run(capsys, "--origin-region", "eu-south-2", "--max-latency-ms", "0.001")["feasible"] is False
    assert any("no feasible option" in w for w in doc["warnings"])
    doc = _run(capsys, "--weights", "carbon=0.7,cost=0.3")
    assert doc["weights"] == {"carbon": 0.7, "cost": 0.3} and doc["chosen"]["region"] == "eu-north-1"


def test_text_output(capsys):
    assert main(BASE) == 0
    assert "chosen: eu-north-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, match",
    [
        (["--regions", "eu-south-2,mars-1"], "unknown region 'mars-1'"),
        (["--duration", "-1h"], "negative"),
        (["--duration", "soon"], "not a duration"),
        (["--at", "2023-06-01T12:00:00"], "no UTC offset"),
        (["--weights", "carbon:0.7"], "objective=number"),
        (["--weights", "carbon=0.7,carbon=0.3"], "--weights gives carbon twice (carbon=0.7,carbon=0.3); give each objective once"),  # 39b M5
        (["--priorities", ""], "--priorities '' is not a comma-separated list; use e.g. carbon,cost"),  # 39b M4
        (["--weights", ""], "--weights '' is not a comma-separated list; use e.g. carbon=0.7,cost=0.3"),
        (["--priorities", "carbon,speed"], "priorities"),
        (["--at", "2020-01-01T00:00:00Z"], "no carbon"),
        (["--vcpu", "-2"], "vcpu"),
    ],
)
def test_bad_input_exit_2_one_line(capsys, args, match):
    argv = list(BASE)
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i : i + 2]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err


def test_region_without_carbon_data_and_unknown_source(capsys):
    argv = ["regions", "--regions", "eu-south-2,eu-west-1", "--at", "2023-06-01T12:00:00Z", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    west = next(o for o in doc["options"] if o["region"] == "eu-west-1")
    assert west["feasible"] is False and west["reason"] == "no carbon data for zone IE" and doc["chosen"]["region"] == "eu-south-2"
    assert main([*argv[:-1], "--source", "nope"]) == 2
    assert "unknown carbon source 'nope'" in capsys.readouterr().err


def test_temporal_window_within(capsys):
    doc = _run(capsys, "--within", "12h", "--headroom-pct", "0")
    assert doc["chosen"]["region"] == "eu-north-1"
    starts = {o["start"] for o in doc["options"] if o["region"] == "eu-north-1"}
    assert len(starts) == 2 and doc["chosen"]["start"] in starts


@pytest.mark.parametrize("extra,region,zone", [
    (["--regions", "us-east-1,eu-north-1"], "us-east-1", "US-MIDA-PJM"),
    (["--regions", "eu-south-2,eu-north-1", "--home-region", "eu-west-1"], "eu-west-1", "IE"),
])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_home_region_without_carbon_data_exits_2_naming_zone_and_fix(capsys, extra, region, zone, json_flag):
    # review 4 #1: the table crashed on expected_g=None (exit 1); --json kept the run at home "saving unknown carbon"
    assert main(["regions", *extra, "--at", "2023-06-01T08:00:00Z", *json_flag]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert f"home region {region} (zone {zone}) has no carbon data from --source embedded" in err
    assert "--source" in err and "electricitymaps" in err and "eu-north-1 (SE)" in err


def test_table_marks_utc_and_region_without_data_never_wins(capsys):
    assert main(["regions", "--regions", "eu-south-2,us-east-1", "--at", "2023-06-01T08:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "start (UTC)" in out and "no carbon data for zone US-MIDA-PJM" in out
    assert "chosen: eu-south-2" in out


def test_too_many_vcpu_gives_cli_advice(capsys):
    # review 4 #10: "(families=None, ...) widen the families" although the CLI has no families option
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--vcpu", "500"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--vcpu 500" in err and "largest there: u-6tb1.112xlarge, 448 vCPU" in err and "--home-region" in err
    assert "families" not in err


@pytest.mark.parametrize("extra, said", [
    (["--budget-usd", "-1"], "error: --budget-usd: Input should be greater than 0 (got -1.0)"),
    (["--cpu-utilisation", "2"], "error: --cpu-utilisation 2 must be between 0 and 1, e.g. 0.5 for 50%"),  # review 44a L3: says it is a fraction
    (["--priorities", "carbon,foo"], "error: --priorities (item 2): Input should be 'carbon', 'cost', 'latency' or 'resource' (got 'foo')"),
    (["--tie-break", "foo"], "error: --tie-break: unknown key 'foo'"),
])
def test_a_bad_option_is_named_as_typed_not_as_the_policy_field(capsys, extra, said):
    """Review 35a L5: the errors named budget_usd_per_run, cpu_utilisation, priorities.1, tie_break."""
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(said) and err.count("\n") == 1, err


def test_a_time_after_the_embedded_data_says_its_forecasts_replay_2023(capsys):
    """Review 39b M2: `care regions` at any time after 2023 (today included) replayed 2023 without a word,
    where `care plan` and `care intensity` warn."""
    argv = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2026-11-30T08:00:00Z", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    said = ("the embedded data ends before 2026-11-30T08:00:00+00:00: the forecasts for ES, SE replay 2023 "
            "(give --at within the data, 2021-2023, or a live --source)")
    assert json.loads(out)["warnings"] == [said] and err == f"warning: {said}\n"
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
