"""Drop -> lake: the dlt pipeline that reads a drop into the lake's ``raw/`` zone.

Each kind of file (stores, products, customers, sales) is listed by dlt's ``filesystem``
resource and read by a transformer. A file version is read once: the transformer keeps, in
dlt's resource state, the modification time of the last version read of every file, and reads
a file again only when it comes with a newer one (a re-delivery). dlt keeps that state in the
lake itself (``raw/_dlt_pipeline_state``), so a worker without a local disk restores it.

A max-value cursor (``dlt.sources.incremental("modification_date")``) is not used on purpose:
it would skip a file that arrives late with an older modification time (copied with preserved
times, or uploaded out of order); the per-file map reads exactly the versions not read yet.

Personal data is pseudonymized in the readers, before dlt sees the records. A file that cannot
be read is quarantined (``quarantine/files/<kind>/``) with its reason and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem
from fsspec import AbstractFileSystem

from contract.drop import delivery_date_of
from contract.lake import RAW
from storage import filesystem_for, fs_path, normalize_url

from .documents import parse_documents
from .drop_files import KIND_GLOBS, ignored_reason, link_out_of_drop
from .lake_credentials import dlt_filesystem_credentials
from .lake_tables import TableHinter, delivered_file_row, documents_as_arrow, table_hints
from .pii import require_key
from .pipelines import DROP_PIPELINE_NAME, pipelines_working_dir
from .quarantine import Quarantine
from .results import ExtractResult, FailedFile
from .sales_csv import FileLimits, UnreadableFileError, parse_sales_csv, without_content

logger = logging.getLogger(__name__)

_DOCUMENT_BATCH = 5_000
_ARROW_BATCH_ROWS = 250_000
_BAD_SALES_NAME = (
    "bad_file_name: a sales file is named sales_<YYYY-MM-DD>.csv[.gz] with a "
    "real date (its delivery date); it was not read"
)


@dataclass
class _RunStats:
    files_read: dict[str, int] = field(default_factory=dict)
    files_loaded: dict[str, int] = field(default_factory=dict)
    failed: list[FailedFile] = field(default_factory=list)
    undeclared: dict[str, set[str]] = field(default_factory=dict)
    ignored: list[FailedFile] = field(default_factory=list)

    def count(self, kind: str, ok: bool) -> None:
        self.files_read[kind] = self.files_read.get(kind, 0) + 1
        if ok:
            self.files_loaded[kind] = self.files_loaded.get(kind, 0) + 1


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _is_read_already(seen: dict[str, str], file_name: str, modified: dt.datetime) -> bool:
    """True when the version of ``file_name`` read last is not older than ``modified``."""
    previous = seen.get(file_name)
    return previous is not None and dt.datetime.fromisoformat(previous) >= modified


def _ignored_files(source_fs: AbstractFileSystem, root: str, stats: _RunStats) -> Any:
    """The resource that records the drop's files the contract does not name: one
    ``delivered_files`` row per new version (kind and status ``ignored``); never read.

    It lists the drop itself (``find``): dlt's listing, a glob, does not show hidden files.
    """
    delivered_hints = table_hints("delivered_files")
    root = root.rstrip("/")

    @dlt.resource(name="ignored_files", write_disposition="append")
    def record_ignored() -> Iterator[Any]:
        seen: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
        load_id = dlt.current.load_package_state()["load_id"]
        rows = []
        for path, info in sorted(source_fs.find(root, detail=True).items()):
            file_name = path[len(root) :].lstrip("/")
            reason = ignored_reason(file_name)
            if reason is None:
                continue
            modified = _as_utc(source_fs.modified(path))
            if _is_read_already(seen, file_name, modified):
                continue
            seen[file_name] = modified.isoformat()
            stats.ignored.append(FailedFile(file_name, "ignored", reason))
            logger.warning("not read %s: %s", file_name, reason)
            rows.append(
                delivered_file_row(
                    file_name,
                    "ignored",
                    delivery_date=delivery_date_of(file_name),
                    modified=modified,
                    size_bytes=info.get("size"),
                    status="ignored",
                    failure_reason=reason,
                    rows_read=0,
                    load_id=load_id,
                )
            )
        if rows:
            yield dlt.mark.with_hints(rows, delivered_hints, create_table_variant=True)

    return record_ignored


def _failure_before_reading(
    kind: str, item: FileItemDict, file_name: str, limits: FileLimits
) -> str | None:
    """Why a listed file version is quarantined without being read, or None to read it."""
    failure = link_out_of_drop(item)
    if failure is None and kind == "sales" and delivery_date_of(file_name) is None:
        failure = _BAD_SALES_NAME
    if failure is None and int(item.get("size_in_bytes") or 0) > limits.max_file_bytes:
        failure = limits.too_large(int(item["size_in_bytes"]))  # not even read
    return failure


@dataclass
class _Reading:
    """What one reader needs besides the file: the PII key, the run's limits and counts."""

    kind: str
    key: bytes
    limits: FileLimits
    stats: _RunStats


