"""The warehouse's schemas that stages and tools name (the dbt layers own the rest)."""

from __future__ import annotations

#: The load stage's schemas: the shop documents and the preprocessed sales.
RAW_SHOP = "raw_shop"
RAW_SALES = "raw_sales"
#: The tables of ``raw_shop``.
SHOP_TABLES: tuple[str, ...] = ("stores", "products", "customers", "delivered_files")
#: The marts: the interface to Metabase, reports and users (docs/interfaces.md).
MARTS = "marts"
#: The schemas dbt builds (dbt_project.yml), the marts last.
DBT_SCHEMAS: tuple[str, ...] = ("staging", "intermediate", "snapshots", MARTS)
#: Every schema the platform writes: a warehouse is these (plus dbt's state table).
PLATFORM_SCHEMAS: tuple[str, ...] = (RAW_SHOP, RAW_SALES, *DBT_SCHEMAS)
