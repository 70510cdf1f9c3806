"""``elt status``: where things stand, read from the run records and the marts, writing nothing.

- the warehouse, lake and source in use;
- the last runs (the lake's ``runs/`` records): when, outcome, duration, what they moved;
- what is loaded: the newest delivery date and the range of sale dates in the marts;
- the delivered files that failed or had rows quarantined (``marts.data_quality_by_file``);
- freshness: days since the newest delivery, against ``ELT_FRESHNESS_WARN_DAYS``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from contract.warehouse import MARTS
from orchestration.dbt_state import Warehouse
from orchestration.run_history import RunRecord, last_runs

if TYPE_CHECKING:
    from elt_settings import Settings


@dataclass
class Status:
    """What ``elt status`` shows."""

    warehouse: str
    lake: str
    source: str
    runs: list[RunRecord] = field(default_factory=list)
    last_delivery: dt.date | None = None
    first_sale: dt.date | None = None
    last_sale: dt.date | None = None
    files: int = 0
    files_failed: int = 0
    files_with_quarantine: int = 0
    rows_quarantined: int = 0
    days_since_delivery: int | None = None
    stale_after_days: int = 8
    problems: list[str] = field(default_factory=list)
    """What could not be read (no warehouse yet, no marts yet, lake unreachable)."""

    def lines(self) -> list[str]:
        """The status as lines of text."""
        out = [
            f"warehouse  {self.warehouse}",
            f"lake       {self.lake}",
            f"source     {self.source}",
            "",
            "last runs" if self.runs else "last runs  none recorded in this lake yet",
            *[f"  {run.line()}" for run in self.runs],
        ]
        if self.last_delivery is not None:
            fresh = f"{self.days_since_delivery} days ago"
            if (self.days_since_delivery or 0) > self.stale_after_days:
                fresh += f": stale, more than {self.stale_after_days} days"
            sales = f"sales {self.first_sale} .. {self.last_sale}" if self.last_sale else "no sales"
            out += [
                "",
                f"loaded     deliveries up to {self.last_delivery}, {fresh}; {sales}",
                f"files      {self.files:,} delivered: {self.files_failed:,} failed, "
                f"{self.files_with_quarantine:,} with quarantined rows "
                f"({self.rows_quarantined:,} rows; `elt quarantine list` shows them)",
            ]
        out += [f"note       {problem}" for problem in self.problems]
        return out


def read_status(settings: Settings, runs: int = 5) -> Status:
    """Gather the status; what cannot be read becomes a note, not an error."""
    where = settings.duckdb_path if settings.target == "duckdb" else "(ELT_POSTGRES_DSN)"
    status = Status(
        warehouse=f"{settings.target} {where}",
        lake=settings.lake_url,
        source=settings.source_url,
        stale_after_days=settings.freshness_warn_days,
    )
    try:
        status.runs = last_runs(settings.lake_url, settings.storage_options(), runs)
    except OSError as exc:
        status.problems.append(f"the lake's run records cannot be read: {exc}")
    _read_marts(settings, status)
    return status


def _read_marts(settings: Settings, status: Status) -> None:
    from pathlib import Path

    if settings.target == "duckdb" and not Path(settings.duckdb_path).exists():
        status.problems.append("no warehouse yet: `elt run` builds it")
        return
    warehouse = Warehouse(
        settings.target,
        str(Path(settings.duckdb_path).resolve()),
        settings.postgres_dsn.get_secret_value(),
        read_only=True,
    )
    try:
        files = warehouse.query(
            "select max(delivery_date), count(*),"
            " count(case when status = 'failed' then 1 end),"
            " count(case when rows_quarantined > 0 then 1 end),"
            " coalesce(sum(rows_quarantined), 0)"
            f" from {MARTS}.data_quality_by_file where status <> 'ignored'"
        )[0]
        sales = warehouse.query(
            f"select min(sale_date), max(sale_date) from {MARTS}.fct_daily_sales"
        )[0]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        status.problems.append(f"the marts cannot be read ({first})")
        return
    status.last_delivery, status.files, status.files_failed = _date(files[0]), files[1], files[2]
    status.files_with_quarantine, status.rows_quarantined = files[3], int(files[4])
    status.first_sale, status.last_sale = _date(sales[0]), _date(sales[1])
    if status.last_delivery is not None:
        today = dt.datetime.now(zoneinfo.ZoneInfo(settings.timezone)).date()
        status.days_since_delivery = (today - status.last_delivery).days


def _date(value: object) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
