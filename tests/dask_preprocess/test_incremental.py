"""Incremental runs equal a run from scratch, and both equal an independent DuckDB SQL
computation over the same raw files; the same on S3."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.reference_sql import expected_outputs as reference
from dask_preprocess import PreprocessResult, local_cluster_size, preprocess_sales
from dask_preprocess import state as stage_state
from dask_preprocess.cluster import dask_client
from dask_preprocess.rules import sale_id_hashes, sale_key_of
from dask_preprocess.sums import DAILY_SUMS, MONTHLY_SUMS, combined_sums, updated_sums
from storage import Lake
from tests.dask_preprocess.dirty import dirty_stream
from tests.dask_preprocess.lakebuilder import LakeBuilder, sale
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
def incremental_runs(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str
) -> tuple[Path, list[PreprocessResult]]:
    """A lake fed with the dirty stream batch by batch, one run after each batch."""
    root = tmp_path_factory.mktemp("incremental")
    lake = LakeBuilder(str(root))
    results = []
    for batch in dirty_stream(seed=7):
        _deliver(lake, batch)
        result = run(root, dask_address)
        assert_balanced(result)
        results.append(result)
    return root, results


@pytest.fixture(scope="module")
def incremental_lake(incremental_runs: tuple[Path, list[PreprocessResult]]) -> Path:
    return incremental_runs[0]


def test_the_stream_updates_partitions_by_difference_and_aggregates_others_again(
    incremental_runs: tuple[Path, list[PreprocessResult]],
) -> None:
    """The runs compared with a run from scratch take both ways to a partition: updated by
    difference (it has a file) and aggregated from the state (a new date or month)."""
    _, results = incremental_runs
    updated = [r.partitions_updated for r in results]
    affected = [len(r.affected_sale_dates) + len(r.affected_sale_months) for r in results]
    assert updated[0] == 0  # a first run has nothing to update
    assert sum(updated) > 0, updated
    assert any(u < n for u, n in zip(updated[1:], affected[1:], strict=True)), (updated, affected)


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


def _current_rows(lake: Path) -> dict[str, pd.DataFrame]:
    """Each bucket's current state rows (segments with their labels applied, gone rows
    dropped), by bucket folder name."""
    state = lake / "preprocessed/_state"
    manifest = json.loads((state / "segments.json").read_text())
    out = {}
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
        out[h] = rows
    return out


def _to_format_1(lake: Path) -> None:
    """Rewrite a lake's state as format 1 (one rows file per bucket, labels applied)."""
    state = lake / "preprocessed/_state"
    for h, rows in _current_rows(lake).items():
        rows = rows.drop(columns=["segment", "sale_key"])  # format 1 had neither
        table = pa.Table.from_pandas(rows, preserve_index=False)
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
    assert json.loads((state / "meta.json").read_text())["format"] == 3
    assert not list((state / "rows").glob("*.parquet"))


def _to_format_2(lake: Path) -> None:
    """Rewrite a lake's state as format 2: the same segments and labels, without sale_key."""
    state = lake / "preprocessed/_state"
    for path in (state / "rows").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["sale_key"]), path)
    meta = json.loads((state / "meta.json").read_text())
    (state / "meta.json").write_text(json.dumps({**meta, "format": 2}))


def test_a_format_2_state_gets_its_sale_keys_and_goes_on(
    incremental_lake: Path, tmp_path: Path, dask_address: str
) -> None:
    """Segments and labels written before sale keys: the next run compacts every bucket into
    one segment with the keys of its rows (labels folded in), then goes on as usual."""
    lake = LakeBuilder(str(tmp_path))
    batches = dirty_stream(seed=7)
    for batch in batches[:3]:
        _deliver(lake, batch)
        run(tmp_path, dask_address, max_segments=1000, max_label_ratio=float("inf"))
    state = tmp_path / "preprocessed/_state"
    assert _state(tmp_path)[1], "the state should hold labels to fold in"

    def rows_by_line() -> dict[str, list]:
        return {
            h: sorted(rows.drop(columns=["segment", "sale_key"]).itertuples(index=False, name=None))
            for h, rows in _current_rows(tmp_path).items()
        }

    before = rows_by_line()
    _to_format_2(tmp_path)
    meta = json.loads((state / "meta.json").read_text())
    assert stage_state.migrate_state(Lake(str(tmp_path)), meta)["format"] == 3
    manifest, labels = _state(tmp_path)
    assert not labels and {tuple(e["segments"]) for e in manifest.values()} == {("000000-v3",)}
    assert rows_by_line() == before  # the same current rows, the labels folded in
    for batch in batches[3:]:
        _deliver(lake, batch)
        assert_balanced(run(tmp_path, dask_address))
    assert _outputs(tmp_path) == _outputs(incremental_lake)
    assert json.loads((state / "meta.json").read_text())["format"] == 3
    for path in (state / "rows").rglob("*.parquet"):
        table = pq.read_table(path, columns=["sale_id", "sale_key"]).to_pandas()
        expected = sale_key_of(sale_id_hashes(table["sale_id"]))
        assert (table["sale_key"].to_numpy() == expected).all(), path


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


