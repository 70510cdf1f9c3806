"""Read one sales CSV file version into an Arrow table of raw text (``raw/sales`` layout).

The whole file is parsed by pyarrow's CSV reader with every column as a string, so nothing is
lost before validation. Records with the wrong number of fields are kept as rows with
``_malformed`` and ``_raw_line``. Physical line numbers are worked out with numpy over the
file's bytes (quote-aware), never per row in Python.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from contract.sales import SALES_COLUMNS

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class FileLimits:
    """What one delivered file may cost the extract (settings ``ELT_MAX_FILE_MB`` and
    ``ELT_MAX_RECORD_KB``): its size once uncompressed, and the length of one record."""

    max_file_bytes: int = 1024 * 2**20
    max_record_bytes: int = 64 * 2**10

    def too_large(self, size: int) -> str:
        return (
            f"too_large: more than {self.max_file_bytes // 2**20} MB uncompressed "
            "(ELT_MAX_FILE_MB); it was not loaded"
        )


def decompress(data: bytes, file_name: str, limits: FileLimits | None = None) -> bytes:
    """Return the file's bytes, gunzipped when it is gzip (by name or by magic number).

    The gzip stream is inflated piece by piece and given up as soon as it passes
    ``limits.max_file_bytes``: a small file that inflates to gigabytes costs no more memory
    than the limit.

    Args:
        data: the file's bytes as delivered.
        file_name: its name (``.gz`` means gzip).
        limits: the limits of one file (default :class:`FileLimits`).

    Returns:
        The uncompressed bytes.

    Raises:
        UnreadableFileError: when the gzip stream is corrupt or truncated, or the file is
            larger than the limit.
    """
    limit = (limits or FileLimits()).max_file_bytes
    if not (file_name.endswith(".gz") or data.startswith(_GZIP_MAGIC)):
        if len(data) > limit:
            raise UnreadableFileError((limits or FileLimits()).too_large(len(data)))
        return data
    out = bytearray()
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # one gzip member
            while rest and not inflater.eof:
                out += inflater.decompress(rest, limit + 1 - len(out))
                if len(out) > limit:
                    raise UnreadableFileError((limits or FileLimits()).too_large(len(out)))
                rest = inflater.unconsumed_tail
            if not inflater.eof:
                raise UnreadableFileError("corrupt_gzip: the gzip stream is truncated")
            rest = inflater.unused_data  # a next member (concatenated gzip files)
            if rest and not rest.lstrip(b"\0"):
                break  # trailing zero padding, as gzip.decompress accepts it
    except zlib.error as exc:
        raise UnreadableFileError(f"corrupt_gzip: {without_content(exc)}") from exc
    return bytes(out)


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
    return np.searchsorted(newlines, _record_starts(buf, newlines), side="left") + 1


def _record_starts(buf: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """Byte offset of each non-blank CSV record (see :func:`record_start_lines`)."""
    inside_quotes = np.bitwise_xor.accumulate((buf == 0x22).astype(np.uint8))
    terminators = newlines[inside_quotes[newlines] == 0]
    starts = np.concatenate([np.zeros(1, dtype=np.int64), terminators.astype(np.int64) + 1])
    starts = starts[starts < buf.size]
    first = buf[starts]
    nxt = buf[np.minimum(starts + 1, buf.size - 1)]
    blank = (first == 0x0A) | ((first == 0x0D) & ((nxt == 0x0A) | (starts + 1 >= buf.size)))
    return starts[~blank].astype(np.int64)


def _blank_long_records(text: bytes, max_bytes: int) -> tuple[bytes, list[tuple[int, int, str]]]:
    """Take the records longer than ``max_bytes`` out of the text, keeping every line number.

    Each one is replaced by as many newlines as it spans (blank lines, which the reader
    skips), so that the other records keep their physical line numbers.

    Returns:
        The text, and ``(line number, length, first bytes as text)`` of each record taken out.
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    if buf.size <= max_bytes:
        return text, []
    newlines = np.flatnonzero(buf == 0x0A)
    starts = _record_starts(buf, newlines)
    ends = np.append(starts[1:], buf.size)
    long_ones = np.flatnonzero((ends - starts) > max_bytes)
    long_ones = long_ones[long_ones > 0]  # the header was checked already
    if not long_ones.size:
        return text, []
    pieces, taken, at = [], [], 0
    for index in long_ones:
        start, end = int(starts[index]), int(ends[index])
        spanned = text.count(b"\n", start, end)
        line = int(np.searchsorted(newlines, start, side="left")) + 1
        taken.append((line, end - start, text[start : start + 200].decode("utf-8", "replace")))
        pieces += [text[at:start], b"\n" * spanned]
        at = end
    pieces.append(text[at:])
    return b"".join(pieces), taken


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
    limits: FileLimits | None = None,
) -> pa.Table:
    """Parse one sales file version into ``raw/sales`` rows.

    A record longer than ``limits.max_record_bytes`` is not parsed: it becomes a row with
    ``_malformed`` ``record_too_long: ...`` (quarantined by the Dask stage), and the file's
    other rows load.

    Args:
        data: the file's bytes as delivered (gzip or plain).
        file_name: the file's path relative to the drop, e.g. ``sales/sales_2026-01-10.csv.gz``.
        delivery_date: the date in the file name.
        file_modified_at: the version's modification time (timezone-aware).
        limits: what one file may cost (default :class:`FileLimits`).

    Returns:
        A table with :data:`RAW_SALES_SCHEMA`, sorted by ``_line_number``.

    Raises:
        UnreadableFileError: corrupt gzip, a header that does not match, not CSV, or larger
            than the limit.
    """
    limits = limits or FileLimits()
    text = decompress(data, file_name, limits)
    _check_header(text)
    text, too_long = _blank_long_records(text, limits.max_record_bytes)
    table, malformed = _read_records(text, limits)
    good_lines, bad_lines = _physical_lines(text, table.num_rows, malformed, file_name)
    lineage = _Lineage(
        file_name=pa.scalar(file_name),
        delivery_date=pa.scalar(delivery_date, type=pa.date32()),
        modified=pa.scalar(file_modified_at, type=pa.timestamp("us", tz="UTC")),
    )
    good = lineage.added(table, good_lines)
    good = good.append_column("_malformed", pa.nulls(table.num_rows, pa.string()))
    good = good.append_column("_raw_line", pa.nulls(table.num_rows, pa.string()))
    if not malformed and not too_long:
        return good.cast(RAW_SALES_SCHEMA)
    reasons = [f"wrong_field_count: expected {len(SALES_COLUMNS)}, got {m[2]}" for m in malformed]
    raw_lines = [m[1] for m in malformed]
    for line, length, head in too_long:
        bad_lines = np.append(bad_lines, line)
        reasons.append(
            f"record_too_long: {length} bytes, more than {limits.max_record_bytes} "
            "(ELT_MAX_RECORD_KB)"
        )
        raw_lines.append(head)  # its beginning only: the quarantine stays small too
    no_values = {name: pa.nulls(len(reasons), pa.string()) for name in SALES_COLUMNS}
    bad = lineage.added(pa.table(no_values), bad_lines)
    bad = bad.append_column("_malformed", pa.array(reasons, type=pa.string()))
    bad = bad.append_column("_raw_line", pa.array(raw_lines, type=pa.string()))
    combined = pa.concat_tables([good.cast(RAW_SALES_SCHEMA), bad.cast(RAW_SALES_SCHEMA)])
    return combined.take(pc.sort_indices(combined, sort_keys=[("_line_number", "ascending")]))


