"""Hand-written lake inputs in exactly the layout the ingestion stage writes with dlt.

``raw/sales/<load_id>.<file_id>.parquet``: the nine contract columns as text plus
``_file_name``, ``_delivery_date`` (date), ``_file_modified_at`` (timestamp UTC),
``_line_number``, ``_malformed``, ``_raw_line`` and dlt's ``_dlt_load_id`` / ``_dlt_id``;
``raw/delivered_files/<load_id>.<file_id>.parquet``: one row per file version read.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from contract.sales import SALES_COLUMNS

HEADER = SALES_COLUMNS

T0 = datetime(2026, 2, 1, 6, 0, tzinfo=UTC)


def sale(
    sale_id: str,
    sale_ts: str = "2026-01-10T12:00:00+03:00",
    store_id: str = "ST-001",
    customer_id: str = "CU-000001",
    product_id: str = "PR-0001",
    quantity: str = "2",
    unit_price: str = "89.90",
    sale_amount: str | None = None,
    region: str = "North",
) -> tuple[str | None, ...]:
    """One delivered sales record as text (sale_amount defaults to a correct quantity × price)."""
    if sale_amount is None:
        try:
            sale_amount = str(Decimal(quantity) * Decimal(unit_price))
        except InvalidOperation:
            sale_amount = "1.00"
    return (
        sale_id,
        sale_ts,
        store_id,
        customer_id,
        product_id,
        quantity,
        unit_price,
        sale_amount,
        region,
    )


class Malformed:
    """A record that did not split into nine fields."""

    def __init__(self, raw_line: str) -> None:
        self.raw_line = raw_line


class LakeBuilder:
    """Writes raw sales file versions into a lake, the way the ingestion stage does."""

    def __init__(self, lake_url: str, storage_options: dict | None = None) -> None:
        self.lake_url = lake_url.rstrip("/")
        self.storage_options = storage_options
        self.fs: fsspec.AbstractFileSystem
        self.fs, self.root = url_to_fs(self.lake_url, **(storage_options or {}))
        self._tick = 0

    def _write(self, rel: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=3)
        path = f"{self.root.rstrip('/')}/{rel}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            fh.write(buf.getvalue())

    def deliver(
        self,
        file_name: str,
        rows: Sequence[tuple[str | None, ...] | Malformed],
        *,
        modified_at: datetime | None = None,
        delivery_date: date | None = None,
        complete: bool = True,
    ) -> datetime:
        """Write one version of a sales file (one dlt load).

        Args:
            file_name: Relative to the drop, e.g. ``sales/sales_2026-01-10.csv.gz``.
            rows: Records in file order (line 2 onwards), tuples of the nine fields or
                :class:`Malformed`.
            modified_at: The version's modification time (default: a new, later time).
            delivery_date: Default: the date in the file name.
            complete: Whether the load is recorded as completed in ``raw/_dlt_loads``.

        Returns:
            The version's modification time.
        """
        self._tick += 1
        modified_at = modified_at or T0 + timedelta(hours=self._tick)
        if delivery_date is None:
            delivery_date = date.fromisoformat(re.search(r"\d{4}-\d{2}-\d{2}", file_name)[0])
        load_id = f"{1_700_000_000 + self._tick}.{uuid.uuid4().int % 1_000_000:06d}"
        cols: dict[str, list] = {c: [] for c in HEADER}
        malformed: list[str | None] = []
        raw_lines: list[str | None] = []
        for row in rows:
            if isinstance(row, Malformed):
                for c in HEADER:
                    cols[c].append(None)
                malformed.append(
                    f"wrong_field_count: expected 9, got {len(row.raw_line.split(','))}"
                )
                raw_lines.append(row.raw_line)
            else:
                for c, v in zip(HEADER, row, strict=True):
                    cols[c].append(v)
                malformed.append(None)
                raw_lines.append(None)
        n = len(rows)
        table = pa.table(
            {
                **{c: pa.array(cols[c], pa.string()) for c in HEADER},
                "_file_name": pa.array([file_name] * n, pa.string()),
                "_delivery_date": pa.array([delivery_date] * n, pa.date32()),
                "_file_modified_at": pa.array([modified_at] * n, pa.timestamp("us", tz="UTC")),
                "_line_number": pa.array(range(2, n + 2), pa.int64()),
                "_malformed": pa.array(malformed, pa.string()),
                "_raw_line": pa.array(raw_lines, pa.string()),
                "_dlt_load_id": pa.array([load_id] * n, pa.string()),
                "_dlt_id": pa.array([uuid.uuid4().hex[:14] for _ in range(n)], pa.string()),
            }
        )
        self._write(f"raw/sales/{load_id}.{uuid.uuid4().hex[:10]}.parquet", table)
        self._delivered(file_name, delivery_date, modified_at, "loaded", None, n, load_id)
        if complete:
            self.complete(load_id)
        self.last_load_id = load_id
        return modified_at

    def complete(self, load_id: str) -> None:
        """Record a load as completed in ``raw/_dlt_loads``, as dlt does at its end."""
        path = f"{self.root.rstrip('/')}/raw/_dlt_loads/drop__{load_id}.jsonl"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            fh.write(b'{"load_id": "%s", "status": 0}\n' % load_id.encode())

    def fail(
        self,
        file_name: str,
        reason: str = "corrupt gzip",
        *,
        modified_at: datetime | None = None,
    ) -> datetime:
        """Record a sales file version that could not be read at all (no rows in raw/sales)."""
        self._tick += 1
        modified_at = modified_at or T0 + timedelta(hours=self._tick)
        delivery_date = date.fromisoformat(re.search(r"\d{4}-\d{2}-\d{2}", file_name)[0])
        load_id = f"{1_700_000_000 + self._tick}.{uuid.uuid4().int % 1_000_000:06d}"
        self._delivered(file_name, delivery_date, modified_at, "failed", reason, 0, load_id)
        self.complete(load_id)
        return modified_at

    def _delivered(
        self,
        file_name: str,
        delivery_date: date,
        modified_at: datetime,
        status: str,
        reason: str | None,
        rows_read: int,
        load_id: str,
    ) -> None:
        table = pa.table(
            {
                "file_name": pa.array([file_name], pa.string()),
                "kind": pa.array(["sales"], pa.string()),
                "delivery_date": pa.array([delivery_date], pa.date32()),
                "file_modified_at": pa.array([modified_at], pa.timestamp("us", tz="UTC")),
                "size_bytes": pa.array([1234], pa.int64()),
                "status": pa.array([status], pa.string()),
                "failure_reason": pa.array([reason], pa.string()),
                "rows_read": pa.array([rows_read], pa.int64()),
                "load_id": pa.array([load_id], pa.string()),
                "_dlt_load_id": pa.array([load_id], pa.string()),
                "_dlt_id": pa.array([uuid.uuid4().hex[:14]], pa.string()),
            }
        )
        self._write(f"raw/delivered_files/{load_id}.{uuid.uuid4().hex[:10]}.parquet", table)
