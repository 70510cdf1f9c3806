"""Incremental runs equal a run from scratch, and both equal an independent DuckDB SQL
computation over the same raw files; the same on S3."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dask_preprocess import local_cluster_size, preprocess_sales
from dask_preprocess.cluster import dask_client
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


def _state(lake: Path) -> tuple[dict, dict[str, list[str]]]:
    """``segments.json`` and the labels of every labels file, by label."""
    state = lake / "preprocessed/_state"
    manifest = json.loads((state / "segments.json").read_text())
    labels: dict[str, list[str]] = {}
    for entry in manifest.values():
        if entry["labels"]:
            for path in state.glob(f"labels/h=*/{entry['labels']}.parquet"):
                for label in pq.read_table(path, columns=["label"])["label"].to_pylist():
                    labels.setdefault(label, []).append(label)
    return manifest, labels


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"max_segments": 1000, "max_label_ratio": float("inf")}, id="never-compact"),
        pytest.param({"max_segments": 0}, id="compact-every-run"),
    ],
)
def test_segments_and_labels_give_the_same_outputs_as_compaction(
    policy: dict, incremental_lake: Path, tmp_path: Path, dask_address: str
) -> None:
    """Appending segments and labelling re-decided or gone rows, or compacting every bucket
    at every run, ends in the same outputs as the default run by run (and from scratch)."""
    lake = LakeBuilder(str(tmp_path))
    for batch in dirty_stream(seed=7):
        _deliver(lake, batch)
        assert_balanced(run(tmp_path, dask_address, **policy))
    scratch = tmp_path.parent / f"{tmp_path.name}-scratch"
    shutil.copytree(tmp_path / "raw", scratch / "raw")
    run(scratch, dask_address)
    assert _outputs(tmp_path) == _outputs(scratch) == _outputs(incremental_lake)
    manifest, labels = _state(tmp_path)
    segments = [len(entry["segments"]) for entry in manifest.values()]
    if policy["max_segments"] == 0:
        assert set(segments) == {1} and not labels
    else:
        # Every run's rows are still in their own segment; the re-delivered file's old rows
        # are labelled gone and corrections relabelled earlier rows.
        assert max(segments) >= 3
        assert labels.get("gone") and labels.get("superseded"), labels.keys()
    # Nothing is left that segments.json does not name.
    named = {
        f"h={h}/{name}.parquet"
        for h, entry in manifest.items()
        for name in [*entry["segments"], *([entry["labels"]] if entry["labels"] else [])]
    }
    state = tmp_path / "preprocessed/_state"
    on_disk = {
        str(p.relative_to(p.parent.parent))
        for zone in ("rows", "labels")
        for p in (state / zone).rglob("*.parquet")
    }
    assert on_disk == named


def _to_format_1(lake: Path) -> None:
    """Rewrite a lake's state as format 1 (one rows file per bucket, labels applied)."""
    state = lake / "preprocessed/_state"
    manifest = json.loads((state / "segments.json").read_text())
    for h, entry in manifest.items():
        rows = pa.concat_tables(
            [pq.read_table(state / f"rows/h={h}/{s}.parquet") for s in entry["segments"]]
        ).to_pandas()
        if entry["labels"]:
            labels = pq.read_table(state / f"labels/h={h}/{entry['labels']}.parquet").to_pandas()
            rows = rows.merge(
                labels[["segment", "file_name", "line_number", "label"]],
                on=["segment", "file_name", "line_number"],
                how="left",
            )
            rows["bucket"] = rows["label"].fillna(rows["bucket"])
            rows = rows[rows["bucket"] != "gone"].drop(columns=["label"])
        table = pa.Table.from_pandas(rows.drop(columns=["segment"]), preserve_index=False)
        pq.write_table(table, state / f"rows/h={h}.parquet")
    for zone in ("rows", "labels"):
        for folder in (state / zone).glob("h=*"):
            if folder.is_dir():
                shutil.rmtree(folder)
    (state / "segments.json").unlink()
    meta = json.loads((state / "meta.json").read_text())
    (state / "meta.json").write_text(json.dumps({**meta, "format": 1}))


def test_a_format_1_state_is_converted_and_goes_on(
    incremental_lake: Path, tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    batches = dirty_stream(seed=7)
    for batch in batches[:2]:
        _deliver(lake, batch)
        run(tmp_path, dask_address, max_segments=1000, max_label_ratio=float("inf"))
    _to_format_1(tmp_path)
    for batch in batches[2:]:
        _deliver(lake, batch)
        assert_balanced(run(tmp_path, dask_address))
    assert _outputs(tmp_path) == _outputs(incremental_lake)
    state = tmp_path / "preprocessed/_state"
    assert json.loads((state / "meta.json").read_text())["format"] == 2
    assert not list((state / "rows").glob("*.parquet"))


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
    # Where the time went, step by step, within the run's duration.
    steps = result.step_seconds
    assert list(steps) == ["plan", "cluster", "validate", "buckets", "aggregate", "commit"]
    assert all(seconds >= 0 for seconds in steps.values())
    assert sum(steps.values()) <= result.duration_seconds
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
    assert not again.did_work and again.step_seconds == {}
    assert fs.info(daily_file)["LastModified"] == before


def test_local_cluster_is_sized_to_stay_under_the_memory_budget() -> None:
    workers, per_worker = local_cluster_size()
    assert workers >= 1
    assert workers * per_worker <= 3.0 * 1024**3
    assert local_cluster_size(n_workers=4)[0] == 4


@pytest.mark.parametrize(
    ("processes", "started"),
    [
        (False, "an in-process Dask cluster: 1 thread(s)"),
        (True, "a local Dask cluster: 1 worker process"),
    ],
)
def test_starts_its_own_local_cluster_without_an_address(
    processes: bool,
    started: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a scheduler the stage starts its own cluster: threads of the calling process
    by default, worker processes when asked."""
    LakeBuilder(str(tmp_path)).deliver("sales/sales_2026-01-10.csv.gz", [sale("S1")])
    with caplog.at_level(logging.INFO, logger="dask_preprocess"):
        result = preprocess_sales(
            str(tmp_path), n_workers=1, show_progress=True, processes=processes
        )
    assert result.did_work and result.totals["rows_valid"] == 1
    assert f"Starting {started}" in caplog.text


@pytest.mark.parametrize("processes", [False, True])
def test_local_workers_run_without_the_statistical_profiler(processes: bool) -> None:
    """The profiler's sys._current_frames() calls can deadlock CPython 3.11 with a task that
    starts a thread (a 10M benchmark run hung that way): the local cluster turns it off."""
    with dask_client(n_workers=1, processes=processes) as client:
        profiling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
    assert profiling and not any(profiling.values())