def _parse_file(
    reading: _Reading, data: bytes, file_name: str, modified: dt.datetime, load_id: str
) -> tuple[int, pa.Table | None, list[dict[str, Any]]]:
    """Parse one file version's bytes.

    Returns:
        The rows read; the rows as Arrow (None when empty, or for documents dlt must
        normalize); the documents dlt must normalize itself (empty when Arrow).

    Raises:
        UnreadableFileError: the file breaks the contract (it is quarantined).
    """
    if reading.kind == "sales":
        table = parse_sales_csv(
            data,
            file_name=file_name,
            delivery_date=delivery_date_of(file_name),
            file_modified_at=modified,
            limits=reading.limits,
        )
        rows_read = table.num_rows
        table = table.append_column("_dlt_load_id", pa.repeat(pa.scalar(load_id), rows_read))
        return rows_read, table if rows_read else None, []
    records = parse_documents(
        data,
        kind=reading.kind,
        file_name=file_name,
        file_modified_at=modified,
        key=reading.key,
        undeclared=reading.stats.undeclared.setdefault(reading.kind, set()),
        limits=reading.limits,
    )
    table = documents_as_arrow(records, reading.kind, load_id) if records else None
    return len(records), table, [] if table is not None else records


def _file_reader(reading: _Reading, quarantine: Quarantine) -> Any:
    """Build the transformer that reads new file versions of one kind."""
    kind, stats = reading.kind, reading.stats
    kind_hints = table_hints(kind)
    delivered_hints = table_hints("delivered_files")
    hinted = TableHinter()

    @dlt.transformer(name=kind, write_disposition="append")
    def read_files(items: list[FileItemDict]) -> Iterator[Any]:
        """Read the file versions not read before.

        Args:
            items: a page of files listed by the filesystem resource.

        Yields:
            The records (Arrow tables for sales, dicts for documents) and one
            ``delivered_files`` row per file version read.
        """
        seen: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
        load_id = dlt.current.load_package_state()["load_id"]
        # Arrow tables go to dlt in batches: dlt recomputes the table schema for every Arrow
        # item (about 6 ms), which would cost more than small files' rows.
        pending: list[pa.Table] = []
        for item in sorted(items, key=lambda i: i["relative_path"]):
            if sum(t.num_rows for t in pending) >= _ARROW_BATCH_ROWS:
                yield hinted(pa.concat_tables(pending, promote_options="default"), kind_hints)
                pending = []
            file_name = item["relative_path"]
            if ignored_reason(file_name) is not None:
                continue  # reported by ignored_files()
            modified = _as_utc(item["modification_date"])
            if _is_read_already(seen, file_name, modified):
                continue
            failure = _failure_before_reading(kind, item, file_name, reading.limits)
            data = None if failure else item.read_bytes()
            rows_read = 0
            try:
                if data is not None:
                    rows_read, table, records = _parse_file(
                        reading, data, file_name, modified, load_id
                    )
                    if table is not None:
                        pending.append(table)
                    for start in range(0, len(records), _DOCUMENT_BATCH):
                        yield hinted(records[start : start + _DOCUMENT_BATCH], kind_hints)
            except UnreadableFileError as exc:
                failure = exc.reason
            except Exception as exc:  # a reader bug must not stop the other files
                logger.exception("unexpected error reading %s", file_name)
                failure = f"unreadable: {type(exc).__name__}: {without_content(exc)}"
            if failure is None:
                quarantine.clear(kind, file_name)
                logger.info("read %s: %d rows", file_name, rows_read)
            else:
                quarantine.put(kind, file_name, data, failure, modified)
                stats.failed.append(FailedFile(file_name, kind, failure))
                logger.warning("quarantined %s: %s", file_name, failure)
            stats.count(kind, failure is None)
            seen[file_name] = modified.isoformat()
            row = delivered_file_row(
                file_name,
                kind,
                delivery_date=delivery_date_of(file_name),
                modified=modified,
                size_bytes=item.get("size_in_bytes", len(data or b"")),
                status="loaded" if failure is None else "failed",
                failure_reason=failure,
                rows_read=rows_read,
                load_id=load_id,
            )
            yield hinted([row], delivered_hints)
        if pending:
            yield hinted(pa.concat_tables(pending, promote_options="default"), kind_hints)

    return read_files


