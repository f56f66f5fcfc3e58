"""The ``care-report`` Prefect flow: what ``@care`` runs saved, published in the Prefect UI.

Each run builds ``care report``'s document for its period (:func:`care_flows.orchestration.report.build_report`)
and publishes it as the markdown artifact keyed ``care-report`` of the run; the UI's Artifacts page
keeps every publication as a version. ``care report --publish`` runs it once; to publish on a
schedule, serve or deploy it like any flow:

    from care_flows.orchestration.report_flow import report_flow

    if __name__ == "__main__":  # Prefect starts each run by re-importing the serving script
        report_flow.serve(name="daily", cron="0 6 * * *", parameters={"since": "1d"})

>>> report_flow.name, sorted(report_flow.parameters.properties)
('care-report', ['end', 'flows', 'since', 'start'])
"""

from __future__ import annotations

from typing import Any

from prefect import flow

__all__ = ["report_flow"]


@flow(name="care-report", persist_result=False, description="Publish what CaRE runs saved as the care-report artifact.")
def report_flow(since: str | None = "1d", start: str | None = None, end: str | None = None,
                flows: list[str] | None = None) -> dict[str, Any]:
    """Publish the report of ``[end - since, end)`` (or ``[start, end)`` when ``start`` is given;
    ``end`` defaults to this run's scheduled start) for ``flows`` (default every flow) as this
    run's ``care-report`` artifact; returns the document, with ``published_artifact_id``."""
    from care_flows.orchestration.report import report_flow_body

    return report_flow_body(since, start, end, flows)
