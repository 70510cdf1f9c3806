"""A dbt process started ahead of its command: ``python -m orchestration.dbt_worker``.

Importing dbt and parsing the project take about two seconds of a run (more on a slow
machine), none of which depends on the data. The flow starts this process when the run
starts; it imports dbt and parses the project (``dbt parse``, partial parsing as usual) while
the extract, Dask and load stages run, then waits. When the warehouse is loaded, the flow
writes the dbt command to its standard input as one JSON line (a list of arguments); the
process runs it on the parsed manifest (dbt's ``dbtRunner(manifest=...)``, its documented way
to reuse a parse) and exits with dbt's exit code: 0 success, 1 a node failed, 2 dbt could not
run. End of input without a command exits 0 without running anything.

Its standard output is dbt's, line for line, as with the ``dbt`` command. A parse that fails
is not reported here: the command then parses again itself and reports the error as usual.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
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
    line = sys.stdin.readline()
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
