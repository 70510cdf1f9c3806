"""``python -m metabase <path>``: regenerate the dbt exposures file from the content."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from metabase.content import load_content
from metabase.exposures import write_dbt_exposures


def main(argv: list[str]) -> int:
    """Write the exposures YAML to the path given.

    Args:
        argv: the command-line arguments (one: the path).

    Returns:
        The exit code.
    """
    if len(argv) != 1:
        print("usage: python -m metabase <path of the exposures .yml>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dbt_exposures(load_content(), Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
