"""Run one stage in a fresh subprocess and measure its wall time and peak memory.

Peak memory is the largest sum of the resident set sizes (RSS) of the subprocess and all its
descendants (Dask's nanny and worker processes, dbt), sampled every ``interval`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.1


class StageFailed(RuntimeError):
    """A stage subprocess exited with an error."""


@dataclass
class Measurement:
    """One run of one stage.

    Attributes:
        seconds: Time of the stage's work, measured inside the subprocess (imports excluded).
        wall_seconds: Wall time of the whole subprocess (interpreter start and imports too).
        peak_rss_bytes: Peak RSS summed over the process tree.
        rows: Rows the stage handled (see the report for what counts per stage).
        info: Whatever else the stage reported (counts, sub-stage timings, totals).
    """

    seconds: float
    wall_seconds: float
    peak_rss_bytes: int
    rows: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        """Rows per second (0 when no time was measured)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


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


def run_stage(
    spec: dict[str, Any],
    *,
    scratch: Path,
    env: dict[str, str],
    interval: float = SAMPLE_INTERVAL_S,
    timeout: float | None = None,
) -> Measurement:
    """Run ``python -m bench.child`` on ``spec`` and measure it.

    Args:
        spec: The stage and its arguments (see :mod:`bench.child`).
        scratch: A folder for the spec and result files.
        env: Variables added to this process's environment for the subprocess.
        interval: RSS sampling interval in seconds.
        timeout: Kill the subprocess after this many seconds.

    Returns:
        The measurement.

    Raises:
        StageFailed: when the subprocess fails; its output's tail is in the message.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    tag = f"{spec['stage']}-{os.getpid()}-{time.monotonic_ns()}"
    spec_path = scratch / f"{tag}.spec.json"
    out_path = scratch / f"{tag}.out.json"
    log_path = scratch / f"{tag}.log"
    spec_path.write_text(json.dumps(spec, default=str), encoding="utf-8")
    command = [sys.executable, "-m", "bench.child", str(spec_path), str(out_path)]
    full_env = {**os.environ, **env}
    peak = 0
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=Path(__file__).resolve().parent.parent,
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
            for child in ps.children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
            returncode = -9
        finally:
            stop.set()
            sampler.join()
    wall = time.perf_counter() - started
    if timed_out or returncode != 0 or not out_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        what = (
            f"did not finish in {timeout:.0f} s and was stopped (raise --stage-timeout if it "
            "is only slow)"
            if timed_out
            else f"failed (exit {returncode})"
        )
        raise StageFailed(f"stage {spec['stage']} {what}:\n{tail}")
    out = json.loads(out_path.read_text(encoding="utf-8"))
    for path in (spec_path, out_path, log_path):
        path.unlink(missing_ok=True)
    return Measurement(
        seconds=float(out["seconds"]),
        wall_seconds=wall,
        peak_rss_bytes=peak,
        rows=int(out["rows"]),
        info=out.get("info", {}),
    )
