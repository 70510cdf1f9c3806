"""Read one sales CSV file version into an Arrow table of raw text (``raw/sales`` layout).

The whole file is parsed by pyarrow's CSV reader with every column as a string, so nothing is
lost before validation. Records with the wrong number of fields are kept as rows with
``_malformed`` and ``_raw_line``. Physical line numbers are worked out with numpy over the
file's bytes (quote-aware), never per row in Python.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import logging
import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

logger = logging.getLogger(__name__)

#: The header of a sales file, exactly, in order (contract §3).
SALES_COLUMNS: tuple[str, ...] = (
    "sale_id",
    "sale_ts",
    "store_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
    "sale_amount",
    "region",
)

#: The Arrow schema of ``raw/sales`` rows.
RAW_SALES_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in SALES_COLUMNS]
    + [
        pa.field("_file_name", pa.string()),
        pa.field("_delivery_date", pa.date32()),
        pa.field("_file_modified_at", pa.timestamp("us", tz="UTC")),
        pa.field("_line_number", pa.int64()),
        pa.field("_malformed", pa.string()),
        pa.field("_raw_line", pa.string()),
    ]
)

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


def without_content(exc: BaseException) -> str:
    """An error's message without the file's text it may quote (Arrow quotes the offending
    row, gzip the first bytes): failure reasons go into summaries and alerts."""
    message = str(exc)
    if message.startswith("CSV parse error:"):
        return ": ".join(message.split(": ")[:2])
    return re.sub(r"\s*\(b['\"].*['\"]\)$", "", message)


class UnreadableFileError(Exception):
    """A delivered file that cannot be read at all; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decompress(data: bytes, file_name: str) -> bytes:
    """Return the file's bytes, gunzipped when it is gzip (by name or by magic number).

    Args:
        data: the file's bytes as delivered.
        file_name: its name (``.gz`` means gzip).

    Returns:
        The uncompressed bytes.

    Raises:
        UnreadableFileError: when the gzip stream is corrupt or truncated.
    """
    if file_name.endswith(".gz") or data.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFileError(f"corrupt_gzip: {without_content(exc)}") from exc
    return data


