"""The layering of docs/architecture.md holds: stages do not import each other.

Only orchestration (and the benchmark) know every stage; ``contract`` and ``storage`` are
shared by all and import no stage; ``contract`` imports nothing outside the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generator", "ingestion", "dask_preprocess", "metabase", "report")
SHARED = ("contract", "storage", "elt_settings")


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level names each module of a package imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_no_stage_imports_another_stage() -> None:
    for stage in STAGES:
        if not (ROOT / stage).is_dir():
            continue
        for module, names in _imports(stage).items():
            others = names & (set(STAGES) - {stage}) | names & {"orchestration", "bench"}
            assert not others, f"{module} imports {sorted(others)}"


def test_shared_packages_import_no_stage() -> None:
    for package in SHARED:
        for module, names in _imports(package).items():
            stages = names & {*STAGES, "orchestration", "bench"}
            assert not stages, f"{module} imports {sorted(stages)}"


def test_the_contract_depends_on_nothing_but_the_standard_library() -> None:
    for module, names in _imports("contract").items():
        outside = {n for n in names if n not in sys.stdlib_module_names} - {"contract"}
        assert not outside, f"{module} imports {sorted(outside)}"
