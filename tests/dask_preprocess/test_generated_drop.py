"""On a small generated drop, read into the lake by the real ingestion stage: the stage's
counts and revenue equal the generator's manifest, and an independent DuckDB computation."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest

from bench.reference_sql import expected_outputs as reference
from generator import append_days, generate_drop
from ingestion import extract_to_lake
from tests.dask_preprocess.support import (
    assert_balanced,
    daily,
    daily_by_date,
    output_mtimes,
    quality,
    run,
)

PII_KEY = "test-pii-key"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, dask_address: str) -> dict:
    """A 6,000-row, 8-day drop, then 2 more days: extracted and preprocessed after each."""
    root = tmp_path_factory.mktemp("generated")
    drop, lake = root / "source", root / "lake"
    generate_drop(str(drop), sales_rows=6000, days=8, seed=11)
    extract_to_lake(str(drop), str(lake), pii_key=PII_KEY, pipelines_dir=str(root / "dlt"))
    first = run(lake, dask_address)
    before = output_mtimes(lake)
    manifest = append_days(str(drop), 2)
    extract_to_lake(str(drop), str(lake), pii_key=PII_KEY, pipelines_dir=str(root / "dlt"))
    second = run(lake, dask_address)
    return {
        "lake": lake,
        "manifest": manifest,
        "first": first,
        "second": second,
        "before": before,
    }


def test_counts_and_revenue_equal_the_manifest(generated: dict) -> None:
    manifest, lake = generated["manifest"], generated["lake"]
    assert_balanced(generated["second"])
    got = quality(lake)
    assert set(got) == set(manifest["files"])
    for name, truth in manifest["files"].items():
        q = got[name]
        if not truth.get("readable", True):
            assert q["status"] == "failed" and q["rows_in"] == 0, name
            continue
        assert q["status"] == "processed", name
        assert (
            q["rows_in"],
            q["rows_valid"],
            q["rows_duplicate"],
            q["rows_superseded"],
            q["rows_quarantined"],
        ) == (
            truth["rows_in"],
            truth["rows_valid"],
            truth["rows_duplicate"],
            truth["rows_superseded"],
            truth["rows_quarantined"],
        ), name
        by_reason = {k: v for k, v in truth["quarantined_by_reason"].items() if v}
        assert json.loads(q["rows_quarantined_by_reason"]) == by_reason, name
        assert (q["units_valid"], q["revenue_valid"]) == (
            truth["valid_units"],
            Decimal(truth["valid_revenue"]),
        ), name

    totals = manifest["totals"]
    by_date = daily_by_date(lake)
    assert sum(n for n, _, _ in by_date.values()) == totals["n_sales"]
    assert sum(u for _, u, _ in by_date.values()) == totals["units"]
    assert sum(r for _, _, r in by_date.values()) == Decimal(totals["revenue"])
    assert {d: (n, u, r) for d, (n, u, r) in by_date.items()} == {
        date.fromisoformat(x["sale_date"]): (x["n_sales"], x["units"], Decimal(x["revenue"]))
        for x in manifest["by_sale_date"]
    }
    by_region_product: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for (_, _, product, region), (n, u, r) in daily(lake).items():
        acc = by_region_product[(region, product)]
        acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + u, acc[2] + r
    assert {k: tuple(v) for k, v in by_region_product.items()} == {
        (x["region"], x["product_id"]): (x["n_sales"], x["units"], Decimal(x["revenue"]))
        for x in manifest["by_region_product"]
    }


def test_aggregates_equal_duckdb_over_the_raw_lake_files(generated: dict) -> None:
    expected = reference(str(generated["lake"]), tz=generated["manifest"]["timezone"])
    assert daily(generated["lake"]) == expected["daily"]


def test_new_days_rewrite_only_the_dates_they_touch(generated: dict) -> None:
    second = generated["second"]
    after = output_mtimes(generated["lake"])
    touched = {f"sale_date={d.isoformat()}" for d in second.affected_sale_dates}
    assert touched, "the two new days must touch some dates"
    for path, mtime in generated["before"].items():
        if "/daily_sales/" not in path:
            continue
        partition = path.split("/")[2]
        assert (after[path] != mtime) == (partition in touched), path
    assert len(second.files_processed) < len(generated["manifest"]["files"])
