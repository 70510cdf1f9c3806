"""Drop -> lake -> warehouse on a small generated drop, reconciled with the generator's manifest."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import generator
from ingestion import extract_to_lake, load_to_warehouse

from .drops import duckdb_strings, find_plaintext, lake_strings

KEY = "end-to-end-key"


def latest_rows_per_file(lake: str) -> dict[str, int]:
    """Rows of the latest version of every sales file in ``raw/sales``."""
    return dict(
        duckdb.sql(
            f"""
            with sales as (select * from read_parquet('{lake}/raw/sales/*.parquet')),
            latest as (
                select _file_name, max(_file_modified_at) as version from sales group by 1
            )
            select sales._file_name, count(*)
            from sales
            join latest
                on sales._file_name = latest._file_name
                and sales._file_modified_at = latest.version
            group by 1
            """
        ).fetchall()
    )


def reconcile(manifest: dict, lake: str, failed: set[str]) -> None:
    readable = {f: v for f, v in manifest["files"].items() if v.get("readable", True)}
    unreadable = set(manifest["files"]) - set(readable)
    assert unreadable <= failed
    assert latest_rows_per_file(lake) == {f: v["rows_in"] for f, v in readable.items()}


@pytest.mark.slow
def test_generated_drop_end_to_end(tmp_path: Path) -> None:
    drop, lake = str(tmp_path / "drop"), str(tmp_path / "lake")
    warehouse = str(tmp_path / "warehouse.duckdb")
    manifest = generator.generate_drop(drop, sales_rows=5_000, days=10, seed=11)

    extracted = extract_to_lake(drop, lake, pii_key=KEY, pipelines_dir=str(tmp_path / "e1"))
    loaded = load_to_warehouse(
        lake, target="duckdb", duckdb_path=warehouse, pipelines_dir=str(tmp_path / "w1")
    )

    failed = {f.file_name for f in extracted.failed_files}
    reconcile(manifest, lake, failed)
    counts = manifest["counts"]
    assert extracted.rows_written["stores"] == counts["stores"]
    assert extracted.rows_written["products"] == counts["products"]
    assert extracted.rows_written["customers"] == counts["customer_versions"]
    con = duckdb.connect(warehouse, read_only=True)
    try:

        def scalar(sql: str) -> int:
            return con.execute(sql).fetchall()[0][0]

        assert scalar("select count(*) from raw_shop.customers") == counts["customer_versions"]
        assert (
            scalar("select count(distinct customer_id) from raw_shop.customers")
            == (counts["customers"])
        )
        assert scalar("select count(*) from raw_shop.stores") == counts["stores"]
        delivered = scalar("select count(*) from raw_shop.delivered_files")
    finally:
        con.close()
    assert delivered == sum(extracted.files_read.values())
    assert {f.file_name for f in loaded.failed_files} == failed

    pii = manifest["pii_values"]
    assert sum(len(v) for v in pii.values()) > 0
    assert find_plaintext(lake_strings(lake), pii) == []
    assert find_plaintext(duckdb_strings(warehouse), pii) == []

    # two more days: only their files are read, and the lake still reconciles
    manifest = generator.append_days(drop, 2)
    more = extract_to_lake(drop, lake, pii_key=KEY, pipelines_dir=str(tmp_path / "e2"))
    assert more.files_read.get("sales") == 2
    assert set(more.files_read) <= {"sales", "customers", "stores", "products"}
    assert more.files_read.get("customers", 0) <= 2
    reconcile(manifest, lake, failed | {f.file_name for f in more.failed_files})
