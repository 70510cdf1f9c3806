"""Many small lake files written (or deleted) at once, in threads shared by the process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from storage import Lake

#: Writes many small partition files at once (Parquet encoding and I/O release the GIL).
#: One pool for the process, its threads started once: tasks do not start threads (see
#: ``cluster.py`` on the deadlock that starting threads under the workers' profiler risks).
_WRITERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lake-writer")


def write_files(lake: Lake, tables: dict[str, pa.Table]) -> None:
    """Write many small files at once, in the shared writer threads."""
    list(_WRITERS.map(lambda item: lake.write_table(*item), tables.items()))


def delete_files(lake: Lake, paths: list[str]) -> None:
    """Delete many files at once (absent ones are skipped), in the shared writer threads."""
    list(_WRITERS.map(lake.delete, paths))
