"""The platform's benchmark: every stage timed against a reference doing the same work.

Run ``python -m bench --help`` (``make bench``). Each stage runs in a fresh subprocess whose
wall time and peak memory (RSS summed over its process tree) are measured; the results are
written to ``bench/results/`` as ``report.md``, ``chart.png`` and ``results.json``.
"""

from bench.config import BenchConfig, parse_sizes

__all__ = ["BenchConfig", "parse_sizes"]
