"""What a scheduled run builds: dbt's own state selection, against the warehouse itself.

After a successful build, the run keeps dbt's artifacts of that build (``manifest.json``
and the ``sources.json`` of the freshness check before it) in the warehouse it describes,
in a table ``elt_dbt_state`` of the target's own schema. The next run reads them back into
a folder and builds::

    dbt build --select source_status:fresher+ state:modified+ <missing relations>
              --state <that folder> --exclude-resource-type unit_test

- ``source_status:fresher+``: the sources whose newest load is newer than at the last
  successful build (dbt compares the two ``sources.json``), and everything they reach;
- ``state:modified+``: the models whose code changed since then, and everything they reach;
- the models and snapshots whose relation is not in the warehouse's catalog now
  (``information_schema.tables``): a relation dropped by hand, or a view Postgres dropped
  with a table rebuilt by hand (``dbt run -s <table> --full-refresh``), is built again.

Nothing here is a record that can drift from the warehouse: the state lives and dies with
the warehouse (another warehouse has its own; a restored backup brings its own), what is
missing is read from the catalog, and a failed build keeps the previous state, so the next
run selects again what the failed one had to build. Every node is built when the warehouse
has no state yet (or one of another dbt version), and with ``--full-refresh``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_TABLE = "elt_dbt_state"
STATE_FILES = ("manifest.json", "sources.json")
#: Node kinds whose relation a build creates (ephemeral models have none).
_MATERIALIZED = ("model", "snapshot", "seed")


@dataclass(frozen=True)
class Warehouse:
    """The warehouse of the dbt target, for the little the flow reads and writes itself."""

    target: str
    duckdb_path: str
    postgres_dsn: str
    read_only: bool = False
    """Open without the right to write (``elt status``: no lock taken, nothing created)."""

    @contextmanager
    def cursor(self) -> Iterator[tuple[Any, Any]]:
        """A connection and its cursor (DuckDB's connection is its own cursor), closed after."""
        if self.target == "duckdb":
            import duckdb

            conn = duckdb.connect(self.duckdb_path, read_only=self.read_only)
            cursor = conn
        else:
            import psycopg2

            conn = psycopg2.connect(self.postgres_dsn)
            conn.set_session(readonly=self.read_only)
            cursor = conn.cursor()
        try:
            yield conn, cursor
        finally:
            conn.close()

    def param(self) -> str:
        """The driver's placeholder for a query parameter."""
        return "?" if self.target == "duckdb" else "%s"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one query (``param()`` is the placeholder of ``params``)."""
        with self.cursor() as (_, cur):
            cur.execute(sql, params)
            return list(cur.fetchall())

    def relations(self) -> set[tuple[str, str]]:
        """``(schema, name)`` of every table and view of the warehouse, lower case."""
        sql = (
            "select table_schema, table_name from information_schema.tables"
            " where table_catalog = current_database()"
        )
        with self.cursor() as (_, cur):
            cur.execute(sql)
            return {(schema.lower(), name.lower()) for schema, name in cur.fetchall()}

    def read_state(self, folder: Path) -> str | None:
        """Write the kept artifacts into ``folder``; the dbt version that made them, or None
        when the warehouse has none."""
        if self.target == "duckdb" and not Path(self.duckdb_path).exists():
            return None
        with self.cursor() as (_, cur):
            try:
                cur.execute(f"select name, content, dbt_version from {STATE_TABLE}")
            except Exception:  # no table yet: no successful build of this warehouse
                return None
            rows = cur.fetchall()
        if {name for name, _, _ in rows} != set(STATE_FILES):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        for name, content, _ in rows:
            (folder / name).write_text(content, encoding="utf-8")
        return str(rows[0][2])

    def save_state(self, target_path: Path) -> None:
        """Keep the artifacts of a successful build (all of them, or none)."""
        contents = [
            (name, (target_path / name).read_text(encoding="utf-8")) for name in STATE_FILES
        ]
        p = self.param()
        with self.cursor() as (conn, cur):
            if self.target == "duckdb":  # psycopg2 opens its transaction itself
                cur.execute("begin transaction")
            cur.execute(
                f"create table if not exists {STATE_TABLE} (name varchar(64) primary key,"
                " content text not null, dbt_version varchar(32) not null,"
                " saved_at timestamp not null)"
            )
            cur.execute(f"delete from {STATE_TABLE}")
            for name, content in contents:
                cur.execute(
                    f"insert into {STATE_TABLE} values ({p}, {p}, {p}, current_timestamp)",
                    (name, content, version("dbt-core")),
                )
            conn.commit()


def missing_relations(manifest: dict, existing: Iterable[tuple[str, str]]) -> list[str]:
    """Names of the models, snapshots and seeds of ``manifest`` (``manifest.json``) whose
    relation is not among ``existing`` (``Warehouse.relations``)."""
    present = set(existing)
    missing = []
    for node in (manifest.get("nodes") or {}).values():
        if node.get("resource_type") not in _MATERIALIZED:
            continue
        if (node.get("config") or {}).get("materialized") == "ephemeral":
            continue
        relation = (str(node["schema"]).lower(), str(node.get("alias") or node["name"]).lower())
        if relation not in present:
            missing.append(node["name"])
    return sorted(missing)


def fresher_sources(previous: Path, current: Path) -> list[str]:
    """The sources (``source.table``) with newer loads in ``current`` than in ``previous``
    (two ``sources.json``): what ``source_status:fresher`` selects, named for the summary."""

    def newest(path: Path) -> dict[str, str]:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            item["unique_id"]: item["max_loaded_at"]
            for item in data.get("results", [])
            if item.get("max_loaded_at")
        }

    before, now = newest(previous), newest(current)
    fresher = [uid for uid, at in now.items() if uid not in before or at > before[uid]]
    return sorted(uid.split(".", 2)[-1] for uid in fresher)


@dataclass(frozen=True)
class BuildPlan:
    """The dbt arguments of one scheduled build, and why."""

    args: list[str]
    full: bool
    reason: str

    @property
    def summary(self) -> str:
        """``every node: <why>`` or ``a selection: <what it follows>``."""
        return f"{'every node' if self.full else 'a selection'}: {self.reason}"


def plan_build(
    build: list[str],
    *,
    state_dir: Path | None,
    state_dbt_version: str | None,
    missing: list[str],
    fresher: list[str] | None = None,
    full_refresh: bool = False,
) -> BuildPlan:
    """The build's arguments (see the module docstring).

    Args:
        build: every node's build (``PRODUCTION_BUILD``).
        state_dir: the folder holding the last successful build's artifacts, if any.
        state_dbt_version: the dbt version that wrote them.
        missing: models and snapshots whose relation is not in the warehouse.
        fresher: the sources with new data (:func:`fresher_sources`), for the summary.
        full_refresh: rebuild the incremental models from scratch.
    """
    if full_refresh:
        return BuildPlan([*build, "--full-refresh"], True, "full refresh asked for")
    if state_dir is None:
        return BuildPlan(list(build), True, "no successful build of this warehouse yet")
    if state_dbt_version != version("dbt-core"):
        reason = f"the last build was made by dbt {state_dbt_version}"
        return BuildPlan(list(build), True, reason)
    selectors = ["source_status:fresher+", "state:modified+", *missing]
    # An empty selection is the usual week without changed code: dbt's warning about one
    # selector that selects nothing would be noise.
    quiet = ["--warn-error-options", json.dumps({"silence": ["NoNodesForSelectionCriteria"]})]
    args = [*build, "--select", *selectors, "--state", str(state_dir), *quiet]
    news = ", ".join(fresher or []) or "no source"
    reason = f"what new data ({news}) and changed code reach"
    if missing:
        reason += ", and relations not in the warehouse: " + ", ".join(missing)
    return BuildPlan(args, False, reason)
