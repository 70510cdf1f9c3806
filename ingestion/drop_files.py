"""Which files of a drop are deliveries, and what their names say (contract section 1).

The readers of ``drop_to_lake`` read the files these rules accept; every other file is
recorded as ignored, with the reason :func:`ignored_reason` gives.
"""

from __future__ import annotations

import os

from dlt.sources.filesystem import FileItemDict

from contract.drop import KIND_SUFFIXES

#: Kinds of delivered files and the globs, relative to the drop, that find them.
KIND_GLOBS: dict[str, str] = {
    "stores": "stores/*.json",
    "products": "products/*.json",
    "customers": "customers/*.jsonl",
    "sales": "sales/*.csv*",
}


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
