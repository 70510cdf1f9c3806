"""``elt quarantine``: the quarantined sales rows and files of the lake, listed, shown, exported.

Rows are in ``quarantine/sales_rows/`` (one Parquet file per delivered sales file: the row's
fields as delivered, its raw line, reason, file, line and delivery date); whole files in
``quarantine/files/<kind>/`` (a ``.reason.json`` beside the bytes when they may be kept).
Filters apply to both: a file name (or part of it), a reason, a range of delivery dates.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from contract.drop import delivery_date_of
from contract.lake import QUARANTINE_FILES, QUARANTINE_ROWS
from storage import Lake

#: The columns shown and exported, in this order.
ROW_COLUMNS = ("_file_name", "_line_number", "_delivery_date", "reason", "_raw_line")


@dataclass(frozen=True)
class Filter:
    """Which quarantined rows and files to keep (None: any)."""

    file: str | None = None
    """A file name or a part of it (``sales_2026-01-05``)."""
    reason: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def keeps_file(self, name: str, reason: str, delivery: dt.date | None) -> bool:
        """Whether a whole quarantined file passes the filter."""
        if self.file and self.file not in name:
            return False
        if self.reason and not reason.startswith(self.reason):
            return False
        if delivery is not None and self.since and delivery < self.since:
            return False
        return not (delivery is not None and self.until and delivery > self.until)


def quarantined_rows(lake: Lake, keep: Filter) -> pa.Table:
    """The quarantined sales rows passing the filter, sorted by file and line."""
    paths = [path for path, _ in lake.list_files(QUARANTINE_ROWS)]
    empty = pa.table({c: pa.array([], pa.string()) for c in ROW_COLUMNS})
    if not paths:
        return empty
    table = lake.read_tables(paths, columns=list(ROW_COLUMNS))
    mask = pa.array([True] * table.num_rows)
    if keep.file:
        mask = pc.and_(mask, pc.match_substring(table["_file_name"], keep.file))
    if keep.reason:
        mask = pc.and_(mask, pc.equal(table["reason"], keep.reason))
    if keep.since:
        mask = pc.and_(mask, pc.greater_equal(table["_delivery_date"], keep.since))
    if keep.until:
        mask = pc.and_(mask, pc.less_equal(table["_delivery_date"], keep.until))
    kept = table.filter(mask)
    return kept.sort_by([("_file_name", "ascending"), ("_line_number", "ascending")])


def quarantined_files(lake: Lake, keep: Filter) -> list[dict[str, Any]]:
    """The whole files quarantined (unreadable, too large, links...) passing the filter."""
    found = []
    for path, _ in lake.list_files(QUARANTINE_FILES, suffix=".reason.json"):
        doc = lake.read_json(path)
        delivery = _delivery_date(doc)
        if keep.keeps_file(str(doc["file_name"]), str(doc["reason"]), delivery):
            found.append({**doc, "delivery_date": delivery})
    return sorted(found, key=lambda doc: str(doc["file_name"]))


def summary_lines(rows: pa.Table, files: list[dict[str, Any]]) -> list[str]:
    """``elt quarantine list``: whole files, then rows counted by file and reason."""
    lines = [f"{len(files)} whole files quarantined" + (":" if files else "")]
    lines += [f"  {doc['file_name']}  {_first_line(str(doc['reason']))}" for doc in files]
    by_file: dict[str, Counter[str]] = {}
    for name, reason in zip(
        rows["_file_name"].to_pylist(), rows["reason"].to_pylist(), strict=True
    ):
        by_file.setdefault(str(name), Counter())[str(reason)] += 1
    lines.append(
        f"{rows.num_rows:,} rows quarantined in {len(by_file)} files" + (":" if by_file else "")
    )
    for name, reasons in sorted(by_file.items()):
        counts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))
        lines.append(f"  {name}  {counts}")
    return lines


def row_lines(rows: pa.Table, limit: int) -> list[str]:
    """``elt quarantine show``: one line per row (file:line, reason, the line as delivered)."""
    out = []
    for row in rows.slice(0, limit).to_pylist():
        out.append(
            f"{row['_file_name']}:{row['_line_number']}  {row['reason']:<18} {row['_raw_line']}"
        )
    if rows.num_rows > limit:
        out.append(f"... {rows.num_rows - limit:,} more (--limit, or export them as CSV)")
    return out


def rows_csv(rows: pa.Table) -> bytes:
    """The rows as CSV with a header (formula-like cells are defused by the caller)."""
    sink = io.BytesIO()
    renamed = rows.rename_columns(
        ["file_name", "line_number", "delivery_date", "reason", "raw_line"]
    )
    pacsv.write_csv(renamed, sink)
    return sink.getvalue()


def _delivery_date(doc: dict[str, Any]) -> dt.date | None:
    return delivery_date_of(str(doc.get("file_name") or ""))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
