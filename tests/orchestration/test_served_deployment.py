"""A real Prefect server on 127.0.0.1, ``elt serve`` serving the deployment, a run over the API.

Nothing here is mocked: the server, the served deployment and the flow run are the real ones
a user gets with ``prefect server start`` and ``elt serve``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import generator
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
ELT = str(Path(sys.executable).parent / "elt")
PREFECT = str(Path(sys.executable).parent / "prefect")


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


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": (f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"),
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_http(f"{api}/health", 180, proc)
        yield api, env
    finally:
        _stop(proc)
        log.close()


def test_served_deployment_runs_through_the_api(
    prefect_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, base_env = prefect_server
    drop = str(tmp_path / "source")
    manifest = generator.generate_drop(drop, sales_rows=2000, days=5, seed=5)
    env = {
        **base_env,
        "PREFECT_API_URL": api,
        "ELT_SOURCE_URL": drop,
        "ELT_LAKE_URL": str(tmp_path / "lake"),
        "ELT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "ELT_TARGET": "duckdb",
        "PII_HASH_KEY": "served-test-key",
        "ELT_DASK_WORKERS": "1",
    }
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    served = subprocess.Popen(
        [ELT, "serve", "--name", "weekly"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def scenario() -> tuple[object, object]:
            async with get_client() as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        deployment = await client.read_deployment_by_name("retail-elt/weekly")
                        break
                    except Exception:
                        if time.monotonic() > deadline or served.poll() is not None:
                            raise
                        await asyncio.sleep(1)
            run = await run_deployment(deployment.id, timeout=600, poll_interval=2)
            return deployment, run

        with temporary_settings({PREFECT_API_URL: api}):
            deployment, flow_run = asyncio.run(scenario())

        schedule = deployment.schedules[0].schedule
        assert schedule.cron == "45 12 * * 2"
        assert schedule.timezone == "Europe/Moscow"
        assert flow_run.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]

        import duckdb

        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            n_sales = con.execute("select sum(n_sales) from marts.fct_daily_sales").fetchone()[0]
        assert int(n_sales) == manifest["totals"]["n_sales"]
    finally:
        _stop(served)
        log.close()
