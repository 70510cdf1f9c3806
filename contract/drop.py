"""The drop's layout (§1): the folders the retailer delivers into."""

from __future__ import annotations

#: One folder per kind of delivery; a drop has at least one of them.
DROP_FOLDERS: tuple[str, ...] = ("stores", "products", "customers", "sales")
