"""Conversions the stage's steps share: day numbers, UTC microseconds, exact money, runs of
equal values and membership masks over Arrow and NumPy arrays."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EPOCH = date(1970, 1, 1)
CENT = Decimal("0.01")
MONEY = pa.decimal128(18, 2)
TS_UTC = pa.timestamp("us", tz="UTC")

_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def days_to_date(day: int) -> date:
    """A day number (days since 1970-01-01) as a date."""
    return EPOCH + timedelta(days=int(day))


def date_to_days(value: date) -> int:
    """A date as a day number (days since 1970-01-01)."""
    return (value - EPOCH).days


def revenue(amount_e4: int) -> Decimal:
    """Exact sum of amounts in 1/10,000, rounded half-up to two places."""
    return (Decimal(int(amount_e4)) / 10_000).quantize(CENT, rounding=ROUND_HALF_UP)


def money_array(amounts_e4: Any) -> pa.Array:
    """Sums in 1/10,000 as decimal(18,2), rounded half-up (away from zero), vectorized."""
    v = np.asarray(amounts_e4, dtype="int64")
    cents = np.sign(v) * ((np.abs(v) + 50) // 100)
    scaled = pc.multiply(
        pa.array(cents, pa.int64()).cast(pa.decimal128(19, 0)),
        pa.scalar(Decimal("0.01"), pa.decimal128(3, 2)),
    )
    return scaled.cast(MONEY)


def micros(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Any timestamp-like or text column as int64 UTC microseconds (-1 when null)."""
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        arr = arr.cast(TS_UTC)
    elif pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("us")).cast(TS_UTC)
    else:
        parsed = pd.to_datetime(
            pd.Series(arr.to_pylist(), dtype="str"), utc=True, errors="coerce", format="ISO8601"
        )
        return parsed.dt.as_unit("us").astype("int64").where(parsed.notna(), -1).to_numpy()
    return arr.cast(pa.int64()).fill_null(-1).to_numpy()


def delivery_days(arr: pa.ChunkedArray | pa.Array, file_names: pd.Series) -> np.ndarray:
    """A delivery-date column as int32 days; missing dates come from the file name."""
    if pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
        days = pd.Series(arr.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False))
        days = days.astype("Float64")
    else:
        parsed = pd.to_datetime(pd.Series(arr.to_pandas(), dtype="str"), errors="coerce")
        days = pd.Series((parsed - pd.Timestamp("1970-01-01")).dt.days, dtype="Float64")
    days = days.reset_index(drop=True)
    if days.isna().any():
        names = file_names.reset_index(drop=True)
        from_name = {n: _name_day(n) for n in pd.unique(names[days.isna()])}
        days = days.fillna(names.map(from_name).astype("Float64"))
    return days.fillna(0).astype("int32").to_numpy()


def _name_day(name: str) -> float:
    """The day number of the first ISO date in a file name (NaN without one)."""
    match = _NAME_DATE.search(str(name))
    if not match:
        return float("nan")
    try:
        return float(date_to_days(date.fromisoformat(match.group(1))))
    except ValueError:
        return float("nan")


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of equal neighbours in ``values`` (sorted or grouped)."""
    if len(values) == 0:
        return []
    cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(values)]
    return list(itertools.pairwise(bounds))


def mask_in(column: pa.ChunkedArray | pa.Array, values: pa.Array) -> pa.Array:
    """Whether each value of ``column`` is in ``values`` (nulls are not)."""
    return pc.fill_null(pc.is_in(column, value_set=values), False)
