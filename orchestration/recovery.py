"""Rebuilding the warehouse from the lake (``elt replay``): an empty warehouse to start from.

The lake keeps everything a warehouse is made of (the raw zone as delivered, the preprocessed
partitions), and the load's and dbt's own state live in the warehouse (dlt's state tables in
the raw schemas, dbt's in ``elt_dbt_state``). So an empty warehouse is all a replay needs:
the load reads every lake file again and dbt builds every node.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from contract.warehouse import PLATFORM_SCHEMAS
from orchestration.dbt_state import STATE_TABLE, Warehouse

if TYPE_CHECKING:
    from elt_settings import Settings


class WarehouseInUse(Exception):
    """The warehouse holds data that a replay would replace, and the user did not say so."""


def set_warehouse_aside(settings: Settings, *, replace: bool) -> str:
    """Leave an empty warehouse for the replay; what was done, for the user ("" if nothing).

    DuckDB: the file (and its write-ahead log) is renamed ``<file>.before-replay-<UTC time>``.
    Postgres: the platform's schemas and dbt's state table are dropped, only with ``replace``.

    Raises:
        WarehouseInUse: Postgres holds the platform's schemas and ``replace`` is false.
    """
    if settings.target == "duckdb":
        path = Path(settings.duckdb_path).expanduser().resolve()
        if not path.exists():
            return ""
        from orchestration.backup import move_aside

        aside = move_aside(path, dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"), "replay")
        return f"the warehouse {path} was set aside as {aside}"
    warehouse = Warehouse("postgres", "", settings.postgres_dsn.get_secret_value())
    found = [
        schema
        for (schema,) in warehouse.query(
            "select schema_name from information_schema.schemata where schema_name = any(%s)",
            (list(PLATFORM_SCHEMAS),),
        )
    ]
    if not found:
        return ""
    if not replace:
        raise WarehouseInUse(
            f"the warehouse holds {', '.join(sorted(found))}: `elt replay --yes` drops them "
            "and rebuilds from the lake (`elt backup` first keeps a copy)"
        )
    with warehouse.cursor() as (conn, cur):
        for schema in found:
            cur.execute(f'drop schema "{schema}" cascade')
        cur.execute(f"drop table if exists {STATE_TABLE}")
        conn.commit()
    return f"dropped {', '.join(sorted(found))} and dbt's state: rebuilding from the lake"
