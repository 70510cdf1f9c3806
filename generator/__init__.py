"""The source-data generator: retailer drops that follow docs/source-contract.md.

`generate_drop` writes stores, products, customers and daily sales files (with every dirty
case of the contract) to any fsspec URL, plus a manifest beside the drop with the truth
computed by the sales rules of docs/interfaces.md; `append_days` delivers further days.
"""

from .drop import append_days, generate_drop, manifest_url, read_manifest
from .params import SCALES, DirtyRates

__all__ = ["SCALES", "DirtyRates", "append_days", "generate_drop", "manifest_url", "read_manifest"]
