"""The lake's layout: zones, paths, and the reading of dlt's load markers.

Paths here are relative to the lake root (``ELT_LAKE_URL``); join them with the root with
``posixpath.join`` (local folders and ``s3://`` URLs alike).
"""

from __future__ import annotations

import re

#: As delivered (documents and sales as Parquet, personal data pseudonymized), written by dlt.
RAW = "raw"
RAW_SALES = f"{RAW}/sales"
RAW_DELIVERED = f"{RAW}/delivered_files"
#: dlt's record of the loads that completed into the raw zone.
RAW_LOADS = f"{RAW}/_dlt_loads"

#: What the Dask stage writes: validated, de-duplicated and pre-aggregated sales.
PREPROCESSED = "preprocessed"
#: The Dask stage's own state (not read by anything else).
PREPROCESSED_STATE = f"{PREPROCESSED}/_state"
#: The preprocessed tables partitioned by a date column, and that column.
PARTITIONED_TABLES: dict[str, str] = {
    "daily_sales": "sale_date",
    "customer_monthly": "sale_month",
}
FILE_QUALITY = f"{PREPROCESSED}/file_quality/file_quality.parquet"

#: Rows and files that broke the contract, kept with their reasons.
QUARANTINE = "quarantine"
QUARANTINE_ROWS = f"{QUARANTINE}/sales_rows"
QUARANTINE_FILES = f"{QUARANTINE}/files"

#: Reports written from the marts.
REPORTS = "reports"

#: One record per run (its summary, outcome and times), read by ``elt status``.
RUNS = "runs"

#: Copies of the warehouse (``elt backup``): ``backups/<target>/<UTC stamp>/``.
BACKUPS = "backups"

# dlt's filesystem destination names a data file ``<load_id>.<file_id>...`` and records a
# completed load as ``<schema>__<load_id>.jsonl`` in ``_dlt_loads`` (its layout setting
# ``{load_id}.{file_id}.{ext}`` and the loads table, both public).
_LOAD_ID_OF_DATA_FILE = re.compile(r"^(?P<load_id>\d+(?:\.\d+)?)\.")
_LOAD_ID_OF_MARKER = re.compile(r"__(?P<load_id>\d+(?:\.\d+)?)\.jsonl$")


def partition_path(table: str, value: str) -> str:
    """The file of one partition of a partitioned preprocessed table.

    Args:
        table: A key of :data:`PARTITIONED_TABLES`.
        value: The partition's date, ISO formatted.

    Returns:
        ``preprocessed/<table>/<column>=<value>/part-0.parquet``.
    """
    return f"{PREPROCESSED}/{table}/{PARTITIONED_TABLES[table]}={value}/part-0.parquet"


def load_id_of_data_file(path: str) -> str | None:
    """The dlt load id in a data file's name, or None when the name carries none."""
    match = _LOAD_ID_OF_DATA_FILE.match(path.rsplit("/", 1)[-1])
    return match.group("load_id") if match else None


def load_id_of_marker(path: str) -> str | None:
    """The load id a ``_dlt_loads`` file records as completed, or None for other files."""
    match = _LOAD_ID_OF_MARKER.search(path.rsplit("/", 1)[-1])
    return match.group("load_id") if match else None


def completed_load_ids(marker_paths: list[str]) -> set[str]:
    """The load ids recorded as completed by these ``_dlt_loads`` files."""
    return {load_id for path in marker_paths if (load_id := load_id_of_marker(path))}


def is_of_completed_load(path: str, completed: set[str] | None) -> bool:
    """Whether a data file belongs to a completed load.

    dlt writes data files before it records the load; files of a load not recorded (failed
    half-way, or still running) are left for a later run.

    Args:
        path: The data file.
        completed: The completed load ids, or None when the zone has no ``_dlt_loads`` at
            all (not written by dlt): then every file counts.
    """
    if completed is None:
        return True
    load_id = load_id_of_data_file(path)
    return load_id is None or load_id in completed
