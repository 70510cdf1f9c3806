"""Step 2, read and validate: the rows of the changed files' latest versions (only from the
new raw files), one Dask partition per piece of a raw file.

A partition's task applies the contract's rules (:func:`dask_preprocess.rules.validate_sales`)
and stages its rows below the run's staging folder: the valid rows normalized, by sale_id
hash bucket (``valid/h=NNN/part-<piece>.parquet``), the quarantined ones as delivered
(``quarantine/part-<piece>.parquet``). What the partition returns is its rows per file and
reason (``""`` for valid), so only counts come to the driver, where they are summed (a
few rows per piece: faster there than in Dask's groupby).
"""

from __future__ import annotations

import logging
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import Client

from contract.sales import SALES_COLUMNS
from dask_preprocess.arrays import TS_UTC, delivery_days, micros, runs
from dask_preprocess.cluster import gather
from dask_preprocess.raw import RAW_WANTED, Piece, read_piece
from dask_preprocess.rules import validate_sales
from dask_preprocess.segments import state_frame
from storage import Lake

logger = logging.getLogger(__name__)

#: Rows per file and reason of a validated piece (reason ``""``: valid).
COUNTS_META = pd.DataFrame(
    {
        "file_name": pd.Series(dtype="str"),
        "reason": pd.Series(dtype="str"),
        "n": pd.Series(dtype="int64"),
    }
)
QUARANTINE_SCHEMA = pa.schema(
    [
        *[(c, pa.string()) for c in SALES_COLUMNS],
        ("_raw_line", pa.string()),
        ("reason", pa.string()),
        ("_file_name", pa.string()),
        ("_line_number", pa.int64()),
        ("_file_modified_at", TS_UTC),
        ("_delivery_date", pa.date32()),
    ]
)


def valid_staging(staging: str) -> str:
    """The folder of a run's staged valid rows (one sub-folder ``h=NNN`` per bucket)."""
    return f"{staging}/valid"


def quarantine_staging(staging: str) -> str:
    """The folder of a run's staged quarantined rows."""
    return f"{staging}/quarantine"


def _raw_rows(lake: Lake, piece: Piece, wanted: list[tuple[str, int]]) -> pd.DataFrame:
    """The rows of a piece that belong to the wanted file versions, as ``validate_sales``
    takes them (delivery day and modification time as numbers)."""
    table = read_piece(lake, piece, RAW_WANTED)
    names = pd.Series(table.column("_file_name").to_pandas(), dtype="str")
    raw = table.drop_columns(["_file_modified_at", "_delivery_date"]).to_pandas()
    raw["_file_name"] = names
    raw["file_modified_at_us"] = micros(table.column("_file_modified_at"))
    raw["delivery_day"] = delivery_days(table.column("_delivery_date"), names)
    keys = pd.MultiIndex.from_frame(raw[["_file_name", "file_modified_at_us"]])
    wanted_index = pd.MultiIndex.from_tuples(wanted, names=["_file_name", "file_modified_at_us"])
    raw = raw[keys.isin(wanted_index)].reset_index(drop=True)
    if raw.empty:
        return raw
    for col in RAW_WANTED:
        if col in SALES_COLUMNS or col in ("_malformed", "_raw_line", "_file_name"):
            raw[col] = raw[col].astype("str")
    raw["_line_number"] = pd.to_numeric(raw["_line_number"], errors="coerce").fillna(-1)
    return raw


def validate_piece(
    piece: Piece,
    lake_url: str,
    storage_options: dict | None,
    wanted: list[tuple[str, int]],
    timezone: str,
    n_partitions: int,
    staging: str,
) -> pd.DataFrame:
    """Validate one piece of a raw file and stage its rows; return its counts per reason.

    Only rows of the wanted file versions are read. Re-running the task rewrites the same
    staged files.
    """
    lake = Lake(lake_url, storage_options)
    raw = _raw_rows(lake, piece, wanted)
    if raw.empty:
        return COUNTS_META.copy()
    out = validate_sales(raw, timezone, n_partitions)
    is_valid = out["reason"].isna()

    valid = out[is_valid]
    if not valid.empty:
        hs = valid["h"].to_numpy(dtype="int64")
        order = np.argsort(hs, kind="stable")
        # One take in bucket order, then zero-copy slices: one write per bucket.
        table = pa.Table.from_pandas(
            state_frame(valid.assign(bucket="valid")), preserve_index=False
        ).take(pa.array(order))
        for start, end in runs(hs[order]):
            h = int(hs[order[start]])
            lake.write_table(
                f"{valid_staging(staging)}/h={h:03d}/part-{piece.number:06d}.parquet",
                table.slice(start, end - start),
            )

    quarantined = out[~is_valid]
    if not quarantined.empty:
        lake.write_table(
            f"{quarantine_staging(staging)}/part-{piece.number:06d}.parquet",
            quarantine_table(quarantined),
        )

    counts = (
        out.assign(reason=out["reason"].fillna(""))
        .groupby(["file_name", "reason"], as_index=False)
        .size()
        .rename(columns={"size": "n"})
    )
    return counts.astype({"file_name": "str", "reason": "str", "n": "int64"})


def quarantine_table(part: pd.DataFrame) -> pa.Table:
    """Quarantined rows of ``validate_sales`` as the quarantine zone keeps them."""
    columns: dict[str, Any] = {c: pa.array(part[f"raw_{c}"], pa.string()) for c in SALES_COLUMNS}
    columns["_raw_line"] = pa.array(part["raw_line"], pa.string())
    columns["reason"] = pa.array(part["reason"], pa.string())
    columns["_file_name"] = pa.array(part["file_name"], pa.string())
    columns["_line_number"] = pa.array(part["line_number"], pa.int64())
    columns["_file_modified_at"] = pa.array(part["file_modified_at_us"], pa.int64()).cast(TS_UTC)
    columns["_delivery_date"] = pa.array(part["delivery_day"], pa.int32()).cast(pa.date32())
    return pa.table(columns, schema=QUARANTINE_SCHEMA)


def validate(
    client: Client,
    pieces: list[Piece],
    wanted: list[tuple[str, int]],
    *,
    lake_url: str,
    storage_options: dict | None,
    timezone: str,
    n_partitions: int,
    staging: str,
    show_progress: bool,
) -> pd.DataFrame:
    """Validate the wanted file versions' rows in the pieces, staging them for the next
    steps (a wanted version without rows is logged).

    Returns:
        The rows per file and reason (``""``: valid), as :data:`COUNTS_META`.
    """
    counts = COUNTS_META.copy()
    if wanted and pieces:
        logger.info("Validating %d raw piece(s)", len(pieces))
        partitions = dd.from_map(
            validate_piece,
            pieces,
            args=(lake_url, storage_options, wanted, timezone, n_partitions, staging),
            meta=COUNTS_META,
        )
        counts = gather(client, client.compute(partitions), show_progress)
        counts = counts.groupby(["file_name", "reason"], as_index=False)["n"].sum()
    empty = sorted({name for name, _ in wanted} - set(counts["file_name"]))
    if empty:
        logger.warning("No rows found for the latest version of %d file(s): %s", len(empty), empty)
    return counts
