"""The issue's targets, checked against the measurements (results only: nothing is re-run)."""

from __future__ import annotations

from bench.config import Target, size_label
from bench.results import BenchRun, TargetCheck

GIB = 1024**3


def _figure(bench: BenchRun, target: Target, size: int) -> float | None:
    """The target's figure at ``size``, or None when it was not measured there."""
    result = bench.find(target.stage, size)
    if result is None:
        return None
    if target.figure == "seconds":
        seconds = result.seconds()
        return seconds.median if seconds else None
    if target.figure == "peak_rss":
        rss = result.rss()
        return rss.max if rss else None
    return result.ratio()


def _text(figure: str, value: float) -> str:
    if figure == "peak_rss":
        return f"{value / GIB:.2f} GiB"
    if figure == "ratio":
        return f"{value:.2f}x"
    return f"{value:.1f} s"


def check_targets(
    goals: tuple[Target, ...], sizes: list[int], bench: BenchRun
) -> list[TargetCheck]:
    """Check every target at every size where its figure was measured.

    A target is met or missed at the size it is set for; at other sizes its figure is shown
    with ``met`` None (fixed costs and per-row costs do not scale alike, so no projection).

    Args:
        goals: The targets.
        sizes: The sizes measured, in order.
        bench: The measurements.

    Returns:
        One check per target and size where its figure exists.
    """
    checks: list[TargetCheck] = []
    for size in sizes:
        for target in goals:
            value = _figure(bench, target, size)
            if value is None:
                continue
            at_size = size == target.rows
            over = value / target.limit - 1
            checks.append(
                TargetCheck(
                    name=target.name,
                    size=size,
                    value=_text(target.figure, value),
                    limit=f"{_text(target.figure, target.limit)} at {size_label(target.rows)}",
                    met=(value <= target.limit) if at_size else None,
                    note=(f"missed by {over:.0%}" if over > 0 else "")
                    if at_size
                    else f"the target is set for {size_label(target.rows)}",
                )
            )
    return checks
