"""Fixtures for the flow's tests: Prefect's test harness and a configured environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from elt_settings import get_settings


@pytest.fixture
def elt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Point the settings at a temp lake and warehouse; returns a function to set more."""

    def configure(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    monkeypatch.chdir(tmp_path)  # no stray .env is read
    configure(
        ELT_LAKE_URL=str(tmp_path / "lake"),
        ELT_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"),
        ELT_TARGET="duckdb",
        ELT_TIMEZONE="Europe/Moscow",
        PII_HASH_KEY="test-key-not-secret",
        ELT_DEMO="0",
    )
    for name in (
        "ELT_ALERT_WEBHOOK_URL",
        "MB_URL",
        "DASK_SCHEDULER_ADDRESS",
        "ELT_DASK_PROCESSES",
        "PREFECT_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ELT_DASK_WORKERS", "1")
    get_settings.cache_clear()
    yield configure
    get_settings.cache_clear()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``elt`` configures the root logger; leave it as it was for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
