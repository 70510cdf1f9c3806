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

import copy
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.storages.fsspec_filesystem import FileItemDict
from dlt.sources import DltResource
from dlt.sources.filesystem import filesystem
from fsspec import AbstractFileSystem

from contract.lake import RAW
from storage import filesystem_for, fs_path, normalize_url

from .documents import parse_documents
from .drop_files import KIND_GLOBS, delivery_date_of, ignored_reason, link_out_of_drop
from .lake_credentials import dlt_filesystem_credentials
from .pii import require_key
from .quarantine import Quarantine
from .sales_csv import FileLimits, UnreadableFileError, parse_sales_csv, without_content

logger = logging.getLogger(__name__)

#: The dlt pipeline name of the drop -> lake direction.
PIPELINE_NAME = "drop_to_lake"
#: The lake dataset (folder) the pipeline writes.
RAW_DATASET = RAW
_TS = {"data_type": "timestamp", "timezone": True}
_TEXT = {"data_type": "text"}
_LINEAGE_COLUMNS: dict[str, dict[str, Any]] = {
    "_file_name": {**_TEXT, "nullable": False},
    "_file_modified_at": {**_TS, "nullable": False},
    "_line_number": {"data_type": "bigint", "nullable": False},
}
_PII_TEXT = {**_TEXT, "nullable": True}

#: Column hints of the lake tables (dlt column schemas).
TABLE_COLUMNS: dict[str, dict[str, dict[str, Any]]] = {
    "stores": {
        "store_id": {**_TEXT, "nullable": False},
        "opened_on": {"data_type": "date"},
        "updated_at": {**_TS},
        **{
            f"manager__{f}_{suffix}": {**_PII_TEXT}
            for f in ("name", "phone", "email")
            for suffix in ("hash", "masked")
        },
        **_LINEAGE_COLUMNS,
    },
    "products": {
        "product_id": {**_TEXT, "nullable": False},
        "unit_price": {"data_type": "decimal"},
        "updated_at": {**_TS},
        **_LINEAGE_COLUMNS,
    },
    "customers": {
        "customer_id": {**_TEXT, "nullable": False},
        "first_name": {**_TEXT},
        "birth_date": {"data_type": "date"},
        "gender": {**_TEXT},
        "city": {**_TEXT},
        "home_store_id": {**_TEXT},
        "registered_at": {**_TS},
        "updated_at": {**_TS},
        **{
            f"{f}_{suffix}": {**_PII_TEXT}
            for f in ("email", "phone", "last_name")
            for suffix in ("hash", "masked")
        },
        **_LINEAGE_COLUMNS,
    },
    "delivered_files": {
        "file_name": {**_TEXT, "nullable": False},
        "kind": {**_TEXT, "nullable": False},
        "delivery_date": {"data_type": "date"},
        "file_modified_at": {**_TS, "nullable": False},
        "size_bytes": {"data_type": "bigint"},
        "status": {**_TEXT, "nullable": False},
        "failure_reason": {**_TEXT},
        "rows_read": {"data_type": "bigint", "nullable": False},
        "load_id": {**_TEXT, "nullable": False},
    },
}

#: Primary key of every version row of the shop documents (see docs/interfaces.md).
SHOP_PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "stores": ("store_id", "_file_name", "_file_modified_at", "_line_number"),
    "products": ("product_id", "_file_name", "_file_modified_at", "_line_number"),
    "customers": ("customer_id", "_file_name", "_file_modified_at", "_line_number"),
    "delivered_files": ("file_name", "file_modified_at"),
}

_DOCUMENT_BATCH = 5_000
_ARROW_BATCH_ROWS = 250_000


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


def _table_hints(table: str) -> Any:
    primary_key = SHOP_PRIMARY_KEYS.get(table)
    return dlt.mark.make_hints(
        table_name=table,
        write_disposition="append",
        # dlt writes the column name into each column dict: give it its own copies
        columns=copy.deepcopy(TABLE_COLUMNS.get(table)),
        primary_key=list(primary_key) if primary_key else None,
    )


class _Hinter:
    """Dispatch items to their tables; each table's hints go to dlt with its first item only.

    dlt recomputes and re-validates a table's schema for every item that carries hints (about
    6 ms each); later items only name their table.
    """

    def __init__(self) -> None:
        self._sent: set[str] = set()

    def __call__(self, item: Any, hints: Any) -> Any:
        table = hints["table_name"]
        if table in self._sent:
            return dlt.mark.with_table_name(item, table)
        self._sent.add(table)
        return dlt.mark.with_hints(item, hints, create_table_variant=True)


_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bigint": pa.int64(),
}


