"""Which files of a drop are deliveries, and what their names say (contract section 1).

The readers of ``drop_to_lake`` read the files these rules accept; every other file is
recorded as ignored, with the reason :func:`ignored_reason` gives.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re

from dlt.sources.filesystem import FileItemDict

#: Kinds of delivered files and the globs, relative to the drop, that find them.
KIND_GLOBS: dict[str, str] = {
    "stores": "stores/*.json",
    "products": "products/*.json",
    "customers": "customers/*.jsonl",
    "sales": "sales/*.csv*",
}
#: File name endings accepted per kind (anything else in the folder is ignored).
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


def ignored_reason(relative_path: str) -> str | None:
    """Why the contract does not name a file of the drop (None: it is a delivery to read)."""
    parts = relative_path.split("/")
    if any(part.startswith(".") for part in parts):
        return "a hidden file"
    if len(parts) != 2 or parts[0] not in KIND_SUFFIXES:
        return f"outside the contract's folders ({', '.join(KIND_SUFFIXES)})"
    if not parts[1].endswith(KIND_SUFFIXES[parts[0]]):
        return f"not a {parts[0]} file ({' or '.join(KIND_SUFFIXES[parts[0]])})"
    return None


def link_out_of_drop(item: FileItemDict) -> str | None:
    """The failure reason of a local file that is a link to somewhere outside the drop (or
    inside a linked folder that is): such a file is not read, whatever it points to."""
    if not item["file_url"].startswith("file://"):
        return None  # object stores have no links
    path = item.local_file_path
    root = path[: len(path) - len(item["relative_path"])]
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) == real_root:
        return None
    return "link_outside_drop: the file is a link to a path outside the drop; it was not read"
