"""How the stage cuts its work into tasks: balanced pieces and bounded aggregation tasks."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from dask_preprocess.lake import Lake
from dask_preprocess.preprocess import (
    AGGREGATE_TASK_ROWS,
    _chunks,
    _pieces,
    _row_group_sizes,
)


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
        pieces = _pieces(_row_group_sizes(lake, [path]), slots)
        assert len(pieces) == slots
        groups = [g for _, _, gs in pieces for g in gs]
        assert groups == list(range(30))  # every row group once, in order
        sizes = [len(gs) for _, _, gs in pieces]
        assert max(sizes) - min(sizes) <= 1


def test_aggregation_chunks_are_contiguous_and_bounded() -> None:
    days = list(range(365))
    # 10 million rows spread over the year: each task gets about AGGREGATE_TASK_ROWS rows.
    chunks = _chunks(days, [(0, 364, 10_000_000)], 1.0, 4)
    assert [d for c in chunks for d in c] == days
    per_day = 10_000_000 / 365
    assert max(len(c) for c in chunks) * per_day <= AGGREGATE_TASK_ROWS * 1.1
    # Small data: at least one chunk per worker slot, never empty chunks.
    small = _chunks(days, [(0, 364, 10_000)], 1.0, 4)
    assert len(small) == 4 and all(small)
    assert _chunks([7], [], 1.0, 4) == [[7]]
    assert _chunks([], [(0, 1, 5)], 1.0, 4) == []
