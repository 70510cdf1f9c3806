"""The state's rows and a hash bucket's files: segments and labels.

A bucket's rows (the normalized valid rows of the latest version of every file whose
sale_id hashes to it) live in immutable *segment* files, each written by one run (its run id
is the segment id, also stored in the rows' ``segment`` column) and sorted by sale date in
small row groups. A run appends one segment with its new rows; the earlier rows whose
decision changed (a later correction supersedes them) or whose file was re-delivered (they
are *gone*) get a *label* that overrides what their segment recorded, keyed by
(segment, file_name, line_number). ``segments.json`` (see :mod:`dask_preprocess.state`) names
each bucket's live segments and labels file. A bucket is compacted into one segment when it
would have too many segments or labels, so an incremental run writes only its own rows most
of the time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contract.lake import PREPROCESSED_STATE as STATE
from dask_preprocess.arrays import mask_in, runs
from dask_preprocess.rules import ORDER_COLUMNS, sale_id_hashes, sale_key_of
from storage import Lake

STATE_ROW_GROUP = 16_384  # rows per row group of the state's bucket files (sorted by sale date)

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
STATE_SCHEMA = pa.schema([(c, _ARROW_OF_DTYPE[t]) for c, t in STATE_DTYPES.items()])
SEGMENT_SCHEMA = STATE_SCHEMA.append(pa.field("segment", pa.string()))
LABELS_SCHEMA = pa.schema(
    [
        ("segment", pa.string()),
        ("file_name", pa.string()),
        ("line_number", pa.int64()),
        ("sale_date", pa.int32()),
        ("sale_month", pa.int32()),
        ("label", pa.string()),
    ]
)
LABEL_KEY = ["segment", "file_name", "line_number"]  # the row a label is for
GONE = "gone"  # the label of a row whose file was re-delivered (the row left the state)
NO_SEGMENTS: dict[str, Any] = {"segments": [], "labels": None}  # a bucket without files


# --- State rows ------------------------------------------------------------------------------


def state_frame(rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """State rows as pandas with the state's column types (an empty frame for None)."""
    if rows is None:
        rows = pd.DataFrame({c: pd.Series(dtype=t) for c, t in STATE_DTYPES.items()})
    return rows[list(STATE_DTYPES)].astype(STATE_DTYPES)


def arrow_state_frame(rows: pa.Table) -> pd.DataFrame:
    """State rows from Arrow as pandas (an empty table skips the conversion's cost)."""
    return state_frame(rows.to_pandas() if rows.num_rows else None)


def with_sale_key(table: pa.Table) -> pa.Table:
    """State rows with their ``sale_key`` (computed from ``sale_id`` for rows written before
    format 3, which had none)."""
    if "sale_key" in table.column_names:
        return table
    ids = table["sale_id"].to_pandas() if table.num_rows else pd.Series([], dtype="str")
    keys = pa.array(sale_key_of(sale_id_hashes(ids)), pa.int32())
    return table.append_column("sale_key", keys)


def state_table(lake: Lake, rel: str) -> pa.Table:
    """A state or staged rows file (or folder) as Arrow with the state's column types."""
    if not lake.exists(rel):
        return STATE_SCHEMA.empty_table()
    return with_sale_key(lake.read_table(rel)).select(STATE_SCHEMA.names).cast(STATE_SCHEMA)


def with_segment(table: pa.Table, segment: str) -> pa.Table:
    """State rows tagged with the segment they are written to."""
    rows = table.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)
    return rows.append_column("segment", pa.repeat(pa.scalar(segment, pa.string()), len(rows)))


def sorted_rows(rows: pa.Table) -> pa.Table:
    """Sorted by sale date (then delivery order): readers skip the row groups of other dates."""
    return rows.sort_by([(c, "ascending") for c in ("sale_date", *ORDER_COLUMNS)])


# --- A bucket's files -------------------------------------------------------------------------


def segment_path(base: str, h: int, segment: str) -> str:
    """A segment file of bucket ``h`` below ``base`` (the state, or a run's staging folder)."""
    return f"{base}/rows/h={h:03d}/{segment}.parquet"


def labels_path(base: str, h: int, labels: str) -> str:
    """The labels file of bucket ``h`` below ``base``."""
    return f"{base}/labels/h={h:03d}/{labels}.parquet"


def bucket_paths(
    h: int, live: dict[str, Any], run_id: str | None = None, staging: str | None = None
) -> tuple[list[str], str | None]:
    """The segment files and labels file of a bucket; those named ``run_id`` are staged."""

    def base(name: str) -> str:
        return staging if staging is not None and name == run_id else STATE

    segments = [segment_path(base(s), h, s) for s in live["segments"]]
    labels = live["labels"]
    return segments, (labels_path(base(labels), h, labels) if labels else None)


def read_labels(lake: Lake, path: str | None) -> pa.Table:
    """A bucket's labels file (an empty table when it has none)."""
    if path is None:
        return LABELS_SCHEMA.empty_table()
    return lake.read_table(path).select(LABELS_SCHEMA.names).cast(LABELS_SCHEMA)


def label_rows(rows: pa.Table, labels: pa.Array | list[str]) -> pa.Table:
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
        schema=LABELS_SCHEMA,
    )


