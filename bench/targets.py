"""The issue's targets, checked against the measurements, with a profile of what misses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bench.config import size_label

if TYPE_CHECKING:
    from bench.harness import BenchRun, Harness, StageResult, TargetCheck

logger = logging.getLogger(__name__)

GIB = 1024**3
#: Below this size fixed costs (process and cluster start) dominate: no projection.
MIN_PROJECTION_ROWS = 1_000_000


def _find(bench: BenchRun, stage: str, size: int) -> StageResult | None:
    for r in bench.stages:
        if r.stage == stage and r.size == size and r.reported and r.runs:
            return r
    return None


def _over(value: float, limit: float) -> str:
    return f"missed by {value / limit - 1:.0%} ({value:.3g} vs at most {limit:.3g})"


def _under(value: float, limit: float) -> str:
    return f"missed by {1 - value / limit:.0%} ({value:.3g} vs at least {limit:.3g})"


def share_text(value: float, limit: float, decimals: int) -> str:
    """``value`` as a percentage with ``decimals`` decimals, or with as many more (up to
    three) as it takes not to print as the limit itself: 9.96% against < 10% reads "10.0%"
    at one decimal."""
    for places in range(decimals, decimals + 4):
        text = f"{value:.{places}%}"
        if text != f"{limit:.{places}%}":
            break
    return text


def check_targets(harness: Harness, bench: BenchRun) -> list[TargetCheck]:
    """Check every target at every size where its stages ran; profile the misses if asked.

    Args:
        harness: The harness (to re-run a missing stage under cProfile).
        bench: The measurements.

    Returns:
        One check per target and size.
    """
    from bench.harness import TargetCheck

    goals = harness.config.goals
    checks: list[TargetCheck] = []
    for size in harness.config.sizes:
        label = size_label(size)
        e2e = _find(bench, "e2e", size)
        if e2e is not None:
            secs, rss = e2e.seconds(), e2e.rss()
            assert secs is not None and rss is not None
            scale = goals.e2e_rows / size
            at_target = size >= goals.e2e_rows
            projectable = size >= MIN_PROJECTION_ROWS
            projected = secs.median * scale
            met = secs.median <= goals.e2e_max_seconds and rss.max <= goals.e2e_max_rss_bytes
            miss = []
            if secs.median > goals.e2e_max_seconds:
                miss.append("time " + _over(secs.median, goals.e2e_max_seconds))
            if rss.max > goals.e2e_max_rss_bytes:
                miss.append("memory " + _over(rss.max / GIB, goals.e2e_max_rss_bytes / GIB))
            checks.append(
                TargetCheck(
                    name="end to end (embedded default) < 5 min, peak RSS < 4 GiB",
                    size=size,
                    value=f"{secs.median:.1f} s, {rss.max / GIB:.2f} GiB",
                    limit=f"{goals.e2e_max_seconds:.0f} s, {goals.e2e_max_rss_bytes / GIB:.0f} GiB"
                    + ("" if at_target else f" at {size_label(goals.e2e_rows)}"),
                    met=met if at_target else None,
                    miss="; ".join(miss) if at_target else "",
                    note=""
                    if at_target
                    else f"target is for {size_label(goals.e2e_rows)} rows; "
                    + (
                        f"linear projection from {label}: {projected:.0f} s"
                        + (" (would miss)" if projected > goals.e2e_max_seconds else "")
                        if projectable
                        else f"{label} is too small to project from (fixed costs dominate)"
                    ),
                )
            )
        pre = _find(bench, "preprocess", size)
        if pre is not None and pre.ratio() is not None:
            ratio = pre.ratio()
            assert ratio is not None
            met = ratio <= goals.preprocess_max_ratio
            checks.append(
                TargetCheck(
                    name="Dask preprocessing within 3x of DuckDB",
                    size=size,
                    value=f"{ratio:.2f}x",
                    limit=f"<= {goals.preprocess_max_ratio:.1f}x",
                    met=met,
                    miss="" if met else _over(ratio, goals.preprocess_max_ratio),
                )
            )
        load = _find(bench, "load_postgres", size)
        if load is not None and load.ref_runs:
            share = load.rows_per_s() / load.ref_rows_per_s() if load.ref_rows_per_s() else 0.0
            met = share >= goals.postgres_min_copy_share
            checks.append(
                TargetCheck(
                    name="Postgres load at least 70% of COPY's rate",
                    size=size,
                    value=f"{share_text(share, goals.postgres_min_copy_share, 0)} "
                    f"({load.rows_per_s():,.0f} vs "
                    f"{load.ref_rows_per_s():,.0f} rows/s)",
                    limit=f">= {goals.postgres_min_copy_share:.0%}",
                    met=met,
                    miss="" if met else _under(share, goals.postgres_min_copy_share),
                )
            )
        inc = _find(bench, "incremental", size)
        if inc is not None and inc.ratio() is not None:
            share = inc.ratio()
            assert share is not None
            met = share < goals.incremental_max_share
            checks.append(
                TargetCheck(
                    name="incremental run (one new day) < 10% of the full run",
                    size=size,
                    value=share_text(share, goals.incremental_max_share, 1),
                    limit=f"< {goals.incremental_max_share:.0%}",
                    met=met,
                    miss="" if met else _over(share, goals.incremental_max_share),
                    note=_incremental_floor(inc),
                )
            )
    if harness.config.profile:
        for check in checks:
            if check.met is False:
                check.profile = _profile(harness, bench, check)
    return checks


def _incremental_floor(inc: StageResult) -> str:
    """The share of the full run that a run with no new data takes (the incremental's floor)."""
    floor = inc.extra.get("no_new_data")
    full = inc.ref_seconds()
    if not floor or full is None or not full.median:
        return ""
    return f"a run with no new data: {floor['seconds'] / full.median:.1%} of the full run"


_PROFILED_STAGE = {
    "end to end": "e2e",
    "Dask": "preprocess",
    "Postgres": "load_postgres",
    "incremental": "incremental",
}


def _profile(harness: Harness, bench: BenchRun, check: TargetCheck) -> str | None:
    """Re-run the stage behind a missed target once under cProfile; the top 20 functions."""
    stage = next((s for key, s in _PROFILED_STAGE.items() if check.name.startswith(key)), None)
    if stage is None:
        return None
    w = (harness.config.workdir / size_label(check.size)).resolve()
    args: dict[str, Any]
    try:
        if stage == "preprocess":
            from bench.harness import _rm

            _rm(w / "lake" / "preprocessed")
            _rm(w / "lake" / "quarantine" / "sales_rows")
            args = {**harness._base_args(check.size), "lake": str(w / "lake")}
            spec_stage = "preprocess"
        elif stage == "e2e":
            from bench.harness import _rm

            base = w / "e2e_profile"
            _rm(base)
            base.mkdir(parents=True)
            args = harness._e2e_args(check.size, base, w / "drop")
            spec_stage = "pipeline"
        elif stage == "incremental":
            return _profile_incremental(harness, w, check.size)
        else:
            assert harness.pg is not None
            db = harness.pg.create("profile")
            args = {
                **harness._base_args(check.size),
                "lake": str(w / "lake"),
                "target": "postgres",
                "postgres_dsn": harness.pg.dsn_for(db),
            }
            spec_stage = "load"
        logger.info("profiling %s at %s", stage, size_label(check.size))
        m = harness._measure(spec_stage, args, profile=True)
        return str(m.info.get("profile", ""))
    except Exception as exc:  # a profile is a bonus: never lose the report for it
        logger.warning("profiling %s failed: %s", stage, exc)
        return f"profiling failed: {exc}"


def _profile_incremental(harness: Harness, w: Any, size: int) -> str:
    # As the incremental stage: the new day runs in the end-to-end run's folder, restored.
    args = harness._new_day_args(size, w, w / "incremental_profile" / "drop")
    m = harness._measure("pipeline", args, profile=True)
    return str(m.info.get("profile", ""))
