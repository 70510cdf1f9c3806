"""Step 4, aggregate: rewrite exactly the affected partitions of ``daily_sales`` (per sale
date) and ``customer_monthly`` (per sale month); unaffected partitions are not touched.

Every aggregate column is a sum, so an affected partition is its file's exact sums
(``_revenue_e4``) plus the changes the run's de-duplication computed: a new day costs what it
changes, not what its month holds. A partition without a usable file (new, written before the
exact sums were kept, not adding up, or dirty after a failed run) is aggregated from the
state: one task per range of dates (or months) reads only the matching row groups of every
bucket file and aggregates with Arrow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client

from contract.lake import partition_path
from dask_preprocess.arrays import days_to_date, mask_in, runs
from dask_preprocess.cluster import gather, worker_slots
from dask_preprocess.segments import (
    LABEL_KEY,
    LABELS_SCHEMA,
    SEGMENT_SCHEMA,
    STATE_SCHEMA,
    bucket_paths,
    relabel,
)
from dask_preprocess.state import Manifest
from dask_preprocess.sums import AGGREGATES, Aggregate, combined_sums, updated_sums
from dask_preprocess.writers import write_files
from storage import Lake

logger = logging.getLogger(__name__)

AGGREGATE_TASK_ROWS = 400_000  # valid rows an aggregation task reads at most (about)
#: Per partition column: the days between two of its values, and the least tasks to cut its
#: values into (every worker gets work; the dates get more, they fill in beside the months).
_STEP = {"sale_month": 30.44, "sale_date": 1.0}

# --- Cutting the work into tasks --------------------------------------------------------------


def row_group_ranges(
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


def chunks(
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
    return [values[start:end] for start, end in runs(labels)]


# --- A task: some partitions of one aggregate -------------------------------------------------


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
        return table.cast(pa.schema([SEGMENT_SCHEMA.field(c) for c in table.column_names]))
    read = list(dict.fromkeys([*columns, *LABEL_KEY, "bucket"]))
    table = lake.read_tables(state_paths, columns=read, filters=wanted)
    table = table.cast(pa.schema([SEGMENT_SCHEMA.field(c) for c in table.column_names]))
    labels = lake.read_tables(label_paths, filters=wanted)
    table = relabel(table, labels.select(LABELS_SCHEMA.names).cast(LABELS_SCHEMA))
    return table.filter(pc.equal(table["bucket"], "valid")).select(columns)


def _partition_file(agg: Aggregate, value: int) -> str:
    """The partition file of a value (a day number) of an aggregate."""
    return partition_path(agg.zone, days_to_date(value).isoformat())


def _written_sums(lake: Lake, agg: Aggregate, value: int) -> pa.Table | None:
    """The exact sums of a value's partition as the last committed run wrote it; None when
    there is no file, or one written before the exact sums were kept (``_revenue_e4``)."""
    rel = _partition_file(agg, value)
    if not lake.exists(rel):
        return None
    table = lake.read_table(rel)
    if "_revenue_e4" not in table.column_names:
        return None
    return agg.sums_of_partition(table)


def _sums_by_difference(
    lake: Lake, agg: Aggregate, column: str, values: list[int], changes: pa.Table
) -> tuple[pa.Table | None, list[int]]:
    """The new sums of the values whose partition file holds exact sums that add up with
    the changes (no count below zero), and those values."""
    written = {v: _written_sums(lake, agg, v) for v in values}
    candidates = [v for v in values if written[v] is not None]
    if not candidates:
        return None, []
    mine = changes.filter(mask_in(changes[column], pa.array(candidates, pa.int32())))
    sums = updated_sums(pa.concat_tables([written[v] for v in candidates]), mine, agg.group)
    broken = pc.unique(sums.filter(pc.less(sums["n"], 0))[column]).to_pylist()
    if broken:
        logger.warning(
            "%s partition(s) %s do not add up with this run's changes: aggregated "
            "again from the state",
            agg.zone,
            [days_to_date(v).isoformat() for v in broken],
        )
    updated = sorted(set(candidates) - set(broken))
    keep = pc.and_(pc.greater(sums["n"], 0), mask_in(sums[column], pa.array(updated, pa.int32())))
    return sums.filter(keep), updated


def aggregate_partitions(
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
    its new sums are the file's plus the changes. The others are aggregated from the state,
    and so is a value whose file does not add up with the changes (a count below zero: the
    file is not what the state held).

    Returns:
        The aggregate rows written, and how many of the values were updated by difference.
    """
    agg = AGGREGATES[column]
    lake = Lake(lake_url, storage_options)
    parts: list[pa.Table] = []
    to_read = list(values)
    updated: list[int] = []
    if changes is not None:
        sums, updated = _sums_by_difference(lake, agg, column, values, changes)
        if sums is not None:
            parts.append(sums)
        to_read = sorted(set(values) - set(updated))
    if to_read:
        rows = (
            _valid_rows(lake, state_paths, label_paths, column, to_read, agg.columns)
            if state_paths
            else STATE_SCHEMA.empty_table()
        )
        parts.append(agg.sums(rows))
    table = agg.table(combined_sums(parts, agg.group), computed_at)
    # One file per value, an empty one for a value without rows.
    keys = table.column(column).cast(pa.int32()).to_numpy()
    slices = {int(keys[start]): table.slice(start, end - start) for start, end in runs(keys)}
    write_files(lake, {_partition_file(agg, v): slices.get(v, table.slice(0, 0)) for v in values})
    return table.num_rows, len(updated)


