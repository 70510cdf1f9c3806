"""Incremental runs equal a run from scratch, and both equal an independent DuckDB SQL
computation over the same raw files; the same on S3."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dask_preprocess import local_cluster_size, preprocess_sales
from tests.dask_preprocess.dirty import dirty_stream
from tests.dask_preprocess.lakebuilder import LakeBuilder, sale
from tests.dask_preprocess.reference import reference
from tests.dask_preprocess.support import (
    assert_balanced,
    customer_monthly,
    daily,
    quality,
    quarantine,
    run,
)


def _deliver(lake: LakeBuilder, batch) -> None:
    for delivery in batch:
        if delivery.failed:
            lake.fail(delivery.file_name)
        else:
            lake.deliver(delivery.file_name, delivery.rows)


def _outputs(lake: Path) -> dict:
    drop = {"_computed_at"}
    return {
        "daily": daily(lake),
        "monthly": {
            k: {c: v for c, v in r.items() if c not in drop}
            for k, r in customer_monthly(lake).items()
        },
        "quality": {
            k: {c: v for c, v in r.items() if c not in drop} for k, r in quality(lake).items()
        },
        "quarantine": quarantine(lake),
    }


@pytest.fixture(scope="module")
def incremental_lake(tmp_path_factory: pytest.TempPathFactory, dask_address: str) -> Path:
    """A lake fed with the dirty stream batch by batch, one run after each batch."""
    root = tmp_path_factory.mktemp("incremental")
    lake = LakeBuilder(str(root))
    for batch in dirty_stream(seed=7):
        _deliver(lake, batch)
        result = run(root, dask_address)
        assert_balanced(result)
    return root


def test_incremental_runs_equal_a_run_from_scratch(
    incremental_lake: Path, tmp_path: Path, dask_address: str
) -> None:
    scratch = tmp_path / "scratch"
    shutil.copytree(incremental_lake / "raw", scratch / "raw")
    result = run(scratch, dask_address)
    assert_balanced(result)
    assert _outputs(scratch) == _outputs(incremental_lake)
    # The daily partitions hold the same dates (an emptied date is an empty file in both).
    dates = sorted(p.name for p in (scratch / "preprocessed/daily_sales").iterdir())
    inc_dates = sorted(
        p.name
        for p in (incremental_lake / "preprocessed/daily_sales").iterdir()
        if pq.read_table(p / "part-0.parquet").num_rows
    )
    assert dates == inc_dates


def test_aggregates_equal_an_independent_duckdb_computation(incremental_lake: Path) -> None:
    expected = reference(str(incremental_lake))
    assert daily(incremental_lake) == expected["daily"]
    monthly = {
        k: (r["n_sales"], r["units"], r["revenue"])
        for k, r in customer_monthly(incremental_lake).items()
        if r["n_sales"]
    }
    assert monthly == expected["monthly"]
    got_files = {
        name: (
            r["rows_in"],
            r["rows_valid"],
            r["rows_duplicate"],
            r["rows_superseded"],
            r["rows_quarantined"],
        )
        for name, r in quality(incremental_lake).items()
        if r["status"] == "processed"
    }
    assert got_files == expected["files"]
    reasons: dict[str, int] = {}
    for r in quarantine(incremental_lake):
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    assert reasons == expected["reasons"]
    # The stream is dirty enough for the comparison to mean something.
    assert len(reasons) == 10
    totals = [sum(v[i] for v in got_files.values()) for i in range(5)]
    assert all(t > 10 for t in totals), totals


def test_on_s3(s3, s3_bucket: str, dask_address: str) -> None:
    url = f"s3://{s3_bucket}/lake"
    options = s3.storage_options()
    lake = LakeBuilder(url, options)
    lake.deliver(
        "sales/sales_2026-01-10.csv.gz", [sale("S1"), sale("S1"), sale("S2", quantity="x")]
    )
    result = preprocess_sales(
        url,
        storage_options=options,
        scheduler_address=dask_address,
        show_progress=False,
        n_hash_partitions=2,
    )
    assert_balanced(result)
    assert (result.totals["rows_valid"], result.totals["rows_duplicate"]) == (1, 1)
    assert result.quarantined_by_reason == {"bad_quantity": 1}
    fs = lake.fs
    daily_file = f"{s3_bucket}/lake/preprocessed/daily_sales/sale_date=2026-01-10/part-0.parquet"
    with fs.open(daily_file, "rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    assert [(r["n_sales"], r["units"], str(r["revenue"])) for r in rows] == [(1, 2, "179.80")]
    before = fs.info(daily_file)["LastModified"]
    again = preprocess_sales(
        url,
        storage_options=options,
        scheduler_address=dask_address,
        show_progress=False,
        n_hash_partitions=2,
    )
    assert not again.did_work
    assert fs.info(daily_file)["LastModified"] == before


def test_local_cluster_is_sized_to_stay_under_the_memory_budget() -> None:
    workers, per_worker = local_cluster_size()
    assert workers >= 1
    assert workers * per_worker <= 3.0 * 1024**3
    assert local_cluster_size(n_workers=4)[0] == 4


def test_starts_its_own_local_cluster_without_an_address(tmp_path: Path) -> None:
    LakeBuilder(str(tmp_path)).deliver("sales/sales_2026-01-10.csv.gz", [sale("S1")])
    result = preprocess_sales(str(tmp_path), n_workers=1, show_progress=True)
    assert result.did_work and result.totals["rows_valid"] == 1
