"""What the stage's two runs report: the result types, and the load's counts as it reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FailedFile:
    """A delivered file version that could not be read."""

    file_name: str
    kind: str
    reason: str


@dataclass
class ExtractResult:
    """What one drop -> lake run did."""

    files_read: dict[str, int] = field(default_factory=dict)
    """File versions read per kind (loaded and failed)."""
    files_loaded: dict[str, int] = field(default_factory=dict)
    """File versions read successfully per kind."""
    rows_written: dict[str, int] = field(default_factory=dict)
    """Rows written to the lake per table (dlt's normalize counts, dlt tables excluded)."""
    failed_files: list[FailedFile] = field(default_factory=list)
    ignored_files: list[FailedFile] = field(default_factory=list)
    """New versions of files of the drop the contract does not name (hidden, in another
    folder, another suffix): not read, recorded in ``delivered_files`` as ``ignored``."""
    undeclared_fields: dict[str, list[str]] = field(default_factory=dict)
    """Per kind, the fields the contract does not name that this run met (kept only
    pseudonymized: ``undeclared__<field>_hash`` and ``_masked``)."""
    load_ids: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed_files


@dataclass
class LoadResult:
    """What one lake -> warehouse run did."""

    target: str
    files_read: dict[str, int] = field(default_factory=dict)
    """Lake files read per table."""
    rows_written: dict[str, int] = field(default_factory=dict)
    """Rows written to the warehouse per table."""
    partitions_replaced: dict[str, list[str]] = field(default_factory=dict)
    """Partition values replaced per partitioned table (emptied ones included)."""
    partitions_emptied: dict[str, list[str]] = field(default_factory=dict)
    failed_files: list[FailedFile] = field(default_factory=list)
    """Drop files recorded as failed in the ``delivered_files`` rows loaded by this run."""
    load_ids: list[str] = field(default_factory=list)
    loader_file_formats: list[str] = field(default_factory=list)
    """File formats of the completed load jobs (``parquet`` for DuckDB, ``csv`` for Postgres)."""
    tables_changed: dict[str, list[str]] = field(default_factory=dict)
    """Per dataset (schema), the tables whose rows this run changed: written, replaced or
    emptied, and ``_dlt_loads`` when a load completed there. What the dbt build downstream
    must recompute (orchestration selects the dbt nodes these tables reach)."""
    duration_s: float = 0.0


@dataclass
class LoadStats:
    """What the lake -> warehouse sources count while dlt extracts them (its result's parts)."""

    files_read: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, list[str]] = field(default_factory=dict)
    """Partition values replaced per table: their rows are deleted before the load's appends."""
    emptied: dict[str, list[str]] = field(default_factory=dict)
    failed: list[FailedFile] = field(default_factory=list)

    def add(self, table: str, files: int, rows: int) -> None:
        """Count ``files`` lake files read and ``rows`` rows handed to dlt for ``table``."""
        self.files_read[table] = self.files_read.get(table, 0) + files
        self.rows[table] = self.rows.get(table, 0) + rows

    def fill(self, result: LoadResult) -> None:
        """Copy the counts into ``result``."""
        result.files_read = dict(self.files_read)
        result.rows_written = dict(self.rows)
        result.partitions_replaced = {k: list(v) for k, v in self.replaced.items()}
        result.partitions_emptied = {k: list(v) for k, v in self.emptied.items()}
        result.failed_files = list(self.failed)
