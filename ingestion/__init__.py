"""Ingestion with dlt: the drop into the lake's ``raw/`` zone, and the lake into the warehouse.

Public functions (the orchestration calls them with values from the settings module):

- :func:`extract_to_lake`: drop -> lake (``raw/``), incremental, PII pseudonymized in the stream.
- :func:`load_to_warehouse`: lake -> warehouse raw schemas (``raw_shop``, ``raw_sales``).
"""

from .drop_to_lake import extract_to_lake
from .lake_to_warehouse import load_to_warehouse
from .pii import MissingPiiKeyError
from .results import ExtractResult, FailedFile, LoadResult
from .sales_csv import FileLimits

__all__ = [
    "ExtractResult",
    "FailedFile",
    "FileLimits",
    "LoadResult",
    "MissingPiiKeyError",
    "extract_to_lake",
    "load_to_warehouse",
]
