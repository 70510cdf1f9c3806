"""Drop -> lake with real dlt on a local lake: incremental reads, re-deliveries, quarantine, PII."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest

from ingestion import extract_to_lake
from ingestion.pii import MissingPiiKeyError, normalize_phone, pseudonymize, require_key

from .drops import (
    PII_VALUES,
    SALES_DAY1,
    SALES_DAY2,
    bump_mtime,
    csv_bytes,
    find_plaintext,
    lake_files,
    lake_strings,
    lake_table,
    put,
    write_drop,
)

KEY = "unit-test-key"


@pytest.fixture
def drop(tmp_path: Path) -> str:
    url = str(tmp_path / "drop")
    write_drop(url)
    return url


def run(drop: str, lake: str, workdir: Path) -> object:
    """Each run gets a fresh pipelines dir: the state must come back from the lake."""
    workdir.mkdir(parents=True, exist_ok=True)
    pipelines = workdir / f"p{len(list(workdir.iterdir()))}"
    return extract_to_lake(drop, lake, pii_key=KEY, pipelines_dir=str(pipelines))


def test_drop_is_read_into_the_lake(drop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    result = run(drop, lake, tmp_path / "work")

    assert result.files_read == {"stores": 2, "products": 2, "customers": 2, "sales": 2}
    assert result.failed_files == []
    assert len(result.load_ids) == 1
    # 2 customers on day 1 and 1 new version on day 2: every version kept
    assert result.rows_written["customers"] == 3
    assert result.rows_written["sales"] == len(SALES_DAY1) + len(SALES_DAY2)
    assert result.rows_written["delivered_files"] == 8

    sales = lake_table(lake, "sales")
    by_file = sales.group_by("_file_name").aggregate([("_line_number", "count")]).to_pylist()
    assert {r["_file_name"]: r["_line_number_count"] for r in by_file} == {
        "sales/sales_2026-01-10.csv.gz": 4,
        "sales/sales_2026-01-11.csv": 3,
    }
    rows = {(r["_file_name"], r["_line_number"]): r for r in sales.to_pylist()}
    first = rows[("sales/sales_2026-01-10.csv.gz", 2)]
    assert first["sale_id"] == "S-1" and first["region"] == " north "  # BOM gone, raw text kept
    assert str(first["_delivery_date"]) == "2026-01-10"
    malformed = rows[("sales/sales_2026-01-10.csv.gz", 4)]
    assert malformed["_malformed"] == "wrong_field_count: expected 9, got 10"
    assert malformed["_raw_line"] == SALES_DAY1[2]
    assert rows[("sales/sales_2026-01-10.csv.gz", 5)]["sale_id"] == "S-4"  # quotes removed
    assert rows[("sales/sales_2026-01-11.csv", 4)]["_malformed"].endswith("got 3")

    customers = lake_table(lake, "customers").to_pylist()
    anna = sorted(
        (c for c in customers if c["customer_id"] == "CU-000001"), key=lambda c: c["updated_at"]
    )
    assert [a["city"] for a in anna] == ["Kazan", "Samara"]
    # same person, two spellings of her phone and email: same hashes
    assert anna[0]["phone_hash"] == anna[1]["phone_hash"]
    assert anna[0]["email_hash"] == anna[1]["email_hash"]
    assert anna[0]["phone_hash"] == pseudonymize("+79123456789", "phone", require_key(KEY))[0]
    assert anna[0]["phone_masked"] == "+7 *** ***-**-89"
    assert anna[0]["email_masked"] == "a***@mail.ru"
    assert anna[0]["last_name_masked"] == "S***"
    assert not {"email", "phone", "last_name"} & set(customers[0])

    stores = {s["store_id"]: s for s in lake_table(lake, "stores").to_pylist()}
    assert stores["ST-001"]["address__street"] == "Lomonosova 12"
    assert stores["ST-001"]["manager__name_masked"] == "I***"
    assert (
        stores["ST-002"]["manager__phone_hash"]
        == pseudonymize(normalize_phone("8 (918) 111-22-33"), "phone", require_key(KEY))[0]
    )
    assert stores["ST-002"]["manager__email_hash"] is None
    assert not {"manager__name", "manager__phone", "manager__email"} & set(stores["ST-001"])

    delivered = lake_table(lake, "delivered_files").to_pylist()
    assert {d["status"] for d in delivered} == {"loaded"}
    sales_delivered = {d["file_name"]: d for d in delivered if d["kind"] == "sales"}
    assert sales_delivered["sales/sales_2026-01-11.csv"]["rows_read"] == 3
    assert str(sales_delivered["sales/sales_2026-01-11.csv"]["delivery_date"]) == "2026-01-11"

    assert find_plaintext(lake_strings(lake), PII_VALUES) == []


def test_rerun_changes_nothing_even_without_the_local_state(drop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    work = tmp_path / "work"
    run(drop, lake, work)
    before = lake_files(lake)
    shutil.rmtree(work)  # an ephemeral worker: no local dlt state at all

    again = run(drop, lake, work)

    assert again.files_read == {}
    assert again.rows_written == {}
    assert again.load_ids == []
    assert lake_files(lake) == before


def test_appended_day_reads_only_the_new_file(drop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    run(drop, lake, tmp_path / "work")
    put(
        drop,
        "sales/sales_2026-01-12.csv.gz",
        csv_bytes(["S-9,2026-01-12T09:00:00Z,ST-001,,PR-0001,1,89.90,89.90,West"]),
    )
    bump_mtime(os.path.join(drop, "sales/sales_2026-01-12.csv.gz"), 5)

    result = run(drop, lake, tmp_path / "work")

    assert result.files_read == {"sales": 1}
    assert result.rows_written == {"sales": 1, "delivered_files": 1}
    sales = lake_table(lake, "sales")
    assert sales.num_rows == len(SALES_DAY1) + len(SALES_DAY2) + 1


def test_redelivered_file_is_read_again_as_a_new_version(drop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    run(drop, lake, tmp_path / "work")
    corrected = ["S-5,2026-01-11T09:00:00+03:00,ST-001,CU-000001,PR-0002,2,45.50,91.00,North"]
    path = os.path.join(drop, "sales/sales_2026-01-11.csv")
    put(drop, "sales/sales_2026-01-11.csv", csv_bytes(corrected, gz=False))
    bump_mtime(path, 60)

    result = run(drop, lake, tmp_path / "work")

    assert result.files_read == {"sales": 1}
    sales = lake_table(lake, "sales")
    day2 = sales.filter(pc.equal(sales["_file_name"], "sales/sales_2026-01-11.csv"))
    versions = sorted(set(day2["_file_modified_at"].to_pylist()))
    assert len(versions) == 2  # the old version stays; the Dask stage keeps the latest
    latest = day2.filter(pc.equal(day2["_file_modified_at"], versions[-1])).to_pylist()
    assert [(r["sale_id"], r["quantity"], r["sale_amount"]) for r in latest] == [
        ("S-5", "2", "91.00")
    ]
    assert len(day2.to_pylist()) == len(SALES_DAY2) + 1
    delivered = [
        d
        for d in lake_table(lake, "delivered_files").to_pylist()
        if d["file_name"] == "sales/sales_2026-01-11.csv"
    ]
    assert sorted(d["rows_read"] for d in delivered) == [1, 3]


def test_unreadable_files_are_quarantined_and_the_rest_loads(drop: str, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    good_gzip = csv_bytes(SALES_DAY1)
    put(drop, "sales/sales_2026-01-12.csv.gz", good_gzip[: len(good_gzip) // 2])
    put(drop, "sales/sales_2026-01-13.csv.gz", b"\x1f\x8b" + b"\x00" * 20)
    wrong_header = "sale_id;sale_ts;store_id\nS-1;x;y\n"
    put(drop, "sales/sales_2026-01-14.csv", wrong_header)
    put(drop, "products/product_PR-0003.json", '{"product_id": "PR-0003", "name": ')
    put(
        drop,
        "customers/customers_2026-01-12.jsonl",
        json.dumps({"customer_id": "CU-9", "last_name": "Secretova", "email": "s@x.ru"})
        + "\n{not json\n",
    )

    result = run(drop, lake, tmp_path / "work")

    failed = {f.file_name: f for f in result.failed_files}
    assert set(failed) == {
        "sales/sales_2026-01-12.csv.gz",
        "sales/sales_2026-01-13.csv.gz",
        "sales/sales_2026-01-14.csv",
        "products/product_PR-0003.json",
        "customers/customers_2026-01-12.jsonl",
    }
    assert failed["sales/sales_2026-01-12.csv.gz"].reason.startswith("corrupt_gzip")
    assert failed["sales/sales_2026-01-14.csv"].reason.startswith("wrong_header")
    assert failed["products/product_PR-0003.json"].reason.startswith("invalid_json")
    assert failed["customers/customers_2026-01-12.jsonl"].reason.startswith("invalid_json: line 2")
    # the good files still load
    assert result.files_loaded == {"stores": 2, "products": 2, "customers": 2, "sales": 2}
    assert lake_table(lake, "sales").num_rows == len(SALES_DAY1) + len(SALES_DAY2)
    assert "CU-9" not in lake_table(lake, "customers")["customer_id"].to_pylist()

    quarantine = Path(lake) / "quarantine" / "files"
    # a header that is not the contract's: its columns may hold anything, only the reason is kept
    assert not (quarantine / "sales" / "sales_2026-01-14.csv").exists()
    reason = json.loads((quarantine / "sales" / "sales_2026-01-14.csv.reason.json").read_text())
    assert reason["bytes_kept"] is False
    assert reason["file_name"] == "sales/sales_2026-01-14.csv"
    assert reason["kind"] == "sales" and reason["reason"].startswith("wrong_header")
    assert {"file_modified_at", "quarantined_at"} <= set(reason)
    assert (quarantine / "products" / "product_PR-0003.json").exists()
    # a customers file holds personal data: only its reason is quarantined, not its bytes
    assert not (quarantine / "customers" / "customers_2026-01-12.jsonl").exists()
    assert (quarantine / "customers" / "customers_2026-01-12.jsonl.reason.json").exists()
    assert find_plaintext(lake_strings(lake), {"x": ["Secretova", "s@x.ru"]}) == []

    delivered = {d["file_name"]: d for d in lake_table(lake, "delivered_files").to_pylist()}
    assert delivered["sales/sales_2026-01-14.csv"]["status"] == "failed"
    assert delivered["sales/sales_2026-01-14.csv"]["failure_reason"].startswith("wrong_header")
    assert delivered["sales/sales_2026-01-14.csv"]["rows_read"] == 0

    # the sender fixes the file: the new version loads and leaves the quarantine
    put(drop, "sales/sales_2026-01-14.csv", csv_bytes(SALES_DAY2, gz=False))
    bump_mtime(os.path.join(drop, "sales/sales_2026-01-14.csv"), 60)
    fixed = run(drop, lake, tmp_path / "work")
    assert fixed.failed_files == []
    assert fixed.files_read == {"sales": 1}
    assert not (quarantine / "sales" / "sales_2026-01-14.csv").exists()


@pytest.mark.parametrize("key", ["", None])
def test_missing_pii_key_refuses_to_start(drop: str, tmp_path: Path, key: str | None) -> None:
    with pytest.raises(MissingPiiKeyError):
        extract_to_lake(drop, str(tmp_path / "lake"), pii_key=key)  # type: ignore[arg-type]
    assert not (tmp_path / "lake").exists()


def test_flat_customer_documents_take_the_arrow_path_typed_like_the_lake_table() -> None:
    """Customers go to dlt as Arrow (no row-by-row normalization) with the lake's types;
    documents dlt must flatten or coerce keep dlt's own path."""
    import datetime as dt

    import pyarrow as pa

    from ingestion.lake_tables import documents_as_arrow

    modified = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    base = {
        "customer_id": "CU-1",
        "first_name": "Anna",
        "birth_date": "1990-05-17",
        "registered_at": "2024-01-01T10:00:00+03:00",
        "updated_at": "2026-01-01T00:00:00Z",
        "loyalty_points": 12,
        "always_null": None,
        "_file_name": "customers/customers_2026-01-01.jsonl",
        "_file_modified_at": modified,
        "_line_number": 1,
    }
    table = documents_as_arrow(
        [base, {**base, "customer_id": "CU-2", "birth_date": None}], "customers", "42"
    )
    assert table is not None
    assert table.schema.field("birth_date").type == pa.date32()
    assert table.schema.field("registered_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("registered_at")[0].as_py() == dt.datetime(2024, 1, 1, 7, tzinfo=dt.UTC)
    assert table.column("birth_date").to_pylist() == [dt.date(1990, 5, 17), None]
    assert table.column("loyalty_points").to_pylist() == [12, 12]  # a field beyond the contract
    assert "always_null" not in table.column_names  # dlt makes no column for it either
    assert not table.schema.field("customer_id").nullable
    assert table.column("_dlt_load_id").to_pylist() == ["42", "42"]
    # dlt's own path: nested values, a time stamp without an offset, an unparsable date.
    assert documents_as_arrow([{**base, "address": {"city": "Omsk"}}], "customers", "1") is None
    assert (
        documents_as_arrow([{**base, "updated_at": "2026-01-01T00:00"}], "customers", "1") is None
    )
    assert documents_as_arrow([{**base, "birth_date": "17.05.1990"}], "customers", "1") is None
