"""Review 10: policies that load must also plan; files load; impossible combinations fail at load."""

import json
from pathlib import Path

import pandas as pd
import pytest

from care_flows.errors import ConfigError
from care_flows.policy import SOURCE_SIGNALS, CarePolicy, RegionTarget, load_policy

NOW = pd.Timestamp("2023-06-01T08:00Z")
CREDS = {"gb": {}, "watttime": {"username": "u", "password": "p"}, "electricitymaps": {"api_token": "t"}}


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and "pydantic" not in text and "<Objective" not in text
    return text


@pytest.mark.parametrize("source, kind", [("embedded", "lifecycle"), ("electricitymaps", "lifecycle"), ("gb", "direct"), ("watttime", "marginal")])
def test_signal_defaults_to_what_the_source_serves(source, kind):
    p = load_policy({"carbon_source": source})
    assert p.signal == kind
    assert load_policy(p.model_dump_json()) == p  # the filled-in kind reads back
    assert load_policy(p, carbon_source="embedded").signal == "lifecycle"  # a derived default follows an override


def test_served_kinds_match_the_signal_registry():
    from care_flows.signals.registry import get_signal

    for source, served in SOURCE_SIGNALS.items():
        if source == "csv":
            continue
        creds = CREDS.get(source, {})
        assert get_signal(source, cache=False, fallback=False, **creds).kind == served[0]
        for kind in ("lifecycle", "direct", "marginal"):
            if kind in served:
                assert get_signal(source, kind=kind, cache=False, fallback=False, **creds).kind == kind
            else:
                with pytest.raises(ConfigError):
                    get_signal(source, kind=kind, cache=False, fallback=False, **creds)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"carbon_source": "gb", "signal": "lifecycle"}, "carbon_source 'gb' does not serve the lifecycle signal \\(it serves direct\\)"),
        ({"carbon_source": "watttime", "signal": "direct"}, "'watttime' does not serve the direct signal \\(it serves marginal\\)"),
        ({"signal": "marginal"}, "'embedded' does not serve the marginal signal \\(it serves lifecycle and direct\\)"),
        ({"threshold_g_per_kwh": 150, "threshold_percentile": 10}, "threshold_g_per_kwh 150 and threshold_percentile 10 are both set"),
        # review 17 #1: @care planned green segments, reported their savings, and the body ran straight through
        ({"threshold_g_per_kwh": 150}, "threshold_g_per_kwh 150 runs the job in green segments, which needs interruptible: true"),
        ({"threshold_percentile": 20}, "threshold_percentile 20 runs the job in green segments, which needs interruptible: true"),
        ({"priorities": ["carbon", "carbon"]}, "carbon given twice"),
        ({"instance_type": "t9.huge"}, "'t9.huge' is in no region of the embedded price table; did you mean 't3.large'"),
        ({"instance_families": ["zz9"]}, "unknown instance family 'zz9'"),
        ({"exclude_families": ["t33"]}, "unknown instance family 't33'; did you mean 't3'"),
        ({"instance_type": "t4g.large", "architecture": "x86_64"}, "'t4g.large' is arm64 but architecture is 'x86_64'"),
        ({"weights": {"carbon": -1}}, "weights: \\{'carbon': -1.0\\} must be >= 0"),
    ],
)
def test_impossible_policies_fail_at_load_in_one_line(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_policy(bad)
    _one_line(info)


def test_old_saved_policy_dicts_without_signal_still_load():
    doc = json.loads((Path(__file__).resolve().parents[1] / "blocks" / "care-policy-green-batch.json").read_text())["data"]["policy"]
    doc.pop("signal")
    assert load_policy(doc).signal == "lifecycle"
    assert load_policy({"carbon_source": "gb", "home_region": "eu-west-2"}).signal == "direct"


def test_assignment_keeps_source_and_kind_consistent():
    p = CarePolicy(carbon_source="gb")
    p.carbon_source = "watttime"
    assert p.signal == "marginal"


def test_pinned_type_sets_the_architecture_when_not_given():
    assert load_policy({"instance_type": "t4g.large"}).architecture == "arm64"
    assert load_policy({"instance_type": "t4g.large", "architecture": None}).architecture is None
    assert load_policy({"instance_type": "t3.large"}).architecture == "x86_64"


def test_empty_regions_means_home_only():
    p = load_policy({"home_region": "eu-north-1", "regions": []})
    assert p.candidate_regions == ["eu-north-1"]


def test_region_target_errors_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown field 'work_poo'; did you mean 'work_pool'\\?") as info:
        RegionTarget(work_poo="p")
    _one_line(info)
    assert RegionTarget(work_pool="p").work_pool == "p"


@pytest.mark.parametrize("policy", [{"carbon_source": "gb"}, {"carbon_source": "watttime"},
                                    {"home_region": "eu-south-2", "regions": ["eu-north-1"], "carbon_source": "electricitymaps", "signal": "lifecycle"}])
def test_tutorial_section5_policies_plan(policy, tmp_path):
    """TUTORIAL §5: the provider is down (closed local port), so the run plans on the embedded fallback."""
    import socket

    from care_flows.orchestration.plan import plan_run
    from care_flows.signals.registry import get_signal

    with socket.socket() as sock:  # a port nothing listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = load_policy(policy)
    signal = get_signal(p.carbon_source, kind=p.signal, base_url=f"http://127.0.0.1:{port}", cache=False,
                        timeout_s=0.5, max_retries=0, **CREDS[p.carbon_source])
    result = plan_run(p, NOW, signal=signal)
    assert result.region in p.candidate_regions


def test_load_policy_reads_json_and_yaml_files(tmp_path):
    (tmp_path / "p.json").write_text('{"home_region": "eu-north-1", "deadline_within": "12h"}')
    (tmp_path / "p.yaml").write_text("home_region: eu-north-1\nregions: [eu-south-2]\ncarbon_source: gb\n")
    assert load_policy(tmp_path / "p.json").home_region == "eu-north-1"
    assert load_policy(str(tmp_path / "p.json")).deadline_within == pd.Timedelta("12h")
    y = load_policy(str(tmp_path / "p.yaml"))
    assert (y.home_region, y.signal) == ("eu-north-1", "direct")
    assert load_policy(tmp_path / "p.yaml", home_region="eu-south-2").home_region == "eu-south-2"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: str(d / "missing.yaml"), "policy file '.*missing.yaml' not found; give JSON text, a dict, or a path to a .json/.yaml file"),
        (lambda d: str(d / "policy.txt"), "is neither JSON text nor a .json/.yaml path; give JSON text, a dict, or a path"),
        (lambda d: "policy.txt", "'policy.txt' is neither JSON text nor a .json/.yaml path"),
        (lambda d: (d / "bad.yaml").write_text("a: [1\n") and str(d / "bad.yaml"), "is not valid YAML \\(line"),
        (lambda d: (d / "list.json").write_text("[1]") and d / "list.json", "holds a list, not a mapping"),
        (lambda d: d, "is a folder"),
    ],
)
def test_policy_file_errors_are_one_line(tmp_path, make, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_policy(make(tmp_path))
    _one_line(info)


def test_yaml_clock_times_are_not_read_as_base_60_seconds(tmp_path):
    """Review 12 #5: YAML 1.1 read `deadline_within: 12:00` as 720 (seconds): 12 minutes, silently."""
    bad = tmp_path / "p.yaml"
    bad.write_text("deadline_within: 12:00\n")
    with pytest.raises(ConfigError, match=r"deadline_within '12:00' is not a duration; use e.g. 2h"):
        load_policy(bad)
    good = tmp_path / "q.yaml"
    good.write_text("deadline_within: 12h\nmin_savings_pct: 2.5\nbudget_usd_per_run: .5\ntolerance_pct: 1e1\n")
    p = load_policy(good)
    assert (p.deadline_within, p.min_savings_pct, p.budget_usd_per_run, p.tolerance_pct) == (pd.Timedelta("12h"), 2.5, 0.5, 10.0)


def test_care_takes_a_policy_file(tmp_path):
    """Review 12 #6: @care(policy=Path(...)) was refused and "policy.json" was looked up as a block name."""
    from care_flows.orchestration.decorator import resolve_policy

    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"home_region": "eu-south-2", "regions": ["eu-north-1"]}))
    assert resolve_policy(path).regions == resolve_policy(str(path)).regions == ["eu-south-2", "eu-north-1"]


def test_threshold_mode_with_segment_limits_is_one_line_config_error():
    """Review 32 #1: a threshold policy with max_segments=1 ran in four segments; the CLI already refuses the pair."""
    from care_flows.errors import ConfigError
    from care_flows.policy import load_policy

    for extra in ({"max_segments": 1}, {"min_segment": "2h"}):
        with pytest.raises(ConfigError, match="do not apply to threshold mode") as info:
            load_policy({"home_region": "eu-south-2", "interruptible": True, "threshold_percentile": 25, **extra})
        assert "\n" not in str(info.value)
