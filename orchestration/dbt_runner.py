"""dbt in the flow: dbt's programmatic ``dbtRunner``, one Prefect task run per dbt node.

A run parses the project once (``dbt parse``), then runs ``dbt source freshness`` and
``dbt build`` on that parse (``dbtRunner(manifest=...)``, dbt's documented way to reuse a
parse). dbt's own artifacts (``manifest.json``, ``sources.json``, ``run_results.json`` in
``dbt_project/target``) are the record of each invocation, as with the ``dbt`` command.

Inside a flow run, every dbt node that runs (model, snapshot, data test, hook) is a Prefect
task run named after it, with its own state (failed when the node errors or fails) and
dbt's log lines of that node. prefect-dbt's ``PrefectDbtRunner`` does the same, but starts a
thread with a freshly built Prefect context for every node: measured here on 2 cores, the
demo's full build (107 nodes) took 28 s with it against 10.4 s with ``dbtRunner`` alone,
and a 10M day's build would miss its target (docs/performance.md). Here the node task runs
are async tasks on one event loop, created from dbt's ``NodeStart`` events and finished by
its ``NodeFinished`` events: the same build with them took 10.5 s.

dbt reads its profile (``dbt_project/profiles.yml``) from environment variables, in this
process too: :func:`dbt_environment` sets the settings' values (``Settings.dbt_env``) for
the time of the invocations and restores the environment after.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.console import stage_event

logger = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})

PRODUCTION_BUILD = ("build", "--exclude-resource-type", "unit_test")
"""The build of a scheduled run: every model, snapshot and data test, no unit tests.

Unit tests check the SQL's logic on fixed inputs, so they cannot fail on new data; dbt's
guidance is to run them in development and CI (``make test`` does, with every data test) and
exclude them in production.
"""

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}
_NOT_LINES = frozenset({"NodeStart", "NodeFinished"})


@contextlib.contextmanager
def dbt_environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` (``Settings.dbt_env()``) in ``os.environ`` while dbt runs in this process.

    dbt reads ``env_var()`` from the process environment; the previous values come back
    after, so the flow's process is left as it was.
    """
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeResult:
    """One dbt node of a build, from ``run_results.json``."""

    unique_id: str
    status: str
    message: str | None
    seconds: float
    compiled_code: str | None = None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        parts = self.unique_id.split(".")
        return parts[2] if self.resource_type == "test" else parts[-1]

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def warned(self) -> bool:
        return self.status == "warn"


@dataclass
class BuildResult:
    """A ``dbt build``: its arguments, every node's result, and an error dbt raised."""

    args: list[str]
    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None and not self.failed_nodes

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [node for node in self.nodes if node.failed]

    @property
    def warned_nodes(self) -> list[NodeResult]:
        return [node for node in self.nodes if node.warned]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.status] = out.get(node.status, 0) + 1
        return out

    def failure_report(self) -> str:
        """What failed: node names, messages and compiled SQL (or dbt's own error)."""
        lines: list[str] = []
        for node in self.failed_nodes:
            lines.append(f"{node.resource_type} {node.name} {node.status}: {node.message}")
            if node.compiled_code:
                lines.append("  compiled SQL:")
                lines.extend("    " + line for line in node.compiled_code.strip().splitlines())
        if self.error:
            lines.append(f"dbt could not run: {self.error}")
        return "\n".join(lines)


def read_run_results(target_path: Path) -> list[NodeResult]:
    """The nodes of ``run_results.json`` under ``target_path`` (empty when there is none)."""
    path = Path(target_path) / "run_results.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        NodeResult(
            unique_id=item["unique_id"],
            status=str(item["status"]),
            message=item.get("message"),
            seconds=float(item.get("execution_time") or 0.0),
            compiled_code=item.get("compiled_code"),
        )
        for item in data.get("results", [])
    ]


@dataclass(frozen=True)
class SourceFreshness:
    """One source table's freshness (``sources.json``): when it last got new rows."""

    source: str
    status: str
    max_loaded_at: str | None
    age_days: float | None
    message: str | None = None


def read_freshness(target_path: Path) -> list[SourceFreshness]:
    """The sources of ``sources.json`` under ``target_path`` (written by ``source freshness``)."""
    path = Path(target_path) / "sources.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in data.get("results", []):
        age = item.get("max_loaded_at_time_ago_in_s")
        out.append(
            SourceFreshness(
                source=item["unique_id"].split(".", 2)[-1],
                status=str(item["status"]),
                max_loaded_at=item.get("max_loaded_at"),
                age_days=None if age is None else float(age) / 86400,
                message=item.get("error"),
            )
        )
    return out


# --------------------------------------------------------------------------------------
# The project of one run
# --------------------------------------------------------------------------------------


