"""The README's commands work as a user types them, on a fresh clone's tree.

The blocks marked ``<!-- readme-test: run -->`` are run line by line with ``bash`` in a copy
of the repository's tracked files (the checkout's installed environment linked in, never
re-synced), after the first ``make run`` the README starts with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- readme-test: run -->"


def marked_lines(readme: str) -> list[str]:
    """The command lines of the README's marked shell blocks, in order."""
    lines: list[str] = []
    for block in re.findall(re.escape(MARKER) + r"\s*```sh\n(.*?)```", readme, flags=re.S):
        lines += [line for line in block.splitlines() if line.strip()]
    return lines


def _fresh_tree(target: Path) -> None:
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # modification times kept: make installs nothing
    (target / ".venv").symlink_to(ROOT / ".venv")


def test_the_marked_blocks_are_found() -> None:
    lines = marked_lines((ROOT / "README.md").read_text(encoding="utf-8"))
    assert lines and lines[0].startswith("make run")
    assert any("elt status" in line for line in lines)


@pytest.mark.slow
def test_the_readmes_commands_work_on_a_fresh_clone(tmp_path: Path) -> None:
    tree = tmp_path / "clone"
    _fresh_tree(tree)
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "PII_", "PREFECT_API"))}
    env |= {"UV": uv, "UV_NO_SYNC": "1", "PII_HASH_KEY": ""}
    outputs = []
    for line in ["make run", *marked_lines((ROOT / "README.md").read_text(encoding="utf-8"))]:
        done = subprocess.run(
            ["bash", "-c", line], cwd=tree, env=env, capture_output=True, text=True, timeout=900
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{line}\n{output[-3000:]}"
        outputs.append(output)
    assert "Drop written to ./data/source" in outputs[0] and "retail-elt: succeeded" in outputs[0]
    assert "Nothing new since the run of" in outputs[1]
    assert "deliveries up to 2026-03-31" in outputs[2]
    assert "1 whole files quarantined" in outputs[3]
    assert "Drop written" in outputs[5] and "| extract | ok |" in outputs[5]
    assert (tree / "data" / "warehouse.duckdb").exists()
