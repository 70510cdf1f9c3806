"""A dbt process started ahead of its command: ``python -m orchestration.dbt_worker``.

Importing dbt and parsing the project take about two seconds of a run (more on a slow
machine), none of which depends on the data. The flow starts this process when the run
starts; it imports dbt, parses the project (``dbt parse``, partial parsing as usual) and
compiles the Jinja of the macros a build calls while the extract, Dask and load stages run,
then waits. When the warehouse is loaded, the flow writes the dbt command to its standard
input as one JSON line (a list of arguments); the process runs it on the parsed manifest
(dbt's ``dbtRunner(manifest=...)``, its documented way to reuse a parse) and exits with dbt's
exit code: 0 success, 1 a node failed, 2 dbt could not run. End of input without a command
exits 0 without running anything.

Its standard output is dbt's, line for line, as with the ``dbt`` command. A parse that fails
is not reported here: the command then parses again itself and reports the error as usual.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from typing import Any

#: Options that change what the parse produces: a command with one of them parses again.
PARSE_OPTIONS = ("--vars", "--target", "-t", "--profile", "--project-dir", "--profiles-dir")


def _parse(runner_class: Any, common: list[str]) -> Any:
    """The parsed manifest, or None when the parse failed (the command will say why)."""
    try:
        # No JSON artifacts: the command writes its own manifest; the parse still keeps
        # partial_parse.msgpack for the next run. Writing manifest.json here cost about
        # 0.2 s of CPU while the other stages run.
        result = runner_class().invoke(["--quiet", "--no-write-json", "parse", *common])
    except Exception:  # a broken project: the command's own parse reports it
        return None
    return result.result if result.success else None


def _macros_to_warm(manifest: Any) -> list[Any]:
    """The macros a build of ``manifest``'s nodes calls, as far as dbt's parse knows.

    The materialization of each kind of node (for the target's adapter), the macros the
    nodes and hooks call, and every macro those call (``depends_on.macros``: dbt records a
    macro's calls when it parses it, ``adapter.dispatch`` candidates included). Macros called
    only from dbt's Python code (a few adapter helpers) are not among them: dbt compiles those
    when it first calls them, as it does every macro without this.
    """
    adapter_type = manifest.metadata.adapter_type
    project = manifest.metadata.project_name
    roots: set[str] = set()
    materializations: set[str] = set()
    for node in manifest.nodes.values():
        roots.update(node.depends_on.macros)
        kind = str(getattr(node.resource_type, "value", node.resource_type))
        materializations.add("test" if kind == "test" else str(node.config.materialized))
    for name in sorted(materializations):
        macro = manifest.find_materialization_macro_by_name(project, name, adapter_type)
        if macro is not None:
            roots.add(macro.unique_id)
    seen: set[str] = set()
    stack = sorted(roots)
    while stack:
        unique_id = stack.pop()
        if unique_id in seen or unique_id not in manifest.macros:
            continue
        seen.add(unique_id)
        stack.extend(manifest.macros[unique_id].depends_on.macros)
    return [manifest.macros[unique_id] for unique_id in sorted(seen)]


def _warm_templates(manifest: Any, stop: threading.Event | None = None) -> int:
    """Compile the Jinja templates of the macros the command will call, while waiting for it.

    dbt compiles a macro's template the first time a node calls it, on that node's thread,
    and keeps it for the process (``dbt_common``'s ``template_cache``, keyed by the macro's
    code). In this project's day build, that compiling (about 160 macros: materializations,
    adapter macros, generic tests) was about a fifth of the time the nodes' threads held the
    interpreter lock they share (sampled with ``py-spy --gil``). Done here, it costs the same
    CPU while the stages before dbt run. A failure here only leaves the compiling to the
    command.

    Args:
        manifest: The parsed project.
        stop: Set when the command has come: the compiling stops at the next macro, and the
            command compiles the rest as it calls them (a run with little to do before dbt
            does not wait for a warm-up of macros it may not need).

    Returns:
        How many macros were compiled (0 when it failed).
    """
    try:
        from dbt_common.clients.jinja import template_cache

        compiled = 0
        for macro in _macros_to_warm(manifest):
            if stop is not None and stop.is_set():
                break
            template_cache.get_node_template(macro)
            compiled += 1
    except Exception:  # an optimization only: the command compiles what it calls
        return 0
    return compiled


def _exit_code(result: Any) -> int:
    if result.success:
        return 0
    if result.exception is not None:
        print(f"dbt could not run: {type(result.exception).__name__}: {result.exception}")
        return 2
    return 1


def main(argv: list[str] | None = None) -> int:
    """Parse the project, wait for one command on standard input, run it.

    Args:
        argv: ``--project-dir P --profiles-dir P --target-path T``.

    Returns:
        dbt's exit code for the command (0 when none came).
    """
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.dbt_worker",
        description="Import dbt and parse the project now; run the dbt command given later "
        "on standard input (one JSON list of arguments) on that parse.",
    )
    parser.add_argument("--project-dir", required=True)
    parser.add_argument("--profiles-dir", required=True)
    parser.add_argument("--target-path", required=True)
    options = parser.parse_args(argv)
    common = [
        "--project-dir",
        options.project_dir,
        "--profiles-dir",
        options.profiles_dir,
        "--target-path",
        options.target_path,
    ]

    from dbt.cli.main import dbtRunner

    manifest = _parse(dbtRunner, common)
    stop = threading.Event()
    warm_up = None
    if manifest is not None:  # compiled while this thread waits for the command
        warm_up = threading.Thread(
            target=_warm_templates, args=(manifest, stop), name="dbt-warm-up", daemon=True
        )
        warm_up.start()
    line = sys.stdin.readline()
    stop.set()
    if warm_up is not None:
        warm_up.join()
    if not line.strip():
        return 0
    args = [str(arg) for arg in json.loads(line)]
    if any(arg.split("=", 1)[0] in PARSE_OPTIONS for arg in args):
        manifest = None
    result = dbtRunner(manifest=manifest).invoke([*args, *common])
    sys.stdout.flush()
    return _exit_code(result)


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown of dbt's objects (about half a second).

    dbt has written its artifacts and its log by now, and DuckDB has committed every
    statement (its write-ahead log is replayed by the next connection, as after dbt's own
    exit); only the output needs flushing.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
