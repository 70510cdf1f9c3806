"""Unit tests of the sales CSV reader (raw text, BOM, malformed records, line numbers)."""

from __future__ import annotations

import datetime as dt
import gzip

import pyarrow as pa
import pytest

from ingestion.sales_csv import (
    RAW_SALES_SCHEMA,
    FileLimits,
    UnreadableFileError,
    decompress,
    parse_sales_csv,
)

from .drops import HEADER, csv_bytes

MODIFIED = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def parse(data: bytes, name: str = "sales/sales_2026-01-10.csv.gz") -> pa.Table:
    return parse_sales_csv(
        data, file_name=name, delivery_date=dt.date(2026, 1, 10), file_modified_at=MODIFIED
    )


def test_fields_stay_raw_text_with_lineage() -> None:
    table = parse(
        csv_bytes(["S-1, 2026-01-10T10:00:00 ,ST-1,,PR-1,2.0,89.90,179.80, north "], bom=True)
    )
    assert table.schema == RAW_SALES_SCHEMA
    row = table.to_pylist()[0]
    assert row["sale_id"] == "S-1"
    assert row["sale_ts"] == " 2026-01-10T10:00:00 "  # untouched, spaces included
    assert row["customer_id"] == ""  # empty stays empty text, not null
    assert row["quantity"] == "2.0" and row["region"] == " north "
    assert row["_file_name"] == "sales/sales_2026-01-10.csv.gz"
    assert row["_delivery_date"] == dt.date(2026, 1, 10)
    assert row["_file_modified_at"] == MODIFIED
    assert row["_line_number"] == 2
    assert row["_malformed"] is None and row["_raw_line"] is None


def test_malformed_records_are_kept_with_their_line() -> None:
    lines = [
        "S-1,t,ST-1,,PR-1,1,1,1,North",
        "S-2,t,ST-1",
        "S-3,t,ST-1,,PR-1,1,1,1,North,extra",
        "S-4,t,ST-1,,PR-1,1,1,1,North",
    ]
    table = parse(csv_bytes(lines, gz=False), name="sales/sales_2026-01-10.csv")
    rows = table.to_pylist()
    assert [r["_line_number"] for r in rows] == [2, 3, 4, 5]
    assert [r["sale_id"] for r in rows] == ["S-1", None, None, "S-4"]
    assert rows[1]["_malformed"] == "wrong_field_count: expected 9, got 3"
    assert rows[1]["_raw_line"] == "S-2,t,ST-1"
    assert rows[2]["_malformed"] == "wrong_field_count: expected 9, got 10"
    assert rows[2]["_raw_line"] == "S-3,t,ST-1,,PR-1,1,1,1,North,extra"


def test_line_numbers_follow_physical_lines() -> None:
    text = (
        HEADER + "\r\n"
        "S-1,t,ST-1,,PR-1,1,1,1,North\r\n"
        "\r\n"  # a blank line is not a record
        '"S-2","t","ST-1","","PR-1","1","1","1","multi\nline"\r\n'
        "S-3,t,ST-1\r\n"
        "S-4,t,ST-1,,PR-1,1,1,1,North\r\n"
    )
    rows = parse(gzip.compress(text.encode())).to_pylist()
    assert [(r["sale_id"], r["_line_number"]) for r in rows] == [
        ("S-1", 2),
        ("S-2", 4),
        (None, 6),
        ("S-4", 7),
    ]
    assert rows[1]["region"] == "multi\nline"


def test_header_only_file_has_no_rows() -> None:
    assert parse(csv_bytes([])).num_rows == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(bytes(range(256)) * 8)[:-12], "corrupt_gzip"),
        (b"\x1f\x8bnot really gzip", "corrupt_gzip"),
        (gzip.compress(b"sale_id,sale_ts,store_id\nS-1,t,ST-1\n"), "wrong_header"),
        (gzip.compress((HEADER.upper() + "\n").encode()), "wrong_header"),
        (gzip.compress(b""), "wrong_header"),
        (gzip.compress(b"\xff\xfe\x00binary"), "not_csv"),
    ],
)
def test_unreadable_files_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFileError) as caught:
        parse(data)
    assert caught.value.reason.startswith(reason)


def test_a_gzip_bomb_is_given_up_at_the_limit_with_bounded_memory() -> None:
    """200 MB of inflated data behind a small gzip: refused at 1 MB, never inflated whole."""
    import tracemalloc

    bomb = gzip.compress((HEADER + "\n").encode() + b"0" * (200 * 2**20), compresslevel=9)
    assert len(bomb) < 1 * 2**20
    limits = FileLimits(max_file_bytes=2**20)
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableFileError) as error:
            parse_sales_csv(
                bomb,
                file_name="sales/sales_2026-01-10.csv.gz",
                delivery_date=dt.date(2026, 1, 10),
                file_modified_at=MODIFIED,
                limits=limits,
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.value.reason.startswith("too_large: more than 1 MB uncompressed (ELT_MAX_FILE_MB)")
    assert peak < len(bomb) + 8 * 2**20  # the input, and a few times the limit at most
    # A plain file past the limit, and concatenated gzip members within it.
    with pytest.raises(UnreadableFileError, match="too_large"):
        decompress(b"x" * (2**20 + 1), "sales/sales_2026-01-10.csv", limits)
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "x.csv.gz", limits) == b"abcd"


def test_a_record_past_the_length_limit_is_set_aside_and_the_rest_loads() -> None:
    """A 10 MB field: its record is quarantined (record_too_long), not the whole file."""
    good = "S-{n},2026-01-10T10:00:00+03:00,ST-1,,PR-1,1,10.00,10.00,North"
    huge = f'S-2,2026-01-10T10:00:00+03:00,ST-1,,PR-1,1,10.00,10.00,"{"x" * (10 * 2**20)}\nend"'
    lines = [good.format(n=1), huge, good.format(n=3), "", good.format(n=4)]
    table = parse_sales_csv(
        csv_bytes(lines, gz=False),
        file_name="sales/sales_2026-01-10.csv",
        delivery_date=dt.date(2026, 1, 10),
        file_modified_at=MODIFIED,
        limits=FileLimits(max_record_bytes=64 * 2**10),
    )
    rows = table.to_pylist()
    assert [(r["sale_id"], r["_line_number"]) for r in rows] == [
        ("S-1", 2),
        (None, 3),
        ("S-3", 5),
        ("S-4", 7),
    ]
    assert rows[1]["_malformed"] == (
        f"record_too_long: {len(huge) + 1} bytes, more than 65536 (ELT_MAX_RECORD_KB)"
    )
    assert rows[1]["_raw_line"] == huge[:200]
