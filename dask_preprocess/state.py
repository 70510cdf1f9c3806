"""The stage's state under ``preprocessed/_state``, behind one small interface.

:class:`StateStore` is all the run sees of it:

- :meth:`StateStore.open` checks ``meta.json`` (time zone, bucket count), brings an older
  state format to the current one once, and reads the bookkeeping (files, bucket counts,
  consumed raw files) as a :class:`Bookkeeping`;
- :meth:`StateStore.begin` starts a run: its id, its staging folder, each bucket's live
  segments and labels (``segments.json``), the partitions a failed run left dirty;
- :meth:`StateStore.mark_dirty` names the partitions the run is about to rewrite;
- :meth:`StateStore.commit` moves the run's staged files in, names them in
  ``segments.json`` (the switch), saves the bookkeeping and deletes what is no longer live.

The files on disk (format 3): ``meta.json``, ``segments.json``, ``dirty.json``,
``files.parquet``, ``bucket_counts.parquet``, ``consumed.parquet``, ``rows/h=NNN/<segment>``
and ``labels/h=NNN/<labels>`` (see :mod:`dask_preprocess.segments`).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from contract.lake import PREPROCESSED
from contract.lake import PREPROCESSED_STATE as STATE
from dask_preprocess.segments import (
    STATE_ROW_GROUP,
    bucket_paths,
    current_rows,
    read_labels,
    segment_path,
    state_table,
    with_segment,
    write_segment,
)
from storage import Lake

logger = logging.getLogger(__name__)

# 1: one rows file per bucket; 2: segments and labels per bucket; 3: rows with a sale_key
STATE_FORMAT = 3
META = f"{STATE}/meta.json"
SEGMENTS_MANIFEST = f"{STATE}/segments.json"
DIRTY = f"{STATE}/dirty.json"  # the partitions a run rewrites, until it has committed
FILES = f"{STATE}/files.parquet"
BUCKET_COUNTS = f"{STATE}/bucket_counts.parquet"
CONSUMED = f"{STATE}/consumed.parquet"
MAX_SEGMENTS = 8  # segments per bucket before it is compacted into one
COMPACT_LABELS = 0.05  # ... or labels per row of the bucket

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

#: Each bucket's live segments and labels: ``{h: {"segments": [...], "labels": name|None}}``.
Manifest = dict[int, dict[str, Any]]


def empty_frame(dtypes: dict[str, str]) -> pd.DataFrame:
    """An empty frame with these columns and types."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _load(lake: Lake, rel: str, dtypes: dict[str, str]) -> pd.DataFrame:
    if not lake.exists(rel):
        return empty_frame(dtypes)
    return lake.read_table(rel).to_pandas().astype(dtypes)[list(dtypes)]


