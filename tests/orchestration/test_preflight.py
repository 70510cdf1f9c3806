"""Checks before a run: what is wrong is named in one line, before anything is written."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg2
import pytest

from elt_settings import Settings
from orchestration.preflight import PreflightFailed, require, run_checks
from tests.support.services import PostgresServer, S3Server, free_port


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    for folder in ("sales", "stores"):
        (root / folder).mkdir(parents=True)
    return root


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    defaults = {
        "ELT_SOURCE_URL": str(tmp_path / "source"),
        "ELT_LAKE_URL": str(tmp_path / "data" / "lake"),
        "ELT_DUCKDB_PATH": str(tmp_path / "data" / "warehouse.duckdb"),
        "ELT_DEMO": "1",
    }
    return Settings(**{**defaults, **values})


def _failed(settings: Settings, **kwargs: str) -> str:
    with pytest.raises(PreflightFailed) as caught:
        require(settings, **kwargs)
    line = str(caught.value)
    assert "\n" not in line
    return line


def test_a_fresh_checkout_with_a_drop_passes_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path
) -> None:
    settings = _settings(tmp_path, monkeypatch)
    checks = run_checks(settings)
    assert [c.name for c in checks] == ["pii key", "source", "lake", "warehouse", "prefect"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert checks[1].detail == f"{drop} (stores, sales)"
    assert not (tmp_path / "data").exists()


def test_a_misspelled_or_empty_source_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path
) -> None:
    typo = str(tmp_path / "sourc")
    line = _failed(_settings(tmp_path, monkeypatch, ELT_SOURCE_URL=typo))
    assert line.startswith(f"ELT_SOURCE_URL={typo}: does not exist")
    (tmp_path / "empty").mkdir()
    line = _failed(_settings(tmp_path, monkeypatch), source_url=str(tmp_path / "empty"))
    assert line.startswith(f"--source={tmp_path / 'empty'}: does not look like a drop")
    assert not (tmp_path / "data").exists()


def test_a_lake_that_cannot_be_written_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path
) -> None:
    (tmp_path / "afile").write_text("x")
    lake = str(tmp_path / "afile" / "lake")
    line = _failed(_settings(tmp_path, monkeypatch, ELT_LAKE_URL=lake))
    assert line.startswith(f"ELT_LAKE_URL={lake}: ") and "is not a folder" in line


def test_postgres_down_fails_in_seconds_without_showing_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path
) -> None:
    dsn = f"postgresql://elt:s3cret@127.0.0.1:{free_port()}/elt"
    settings = _settings(tmp_path, monkeypatch, ELT_TARGET="postgres", ELT_POSTGRES_DSN=dsn)
    started = time.monotonic()
    line = _failed(settings)
    assert time.monotonic() - started < 10
    assert line.startswith("ELT_POSTGRES_DSN=postgresql://elt:***@127.0.0.1:")
    assert "cannot connect" in line and "s3cret" not in line


@pytest.mark.postgres
def test_postgres_rights_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path, pg_server: PostgresServer
) -> None:
    dsn = pg_server.create_database()
    database = dsn.rsplit("/", 1)[1]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("drop role if exists reader_only; create role reader_only login")
        cur.execute(f'revoke create on database "{database}" from public')
    ok = _settings(tmp_path, monkeypatch, ELT_TARGET="postgres", ELT_POSTGRES_DSN=dsn)
    assert all(c.ok for c in run_checks(ok))
    reader = pg_server.dsn(database, user="reader_only")
    settings = _settings(tmp_path, monkeypatch, ELT_TARGET="postgres", ELT_POSTGRES_DSN=reader)
    line = _failed(settings)
    assert f"role reader_only may not create schemas in {database}" in line


def test_an_s3_lake_is_reached_and_its_faults_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path, s3: S3Server, s3_bucket: str
) -> None:
    env = {**s3.env(), "ELT_LAKE_URL": f"s3://{s3_bucket}/lake"}
    assert all(c.ok for c in run_checks(_settings(tmp_path, monkeypatch, **env)))
    missing = {**env, "ELT_LAKE_URL": "s3://no-such-bucket/lake"}
    line = _failed(_settings(tmp_path, monkeypatch, **missing))
    assert line.startswith("ELT_LAKE_URL=s3://no-such-bucket/lake: no such bucket")
    down = f"http://127.0.0.1:{free_port()}"
    line = _failed(_settings(tmp_path, monkeypatch, **{**env, "S3_ENDPOINT_URL": down}))
    assert line.startswith(f"S3_ENDPOINT_URL={down}: the object store does not answer")


def test_a_prefect_api_that_does_not_answer_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: Path
) -> None:
    settings = _settings(tmp_path, monkeypatch)
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    line = _failed(settings)
    assert line.startswith(f"PREFECT_API_URL={url}: no Prefect server answers")


def test_the_nothing_new_fingerprint_sees_a_changed_model_or_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.dbt_runner import DBT_PROJECT_DIR
    from orchestration.nothing_new import project_fingerprint

    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR / "models", project / "models")
    (project / "dbt_project.yml").write_text((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    settings = _settings(tmp_path, monkeypatch)
    before = project_fingerprint(settings, project)
    assert project_fingerprint(settings, project) == before
    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- edited by hand\n")
    edited = project_fingerprint(settings, project)
    assert edited != before
    other = _settings(tmp_path, monkeypatch, ELT_DUPLICATE_ALERT_RATIO="0.3")
    assert project_fingerprint(other, project) != edited
