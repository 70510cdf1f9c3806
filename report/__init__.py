"""The report stage: marts of the warehouse as CSV reports in the lake's ``reports/`` zone.

- :func:`write_mart_report`: read a mart in bulk, defuse its formula-like cells, write the
  dated CSV and the ``_latest`` one; returns a :class:`ReportResult`.
- :data:`SALES_BY_REGION_PRODUCT`: the region x product report the flow publishes.

Reads the warehouse's ``marts`` schema, writes the lake; imports no other stage.
"""

from report.csv_report import (
    SALES_BY_REGION_PRODUCT,
    MartReport,
    ReportResult,
    neutralize_formulas,
    read_mart_csv,
    write_mart_report,
    write_report_csv,
)

__all__ = [
    "SALES_BY_REGION_PRODUCT",
    "MartReport",
    "ReportResult",
    "neutralize_formulas",
    "read_mart_csv",
    "write_mart_report",
    "write_report_csv",
]
