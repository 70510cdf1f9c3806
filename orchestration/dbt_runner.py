"""Run dbt in a subprocess and read its ``run_results.json`` for per-node visibility.

A subprocess keeps dbt's global state (flags, adapters, environment) out of the flow's
process; the results file gives every model, snapshot and test by name, with the compiled
SQL of whatever failed. :func:`run_dbt` starts the ``dbt`` command; :class:`PreparedDbt`
starts a dbt process when a run starts, so that importing dbt and parsing the project happen
while the stages before dbt work, and gives it its command later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
_FAILED = {"error", "fail", "runtime error"}

PRODUCTION_BUILD = ("build", "--exclude-resource-type", "unit_test")
"""The build of a scheduled run: every model, snapshot and data test, no unit tests.

Unit tests check the SQL's logic on fixed inputs, so they cannot fail on new data; dbt's
guidance is to run them in development and CI (``make test`` does, with every data test) and
exclude them in production. Here each one costs about half a second of a run's build.
"""


@dataclass(frozen=True)
class DbtNodeResult:
    """The result of one dbt node (model, snapshot, seed or test)."""

    unique_id: str
    status: str
    message: str | None
    failures: int | None
    execution_time: float
    compiled_code: str | None = None
    relation_name: str | None = None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return (
            self.unique_id.split(".")[-1]
            if self.resource_type != "test"
            else (self.unique_id.split(".")[2])
        )

    @property
    def failed(self) -> bool:
        return self.status in _FAILED

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"


@dataclass
class DbtRunResult:
    """A dbt invocation: its exit code, every node's result and how long it took."""

    args: list[str]
    returncode: int
    duration_s: float
    nodes: list[DbtNodeResult] = field(default_factory=list)
    output_tail: str = ""

    @property
    def success(self) -> bool:
        return self.returncode == 0 and not self.failed_nodes

    @property
    def failed_nodes(self) -> list[DbtNodeResult]:
        return [node for node in self.nodes if node.failed]

    @property
    def warned_nodes(self) -> list[DbtNodeResult]:
        return [node for node in self.nodes if node.status == "warn"]

    @property
    def skipped_nodes(self) -> list[DbtNodeResult]:
        return [node for node in self.nodes if node.skipped]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.status] = out.get(node.status, 0) + 1
        return out

    def failure_report(self) -> str:
        """A readable account of what failed: node names, messages and compiled SQL."""
        lines: list[str] = []
        for node in self.failed_nodes:
            lines.append(f"{node.resource_type} {node.name} {node.status}: {node.message}")
            if node.compiled_code:
                lines.append("  compiled SQL:")
                lines.extend("    " + line for line in node.compiled_code.strip().splitlines())
        if not lines and self.returncode != 0:
            lines.append(f"dbt exited with {self.returncode}:\n{self.output_tail}")
        return "\n".join(lines)


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (the project's venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_log_file(target_path: Path) -> Path:
    """dbt's debug log file of the invocations that wrote to ``target_path``."""
    return target_path / "logs" / "dbt.log"


def read_run_results(target_path: Path) -> list[DbtNodeResult]:
    """Parse ``run_results.json`` under ``target_path`` (empty when dbt wrote none)."""
    path = target_path / "run_results.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        DbtNodeResult(
            unique_id=item["unique_id"],
            status=str(item["status"]),
            message=item.get("message"),
            failures=item.get("failures"),
            execution_time=float(item.get("execution_time") or 0.0),
            compiled_code=item.get("compiled_code"),
            relation_name=item.get("relation_name"),
        )
        for item in data.get("results", [])
    ]


def _command_env(env: dict[str, str], target: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "DBT_LOG_PATH": str(dbt_log_file(target).parent),
        **env,
    }


def _location(project_dir: Path, target: Path) -> list[str]:
    return [
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target-path",
        str(target),
    ]


def _clear_results(target: Path) -> None:
    stale = target / "run_results.json"
    if stale.exists():
        stale.unlink()