class DbtProject:
    """The dbt project as one run uses it: parsed once, then freshness and build.

    Args:
        env: the variables the profile and project read (``Settings.dbt_env()``).
        project_dir: the dbt project (``profiles.yml`` beside ``dbt_project.yml``).
        target_path: where dbt writes its artifacts; default ``<project_dir>/target``.
        log_path: where dbt writes its log file ``dbt.log``; default ``<project_dir>/logs``
            (dbt's own defaults, as by hand).
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        project_dir: Path = DBT_PROJECT_DIR,
        target_path: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.env = dict(env)
        self.project_dir = Path(project_dir)
        self.target_path = Path(target_path) if target_path else self.project_dir / "target"
        self.log_path = Path(log_path) if log_path else self.project_dir / "logs"
        self._manifest: Any = None

    def _args(self, args: list[str]) -> list[str]:
        return [
            *args,
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.project_dir),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.log_path),
            "--log-level",
            "none",  # dbt's lines go to the Prefect loggers, not to the terminal
            "--log-level-file",
            "debug",  # and to dbt's own log file, as with dbt by hand
            "--no-use-colors",
        ]

    def _invoke(self, args: list[str], callbacks: list[Any] | None = None) -> Any:
        from dbt.cli.main import dbtRunner

        try:
            with dbt_environment(self.env):
                runner = dbtRunner(manifest=self._manifest, callbacks=callbacks)
                return runner.invoke(self._args(args))
        finally:
            if self.env.get("ELT_TARGET") == "duckdb":
                _release_duckdb()

    def parse(self) -> None:
        """Parse the project (``manifest.json``); raise when it cannot be parsed."""
        result = self._invoke(["parse"], callbacks=[_log_callback(logger)])
        if not result.success:
            raise DbtError(f"dbt could not parse the project: {result.exception}")
        self._manifest = result.result

    @property
    def manifest_path(self) -> Path:
        return self.target_path / "manifest.json"

    def freshness(self) -> list[SourceFreshness]:
        """``dbt source freshness``: each source's newest load (``sources.json``)."""
        stale = self.target_path / "sources.json"
        stale.unlink(missing_ok=True)
        result = self._invoke(["source", "freshness"], callbacks=[_log_callback(logger)])
        if result.exception is not None:
            raise DbtError(f"dbt source freshness could not run: {result.exception}")
        return read_freshness(self.target_path)

    def build(self, args: list[str]) -> BuildResult:
        """``dbt build`` with ``args``; inside a flow run, one task run per node.

        Returns:
            Every node's result; ``success`` is False when a node failed or dbt raised.
        """
        from prefect.context import FlowRunContext

        (self.target_path / "run_results.json").unlink(missing_ok=True)
        started = time.perf_counter()
        if FlowRunContext.get() is None:
            outcome = self._invoke(args, callbacks=[_log_callback(logger)])
        else:
            outcome = asyncio.run(_NodeTasks(self).build(args))
        return BuildResult(
            args=list(args),
            nodes=read_run_results(self.target_path),
            seconds=time.perf_counter() - started,
            error=None if outcome.exception is None else str(outcome.exception),
        )


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after a command.

    dbt-duckdb holds its database until the process exits (it closes it then, with this same
    call, registered with ``atexit``): the flow's later stages and other processes (``dbt``
    by hand, the ``duckdb`` shell, a read-only connection) could not open the file.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    DuckDBConnectionManager.close_all_connections()


class DbtError(RuntimeError):
    """dbt could not run a command at all (a broken project, an unreachable warehouse)."""


def _node_info(event: Any) -> Any:
    info = getattr(event.data, "node_info", None)
    return info if info is not None and info.unique_id else None


def _log_callback(log: logging.Logger | logging.LoggerAdapter) -> Any:
    """A dbt callback that sends dbt's log lines to ``log`` (warnings and errors as such)."""

    def callback(event: Any) -> None:
        message = event.info.msg
        level = _LEVELS.get(event.info.level, logging.ERROR)
        if message and level > logging.DEBUG and event.info.name not in _NOT_LINES:
            log.log(level, "dbt: %s", message)

    return callback


@dataclass
class _NodeOutcome:
    status: str = ""
    lines: list[tuple[int, str]] = field(default_factory=list)


