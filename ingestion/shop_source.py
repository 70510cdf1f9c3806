"""The lake's ``raw/`` shop tables as a dlt source for the warehouse's ``raw_shop`` schema.

New files of ``raw/{stores,products,customers,delivered_files}`` (only files of completed lake
loads) are read once each and merged on their primary keys (dlt's ``delete-insert``: the
tables are small and keyed), on both targets.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource
from fsspec import AbstractFileSystem

from contract.lake import RAW, completed_load_ids, load_id_of_data_file
from contract.warehouse import RAW_SHOP, SHOP_TABLES

from .lake_files import current_load_id, list_files, read_lake_file, with_load_id
from .lake_tables import SHOP_PRIMARY_KEYS
from .results import FailedFile, LoadStats
from .warehouse_files import RowsHandoff

logger = logging.getLogger(__name__)

#: The columns of a shop table's primary key naming the delivery file a row came from.
DELIVERY_COLUMNS: dict[str, tuple[str, str]] = {
    table: ("file_name", "file_modified_at")
    if table == "delivered_files"
    else ("_file_name", "_file_modified_at")
    for table in SHOP_TABLES
}


@dlt.source(name=RAW_SHOP)
def shop_source(
    fs: AbstractFileSystem, lake_root: str, stats: LoadStats, rows: RowsHandoff
) -> list[DltResource]:
    """The lake's ``raw/`` shop tables and ``delivered_files``, new files only.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts for the run's result.
        rows: how the rows reach dlt (the warehouse's way).

    Returns:
        One resource per table of :data:`SHOP_TABLES`.
    """
    raw_root = posixpath.join(lake_root, RAW)
    completed = completed_load_ids(fs.glob(posixpath.join(raw_root, "_dlt_loads", "*.jsonl")))
    return [_shop_resource(t, fs, raw_root, completed, stats, rows) for t in SHOP_TABLES]


def _shop_resource(
    table: str,
    fs: AbstractFileSystem,
    raw_root: str,
    completed: set[str],
    stats: LoadStats,
    rows: RowsHandoff,
) -> DltResource:
    # The staged rows are unique on the primary key (``deduplicated``), so dlt's merge
    # inserts them with a plain INSERT ... SELECT instead of numbering them by key first
    # (ROW_NUMBER() OVER (PARTITION BY <key>)): the key holds the delivery file and line, a
    # lake file is read once, and a delivery file that another lake load read in this run
    # held is left out (``_without_deliveries_read``). Without the window, DuckDB writes
    # the rows in order, in full row groups (on two threads the window left two partial row
    # groups that a later small append made DuckDB merge and rewrite at its checkpoint: up to
    # half a second of the next day's load at 10M).
    @dlt.resource(
        name=table,
        write_disposition={
            "disposition": "merge",
            "strategy": "delete-insert",
            "deduplicated": True,
        },
        primary_key=list(SHOP_PRIMARY_KEYS[table]),
    )
    def read_new_files() -> Iterator[pa.Table]:
        """Read the lake files of completed loads not read before.

        Yields:
            One item per lake file, with this load's ``_dlt_load_id``.
        """
        seen: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
        deliveries: dict[tuple, str] = {}
        load_id = current_load_id()
        for item in list_files(fs, raw_root, f"{table}/*.parquet"):
            rel = item["relative_path"]
            lake_load_id = load_id_of_data_file(rel)
            if lake_load_id is None or lake_load_id not in completed or rel in seen:
                continue
            data = with_load_id(read_lake_file(fs, raw_root, item), load_id)
            data = _without_deliveries_read(
                data, DELIVERY_COLUMNS[table], deliveries, rel, lake_load_id
            )
            seen[rel] = item["modification_date"].isoformat()
            stats.add(table, 1, data.num_rows)
            if table == "delivered_files":
                stats.failed.extend(_failed_files(data))
            if data.num_rows:
                yield rows.table_item(data, table)

    return read_new_files


def _failed_files(delivered: pa.Table) -> list[FailedFile]:
    """The drop files that ``delivered_files`` rows record as failed."""
    if not delivered.num_rows:
        return []
    failed = delivered.filter(pc.equal(delivered["status"], "failed"))
    return [
        FailedFile(r["file_name"], r["kind"], r["failure_reason"] or "")
        for r in failed.select(["file_name", "kind", "failure_reason"]).to_pylist()
    ]


def _without_deliveries_read(
    data: pa.Table, columns: tuple[str, str], read: dict[tuple, str], rel: str, lake_load: str
) -> pa.Table:
    """``data`` without the rows of delivery files that another lake load read in this run held.

    Each delivery file (its name and modification time, ``columns``) reaches the lake in one
    lake load (whose rows dlt may split over several files); should it reach it in two (say, a
    drop -> lake run whose state was lost), both loads hold the same rows, and only the first
    load read is kept. ``read`` maps each delivery file seen so far to its lake load.
    """
    names = data.select(list(columns)).group_by(list(columns)).aggregate([])
    found = set(zip(*(names[c].to_pylist() for c in columns), strict=True))
    again = {d for d in found if read.setdefault(d, lake_load) != lake_load}
    if not again:
        return data
    logger.warning(
        "lake file %s repeats %d delivery file(s) of another lake load read in this run; their "
        "rows are loaded once: %s",
        rel,
        len(again),
        ", ".join(sorted(str(name) for name, _ in again)),
    )
    repeated = pa.array(np.zeros(data.num_rows, dtype=bool))
    for name, modified in again:
        same = pc.and_kleene(
            pc.equal(data[columns[0]], pa.scalar(name, data.schema.field(columns[0]).type)),
            pc.equal(data[columns[1]], pa.scalar(modified, data.schema.field(columns[1]).type)),
        )
        repeated = pc.or_kleene(repeated, pc.fill_null(same, False))
    return data.filter(pc.invert(repeated))
