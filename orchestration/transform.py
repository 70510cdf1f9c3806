"""The flow's dbt stage: the sources' freshness, a build of what changed, and its retries.

``dbt build`` runs what :mod:`orchestration.dbt_state` plans (every node, or those the load
changed), one Prefect task run per node (:mod:`orchestration.dbt_runner`); the state of a
successful build is kept in the warehouse. A build that failed because the warehouse was
unreachable is run again after :data:`DBT_RETRY_DELAYS`; a failing model or test is not.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from elt_settings import Settings
from orchestration.dbt_runner import PRODUCTION_BUILD, BuildResult, DbtProject, SourceFreshness
from orchestration.dbt_state import (
    BuildPlan,
    Warehouse,
    fresher_sources,
    missing_relations,
    plan_build,
)
from orchestration.retry import is_transient, is_transient_message

#: Waits before the retries of dbt after a warehouse outage (as the load's task retries).
DBT_RETRY_DELAYS: tuple[float, ...] = (15, 15)


@dataclass(frozen=True)
class TransformResult:
    """What the dbt stage did: the build, what it was asked to build, the sources' freshness."""

    build: BuildResult
    plan: str
    """The plan's summary: ``every node ...`` or ``a selection ...``."""
    freshness: list[SourceFreshness]


class DbtBuildFailed(RuntimeError):
    """``dbt build`` failed: the message names every failed node, with its compiled SQL."""

    def __init__(self, result: BuildResult, plan: str = "") -> None:
        self.result = result
        self.plan = plan
        # Every failed node named on the first line: an alert or a terminal shows that line
        # (the details, compiled SQL included, follow in the order dbt's threads ended them).
        names = ", ".join(sorted(f"{n.resource_type} {n.name}" for n in result.failed_nodes))
        said = f"dbt build failed ({names}):" if names else "dbt build failed:"
        super().__init__(said + "\n" + result.failure_report())

    @property
    def transient(self) -> bool:
        """Every failure says the warehouse was unreachable (an outage, not a bad model)."""
        messages = [node.message for node in self.result.failed_nodes]
        if self.result.error:
            messages.append(self.result.error)
        return bool(messages) and all(is_transient_message(m) for m in messages)


@task(name="dbt source freshness", timeout_seconds=900, cache_policy=NO_CACHE)
def source_freshness(project: DbtProject) -> list[SourceFreshness]:
    """``dbt source freshness``: when each raw table last got new rows (``sources.json``)."""
    return project.freshness()


def transform(settings: Settings, *, full_refresh: bool) -> TransformResult:
    """The dbt stage: :func:`build_what_changed`, again while the warehouse is unreachable.

    Raises:
        DbtBuildFailed: a node failed, or dbt could not run (after the retries of an outage).
    """
    warehouse = Warehouse(
        settings.target,
        os.path.abspath(settings.duckdb_path),
        settings.postgres_dsn.get_secret_value(),
    )

    def attempt() -> TransformResult:
        project = DbtProject(settings.dbt_env())
        return build_what_changed(project, warehouse, full_refresh=full_refresh)

    for delay in DBT_RETRY_DELAYS:
        try:
            return attempt()
        except Exception as exc:
            outage = exc.transient if isinstance(exc, DbtBuildFailed) else is_transient(exc)
            if not outage:
                raise
            get_run_logger().warning("dbt could not reach the warehouse; retrying in %.0f s", delay)
            time.sleep(delay)
    return attempt()  # the last one: its failure is the stage's


def build_what_changed(
    project: DbtProject, warehouse: Warehouse, *, full_refresh: bool
) -> TransformResult:
    """Freshness of the sources, then ``dbt build`` of what changed since the warehouse's last
    successful build, whose state is then saved in the warehouse.

    Raises:
        DbtBuildFailed: a node failed, or dbt could not run.
    """
    log = get_run_logger()
    marks = [time.perf_counter()]
    project.parse()
    freshness = source_freshness(project)
    marks.append(time.perf_counter())
    with tempfile.TemporaryDirectory(prefix="elt-dbt-state-") as folder:
        plan = _plan(project, warehouse, Path(folder), full_refresh=full_refresh)
        log.info("dbt builds %s", plan.summary)
        marks.append(time.perf_counter())
        result = project.build(plan.args)
        marks.append(time.perf_counter())
    _log_build(log, result)
    if not result.success:
        raise DbtBuildFailed(result, plan.summary)
    warehouse.save_state(project.target_path)
    parse_and_freshness, plan_seconds, build = (b - a for a, b in itertools.pairwise(marks))
    log.info(
        "dbt stage: parse and freshness %.1f s, plan %.1f s, build %.1f s",
        parse_and_freshness,
        plan_seconds,
        build,
    )
    return TransformResult(result, plan.summary, freshness)


def _plan(
    project: DbtProject, warehouse: Warehouse, folder: Path, *, full_refresh: bool
) -> BuildPlan:
    """The build's plan from the warehouse's last state (read into ``folder``): every node
    without one, else what changed, went missing or got fresher sources since."""
    state_dbt = warehouse.read_state(folder)
    missing: list[str] = []
    fresher: list[str] = []
    if state_dbt is not None:
        manifest = json.loads(project.manifest_path.read_text(encoding="utf-8"))
        missing = missing_relations(manifest, warehouse.relations())
        fresher = fresher_sources(folder / "sources.json", project.target_path / "sources.json")
    return plan_build(
        list(PRODUCTION_BUILD),
        state_dir=folder if state_dbt is not None else None,
        state_dbt_version=state_dbt,
        missing=missing,
        fresher=fresher,
        full_refresh=full_refresh,
    )


def _log_build(log: logging.Logger | logging.LoggerAdapter, result: BuildResult) -> None:
    """Each failed or warned node, then the count of nodes by status."""
    for node in result.failed_nodes + result.warned_nodes:
        level = logging.ERROR if node.failed else logging.WARNING
        log.log(
            level, "dbt %s %s: %s: %s", node.resource_type, node.name, node.status, node.message
        )
    log.info(
        "dbt build: %s in %.1fs",
        ", ".join(f"{count} {status}" for status, count in sorted(result.counts().items())),
        result.seconds,
    )
