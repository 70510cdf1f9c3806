"""The run's summary as Prefect artifacts: the Markdown summary and tables of the stages, the
dbt nodes and the delivered files' quality (the Prefect UI's page of a run)."""

from __future__ import annotations

import dataclasses
import logging

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from orchestration.summary import RunSummary

logger = logging.getLogger(__name__)

#: The columns of the file-quality table: a delivered sales file's rows by bucket.
FILE_QUALITY_COLUMNS = (
    "file_name",
    "status",
    "rows_in",
    "rows_valid",
    "rows_duplicate",
    "rows_superseded",
    "rows_quarantined",
    "duplicate_ratio",
)


def publish_run_artifacts(summary: RunSummary) -> None:
    """Create the run's artifacts; never raises (the run's outcome does not depend on them)."""
    try:
        create_markdown_artifact(
            summary.to_markdown(), key="run-summary", description="The run's summary"
        )
        create_table_artifact(
            [dataclasses.asdict(stage) | {"rows": str(stage.rows)} for stage in summary.stages],
            key="stages",
            description="Each stage: status, duration, rows",
        )
        if summary.dbt_nodes:
            create_table_artifact(
                summary.dbt_nodes,
                key="dbt-nodes",
                description="Every dbt model, snapshot and test of the build, with its status",
            )
        if summary.files:
            create_table_artifact(
                [{c: item.get(c) for c in FILE_QUALITY_COLUMNS} for item in summary.files],
                key="file-quality",
                description="Per delivered sales file: rows by bucket and duplicate ratio",
            )
    except Exception as exc:
        logger.warning("Could not publish the run's artifacts: %s", exc)
