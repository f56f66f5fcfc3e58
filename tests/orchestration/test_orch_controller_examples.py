"""The example deployments and blocks follow the controller's rule (review 4 #9b, #17).

The ``care`` deployment tag hands a deployment's Scheduled runs to ``care controller``; on a
deployment of a ``@care`` flow that overrides the flow's own policy, so the examples (all
decorated) must not carry it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from care_flows.orchestration.dispatch import CARE_TAG
from tests.repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    return getattr(load_script(path, f"care_example_{Path(path).stem}"), name)


def test_example_deployments_of_care_flows_are_not_handed_to_the_controller():
    doc = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    decorated = []
    for dep in doc["deployments"]:
        if hasattr(_flow(dep["entrypoint"]), "__care_config__"):
            decorated.append(dep["name"])
            assert CARE_TAG not in (dep.get("tags") or []), f"{dep['name']}: a @care flow's deployment carries the controller's tag"
    assert len(decorated) == len(doc["deployments"]) == 5


def test_examples_name_eu_south_2_by_its_place():
    for path in ("deployments/prefect.yaml", "deployments/README.md", "blocks/README.md"):
        text = (ROOT / path).read_text(encoding="utf-8")
        assert "Madrid" not in text, f"{path}: eu-south-2 is in Aragón, not Madrid"


def test_the_controllers_multi_region_pool_type_is_the_ec2_workers():
    from care_flows.aws.worker import CareEC2Worker
    from care_flows.orchestration.controller import EC2_POOL_TYPE

    assert EC2_POOL_TYPE == CareEC2Worker.type  # only that worker launches in the run's `region` job variable
