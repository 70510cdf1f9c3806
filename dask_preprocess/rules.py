"""The sales rules of the source contract (§4, §5), vectorized over pandas DataFrames.

These functions know nothing about Dask or the lake: they take and return pandas DataFrames
and run inside Dask tasks, one partition at a time.

Number semantics (written down because the contract leaves the precision open): ``unit_price``
and ``sale_amount`` are parsed as exact decimals into integers of 1/10,000 (four decimal
places). Trailing zeros do not count, so ``89.900000`` is fine; a value with more than four
significant decimal places, more than 13 integer digits, an exponent or a ``,`` separator is
not a number we accept and is quarantined as ``bad_unit_price`` / ``bad_sale_amount``. The
``amount_mismatch`` check is done in exact integer arithmetic, so 0.011 off is quarantined and
0.009 off is valid, with no float rounding anywhere. Revenue sums these exact amounts and is
rounded half-up to two places only when written out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.sales import REASONS, REGION_OF, SALES_COLUMNS

SCALE = 10_000  # money and prices are integers of 1/10,000
MONEY_TOLERANCE = 100  # 0.01 in units of 1/10,000

# The normalized values that make two valid rows duplicates of each other.
TUPLE_COLUMNS: list[str] = [
    "sale_id",
    "sale_at_us",
    "store_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price_e4",
    "amount_e4",
    "region",
]

# Delivery order: a later delivery date, then file name, then line.
ORDER_COLUMNS: list[str] = ["delivery_day", "file_name", "line_number"]

BUCKETS: tuple[str, ...] = ("valid", "duplicate", "superseded")

# The instants a sale may have: their date is a representable date in UTC and in any time zone
# (years 1 to 9999, which every tool on the way supports: Python, Arrow, DuckDB, Postgres),
# hence a day's margin inside that range. A sale_ts outside it is quarantined as bad_sale_ts.
FIRST_SALE_US = int((np.datetime64("0001-01-02", "us") - np.datetime64(0, "us")).astype("int64"))
LAST_SALE_US = int((np.datetime64("9999-12-31", "us") - np.datetime64(0, "us")).astype("int64"))

_TS_PATTERN = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
    r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_DECIMAL_PATTERN = r"^(?P<sign>[+-]?)(?P<int>\d*)(?:\.(?P<frac>\d*))?$"

# Columns of a validated partition (see :func:`validate_sales`).
VALIDATED_DTYPES: dict[str, str] = {
    "file_name": "str",
    "file_modified_at_us": "int64",
    "delivery_day": "int32",
    "line_number": "int64",
    "reason": "str",
    **{f"raw_{c}": "str" for c in SALES_COLUMNS},
    "raw_line": "str",
    "sale_id": "str",
    "store_id": "str",
    "customer_id": "str",
    "product_id": "str",
    "region": "str",
    "sale_at_us": "Int64",
    "quantity": "Int64",
    "unit_price_e4": "Int64",
    "amount_e4": "Int64",
    "sale_date": "Int32",
    "sale_month": "Int32",
    "h": "Int32",
    "sale_key": "Int32",
}


def _text(s: pd.Series) -> pd.Series:
    """Trimmed text, with missing values as the empty string."""
    return s.astype("str").fillna("").str.strip()


def parse_decimal_e4(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse decimal text exactly into integers of 1/10,000.

    Args:
        s: Text values (may be null).

    Returns:
        ``(values, ok)``: int64 values (0 where not ok) and a boolean mask of the values that
        are decimals with at most four significant decimal places and 13 integer digits.
    """
    text = pa.array(_text(s), pa.string())
    parts = pc.extract_regex(text, _DECIMAL_PATTERN)  # null where the text does not match
    matched = parts.is_valid()
    raw_int = pc.fill_null(parts.field("int"), "")
    raw_frac = pc.fill_null(parts.field("frac"), "")
    sign = pc.fill_null(parts.field("sign"), "")
    int_part = pc.utf8_ltrim(raw_int, "0")
    frac = pc.utf8_rtrim(raw_frac, "0")
    has_digits = pc.greater(pc.add(pc.utf8_length(raw_int), pc.utf8_length(raw_frac)), 0)
    short = pc.and_(
        pc.less_equal(pc.utf8_length(frac), 4), pc.less_equal(pc.utf8_length(int_part), 13)
    )
    ok = pc.and_(pc.and_(matched, has_digits), short)
    ok = pc.fill_null(ok, False)
    int_text = pc.if_else(pc.and_(ok, pc.greater(pc.utf8_length(int_part), 0)), int_part, "0")
    frac_text = pc.utf8_rpad(pc.if_else(ok, frac, ""), 4, "0")
    value = pc.add(
        pc.multiply(pc.cast(int_text, pa.int64()), SCALE), pc.cast(frac_text, pa.int64())
    )
    value = pc.if_else(pc.equal(sign, "-"), pc.negate(value), value)
    value = pc.if_else(ok, value, 0)
    return (
        pd.Series(value.to_numpy(zero_copy_only=False), index=s.index, dtype="int64"),
        pd.Series(ok.to_numpy(zero_copy_only=False), index=s.index, dtype=bool),
    )