def record_start_lines(text: bytes) -> np.ndarray:
    """Physical line number (1-based) at which each non-blank CSV record starts.

    A newline ends a record unless it is inside a quoted field (an odd number of quote
    characters before it). Blank lines are not records, as in pyarrow's reader.

    Args:
        text: the uncompressed CSV bytes.

    Returns:
        int64 array, one entry per record (header included), in file order.
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    if buf.size == 0:
        return np.zeros(0, dtype=np.int64)
    newlines = np.flatnonzero(buf == 0x0A)
    inside_quotes = np.bitwise_xor.accumulate((buf == 0x22).astype(np.uint8))
    terminators = newlines[inside_quotes[newlines] == 0]
    starts = np.concatenate([np.zeros(1, dtype=np.int64), terminators.astype(np.int64) + 1])
    starts = starts[starts < buf.size]
    first = buf[starts]
    nxt = buf[np.minimum(starts + 1, buf.size - 1)]
    blank = (first == 0x0A) | ((first == 0x0D) & ((nxt == 0x0A) | (starts + 1 >= buf.size)))
    starts = starts[~blank]
    return np.searchsorted(newlines, starts, side="left").astype(np.int64) + 1


def _check_header(text: bytes) -> None:
    body = text[len(_BOM) :] if text.startswith(_BOM) else text
    first_line = body.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        decoded = first_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError("not_csv: the header is not UTF-8 text") from exc
    try:
        header = next(csv.reader(io.StringIO(decoded)), [])
    except csv.Error as exc:
        raise UnreadableFileError(f"not_csv: {exc}") from exc
    if tuple(header) != SALES_COLUMNS:
        # Say how it differs, never what it holds: the reason goes to summaries and alerts.
        raise UnreadableFileError(
            f"wrong_header: expected the {len(SALES_COLUMNS)} columns "
            f"{','.join(SALES_COLUMNS)}; the first line has {len(header)} fields and "
            f"{sum(name in SALES_COLUMNS for name in header)} of these names"
        )


def parse_sales_csv(
    data: bytes,
    *,
    file_name: str,
    delivery_date: dt.date | None,
    file_modified_at: dt.datetime,
) -> pa.Table:
    """Parse one sales file version into ``raw/sales`` rows.

    Args:
        data: the file's bytes as delivered (gzip or plain).
        file_name: the file's path relative to the drop, e.g. ``sales/sales_2026-01-10.csv.gz``.
        delivery_date: the date in the file name.
        file_modified_at: the version's modification time (timezone-aware).

    Returns:
        A table with :data:`RAW_SALES_SCHEMA`, sorted by ``_line_number``.

    Raises:
        UnreadableFileError: corrupt gzip, a header that does not match, or not CSV.
    """
    text = decompress(data, file_name)
    _check_header(text)
    malformed: list[tuple[int, str, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        malformed.append((int(row.number or 0), row.text, int(row.actual_columns)))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(text),
            read_options=pacsv.ReadOptions(
                skip_rows=1, column_names=list(SALES_COLUMNS), use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(SALES_COLUMNS, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"not_csv: {without_content(exc)}") from exc

    starts = record_start_lines(text)
    n_good, n_bad = table.num_rows, len(malformed)
    # Record ordinals as pyarrow counts them: header is 1, first record 2, blank lines skipped.
    bad_ordinals = np.array([m[0] for m in malformed], dtype=np.int64)
    all_ordinals = np.arange(2, n_good + n_bad + 2, dtype=np.int64)
    good_ordinals = all_ordinals[~np.isin(all_ordinals, bad_ordinals)]
    if starts.size == n_good + n_bad + 1 and good_ordinals.size == n_good:
        good_lines = starts[good_ordinals - 1]
        bad_lines = starts[bad_ordinals - 1] if n_bad else bad_ordinals
    else:  # pragma: no cover - the scan and pyarrow disagree on record boundaries
        logger.warning(
            "%s: could not map records to physical lines (%d starts, %d records); "
            "using record numbers",
            file_name,
            starts.size,
            n_good + n_bad + 1,
        )
        good_lines = good_ordinals[:n_good]
        bad_lines = bad_ordinals

    modified = pa.scalar(file_modified_at, type=pa.timestamp("us", tz="UTC"))
    delivery = pa.scalar(delivery_date, type=pa.date32())
    good = table.append_column("_file_name", pa.repeat(pa.scalar(file_name), n_good))
    good = good.append_column("_delivery_date", pa.repeat(delivery, n_good))
    good = good.append_column("_file_modified_at", pa.repeat(modified, n_good))
    good = good.append_column("_line_number", pa.array(good_lines, type=pa.int64()))
    good = good.append_column("_malformed", pa.nulls(n_good, pa.string()))
    good = good.append_column("_raw_line", pa.nulls(n_good, pa.string()))
    if not n_bad:
        return good.cast(RAW_SALES_SCHEMA)
    bad_columns: dict[str, pa.Array] = {
        name: pa.nulls(n_bad, pa.string()) for name in SALES_COLUMNS
    }
    bad_columns.update(
        _file_name=pa.repeat(pa.scalar(file_name), n_bad),
        _delivery_date=pa.repeat(delivery, n_bad),
        _file_modified_at=pa.repeat(modified, n_bad),
        _line_number=pa.array(bad_lines, type=pa.int64()),
        _malformed=pa.array(
            [f"wrong_field_count: expected {len(SALES_COLUMNS)}, got {m[2]}" for m in malformed],
            type=pa.string(),
        ),
        _raw_line=pa.array([m[1] for m in malformed], type=pa.string()),
    )
    bad = pa.table(bad_columns, schema=RAW_SALES_SCHEMA)
    combined = pa.concat_tables([good.cast(RAW_SALES_SCHEMA), bad])
    return combined.take(pc.sort_indices(combined, sort_keys=[("_line_number", "ascending")]))
