"""Step 3, de-duplicate and supersede: decide duplicate / superseded / valid again in the
hash buckets the run touches.

The state keeps the normalized valid rows of the latest version of every file, split into
sale_id hash buckets (see :mod:`dask_preprocess.segments`). Every row of a sale_id lives in
one bucket, so the decision is taken per bucket, and within a bucket only for the sale_ids
that gain or lose rows. Comparing the re-decided rows before and after gives the sale dates
and months whose aggregates change (a correction weeks later moves both its old and new
date), and the exact sums those rows add and remove per aggregate group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from distributed import Client

from dask_preprocess.arrays import mask_in, runs
from dask_preprocess.cluster import gather, worker_slots
from dask_preprocess.rules import TUPLE_COLUMNS, assign_buckets
from dask_preprocess.segments import (
    GONE,
    LABEL_KEY,
    LABELS_SCHEMA,
    NO_SEGMENTS,
    SEGMENT_SCHEMA,
    arrow_state_frame,
    bucket_paths,
    label_rows,
    old_rows_to_redo,
    read_labels,
    split_by_bucket,
    state_frame,
    state_table,
    with_segment,
    write_bucket,
)
from dask_preprocess.state import COUNTS_DTYPES, Manifest, StagedRun, counts_by_bucket
from dask_preprocess.sums import changes_of
from dask_preprocess.validate import valid_staging
from storage import Lake

logger = logging.getLogger(__name__)

BUCKET_TASK_ROWS = 250_000  # rows a task of several hash buckets decides at most (about)

#: A bucket's rows, units and amount per file and bucket: ``(h, file, bucket, n, units, e4)``.
Count = tuple[int, str, str, int, int, int]


@dataclass
class BucketUpdate:
    """What a run did to one hash bucket."""

    h: int
    live: dict[str, Any]  # its live segments and labels after the run
    compacted: bool  # whether it was compacted into one segment
    files: list[str]  # the new files below the run's staging folder
    counts: list[Count]  # its counts after the run


@dataclass
class BucketsUpdate:
    """What a task (or the whole step) did to its hash buckets."""

    buckets: list[BucketUpdate]
    dates: list[int]  # the sale dates (day numbers) whose valid rows changed
    months: list[int]  # ... and the sale months
    #: Per partition column, the exact sums of the valid rows added minus those removed, per
    #: group (None when not asked for: a first run has no aggregates to update).
    changes: dict[str, pa.Table] | None = None
    #: Every bucket's counts after the run (the whole step's; empty for one task's).
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def staged_files(self) -> list[str]:
        """The segment and labels files the buckets got, below the run's staging folder."""
        return [f for b in self.buckets for f in b.files]

    def manifest_after(self, before: Manifest) -> Manifest:
        """Every bucket's live segments and labels after the run."""
        return {**before, **{b.h: b.live for b in self.buckets}}


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A hash of each row's file, line and normalized values (equal rows, equal hashes)."""
    if frame.empty:
        return np.zeros(0, dtype="uint64")
    cols = ["file_name", "line_number", *TUPLE_COLUMNS]
    return pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()


# --- A task: the decisions of some hash buckets, taken together --------------------------------


@dataclass
class _BucketRows:
    """The rows a task decides, of all its buckets: the old rows to redo (from the state)
    and the staged ones (new), with each row's bucket number."""

    old: pa.Table
    old_h: np.ndarray
    staged: pa.Table
    staged_h: np.ndarray
    segment_paths: dict[int, list[str]]
    labels: dict[int, pa.Table]


def _read_buckets(
    lake: Lake,
    hs: list[int],
    live: Manifest,
    staging: str,
    run_id: str,
    changed: pa.Array,
    holding_changed: set[int],
) -> _BucketRows:
    """Read each bucket's staged rows and the old rows they touch (or whose file changed)."""
    olds, stageds, old_hs, staged_hs = [], [], [], []
    segment_paths: dict[int, list[str]] = {}
    labels: dict[int, pa.Table] = {}
    for h in hs:
        segment_paths[h], labels_path = bucket_paths(h, live.get(h, NO_SEGMENTS))
        labels[h] = read_labels(lake, labels_path)
        staged = with_segment(state_table(lake, f"{valid_staging(staging)}/h={h:03d}"), run_id)
        old = old_rows_to_redo(
            lake, segment_paths[h], labels[h], staged, changed, h in holding_changed
        )
        olds.append(old.select(SEGMENT_SCHEMA.names).cast(SEGMENT_SCHEMA))
        stageds.append(staged)
        old_hs.append(np.full(old.num_rows, h, dtype="int64"))
        staged_hs.append(np.full(staged.num_rows, h, dtype="int64"))
    return _BucketRows(
        old=pa.concat_tables([SEGMENT_SCHEMA.empty_table(), *olds]),
        old_h=np.concatenate([np.zeros(0, dtype="int64"), *old_hs]),
        staged=pa.concat_tables([SEGMENT_SCHEMA.empty_table(), *stageds]),
        staged_h=np.concatenate([np.zeros(0, dtype="int64"), *staged_hs]),
        segment_paths=segment_paths,
        labels=labels,
    )


