"""Checks of the marts against the generator's manifest, for the end-to-end tests.

The manifest (docs/interfaces.md, "The generator's manifest") is the generator's own truth,
computed without the pipeline. ``assert_marts_match_manifest`` compares the marts of a
warehouse with it: revenue, n_sales and units by region and product, totals, the store
count, per-file row buckets, and the ranks and shares recomputed from the manifest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Query = Callable[[str], list[tuple[Any, ...]]]


def expected_ranks_and_shares(
    by_region_product: list[dict[str, Any]],
) -> dict[tuple[str, str], tuple[int, float]]:
    """(region, product_id) -> (SQL rank() by revenue in the region, share of its revenue).

    Args:
        by_region_product: the manifest's ``by_region_product`` list.

    Returns:
        The expected rank and share of every region x product.
    """
    revenues: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in by_region_product:
        revenues[row["region"]][row["product_id"]] = Decimal(row["revenue"])
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for region, products in revenues.items():
        total = sum(products.values())
        for product, revenue in products.items():
            rank = 1 + sum(1 for other in products.values() if other > revenue)
            out[(region, product)] = (rank, float(revenue / total) if total else 0.0)
    return out


def assert_marts_match_manifest(query: Query, manifest: dict[str, Any], n_stores: int) -> None:
    """Assert that the warehouse's marts equal the generator's manifest.

    Args:
        query: runs SQL on the warehouse and returns its rows (DuckDB or Postgres).
        manifest: the generator's manifest, parsed.
        n_stores: how many store documents the drop holds (``manifest["counts"]["stores"]``).
    """
    rows = query(
        "select region, product_id, n_sales, units, revenue, revenue_rank_in_region,"
        " revenue_share_in_region from marts.sales_by_region_product"
    )
    actual = {(r[0], r[1]): r[2:] for r in rows}
    expected = {
        (m["region"], m["product_id"]): (m["n_sales"], m["units"], Decimal(m["revenue"]))
        for m in manifest["by_region_product"]
    }
    assert {k: (v[0], v[1], Decimal(v[2])) for k, v in actual.items()} == expected
    for key, (rank, share) in expected_ranks_and_shares(manifest["by_region_product"]).items():
        assert actual[key][3] == rank, key
        assert abs(float(actual[key][4]) - share) < 1e-9, key

    [(n_sales, units, revenue, stores)] = query(
        "select n_sales, units, revenue, n_stores from marts.kpi_overview"
    )
    totals = manifest["totals"]
    assert (n_sales, units, Decimal(revenue)) == (
        totals["n_sales"],
        totals["units"],
        Decimal(totals["revenue"]),
    )
    assert stores == n_stores

    files = {
        r[0]: r[1:]
        for r in query(
            "select file_name, rows_in, rows_valid, rows_duplicate, rows_superseded,"
            " rows_quarantined, is_alert from marts.data_quality_by_file"
        )
    }
    for name, f in manifest["files"].items():
        assert files[name][:5] == (
            f["rows_in"],
            f["rows_valid"],
            f["rows_duplicate"],
            f["rows_superseded"],
            f["rows_quarantined"],
        ), name
        assert files[name][5] == (f["rows_in"] > 0 and f["rows_duplicate"] / f["rows_in"] > 0.5)

    by_date = {
        r[0].isoformat(): (r[1], r[2], Decimal(r[3]))
        for r in query(
            "select sale_date, sum(n_sales), sum(units), sum(revenue)"
            " from marts.fct_daily_sales group by sale_date"
        )
    }
    assert by_date == {
        m["sale_date"]: (m["n_sales"], m["units"], Decimal(m["revenue"]))
        for m in manifest["by_sale_date"]
    }
