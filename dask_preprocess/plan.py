"""Step 1, plan: which raw files are new, which sales files changed, what to validate.

A sales file *changed* when its latest version (what ``raw/delivered_files`` says, else what
the raw rows say, else what the state knows) differs from the version in the state, by
modification time or by status (loaded or failed). :func:`changed_versions` is that decision,
taken once before the cluster starts (nothing changed and no new raw file: the run is over)
and once with the versions the new raw files hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client

from contract.lake import PARTITIONED_TABLES, PREPROCESSED, RAW_SALES, is_of_completed_load
from dask_preprocess.arrays import date_to_days
from dask_preprocess.cluster import gather
from dask_preprocess.raw import (
    VERSION_DTYPES,
    VERSIONS_META,
    Piece,
    completed_loads,
    delivered_sales_files,
    row_group_sizes,
    versions_of_piece,
    versions_per_file,
)
from dask_preprocess.state import empty_frame
from storage import Lake

logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    """The lake's sales inputs as the run finds them."""

    raw_files: list[tuple[str, int]]  # every raw sales file of a completed load (path, size)
    new_raw: list[str]  # those the state has not consumed yet
    delivered: pd.DataFrame  # every delivered sales file version (VERSION_DTYPES)
    row_groups: list[tuple[str, list[int]]]  # the new raw files' row group sizes


@dataclass
class ChangedFiles:
    """The sales files whose latest version is not the one in the state."""

    versions: pd.DataFrame  # their latest versions (VERSION_DTYPES)
    names: list[str]  # their names, sorted
    to_validate: list[tuple[str, int]]  # (name, modification time) of the loaded ones


def find_inputs(lake: Lake, consumed: pd.DataFrame) -> Inputs:
    """List the raw sales files and the delivered file versions of the completed loads."""
    loads = completed_loads(lake)
    raw_files = [(p, s) for p, s in lake.list_files(RAW_SALES) if is_of_completed_load(p, loads)]
    seen = set(zip(consumed["path"], consumed["size"], strict=True))
    new_raw = [p for p, s in raw_files if (p, s) not in seen]
    delivered = delivered_sales_files(lake, loads)
    logger.info(
        "Sales in the lake: %d raw file(s), %d new; %d delivered sales file version(s)",
        len(raw_files),
        len(new_raw),
        len(delivered),
    )
    return Inputs(raw_files, new_raw, delivered, row_group_sizes(lake, new_raw))


def latest_versions(
    delivered: pd.DataFrame, raw_versions: pd.DataFrame, known: pd.DataFrame
) -> pd.DataFrame:
    """The latest version of every sales file: file_name, mtime, delivery day, status."""
    raw = raw_versions.assign(status="loaded", failure_reason=None)
    cols = list(VERSION_DTYPES)
    old = known[cols].assign(status=lambda f: np.where(f["status"] == "failed", "failed", "loaded"))
    # Priority for the same version: what delivered_files says, then raw rows, then the state.
    frames = [
        delivered[cols].assign(_p=0),
        raw[cols].assign(_p=1),
        old[cols].assign(_p=2),
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_frame(VERSION_DTYPES)
    allv = pd.concat(frames, ignore_index=True)
    allv = allv.sort_values(
        ["file_name", "file_modified_at_us", "_p"], ascending=[True, False, True]
    )
    latest = allv.drop_duplicates("file_name", keep="first").drop(columns="_p")
    return latest.astype(
        {"file_name": "str", "file_modified_at_us": "int64", "delivery_day": "int32"}
    ).reset_index(drop=True)


def changed_versions(
    delivered: pd.DataFrame, raw_versions: pd.DataFrame, files_state: pd.DataFrame
) -> ChangedFiles:
    """The sales files whose latest version differs from the state's, by modification time
    or status (a file the state does not know has changed)."""
    latest = latest_versions(delivered, raw_versions, files_state)
    known = files_state.set_index("file_name")
    is_changed = [
        r.file_name not in known.index
        or int(known.at[r.file_name, "file_modified_at_us"]) != int(r.file_modified_at_us)
        or str(known.at[r.file_name, "status"]) != r.status
        for r in latest.itertuples(index=False)
    ]
    changed = latest[np.array(is_changed, dtype=bool)]  # (a mask: no files, no columns lost)
    loaded = changed[changed["status"] == "loaded"]
    return ChangedFiles(
        versions=changed,
        names=sorted(changed["file_name"]),
        to_validate=list(
            zip(loaded["file_name"], loaded["file_modified_at_us"].astype(int), strict=True)
        ),
    )


def is_up_to_date(inputs: Inputs, files_state: pd.DataFrame) -> bool:
    """No new raw file and no delivered file version the state does not hold: nothing to do."""
    return (
        not inputs.new_raw
        and not changed_versions(inputs.delivered, VERSIONS_META, files_state).names
    )


def read_versions(
    client: Client,
    pieces: list[Piece],
    lake_url: str,
    storage_options: dict | None,
    show_progress: bool,
) -> pd.DataFrame:
    """The file versions the new raw files hold, with their rows: a Dask DataFrame with a
    partition per piece (a few rows each), summed per version once gathered (measured
    faster than Dask's own groupby, whose graph costs more than the rows it reduces)."""
    if not pieces:
        return VERSIONS_META.copy()
    logger.info("Reading file versions from %d piece(s) of new raw files", len(pieces))
    versions = dd.from_map(
        versions_of_piece, pieces, args=(lake_url, storage_options), meta=VERSIONS_META
    )
    return versions_per_file(gather(client, client.compute(versions), show_progress))


def partitions_between(lake: Lake, first: date, last: date) -> dict[str, set[int]]:
    """The existing partitions of the aggregates in a range of sale dates (``elt backfill``):
    the sale dates from ``first`` to ``last`` and the months they overlap, as day numbers."""
    found: dict[str, set[int]] = {}
    for table, column in PARTITIONED_TABLES.items():
        low = first if column == "sale_date" else first.replace(day=1)
        values = set()
        for name in lake.list_dirs(f"{PREPROCESSED}/{table}"):
            key, _, value = name.partition("=")
            if key == column and low <= date.fromisoformat(value) <= last:
                values.add(date_to_days(date.fromisoformat(value)))
        found[column] = values
    return found
