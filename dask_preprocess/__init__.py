"""Dask preprocessing of the lake's sales: validation, de-duplication, pre-aggregation.

The stage reads ``raw/sales`` and ``raw/delivered_files`` from the lake and writes the
``preprocessed/`` and ``quarantine/sales_rows`` zones (see ``docs/interfaces.md``).
:func:`preprocess_sales` (``preprocess.py``) runs its steps, one module each: ``plan``,
``validate``, ``dedupe``, ``aggregate``, ``quality``, with the state behind ``state.py``.
"""

from dask_preprocess.cluster import dask_client, local_cluster_size
from dask_preprocess.preprocess import preprocess_sales
from dask_preprocess.quality import file_key
from dask_preprocess.result import FileQuality, PreprocessResult

__all__ = [
    "FileQuality",
    "PreprocessResult",
    "dask_client",
    "file_key",
    "local_cluster_size",
    "preprocess_sales",
]