def _day(day: int, first: int, n: int, amount: str = "10.0050") -> list[tuple[str | None, ...]]:
    """``n`` new sales of 2026-01-``day`` (Moscow), amounts below the cent: revenue rounds."""
    return [
        sale(
            f"S-{first + i:05d}",
            f"2026-01-{day:02d}T{10 + i % 8:02d}:00:00+03:00",
            store_id=f"ST-00{i % 2}",
            customer_id=f"CU-{i % 3:06d}" if i % 5 else None,
            quantity="1",
            unit_price=amount,
            sale_amount=amount,
        )
        for i in range(n)
    ]


def _scratch_outputs(lake: Path, dask_address: str) -> dict:
    """The outputs of a run from scratch on a copy of the lake's raw zone."""
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=lake.parent))
    shutil.copytree(lake / "raw", scratch / "raw")
    run(scratch, dask_address)
    return _outputs(scratch)


def test_a_new_day_adds_to_its_partitions_exactly(tmp_path: Path, dask_address: str) -> None:
    """New sales in existing dates and months (and one new date) are added to the partitions
    as written, with exact sums: 5 + 5 amounts of 10.0050 make 100.05, not 50.03 + 50.03."""
    lake = LakeBuilder(str(tmp_path))
    lake.deliver("sales/sales_2026-01-11.csv", [*_day(10, 0, 12), *_day(11, 100, 11)])
    first = run(tmp_path, dask_address)
    assert first.partitions_updated == 0
    lake.deliver("sales/sales_2026-01-12.csv", [*_day(11, 200, 11), *_day(12, 300, 12)])
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    assert [d.day for d in result.affected_sale_dates] == [11, 12]
    # 2026-01-11 and January are updated; 2026-01-12 has no partition yet: aggregated.
    assert result.partitions_updated == 2
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)
    revenue = {k: v[2] for k, v in daily(tmp_path).items()}
    assert revenue[(date(2026, 1, 11), "ST-001", "PR-0001", "North")] == Decimal("100.05")


def test_corrections_and_redeliveries_update_partitions_by_difference(
    tmp_path: Path, dask_address: str
) -> None:
    """Rows that leave the valid sales (superseded by a correction that moves them to another
    date, or gone with a re-delivered file) are subtracted from their partitions."""
    lake = LakeBuilder(str(tmp_path))
    first_file = [*_day(10, 0, 12), *_day(11, 100, 11)]
    lake.deliver("sales/sales_2026-01-11.csv", first_file)
    run(tmp_path, dask_address)
    moved = sale(
        "S-00003",
        "2026-01-11T15:00:00+03:00",
        store_id="ST-001",
        customer_id="CU-000001",
        quantity="3",
        unit_price="10.0050",
        sale_amount="30.0150",
    )
    lake.deliver("sales/sales_2026-01-12.csv", [moved, *_day(12, 300, 5)])
    result = run(tmp_path, dask_address)
    assert result.totals["rows_superseded"] == 1
    # 10 lost a row, 11 gained one, January both: by difference; 12 is new: aggregated.
    assert [d.day for d in result.affected_sale_dates] == [10, 11, 12]
    assert result.partitions_updated == 3
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)
    # The first file again, without its last four rows (day 11) and one of day 10 changed.
    again = [*first_file[:5], sale("S-00005", "2026-01-10T09:00:00+03:00"), *first_file[6:-4]]
    lake.deliver("sales/sales_2026-01-11.csv", again)
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    assert [d.day for d in result.affected_sale_dates] == [10, 11]
    assert result.partitions_updated == 3
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)


