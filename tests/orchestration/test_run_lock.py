"""Two runs at once on the same lake: one waits for the other or exits 2; nothing counts twice.

Real ``elt run`` processes, started together on the same drop, lake and warehouse, on DuckDB
with a local lake folder (an OS file lock) and on Postgres with an S3 lake (a lease object
with conditional writes). The marts must equal the generator's manifest (every file counted
once in ``data_quality_by_file``) and later runs must succeed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import generator
from tests.orchestration.test_flow import _assert_marts_match_manifest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LOCK_LINE = "Another run holds the lake's lock"


def _env(tmp_path: Path, drop: str, lake: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "PREFECT_API_"))}
    env.update(
        ELT_SOURCE_URL=drop,
        ELT_LAKE_URL=lake,
        ELT_DASK_WORKERS="1",
        PII_HASH_KEY="test-key-not-secret",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        **settings,
    )
    return env


def _start_run(env: dict[str, str], folder: Path, **settings: str) -> subprocess.Popen:
    """``elt run`` as its own process, started in its own folder; output to run.log there."""
    folder.mkdir()
    log = (folder / "run.log").open("w")
    return subprocess.Popen(
        [str(BIN / "elt"), "run", "--skip-publish"],
        cwd=folder,
        env={**env, "PREFECT_HOME": str(folder / "prefect"), **settings},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _finish(proc: subprocess.Popen, folder: Path) -> tuple[int, str]:
    code = proc.wait(timeout=600)
    return code, (folder / "run.log").read_text(encoding="utf-8")


def _two_runs_at_once(env: dict[str, str], tmp_path: Path) -> list[str]:
    """Start two runs together (each waits up to 10 minutes for the lock); both succeed."""
    runs = [
        (_start_run(env, tmp_path / name, ELT_RUN_LOCK_WAIT_SECONDS="600"), tmp_path / name)
        for name in ("first", "second")
    ]
    outputs = []
    for proc, folder in runs:
        code, output = _finish(proc, folder)
        assert code == 0, output[-3000:]
        assert "retail-elt: succeeded" in output
        outputs.append(output)
    # They overlapped: one of them waited for the other's lock (and said so, once).
    waited = [output.count("s for the lake's lock: run ") for output in outputs]
    assert sorted(waited) == [0, 1], outputs
    return outputs


def _refused_run(env: dict[str, str], folder: Path) -> str:
    """A run while another holds the lock (no waiting): exit 2 and one line naming it."""
    code, output = _finish(_start_run(env, folder), folder)
    assert code == 2, output[-3000:]
    lines = [line for line in output.splitlines() if LOCK_LINE in line]
    assert lines and lines[-1].startswith(LOCK_LINE), output[-3000:]
    assert "Traceback" not in output and "Run summary" not in output
    return lines[-1]


def _append_day_and_run(
    env: dict[str, str], drop: str, tmp_path: Path, target: str, where: str
) -> None:
    """A new day in the drop after the concurrent runs: the next run succeeds and counts it."""
    manifest = generator.append_days(drop, 1)
    code, output = _finish(_start_run(env, tmp_path / "later"), tmp_path / "later")
    assert code == 0, output[-3000:]
    _assert_marts_match_manifest(target, where, manifest)


def test_two_runs_at_once_on_duckdb_and_a_local_lake(tmp_path: Path) -> None:
    drop, lake = str(tmp_path / "drop"), tmp_path / "lake"
    manifest = generator.generate_drop(drop, sales_rows=1500, days=3, seed=31)
    warehouse = str(tmp_path / "warehouse.duckdb")
    env = _env(tmp_path, drop, str(lake), ELT_TARGET="duckdb", ELT_DUCKDB_PATH=warehouse)

    # Another process holds the lock: a run refuses at once, names it, and writes nothing.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from orchestration.run_lock import lake_lock\n"
            "with lake_lock(sys.argv[1], {}, 'holder-run'):\n"
            "    print('held', flush=True); time.sleep(600)\n",
            str(lake),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        line = _refused_run(env, tmp_path / "refused")
        assert "run holder-run on host" in line and f"(pid {holder.pid}) since" in line
        assert sorted(p.name for p in lake.iterdir()) == ["run.lock"]
        assert not Path(warehouse).exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crashed holder: the OS releases its lock
        holder.wait()

    _two_runs_at_once(env, tmp_path)
    _assert_marts_match_manifest("duckdb", warehouse, manifest)
    _append_day_and_run(env, drop, tmp_path, "duckdb", warehouse)


def test_two_runs_at_once_on_postgres_and_an_s3_lake(
    tmp_path: Path, s3: Any, s3_bucket: str, postgres_dsn: str
) -> None:
    import fsspec

    drop, lake = str(tmp_path / "drop"), f"s3://{s3_bucket}/lake"
    manifest = generator.generate_drop(drop, sales_rows=1500, days=3, seed=32)
    env = {
        **_env(tmp_path, drop, lake, ELT_TARGET="postgres", ELT_POSTGRES_DSN=postgres_dsn),
        **s3.env(),
    }
    fs = fsspec.filesystem("s3", **s3.storage_options())
    lease = f"{s3_bucket}/lake/run.lock"

    def write_lease(expires: str) -> None:
        holder = {"run": "crashed-run", "host": "elsewhere", "pid": 7, "since": "2026-12-01"}
        fs.pipe_file(lease, json.dumps({**holder, "expires": expires}).encode())

    # A live lease on another machine: refused at once, named.
    write_lease("2999-01-01T00:00:00+00:00")
    line = _refused_run(env, tmp_path / "refused")
    assert "run crashed-run on host elsewhere (pid 7)" in line
    assert fs.find(f"{s3_bucket}/lake") == [lease]

    # Its holder died and the lease expired: the next runs take it over, one after the other.
    write_lease("2026-01-01T00:00:00+00:00")
    _two_runs_at_once(env, tmp_path)
    _assert_marts_match_manifest("postgres", postgres_dsn, manifest)
    assert not fs.exists(lease)  # released (later runs: see the DuckDB test)
