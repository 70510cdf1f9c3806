"""Validate, de-duplicate and pre-aggregate the lake's sales with Dask, incrementally.

The run, step by step (each step Dask tasks over pieces of files; only the quarantined rows,
about 1% of them, come to the driver):

1. **Plan.** List ``raw/sales`` Parquet files not consumed yet, read ``raw/delivered_files``
   and find each sales file's latest version. Files whose latest version differs from the one
   in the state are *changed*. Nothing changed and no new input: return, touching no file.
2. **Validate** the rows of the changed files' latest versions (only from the new raw files),
   one task per piece of a raw file (pieces sized so that every worker gets an equal share).
   Valid rows are normalized and staged by sale_id hash bucket; quarantined rows are staged
   per piece.
3. **Buckets.** The state keeps the normalized valid rows of the latest version of every file,
   split into ``n_hash_partitions`` sale_id hash buckets. Every row of a sale_id lives in one
   bucket, so duplicate / superseded / valid is decided per bucket, and within a bucket only
   for the sale_ids that gain or lose rows. A bucket is a few immutable segments (one per run
   that added rows, sorted by sale date in small row groups) plus labels that override the
   bucket of earlier rows a later run re-decided or removed; a run appends its segment and
   labels, and compacts a bucket only when it has too many of either (see the state section
   below). Comparing the re-decided rows before and after gives the sale dates and months
   whose aggregates change (a correction weeks later moves both its old and new date), and
   the exact sums those rows add and remove per aggregate group.
4. **Aggregate** the affected dates and months only, rewriting exactly those partitions of
   ``daily_sales`` and ``customer_monthly`` (an empty file when a partition lost all its
   rows); unaffected partitions are not touched. Every aggregate column is a sum, so an
   affected partition is its file's exact sums (``_revenue_e4``) plus the changes: a new day
   costs what it changes, not what its month holds. A partition without a usable file (new,
   written before the exact sums were kept, not adding up, or named in ``_state/dirty.json``
   after a failed run) is aggregated from the state: one task per range of dates (or months)
   reads only the matching row groups of every bucket file and aggregates with Arrow.
5. **Quarantine and quality.** Replace each changed file's ``quarantine/sales_rows`` file
   (the staged quarantined rows are about 1% of the rows: sorted and split on the driver),
   rewrite ``file_quality`` (small), then save the state.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client, progress

from contract.lake import (
    FILE_QUALITY,
    PREPROCESSED,
    PREPROCESSED_STATE,
    QUARANTINE_ROWS,
    RAW_DELIVERED,
    RAW_LOADS,
    RAW_SALES,
    completed_load_ids,
    is_of_completed_load,
    partition_path,
)
from contract.sales import REASONS, SALES_COLUMNS
from dask_preprocess.cluster import dask_client
from dask_preprocess.rules import (
    BUCKETS,
    ORDER_COLUMNS,
    TUPLE_COLUMNS,
    assign_buckets,
    sale_id_hashes,
    sale_key_of,
    validate_sales,
)
from storage import Lake

logger = logging.getLogger(__name__)

STATE = PREPROCESSED_STATE
# 1: one rows file per bucket; 2: segments and labels per bucket; 3: rows with a sale_key
STATE_FORMAT = 3
STATE_ROW_GROUP = 16_384  # rows per row group of the state's bucket files (sorted by sale date)
PIECE_ROWS = 250_000  # rows per validation partition at most (whole row groups of a raw file)
EPOCH = date(1970, 1, 1)
CENT = Decimal("0.01")

STATE_DTYPES: dict[str, str] = {
    "file_name": "str",
    "file_modified_at_us": "int64",
    "delivery_day": "int32",
    "line_number": "int64",
    "sale_id": "str",
    "sale_key": "int32",  # rules.sale_key_of: a bucket's rows of some sale_ids, read by key
    "store_id": "str",
    "customer_id": "str",
    "product_id": "str",
    "region": "str",
    "sale_at_us": "int64",
    "quantity": "int64",
    "unit_price_e4": "int64",
    "amount_e4": "int64",
    "sale_date": "int32",
    "sale_month": "int32",
    "bucket": "str",
}

_ARROW_OF_DTYPE = {"str": pa.string(), "int64": pa.int64(), "int32": pa.int32()}
_STATE_ARROW: dict[str, pa.DataType] = {c: _ARROW_OF_DTYPE[t] for c, t in STATE_DTYPES.items()}
_STATE_SCHEMA = pa.schema(list(_STATE_ARROW.items()))

MONEY = pa.decimal128(18, 2)
TS_UTC = pa.timestamp("us", tz="UTC")

DAILY_SCHEMA = pa.schema(
    [
        ("sale_date", pa.date32()),
        ("store_id", pa.string()),
        ("product_id", pa.string()),
        ("region", pa.string()),
        ("n_sales", pa.int64()),
        ("units", pa.int64()),
        ("revenue", MONEY),
        ("_revenue_e4", pa.int64()),
        ("_computed_at", TS_UTC),
    ]
)
CUSTOMER_MONTHLY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("sale_month", pa.date32()),
        ("n_sales", pa.int64()),
        ("units", pa.int64()),
        ("revenue", MONEY),
        ("_revenue_e4", pa.int64()),
        ("_computed_at", TS_UTC),
    ]
)
FILE_QUALITY_SCHEMA = pa.schema(
    [
        ("file_name", pa.string()),
        ("delivery_date", pa.date32()),
        ("file_modified_at", TS_UTC),
        ("status", pa.string()),
        ("failure_reason", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_valid", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("rows_superseded", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_quarantined_by_reason", pa.string()),
        ("duplicate_ratio", pa.float64()),
        ("is_alert", pa.bool_()),
        ("units_valid", pa.int64()),
        ("revenue_valid", MONEY),
        ("_computed_at", TS_UTC),
    ]
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

# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileQuality:
    """One row of ``preprocessed/file_quality``: a sales file, its latest version."""

    file_name: str
    delivery_date: date | None
    file_modified_at: datetime
    status: str
    failure_reason: str | None
    rows_in: int
    rows_valid: int
    rows_duplicate: int
    rows_superseded: int
    rows_quarantined: int
    rows_quarantined_by_reason: dict[str, int]
    duplicate_ratio: float
    is_alert: bool
    units_valid: int
    revenue_valid: Decimal


@dataclass
class PreprocessResult:
    """What a run of :func:`preprocess_sales` did and what the lake now holds."""

    file_quality: list[FileQuality]
    totals: dict[str, int]
    quarantined_by_reason: dict[str, int]
    affected_sale_dates: list[date]
    affected_sale_months: list[date]
    files_processed: list[str]
    did_work: bool
    duration_seconds: float
    failed_files: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went, by step: ``plan`` (reading the state, listing the lake),
    ``cluster`` (starting and closing the Dask cluster), ``validate`` (reading and validating
    the new raw rows, staging the valid ones by hash bucket), ``buckets`` (de-duplication and
    supersession in the affected buckets), ``aggregate`` (the affected daily and monthly
    partitions) and ``commit`` (quarantine, file quality, the state's switch). Empty when the
    run had nothing to do."""
    partitions_updated: int = 0
    """Affected partitions (dates and months) updated by difference (their file plus the
    sums of the valid rows added, minus those of the valid rows removed) instead of being
    aggregated again from the state."""


class _Laps:
    """Wall-clock seconds per named step, each lap timed from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._mark = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._mark
        self._mark = now


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def file_key(file_name: str) -> str:
    """A flat, filesystem-safe name for a delivered file (used for quarantine files).

    Args:
        file_name: The file name relative to the drop (``sales/sales_2026-01-10.csv.gz``).

    Returns:
        A name such as ``sales__sales_2026-01-10.csv.gz-1a2b3c4d``.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", file_name.replace("/", "__"))
    return f"{slug}-{hashlib.sha1(file_name.encode('utf-8')).hexdigest()[:8]}"