@dlt.source(name="drop", max_table_nesting=1)
def drop_source(
    source_url: str,
    source_fs: AbstractFileSystem,
    key: bytes,
    quarantine: Quarantine,
    stats: _RunStats,
    limits: FileLimits | None = None,
) -> list[DltResource]:
    """The dlt source of a drop: one reader per kind of file.

    Args:
        source_url: the drop's URL (normalized).
        source_fs: an fsspec file system for it.
        key: the PII key as bytes.
        quarantine: where unreadable files go.
        stats: collects per-kind counts and failures for the run's result.
        limits: what one file may cost (default :class:`FileLimits`).

    Returns:
        The resources ``stores``, ``products``, ``customers``, ``sales`` (each also writing
        ``delivered_files``).
    """
    resources = []
    for kind, glob in KIND_GLOBS.items():
        listing = filesystem(bucket_url=source_url, credentials=source_fs, file_glob=glob)
        listing = listing.with_name(f"list_{kind}")
        reading = _Reading(kind, key, limits or FileLimits(), stats)
        reader = _file_reader(reading, quarantine)
        resources.append(listing | reader)
    resources.append(_ignored_files(source_fs, fs_path(source_fs, source_url), stats))
    return resources


def extract_to_lake(
    source_url: str,
    lake_url: str,
    *,
    pii_key: str,
    source_storage_options: dict | None = None,
    lake_storage_options: dict | None = None,
    pipelines_dir: str | None = None,
    limits: FileLimits | None = None,
) -> ExtractResult:
    """Read the drop's new and re-delivered files into the lake's ``raw/`` zone.

    Args:
        source_url: the drop (local path or any fsspec URL).
        lake_url: the lake root (local path or ``s3://bucket/prefix``).
        pii_key: the secret key for pseudonymizing personal data; must be non-empty.
        source_storage_options: fsspec options for the drop.
        lake_storage_options: fsspec options for the lake (s3fs style).
        pipelines_dir: dlt's local working directory. None means a temporary one removed
            after the run: the pipeline's state is restored from the lake every time.
        limits: what one file may cost (default :class:`FileLimits`): a larger file is
            quarantined as ``too_large``, a longer sales record as ``record_too_long``.

    Returns:
        Counts per kind and table, the failed files and the dlt load ids.

    Raises:
        MissingPiiKeyError: when ``pii_key`` is empty.
    """
    key = require_key(pii_key)
    started = time.monotonic()
    source = normalize_url(source_url)
    lake = normalize_url(lake_url)
    source_fs = filesystem_for(source, source_storage_options)
    lake_fs = filesystem_for(lake, lake_storage_options)
    stats = _RunStats()
    quarantine = Quarantine(lake_fs, fs_path(lake_fs, lake))
    destination = dlt.destinations.filesystem(
        bucket_url=lake, credentials=dlt_filesystem_credentials(lake, lake_storage_options)
    )
    with pipelines_working_dir(pipelines_dir) as workdir:
        pipeline = dlt.pipeline(
            pipeline_name=DROP_PIPELINE_NAME,
            pipelines_dir=workdir,
            destination=destination,
            dataset_name=RAW,
        )
        logger.info("extracting %s into %s", source, lake)
        info = pipeline.run(
            drop_source(source, source_fs, key, quarantine, stats, limits),
            loader_file_format="parquet",
        )
        info.raise_on_failed_jobs()
        normalize_info = pipeline.last_trace.last_normalize_info
        row_counts = dict(normalize_info.row_counts) if normalize_info else {}
    result = ExtractResult(
        files_read=dict(stats.files_read),
        files_loaded=dict(stats.files_loaded),
        rows_written={t: n for t, n in row_counts.items() if not t.startswith("_dlt")},
        failed_files=list(stats.failed),
        ignored_files=list(stats.ignored),
        undeclared_fields={k: sorted(v) for k, v in stats.undeclared.items() if v},
        load_ids=list(info.loads_ids),
        duration_s=time.monotonic() - started,
    )
    logger.info(
        "drop -> lake done in %.1fs: files %s, rows %s, failed %d",
        result.duration_s,
        result.files_read,
        result.rows_written,
        len(result.failed_files),
    )
    return result
