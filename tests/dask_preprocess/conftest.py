"""Fixtures of the Dask preprocessing tests: one real local Dask cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dask_preprocess import dask_client


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """The scheduler address of a real local Dask cluster (2 worker processes)."""
    with dask_client(n_workers=2, processes=True) as client:
        yield client.scheduler.address