def _save(lake: Lake, rel: str, frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    frame = frame[list(dtypes)].astype(dtypes).reset_index(drop=True)
    lake.write_table(rel, pa.Table.from_pandas(frame, preserve_index=False))


def read_manifest(lake: Lake) -> Manifest:
    """Each bucket's live segments and labels (``segments.json``; empty for a new state)."""
    doc = lake.read_json(SEGMENTS_MANIFEST) or {}
    return {
        int(h): {"segments": list(v["segments"]), "labels": v["labels"]} for h, v in doc.items()
    }


def write_manifest(lake: Lake, manifest: Manifest) -> None:
    """Write ``segments.json``: the buckets with segments, by number."""
    live = {f"{h:03d}": v for h, v in sorted(manifest.items()) if v["segments"]}
    lake.write_json(SEGMENTS_MANIFEST, live)


def collect_garbage(lake: Lake, manifest: Manifest) -> None:
    """Delete the segment and labels files that ``segments.json`` does not name (replaced by
    a compaction, or left by a run that failed before its commit)."""
    live = set()
    for h, entry in manifest.items():
        segments, labels = bucket_paths(h, entry)
        live.update(segments)
        if labels:
            live.add(labels)
    for zone in ("rows", "labels"):
        for rel, _ in lake.list_files(f"{STATE}/{zone}"):
            if rel not in live:
                lake.delete(rel)


def counts_by_bucket(rows: pa.Table, h: np.ndarray) -> pd.DataFrame:
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


# --- Migrations between state formats ----------------------------------------------------------

_LEGACY_ROWS = re.compile(r"/rows/h=(\d+)\.parquet$")  # format 1: one rows file per bucket


def migrate_state(lake: Lake, meta: dict[str, Any]) -> dict[str, Any]:
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
    manifest: Manifest = {}
    for rel, h in legacy.items():
        rows = with_segment(state_table(lake, rel), segment)
        lake.write_table(segment_path(STATE, h, segment), rows, row_group_size=STATE_ROW_GROUP)
        manifest[h] = {"segments": [segment], "labels": None}
    write_manifest(lake, manifest)
    meta = {**meta, "format": STATE_FORMAT}
    lake.write_json(META, meta)
    for rel in legacy:
        lake.delete(rel)
    return meta


def _add_sale_keys(lake: Lake, meta: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: each bucket compacted into one segment whose rows have their sale_key
    (labels folded in, gone rows dropped, as a compaction does)."""
    old = read_manifest(lake)
    logger.info("Adding sale keys to the preprocessing state (%d bucket(s)), once", len(old))
    segment = "000000-v3"
    manifest: Manifest = {}
    for h, entry in old.items():
        segment_paths, labels_path = bucket_paths(h, entry)
        rows = current_rows(lake, segment_paths, read_labels(lake, labels_path))
        if rows.num_rows:
            write_segment(lake, segment_path(STATE, h, segment), with_segment(rows, segment))
            manifest[h] = {"segments": [segment], "labels": None}
    write_manifest(lake, manifest)
    meta = {**meta, "format": STATE_FORMAT}
    lake.write_json(META, meta)
    collect_garbage(lake, manifest)
    return meta


# --- The interface ---------------------------------------------------------------------------


@dataclass
class Bookkeeping:
    """What the state says before a run: per file, per bucket and file, the raw files done."""

    files: pd.DataFrame  # FILES_DTYPES: the latest version of every sales file, its counts
    counts: pd.DataFrame  # COUNTS_DTYPES: rows, units, amount per (bucket h, file, bucket)
    consumed: pd.DataFrame  # CONSUMED_DTYPES: raw files already read (path, size)
    n_hash_partitions: int  # the state's sale_id hash buckets (fixed when it is created)


def consumed_files(raw_files: list[tuple[str, int]]) -> pd.DataFrame:
    """The bookkeeping of the raw files read (path, size), to skip them next time."""
    return pd.DataFrame(raw_files, columns=list(CONSUMED_DTYPES))


@dataclass(frozen=True)
class StagedRun:
    """A run that writes to the state: where its files wait until the commit."""

    run_id: str  # also the id of the segments and labels files the run writes
    staging: str  # the folder below the state the run's files are written to
    manifest: Manifest  # each bucket's live segments and labels before the run
    dirty: dict[str, set[int]]  # per partition column, the values a failed run rewrote


class StateStore:
    """The stage's state in a lake, for one time zone (fixed when the state is created)."""

    def __init__(self, lake: Lake, timezone: str) -> None:
        self.lake = lake
        self.timezone = timezone
        self.meta: dict[str, Any] | None = None

    def open(self, n_hash_partitions: int) -> Bookkeeping:
        """Read the state (migrated to the current format first, when older).

        Args:
            n_hash_partitions: The bucket count for a new state (an existing one keeps its).

        Raises:
            ValueError: When the existing state was built with another time zone.
        """
        meta = self.lake.read_json(META)
        if meta is not None:
            if meta.get("timezone") != self.timezone:
                raise ValueError(
                    f"The preprocessed zone was built for time zone {meta.get('timezone')!r}, "
                    f"not {self.timezone!r}; clear {self.lake.url}/{PREPROCESSED} to rebuild it."
                )
            n_hash_partitions = int(meta["n_hash_partitions"])
            if int(meta.get("format", 1)) < STATE_FORMAT:
                meta = migrate_state(self.lake, meta)
        self.meta = meta
        return Bookkeeping(
            files=_load(self.lake, FILES, FILES_DTYPES),
            counts=_load(self.lake, BUCKET_COUNTS, COUNTS_DTYPES),
            consumed=_load(self.lake, CONSUMED, CONSUMED_DTYPES),
            n_hash_partitions=n_hash_partitions,
        )

    def begin(self) -> StagedRun:
        """Start a run that writes: a new id and staging folder (what a failed earlier run
        left there is deleted), the live buckets and the dirty partitions."""
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self.lake.delete(f"{STATE}/staging", recursive=True)
        # The partitions a failed earlier run may have rewritten from a state it never
        # committed: aggregated again from the state by this run, never updated by difference.
        dirty = {column: set(v) for column, v in (self.lake.read_json(DIRTY) or {}).items()}
        return StagedRun(run_id, f"{STATE}/staging/{run_id}", read_manifest(self.lake), dirty)

    def mark_dirty(self, affected: dict[str, list[int]]) -> None:
        """Name the partitions about to be rewritten, before any is (until the commit)."""
        self.lake.write_json(DIRTY, affected)

    def commit(
        self,
        run: StagedRun,
        staged_files: list[str],
        manifest: Manifest,
        bookkeeping: Bookkeeping,
    ) -> None:
        """Make the run's state current.

        The staged segments and labels move into the state, ``segments.json`` names them
        (the switch), then the bookkeeping that says which inputs are done. A failure before
        the switch leaves the state as it was; after it, before the bookkeeping, the next run
        takes this run's files as changed again and redoes them (their rows leave first).

        Args:
            run: The run.
            staged_files: The segment and labels files the run wrote below its staging.
            manifest: Every bucket's live segments and labels after the run.
            bookkeeping: The files, bucket counts and consumed raw files after the run.
        """
        lake = self.lake
        for rel in staged_files:
            target = STATE + rel[len(run.staging) :]
            lake.fs.makedirs(lake.path(target.rsplit("/", 1)[0]), exist_ok=True)
            lake.fs.mv(lake.path(rel), lake.path(target))
        write_manifest(lake, manifest)
        _save(lake, FILES, bookkeeping.files, FILES_DTYPES)
        _save(lake, BUCKET_COUNTS, bookkeeping.counts, COUNTS_DTYPES)
        _save(lake, CONSUMED, bookkeeping.consumed, CONSUMED_DTYPES)
        if self.meta is None:
            self.meta = {
                "format": STATE_FORMAT,
                "timezone": self.timezone,
                "n_hash_partitions": bookkeeping.n_hash_partitions,
            }
            lake.write_json(META, self.meta)
        lake.delete(run.staging, recursive=True)
        lake.delete(DIRTY)
        collect_garbage(lake, manifest)
