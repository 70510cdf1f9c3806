"""How the stage cuts its work into tasks: balanced pieces, hash buckets grouped by the rows
they decide, bounded aggregation tasks."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dask_preprocess.aggregate import AGGREGATE_TASK_ROWS, chunks
from dask_preprocess.dedupe import BUCKET_TASK_ROWS, bucket_groups
from dask_preprocess.raw import pieces, row_group_sizes
from storage import Lake


def _raw_file(tmp_path, groups: list[int]) -> tuple[Lake, str]:
    rows = sum(groups)
    table = pa.table({"sale_id": pa.array([str(i) for i in range(rows)])})
    path = tmp_path / "raw" / "sales" / "1.parquet"
    path.parent.mkdir(parents=True)
    with pq.ParquetWriter(path, table.schema) as writer:
        start = 0
        for n in groups:
            writer.write_table(table.slice(start, n))
            start += n
    return Lake(str(tmp_path)), "raw/sales/1.parquet"


def test_pieces_are_a_multiple_of_the_workers_and_cover_every_row_group(tmp_path) -> None:
    lake, path = _raw_file(tmp_path, [1_000] * 30)
    for slots in (1, 2, 3, 4):
        cut = pieces(row_group_sizes(lake, [path]), slots)
        assert len(cut) == slots
        groups = [g for _, _, gs in cut for g in gs]
        assert groups == list(range(30))  # every row group once, in order
        sizes = [len(gs) for _, _, gs in cut]
        assert max(sizes) - min(sizes) <= 1


def test_aggregation_chunks_are_contiguous_and_bounded() -> None:
    days = list(range(365))
    # 10 million rows spread over the year: each task gets about AGGREGATE_TASK_ROWS rows.
    large = chunks(days, [(0, 364, 10_000_000)], 1.0, 4)
    assert [d for c in large for d in c] == days
    per_day = 10_000_000 / 365
    assert max(len(c) for c in large) * per_day <= AGGREGATE_TASK_ROWS * 1.1
    # Small data: at least one chunk per worker slot, never empty chunks.
    small = chunks(days, [(0, 364, 10_000)], 1.0, 4)
    assert len(small) == 4 and all(small)
    assert chunks([7], [], 1.0, 4) == [[7]]
    assert chunks([], [(0, 1, 5)], 1.0, 4) == []


def test_bucket_tasks_group_small_work_and_split_large_work() -> None:
    hs = list(range(32))
    no_changed = pd.DataFrame({"h": pd.Series(dtype="int32"), "n": pd.Series(dtype="int64")})

    def groups(staged: int, changed: pd.DataFrame = no_changed, slots: int = 2) -> list:
        return bucket_groups(
            hs, staged_rows=staged, n_buckets=32, changed_rows=changed, slots=slots
        )

    # A first load of 10 million rows: one task per bucket, as many rows each as fit.
    assert groups(10_000_000) == [[h] for h in hs]
    # A new day (30,000 rows): one task per worker slot, every bucket once, in order.
    for slots in (1, 2, 3):
        small = groups(30_000, slots=slots)
        assert len(small) == slots
        assert [h for g in small for h in g] == hs
    # A million rows: tasks of at most about BUCKET_TASK_ROWS rows.
    mid = groups(1_000_000)
    assert [h for g in mid for h in g] == hs
    assert max(len(g) for g in mid) * 1_000_000 / 32 <= BUCKET_TASK_ROWS * 1.1
    # The state rows of a re-delivered file count where they are: its two buckets are in
    # different tasks, each with little else (the day's share of a few buckets at most).
    changed = pd.DataFrame({"h": [3, 4], "n": [400_000, 400_000]})
    heavy = groups(30_000, changed)
    assert [h for g in heavy for h in g] == hs
    assert not any(3 in g and 4 in g for g in heavy)
    assert all(len(g) <= 4 for g in heavy if 3 in g or 4 in g)
    assert bucket_groups([], staged_rows=0, n_buckets=32, changed_rows=no_changed, slots=2) == []
    assert bucket_groups([5], staged_rows=0, n_buckets=32, changed_rows=no_changed, slots=2) == [
        [5]
    ]
