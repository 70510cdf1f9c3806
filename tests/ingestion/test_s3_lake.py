"""The same code path with the drop and the lake on a local S3-compatible server (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec

from ingestion import extract_to_lake, load_to_warehouse

from .drops import (
    PII_VALUES,
    SALES_DAY1,
    SALES_DAY2,
    duckdb_strings,
    find_plaintext,
    lake_files,
    lake_strings,
    lake_table,
    put,
    write_drop,
    write_partition,
)

KEY = "unit-test-key"


def test_s3_drop_and_lake(s3, s3_bucket: str, tmp_path: Path) -> None:
    options = s3.storage_options()
    drop, lake = f"s3://{s3_bucket}/drop", f"s3://{s3_bucket}/lake"
    write_drop(drop, options)
    put(drop, "products/product_PR-0009.json", "[not an object", options)

    first = extract_to_lake(
        drop,
        lake,
        pii_key=KEY,
        source_storage_options=options,
        lake_storage_options=options,
        pipelines_dir=str(tmp_path / "p1"),
    )

    assert first.files_read == {"stores": 2, "products": 3, "customers": 2, "sales": 2}
    assert [f.file_name for f in first.failed_files] == ["products/product_PR-0009.json"]
    assert lake_table(lake, "sales", options).num_rows == len(SALES_DAY1) + len(SALES_DAY2)
    fs = fsspec.filesystem("s3", **options)
    reason = json.loads(
        fs.cat_file(f"{s3_bucket}/lake/quarantine/files/products/product_PR-0009.json.reason.json")
    )
    assert reason["reason"].startswith("invalid_json")
    assert find_plaintext(lake_strings(lake, options), PII_VALUES) == []

    # a worker without local state: dlt restores it from the lake, nothing is read again
    before = lake_files(lake, options)
    second = extract_to_lake(
        drop,
        lake,
        pii_key=KEY,
        source_storage_options=options,
        lake_storage_options=options,
        pipelines_dir=str(tmp_path / "p2"),
    )
    assert second.files_read == {} and second.load_ids == []
    assert lake_files(lake, options) == before

    write_partition(
        lake,
        "daily_sales",
        "sale_date",
        "2026-01-10",
        [
            {
                "store_id": "ST-001",
                "product_id": "PR-0001",
                "region": "North",
                "n_sales": 1,
                "units": 2,
                "revenue": "179.80",
            },
        ],
        options,
    )
    warehouse = str(tmp_path / "warehouse.duckdb")
    loaded = load_to_warehouse(
        lake,
        target="duckdb",
        duckdb_path=warehouse,
        lake_storage_options=options,
        pipelines_dir=str(tmp_path / "w1"),
    )
    assert loaded.rows_written["customers"] == 3
    assert loaded.rows_written["daily_sales"] == 1
    assert loaded.partitions_replaced == {"daily_sales": ["2026-01-10"]}
    assert find_plaintext(duckdb_strings(warehouse), PII_VALUES) == []
