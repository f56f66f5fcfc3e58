"""Review 40e, on d951db4 (the dispatched run takes over the user's settings).

M1: on a care-ec2 deployment a move to another region stays in the same deployment, so the trigger's
own subnet_id / image_id / security groups / key pair, things of the home region, went with it and the
launch in the other region would fail. L5: Prefect's auto-scheduled tag went to runs the scheduler did
not create.
"""

from __future__ import annotations

import logging
import types

from care_flows.orchestration.decorator import _carried, _warn_dropped


class _Api:
    def read_deployment(self, _id):  # noqa: ANN001, ANN202
        return types.SimpleNamespace(name="prod", flow_id="f", tags=["nightly"])

    def read_flow(self, _id):  # noqa: ANN001, ANN202
        return types.SimpleNamespace(name="etl")


TRIGGER = types.SimpleNamespace(
    id="t1", deployment_id="d", work_queue_name="default", tags=["auto-scheduled", "nightly", "team:finance"],
    job_variables={"subnet_id": "subnet-es", "fallback_subnet_ids": ["subnet-es-b"], "security_group_ids": ["sg-es"],
                   "image_id": "ami-es", "key_name": "ops-es", "install": "etl==2", "env": {"A": "1"}, "region": "eu-south-2"})


def test_m1_a_move_to_another_region_leaves_what_names_the_home_regions_things(caplog):
    moved = _carried(_Api(), TRIGGER, "etl/prod", from_region="eu-south-2", to_region="eu-north-1")
    assert moved.job_variables == {"install": "etl==2", "env": {"A": "1"}}
    assert moved.dropped == ["fallback_subnet_ids", "image_id", "key_name", "security_group_ids", "subnet_id"]
    with caplog.at_level(logging.WARNING):
        _warn_dropped(moved, "etl/prod")
    assert "does not get this run's job variables fallback_subnet_ids, image_id, key_name, security_group_ids, subnet_id" in caplog.text
    stays = _carried(_Api(), TRIGGER, "etl/prod", from_region="eu-south-2", to_region="eu-south-2")  # a shift in time only
    assert stays.job_variables["subnet_id"] == "subnet-es" and stays.dropped == []


def test_l5_the_schedulers_tag_is_not_carried():
    assert _carried(_Api(), TRIGGER, "etl/prod").tags == ["team:finance"]
