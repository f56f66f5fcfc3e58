"""The shared test server's reads see every matching row, however many earlier tests made.

CI once failed because ``client.read_flow_runs()`` returned one page of the session's runs (the
server's default limit, in random id order) and the run the test looked for was not on it.
"""

from __future__ import annotations

import uuid

from prefect import flow, get_client

import tests.prefect_queries as queries


def test_runs_of_reads_every_page_of_a_deployments_runs_and_no_other_deployments(monkeypatch):
    @flow(name=f"paged-{uuid.uuid4().hex[:8]}")
    def job() -> int:
        return 1

    dep = job.to_deployment(name="paged").apply()
    other = job.to_deployment(name="paged-other").apply()
    monkeypatch.setattr(queries, "PAGE", 2)
    with get_client(sync_client=True) as client:
        made = {client.create_flow_run_from_deployment(dep).id for _ in range(5)}
        client.create_flow_run_from_deployment(other)
        assert {r.id for r in queries.runs_of(client, dep)} == made  # three pages of 2, 2 and 1
        assert len(queries.runs_of(client, dep, other)) == 6


def test_variables_named_reads_every_page_and_only_the_prefix(monkeypatch):
    prefix = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(queries, "PAGE", 2)
    from prefect.client.schemas.actions import VariableCreate

    with get_client(sync_client=True) as client:
        for i in range(5):
            client.create_variable(VariableCreate(name=f"{prefix}-{i}", value=i))
        client.create_variable(VariableCreate(name=f"x{prefix}-9", value=9))  # holds the prefix, does not start with it
        assert sorted(v.value for v in queries.variables_named(client, prefix)) == [0, 1, 2, 3, 4]


def test_artifacts_like_reads_every_page(monkeypatch):
    from prefect.artifacts import create_markdown_artifact

    key = f"paged-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(queries, "PAGE", 2)

    @flow(name=f"{key}-maker")
    def make() -> None:
        for i in range(3):
            create_markdown_artifact(markdown=f"{i}", key=f"{key}-{i}")

    make()
    with get_client(sync_client=True) as client:
        assert len(queries.artifacts_like(client, key)) == 3