def relabel(rows: pa.Table, labels: pa.Table) -> pa.Table:
    """``rows`` (with ``segment``) with their current bucket: a label overrides the bucket
    their segment recorded (``gone`` for a row that left; callers drop those)."""
    if labels.num_rows == 0 or rows.num_rows == 0:
        return rows
    # Few rows have a label: only those that may have one (a label's segment and line
    # number) are joined; the bucket column is then patched in place, in row order.
    maybe = pc.and_(
        mask_in(rows["line_number"], pc.unique(labels["line_number"])),
        mask_in(rows["segment"], pc.unique(labels["segment"])),
    )
    index = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
    if not len(index):
        return rows
    candidates = rows.select(LABEL_KEY).take(pa.array(index)).append_column("_i", pa.array(index))
    hits = candidates.join(
        labels.select([*LABEL_KEY, "label"]), keys=LABEL_KEY, join_type="inner", use_threads=False
    ).sort_by("_i")
    if not hits.num_rows:
        return rows
    mask = np.zeros(rows.num_rows, dtype=bool)
    mask[hits["_i"].to_numpy()] = True
    bucket = pc.replace_with_mask(
        rows["bucket"].combine_chunks(), pa.array(mask), hits["label"].combine_chunks()
    )
    return rows.set_column(rows.schema.get_field_index("bucket"), "bucket", bucket)


def labelled(rows: pa.Table, labels: pa.Table) -> pa.Table:
    """``rows`` with their current bucket, without the rows that left (gone)."""
    rows = relabel(rows, labels)
    if labels.num_rows == 0:
        return rows
    return rows.filter(pc.not_equal(rows["bucket"], GONE))


def keys_of_segments(lake: Lake, paths: list[str], columns: list[str]) -> pa.Table:
    """``columns`` of every row of the segments, with the index of its segment in ``paths``
    (``_file``) and its position in that file (``_pos``); only those columns are read."""
    schema = pa.schema(
        [*(SEGMENT_SCHEMA.field(c) for c in columns), ("_file", pa.int32()), ("_pos", pa.int64())]
    )
    tables = [schema.empty_table()]
    for index, rel in enumerate(paths):
        keys = lake.read_table(rel, columns=columns)
        n = keys.num_rows
        keys = keys.append_column("_file", pa.array(np.full(n, index, dtype="int32")))
        keys = keys.append_column("_pos", pa.array(np.arange(n, dtype="int64")))
        tables.append(keys.cast(schema))
    return pa.concat_tables(tables)


def rows_at(lake: Lake, rel: str, positions: np.ndarray) -> pa.Table:
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
    return rows.select(SEGMENT_SCHEMA.names).cast(SEGMENT_SCHEMA)


def current_rows(lake: Lake, segment_paths: list[str], labels: pa.Table) -> pa.Table:
    """Every current row of a bucket: its segments with the labels folded in, gone rows
    dropped (rows of a format-2 segment get their sale_key)."""
    if not segment_paths:
        return SEGMENT_SCHEMA.empty_table()
    rows = with_sale_key(lake.read_tables(segment_paths))
    return labelled(rows.select(SEGMENT_SCHEMA.names).cast(SEGMENT_SCHEMA), labels)


def write_segment(lake: Lake, rel: str, rows: pa.Table) -> None:
    """Write a segment file: rows sorted by sale date in the state's small row groups."""
    lake.write_table(rel, sorted_rows(rows), row_group_size=STATE_ROW_GROUP)


def write_bucket(
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
        now = pa.concat_tables([current_rows(lake, segment_paths, labels), new_rows])
        if now.num_rows:
            written.append(segment_path(staging, h, run_id))
            write_segment(lake, written[-1], with_segment(now, run_id))
        return {"segments": [run_id] if now.num_rows else [], "labels": None}, True, written
    segments = list(live["segments"])
    if new_rows.num_rows:
        segments.append(run_id)
        written.append(segment_path(staging, h, run_id))
        write_segment(lake, written[-1], new_rows)
    labels_name = live["labels"]
    if labels_changed:
        labels_name = run_id
        written.append(labels_path(staging, h, run_id))
        lake.write_table(written[-1], labels)
    live_after = {"segments": segments, "labels": labels_name if labels.num_rows else None}
    return live_after, False, written


# --- The rows a run reads and writes by bucket ------------------------------------------------


def split_by_bucket(table: pa.Table, h: np.ndarray) -> dict[int, pa.Table]:
    """``table``'s rows per hash bucket (``h`` gives each row's), in their order."""
    order = np.argsort(h, kind="stable")
    ordered = table.take(pa.array(order)) if len(order) else table
    return {
        int(h[order[start]]): ordered.slice(start, end - start) for start, end in runs(h[order])
    }


def old_rows_to_redo(
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
        return SEGMENT_SCHEMA.empty_table()
    columns = ["sale_key", "file_name"] if holds_changed else ["sale_key"]
    keys = keys_of_segments(lake, segment_paths, columns)
    from_changed = (
        mask_in(keys["file_name"], changed)
        if holds_changed
        else pa.array(np.zeros(keys.num_rows, dtype=bool))
    )
    touched = pc.unique(
        pa.chunked_array(
            [*staged["sale_key"].chunks, *keys.filter(from_changed)["sale_key"].chunks],
            type=pa.int32(),
        ).combine_chunks()
    )
    wanted = keys.filter(pc.or_(from_changed, mask_in(keys["sale_key"], touched)))
    files = wanted["_file"].to_numpy()
    positions = wanted["_pos"].to_numpy()
    parts = [
        rows_at(lake, segment_paths[i], np.sort(positions[files == i])) for i in np.unique(files)
    ]
    if not parts:
        return SEGMENT_SCHEMA.empty_table()
    return labelled(pa.concat_tables(parts), labels)
