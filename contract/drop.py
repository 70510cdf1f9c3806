"""The drop's layout (§1): the folders the retailer delivers into, and the dates in names."""

from __future__ import annotations

import datetime as dt
import posixpath
import re

#: One folder per kind of delivery; a drop has at least one of them.
DROP_FOLDERS: tuple[str, ...] = ("stores", "products", "customers", "sales")

#: The file endings of each kind (a sales file may be gzip-compressed).
KIND_SUFFIXES: dict[str, tuple[str, ...]] = {
    "stores": (".json",),
    "products": (".json",),
    "customers": (".jsonl",),
    "sales": (".csv", ".csv.gz"),
}

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


def delivery_date_of(file_name: str) -> dt.date | None:
    """The delivery date in a file's name, if any.

    Args:
        file_name: e.g. ``sales/sales_2026-01-10.csv.gz``.

    Returns:
        The date, or None when the name carries none (or an impossible one).
    """
    match = _DATE_IN_NAME.search(posixpath.basename(file_name))
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None
