"""Scheduled runs for real: a Prefect server, its scheduler, `elt serve`, a process worker.

A real ``prefect server start`` on a free 127.0.0.1 port (its scheduler loop shortened by
its own setting) gets the deployment both ways a user registers it: ``elt serve``, and
``prefect deploy`` from ``prefect.yaml`` with a process worker started in an empty folder.
The server must create the scheduled runs itself (Tuesday 12:45 Europe/Moscow is 09:45
UTC), and a run triggered through the server must be picked up and reconcile with the
generator's manifest. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import generator
from tests.orchestration.test_flow import _assert_marts_match_manifest
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UTC = dt.UTC

pytestmark = pytest.mark.slow


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def _background(command: list[str], cwd: Path, env: dict, log: Path) -> Iterator[subprocess.Popen]:
    """A long-running process (``elt serve``, a worker), its output in ``log``; stopped after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    """A real Prefect server (SQLite) whose scheduler looks for work every second."""
    home = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    with _background(command, home, env, home / "server.log") as proc:
        _wait_http(f"{api}/health", 180, proc)
        yield api, {**env, "PREFECT_API_URL": api}
    text = (home / "server.log").read_text(errors="replace")
    # The scheduler of Prefect 3.8 fails every loop on SQLAlchemy 2.1 (pyproject pins 2.0).
    assert "Can't evaluate bulk DML statement" not in text


@pytest.fixture
def drop(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A small generated drop and its manifest."""
    url = str(tmp_path / "source")
    return url, generator.generate_drop(url, sales_rows=2000, days=5, seed=5)


def _settings_env(base: dict, tmp_path: Path, drop: str) -> dict[str, str]:
    return {
        **base,
        "ELT_SOURCE_URL": drop,
        "ELT_LAKE_URL": str(tmp_path / "lake"),
        "ELT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "ELT_TARGET": "duckdb",
        "PII_HASH_KEY": "deployment-test-key",
        "ELT_DASK_WORKERS": "1",
        "ELT_SCHEDULE_CRON": "45 12 * * 2",
        "ELT_SCHEDULE_TIMEZONE": "Europe/Moscow",
    }


def _in_server(api: str, scenario: Any) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        return asyncio.run(scenario())


async def _deployment(client: Any, name: str, proc: subprocess.Popen, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            await asyncio.sleep(1)


async def _scheduled_runs(client: Any, deployment_id: Any, timeout: float) -> list[Any]:
    """The runs the server's scheduler created for the deployment (waits for three)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    while True:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        if len(runs) >= 3 or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(1)


def _scheduled_then_run(
    api: str, name: str, proc: subprocess.Popen, timeout: float
) -> tuple[Any, list[Any], Any]:
    """The deployment ``name`` once registered, the runs the server's scheduler created for
    it, and a run triggered through the server (after it ended)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    async def scenario() -> tuple[Any, list[Any], Any]:
        async with get_client() as client:
            deployment = await _deployment(client, name, proc, timeout)
            scheduled = await _scheduled_runs(client, deployment.id, 60)
        run = await run_deployment(deployment.id, timeout=600, poll_interval=2)
        return deployment, scheduled, run

    return _in_server(api, scenario)


def _assert_weekly_tuesday_moscow(runs: list[Any]) -> None:
    """Scheduled by the server, every Tuesday at 12:45 Moscow time (09:45 UTC), ahead."""
    assert len(runs) >= 3, "the server's scheduler created no scheduled runs"
    starts = sorted(run.expected_start_time.astimezone(UTC) for run in runs)
    now = dt.datetime.now(UTC)
    for start in starts:
        assert (start.weekday(), start.hour, start.minute) == (1, 9, 45), start
        assert start > now
    assert starts[0] - now <= dt.timedelta(days=7)
    assert all(b - a == dt.timedelta(days=7) for a, b in itertools.pairwise(starts))
    assert {run.auto_scheduled for run in runs} == {True}


def _assert_the_run_reconciled(flow_run: Any, log: Path, tmp_path: Path, manifest: dict) -> None:
    assert flow_run.state.is_completed(), log.read_text()[-3000:]
    _assert_marts_match_manifest("duckdb", str(tmp_path / "warehouse.duckdb"), manifest)


def test_elt_serve_gets_scheduled_runs_and_runs_one_through_the_server(
    prefect_server: tuple[str, dict], drop: tuple[str, dict], tmp_path: Path
) -> None:
    (api, base_env), (url, manifest) = prefect_server, drop
    command = [str(BIN / "elt"), "serve", "--name", "served"]
    env, log = _settings_env(base_env, tmp_path, url), tmp_path / "serve.log"
    with _background(command, ROOT, env, log) as served:
        _, scheduled, flow_run = _scheduled_then_run(api, "retail-elt/served", served, 120)
    _assert_weekly_tuesday_moscow(scheduled)
    _assert_the_run_reconciled(flow_run, log, tmp_path, manifest)


def test_prefect_deploy_and_a_process_worker_anywhere_run_the_flow(
    prefect_server: tuple[str, dict], drop: tuple[str, dict], tmp_path: Path
) -> None:
    """`prefect deploy --all` from the project; a worker started in an empty folder."""
    (api, base_env), (url, manifest) = prefect_server, drop
    env = {**_settings_env(base_env, tmp_path, url), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    prefect = str(BIN / "prefect")
    for command in (
        [prefect, "work-pool", "create", "elt-pool", "--type", "process", "--overwrite"],
        [prefect, "--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    elsewhere = tmp_path / "worker-folder"
    elsewhere.mkdir()
    command, log = [prefect, "worker", "start", "--pool", "elt-pool"], tmp_path / "worker.log"
    with _background(command, elsewhere, env, log) as worker:
        deployment, scheduled, flow_run = _scheduled_then_run(api, "retail-elt/weekly", worker, 30)
    # The flow runs from the folder `prefect deploy` ran in, not from a fixed path.
    step = {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    assert deployment.pull_steps == [step]
    assert deployment.work_pool_name == "elt-pool"
    _assert_weekly_tuesday_moscow(scheduled)
    _assert_the_run_reconciled(flow_run, log, tmp_path, manifest)