def test_partitions_without_exact_sums_are_aggregated_again(
    tmp_path: Path, dask_address: str
) -> None:
    """Partition files written before the exact sums were kept are not updated by
    difference."""
    lake = LakeBuilder(str(tmp_path))
    lake.deliver("sales/sales_2026-01-11.csv", [*_day(10, 0, 12), *_day(11, 100, 12)])
    run(tmp_path, dask_address)
    for path in (tmp_path / "preprocessed").glob("*/*=*/part-0.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["_revenue_e4"]), path)
    lake.deliver("sales/sales_2026-01-12.csv", _day(11, 200, 12))
    result = run(tmp_path, dask_address)
    assert result.partitions_updated == 0
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)


def test_a_run_that_failed_after_writing_partitions_is_aggregated_again(
    tmp_path: Path, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that rewrote partitions and failed before its commit left them holding rows the
    state does not: the next run aggregates those partitions again instead of adding the
    same rows twice."""
    lake = LakeBuilder(str(tmp_path))
    lake.deliver("sales/sales_2026-01-11.csv", [*_day(10, 0, 12), *_day(11, 100, 12)])
    run(tmp_path, dask_address)
    lake.deliver("sales/sales_2026-01-12.csv", [*_day(11, 200, 12), *_day(12, 300, 12)])

    def fail(*args: object) -> None:
        raise OSError("the lake went away")

    with monkeypatch.context() as patch:
        patch.setattr(stage_state, "write_manifest", fail)
        with pytest.raises(OSError, match="went away"):
            run(tmp_path, dask_address)
    dirty = json.loads((tmp_path / "preprocessed/_state/dirty.json").read_text())
    assert len(dirty["sale_date"]) == 2 and len(dirty["sale_month"]) == 1
    result = run(tmp_path, dask_address)
    assert result.partitions_updated == 0
    assert not (tmp_path / "preprocessed/_state/dirty.json").exists()
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)
    # The next new day updates them by difference again.
    lake.deliver("sales/sales_2026-01-13.csv", _day(12, 400, 6))
    assert run(tmp_path, dask_address).partitions_updated == 2
    assert _outputs(tmp_path) == _scratch_outputs(tmp_path, dask_address)


def test_a_range_of_sale_dates_is_recomputed_from_the_state_on_demand(
    tmp_path: Path, dask_address: str
) -> None:
    """``elt backfill``: partitions damaged by hand are aggregated again from the state, with
    nothing new delivered; partitions outside the range are not touched."""
    lake = LakeBuilder(str(tmp_path))
    lake.deliver("sales/sales_2026-01-11.csv", [*_day(10, 0, 12), *_day(11, 100, 12)])
    run(tmp_path, dask_address)
    good = _outputs(tmp_path)
    damaged = tmp_path / "preprocessed/daily_sales/sale_date=2026-01-11/part-0.parquet"
    table = pq.read_table(damaged)
    pq.write_table(table.slice(0, 1), damaged)  # rows lost
    outside = tmp_path / "preprocessed/daily_sales/sale_date=2026-01-10/part-0.parquet"
    touched = outside.stat().st_mtime_ns
    assert run(tmp_path, dask_address).did_work is False  # nothing new: not repaired
    result = run(tmp_path, dask_address, recompute=(date(2026, 1, 11), date(2026, 1, 31)))
    assert result.did_work and [d.day for d in result.affected_sale_dates] == [11]
    assert [m.month for m in result.affected_sale_months] == [1]
    assert result.partitions_updated == 0  # aggregated from the state, not by difference
    assert _outputs(tmp_path) == good
    assert outside.stat().st_mtime_ns == touched
    assert result.totals == run(tmp_path, dask_address).totals  # and then nothing to do


def test_updated_sums_equal_a_grouping_of_everything() -> None:
    """A month's written sums plus a day's changes: only the rows a change may touch are
    grouped again, with the same result as grouping every row (nulls are one group, a row
    whose every column is among the changes' values but not its combination is kept as it
    is, a group can appear, grow, shrink or go to zero)."""
    schema = MONTHLY_SUMS
    written = pa.table(
        {
            "customer_id": ["CU-1", "CU-2", None, "CU-3", "CU-1", "CU-4"],
            "sale_month": [700, 700, 700, 700, 701, 701],
            "n": [2, 1, 5, 1, 3, 1],
            "units": [2, 1, 5, 2, 3, 1],
            "amount_e4": [200, 100, 500, 250, 300, 90],
        },
        schema=schema,
    )
    changes = pa.table(
        {
            # CU-1 in 700 grows, the anonymous row shrinks, CU-3 goes to zero, CU-5 is new;
            # CU-4 in 700 is no group: CU-4 and 700 each appear, not together
            "customer_id": ["CU-1", None, "CU-3", "CU-5", "CU-4"],
            "sale_month": [700, 700, 700, 701, 700],
            "n": [1, -2, -1, 1, 1],
            "units": [1, -2, -2, 4, 1],
            "amount_e4": [100, -200, -250, 400, 80],
        },
        schema=schema,
    )
    group = ["customer_id", "sale_month"]
    order = [("sale_month", "ascending"), ("customer_id", "ascending")]

    updated = updated_sums(written, changes, group)

    assert updated.schema == schema
    assert updated.sort_by(order).to_pylist() == (
        combined_sums([written, changes], group).sort_by(order).to_pylist()
    )
    by_key = {(r["customer_id"], r["sale_month"]): r["n"] for r in updated.to_pylist()}
    assert by_key == {
        ("CU-1", 700): 3,
        ("CU-2", 700): 1,
        (None, 700): 3,
        ("CU-3", 700): 0,
        ("CU-4", 700): 1,
        ("CU-1", 701): 3,
        ("CU-4", 701): 1,
        ("CU-5", 701): 1,
    }
    assert updated_sums(written, changes.slice(0, 0), group) is written


def test_updated_sums_of_several_partitions_and_of_nothing_written() -> None:
    """Written sums of two months concatenated (as a task updates several partitions), and
    an empty written table (every group comes from the changes)."""
    schema = DAILY_SUMS
    written = pa.concat_tables(
        [
            pa.table(
                {
                    "sale_date": [10, 10, 10],
                    "store_id": ["ST-1", "ST-2", "ST-1"],
                    "product_id": ["PR-1", "PR-1", "PR-2"],
                    "region": ["North", "South", None],
                    "n": [1, 2, 3],
                    "units": [1, 2, 3],
                    "amount_e4": [10, 20, 30],
                },
                schema=schema,
            ),
            pa.table(
                {
                    "sale_date": [11, 11],
                    "store_id": ["ST-1", "ST-2"],
                    "product_id": ["PR-1", "PR-2"],
                    "region": ["North", "South"],
                    "n": [4, 5],
                    "units": [4, 5],
                    "amount_e4": [40, 50],
                },
                schema=schema,
            ),
        ]
    )
    changes = pa.table(
        {
            "sale_date": [10, 11, 11],
            "store_id": ["ST-1", "ST-2", "ST-1"],
            "product_id": ["PR-2", "PR-1", "PR-1"],
            "region": [None, "South", "North"],
            "n": [1, 1, -4],
            "units": [1, 1, -4],
            "amount_e4": [5, 7, -40],
        },
        schema=schema,
    )
    group = ["sale_date", "store_id", "product_id", "region"]
    order = [(c, "ascending") for c in group]
    for base in (written, written.slice(0, 0)):
        expected = combined_sums([base, changes], group).sort_by(order).to_pylist()
        assert updated_sums(base, changes, group).sort_by(order).to_pylist() == expected
    assert {
        (r["sale_date"], r["store_id"], r["product_id"], r["region"]): r["n"]
        for r in updated_sums(written, changes, group).to_pylist()
    } == {
        (10, "ST-1", "PR-1", "North"): 1,
        (10, "ST-2", "PR-1", "South"): 2,
        (10, "ST-1", "PR-2", None): 4,
        (11, "ST-1", "PR-1", "North"): 0,
        (11, "ST-2", "PR-2", "South"): 5,
        (11, "ST-2", "PR-1", "South"): 1,
    }