def parse_quantity(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a quantity: digits only (``2.0`` is not an integer), at least 1.

    Args:
        s: Text values (may be null).

    Returns:
        ``(values, ok)``: int64 values (0 where not ok) and the mask of valid quantities.
    """
    text = _text(s).str.lstrip("+")
    digits = text.str.fullmatch(r"\d+")
    significant = text.str.lstrip("0")
    ok = digits & (significant.str.len() <= 12) & (significant.str.len() > 0)
    value = significant.where(ok, "0").astype("int64")
    return value, ok.astype(bool)


def parse_instant_us(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse ISO 8601 timestamps into UTC microseconds; no offset means UTC.

    Args:
        s: Text values (may be null).

    Returns:
        ``(values, ok)``: int64 microseconds since the epoch in UTC (0 where not ok) and the
        mask of values that are ISO 8601 date-times of real calendar instants, from
        :data:`FIRST_SALE_US` (included) to :data:`LAST_SALE_US` (excluded).
    """
    text = _text(s)
    shaped = text.str.fullmatch(_TS_PATTERN)
    parsed = pd.to_datetime(text.where(shaped, None), format="ISO8601", utc=True, errors="coerce")
    micros = parsed.dt.as_unit("us").astype("int64", copy=False) if len(parsed) else parsed
    in_range = parsed.notna() & (micros >= FIRST_SALE_US) & (micros < LAST_SALE_US)
    ok = shaped & in_range
    values = pd.Series(np.where(ok, micros, 0), index=s.index, dtype="int64")
    return values, ok.astype(bool)


def local_days(instants_us: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Business-time-zone calendar date and first of month of UTC instants.

    Args:
        instants_us: int64 microseconds since the epoch (UTC).
        timezone: IANA time zone name of the business, e.g. ``Europe/Moscow``.

    Returns:
        ``(days, month_days)``: int32 days since 1970-01-01 of the local date and of the first
        day of its month.
    """
    ts = pd.to_datetime(instants_us.to_numpy(dtype="int64"), unit="us", utc=True)
    local = ts.tz_convert(timezone).tz_localize(None).to_numpy(dtype="datetime64[us]")
    days = local.astype("datetime64[D]")
    months = local.astype("datetime64[M]").astype("datetime64[D]")
    return days.astype("int64").astype("int32"), months.astype("int64").astype("int32")


def sale_id_hashes(sale_ids: pd.Series) -> np.ndarray:
    """A stable 64-bit hash of each sale_id (pandas' keyed hash: the same in every process)."""
    if len(sale_ids) == 0:
        return np.zeros(0, dtype="uint64")
    return pd.util.hash_pandas_object(sale_ids.astype("str"), index=False).to_numpy()


def bucket_of(hashes: np.ndarray, n_partitions: int) -> np.ndarray:
    """The hash bucket of each :func:`sale_id_hashes` value (its low bits)."""
    return (hashes % np.uint64(n_partitions)).astype("int32")


def sale_key_of(hashes: np.ndarray) -> np.ndarray:
    """A 32-bit key of each :func:`sale_id_hashes` value (its high 32 bits; with a power of
    two of buckets, independent of the bucket): equal sale_ids have equal keys, and a few
    different ones share a key too."""
    return (hashes >> np.uint64(32)).astype("uint32").view("int32")


def _mismatch(quantity: pd.Series, price_e4: pd.Series, amount_e4: pd.Series) -> pd.Series:
    """abs(amount - quantity * price) > 0.01 in exact integer arithmetic."""
    estimate = quantity.astype("float64") * price_e4.astype("float64")
    safe = estimate.abs() < 4e18
    product = (quantity.where(safe, 0) * price_e4.where(safe, 0)).astype("int64")
    result = (amount_e4 - product).abs() > MONEY_TOLERANCE
    for idx in np.flatnonzero(~safe.to_numpy()):  # rare huge values: Python's exact ints
        q, p, a = int(quantity.iat[idx]), int(price_e4.iat[idx]), int(amount_e4.iat[idx])
        result.iat[idx] = abs(a - q * p) > MONEY_TOLERANCE
    return result


def validate_sales(raw: pd.DataFrame, timezone: str, n_partitions: int) -> pd.DataFrame:
    """Apply the quarantine rules to raw sales records and normalize the valid ones.

    Args:
        raw: Records in the ``raw/sales`` layout: the nine contract columns as text plus
            ``_file_name``, ``_delivery_date``, ``_file_modified_at``, ``_line_number``,
            ``_malformed`` and ``_raw_line``; ``_delivery_date`` and ``_file_modified_at``
            already as ``delivery_day`` (int32 days) and ``file_modified_at_us`` (int64).
        timezone: The business time zone (for ``sale_date`` and ``sale_month``).
        n_partitions: The number of sale_id hash buckets of the stage's state.

    Returns:
        One row per record with the columns of :data:`VALIDATED_DTYPES`: ``reason`` is null
        for a valid row (then the normalized columns are set) and holds the reason code of a
        quarantined one (then the raw columns keep what was delivered).
    """
    out = pd.DataFrame(index=raw.index)
    out["file_name"] = raw["_file_name"].astype("str")
    out["file_modified_at_us"] = raw["file_modified_at_us"].astype("int64")
    out["delivery_day"] = raw["delivery_day"].astype("int32")
    out["line_number"] = raw["_line_number"].astype("int64")
    for col in SALES_COLUMNS:
        out[f"raw_{col}"] = raw[col].astype("str")
    out["raw_line"] = raw["_raw_line"].astype("str")

    sale_id = _text(raw["sale_id"])
    store_id = _text(raw["store_id"])
    product_id = _text(raw["product_id"])
    customer_id = _text(raw["customer_id"])
    sale_at_us, ts_ok = parse_instant_us(raw["sale_ts"])
    quantity, qty_ok = parse_quantity(raw["quantity"])
    price_e4, price_ok = parse_decimal_e4(raw["unit_price"])
    price_ok = price_ok & (price_e4 > 0)
    amount_e4, amount_ok = parse_decimal_e4(raw["sale_amount"])
    numbers_ok = qty_ok & price_ok & amount_ok
    mismatch = pd.Series(False, index=raw.index)
    if numbers_ok.any():
        mismatch[numbers_ok] = _mismatch(
            quantity[numbers_ok], price_e4[numbers_ok], amount_e4[numbers_ok]
        )
    region = _text(raw["region"]).str.lower().map(REGION_OF)

    too_long = raw["_malformed"].fillna("").astype("str").str.startswith("record_too_long")
    checks = [
        (raw["_malformed"].notna() & ~too_long).to_numpy(),
        too_long.to_numpy(),
        (sale_id == "").to_numpy(),
        (store_id == "").to_numpy(),
        (product_id == "").to_numpy(),
        ~ts_ok.to_numpy(),
        ~qty_ok.to_numpy(),
        ~price_ok.to_numpy(),
        ~amount_ok.to_numpy(),
        mismatch.to_numpy(dtype=bool),
        region.isna().to_numpy(),
    ]
    reason = np.select(checks, list(REASONS), default="")
    out["reason"] = pd.Series(reason, index=raw.index, dtype="str").replace("", None)
    valid = out["reason"].isna()

    out["sale_id"] = sale_id.where(valid, None)
    out["store_id"] = store_id.where(valid, None)
    out["customer_id"] = customer_id.where(valid & (customer_id != ""), None)
    out["product_id"] = product_id.where(valid, None)
    out["region"] = region.where(valid, None).astype("str")
    out["sale_at_us"] = pd.array(np.where(valid, sale_at_us, 0), dtype="Int64")
    out["quantity"] = pd.array(np.where(valid, quantity, 0), dtype="Int64")
    out["unit_price_e4"] = pd.array(np.where(valid, price_e4, 0), dtype="Int64")
    out["amount_e4"] = pd.array(np.where(valid, amount_e4, 0), dtype="Int64")
    days, months = local_days(sale_at_us.where(valid, 0), timezone)
    out["sale_date"] = pd.array(days, dtype="Int32")
    out["sale_month"] = pd.array(months, dtype="Int32")
    hashes = sale_id_hashes(sale_id)
    out["h"] = pd.array(bucket_of(hashes, n_partitions), dtype="Int32")
    out["sale_key"] = pd.array(sale_key_of(hashes), dtype="Int32")
    invalid = ~valid.to_numpy()
    for col in ("sale_at_us", "quantity", "unit_price_e4", "amount_e4", "sale_date", "sale_month"):
        out.loc[invalid, col] = pd.NA
    out.loc[invalid, ["h", "sale_key"]] = pd.NA
    return out.astype(VALIDATED_DTYPES)


def assign_buckets(rows: pd.DataFrame) -> pd.Series:
    """Duplicate / superseded / valid over valid rows, in delivery order.

    The rows must hold every valid row (of the latest version of every file) of each sale_id
    they contain: the decision for a sale_id depends on all of its rows and on no others.

    Args:
        rows: Valid rows with :data:`TUPLE_COLUMNS` and :data:`ORDER_COLUMNS`.

    Returns:
        The bucket of each row (``valid``, ``duplicate`` or ``superseded``), same index.
    """
    if rows.empty:
        return pd.Series([], index=rows.index, dtype="str")
    ordered = rows.sort_values(ORDER_COLUMNS, kind="stable")
    duplicate = ordered.duplicated(subset=TUPLE_COLUMNS, keep="first")
    kept = ordered[~duplicate]
    latest = ~kept.duplicated(subset=["sale_id"], keep="last")
    bucket = pd.Series("duplicate", index=ordered.index, dtype="str")
    bucket[kept.index] = np.where(latest, "valid", "superseded")
    return bucket.reindex(rows.index)