def _documents_as_arrow(records: list[dict[str, Any]], kind: str, load_id: str) -> pa.Table | None:
    """Flat documents as one Arrow table typed like the lake table, or None when not flat.

    The Arrow path skips dlt's row-by-row normalization (the customers are hundreds of
    thousands of rows). Documents with nested values, values that do not fit their column's
    type, or time stamps without an offset return None: they take dlt's own path, which
    flattens and coerces them.
    """
    known = TABLE_COLUMNS.get(kind, {})
    names: dict[str, None] = dict.fromkeys(known)
    for record in records:
        for name, value in record.items():
            if isinstance(value, (dict, list)):
                return None
            names.setdefault(name, None)
    fields, arrays = [], []
    try:
        for name in names:
            values = [r.get(name) for r in records]
            hint = known.get(name)
            if hint is None:  # a field the contract does not name: dlt would infer its type
                array = pa.array(values)
                if pa.types.is_null(array.type):
                    continue  # dlt creates no column for a field that is always null
                fields.append(pa.field(name, array.type))
            else:
                target = _ARROW_TYPES.get(hint["data_type"])
                if target is None:
                    return None
                if name == "_file_modified_at" or hint["data_type"] in ("text", "bigint"):
                    array = pa.array(values, target)
                else:  # ISO text from the document
                    array = pa.array(values, pa.string()).cast(target)
                fields.append(pa.field(name, target, nullable=hint.get("nullable", True)))
            arrays.append(array)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None
    fields.append(pa.field("_dlt_load_id", pa.string(), nullable=False))
    arrays.append(pa.repeat(pa.scalar(load_id), len(records)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _ignored_files(source_fs: AbstractFileSystem, root: str, stats: _RunStats) -> Any:
    """The resource that records the drop's files the contract does not name: one
    ``delivered_files`` row per new version (kind and status ``ignored``); never read.

    It lists the drop itself (``find``): dlt's listing, a glob, does not show hidden files.
    """
    delivered_hints = _table_hints("delivered_files")
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
            previous = seen.get(file_name)
            if previous is not None and dt.datetime.fromisoformat(previous) >= modified:
                continue
            seen[file_name] = modified.isoformat()
            stats.ignored.append(FailedFile(file_name, "ignored", reason))
            logger.warning("not read %s: %s", file_name, reason)
            rows.append(
                {
                    "file_name": file_name,
                    "kind": "ignored",
                    "delivery_date": delivery_date_of(file_name),
                    "file_modified_at": modified,
                    "size_bytes": info.get("size"),
                    "status": "ignored",
                    "failure_reason": reason,
                    "rows_read": 0,
                    "load_id": load_id,
                }
            )
        if rows:
            yield dlt.mark.with_hints(rows, delivered_hints, create_table_variant=True)

    return record_ignored


def _file_reader(
    kind: str, key: bytes, quarantine: Quarantine, stats: _RunStats, limits: FileLimits
) -> Any:
    """Build the transformer that reads new file versions of one kind."""

    table_hints = _table_hints(kind)
    delivered_hints = _table_hints("delivered_files")
    _hinted = _Hinter()

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
                yield _hinted(pa.concat_tables(pending, promote_options="default"), table_hints)
                pending = []
            file_name = item["relative_path"]
            if ignored_reason(file_name) is not None:
                continue  # reported by ignored_files()
            modified = _as_utc(item["modification_date"])
            previous = seen.get(file_name)
            if previous is not None and dt.datetime.fromisoformat(previous) >= modified:
                continue
            failure = link_out_of_drop(item)
            if failure is None and kind == "sales" and delivery_date_of(file_name) is None:
                failure = (
                    "bad_file_name: a sales file is named sales_<YYYY-MM-DD>.csv[.gz] with a "
                    "real date (its delivery date); it was not read"
                )
            if failure is None and int(item.get("size_in_bytes") or 0) > limits.max_file_bytes:
                failure = limits.too_large(int(item["size_in_bytes"]))  # not even read
            data = None if failure else item.read_bytes()
            rows_read = 0
            try:
                if data is not None:
                    if kind == "sales":
                        table = parse_sales_csv(
                            data,
                            file_name=file_name,
                            delivery_date=delivery_date_of(file_name),
                            file_modified_at=modified,
                            limits=limits,
                        )
                        rows_read = table.num_rows
                        table = table.append_column(
                            "_dlt_load_id", pa.repeat(pa.scalar(load_id), rows_read)
                        )
                        if rows_read:
                            pending.append(table)
                    else:
                        records = parse_documents(
                            data,
                            kind=kind,
                            file_name=file_name,
                            file_modified_at=modified,
                            key=key,
                            undeclared=stats.undeclared.setdefault(kind, set()),
                            limits=limits,
                        )
                        rows_read = len(records)
                        table = _documents_as_arrow(records, kind, load_id) if records else None
                        if table is not None:
                            pending.append(table)
                        else:
                            for start in range(0, len(records), _DOCUMENT_BATCH):
                                yield _hinted(records[start : start + _DOCUMENT_BATCH], table_hints)
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
            yield _hinted(
                [
                    {
                        "file_name": file_name,
                        "kind": kind,
                        "delivery_date": delivery_date_of(file_name),
                        "file_modified_at": modified,
                        "size_bytes": item.get("size_in_bytes", len(data or b"")),
                        "status": "loaded" if failure is None else "failed",
                        "failure_reason": failure,
                        "rows_read": rows_read,
                        "load_id": load_id,
                    }
                ],
                delivered_hints,
            )
        if pending:
            yield _hinted(pa.concat_tables(pending, promote_options="default"), table_hints)

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
        reader = _file_reader(kind, key, quarantine, stats, limits or FileLimits())
        resources.append(listing | reader)
    resources.append(_ignored_files(source_fs, fs_path(source_fs, source_url), stats))
    return resources


@contextmanager
def _working_dir(pipelines_dir: str | None) -> Iterator[str]:
    if pipelines_dir is not None:
        yield pipelines_dir
        return
    path = tempfile.mkdtemp(prefix=f"elt-dlt-{os.getpid()}-")  # see orchestration/leftovers.py
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
    with _working_dir(pipelines_dir) as workdir:
        pipeline = dlt.pipeline(
            pipeline_name=PIPELINE_NAME,
            pipelines_dir=workdir,
            destination=destination,
            dataset_name=RAW_DATASET,
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