@dataclass
class _Decision:
    """The old rows split into those that leave (their file changed) and those decided
    again (``kept``), and every row's bucket after the decision."""

    leaving: pa.Table
    leaving_h: np.ndarray
    kept: pa.Table  # the old rows decided again, with their bucket before
    kept_h: np.ndarray
    redecided: pa.Table  # the same rows with their bucket after
    new_rows: pa.Table  # the staged rows with their bucket
    staged_h: np.ndarray
    before: pd.DataFrame  # ``kept`` as pandas
    after: pd.DataFrame  # ``kept`` then the staged rows, as pandas, with their bucket after
    relabelled: np.ndarray  # per row of ``after``: an old row whose bucket changed

    @property
    def n_old(self) -> int:
        return len(self.before)


def _decide(rows: _BucketRows, changed: pa.Array) -> _Decision:
    """Rows of changed files leave; every other old row and every staged row is decided."""
    leaving_mask = mask_in(rows.old["file_name"], changed)
    leaving_np = leaving_mask.to_numpy(zero_copy_only=False)
    kept = rows.old.filter(pc.invert(leaving_mask))
    before = arrow_state_frame(kept)
    after = state_frame(pd.concat([before, arrow_state_frame(rows.staged)], ignore_index=True))
    if not after.empty:
        after["bucket"] = assign_buckets(after).astype("str")
    n_old = len(before)
    relabelled = np.zeros(len(after), dtype=bool)
    relabelled[:n_old] = after["bucket"].to_numpy()[:n_old] != before["bucket"].to_numpy()
    decided = pa.array(after["bucket"].to_numpy(), pa.string())
    at = kept.schema.get_field_index("bucket")
    return _Decision(
        leaving=rows.old.filter(leaving_mask),
        leaving_h=rows.old_h[leaving_np],
        kept=kept,
        kept_h=rows.old_h[~leaving_np],
        redecided=kept.set_column(at, "bucket", decided[:n_old]),
        new_rows=rows.staged.set_column(at, "bucket", decided[n_old:]),
        staged_h=rows.staged_h,
        before=before,
        after=after,
        relabelled=relabelled,
    )


@dataclass
class _MovedValidRows:
    """The valid rows that differ between before and after the decision, as positions:
    ``leaving_at`` in the leaving rows and ``left_at`` in the kept ones (valid before, those
    not valid after are ``gone``), ``added_at`` in the rows after (valid after, not before)."""

    leaving_at: np.ndarray
    left_at: np.ndarray
    gone: np.ndarray  # per row of leaving_at then left_at: not valid after
    added_at: np.ndarray
    dates: list[int]
    months: list[int]


def _moved_valid_rows(d: _Decision) -> _MovedValidRows:
    """The valid rows that may differ between before and after are the leaving rows and the
    kept rows whose bucket changed (before), the staged rows and those same kept rows
    (after); every other valid row is in both. Equal rows (file, line, values) on both sides
    cancel out."""
    leaving_frame = arrow_state_frame(d.leaving)
    leaving_at = np.flatnonzero((leaving_frame["bucket"] == "valid").to_numpy())
    changed_kept = d.relabelled[: d.n_old]
    left_at = np.flatnonzero((d.before["bucket"] == "valid").to_numpy() & changed_kept)
    old_candidates = pd.concat(
        [leaving_frame.iloc[leaving_at], d.before.iloc[left_at]], ignore_index=True
    )
    is_staged = np.zeros(len(d.after), dtype=bool)
    is_staged[d.n_old :] = True
    new_at = np.flatnonzero((d.after["bucket"] == "valid").to_numpy() & (is_staged | d.relabelled))
    new_candidates = d.after.iloc[new_at]
    gone = np.ones(len(old_candidates), dtype=bool)
    added_at = new_at
    if not (old_candidates.empty or new_candidates.empty):
        old_hash, new_hash = row_hashes(old_candidates), row_hashes(new_candidates)
        gone = ~np.isin(old_hash, new_hash)
        added_at = new_at[~np.isin(new_hash, old_hash)]
    gone_rows = old_candidates[gone]
    added = d.after.iloc[added_at]
    return _MovedValidRows(
        leaving_at=leaving_at,
        left_at=left_at,
        gone=gone,
        added_at=added_at,
        dates=np.unique(np.concatenate([gone_rows["sale_date"], added["sale_date"]])).tolist(),
        months=np.unique(np.concatenate([gone_rows["sale_month"], added["sale_month"]])).tolist(),
    )


