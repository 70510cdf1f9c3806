"""What the source contract says about sales files and sales rows (§3-§5)."""

from __future__ import annotations

#: The header of a sales file, exactly, in order (§3).
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

#: What each column holds (§3); the raw zone keeps every column as delivered text.
SALES_COLUMN_TYPES: dict[str, str] = {
    "sale_id": "text",
    "sale_ts": "timestamp",
    "store_id": "text",
    "customer_id": "text",
    "product_id": "text",
    "quantity": "integer",
    "unit_price": "decimal",
    "sale_amount": "decimal",
    "region": "region",
}

#: Quarantine reason codes of a sales row, in the order the checks run (the first failing
#: check wins). ``record_too_long`` is a line longer than ``ELT_MAX_RECORD_KB``.
REASONS: tuple[str, ...] = (
    "wrong_field_count",
    "record_too_long",
    "empty_sale_id",
    "empty_store_id",
    "empty_product_id",
    "bad_sale_ts",
    "bad_quantity",
    "bad_unit_price",
    "bad_sale_amount",
    "amount_mismatch",
    "bad_region",
)

#: The regions in their canonical spelling (§3).
REGIONS: tuple[str, ...] = ("North", "South", "East", "West")

#: A region's canonical spelling by its trimmed, lower-case form.
REGION_OF: dict[str, str] = {region.lower(): region for region in REGIONS}

#: A file whose ``rows_duplicate / rows_in`` is above this raises an alert (§5); the
#: ``ELT_DUPLICATE_ALERT_RATIO`` setting overrides it.
DUPLICATE_ALERT_RATIO = 0.5

#: How far ``sale_amount`` may be from ``quantity * unit_price`` (§4).
AMOUNT_TOLERANCE = "0.01"
