"""Which dbt nodes a scheduled run must build: those that new data or changed code reach.

dbt's own way to build only what changed is ``state:modified+`` (the code, against the
manifest of an earlier build) and ``source_status:fresher+`` (the data, from ``dbt source
freshness`` results). Here the load stage says which raw tables it changed, which is what
``source_status:fresher+`` would find without a second dbt command and its queries, so a
run builds::

    dbt build --select source:<changed table>+ ... state:modified+ --state <last build>
        --exclude path:models/staging,config.materialized:view,state:unmodified
        --indirect-selection empty

and, when none of the project's files changed since the last successful build (the usual
scheduled run: nothing is modified, so the comparison is left out)::

    dbt build --select source:<changed table>+ ...
        --exclude path:models/staging,config.materialized:view
                  path:<a view kept>,config.materialized:view ...
        --indirect-selection empty

The views among them are left out when their code did not change: a view shows its inputs'
new rows without being created again, so re-creating it (three statements and dbt's work
for a node) only costs time; their tests still run (``--indirect-selection empty`` keeps a
test whose model is left out: the ``+`` operators select the tests themselves). Only views
whose inputs the build never drops:

- the staging views always: they read the raw tables alone, which the load never drops;
- when none of the project's files changed since the last successful build (the usual
  scheduled run), also every view whose inputs are sources, snapshots, incremental models
  and such views (the manifest of the last build says which). A table model's rebuild
  replaces its relation, and Postgres drops the views over the old one (``cascade``); an
  incremental model's run keeps its table. A view over a table, or over a view that is
  created again, is built. When a file changed, a changed view's parents may be created
  again too, so only the staging views are left out.

The record lives beside dbt's artifacts (``<target>/elt_build_state/``): the manifest of the
last successful build, a fingerprint of the project's files it was built from (``code``) and
the raw tables changed since (``pending``). Every way a change
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
``elt dbt build`` builds and tests everything. A dbt command run through ``elt dbt`` that may
replace relations makes the next build create every view (``forget_views``).
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
#: Folders and files of the dbt project that are not its code (``project_fingerprint``).
_NOT_CODE = {"target", "logs", "dbt_packages", "package-lock.yml", "__pycache__"}
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


def project_fingerprint(project_dir: Path) -> str:
    """A hash of the dbt project's files (models, macros, tests, snapshots, settings; not
    dbt's output folders): equal fingerprints mean no file changed."""
    digest = hashlib.sha256()
    root = Path(project_dir)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in _NOT_CODE or any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file():
            digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def views_kept_when_unchanged(manifest: dict) -> list[str]:
    """The views (their ``original_file_path``) whose inputs no build drops: sources,
    snapshots, seeds, incremental models and such views (ephemeral models count as the
    models they read). Read from a manifest (``manifest.json`` as a dict)."""
    nodes = manifest.get("nodes") or {}
    memo: dict[str, bool] = {}

    def keeps_relations(uid: str) -> bool:
        """Whether the relations ``uid`` reads stay when the build runs (its own is kept
        when it is a view)."""
        if uid in memo:
            return memo[uid]
        memo[uid] = False  # a cycle cannot happen in dbt; this ends one anyway
        node = nodes.get(uid) or {}
        ok = True
        for parent in (node.get("depends_on") or {}).get("nodes") or []:
            if not parent.startswith("model."):
                continue  # a source, snapshot or seed: never dropped by a run
            materialized = ((nodes.get(parent) or {}).get("config") or {}).get("materialized")
            if materialized == "incremental":
                continue
            if materialized in ("view", "ephemeral") and keeps_relations(parent):
                continue
            ok = False
            break
        memo[uid] = ok
        return ok

    return sorted(
        node["original_file_path"]
        for uid, node in nodes.items()
        if uid.startswith("model.")
        and (node.get("config") or {}).get("materialized") == "view"
        and node.get("original_file_path")
        and keeps_relations(uid)
    )


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


#: dbt commands that may create, replace or drop relations (``forget_views``).
WRITING_COMMANDS = frozenset(
    {"build", "run", "snapshot", "seed", "run-operation", "retry", "clone"}
)


def forget_views(target_path: Path, args: list[str]) -> bool:
    """Before a dbt command run outside the flow (``elt dbt``) that may replace relations:
    note in the record that views may be gone, so the next scheduled build creates them
    all again (a table rebuilt by hand on Postgres drops the views over it).

    Returns:
        Whether the record was changed (False: a read-only command, or no record).
    """
    command = next((a for a in args if not a.startswith("-")), None)
    path = Path(target_path) / STATE_DIR / STATE_FILE
    if command not in WRITING_COMMANDS or not path.exists():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    data["views"] = False
    _replace_json(path, data)
    return True


def _replace_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def _code(data: dict | None) -> str | None:
    """The project fingerprint of the last successful build in a record (None: unknown)."""
    return data.get("code") if data else None