def _aggregate_changes(d: _Decision, moved: _MovedValidRows) -> dict[str, pa.Table]:
    """What the valid rows this run adds and removes change the aggregates by (the rows as
    Arrow, taken at the moved positions)."""
    added = pa.concat_tables([d.redecided, d.new_rows]).take(pa.array(moved.added_at, pa.int64()))
    old = pa.concat_tables(
        [
            d.leaving.take(pa.array(moved.leaving_at, pa.int64())),
            d.kept.take(pa.array(moved.left_at, pa.int64())),
        ]
    )
    return changes_of(added, old.filter(pa.array(moved.gone)))


def _counts_after(d: _Decision, counts: list[Count]) -> tuple[pd.DataFrame, dict[int, Any]]:
    """The buckets' counts before the run, moved by what left or was decided again (out) and
    what was decided (in); per bucket number, its counts after."""
    before = pd.DataFrame(counts, columns=list(COUNTS_DTYPES))
    out = counts_by_bucket(
        pa.concat_tables([d.leaving, d.kept]), np.concatenate([d.leaving_h, d.kept_h])
    )
    out[["n", "units", "amount_e4"]] *= -1
    into = counts_by_bucket(
        pa.concat_tables([d.redecided, d.new_rows]), np.concatenate([d.kept_h, d.staged_h])
    )
    moved = pd.concat([before, out, into])
    after = moved.groupby(["h", "file_name", "bucket"], as_index=False).sum()
    after = after[after["n"] != 0]
    return before, {int(h): part for h, part in after.groupby("h")}


def _new_labels(d: _Decision) -> dict[int, pa.Table]:
    """Per bucket, its new labels: the kept rows whose bucket changed, and the rows that
    left (gone)."""
    changed = d.relabelled[: d.n_old]
    mask = pa.array(changed)
    labels = pa.concat_tables(
        [
            label_rows(d.redecided.filter(mask), d.redecided.filter(mask)["bucket"]),
            label_rows(d.leaving, [GONE] * d.leaving.num_rows),
        ]
    )
    return split_by_bucket(labels, np.concatenate([d.kept_h[changed], d.leaving_h]))


def _merged_labels(old: pa.Table, added: pa.Table | None) -> pa.Table:
    """A bucket's labels after the run: its new ones replace the old ones of the same rows."""
    if added is None:
        return old
    replaced = old.join(added.select(LABEL_KEY), keys=LABEL_KEY, join_type="left anti")
    return pa.concat_tables([replaced, added]).select(LABELS_SCHEMA.names)


def update_hash_buckets(
    hs: list[int],
    lake_url: str,
    storage_options: dict | None,
    staging: str,
    changed_files: list[str],
    run_id: str,
    live: Manifest,
    counts: list[Count],
    max_segments: int,
    max_label_ratio: float,
    sums: bool = False,
) -> BucketsUpdate:
    """Recompute duplicate / superseded / valid for some sale_id hash buckets of the state
    (a task).

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
        counts: The buckets' counts before the run.
        sums: Also return what the valid rows added and removed change the aggregates by.
    """
    lake = Lake(lake_url, storage_options)
    changed = pa.array(changed_files, pa.string())
    changed_set = set(changed_files)
    holding_changed = {int(c[0]) for c in counts if str(c[1]) in changed_set}
    rows = _read_buckets(lake, hs, live, staging, run_id, changed, holding_changed)
    decision = _decide(rows, changed)
    moved = _moved_valid_rows(decision)
    before, counts_of = _counts_after(decision, counts)
    new_labels_of = _new_labels(decision)
    new_rows_of = split_by_bucket(decision.new_rows, decision.staged_h)
    buckets = []
    for h in hs:
        added_labels = new_labels_of.get(h)
        bucket_counts = counts_of.get(h, before.iloc[0:0])
        live_after, compacted, written = write_bucket(
            lake,
            h,
            live.get(h, NO_SEGMENTS),
            rows.segment_paths[h],
            new_rows_of.get(h, SEGMENT_SCHEMA.empty_table()),
            _merged_labels(rows.labels[h], added_labels),
            added_labels is not None,
            int(bucket_counts["n"].sum()),
            staging=staging,
            run_id=run_id,
            max_segments=max_segments,
            max_label_ratio=max_label_ratio,
        )
        bucket_rows = bucket_counts[list(COUNTS_DTYPES)].itertuples(index=False, name=None)
        buckets.append(BucketUpdate(h, live_after, compacted, written, list(bucket_rows)))
    changes = _aggregate_changes(decision, moved) if sums else None
    return BucketsUpdate(buckets, moved.dates, moved.months, changes)