def _finish(
    proc: subprocess.Popen[str],
    args: list[str],
    target: Path,
    started: float,
    log: logging.Logger | logging.LoggerAdapter,
) -> DbtRunResult:
    """Relay dbt's output to ``log`` until it exits, then read its results."""
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            log.info("dbt | %s", line)
            tail = [*tail[-40:], line]
    returncode = proc.wait()
    return DbtRunResult(
        args=list(args),
        returncode=returncode,
        duration_s=time.perf_counter() - started,
        nodes=read_run_results(target),
        output_tail="\n".join(tail),
    )


def run_dbt(
    args: list[str],
    *,
    env: dict[str, str],
    project_dir: Path = DBT_PROJECT_DIR,
    target_path: Path | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> DbtRunResult:
    """Run ``dbt <args>`` on the project and collect every node's result.

    Args:
        args: the dbt command and its options, e.g. ``["build", "--full-refresh"]``.
        env: variables for ``profiles.yml`` (``elt_settings.dbt_env_for``), added to ours.
        project_dir: the dbt project (its ``profiles.yml`` sits beside ``dbt_project.yml``).
        target_path: where dbt writes artifacts; default ``<project_dir>/target``.
        log: where dbt's output lines go (the Prefect run logger inside a flow).

    Returns:
        The invocation's result; ``success`` is False when dbt failed or any node failed.
    """
    log = log or logger
    target = Path(target_path) if target_path else project_dir / "target"
    _clear_results(target)
    command = [dbt_executable(), "--no-use-colors", *args, *_location(project_dir, target)]
    log.info("dbt %s", " ".join(args))
    started = time.perf_counter()
    with subprocess.Popen(
        command,
        cwd=project_dir,
        env=_command_env(env, target),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        return _finish(proc, args, target, started, log)


class PreparedDbt:
    """A dbt process started before its command is known (``orchestration.dbt_worker``).

    It imports dbt and parses the project while the stages before dbt run; :meth:`run` then
    gives it the command, which skips both. Start it with the same ``env`` the command needs
    (the parse reads it), and :meth:`close` it when the run ends before the command (also on
    leaving a ``with`` block): the process then exits without running anything.
    """

    def __init__(
        self,
        *,
        env: dict[str, str],
        project_dir: Path = DBT_PROJECT_DIR,
        target_path: Path | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.target = Path(target_path) if target_path else project_dir / "target"
        self._env = dict(env)
        command = [sys.executable, "-m", "orchestration.dbt_worker"]
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [*command, *_location(project_dir, self.target)],
            cwd=project_dir,
            env=_command_env(env, self.target),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    def run(
        self, args: list[str], *, log: logging.Logger | logging.LoggerAdapter | None = None
    ) -> DbtRunResult:
        """Run ``dbt <args>`` in the prepared process (once) and collect every node's result.

        A process that ended before its command (killed, out of memory) is replaced by a dbt
        process started for the command (:func:`run_dbt`), with a warning.

        Returns:
            As :func:`run_dbt`.
        """
        if self._proc is None:
            raise RuntimeError("this prepared dbt process has run its command already")
        proc, self._proc = self._proc, None
        log = log or logger
        _clear_results(self.target)
        log.info("dbt %s (prepared process)", " ".join(args))
        started = time.perf_counter()
        assert proc.stdin is not None
        with proc:
            try:
                proc.stdin.write(json.dumps(["--no-use-colors", *args]) + "\n")
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.close()  # closed even when flushing the command fails again
                lost = proc.stdout.read() if proc.stdout else ""
                log.warning(
                    "the prepared dbt process ended before its command (exit %s): %s",
                    proc.wait(),
                    lost.strip()[-2000:] or "no output",
                )
            else:
                return _finish(proc, args, self.target, started, log)
        return run_dbt(
            args, env=self._env, project_dir=self.project_dir, target_path=self.target, log=log
        )

    def close(self) -> None:
        """End the process without running a command (no-op after :meth:`run`)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with proc:  # closes the pipes and waits for the process
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.close()  # no command: it exits once its parse is done
                proc.stdout.read()
                proc.wait(timeout=60)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                proc.kill()

    def __enter__(self) -> PreparedDbt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
