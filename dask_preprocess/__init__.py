"""Dask preprocessing of the lake's sales: validation, de-duplication, pre-aggregation.

The stage reads ``raw/sales`` and ``raw/delivered_files`` from the lake and writes the
``preprocessed/`` and ``quarantine/sales_rows`` zones (see ``docs/interfaces.md``).
"""

from dask_preprocess.cluster import dask_client, local_cluster_size
from dask_preprocess.preprocess import FileQuality, PreprocessResult, file_key, preprocess_sales

__all__ = [
    "FileQuality",
    "PreprocessResult",
    "dask_client",
    "file_key",
    "local_cluster_size",
    "preprocess_sales",
]
