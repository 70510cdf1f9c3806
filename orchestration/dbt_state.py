"""Which dbt nodes a scheduled run must build: those that new data or changed code reach.

dbt's own way to build only what changed is ``state:modified+`` (the code, against the
manifest of an earlier build) and ``source_status:fresher+`` (the data, from ``dbt source
freshness`` results). Here the load stage says which raw tables it changed, which is what
``source_status:fresher+`` would find without a second dbt command and its queries, so a
run builds::

    dbt build --select source:<changed table>+ ... state:modified+ --state <last build>
        --exclude path:models/staging,config.materialized:view,state:unmodified
        --indirect-selection empty

The staging views among them are left out when their code did not change: such a view shows
its raw table's new rows without being created again, so re-creating it (three statements)
only costs time; their tests still run (``--indirect-selection empty`` keeps a test whose
model is left out: the ``+`` operators select the tests themselves). Only staging views:
they read the raw tables alone, which the load never drops, while a view over a dbt model
can be dropped by that model's rebuild (Postgres drops a replaced relation with
``cascade``) and must then be created again in the same build.

The record lives beside dbt's artifacts (``<target>/elt_build_state/``): the manifest of the
last successful build and the raw tables changed since (``pending``). Every way a change
could be lost falls back to building every node:

- no record, or a record of another warehouse, dbt version or dbt environment (time zone,
  alert ratio): everything is built;
- the record says "unknown" from the moment a load starts until it returns its changed
  tables, so a load that fails half-way (one dataset committed, the other not) leads to a
  full build next time;
- the changed tables are cleared only by a successful build; a failed build leaves them
  for the next run, which builds them again, its views included (a view whose creation
  failed half-way, or one dropped by hand that made the build fail, is created again);
- ``--full-refresh`` builds everything.

Tables written outside the pipeline (by hand) are not seen: ``elt run --full-refresh`` or
``elt dbt build`` builds and tests everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

logger = logging.getLogger(__name__)

#: The dbt source of each raw schema the load stage writes (``dbt_project/models/staging/
#: <source>/_<source>__sources.yml``; the tables keep their names).
RAW_SOURCES: dict[str, str] = {"raw_shop": "shop", "raw_sales": "sales"}
STATE_DIR = "elt_build_state"
STATE_FILE = "state.json"
STATE_FORMAT = 1
#: Selective builds leave out the staging views whose code did not change, not their tests.
KEEP_VIEWS = (
    "--exclude",
    "path:models/staging,config.materialized:view,state:unmodified",
    "--indirect-selection",
    "empty",
)
_SECRET_KEYS = ("PASSWORD",)


@dataclass(frozen=True)
class BuildPlan:
    """The dbt arguments of one scheduled build and why."""

    args: list[str]
    full: bool
    reason: str

    @property
    def summary(self) -> str:
        """``every node: <why>`` or ``a selection: <what it follows>``."""
        return f"{'every node' if self.full else 'a selection'}: {self.reason}"


def warehouse_fingerprint(dbt_env: dict[str, str]) -> str:
    """What a build's results depend on besides code and data: the warehouse, dbt's
    environment (``Settings.dbt_env``: the target's location, time zone, alert ratio; not
    secrets, not the other target's location, not dbt's thread count) and dbt's version."""
    unused = "ELT_PG_" if dbt_env.get("ELT_TARGET", "duckdb") == "duckdb" else "ELT_DUCKDB_"
    public = {
        k: v
        for k, v in dbt_env.items()
        if not any(s in k for s in _SECRET_KEYS)
        and not k.startswith(unused)
        and k != "ELT_DBT_THREADS"
    }
    text = json.dumps({"env": public, "dbt": version("dbt-core")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_sources(
    tables_changed: dict[str, list[str]], sources: dict[str, str] = RAW_SOURCES
) -> set[str]:
    """``source_name.table`` of the dbt sources among the changed tables.

    Args:
        tables_changed: per schema, the tables a load changed (``LoadResult.tables_changed``).
        sources: the dbt source name of each raw schema.
    """
    return {
        f"{sources[schema]}.{table}"
        for schema, tables in tables_changed.items()
        if schema in sources
        for table in tables
    }


class BuildState:
    """The record of what the warehouse's dbt build has seen (see the module docstring).

    Args:
        target_path: dbt's target folder (the record is a folder in it).
        fingerprint: :func:`warehouse_fingerprint` of this run's dbt environment.
    """

    def __init__(self, target_path: Path, fingerprint: str) -> None:
        self.target = Path(target_path)
        self.dir = self.target / STATE_DIR
        self.fingerprint = fingerprint
        self._before_load: list[str] | None = None

    # ------------------------------------------------------------------ the record

    def _read(self) -> dict | None:
        try:
            data = json.loads((self.dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("format") != STATE_FORMAT or data.get("fingerprint") != self.fingerprint:
            return None
        return data

    def _write(self, *, built: bool, pending: list[str] | None, views: bool = False) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "built": built,
            "pending": pending,
            "views": views,
        }
        tmp = self.dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.dir / STATE_FILE)

    def pending(self) -> list[str] | None:
        """The sources changed since the last successful build; None when unknown."""
        data = self._read()
        return None if data is None else data.get("pending")

    def _built(self, data: dict | None) -> bool:
        """Whether the record ``data`` (as read) holds a successful build's manifest."""
        return bool(data and data.get("built") and (self.dir / "manifest.json").exists())

    # ------------------------------------------------------------------ the run

    def before_load(self) -> None:
        """Mark the changes unknown while the load runs (a failed load means a full build)."""
        data = self._read()
        self._before_load = None if data is None else data.get("pending")
        self._write(built=self._built(data), pending=None, views=self._views(data))

    def after_load(self, sources: set[str]) -> None:
        """Add the sources the load changed to those not built yet."""
        before = self._before_load
        pending = None if before is None else sorted(set(before) | sources)
        data = self._read()
        self._write(built=self._built(data), pending=pending, views=self._views(data))

    @staticmethod
    def _views(data: dict | None) -> bool:
        """Whether the last build succeeded, so every view it had exists (no key: unknown)."""
        return bool(data and data.get("views"))

    def plan(self, build: list[str], *, full_refresh: bool = False) -> BuildPlan:
        """The dbt arguments: ``build`` for every node, or a selection of what changed.

        Args:
            build: the full build's arguments (``PRODUCTION_BUILD``).
            full_refresh: rebuild the incremental models from scratch (every node).
        """
        if full_refresh:
            return BuildPlan([*build, "--full-refresh"], True, "full refresh asked for")
        data = self._read()
        if data is None:
            return BuildPlan(list(build), True, "no record of an earlier build of this warehouse")
        if not self._built(data):
            return BuildPlan(list(build), True, "no successful build of this warehouse yet")
        pending = data.get("pending")
        if pending is None:
            return BuildPlan(list(build), True, "an earlier load did not finish")
        selectors = [f"source:{name}+" for name in pending] + ["state:modified+"]
        reason = (
            "what " + ", ".join(pending) + " reach, and changed code"
            if pending
            else "nothing new, only changed code"
        )
        # state:modified+ usually selects nothing: dbt's warning about it would be noise.
        quiet = ["--warn-error-options", json.dumps({"silence": ["NoNodesForSelectionCriteria"]})]
        args = [*build, "--select", *selectors, "--state", str(self.dir), *quiet]
        if self._views(data):
            args += KEEP_VIEWS
            reason += "; unchanged staging views kept"
        else:
            reason += "; staging views created again: the last build failed or is not recorded"
        return BuildPlan(args, False, reason)

    def after_build(self, success: bool) -> None:
        """After a successful build, keep its manifest and clear the changes it built; after
        a failed one, keep the changes and create the views again next time."""
        if not success:
            data = self._read()
            if data is not None:
                self._write(built=self._built(data), pending=data.get("pending"), views=False)
            return
        manifest = self.target / "manifest.json"
        if not manifest.exists():
            logger.warning("dbt wrote no manifest.json in %s: next build builds all", self.target)
            self._write(built=False, pending=None)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest, self.dir / "manifest.json")
        self._write(built=True, pending=[], views=True)