class _NodeTasks:
    """One Prefect task run per dbt node, on one event loop (see the module docstring).

    dbt runs in a thread; its callback hands every event to the loop, where ``NodeStart``
    starts an async task run for the node and ``NodeFinished`` lets it end with the node's
    status and log lines.
    """

    def __init__(self, project: DbtProject) -> None:
        self.project = project
        self.loop: asyncio.AbstractEventLoop | None = None
        self.context = contextvars.Context()
        self.flow_log: Any = logger
        self.finished: dict[str, asyncio.Future[_NodeOutcome]] = {}
        self.outcomes: dict[str, _NodeOutcome] = {}
        self.runs: list[asyncio.Future[Any]] = []
        self.total: int | None = None
        """Nodes this build runs (from dbt's ``i of N`` lines), for the terminal's bar."""

    async def build(self, args: list[str]) -> Any:
        from prefect import get_run_logger
        from prefect.context import AsyncClientContext

        self.loop = asyncio.get_running_loop()
        # One Prefect client for every node's task run on this loop (else each task run
        # makes its own, with its own TLS context: 60 ms of CPU each, measured here).
        async with AsyncClientContext.get_or_create():
            # The flow run's context, for what dbt's threads hand to the loop (their own
            # context is empty: a node's task run must belong to the flow run).
            self.context = contextvars.copy_context()
            self.flow_log = get_run_logger()
            done: asyncio.Future[Any] = self.loop.create_future()

            def invoke() -> None:
                try:
                    result = self.project._invoke(args, callbacks=[self._callback])
                except BaseException as exc:  # never leave the loop waiting
                    result = exc
                self.loop.call_soon_threadsafe(done.set_result, result)

            thread = threading.Thread(target=invoke, name="dbt-build")
            thread.start()
            result = await done
            thread.join()
            for uid, waiting in self.finished.items():  # a node dbt never finished
                if not waiting.done():
                    waiting.set_result(self.outcomes.get(uid) or _NodeOutcome("error"))
            await asyncio.gather(*self.runs, return_exceptions=True)
        if isinstance(result, BaseException):
            raise result
        return result

    def _callback(self, event: Any) -> None:
        """dbt's events, from dbt's threads: handed to the loop (not its debug lines)."""
        info = _node_info(event)
        name, message = event.info.name, event.info.msg
        level = _LEVELS.get(event.info.level, logging.ERROR)
        if info is None:
            if message and level > logging.DEBUG:
                # dbt's own lines: the run's log (its warnings at INFO: the summary names warned
                # nodes once); errors as such.
                level = {logging.INFO: logging.DEBUG, logging.WARNING: logging.INFO}.get(
                    level, level
                )
                self._call(self.flow_log.log, level, "dbt: %s", message)
            return
        uid = info.unique_id
        if self.total is None and isinstance(getattr(event.data, "total", None), int):
            self.total = event.data.total
        if name == "NodeStart":
            label = f"{info.resource_type} {info.node_name}"
            self._call(self._start, uid, label)
        elif name == "NodeFinished":
            self._call(self._finish, uid, info.node_status)
        elif message and level > logging.DEBUG and not name.endswith("StartLine"):
            self._call(self._line, uid, level, message)

    def _call(self, function: Any, *args: Any) -> None:
        """Run ``function(*args)`` on the loop, in the flow run's context."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(function, *args, context=self.context)

    def _start(self, uid: str, label: str) -> None:
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        assert self.loop is not None
        self.finished[uid] = self.loop.create_future()
        node_task = task(
            _run_node,
            name=f"dbt {label.split(' ', 1)[0]}",
            task_run_name=label,
            cache_policy=NO_CACHE,
        )
        self.runs.append(asyncio.ensure_future(node_task(uid, self.finished[uid])))

    def _line(self, uid: str, level: int, message: str) -> None:
        self.outcomes.setdefault(uid, _NodeOutcome()).lines.append((level, message))

    def _finish(self, uid: str, status: str) -> None:
        outcome = self.outcomes.setdefault(uid, _NodeOutcome())
        outcome.status = status
        done = sum(1 for o in self.outcomes.values() if o.status)
        stage_event("transform", "advance", done=done, total=self.total)
        waiting = self.finished.get(uid)
        if waiting is not None and not waiting.done():
            waiting.set_result(outcome)


async def _run_node(unique_id: str, finished: asyncio.Future[_NodeOutcome]) -> str:
    """A dbt node's task run: waits for dbt to finish the node, logs its lines, and fails
    when the node failed."""
    from prefect import get_run_logger

    outcome = await finished
    log = get_run_logger()
    for level, message in outcome.lines:
        # A warned node's lines are news for its task run, not for the terminal: the run's
        # summary names each warned node once (orchestration/transform.py).
        log.log(logging.INFO if level == logging.WARNING else level, "%s", message)
    if outcome.status in FAILED_STATUSES:
        said = outcome.lines[-1][1] if outcome.lines else "no message"
        raise DbtNodeFailed(f"{unique_id} ended with status {outcome.status}: {said}")
    return outcome.status


class DbtNodeFailed(RuntimeError):
    """A dbt node ended with an error or a failing test."""
