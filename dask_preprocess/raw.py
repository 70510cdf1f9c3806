"""Reading the lake's raw zone: the completed loads, the delivered sales file versions, the
raw sales files cut into pieces of whole row groups, and the file versions a piece holds."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contract.lake import (
    RAW_DELIVERED,
    RAW_LOADS,
    completed_load_ids,
    is_of_completed_load,
)
from contract.sales import SALES_COLUMNS
from dask_preprocess.arrays import delivery_days, micros
from dask_preprocess.state import empty_frame
from storage import Lake

PIECE_ROWS = 250_000  # rows per validation partition at most (whole row groups of a raw file)

#: The columns of ``raw/sales`` the stage reads.
RAW_WANTED = [
    *SALES_COLUMNS,
    "_file_name",
    "_delivery_date",
    "_file_modified_at",
    "_line_number",
    "_malformed",
    "_raw_line",
]

#: The file versions of a piece of raw rows (see :func:`versions_of_piece`).
VERSIONS_META = pd.DataFrame(
    {
        "file_name": pd.Series(dtype="str"),
        "file_modified_at_us": pd.Series(dtype="int64"),
        "delivery_day": pd.Series(dtype="int32"),
        "n": pd.Series(dtype="int64"),
    }
)

#: A sales file version: name, modification time, delivery day, status, failure reason.
VERSION_DTYPES: dict[str, str] = {
    "file_name": "str",
    "file_modified_at_us": "int64",
    "delivery_day": "int32",
    "status": "str",
    "failure_reason": "str",
}


class Piece(NamedTuple):
    """Some whole row groups of one raw file: one partition of the raw rows."""

    number: int
    path: str
    row_groups: list[int]


def completed_loads(lake: Lake) -> set[str] | None:
    """Load ids of the drop -> lake loads that completed (None: the lake has no dlt record)."""
    if not lake.exists(RAW_LOADS):
        return None
    return completed_load_ids([path for path, _ in lake.list_files(RAW_LOADS, suffix=".jsonl")])


def _read_columns(pf: pq.ParquetFile, columns: list[str], row_groups: list[int] | None) -> pa.Table:
    """Some columns of a Parquet file (all its row groups for None); missing ones as nulls."""
    present = [c for c in columns if c in pf.schema_arrow.names]
    if row_groups is None:
        table = pf.read(columns=present)
    else:
        table = pf.read_row_groups(row_groups, columns=present)
    for col in columns:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table.select(columns)


def delivered_sales_files(lake: Lake, loads: set[str] | None) -> pd.DataFrame:
    """Every sales file version in ``raw/delivered_files`` (completed loads) with its status."""
    files = [p for p, _ in lake.list_files(RAW_DELIVERED) if is_of_completed_load(p, loads)]
    cols = ["file_name", "kind", "delivery_date", "file_modified_at", "status", "failure_reason"]
    frames = []
    for path in files:
        with lake.fs.open(lake.path(path), "rb") as fh:
            table = _read_columns(pq.ParquetFile(fh), cols, None)
        names = pd.Series(table.column("file_name").to_pylist(), dtype="str")
        kind = pd.Series(table.column("kind").to_pylist(), dtype="str")
        frame = pd.DataFrame(
            {
                "file_name": names,
                "kind": kind,
                "file_modified_at_us": micros(table.column("file_modified_at")),
                "delivery_day": delivery_days(table.column("delivery_date"), names),
                "status": pd.Series(table.column("status").to_pylist(), dtype="str"),
                "failure_reason": pd.Series(
                    table.column("failure_reason").to_pylist(), dtype="str"
                ),
            }
        )
        is_sales = (frame["kind"] == "sales") | (
            frame["kind"].isna() & frame["file_name"].str.startswith("sales/")
        )
        frames.append(frame[is_sales])
    if not frames:
        return empty_frame(VERSION_DTYPES)
    out = pd.concat(frames, ignore_index=True).drop(columns=["kind"])
    out["status"] = np.where(out["status"] == "failed", "failed", "loaded")
    return out.drop_duplicates(["file_name", "file_modified_at_us"], keep="last")


def row_group_sizes(lake: Lake, paths: list[str]) -> list[tuple[str, list[int]]]:
    """Each raw Parquet file with the rows of each of its row groups (from its footer)."""
    sizes = []
    for path in paths:
        with lake.fs.open(lake.path(path), "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        sizes.append((path, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]))
    return sizes


def pieces(metas: list[tuple[str, list[int]]], slots: int = 1) -> list[Piece]:
    """Split raw files into pieces of whole row groups for the workers.

    Pieces hold at most ~PIECE_ROWS rows, and there are at least ``slots`` of them (a multiple
    of ``slots`` when the row groups allow), so that no worker idles through a last round with
    a single piece.
    """
    total = sum(sum(groups) for _, groups in metas)
    if total == 0:
        return []
    slots = max(1, slots)
    wanted = slots * -(-total // (PIECE_ROWS * slots))  # a multiple of slots, ceil
    out: list[Piece] = []
    done = 0
    for path, groups in metas:
        group: list[int] = []
        current = -1
        for i, n in enumerate(groups):
            # The piece a row group falls in, by the position of its middle row.
            number = min(wanted - 1, (done + n // 2) * wanted // total)
            if group and number != current:
                out.append(Piece(len(out), path, group))
                group = []
            group.append(i)
            current = number
            done += n
        if group:
            out.append(Piece(len(out), path, group))
    return out


def read_piece(lake: Lake, piece: Piece, columns: list[str]) -> pa.Table:
    """Read a piece of a raw Parquet file; missing columns come back as nulls."""
    with lake.fs.open(lake.path(piece.path), "rb") as fh:
        return _read_columns(pq.ParquetFile(fh), columns, piece.row_groups)


def versions_of_piece(piece: Piece, lake_url: str, storage_options: dict | None) -> pd.DataFrame:
    """The file versions found in a piece of a raw file, with their row counts (a Dask
    partition: run on a worker)."""
    lake = Lake(lake_url, storage_options)
    cols = ["_file_name", "_file_modified_at", "_delivery_date"]
    table = read_piece(lake, piece, cols)
    grouped = table.group_by(cols).aggregate([([], "count_all")])
    names = pd.Series(grouped.column("_file_name").to_pandas(), dtype="str")
    frame = pd.DataFrame(
        {
            "file_name": names,
            "file_modified_at_us": micros(grouped.column("_file_modified_at")),
            "delivery_day": delivery_days(grouped.column("_delivery_date"), names),
            "n": grouped.column("count_all").to_numpy(),
        }
    )
    return versions_per_file(frame)


def versions_per_file(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per file version: the earliest delivery day, the rows summed."""
    frame = frame.groupby(["file_name", "file_modified_at_us"], as_index=False).agg(
        delivery_day=("delivery_day", "min"), n=("n", "sum")
    )
    return frame.astype(VERSIONS_META.dtypes.to_dict())