class BuildState:
    """The record of what the warehouse's dbt build has seen (see the module docstring).

    Args:
        target_path: dbt's target folder (the record is a folder in it).
        fingerprint: :func:`warehouse_fingerprint` of this run's dbt environment.
        project_dir: the dbt project, whose files' :func:`project_fingerprint` lets a build
            with no changed file keep more views; None: only the staging views are kept.
    """

    def __init__(
        self, target_path: Path, fingerprint: str, project_dir: Path | None = None
    ) -> None:
        self.target = Path(target_path)
        self.dir = self.target / STATE_DIR
        self.fingerprint = fingerprint
        self.project_dir = Path(project_dir) if project_dir is not None else None
        self._before_load: list[str] | None = None
        self._code: str | None = None  # the project's fingerprint when the plan was made

    # ------------------------------------------------------------------ the record

    def _read(self) -> dict | None:
        try:
            data = json.loads((self.dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("format") != STATE_FORMAT or data.get("fingerprint") != self.fingerprint:
            return None
        return data

    def _write(
        self,
        *,
        built: bool,
        pending: list[str] | None,
        views: bool = False,
        code: str | None = None,
    ) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "built": built,
            "pending": pending,
            "views": views,
            "code": code,
        }
        _replace_json(self.dir / STATE_FILE, data)

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
        self._write(
            built=self._built(data), pending=None, views=self._views(data), code=_code(data)
        )

    def after_load(self, sources: set[str]) -> None:
        """Add the sources the load changed to those not built yet."""
        before = self._before_load
        pending = None if before is None else sorted(set(before) | sources)
        data = self._read()
        self._write(
            built=self._built(data), pending=pending, views=self._views(data), code=_code(data)
        )

    @staticmethod
    def _views(data: dict | None) -> bool:
        """Whether the last build succeeded, so every view it had exists (no key: unknown)."""
        return bool(data and data.get("views"))

    def _views_kept_as_files_unchanged(self) -> list[str]:
        """The views besides the staging ones a build with no changed project file leaves
        out (see the module docstring), from the last successful build's manifest."""
        try:
            manifest = json.loads((self.dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [
            path
            for path in views_kept_when_unchanged(manifest)
            if not path.startswith("models/staging/")
        ]

    def plan(self, build: list[str], *, full_refresh: bool = False) -> BuildPlan:
        """The dbt arguments: ``build`` for every node, or a selection of what changed.

        Args:
            build: the full build's arguments (``PRODUCTION_BUILD``).
            full_refresh: rebuild the incremental models from scratch (every node).
        """
        if self.project_dir is not None:
            self._code = project_fingerprint(self.project_dir)
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
        unchanged = self._code is not None and self._code == _code(data)
        # state:modified+ usually selects nothing: dbt's warning about it would be noise.
        quiet = ["--warn-error-options", json.dumps({"silence": ["NoNodesForSelectionCriteria"]})]
        if unchanged and pending:
            # No project file changed: state:modified+ would select nothing, and comparing
            # with the last build's manifest costs dbt about 0.2 s of reading it.
            selectors = [f"source:{name}+" for name in pending]
            args = [*build, "--select", *selectors, *quiet]
            reason = "what " + ", ".join(pending) + " reach (no project file changed)"
            guard = ""
        else:
            selectors = [f"source:{name}+" for name in pending] + ["state:modified+"]
            args = [*build, "--select", *selectors, "--state", str(self.dir), *quiet]
            reason = (
                "what " + ", ".join(pending) + " reach, and changed code"
                if pending
                else "nothing new, only changed code"
            )
            guard = ",state:unmodified"
        if self._views(data):
            kept = self._views_kept_as_files_unchanged() if unchanged else []
            exclude = [
                f"path:{path},config.materialized:view{guard}" for path in ["models/staging", *kept]
            ]
            args += ["--exclude", *exclude, *KEEP_VIEWS[2:]]
            reason += (
                f"; unchanged staging views and {len(kept)} other view(s) kept"
                if kept
                else "; unchanged staging views kept"
            )
        else:
            reason += "; views created again: the last build failed or is not recorded"
        return BuildPlan(args, False, reason)

    def after_build(self, success: bool) -> None:
        """After a successful build, keep its manifest and clear the changes it built; after
        a failed one, keep the changes and create the views again next time."""
        if not success:
            data = self._read()
            if data is not None:
                self._write(
                    built=self._built(data),
                    pending=data.get("pending"),
                    views=False,
                    code=_code(data),
                )
            return
        manifest = self.target / "manifest.json"
        if not manifest.exists():
            logger.warning("dbt wrote no manifest.json in %s: next build builds all", self.target)
            self._write(built=False, pending=None)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest, self.dir / "manifest.json")
        code = self._code
        if code is None and self.project_dir is not None:
            code = project_fingerprint(self.project_dir)
        self._write(built=True, pending=[], views=True, code=code)
