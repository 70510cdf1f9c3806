"""dlt's working folder of a run: named so the next run's cleanup knows whose it was."""

from __future__ import annotations

import os
from pathlib import Path

from ingestion.pipelines import WORK_DIR_PREFIX, pipelines_working_dir


def test_a_runs_own_working_folder_carries_its_pid_and_is_removed(tmp_path: Path) -> None:
    with pipelines_working_dir(None) as folder:
        assert Path(folder).name.startswith(f"{WORK_DIR_PREFIX}{os.getpid()}-")
        assert Path(folder).is_dir()
    assert not Path(folder).exists()


def test_a_given_working_folder_is_kept(tmp_path: Path) -> None:
    with pipelines_working_dir(str(tmp_path)) as folder:
        assert folder == str(tmp_path)
    assert tmp_path.is_dir()
