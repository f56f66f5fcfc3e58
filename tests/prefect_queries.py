"""Reads of the session's shared Prefect test server that see every matching row.

``prefect_test_harness`` runs one server for the whole test session, so it holds every earlier
test's flow runs, artifacts and variables. An unfiltered ``client.read_flow_runs()`` returns one
page (the server's default limit, 200) in id order, which is random: once the session has made
more than 200 runs, the run a test looks for may not be in it. These helpers filter on the
server and read page by page.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from care_flows.orchestration.controller import iter_pages

PAGE = 200


def runs_of(client: Any, *deployment_ids: UUID | str) -> list[Any]:
    """Every flow run of the given deployments."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    wanted = DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(d)) for d in deployment_ids]))
    return list(iter_pages(client.read_flow_runs, limit=PAGE, deployment_filter=wanted))


def artifacts_like(client: Any, key_part: str) -> list[Any]:
    """Every artifact whose key contains ``key_part``."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    return list(iter_pages(client.read_artifacts, limit=PAGE, artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=key_part))))


def variables_named(client: Any, prefix: str) -> list[Any]:
    """Every variable whose name starts with ``prefix``."""
    from prefect.client.schemas.objects import Variable

    found: list[dict[str, Any]] = []
    while True:
        body = {"variables": {"name": {"like_": prefix}}, "limit": PAGE, "offset": len(found), "sort": "NAME_ASC"}
        page = client.request("POST", "/variables/filter", json=body).json()
        found += page
        if len(page) < PAGE:
            return [v for v in Variable.model_validate_list(found) if v.name.startswith(prefix)]