# --- The step ---------------------------------------------------------------------------------


def bucket_groups(
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
    return [hs[start:end] for start, end in runs(labels)]


def _affected_buckets(
    lake: Lake, run: StagedRun, counts: pd.DataFrame, changed_files: list[str]
) -> tuple[list[int], pd.DataFrame]:
    """The buckets that got staged rows or hold rows of a changed file, and the counts of
    the changed files' rows."""
    staged = {
        int(name.split("=", 1)[1])
        for name in lake.list_dirs(valid_staging(run.staging))
        if name.startswith("h=")
    }
    of_changed = counts[counts["file_name"].isin(changed_files)]
    return sorted(staged | set(of_changed["h"].astype(int))), of_changed


def _merged(done: list[BucketsUpdate], counts: pd.DataFrame, hs: list[int]) -> BucketsUpdate:
    """The tasks' updates as one, with every bucket's counts after the run."""
    buckets = [b for task in done for b in task.buckets]
    changes = None
    if done and all(task.changes is not None for task in done):
        changes = {
            column: pa.concat_tables([task.changes[column] for task in done if task.changes])
            for column in ("sale_date", "sale_month")
        }
    new_counts = pd.DataFrame([c for b in buckets for c in b.counts], columns=list(COUNTS_DTYPES))
    return BucketsUpdate(
        buckets=buckets,
        dates=sorted({d for task in done for d in task.dates}),
        months=sorted({m for task in done for m in task.months}),
        changes=changes,
        counts=pd.concat([counts[~counts["h"].isin(hs)], new_counts], ignore_index=True).astype(
            COUNTS_DTYPES
        ),
    )


def deduplicate(
    client: Client,
    lake: Lake,
    run: StagedRun,
    counts: pd.DataFrame,
    changed_files: list[str],
    *,
    staged_valid_rows: int,
    n_buckets: int,
    max_segments: int,
    max_label_ratio: float,
    show_progress: bool,
) -> BucketsUpdate:
    """Decide again the buckets that got staged rows or hold rows of a changed file, in
    tasks of a few buckets each.

    Args:
        counts: Every bucket's counts before the run (the state's ``bucket_counts``).
        changed_files: The sales files whose latest version changed.
        staged_valid_rows: The valid rows the validation staged.

    Returns:
        The buckets' updates, the dates and months whose valid rows changed, what that
        changes the aggregates by (None on a first run: no aggregates yet), and every
        bucket's counts after the run.
    """
    hs, of_changed = _affected_buckets(lake, run, counts, changed_files)
    groups = bucket_groups(
        hs,
        staged_rows=staged_valid_rows,
        n_buckets=n_buckets,
        changed_rows=of_changed,
        slots=worker_slots(client),
    )
    logger.info(
        "Recomputing duplicates and supersessions in %d hash bucket(s), %d task(s)",
        len(hs),
        len(groups),
    )
    columns = list(COUNTS_DTYPES)
    futures = [
        client.submit(
            update_hash_buckets,
            group,
            lake.url,
            lake.storage_options,
            run.staging,
            changed_files,
            run.run_id,
            {h: run.manifest[h] for h in group if h in run.manifest},
            list(counts[counts["h"].isin(group)][columns].itertuples(index=False, name=None)),
            max_segments,
            max_label_ratio,
            bool(run.manifest),  # what the run changes in the aggregates (none yet: no)
            pure=False,
        )
        for group in groups
    ]
    done = gather(client, futures, show_progress) if futures else []
    return _merged(done, counts, hs)
