"""The shared vocabulary of the source contract and the lake: one owner per concept.

Every stage imports these names instead of copying them; this package imports no stage and
no third-party library, so any stage (and the tests) may use it.

- :mod:`contract.sales`: the sales files' columns and types, the quarantine reasons, the
  regions, the duplicate alert ratio (``docs/source-contract.md`` §3-§5).
- :mod:`contract.drop`: the drop's folders.
- :mod:`contract.lake`: the lake's zones and paths, and the reading of dlt's load markers.
- :mod:`contract.warehouse`: the warehouse's schema names and the tables the load writes.
"""
