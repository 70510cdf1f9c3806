"""The stage's dlt pipelines: their names and their local working folder.

dlt keeps each pipeline's working state (schemas, state, load packages) in a local folder
(``pipelines_dir``). The orchestration gives one per run; without one, a run makes its own
in the system's temporary folder and removes it after. Either way the state that matters is
restored from the destination (the lake or the warehouse), so a lost folder loses nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: drop -> lake's ``raw/`` zone.
DROP_PIPELINE_NAME = "drop_to_lake"
#: lake -> the warehouse's ``raw_shop`` schema.
SHOP_PIPELINE_NAME = "lake_to_raw_shop"
#: lake -> the warehouse's ``raw_sales`` schema.
SALES_PIPELINE_NAME = "lake_to_raw_sales"

#: A run's own working folder is ``<temp>/elt-dlt-<pid>-<random>``: the next run's cleanup
#: (``orchestration/leftovers.py``) removes those of processes that are gone.
WORK_DIR_PREFIX = "elt-dlt-"


@contextmanager
def pipelines_working_dir(pipelines_dir: str | None) -> Iterator[str]:
    """dlt's working folder for a run: ``pipelines_dir`` as given, or a temporary one.

    Args:
        pipelines_dir: the caller's folder (kept), or None for a temporary one removed on exit.

    Yields:
        The folder to pass to ``dlt.pipeline(pipelines_dir=...)``.
    """
    if pipelines_dir is not None:
        yield pipelines_dir
        return
    path = tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