def _days_to_date(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def _date_to_days(value: date) -> int:
    return (value - EPOCH).days


def _revenue(amount_e4: int) -> Decimal:
    """Exact sum of amounts in 1/10,000, rounded half-up to two places."""
    return (Decimal(int(amount_e4)) / 10_000).quantize(CENT, rounding=ROUND_HALF_UP)


def _money_array(amounts_e4: Any) -> pa.Array:
    """Sums in 1/10,000 as decimal(18,2), rounded half-up (away from zero), vectorized."""
    v = np.asarray(amounts_e4, dtype="int64")
    cents = np.sign(v) * ((np.abs(v) + 50) // 100)
    scaled = pc.multiply(
        pa.array(cents, pa.int64()).cast(pa.decimal128(19, 0)),
        pa.scalar(Decimal("0.01"), pa.decimal128(3, 2)),
    )
    return scaled.cast(MONEY)


def _micros(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Any timestamp-like or text column as int64 UTC microseconds (-1 when null)."""
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        arr = arr.cast(TS_UTC)
    elif pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("us")).cast(TS_UTC)
    else:
        parsed = pd.to_datetime(
            pd.Series(arr.to_pylist(), dtype="str"), utc=True, errors="coerce", format="ISO8601"
        )
        return parsed.dt.as_unit("us").astype("int64").where(parsed.notna(), -1).to_numpy()
    return arr.cast(pa.int64()).fill_null(-1).to_numpy()


_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def _days(arr: pa.ChunkedArray | pa.Array, file_names: pd.Series) -> np.ndarray:
    """A delivery-date column as int32 days; missing dates come from the file name."""
    if pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
        days = pd.Series(arr.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False))
        days = days.astype("Float64")
    else:
        parsed = pd.to_datetime(pd.Series(arr.to_pandas(), dtype="str"), errors="coerce")
        days = pd.Series((parsed - pd.Timestamp("1970-01-01")).dt.days, dtype="Float64")
    days = days.reset_index(drop=True)
    if days.isna().any():
        names = file_names.reset_index(drop=True)
        from_name = {n: _name_day(n) for n in pd.unique(names[days.isna()])}
        days = days.fillna(names.map(from_name).astype("Float64"))
    return days.fillna(0).astype("int32").to_numpy()


def _name_day(name: str) -> float:
    match = _NAME_DATE.search(str(name))
    if not match:
        return float("nan")
    try:
        return float(_date_to_days(date.fromisoformat(match.group(1))))
    except ValueError:
        return float("nan")


def _arrow_state_frame(rows: pa.Table) -> pd.DataFrame:
    """State rows from Arrow as pandas (an empty table skips the conversion's cost)."""
    return _state_frame(rows.to_pandas() if rows.num_rows else None)


def _state_frame(rows: pd.DataFrame | None = None) -> pd.DataFrame:
    if rows is None:
        rows = pd.DataFrame({c: pd.Series(dtype=t) for c, t in STATE_DTYPES.items()})
    return rows[list(STATE_DTYPES)].astype(STATE_DTYPES)


# ---------------------------------------------------------------------------------------------
# Partition functions (run on Dask workers)
# ---------------------------------------------------------------------------------------------

RAW_WANTED = [
    *SALES_COLUMNS,
    "_file_name",
    "_delivery_date",
    "_file_modified_at",
    "_line_number",
    "_malformed",
    "_raw_line",
]


def _read_raw_piece(lake: Lake, path: str, row_groups: list[int], columns: list[str]) -> pa.Table:
    """Read some row groups of one raw Parquet file; missing columns come back as nulls."""
    with lake.fs.open(lake.path(path), "rb") as fh:
        pf = pq.ParquetFile(fh)
        present = [c for c in columns if c in pf.schema_arrow.names]
        table = pf.read_row_groups(row_groups, columns=present)
    for col in columns:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table.select(columns)


def _versions_of_piece(
    piece: tuple[int, str, list[int]], lake_url: str, storage_options: dict | None
) -> pd.DataFrame:
    """The file versions found in a piece of a raw file, with their row counts."""
    _, path, row_groups = piece
    lake = Lake(lake_url, storage_options)
    cols = ["_file_name", "_file_modified_at", "_delivery_date"]
    table = _read_raw_piece(lake, path, row_groups, cols)
    grouped = table.group_by(cols).aggregate([([], "count_all")])
    names = pd.Series(grouped.column("_file_name").to_pandas(), dtype="str")
    frame = pd.DataFrame(
        {
            "file_name": names,
            "file_modified_at_us": _micros(grouped.column("_file_modified_at")),
            "delivery_day": _days(grouped.column("_delivery_date"), names),
            "n": grouped.column("count_all").to_numpy(),
        }
    )
    frame = frame.groupby(["file_name", "file_modified_at_us"], as_index=False).agg(
        delivery_day=("delivery_day", "min"), n=("n", "sum")
    )
    return frame.astype(
        {"file_name": "str", "file_modified_at_us": "int64", "delivery_day": "int32", "n": "int64"}
    )


VERSIONS_META = pd.DataFrame(
    {
        "file_name": pd.Series(dtype="str"),
        "file_modified_at_us": pd.Series(dtype="int64"),
        "delivery_day": pd.Series(dtype="int32"),
        "n": pd.Series(dtype="int64"),
    }
)

COUNTS_META = pd.DataFrame(
    {
        "file_name": pd.Series(dtype="str"),
        "reason": pd.Series(dtype="str"),
        "n": pd.Series(dtype="int64"),
    }
)


def _validate_piece(
    piece: tuple[int, str, list[int]],
    lake_url: str,
    storage_options: dict | None,
    wanted: list[tuple[str, int]],
    timezone: str,
    n_partitions: int,
    staging: str,
) -> pd.DataFrame:
    """Validate one piece of a raw file and stage its rows; return its counts per reason.

    Only rows of the wanted file versions are read. Valid rows are written to
    ``<staging>/valid/h=NNN/part-<piece>.parquet``, quarantined rows to
    ``<staging>/quarantine/<file key>/part-<piece>.parquet``; re-running the task rewrites the
    same files.
    """
    piece_id, path, row_groups = piece
    lake = Lake(lake_url, storage_options)
    table = _read_raw_piece(lake, path, row_groups, RAW_WANTED)
    names = pd.Series(table.column("_file_name").to_pandas(), dtype="str")
    raw = table.drop_columns(["_file_modified_at", "_delivery_date"]).to_pandas()
    raw["_file_name"] = names
    raw["file_modified_at_us"] = _micros(table.column("_file_modified_at"))
    raw["delivery_day"] = _days(table.column("_delivery_date"), names)
    keys = pd.MultiIndex.from_frame(raw[["_file_name", "file_modified_at_us"]])
    wanted_index = pd.MultiIndex.from_tuples(wanted, names=["_file_name", "file_modified_at_us"])
    raw = raw[keys.isin(wanted_index)].reset_index(drop=True)
    if raw.empty:
        return COUNTS_META.copy()
    for col in RAW_WANTED:
        if col in SALES_COLUMNS or col in ("_malformed", "_raw_line", "_file_name"):
            raw[col] = raw[col].astype("str")
    raw["_line_number"] = pd.to_numeric(raw["_line_number"], errors="coerce").fillna(-1)

    out = validate_sales(raw, timezone, n_partitions)
    is_valid = out["reason"].isna()

    valid = out[is_valid]
    if not valid.empty:
        hs = valid["h"].to_numpy(dtype="int64")
        order = np.argsort(hs, kind="stable")
        # One take in bucket order, then zero-copy slices: one write per bucket.
        table = pa.Table.from_pandas(
            _state_frame(valid.assign(bucket="valid")), preserve_index=False
        ).take(pa.array(order))
        for start, end in _runs(hs[order]):
            h = int(hs[order[start]])
            lake.write_table(
                f"{staging}/valid/h={h:03d}/part-{piece_id:06d}.parquet",
                table.slice(start, end - start),
            )

    quarantined = out[~is_valid]
    if not quarantined.empty:
        lake.write_table(
            f"{staging}/quarantine/part-{piece_id:06d}.parquet", _quarantine_table(quarantined)
        )

    counts = (
        out.assign(reason=out["reason"].fillna(""))
        .groupby(["file_name", "reason"], as_index=False)
        .size()
        .rename(columns={"size": "n"})
    )
    return counts.astype({"file_name": "str", "reason": "str", "n": "int64"})


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of equal neighbours in ``values`` (sorted or grouped)."""
    if len(values) == 0:
        return []
    cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(values)]
    return list(itertools.pairwise(bounds))


def _quarantine_table(part: pd.DataFrame) -> pa.Table:
    columns: dict[str, Any] = {c: pa.array(part[f"raw_{c}"], pa.string()) for c in SALES_COLUMNS}
    columns["_raw_line"] = pa.array(part["raw_line"], pa.string())
    columns["reason"] = pa.array(part["reason"], pa.string())
    columns["_file_name"] = pa.array(part["file_name"], pa.string())
    columns["_line_number"] = pa.array(part["line_number"], pa.int64())
    columns["_file_modified_at"] = pa.array(part["file_modified_at_us"], pa.int64()).cast(TS_UTC)
    columns["_delivery_date"] = pa.array(part["delivery_day"], pa.int32()).cast(pa.date32())
    return pa.table(columns, schema=QUARANTINE_SCHEMA)


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    if frame.empty:
        return np.zeros(0, dtype="uint64")
    cols = ["file_name", "line_number", *TUPLE_COLUMNS]
    return pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()


def _with_sale_key(table: pa.Table) -> pa.Table:
    """State rows with their ``sale_key`` (computed from ``sale_id`` for rows written before
    format 3, which had none)."""
    if "sale_key" in table.column_names:
        return table
    ids = table["sale_id"].to_pandas() if table.num_rows else pd.Series([], dtype="str")
    keys = pa.array(sale_key_of(sale_id_hashes(ids)), pa.int32())
    return table.append_column("sale_key", keys)


def _state_table(lake: Lake, rel: str) -> pa.Table:
    """A state or staged rows file (or folder) as Arrow with the state's column types."""
    if not lake.exists(rel):
        return _STATE_SCHEMA.empty_table()
    return _with_sale_key(lake.read_table(rel)).select(_STATE_SCHEMA.names).cast(_STATE_SCHEMA)


def _mask_in(column: pa.ChunkedArray | pa.Array, values: pa.Array) -> pa.Array:
    """Whether each value of ``column`` is in ``values`` (nulls are not)."""
    return pc.fill_null(pc.is_in(column, value_set=values), False)


# ---------------------------------------------------------------------------------------------
# The de-duplication state: segments and labels per sale_id hash bucket
# ---------------------------------------------------------------------------------------------
#
# A bucket's rows live in immutable *segment* files, each written by one run (its run id is
# the segment id, also stored in the rows' ``segment`` column) and sorted by sale date in
# small row groups. A run appends one segment with its new rows; the earlier rows whose
# decision changed (a later correction supersedes them) or whose file was re-delivered (they
# are *gone*) get a *label* that overrides what their segment recorded, keyed by
# (segment, file_name, line_number). ``segments.json`` names each bucket's live segments and
# labels file: writing it is the commit. A bucket is compacted into one segment when it would
# have more than MAX_SEGMENTS segments or more labels than COMPACT_LABELS of its rows, so an
# incremental run writes only its own rows most of the time.

SEGMENTS_MANIFEST = f"{STATE}/segments.json"
DIRTY = f"{STATE}/dirty.json"  # the partitions a run rewrites, until it has committed
MAX_SEGMENTS = 8  # segments per bucket before it is compacted into one
COMPACT_LABELS = 0.05  # ... or labels per row of the bucket
GONE = "gone"  # the label of a row whose file was re-delivered (the row left the state)
_KEY = ["segment", "file_name", "line_number"]
_SEGMENT_SCHEMA = _STATE_SCHEMA.append(pa.field("segment", pa.string()))
_LABELS_SCHEMA = pa.schema(
    [
        ("segment", pa.string()),
        ("file_name", pa.string()),
        ("line_number", pa.int64()),
        ("sale_date", pa.int32()),
        ("sale_month", pa.int32()),
        ("label", pa.string()),
    ]
)
_NO_SEGMENTS: dict[str, Any] = {"segments": [], "labels": None}


def _segment_path(base: str, h: int, segment: str) -> str:
    """A segment file of bucket ``h`` below ``base`` (the state, or a run's staging folder)."""
    return f"{base}/rows/h={h:03d}/{segment}.parquet"


def _labels_path(base: str, h: int, labels: str) -> str:
    """The labels file of bucket ``h`` below ``base``."""
    return f"{base}/labels/h={h:03d}/{labels}.parquet"


def _bucket_paths(
    h: int, live: dict[str, Any], run_id: str | None = None, staging: str | None = None
) -> tuple[list[str], str | None]:
    """The segment files and labels file of a bucket; those named ``run_id`` are staged."""

    def base(name: str) -> str:
        return staging if staging is not None and name == run_id else STATE

    segments = [_segment_path(base(s), h, s) for s in live["segments"]]
    labels = live["labels"]
    return segments, (_labels_path(base(labels), h, labels) if labels else None)


def _read_manifest(lake: Lake) -> dict[int, dict[str, Any]]:
    """Each bucket's live segments and labels (``segments.json``; empty for a new state)."""
    doc = lake.read_json(SEGMENTS_MANIFEST) or {}
    return {
        int(h): {"segments": list(v["segments"]), "labels": v["labels"]} for h, v in doc.items()
    }


def _write_manifest(lake: Lake, manifest: dict[int, dict[str, Any]]) -> None:
    live = {f"{h:03d}": v for h, v in sorted(manifest.items()) if v["segments"]}
    lake.write_json(SEGMENTS_MANIFEST, live)


def _with_segment(table: pa.Table, segment: str) -> pa.Table:
    """State rows tagged with the segment they are written to."""
    rows = table.select(_STATE_SCHEMA.names).cast(_STATE_SCHEMA)
    return rows.append_column("segment", pa.repeat(pa.scalar(segment, pa.string()), len(rows)))


def _relabel(rows: pa.Table, labels: pa.Table) -> pa.Table:
    """``rows`` (with ``segment``) with their current bucket: a label overrides the bucket
    their segment recorded (``gone`` for a row that left; callers drop those)."""
    if labels.num_rows == 0 or rows.num_rows == 0:
        return rows
    # Few rows have a label: only those that may have one (a label's segment and line
    # number) are joined; the bucket column is then patched in place, in row order.
    maybe = pc.and_(
        _mask_in(rows["line_number"], pc.unique(labels["line_number"])),
        _mask_in(rows["segment"], pc.unique(labels["segment"])),
    )
    index = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
    if not len(index):
        return rows
    candidates = rows.select(_KEY).take(pa.array(index)).append_column("_i", pa.array(index))
    hits = candidates.join(
        labels.select([*_KEY, "label"]), keys=_KEY, join_type="inner", use_threads=False
    ).sort_by("_i")
    if not hits.num_rows:
        return rows
    mask = np.zeros(rows.num_rows, dtype=bool)
    mask[hits["_i"].to_numpy()] = True
    bucket = pc.replace_with_mask(
        rows["bucket"].combine_chunks(), pa.array(mask), hits["label"].combine_chunks()
    )
    return rows.set_column(rows.schema.get_field_index("bucket"), "bucket", bucket)


def _labelled(rows: pa.Table, labels: pa.Table) -> pa.Table:
    """``rows`` with their current bucket, without the rows that left (gone)."""
    rows = _relabel(rows, labels)
    if labels.num_rows == 0:
        return rows
    return rows.filter(pc.not_equal(rows["bucket"], GONE))


def _read_labels(lake: Lake, path: str | None) -> pa.Table:
    """A bucket's labels file (an empty table when it has none)."""
    if path is None:
        return _LABELS_SCHEMA.empty_table()
    return lake.read_table(path).select(_LABELS_SCHEMA.names).cast(_LABELS_SCHEMA)


def _label_rows(rows: pa.Table, labels: pa.Array | list[str]) -> pa.Table:
    """Label entries for state rows (with ``segment``)."""
    return pa.table(
        {
            "segment": rows["segment"],
            "file_name": rows["file_name"],
            "line_number": rows["line_number"],
            "sale_date": rows["sale_date"],
            "sale_month": rows["sale_month"],
            "label": pa.array(labels, pa.string()),
        },
        schema=_LABELS_SCHEMA,
    )


def _sorted_rows(rows: pa.Table) -> pa.Table:
    """Sorted by sale date (then delivery order): readers skip the row groups of other dates."""
    return rows.sort_by([(c, "ascending") for c in ("sale_date", *ORDER_COLUMNS)])


def _keys_of_segments(lake: Lake, paths: list[str], columns: list[str]) -> pa.Table:
    """``columns`` of every row of the segments, with the index of its segment in ``paths``
    (``_file``) and its position in that file (``_pos``); only those columns are read."""
    schema = pa.schema(
        [*(_SEGMENT_SCHEMA.field(c) for c in columns), ("_file", pa.int32()), ("_pos", pa.int64())]
    )
    tables = [schema.empty_table()]
    for index, rel in enumerate(paths):
        keys = lake.read_table(rel, columns=columns)
        n = keys.num_rows
        keys = keys.append_column("_file", pa.array(np.full(n, index, dtype="int32")))
        keys = keys.append_column("_pos", pa.array(np.arange(n, dtype="int64")))
        tables.append(keys.cast(schema))
    return pa.concat_tables(tables)


def _rows_at(lake: Lake, rel: str, positions: np.ndarray) -> pa.Table:
    """The rows of a segment file at ``positions`` (only their row groups are read)."""
    with lake.fs.open(lake.path(rel), "rb") as fh:
        pf = pq.ParquetFile(fh)
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        group_of = np.searchsorted(starts, positions, side="right") - 1
        groups = np.unique(group_of)
        table = pf.read_row_groups(groups.tolist())
    read_before = np.concatenate([[0], np.cumsum(np.asarray(sizes)[groups])])
    local = read_before[np.searchsorted(groups, group_of)] + positions - starts[group_of]
    rows = table.take(pa.array(local))
    return rows.select(_SEGMENT_SCHEMA.names).cast(_SEGMENT_SCHEMA)


def _counts(rows: pa.Table, h: np.ndarray) -> pd.DataFrame:
    """Rows, units and amount per (hash bucket ``h`` of each row, file, bucket) of state rows."""
    with_h = rows.select(["file_name", "bucket", "quantity", "amount_e4"]).append_column(
        "h", pa.array(h, pa.int64())
    )
    counts = with_h.group_by(["h", "file_name", "bucket"], use_threads=False).aggregate(
        [([], "count_all"), ("quantity", "sum"), ("amount_e4", "sum")]
    )
    return pd.DataFrame(
        {
            "h": counts["h"].to_numpy(),
            "file_name": counts["file_name"].to_pylist(),
            "bucket": counts["bucket"].to_pylist(),
            "n": counts["count_all"].to_numpy(),
            "units": counts["quantity_sum"].to_numpy(),
            "amount_e4": counts["amount_e4_sum"].to_numpy(),
        },
        columns=list(COUNTS_DTYPES),
    )


def _split_by_bucket(table: pa.Table, h: np.ndarray) -> dict[int, pa.Table]:
    """``table``'s rows per hash bucket (``h`` gives each row's), in their order."""
    order = np.argsort(h, kind="stable")
    ordered = table.take(pa.array(order)) if len(order) else table
    return {
        int(h[order[start]]): ordered.slice(start, end - start) for start, end in _runs(h[order])
    }


def _old_rows_to_redo(
    lake: Lake,
    segment_paths: list[str],
    labels: pa.Table,
    staged: pa.Table,
    changed: pa.Array,
    holds_changed: bool,
) -> pa.Table:
    """The rows of a bucket (its segments and labels; gone rows dropped) that leave (their
    file changed) or must be decided again (their sale_id gains or loses a row).

    The decision for a sale_id depends on its rows alone. Only the key columns of the bucket's
    segments are read (``sale_key``, 4 bytes a row, not the ``sale_id`` text), then the row
    groups holding the wanted rows. Every row of a touched sale_id has its key; the few rows
    of other sale_ids sharing a key come along with all their rows, and deciding them again
    changes nothing. Rows already gone may be among them; the labels drop them once read.
    """
    if not segment_paths:
        return _SEGMENT_SCHEMA.empty_table()
    columns = ["sale_key", "file_name"] if holds_changed else ["sale_key"]
    keys = _keys_of_segments(lake, segment_paths, columns)
    from_changed = (
        _mask_in(keys["file_name"], changed)
        if holds_changed
        else pa.array(np.zeros(keys.num_rows, dtype=bool))
    )
    touched = pc.unique(
        pa.chunked_array(
            [*staged["sale_key"].chunks, *keys.filter(from_changed)["sale_key"].chunks],
            type=pa.int32(),
        ).combine_chunks()
    )
    wanted = keys.filter(pc.or_(from_changed, _mask_in(keys["sale_key"], touched)))
    files = wanted["_file"].to_numpy()
    positions = wanted["_pos"].to_numpy()
    parts = [
        _rows_at(lake, segment_paths[i], np.sort(positions[files == i])) for i in np.unique(files)
    ]
    if not parts:
        return _SEGMENT_SCHEMA.empty_table()
    return _labelled(pa.concat_tables(parts), labels)


def _update_hash_buckets(
    hs: list[int],
    lake_url: str,
    storage_options: dict | None,
    staging: str,
    changed_files: list[str],
    run_id: str,
    live: dict[int, dict[str, Any]],
    counts: list[tuple[int, str, str, int, int, int]],
    max_segments: int = MAX_SEGMENTS,
    max_label_ratio: float = COMPACT_LABELS,
    sums: bool = False,
) -> dict[str, Any]:
    """Recompute duplicate / superseded / valid for some sale_id hash buckets of the state.

    Per bucket, rows of changed files leave (labelled gone), the staged rows of their new
    versions come in as a new segment, and the sale_ids that gained or lost a row are decided
    again: the rows whose decision changed get a label. Only the key columns of a bucket are
    read, then the row groups holding those rows; nothing else is rewritten unless the
    bucket is compacted. The decisions of all the task's buckets are taken together (a
    sale_id lives in one bucket, so this is the same as bucket by bucket, with one pass of
    the per-call costs instead of one per bucket: most of a small run's time). The new files
    are written below ``staging``; the run moves them into the state and names them in
    ``segments.json`` only after the outputs are written, so a run that fails half-way
    leaves the state as it was and the next run redoes the work.

    Args:
        hs: The buckets of this task.
        live: Each bucket's live segments and labels before the run (absent: none).
        counts: The buckets' ``(h, file_name, bucket, n, units, amount_e4)`` before the run.
        sums: Also return what the valid rows added and removed change the aggregates by.

    Returns:
        ``{"buckets", "dates", "months", "changes"}``: per bucket ``{"h", "live",
        "compacted", "files", "counts"}`` (its live segments and labels after the run, the
        new files in the staging folder, its counts after the run); the sale dates and
        months (as day numbers) whose valid rows changed; per partition column, the exact
        sums of the valid rows added minus those of the valid rows removed, per group (None
        without ``sums``).
    """
    lake = Lake(lake_url, storage_options)
    changed = pa.array(changed_files, pa.string())
    changed_set = set(changed_files)
    holding_changed = {int(c[0]) for c in counts if str(c[1]) in changed_set}
    olds, stageds, old_hs, staged_hs = [], [], [], []
    segment_paths: dict[int, list[str]] = {}
    old_labels: dict[int, pa.Table] = {}
    for h in hs:
        segment_paths[h], labels_path = _bucket_paths(h, live.get(h, _NO_SEGMENTS))
        old_labels[h] = _read_labels(lake, labels_path)
        staged = _with_segment(_state_table(lake, f"{staging}/valid/h={h:03d}"), run_id)
        old = _old_rows_to_redo(
            lake, segment_paths[h], old_labels[h], staged, changed, h in holding_changed
        )
        olds.append(old.select(_SEGMENT_SCHEMA.names).cast(_SEGMENT_SCHEMA))
        stageds.append(staged)
        old_hs.append(np.full(old.num_rows, h, dtype="int64"))
        staged_hs.append(np.full(staged.num_rows, h, dtype="int64"))
    old = pa.concat_tables([_SEGMENT_SCHEMA.empty_table(), *olds])
    staged = pa.concat_tables([_SEGMENT_SCHEMA.empty_table(), *stageds])
    old_h = np.concatenate([np.zeros(0, dtype="int64"), *old_hs])
    staged_h = np.concatenate([np.zeros(0, dtype="int64"), *staged_hs])

    leaving_mask = _mask_in(old["file_name"], changed)
    leaving_np = leaving_mask.to_numpy(zero_copy_only=False)
    leaving, leaving_h = old.filter(leaving_mask), old_h[leaving_np]
    redo_old_rows, redo_old_h = old.filter(pc.invert(leaving_mask)), old_h[~leaving_np]
    redo_old = _arrow_state_frame(redo_old_rows)
    redo = _state_frame(pd.concat([redo_old, _arrow_state_frame(staged)], ignore_index=True))
    if not redo.empty:
        redo["bucket"] = assign_buckets(redo).astype("str")
    n_old = len(redo_old)
    relabelled = np.zeros(len(redo), dtype=bool)
    relabelled[:n_old] = redo["bucket"].to_numpy()[:n_old] != redo_old["bucket"].to_numpy()

    # Valid rows that may differ between before and after: the leaving rows and re-decided
    # kept rows whose bucket changed (before), the staged rows and those same kept rows
    # (after). Every other valid row is in both.
    leaving_frame = _arrow_state_frame(leaving)
    leaving_at = np.flatnonzero((leaving_frame["bucket"] == "valid").to_numpy())
    left_at = np.flatnonzero((redo_old["bucket"] == "valid").to_numpy() & relabelled[:n_old])
    old_candidates = pd.concat(
        [leaving_frame.iloc[leaving_at], redo_old.iloc[left_at]], ignore_index=True
    )
    is_staged = np.zeros(len(redo), dtype=bool)
    is_staged[n_old:] = True
    new_at = np.flatnonzero((redo["bucket"] == "valid").to_numpy() & (is_staged | relabelled))
    new_candidates = redo.iloc[new_at]
    gone_mask = np.ones(len(old_candidates), dtype=bool)
    added_at = new_at
    if not (old_candidates.empty or new_candidates.empty):
        old_hash, new_hash = _row_hashes(old_candidates), _row_hashes(new_candidates)
        gone_mask = ~np.isin(old_hash, new_hash)
        added_at = new_at[~np.isin(new_hash, old_hash)]
    gone_rows = old_candidates[gone_mask]
    added = redo.iloc[added_at]
    dates = np.unique(np.concatenate([gone_rows["sale_date"], added["sale_date"]])).tolist()
    months = np.unique(np.concatenate([gone_rows["sale_month"], added["sale_month"]])).tolist()

    decided = pa.array(redo["bucket"].to_numpy(), pa.string())
    at = redo_old_rows.schema.get_field_index("bucket")
    redone_old = redo_old_rows.set_column(at, "bucket", decided[:n_old])
    new_rows = staged.set_column(at, "bucket", decided[n_old:])
    changes = None
    if sums:
        # The valid rows this run adds and removes, as Arrow (the frames' rows, in order):
        # what the aggregates of the affected dates and months change by.
        added_rows = pa.concat_tables([redone_old, new_rows]).take(pa.array(added_at, pa.int64()))
        old_rows = pa.concat_tables(
            [
                leaving.take(pa.array(leaving_at, pa.int64())),
                redo_old_rows.take(pa.array(left_at, pa.int64())),
            ]
        )
        gone_rows_arrow = old_rows.filter(pa.array(gone_mask))
        changes = {
            column: _combined_sums(
                [agg.sums(added_rows), _negated(agg.sums(gone_rows_arrow))], agg.group
            )
            for column, agg in _AGGREGATES.items()
        }

    # The counts move by what left or was re-decided (out) and what was decided (in).
    before = pd.DataFrame(counts, columns=list(COUNTS_DTYPES))
    out = _counts(
        pa.concat_tables([leaving, redo_old_rows]), np.concatenate([leaving_h, redo_old_h])
    )
    out[["n", "units", "amount_e4"]] *= -1
    into = _counts(pa.concat_tables([redone_old, new_rows]), np.concatenate([redo_old_h, staged_h]))
    moved = pd.concat([before, out, into])
    after_counts = moved.groupby(["h", "file_name", "bucket"], as_index=False).sum()
    after_counts = after_counts[after_counts["n"] != 0]
    counts_of = {int(h): part for h, part in after_counts.groupby("h")}

    # New labels: the re-decided old rows whose bucket changed, and the rows that left.
    changed_mask = pa.array(relabelled[:n_old])
    new_labels = pa.concat_tables(
        [
            _label_rows(redone_old.filter(changed_mask), redone_old.filter(changed_mask)["bucket"]),
            _label_rows(leaving, [GONE] * leaving.num_rows),
        ]
    )
    new_labels_of = _split_by_bucket(
        new_labels, np.concatenate([redo_old_h[relabelled[:n_old]], leaving_h])
    )
    new_rows_of = _split_by_bucket(new_rows, staged_h)

    buckets = []
    for h in hs:
        labels = old_labels[h]
        added_labels = new_labels_of.get(h)
        if added_labels is not None:
            labels = pa.concat_tables(
                [
                    labels.join(added_labels.select(_KEY), keys=_KEY, join_type="left anti"),
                    added_labels,
                ]
            ).select(_LABELS_SCHEMA.names)
        bucket_counts = counts_of.get(h, before.iloc[0:0])
        live_after, compacted, written = _write_bucket(
            lake,
            h,
            live.get(h, _NO_SEGMENTS),
            segment_paths[h],
            new_rows_of.get(h, _SEGMENT_SCHEMA.empty_table()),
            labels,
            added_labels is not None,
            int(bucket_counts["n"].sum()),
            staging=staging,
            run_id=run_id,
            max_segments=max_segments,
            max_label_ratio=max_label_ratio,
        )
        buckets.append(
            {
                "h": h,
                "live": live_after,
                "compacted": compacted,
                "files": written,
                "counts": list(
                    bucket_counts[list(COUNTS_DTYPES)].itertuples(index=False, name=None)
                ),
            }
        )
    return {
        "buckets": buckets,
        "dates": dates,
        "months": months,
        "changes": changes,
    }


def _current_rows(lake: Lake, segment_paths: list[str], labels: pa.Table) -> pa.Table:
    """Every current row of a bucket: its segments with the labels folded in, gone rows
    dropped (rows of a format-2 segment get their sale_key)."""
    if not segment_paths:
        return _SEGMENT_SCHEMA.empty_table()
    rows = _with_sale_key(lake.read_tables(segment_paths))
    return _labelled(rows.select(_SEGMENT_SCHEMA.names).cast(_SEGMENT_SCHEMA), labels)


def _write_bucket(
    lake: Lake,
    h: int,
    live: dict[str, Any],
    segment_paths: list[str],
    new_rows: pa.Table,
    labels: pa.Table,
    labels_changed: bool,
    total: int,
    *,
    staging: str,
    run_id: str,
    max_segments: int,
    max_label_ratio: float,
) -> tuple[dict[str, Any], bool, list[str]]:
    """Write bucket ``h``'s new files below ``staging``: its new rows as a segment and its
    labels (all of them, ``labels``) when they changed, or, when the bucket has too many
    segments or labels for its ``total`` rows, one compacted segment of every current row.

    Returns:
        The bucket's live segments and labels after the run, whether it was compacted, and
        the files written.
    """
    n_segments = len(live["segments"]) + (1 if new_rows.num_rows else 0)
    compact = n_segments > max_segments or labels.num_rows > max_label_ratio * max(total, 1)
    written: list[str] = []
    if compact:
        # One segment with every current row: the labels are folded in, gone rows dropped.
        now = pa.concat_tables([_current_rows(lake, segment_paths, labels), new_rows])
        if now.num_rows:
            written.append(_segment_path(staging, h, run_id))
            rows = _sorted_rows(_with_segment(now, run_id))
            lake.write_table(written[-1], rows, row_group_size=STATE_ROW_GROUP)
        return {"segments": [run_id] if now.num_rows else [], "labels": None}, True, written
    segments = list(live["segments"])
    if new_rows.num_rows:
        segments.append(run_id)
        written.append(_segment_path(staging, h, run_id))
        lake.write_table(written[-1], _sorted_rows(new_rows), row_group_size=STATE_ROW_GROUP)
    labels_name = live["labels"]
    if labels_changed:
        labels_name = run_id
        written.append(_labels_path(staging, h, run_id))
        lake.write_table(written[-1], labels)
    live_after = {"segments": segments, "labels": labels_name if labels.num_rows else None}
    return live_after, False, written


DAILY_GROUP = ["sale_date", "store_id", "product_id", "region"]
MONTHLY_GROUP = ["customer_id", "sale_month"]
_DATE_COLUMNS = ("sale_date", "sale_month")  # day numbers in the state, dates in the outputs
_MEASURES = ("n", "units", "amount_e4")  # the exact sums of an aggregate group


def _sums_schema(schema: pa.Schema, group: list[str]) -> pa.Schema:
    """The exact sums an aggregate (``schema``) is written from: its group (dates as day
    numbers), ``n``, ``units`` and ``amount_e4`` (1/10,000). A partition file keeps them
    (``_revenue_e4``), so a later run can update it by difference."""
    return pa.schema(
        [
            *((c, pa.int32()) if c in _DATE_COLUMNS else schema.field(c) for c in group),
            ("n", pa.int64()),
            ("units", pa.int64()),
            ("amount_e4", pa.int64()),
        ]
    )


_DAILY_SUMS = _sums_schema(DAILY_SCHEMA, DAILY_GROUP)
_MONTHLY_SUMS = _sums_schema(CUSTOMER_MONTHLY_SCHEMA, MONTHLY_GROUP)


AGGREGATE_TASK_ROWS = 400_000  # valid rows an aggregation task reads at most (about)


def _row_group_ranges(
    lake: Lake, state_paths: list[str], columns: list[str]
) -> dict[str, list[tuple[int, int, int]]]:
    """``(min, max, rows)`` of each column per row group of the state files (footers only)."""
    ranges: dict[str, list[tuple[int, int, int]]] = {c: [] for c in columns}
    for rel in state_paths:
        with lake.fs.open(lake.path(rel), "rb") as fh:
            pf = pq.ParquetFile(fh)
            indexes = {c: pf.schema_arrow.get_field_index(c) for c in columns}
            meta = pf.metadata
            for i in range(meta.num_row_groups):
                group = meta.row_group(i)
                for column, index in indexes.items():
                    stats = group.column(index).statistics
                    if stats is not None and stats.has_min_max:
                        ranges[column].append((int(stats.min), int(stats.max), group.num_rows))
    return ranges


def _chunks(
    values: list[int], ranges: list[tuple[int, int, int]], step: float, min_chunks: int
) -> list[list[int]]:
    """Split sorted values into contiguous chunks of about AGGREGATE_TASK_ROWS rows each.

    The rows per value are estimated from the row groups' ranges (rows spread evenly over the
    range, ``step`` apart); there are at least ``min_chunks`` chunks when there are as many
    values, so that every worker has work.
    """
    if not values:
        return []
    weights = np.zeros(len(values))
    arr = np.asarray(values)
    for lo, hi, rows in ranges:
        inside = (arr >= lo) & (arr <= hi)
        weights[inside] += rows / max(1.0, (hi - lo) / step + 1)
    total = float(weights.sum())
    n = max(min(min_chunks, len(values)), int(np.ceil(total / AGGREGATE_TASK_ROWS)))
    if n <= 1:
        return [values]
    # Cut where the cumulative weight crosses each 1/n of the total (every chunk non-empty).
    cum = np.cumsum(weights) if total > 0 else np.arange(1, len(values) + 1, dtype=float)
    share = cum[-1] / n
    labels = np.minimum((cum - weights / 2) // share, n - 1).astype(int)
    out: list[list[int]] = []
    for start, end in _runs(labels):
        out.append(values[start:end])
    return out


def _valid_rows(
    lake: Lake,
    state_paths: list[str],
    label_paths: list[str],
    column: str,
    values: list[int],
    columns: list[str],
) -> pa.Table:
    """The state's valid rows whose ``column`` is one of ``values`` (row groups pruned), with
    the labels applied."""
    wanted = [(column, "in", values)]
    if not label_paths:
        # No labels: the buckets the segments recorded are current; read only valid rows.
        table = lake.read_tables(
            state_paths, columns=columns, filters=[("bucket", "==", "valid"), *wanted]
        )
        return table.cast(pa.schema([_SEGMENT_SCHEMA.field(c) for c in table.column_names]))
    read = list(dict.fromkeys([*columns, *_KEY, "bucket"]))
    table = lake.read_tables(state_paths, columns=read, filters=wanted)
    table = table.cast(pa.schema([_SEGMENT_SCHEMA.field(c) for c in table.column_names]))
    labels = lake.read_tables(label_paths, filters=wanted)
    table = _relabel(table, labels.select(_LABELS_SCHEMA.names).cast(_LABELS_SCHEMA))
    return table.filter(pc.equal(table["bucket"], "valid")).select(columns)


def _sums(rows: pa.Table, group: list[str], schema: pa.Schema) -> pa.Table:
    """Exact sums of state rows per group: ``n``, ``units``, ``amount_e4``."""
    sums = rows.group_by(group, use_threads=False).aggregate(
        [([], "count_all"), ("quantity", "sum"), ("amount_e4", "sum")]
    )
    return pa.table(
        {
            **{c: sums[c] for c in group},
            "n": sums["count_all"].cast(pa.int64()),
            "units": sums["quantity_sum"].cast(pa.int64()),
            "amount_e4": sums["amount_e4_sum"].cast(pa.int64()),
        },
        schema=schema,
    )


def _aggregate_table(
    sums: pa.Table, computed_at: datetime, schema: pa.Schema, sort: list[tuple[str, ...]]
) -> pa.Table:
    """An aggregate partition's rows (``schema``) of its exact sums, sorted."""
    group = [c for c in sums.column_names if c not in _MEASURES]
    return pa.table(
        {
            **{c: sums[c].cast(pa.date32()) if c in _DATE_COLUMNS else sums[c] for c in group},
            "n_sales": sums["n"],
            "units": sums["units"],
            "revenue": _money_array(sums["amount_e4"].to_numpy()),
            "_revenue_e4": sums["amount_e4"],
            "_computed_at": pa.repeat(pa.scalar(computed_at, TS_UTC), sums.num_rows),
        },
        schema=schema,
    ).sort_by(sort)


def _sums_of_partition(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The exact sums an aggregate partition file was written from."""
    group = [c for c in schema.names if c not in _MEASURES]
    return pa.table(
        {
            **{c: table[c].cast(pa.int32()) if c in _DATE_COLUMNS else table[c] for c in group},
            "n": table["n_sales"],
            "units": table["units"],
            "amount_e4": table["_revenue_e4"],
        },
        schema=schema,
    )


def _combined_sums(parts: list[pa.Table], group: list[str]) -> pa.Table:
    """The sums of several parts per group (a group missing from a part adds nothing)."""
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts)
    sums = table.group_by(group, use_threads=False).aggregate([(c, "sum") for c in _MEASURES])
    return pa.table(
        {**{c: sums[c] for c in group}, **{c: sums[f"{c}_sum"] for c in _MEASURES}}
    ).cast(table.schema)


def _updated_sums(written: pa.Table, changes: pa.Table, group: list[str]) -> pa.Table:
    """``written`` (one row per group) plus ``changes``, as :func:`_combined_sums` gives them
    (in another order), grouping again only the written rows a change may touch.

    A written row is touched only if each of its group columns holds a value of the changes'
    (nulls match nulls, like the grouping): a superset of the rows whose group changes, so
    the others are kept as they are. A new day changes a few hundred of the 200,000 customer
    rows of its month: grouping them all again was most of the aggregate step of a day.
    """
    if not changes.num_rows:
        return written
    touched = pa.array(np.ones(written.num_rows, dtype=bool))
    for c in group:
        values = pc.unique(changes[c])
        touched = pc.and_(touched, pc.is_in(written[c], value_set=values, skip_nulls=False))
    regrouped = _combined_sums([written.filter(touched), changes], group)
    return pa.concat_tables([written.filter(pc.invert(touched)), regrouped])


def _negated(sums: pa.Table) -> pa.Table:
    """Sums to subtract: the same groups with their counts and amounts negated."""
    for c in _MEASURES:
        sums = sums.set_column(sums.schema.get_field_index(c), c, pc.negate(sums[c]))
    return sums


def _write_split(lake: Lake, table: pa.Table, column: str, zone: str, values: list[int]) -> None:
    """One file per value of ``column`` (date32), an empty one for a value without rows."""
    keys = table.column(column).cast(pa.int32()).to_numpy()
    slices = {int(keys[start]): table.slice(start, end - start) for start, end in _runs(keys)}
    _write_partitions(
        lake,
        {_partition_path(zone, column, v): slices.get(v, table.slice(0, 0)) for v in values},
    )


def _partition_path(zone: str, column: str, value: int) -> str:
    del column  # the contract's layout knows each table's partition column
    return partition_path(zone, _days_to_date(value).isoformat())


class _Aggregate(NamedTuple):
    zone: str
    group: list[str]
    sums_schema: pa.Schema
    schema: pa.Schema
    sort: list[tuple[str, ...]]

    @property
    def columns(self) -> list[str]:
        """The state columns read (rows are counted, not their wide sale_id)."""
        return [*self.group, "quantity", "amount_e4"]

    def sums(self, rows: pa.Table) -> pa.Table:
        return _sums(rows, self.group, self.sums_schema)

    def table(self, sums: pa.Table, computed_at: datetime) -> pa.Table:
        return _aggregate_table(sums, computed_at, self.schema, self.sort)

    def sums_of_partition(self, table: pa.Table) -> pa.Table:
        return _sums_of_partition(table, self.sums_schema)


#: Per partition column: the zone it partitions and how its rows are computed.
_AGGREGATES: dict[str, _Aggregate] = {
    "sale_date": _Aggregate(
        "daily_sales",
        DAILY_GROUP,
        _DAILY_SUMS,
        DAILY_SCHEMA,
        [(c, "ascending") for c in DAILY_GROUP],
    ),
    "sale_month": _Aggregate(
        "customer_monthly",
        MONTHLY_GROUP,
        _MONTHLY_SUMS,
        CUSTOMER_MONTHLY_SCHEMA,
        [("sale_month", "ascending"), ("customer_id", "ascending", "at_start")],
    ),
}


def _written_sums(lake: Lake, agg: _Aggregate, column: str, value: int) -> pa.Table | None:
    """The exact sums of a value's partition as the last committed run wrote it; None when
    there is no file, or one written before the exact sums were kept (``_revenue_e4``)."""
    rel = _partition_path(agg.zone, column, value)
    if not lake.exists(rel):
        return None
    table = lake.read_table(rel)
    if "_revenue_e4" not in table.column_names:
        return None
    return agg.sums_of_partition(table)


def _aggregate_partitions(
    values: list[int],
    column: str,
    lake_url: str,
    storage_options: dict | None,
    state_paths: list[str],
    label_paths: list[str],
    computed_at: datetime,
    changes: pa.Table | None = None,
) -> tuple[int, int]:
    """Aggregate the valid rows of some sale dates (``column`` ``sale_date``) or months
    (``sale_month``) and rewrite their ``daily_sales`` / ``customer_monthly`` partitions.

    Every value gets its file, an empty one when it has no valid rows any more; with no state
    files at all, only empty files are written.

    With ``changes`` (per group, the exact sums of the valid rows this run added minus those
    it removed), a value whose partition file holds its exact sums is not read from the state:
    its new sums are the file's plus the changes (a new day costs what it changes, not what
    its month holds). The others are aggregated from the state, and so is a value whose file
    does not add up with the changes (a count below zero: the file is not what the state
    held).

    Returns:
        The aggregate rows written, and how many of the values were updated by difference.
    """
    agg = _AGGREGATES[column]
    lake = Lake(lake_url, storage_options)
    parts: list[pa.Table] = []
    to_read = list(values)
    updated: list[int] = []
    if changes is not None:
        written = {v: _written_sums(lake, agg, column, v) for v in values}
        candidates = [v for v in values if written[v] is not None]
        if candidates:
            mine = changes.filter(_mask_in(changes[column], pa.array(candidates, pa.int32())))
            sums = _updated_sums(
                pa.concat_tables([written[v] for v in candidates]), mine, agg.group
            )
            broken = pc.unique(sums.filter(pc.less(sums["n"], 0))[column]).to_pylist()
            if broken:
                logger.warning(
                    "%s partition(s) %s do not add up with this run's changes: aggregated "
                    "again from the state",
                    agg.zone,
                    [_days_to_date(v).isoformat() for v in broken],
                )
            updated = sorted(set(candidates) - set(broken))
            parts.append(
                sums.filter(
                    pc.and_(
                        pc.greater(sums["n"], 0),
                        _mask_in(sums[column], pa.array(updated, pa.int32())),
                    )
                )
            )
        to_read = sorted(set(values) - set(updated))
    if to_read:
        rows = (
            _valid_rows(lake, state_paths, label_paths, column, to_read, agg.columns)
            if state_paths
            else _STATE_SCHEMA.empty_table()
        )
        parts.append(agg.sums(rows))
    table = agg.table(_combined_sums(parts, agg.group), computed_at)
    _write_split(lake, table, column, agg.zone, values)
    return table.num_rows, len(updated)


def _write_quarantine(lake: Lake, staging: str, changed_files: list[str]) -> int:
    """Replace the quarantine file of every changed delivered file by its latest version's rows.

    The staged quarantined rows (about 1% of the rows) are read at once, sorted by file and
    line, and written as one file per delivered file; a changed file without quarantined rows
    loses its old quarantine file.

    Returns:
        The quarantined rows written.
    """
    staged = f"{staging}/quarantine"
    slices: dict[str, pa.Table] = {}
    if lake.exists(staged):
        table = lake.read_table(staged).select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
        table = table.sort_by([("_file_name", "ascending"), ("_line_number", "ascending")])
        names = table.column("_file_name").to_numpy(zero_copy_only=False)
        slices = {str(names[a]): table.slice(a, b - a) for a, b in _runs(names)}
    writes = {
        f"{QUARANTINE_ROWS}/{file_key(name)}.parquet": slices[name]
        for name in changed_files
        if name in slices
    }
    _write_partitions(lake, writes)
    gone = [n for n in changed_files if n not in slices]
    list(_WRITERS.map(lake.delete, [f"{QUARANTINE_ROWS}/{file_key(n)}.parquet" for n in gone]))
    return sum(t.num_rows for t in writes.values())


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------

FILES_DTYPES: dict[str, str] = {
    "file_name": "str",
    "delivery_day": "int32",
    "file_modified_at_us": "int64",
    "status": "str",
    "failure_reason": "str",
    "rows_in": "int64",
    "rows_quarantined": "int64",
    "quarantined_by_reason": "str",
}
COUNTS_DTYPES: dict[str, str] = {
    "h": "int32",
    "file_name": "str",
    "bucket": "str",
    "n": "int64",
    "units": "int64",
    "amount_e4": "int64",
}
CONSUMED_DTYPES: dict[str, str] = {"path": "str", "size": "int64"}


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _load(lake: Lake, rel: str, dtypes: dict[str, str]) -> pd.DataFrame:
    if not lake.exists(rel):
        return _empty(dtypes)
    return lake.read_table(rel).to_pandas().astype(dtypes)[list(dtypes)]


def _save(lake: Lake, rel: str, frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    frame = frame[list(dtypes)].astype(dtypes).reset_index(drop=True)
    lake.write_table(rel, pa.Table.from_pandas(frame, preserve_index=False))


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def _completed_loads(lake: Lake) -> set[str] | None:
    """Load ids of the drop -> lake loads that completed (None: the lake has no dlt record)."""
    if not lake.exists(RAW_LOADS):
        return None
    return completed_load_ids([path for path, _ in lake.list_files(RAW_LOADS, suffix=".jsonl")])


def _delivered_sales_files(lake: Lake, loads: set[str] | None) -> pd.DataFrame:
    """Every sales file version in ``raw/delivered_files`` (completed loads) with its status."""
    files = [p for p, _ in lake.list_files(RAW_DELIVERED) if is_of_completed_load(p, loads)]
    cols = ["file_name", "kind", "delivery_date", "file_modified_at", "status", "failure_reason"]
    frames = []
    for path in files:
        with lake.fs.open(lake.path(path), "rb") as fh:
            pf = pq.ParquetFile(fh)
            present = [c for c in cols if c in pf.schema_arrow.names]
            table = pf.read(columns=present)
        for col in cols:
            if col not in table.column_names:
                table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
        names = pd.Series(table.column("file_name").to_pylist(), dtype="str")
        kind = pd.Series(table.column("kind").to_pylist(), dtype="str")
        frame = pd.DataFrame(
            {
                "file_name": names,
                "kind": kind,
                "file_modified_at_us": _micros(table.column("file_modified_at")),
                "delivery_day": _days(table.column("delivery_date"), names),
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
        return _empty(
            {
                "file_name": "str",
                "file_modified_at_us": "int64",
                "delivery_day": "int32",
                "status": "str",
                "failure_reason": "str",
            }
        )
    out = pd.concat(frames, ignore_index=True).drop(columns=["kind"])
    out["status"] = np.where(out["status"] == "failed", "failed", "loaded")
    return out.drop_duplicates(["file_name", "file_modified_at_us"], keep="last")


def _row_group_sizes(lake: Lake, paths: list[str]) -> list[tuple[str, list[int]]]:
    """Each raw Parquet file with the rows of each of its row groups (from its footer)."""
    sizes = []
    for path in paths:
        with lake.fs.open(lake.path(path), "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        sizes.append((path, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]))
    return sizes


def _pieces(metas: list[tuple[str, list[int]]], slots: int = 1) -> list[tuple[int, str, list[int]]]:
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
    pieces: list[tuple[int, str, list[int]]] = []
    done = 0
    for path, groups in metas:
        group: list[int] = []
        current = -1
        for i, n in enumerate(groups):
            # The piece a row group falls in, by the position of its middle row.
            number = min(wanted - 1, (done + n // 2) * wanted // total)
            if group and number != current:
                pieces.append((len(pieces), path, group))
                group = []
            group.append(i)
            current = number
            done += n
        if group:
            pieces.append((len(pieces), path, group))
    return pieces


BUCKET_TASK_ROWS = 250_000  # rows a task of several hash buckets decides at most (about)


def _bucket_groups(
    hs: list[int],
    *,
    staged_rows: int,
    n_buckets: int,
    changed_rows: pd.DataFrame,
    slots: int,
) -> list[list[int]]:
    """The affected hash buckets split into tasks: contiguous groups of about
    BUCKET_TASK_ROWS rows to decide each, and at least one group per worker slot while there
    are buckets enough.

    A bucket's rows are estimated as its share of the staged valid rows (sale_ids hash
    evenly) plus the state rows of the changed files it holds (``changed_rows``: their
    bucket counts). A large run gets a task per bucket; a small one (a new day) a few tasks,
    so that the per-task costs are paid a few times instead of once per bucket.
    """
    if not hs:
        return []
    changed_by_h = changed_rows.groupby("h")["n"].sum() if len(changed_rows) else pd.Series()
    weights = np.array(
        [staged_rows / max(n_buckets, 1) + float(changed_by_h.get(h, 0)) for h in hs]
    )
    total = float(weights.sum())
    n = min(len(hs), max(slots, int(np.ceil(total / BUCKET_TASK_ROWS))))
    if total <= 0:
        return [part.tolist() for part in np.array_split(np.asarray(hs), n)]
    # Cut where the cumulative weight crosses each 1/n of the total (no empty group).
    cumulative = np.cumsum(weights)
    labels = np.minimum((cumulative - weights / 2) // (total / n), n - 1).astype(int)
    return [hs[start:end] for start, end in _runs(labels)]


def _slots(client: Client) -> int:
    """Worker threads of the cluster (tasks that can run at once)."""
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _latest_versions(
    delivered: pd.DataFrame, raw_versions: pd.DataFrame, known: pd.DataFrame
) -> pd.DataFrame:
    """The latest version of every sales file: file_name, mtime, delivery day, status."""
    raw = raw_versions.assign(status="loaded", failure_reason=None)
    old = known[
        ["file_name", "file_modified_at_us", "delivery_day", "status", "failure_reason"]
    ].assign(status=lambda f: np.where(f["status"] == "failed", "failed", "loaded"))
    cols = ["file_name", "file_modified_at_us", "delivery_day", "status", "failure_reason"]
    # Priority for the same version: what delivered_files says, then raw rows, then the state.
    frames = [
        delivered[cols].assign(_p=0),
        raw[cols].assign(_p=1),
        old[cols].assign(_p=2),
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _empty(
            {
                "file_name": "str",
                "file_modified_at_us": "int64",
                "delivery_day": "int32",
                "status": "str",
                "failure_reason": "str",
            }
        )
    allv = pd.concat(frames, ignore_index=True)
    allv = allv.sort_values(
        ["file_name", "file_modified_at_us", "_p"], ascending=[True, False, True]
    )
    latest = allv.drop_duplicates("file_name", keep="first").drop(columns="_p")
    return latest.astype(
        {"file_name": "str", "file_modified_at_us": "int64", "delivery_day": "int32"}
    ).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


#: Writes many small partition files at once (Parquet encoding and I/O release the GIL).
#: One pool for the process, its threads started once: tasks do not start threads (see
#: ``cluster.py`` on the deadlock that starting threads under the workers' profiler risks).
_WRITERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lake-writer")


def _write_partitions(lake: Lake, tables: dict[str, pa.Table]) -> None:
    """Write many small partition files at once, in the shared writer threads."""
    list(_WRITERS.map(lambda item: lake.write_table(*item), tables.items()))


def _file_quality(files: pd.DataFrame, counts: pd.DataFrame) -> list[FileQuality]:
    per_file: dict[str, dict[str, tuple[int, int, int]]] = {}
    if not counts.empty:
        summed = counts.groupby(["file_name", "bucket"], as_index=False)[
            ["n", "units", "amount_e4"]
        ].sum()
        for r in summed.itertuples(index=False):
            per_file.setdefault(str(r.file_name), {})[str(r.bucket)] = (
                int(r.n),
                int(r.units),
                int(r.amount_e4),
            )
    out: list[FileQuality] = []
    for r in files.sort_values("file_name").itertuples(index=False):
        b = per_file.get(str(r.file_name), {})
        failed = r.status == "failed"
        n_valid, units, amount = b.get("valid", (0, 0, 0))
        n_dup = b.get("duplicate", (0, 0, 0))[0]
        n_sup = b.get("superseded", (0, 0, 0))[0]
        rows_in = int(r.rows_in)
        ratio = n_dup / rows_in if rows_in else 0.0
        out.append(
            FileQuality(
                file_name=str(r.file_name),
                delivery_date=_days_to_date(int(r.delivery_day)) if r.delivery_day else None,
                file_modified_at=datetime(1970, 1, 1, tzinfo=UTC)
                + timedelta(microseconds=int(r.file_modified_at_us)),
                status="failed" if failed else "processed",
                failure_reason=None if pd.isna(r.failure_reason) else str(r.failure_reason),
                rows_in=rows_in,
                rows_valid=n_valid,
                rows_duplicate=n_dup,
                rows_superseded=n_sup,
                rows_quarantined=int(r.rows_quarantined),
                rows_quarantined_by_reason=json.loads(r.quarantined_by_reason or "{}"),
                duplicate_ratio=ratio,
                is_alert=ratio > 0.5,
                units_valid=units,
                revenue_valid=_revenue(amount),
            )
        )
    return out


def _file_quality_table(rows: list[FileQuality], computed_at: datetime) -> pa.Table:
    return pa.table(
        {
            "file_name": [r.file_name for r in rows],
            "delivery_date": [r.delivery_date for r in rows],
            "file_modified_at": [r.file_modified_at for r in rows],
            "status": [r.status for r in rows],
            "failure_reason": [r.failure_reason for r in rows],
            "rows_in": [r.rows_in for r in rows],
            "rows_valid": [r.rows_valid for r in rows],
            "rows_duplicate": [r.rows_duplicate for r in rows],
            "rows_superseded": [r.rows_superseded for r in rows],
            "rows_quarantined": [r.rows_quarantined for r in rows],
            "rows_quarantined_by_reason": [
                json.dumps(r.rows_quarantined_by_reason, sort_keys=True) for r in rows
            ],
            "duplicate_ratio": [r.duplicate_ratio for r in rows],
            "is_alert": [r.is_alert for r in rows],
            "units_valid": [r.units_valid for r in rows],
            "revenue_valid": [r.revenue_valid for r in rows],
            "_computed_at": [computed_at] * len(rows),
        },
        schema=FILE_QUALITY_SCHEMA,
    )


def _result(
    quality: list[FileQuality],
    dates: list[int],
    months: list[int],
    processed: list[str],
    did_work: bool,
    started: float,
    step_seconds: dict[str, float] | None = None,
) -> PreprocessResult:
    totals = {k: 0 for k in ("rows_in", "rows_valid", "rows_duplicate", "rows_superseded")}
    totals["rows_quarantined"] = 0
    by_reason: dict[str, int] = {}
    for q in quality:
        totals["rows_in"] += q.rows_in
        totals["rows_valid"] += q.rows_valid
        totals["rows_duplicate"] += q.rows_duplicate
        totals["rows_superseded"] += q.rows_superseded
        totals["rows_quarantined"] += q.rows_quarantined
        for reason, n in q.rows_quarantined_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    return PreprocessResult(
        file_quality=quality,
        totals=totals,
        quarantined_by_reason=dict(sorted(by_reason.items())),
        affected_sale_dates=[_days_to_date(d) for d in dates],
        affected_sale_months=[_days_to_date(m) for m in months],
        files_processed=processed,
        did_work=did_work,
        duration_seconds=time.monotonic() - started,
        failed_files=[q.file_name for q in quality if q.status == "failed"],
        step_seconds=dict(step_seconds or {}),
    )


_LEGACY_ROWS = re.compile(r"/rows/h=(\d+)\.parquet$")  # format 1: one rows file per bucket


def _collect_garbage(lake: Lake, manifest: dict[int, dict[str, Any]]) -> None:
    """Delete the segment and labels files that ``segments.json`` does not name (replaced by
    a compaction, or left by a run that failed before its commit)."""
    live = set()
    for h, entry in manifest.items():
        segments, labels = _bucket_paths(h, entry)
        live.update(segments)
        if labels:
            live.add(labels)
    for zone in ("rows", "labels"):
        for rel, _ in lake.list_files(f"{STATE}/{zone}"):
            if rel not in live:
                lake.delete(rel)


def _migrate_state(lake: Lake, meta: dict[str, Any]) -> dict[str, Any]:
    """Bring an older state to the current format, once: format 1 (one rows file per bucket)
    into segments; format 2 (segments without ``sale_key``) compacted into one segment per
    bucket with its keys.

    The manifest and ``meta.json`` are written before the old files are deleted: a failure
    half-way leaves either the old state whole or the new one named (the old files are then
    garbage, collected by the next run).
    """
    if int(meta.get("format", 1)) == 2:
        return _add_sale_keys(lake, meta)
    legacy = {
        p: int(m.group(1))
        for p, _ in lake.list_files(f"{STATE}/rows")
        if (m := _LEGACY_ROWS.search(p))
    }
    logger.info("Converting the preprocessing state to segments (%d bucket file(s))", len(legacy))
    segment = "000000-v1"
    manifest: dict[int, dict[str, Any]] = {}
    for rel, h in legacy.items():
        rows = _with_segment(_state_table(lake, rel), segment)
        lake.write_table(_segment_path(STATE, h, segment), rows, row_group_size=STATE_ROW_GROUP)
        manifest[h] = {"segments": [segment], "labels": None}
    _write_manifest(lake, manifest)
    meta = {**meta, "format": STATE_FORMAT}
    lake.write_json(f"{STATE}/meta.json", meta)
    for rel in legacy:
        lake.delete(rel)
    return meta


def _add_sale_keys(lake: Lake, meta: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: each bucket compacted into one segment whose rows have their sale_key
    (labels folded in, gone rows dropped, as a compaction does)."""
    old = _read_manifest(lake)
    logger.info("Adding sale keys to the preprocessing state (%d bucket(s)), once", len(old))
    segment = "000000-v3"
    manifest: dict[int, dict[str, Any]] = {}
    for h, entry in old.items():
        segment_paths, labels_path = _bucket_paths(h, entry)
        rows = _current_rows(lake, segment_paths, _read_labels(lake, labels_path))
        if rows.num_rows:
            lake.write_table(
                _segment_path(STATE, h, segment),
                _sorted_rows(_with_segment(rows, segment)),
                row_group_size=STATE_ROW_GROUP,
            )
            manifest[h] = {"segments": [segment], "labels": None}
    _write_manifest(lake, manifest)
    meta = {**meta, "format": STATE_FORMAT}
    lake.write_json(f"{STATE}/meta.json", meta)
    _collect_garbage(lake, manifest)
    return meta


def _wait(client: Client, futures: Any, show_progress: bool) -> Any:
    if show_progress:
        progress(futures)
    return client.gather(futures)


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------


def preprocess_sales(
    lake_url: str,
    *,
    timezone: str = "Europe/Moscow",
    storage_options: dict | None = None,
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    show_progress: bool = True,
    n_hash_partitions: int = 32,
    max_segments: int = MAX_SEGMENTS,
    max_label_ratio: float = COMPACT_LABELS,
    processes: bool = False,
) -> PreprocessResult:
    """Validate, de-duplicate and pre-aggregate the new sales in the lake.

    Reads ``raw/sales`` and ``raw/delivered_files``; writes ``preprocessed/daily_sales``,
    ``preprocessed/customer_monthly`` (only the affected partitions), ``preprocessed/file_quality``,
    ``quarantine/sales_rows`` and the stage's state under ``preprocessed/_state``. A run with
    nothing new returns at once and writes nothing.

    Args:
        lake_url: The lake root, any fsspec URL.
        timezone: The business time zone for ``sale_date`` / ``sale_month``. It is fixed when
            the state is created; changing it needs a fresh ``preprocessed/`` zone.
        storage_options: fsspec options for the lake (S3 credentials and endpoint...).
        scheduler_address: An existing Dask scheduler; None starts a local cluster.
        n_workers: Local workers, threads or processes (default: sized to the machine).
        show_progress: Show Dask progress bars for the long steps (log lines always).
        n_hash_partitions: sale_id hash buckets of the state (fixed when the state is created;
            raise it for far more than ~20 million sales).
        max_segments: Segments a state bucket may have before a run compacts it into one
            (each run that adds rows to a bucket adds a segment; 0 compacts at every run).
        max_label_ratio: Labels (rows re-decided or gone since the bucket's segments were
            written) per row a bucket may have before a run compacts it.
        processes: Run a local cluster's workers as processes instead of threads of this
            process. Threads are the default: the stage's work is Arrow and NumPy, which release
            the GIL, and threads start at once and pass tables without copies (on 2 cores they
            measured 13-25% faster than processes at 1 and 10 million sales). Ignored with
            ``scheduler_address``.

    Returns:
        The per-file quality rows, totals per bucket, quarantine counts by reason, the affected
        sale dates and months, the files processed, whether any work was done, the duration.

    Raises:
        ValueError: When the existing state was built with another time zone or bucket count.
    """
    started = time.monotonic()
    laps = _Laps()
    lake = Lake(lake_url, storage_options)
    meta = lake.read_json(f"{STATE}/meta.json")
    if meta is not None:
        if meta.get("timezone") != timezone:
            raise ValueError(
                f"The preprocessed zone was built for time zone {meta.get('timezone')!r}, not "
                f"{timezone!r}; clear {lake_url}/{PREPROCESSED} to rebuild it."
            )
        n_hash_partitions = int(meta["n_hash_partitions"])
        if int(meta.get("format", 1)) < STATE_FORMAT:
            meta = _migrate_state(lake, meta)

    files_state = _load(lake, f"{STATE}/files.parquet", FILES_DTYPES)
    counts_state = _load(lake, f"{STATE}/bucket_counts.parquet", COUNTS_DTYPES)
    consumed = _load(lake, f"{STATE}/consumed.parquet", CONSUMED_DTYPES)

    # 1. Plan ------------------------------------------------------------------------------
    loads = _completed_loads(lake)
    raw_files = [(p, s) for p, s in lake.list_files(RAW_SALES) if is_of_completed_load(p, loads)]
    seen = set(zip(consumed["path"], consumed["size"], strict=True))
    new_raw = [p for p, s in raw_files if (p, s) not in seen]
    delivered = _delivered_sales_files(lake, loads)
    logger.info(
        "Sales in the lake: %d raw file(s), %d new; %d delivered sales file version(s)",
        len(raw_files),
        len(new_raw),
        len(delivered),
    )
    known = files_state.set_index("file_name")
    pre_latest = _latest_versions(delivered, VERSIONS_META, files_state)
    pre_changed = [
        r.file_name
        for r in pre_latest.itertuples(index=False)
        if r.file_name not in known.index
        or int(known.at[r.file_name, "file_modified_at_us"]) != int(r.file_modified_at_us)
        or str(known.at[r.file_name, "status"]) != r.status
    ]
    if not new_raw and not pre_changed:
        logger.info("Nothing new in the lake: no work to do")
        quality = _file_quality(files_state, counts_state)
        return _result(quality, [], [], [], False, started)

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    lake.delete(f"{STATE}/staging", recursive=True)  # what a failed earlier run left
    staging = f"{STATE}/staging/{run_id}"
    computed_at = datetime.now(UTC)
    manifest = _read_manifest(lake)
    # The partitions a failed earlier run may have rewritten from a state it never committed:
    # aggregated again from the state by this run, never updated by difference.
    dirty = {column: set(v) for column, v in (lake.read_json(DIRTY) or {}).items()}

    metas = _row_group_sizes(lake, new_raw)
    laps.lap("plan")
    with dask_client(scheduler_address, n_workers=n_workers, processes=processes) as client:
        laps.lap("cluster")
        pieces = _pieces(metas, _slots(client))
        raw_versions = VERSIONS_META.copy()
        if pieces:
            logger.info("Reading file versions from %d piece(s) of new raw files", len(pieces))
            versions_ddf = dd.from_map(
                _versions_of_piece, pieces, args=(lake_url, storage_options), meta=VERSIONS_META
            )
            raw_versions = _wait(client, client.compute(versions_ddf), show_progress)
            raw_versions = (
                raw_versions.groupby(["file_name", "file_modified_at_us"], as_index=False)
                .agg(delivery_day=("delivery_day", "min"), n=("n", "sum"))
                .astype(VERSIONS_META.dtypes.to_dict())
            )
        latest = _latest_versions(delivered, raw_versions, files_state)
        changed = latest[
            [
                r.file_name not in known.index
                or int(known.at[r.file_name, "file_modified_at_us"]) != int(r.file_modified_at_us)
                or str(known.at[r.file_name, "status"]) != r.status
                for r in latest.itertuples(index=False)
            ]
        ]
        changed_names = sorted(changed["file_name"])
        to_validate = changed[changed["status"] == "loaded"]
        wanted = list(
            zip(
                to_validate["file_name"],
                to_validate["file_modified_at_us"].astype(int),
                strict=True,
            )
        )
        logger.info(
            "%d changed sales file(s) (%d to validate, %d failed)",
            len(changed_names),
            len(wanted),
            len(changed_names) - len(wanted),
        )

        # 2. Validate -------------------------------------------------------------------
        reason_counts = COUNTS_META.copy()
        if wanted and pieces:
            logger.info("Validating %d raw piece(s)", len(pieces))
            counts_ddf = dd.from_map(
                _validate_piece,
                pieces,
                args=(lake_url, storage_options, wanted, timezone, n_hash_partitions, staging),
                meta=COUNTS_META,
            )
            reason_counts = _wait(client, client.compute(counts_ddf), show_progress)
            reason_counts = reason_counts.groupby(["file_name", "reason"], as_index=False)[
                "n"
            ].sum()

        empty = sorted(set(to_validate["file_name"]) - set(reason_counts["file_name"]))
        if empty:
            logger.warning(
                "No rows found for the latest version of %d file(s): %s", len(empty), empty
            )

        laps.lap("validate")

        # 3. Buckets --------------------------------------------------------------------
        staged_h = {
            int(name.split("=", 1)[1])
            for name in lake.list_dirs(f"{staging}/valid")
            if name.startswith("h=")
        }
        holding_changed = set(
            counts_state.loc[counts_state["file_name"].isin(changed_names), "h"].astype(int)
        )
        hs = sorted(staged_h | holding_changed)
        groups = _bucket_groups(
            hs,
            staged_rows=int(reason_counts.loc[reason_counts["reason"] == "", "n"].sum()),
            n_buckets=n_hash_partitions,
            changed_rows=counts_state[counts_state["file_name"].isin(changed_names)],
            slots=_slots(client),
        )
        logger.info(
            "Recomputing duplicates and supersessions in %d hash bucket(s), %d task(s)",
            len(hs),
            len(groups),
        )
        done: list[dict[str, Any]] = []
        if groups:
            futures = [
                client.submit(
                    _update_hash_buckets,
                    group,
                    lake_url,
                    storage_options,
                    staging,
                    changed_names,
                    run_id,
                    {h: manifest[h] for h in group if h in manifest},
                    list(
                        counts_state[counts_state["h"].isin(group)][list(COUNTS_DTYPES)].itertuples(
                            index=False, name=None
                        )
                    ),
                    max_segments,
                    max_label_ratio,
                    bool(manifest),  # what the run changes in the aggregates (none yet: no)
                    pure=False,
                )
                for group in groups
            ]
            done = _wait(client, futures, show_progress)
        results = [b for task in done for b in task["buckets"]]
        dates = sorted({d for task in done for d in task["dates"]} | dirty.get("sale_date", set()))
        months = sorted(
            {m for task in done for m in task["months"]} | dirty.get("sale_month", set())
        )
        affected = {"sale_date": dates, "sale_month": months}
        # What the valid rows added and removed change the aggregates by (not for a first
        # run: no aggregates yet); the dirty values are aggregated again regardless.
        changes = (
            {
                column: pa.concat_tables([task["changes"][column] for task in done])
                for column in affected
            }
            if done and all(task["changes"] is not None for task in done)
            else None
        )
        new_counts = pd.DataFrame(
            [c for r in results for c in r["counts"]], columns=list(COUNTS_DTYPES)
        )
        counts_state = pd.concat(
            [counts_state[~counts_state["h"].isin(hs)], new_counts], ignore_index=True
        ).astype(COUNTS_DTYPES)

        laps.lap("buckets")

        # 4. Aggregate ------------------------------------------------------------------
        # The valid rows as they are after this run: the live segments and labels of every
        # bucket, this run's still in its staging folder.
        after = {**manifest, **{r["h"]: r["live"] for r in results}}
        state_paths: list[str] = []
        label_paths: list[str] = []
        for h, live in sorted(after.items()):
            segments, labels = _bucket_paths(h, live, run_id, staging)
            state_paths += segments
            label_paths += [labels] if labels else []
        compacted = sum(1 for r in results if r["compacted"])
        if compacted:
            logger.info("Compacted %d hash bucket(s) into one segment each", compacted)
        # Before any partition is rewritten: which ones, in case this run fails half-way.
        lake.write_json(DIRTY, affected)
        # One task per range of values. With this run's changes, a task updates a partition
        # by difference (its file plus the changes); otherwise, and for the dirty values, it
        # reads the values' row groups of every bucket file and aggregates them again. The
        # months first: a month reads about 30 dates' rows, its task is the longest, and the
        # dates' tasks fill the other workers meanwhile.
        slots = _slots(client)
        step = {"sale_month": 30.44, "sale_date": 1.0}
        min_chunks = {"sale_month": slots, "sale_date": 2 * slots}
        ranges = _row_group_ranges(lake, state_paths, ["sale_date", "sale_month"])
        work: list[tuple[list[int], str, pa.Table | None]] = []
        for column in ("sale_month", "sale_date"):
            values = affected[column]
            if changes is not None:
                clean = sorted(set(values) - dirty.get(column, set()))
                values = sorted(set(values) & dirty.get(column, set()))
                chunks = _chunks(clean, ranges[column], step[column], slots)
                work += [(chunk, column, changes[column]) for chunk in chunks]
            chunks = _chunks(values, ranges[column], step[column], min_chunks[column])
            work += [(chunk, column, None) for chunk in chunks]
        logger.info(
            "Aggregating %d affected sale date(s) and %d month(s)%s",
            len(dates),
            len(months),
            ", by difference where the partition allows" if changes is not None else "",
        )
        futures = [
            client.submit(
                _aggregate_partitions,
                values,
                column,
                lake_url,
                storage_options,
                state_paths,
                label_paths,
                computed_at,
                column_changes,
                pure=False,
            )
            for values, column, column_changes in work
        ]
        updated = sum(n for _, n in _wait(client, futures, show_progress))
        if changes is not None:
            logger.info(
                "%d of %d partition(s) updated by difference, the others aggregated again",
                updated,
                len(dates) + len(months),
            )
        laps.lap("aggregate")
    laps.lap("cluster")

    # 5. Quarantine, quality, state --------------------------------------------------------
    if changed_names:
        _write_quarantine(lake, staging, changed_names)
    files_state = _updated_files_state(files_state, changed, reason_counts)
    quality = _file_quality(files_state, counts_state)
    lake.write_table(FILE_QUALITY, _file_quality_table(quality, computed_at))
    # Commit: the new segments and labels move into the state, segments.json names them
    # (the switch), then the bookkeeping that says which inputs are done. A failure before
    # the switch leaves the state as it was; after it, before the bookkeeping, the next run
    # takes this run's files as changed again and redoes them (their rows leave first).
    for r in results:
        for rel in r["files"]:
            target = STATE + rel[len(staging) :]
            lake.fs.makedirs(lake.path(target.rsplit("/", 1)[0]), exist_ok=True)
            lake.fs.mv(lake.path(rel), lake.path(target))
    _write_manifest(lake, after)
    _save(lake, f"{STATE}/files.parquet", files_state, FILES_DTYPES)
    _save(lake, f"{STATE}/bucket_counts.parquet", counts_state, COUNTS_DTYPES)
    _save(
        lake,
        f"{STATE}/consumed.parquet",
        pd.DataFrame(raw_files, columns=["path", "size"]),
        CONSUMED_DTYPES,
    )
    if meta is None:
        lake.write_json(
            f"{STATE}/meta.json",
            {"format": STATE_FORMAT, "timezone": timezone, "n_hash_partitions": n_hash_partitions},
        )
    lake.delete(staging, recursive=True)
    lake.delete(DIRTY)
    _collect_garbage(lake, after)
    laps.lap("commit")
    result = _result(quality, dates, months, changed_names, True, started, laps.seconds)
    result.partitions_updated = updated
    logger.info(
        "Preprocessed %d file(s) in %.1f s (%s): %s",
        len(changed_names),
        result.duration_seconds,
        ", ".join(f"{step} {seconds:.1f} s" for step, seconds in laps.seconds.items()),
        result.totals,
    )
    return result


def _updated_files_state(
    files_state: pd.DataFrame, changed: pd.DataFrame, reason_counts: pd.DataFrame
) -> pd.DataFrame:
    """The per-file state after this run: changed files get their new version's counts."""
    rows = []
    for r in changed.itertuples(index=False):
        mine = reason_counts[reason_counts["file_name"] == r.file_name]
        by_reason = {
            str(x.reason): int(x.n) for x in mine.itertuples(index=False) if x.reason != ""
        }
        by_reason = {k: by_reason[k] for k in REASONS if k in by_reason}
        failed = r.status == "failed"
        rows.append(
            {
                "file_name": r.file_name,
                "delivery_day": int(r.delivery_day),
                "file_modified_at_us": int(r.file_modified_at_us),
                "status": "failed" if failed else "loaded",
                "failure_reason": r.failure_reason if failed else None,
                "rows_in": 0 if failed else int(mine["n"].sum()),
                "rows_quarantined": 0 if failed else sum(by_reason.values()),
                "quarantined_by_reason": json.dumps({} if failed else by_reason),
            }
        )
    keep = files_state[~files_state["file_name"].isin(changed["file_name"])]
    new = pd.DataFrame(rows, columns=list(FILES_DTYPES)) if rows else _empty(FILES_DTYPES)
    return pd.concat([keep, new], ignore_index=True).astype(FILES_DTYPES)


__all__ = [
    "BUCKETS",
    "FileQuality",
    "PreprocessResult",
    "file_key",
    "preprocess_sales",
]
