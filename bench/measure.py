"""Run one command in its own process and measure its wall time and peak memory.

Peak memory is the largest sum of the resident set sizes (RSS) of the process and all its
descendants (Prefect's temporary server, Dask's workers), sampled every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.1
ROOT = Path(__file__).resolve().parent.parent


class StageFailed(RuntimeError):
    """A measured process exited with an error, or did not finish in time."""


@dataclass
class Measurement:
    """One measurement of one report row.

    Attributes:
        seconds: The time the row stands for: a process's wall time (``elt run``,
            ``elt generate``), a stage's seconds in a run's summary, or a reference's own
            timing of its work.
        peak_rss_bytes: Peak RSS summed over the process tree; None for a stage of a run
            (the run's peak is on the run's row).
        rows: Rows handled (see the report for what counts per row).
        info: Whatever else was reported (stage splits, dbt's nodes, totals).
    """

    seconds: float
    peak_rss_bytes: int | None
    rows: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        """Rows per second (0 when no time was measured)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ProcessRun:
    """What measuring a process gives: its wall seconds and the peak RSS of its tree."""

    seconds: float
    peak_rss_bytes: int


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def _stop_tree(proc: subprocess.Popen, ps: psutil.Process) -> None:
    """Kill a process and its descendants (a timed-out run must not keep running)."""
    try:
        children = ps.children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            continue
    proc.kill()
    proc.wait()


def measure_process(
    command: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    interval: float = SAMPLE_INTERVAL_S,
    timeout: float | None = None,
) -> ProcessRun:
    """Run ``command`` from the project's root and measure it.

    Args:
        command: The command (e.g. ``[".venv/bin/elt", "run", ...]``).
        env: The process's whole environment.
        log_path: Where its output goes (kept when it fails, removed otherwise).
        interval: RSS sampling interval in seconds.
        timeout: Kill the process tree after this many seconds.

    Returns:
        Its wall seconds and peak RSS.

    Raises:
        StageFailed: when it exits non-zero or times out; its output's tail is in the message.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        ps = psutil.Process(proc.pid)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(ps))
                stop.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timed_out = False
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_tree(proc, ps)
            returncode = -9
        finally:
            stop.set()
            sampler.join()
    seconds = time.perf_counter() - started
    if timed_out or returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        what = (
            f"did not finish in {timeout:.0f} s and was stopped (raise --stage-timeout if it "
            "is only slow)"
            if timed_out
            else f"failed (exit {returncode})"
        )
        raise StageFailed(f"{' '.join(command[1:3])} {what}:\n{tail}")
    log_path.unlink(missing_ok=True)
    return ProcessRun(seconds=seconds, peak_rss_bytes=peak)