# --- The step ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveFiles:
    """Every bucket's current segment and labels files (a run's own still staged)."""

    segments: list[str]
    labels: list[str]


def live_files(manifest: Manifest, run_id: str, staging: str) -> LiveFiles:
    """The files holding the valid rows as they are after a run, from its manifest."""
    segments: list[str] = []
    labels: list[str] = []
    for h, live in sorted(manifest.items()):
        bucket_segments, bucket_labels = bucket_paths(h, live, run_id, staging)
        segments += bucket_segments
        labels += [bucket_labels] if bucket_labels else []
    return LiveFiles(segments, labels)


def aggregate(
    client: Client,
    lake: Lake,
    files: LiveFiles,
    affected: dict[str, list[int]],
    dirty: dict[str, set[int]],
    changes: dict[str, pa.Table] | None,
    *,
    computed_at: datetime,
    show_progress: bool,
) -> int:
    """Rewrite the affected partitions of both aggregates, in tasks of ranges of values.

    With ``changes`` (not for a first run), a task updates a partition by difference;
    otherwise, and for the dirty values, it reads the values' row groups of every bucket file
    and aggregates them again. The months go first: a month reads about 30 dates' rows, its
    task is the longest, and the dates' tasks fill the other workers meanwhile.

    Returns:
        How many partitions were updated by difference.
    """
    slots = worker_slots(client)
    min_chunks = {"sale_month": slots, "sale_date": 2 * slots}
    ranges = row_group_ranges(lake, files.segments, ["sale_date", "sale_month"])
    work: list[tuple[list[int], str, pa.Table | None]] = []
    for column in ("sale_month", "sale_date"):
        values = affected[column]
        if changes is not None:
            clean = sorted(set(values) - dirty.get(column, set()))
            values = sorted(set(values) & dirty.get(column, set()))
            work += [
                (chunk, column, changes[column])
                for chunk in chunks(clean, ranges[column], _STEP[column], slots)
            ]
        chunked = chunks(values, ranges[column], _STEP[column], min_chunks[column])
        work += [(chunk, column, None) for chunk in chunked]
    logger.info(
        "Aggregating %d affected sale date(s) and %d month(s)%s",
        len(affected["sale_date"]),
        len(affected["sale_month"]),
        ", by difference where the partition allows" if changes is not None else "",
    )
    futures = [
        client.submit(
            aggregate_partitions,
            values,
            column,
            lake.url,
            lake.storage_options,
            files.segments,
            files.labels,
            computed_at,
            column_changes,
            pure=False,
        )
        for values, column, column_changes in work
    ]
    updated = sum(n for _, n in gather(client, futures, show_progress))
    if changes is not None:
        logger.info(
            "%d of %d partition(s) updated by difference, the others aggregated again",
            updated,
            len(affected["sale_date"]) + len(affected["sale_month"]),
        )
    return updated
