"""CarePolicy via load_policy: bad input -> ConfigError; the generated reference is up to date."""

from pathlib import Path

import pytest

from care_flows.errors import ConfigError
from care_flows.policy import CarePolicy, Objective, load_policy, policy_reference_markdown


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"regions": ["eu-nowhere-1"]}, "unknown region 'eu-nowhere-1'"),
        ({"home_region": "mars-1"}, "home_region: unknown region"),
        ({"deadline_within": "-1h"}, "deadline_within"),
        ({"expected_duration": "-30m"}, "expected_duration"),
        ({"min_segment": "-5m"}, "min_segment"),
        ({"expected_duration": "3h", "deadline_within": "2h"}, "exceeds deadline_within"),
        ({"weights": {"carbon": -1}}, "weights"),
        ({"weights": {"speed": 1}}, "weights"),
        ({"tolerance_pct": -1}, "tolerance_pct"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_bad_policies_raise_config_error(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_policy(bad)
    assert "\n" not in str(info.value)


def test_defaults_and_home_first():
    p = load_policy({"home_region": "eu-north-1", "regions": ["eu-south-2"], "max_latency_ms": 50})
    assert p.candidate_regions == ["eu-north-1", "eu-south-2"]
    assert p.origin_region == "eu-north-1"  # latency SLA without origin -> measured from home
    assert p.priorities[0] is Objective.carbon and p.allow_burstable
    assert load_policy(p.model_dump_json()) == p
    assert load_policy(p, tolerance_pct=10).tolerance_pct == 10


def test_policy_doc_is_up_to_date():
    doc = Path(__file__).resolve().parents[1] / "docs" / "POLICY.md"
    assert doc.read_text(encoding="utf-8") == policy_reference_markdown(), (
        "docs/POLICY.md is stale; regenerate it with policy_reference_markdown()"
    )
    text = policy_reference_markdown()
    for name in CarePolicy.model_fields:
        assert f"| `{name}` |" in text


@pytest.mark.parametrize(
    "bad, match",
    [
        # review 4 #10: durations as users write them, not timedelta reprs ("1 day, 6:00:00")
        ({"expected_duration": "30h", "deadline_within": "12h"}, "^invalid CaRE policy: expected_duration 30h exceeds deadline_within 12h;"),
        ({"deadlin_within": "1h"}, "unknown field 'deadlin_within'; did you mean 'deadline_within'\\?"),
        ({"targets": {"eu-north-1": {"work_pol": "p"}}}, "unknown field 'work_pol' in targets.eu-north-1; did you mean 'work_pool'\\?"),
        # review 4 #6: the carbon source is checked when the policy loads, not at plan time in the deployed run
        ({"home_region": "eu-south-2", "carbon_source": "electricmaps"},
         "unknown carbon source 'electricmaps'; did you mean 'electricitymaps'\\? \\(known sources: electricitymaps, embedded, gb, watttime\\)"),
        ({"carbon_source": "csv"}, "carbon_source 'csv' needs a file path"),
        ('{bad json', "the policy text is not valid JSON \\(line 1, column 2: "),
        ('{"home_region": "eu-south-2",\n "regions": [}', "not valid JSON \\(line 2, column 14: "),
        ("[1, 2]", "the policy JSON is an array, not an object"),
    ],
)
def test_policy_errors_name_the_fix_in_user_terms(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_policy(bad)
    text = str(info.value)
    assert "\n" not in text and "day," not in text and "Extra inputs" not in text


def test_known_carbon_sources_load_normalised():
    assert [load_policy({"carbon_source": s}).carbon_source for s in ("embedded", "Electricitymaps", " gb", "watttime")] == [
        "embedded", "electricitymaps", "gb", "watttime"]


def test_tie_break_default_and_validation():
    assert CarePolicy().tie_break == ["home", "carbon", "earliest"]
    assert load_policy({"tie_break": ["earliest", Objective.cost]}).tie_break == ["earliest", "cost"]
    assert load_policy({"tie_break": "cost, home"}).tie_break == ["cost", "home"]
    assert load_policy({"tie_break": []}).tie_break == []
    p = load_policy({"tie_break": ["latency"]})
    assert load_policy(p.model_dump_json()) == p
    for bad, match in ((["nearest"], "unknown key 'nearest'.*allowed: home, earliest, carbon, cost, latency, resource"),
                       (["home", "home"], "home given twice"), (5, "is not a list")):
        with pytest.raises(ConfigError, match=match) as info:
            load_policy({"tie_break": bad})
        assert "\n" not in str(info.value) and str(info.value).startswith("invalid CaRE policy: tie_break:")
