"""Deployments as code: ``elt serve`` (a long-running process) and ``prefect.yaml`` (work pool)."""

from __future__ import annotations

from prefect.schedules import Cron, Schedule

from orchestration.flow import retail_elt

DEPLOYMENT_TAGS = ["retail", "elt"]


def weekly_schedule(cron: str, timezone: str) -> Schedule:
    """The run's schedule: ``cron`` read in ``timezone`` (default Tuesday 12:45, Moscow)."""
    return Cron(cron, timezone=timezone)


def serve_deployment(*, name: str, cron: str, timezone: str, limit: int | None = 1) -> None:
    """Serve ``retail-elt`` with its schedule until interrupted (Ctrl-C).

    Args:
        name: the deployment's name (``retail-elt/<name>``).
        cron: a five-field cron expression.
        timezone: an IANA time zone for the cron expression.
        limit: how many runs at a time (one: runs never overlap).
    """
    retail_elt.serve(
        name=name,
        schedules=[weekly_schedule(cron, timezone)],
        tags=DEPLOYMENT_TAGS,
        description="The whole way from the retailer's drop to the marts, on a schedule.",
        limit=limit,
    )