def _read_records(text: bytes, limits: FileLimits) -> tuple[pa.Table, list[tuple[int, str, int]]]:
    """The records of the CSV text as strings, and the malformed ones set aside.

    Returns:
        The well-formed records (one string column per sales column), and ``(record ordinal,
        text, field count)`` of each record with the wrong number of fields.

    Raises:
        UnreadableFileError: the text is not CSV.
    """
    malformed: list[tuple[int, str, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        malformed.append((int(row.number or 0), row.text, int(row.actual_columns)))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(text),
            read_options=pacsv.ReadOptions(
                skip_rows=1,
                column_names=list(SALES_COLUMNS),
                use_threads=False,
                block_size=max(2**20, 2 * limits.max_record_bytes),  # a record fits a block
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
    return table, malformed


def _physical_lines(
    text: bytes, n_good: int, malformed: list[tuple[int, str, int]], file_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The physical line numbers of the well-formed and the malformed records."""
    starts = record_start_lines(text)
    n_bad = len(malformed)
    # Record ordinals as pyarrow counts them: header is 1, first record 2, blank lines skipped.
    bad_ordinals = np.array([m[0] for m in malformed], dtype=np.int64)
    all_ordinals = np.arange(2, n_good + n_bad + 2, dtype=np.int64)
    good_ordinals = all_ordinals[~np.isin(all_ordinals, bad_ordinals)]
    mapped = starts.size == n_good + n_bad + 1 and good_ordinals.size == n_good
    if not mapped:  # pragma: no cover - the scan and pyarrow disagree on record boundaries
        logger.warning(
            "%s: could not map records to physical lines (%d starts, %d records); "
            "using record numbers",
            file_name,
            starts.size,
            n_good + n_bad + 1,
        )
        return good_ordinals[:n_good], bad_ordinals
    return starts[good_ordinals - 1], starts[bad_ordinals - 1] if n_bad else bad_ordinals


@dataclass(frozen=True)
class _Lineage:
    """Where the rows of one file version come from: the columns every row carries."""

    file_name: pa.Scalar
    delivery_date: pa.Scalar
    modified: pa.Scalar

    def added(self, table: pa.Table, lines: np.ndarray) -> pa.Table:
        """``table`` with the lineage columns and each row's physical line number."""
        rows = table.num_rows
        table = table.append_column("_file_name", pa.repeat(self.file_name, rows))
        table = table.append_column("_delivery_date", pa.repeat(self.delivery_date, rows))
        table = table.append_column("_file_modified_at", pa.repeat(self.modified, rows))
        return table.append_column("_line_number", pa.array(lines, type=pa.int64()))
