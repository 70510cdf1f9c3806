"""What killed runs leave behind, removed by the next run.

A run killed hard (``kill -9``, an out-of-memory kill, a closed terminal) cannot clean up:
its dlt working folder stays in the temporary folder, and the temporary Prefect server that
``elt run`` starts (Prefect's ephemeral mode, a ``uvicorn`` child process of the run) keeps
running, orphaned, with a few hundred MB. Prefect does not reap those of earlier processes,
so the next ``elt run`` does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: What tells a temporary Prefect server (Prefect sets it in the server's environment).
_EPHEMERAL_ENV = ("PREFECT__SERVER_EPHEMERAL", "1")
_SERVER_APP = "prefect.server.api.server:create_app"


def remove_leftover_work_dirs() -> None:
    """Remove the dlt working folders of runs whose process is gone."""
    from ingestion.pipelines import WORK_DIR_PREFIX  # the run's folder is named there

    for path in Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*"):
        pid = path.name.removeprefix(WORK_DIR_PREFIX).split("-", 1)[0]
        if not pid.isdigit():  # an older version's folder, without a pid: gone after a day
            if time.time() - path.stat().st_mtime > 86400:
                shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def stop_orphaned_prefect_servers() -> int:
    """Stop the temporary Prefect servers whose run is gone (their parent is init); how many.

    Only this user's processes that Prefect started as temporary servers are touched: a
    server started with ``prefect server start`` is not temporary.
    """
    import psutil

    stopped = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "username"]):
        try:
            if proc.info["ppid"] != 1 or _SERVER_APP not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.info["username"] != psutil.Process().username():
                continue
            key, value = _EPHEMERAL_ENV
            if proc.environ().get(key) != value:
                continue
            proc.terminate()
            stopped.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    _, alive = psutil.wait_procs(stopped, timeout=5)
    for proc in alive:
        proc.kill()
    if stopped:
        logger.info("Stopped %d temporary Prefect server(s) left by killed runs", len(stopped))
    return len(stopped)
