"""The ``elt`` command: help everywhere, generate, and run's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from orchestration.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("restore_logging")


COMMANDS = [
    [],
    ["generate"],
    ["run"],
    ["serve"],
    ["docs"],
    ["dbt"],
    ["check"],
    ["status"],
    ["replay"],
    ["backfill"],
    ["backup"],
    ["restore"],
    ["quarantine"],
    ["quarantine", "list"],
    ["quarantine", "show"],
    ["quarantine", "export"],
    ["metabase"],
    ["metabase", "provision"],
    ["metabase", "sync"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "elt")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_generate_writes_a_drop_and_skips_an_existing_one(tmp_path: Path, elt_env) -> None:
    out = tmp_path / "drop"
    args = ["generate", "--out", str(out), "--sales-rows", "1500", "--days", "3", "--seed", "9"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    manifest = json.loads((tmp_path / "drop.manifest.json").read_text())
    assert len(list((out / "sales").iterdir())) == 3 == len(manifest["files"])
    assert f"{manifest['totals']['rows_in']:,} sales rows" in first.output

    again = runner.invoke(app, [*args, "--if-missing"])
    assert again.exit_code == 0 and "already exists" in again.output

    appended = runner.invoke(app, ["generate", "--out", str(out), "--append-days", "2"])
    assert appended.exit_code == 0, appended.output
    assert len(list((out / "sales").iterdir())) == 5


def test_run_refuses_to_start_without_a_pii_key(elt_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PII_HASH_KEY")
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert "PII_HASH_KEY is not set" in result.output


def test_serve_without_a_prefect_server_says_so_and_exits_2(elt_env) -> None:
    """Without a server nothing would ever create the scheduled runs: refuse to start."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # No API, even when an earlier test of the session started Prefect's test harness.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = runner.invoke(app, ["serve"], env={"PREFECT_API_URL": ""})
    assert result.exit_code == 2
    assert "elt serve needs a Prefect server" in result.output
    assert "PREFECT_API_URL" in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_run_exits_non_zero_when_the_run_fails(
    elt_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingestion

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("injected failure of the extract stage")

    monkeypatch.setattr(ingestion, "extract_to_lake", broken)
    (tmp_path / "drop" / "sales").mkdir(parents=True)
    orphan, decoy = _orphaned_temporary_prefect_server(), _a_live_look_alike()
    try:
        result = runner.invoke(app, ["run", "--source", str(tmp_path / "drop")])
        assert result.exit_code == 1
        assert "The run failed: " in result.output
        said = result.output.split("The run failed: ", 1)[1].splitlines()
        assert "injected failure of the extract stage" in said[0]
        assert "Traceback" not in result.output  # the traceback is in the log file
        log = next((tmp_path / "data" / "logs").glob("elt-run-*.log")).read_text()
        assert "Traceback" in log and "injected failure of the extract stage" in log
        # The temporary server a killed run left behind was stopped; a live one was not.
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie"
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


def test_run_on_a_source_that_is_not_there_exits_2_in_one_line_and_writes_nothing(
    elt_env, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["run", "--source", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"--source={tmp_path / 'nowhere'}: does not exist: point it at the retailer's drop "
        "(a folder with sales/, ...)"
    )
    assert not (tmp_path / "lake").exists() and not (tmp_path / "warehouse.duckdb").exists()


def test_a_wrong_setting_or_argument_is_one_line_and_exit_2(elt_env) -> None:
    elt_env(ELT_TARGET="postgress")
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert result.output.strip() == "ELT_TARGET='postgress': Input should be 'duckdb' or 'postgres'"
    elt_env(ELT_TARGET="duckdb")
    result = runner.invoke(app, ["generate", "--scale", "foo"])
    assert result.exit_code == 2 and "Invalid value for '--scale'" in result.output
    assert "Traceback" not in result.output


def test_help_reads_like_a_kept_cli() -> None:
    for command in COMMANDS:
        text = runner.invoke(app, [*command, "--help"], terminal_width=100).output
        assert "<bool>" not in text and "<str>" not in text and "<int>" not in text, command
    listing = runner.invoke(app, ["--help"], terminal_width=100).output
    commands = listing.split("Commands:", 1)[1]
    assert "..." not in commands  # every command's summary fits


def _orphaned_temporary_prefect_server() -> int:
    """A temporary Prefect server as Prefect starts it, whose run died (its parent is gone)."""
    import subprocess
    import sys

    from tests.support.services import free_port

    spawn = (
        "import os, subprocess, sys\n"
        "env = {**os.environ, 'PREFECT__SERVER_EPHEMERAL': '1', 'PREFECT_UI_ENABLED': '0'}\n"
        "p = subprocess.Popen([sys.executable, '-m', 'uvicorn', '--factory',\n"
        "    'prefect.server.api.server:create_app', '--host', '127.0.0.1', '--port',\n"
        f"    '{free_port()}'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    done = subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    assert psutil.Process(pid).ppid() == 1
    return pid


def _a_live_look_alike() -> Any:
    """A process with a temporary server's command line and environment, whose parent lives."""
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            "prefect.server.api.server:create_app",
        ],
        env={**os.environ, "PREFECT__SERVER_EPHEMERAL": "1"},
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_server_child_stops_with_its_parent_on_sigterm(tmp_path: Path) -> None:
    """``elt docs`` runs ``dbt docs serve`` through ``run_until_stopped``: SIGTERM to the parent
    (a service manager, ``kill``) stops the child too, and its port is free again."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from tests.support.services import free_port

    port = free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; from orchestration.child import run_until_stopped; "
            f"sys.exit(run_until_stopped({serve!r}, env=dict(os.environ), cwd={str(tmp_path)!r}))",
        ]
    )

    def answers() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    deadline = time.monotonic() + 60
    while not answers():
        assert time.monotonic() < deadline and parent.poll() is None, "the server never started"
        time.sleep(0.2)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=20) == 130
    assert not answers()
