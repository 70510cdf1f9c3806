"""The platform's benchmark: what users run (``elt generate``, ``elt run``), measured, beside
references doing the same work.

Run ``python -m bench --help`` (``make bench``). Each ``elt`` command runs in its own process
whose wall time and peak memory (RSS summed over its process tree) are measured; each stage's
seconds come from the run's own summary. The results are written to ``bench/results/`` as
``report.md``, ``summary.md`` and ``chart.png`` (committed) and ``results.json`` (not).
"""

from bench.config import BenchConfig, parse_sizes

__all__ = ["BenchConfig", "parse_sizes"]
