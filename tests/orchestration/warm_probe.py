"""Which macro templates a dbt build compiles after the worker's warm-up.

``python -m tests.orchestration.warm_probe WAREHOUSE TARGET OUT`` (in the dbt environment
of ``elt_settings.dbt_env_for``): writes the hand-written raw layer into WAREHOUSE, parses
the project as ``orchestration.dbt_worker`` does, warms the templates (first with the
command already come: nothing is compiled), then runs the production build on that parse,
counting which macros the build takes from dbt's template cache (warmed) and which it has
to compile. Writes ``{"stopped", "warmed", "success", "reused", "compiled"}`` to OUT as
JSON. A process of its own: dbt's parse and build set process-wide state.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from orchestration import dbt_worker
from orchestration.dbt_runner import DBT_PROJECT_DIR, PRODUCTION_BUILD
from tests.dbt import raw_data


def main(warehouse: str, target: str, out: str) -> None:
    from dbt.cli.main import dbtRunner
    from dbt_common.clients import jinja

    raw_data.write_raw_duckdb(warehouse, 1)
    common = [
        *("--project-dir", str(DBT_PROJECT_DIR)),
        *("--profiles-dir", str(DBT_PROJECT_DIR)),
        *("--target-path", target),
    ]
    manifest = dbt_worker._parse(dbtRunner, common)
    command_came = threading.Event()
    command_came.set()
    stopped = dbt_worker._warm_templates(manifest, command_came)
    warmed = dbt_worker._warm_templates(manifest)
    names = {macro.macro_sql: unique_id for unique_id, macro in manifest.macros.items()}
    reused: set[str] = set()
    compiled: set[str] = set()
    original = jinja.TemplateCache.get_node_template

    def counting(self: Any, node: Any) -> Any:
        seen = compiled if node.macro_sql not in self.file_cache else reused
        seen.add(names.get(node.macro_sql, node.name))
        return original(self, node)

    jinja.TemplateCache.get_node_template = counting  # type: ignore[method-assign]
    result = dbtRunner(manifest=manifest).invoke(["--quiet", *PRODUCTION_BUILD, *common])
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "stopped": stopped,
                "warmed": warmed,
                "success": bool(result.success),
                "reused": sorted(reused - compiled),
                "compiled": sorted(compiled),
            },
            fh,
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
