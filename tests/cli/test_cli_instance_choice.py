"""``care regions --instance-choice``: the lower-power types in the table and the JSON, and a bad value."""

from __future__ import annotations

import json

from care_flows.cli import main
from tests.cli.test_cli_bad_input_review15 import usage_error

ARGS = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--within", "12h", "--vcpu", "2",
        "--memory-gib", "8"]


def test_priorities_offers_and_marks_the_lower_power_type(capsys):
    assert main([*ARGS, "--instance-choice", "priorities", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert (doc["chosen"]["region"], doc["chosen"]["instance_type"]) == ("eu-north-1", "m7i-flex.xlarge")
    assert {(o["instance_type"], o["sized_for"]) for o in doc["options"]} == {("t3.xlarge", "cheapest"), ("m7i-flex.xlarge", "priorities")}
    assert doc["baseline"]["instance_type"] == "t3.xlarge"
    assert "m7i-flex.xlarge instead of the right-sized t3.xlarge: 32% less power" in err
    assert main([*ARGS, "--instance-choice", "priorities"]) == 0
    table = capsys.readouterr().out
    assert "m7i-flex.xlarge (lower power)" in table and "t3.xlarge (lower power)" not in table
    assert "chosen: eu-north-1 m7i-flex.xlarge" in table


def test_the_default_offers_the_right_sized_type_only(capsys):
    assert main([*ARGS, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {o["instance_type"] for o in doc["options"]} == {"t3.xlarge"} and doc["chosen"]["instance_type"] == "t3.xlarge"


def test_a_bad_instance_choice_is_a_usage_error_naming_the_flag(capsys):
    line = usage_error([*ARGS, "--instance-choice", "greenest"], capsys)
    assert line == "error: --instance-choice: Input should be 'cheapest' or 'priorities' (got 'greenest')"
