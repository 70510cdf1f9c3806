"""The plan's one decision (which sales files changed) and the state store's interface, on
hand-made inputs: no cluster, no raw files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dask_preprocess import preprocess_sales
from dask_preprocess.plan import changed_versions
from dask_preprocess.raw import VERSIONS_META
from dask_preprocess.state import FILES_DTYPES, StateStore, empty_frame
from storage import Lake


def _versions(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """Delivered file versions: (name, modification time, status)."""
    return pd.DataFrame(
        {
            "file_name": pd.Series([r[0] for r in rows], dtype="str"),
            "file_modified_at_us": pd.Series([r[1] for r in rows], dtype="int64"),
            "delivery_day": pd.Series([20_000] * len(rows), dtype="int32"),
            "status": pd.Series([r[2] for r in rows], dtype="str"),
            "failure_reason": pd.Series([None] * len(rows), dtype="str"),
        }
    )


def _files_state(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """The state's per-file rows for (name, modification time, status)."""
    state = _versions(rows).assign(rows_in=0, rows_quarantined=0, quarantined_by_reason="{}")
    return state[list(FILES_DTYPES)].astype(FILES_DTYPES)


def test_a_file_changed_when_its_latest_version_or_status_differs_from_the_state() -> None:
    state = _files_state(
        [("same", 1, "loaded"), ("newer", 1, "loaded"), ("now_failed", 1, "loaded")]
    )
    delivered = _versions(
        [
            ("same", 1, "loaded"),
            ("newer", 1, "loaded"),
            ("newer", 2, "loaded"),
            ("now_failed", 1, "failed"),
            ("unknown", 5, "loaded"),
        ]
    )
    changed = changed_versions(delivered, VERSIONS_META, state)
    assert changed.names == ["newer", "now_failed", "unknown"]
    assert sorted(changed.to_validate) == [("newer", 2), ("unknown", 5)]
    # Raw rows of a version nobody delivered yet count as a loaded version.
    raw = VERSIONS_META.copy()
    raw.loc[0] = ["same", 3, 20_000, 7]
    raw = raw.astype(VERSIONS_META.dtypes.to_dict())
    assert changed_versions(_versions([]), raw, state).to_validate == [("same", 3)]
    # Nothing delivered, nothing read: the state's own versions have not changed.
    assert changed_versions(_versions([]), VERSIONS_META, state).names == []
    assert changed_versions(_versions([]), VERSIONS_META, empty_frame(FILES_DTYPES)).names == []


def test_the_state_keeps_its_time_zone_and_bucket_count(tmp_path: Path) -> None:
    meta = {"format": 3, "timezone": "Europe/Moscow", "n_hash_partitions": 8}
    (tmp_path / "preprocessed/_state").mkdir(parents=True)
    (tmp_path / "preprocessed/_state/meta.json").write_text(json.dumps(meta))
    lake = Lake(str(tmp_path))
    assert StateStore(lake, "Europe/Moscow").open(32).n_hash_partitions == 8
    with pytest.raises(ValueError, match="time zone 'Europe/Moscow', not 'UTC'"):
        StateStore(lake, "UTC").open(32)


def test_a_run_begins_without_what_a_failed_run_staged(tmp_path: Path) -> None:
    state = tmp_path / "preprocessed/_state"
    (state / "staging/old-run/valid/h=001").mkdir(parents=True)
    (state / "dirty.json").write_text(json.dumps({"sale_date": [3, 4], "sale_month": [0]}))
    store = StateStore(Lake(str(tmp_path)), "UTC")
    assert store.open(8).n_hash_partitions == 8  # a new state: the bucket count asked for
    run = store.begin()
    assert not (state / "staging/old-run").exists()
    assert run.staging == f"preprocessed/_state/staging/{run.run_id}"
    assert run.dirty == {"sale_date": {3, 4}, "sale_month": {0}}
    assert run.manifest == {}


def test_an_empty_lake_is_up_to_date(tmp_path: Path) -> None:
    """No raw file, no delivered file, no state: nothing to do (and no cluster started)."""
    result = preprocess_sales(str(tmp_path), scheduler_address="tcp://nowhere:1")
    assert not result.did_work and result.file_quality == [] and result.step_seconds == {}
    assert not any(tmp_path.iterdir())
