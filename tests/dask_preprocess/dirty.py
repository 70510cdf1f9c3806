"""A small random, dirty stream of sales deliveries for the tests (independent of the
project's generator): duplicates, corrections across files and days, re-delivered files,
an unreadable file, every quarantine reason, odd region spellings and time zones."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tests.dask_preprocess.lakebuilder import Malformed

Row = tuple[str | None, ...] | Malformed


@dataclass
class Delivery:
    """One delivered file version (or an unreadable one when ``failed``)."""

    file_name: str
    rows: list[Row] = field(default_factory=list)
    failed: bool = False


REGION_SPELLINGS = {
    "North": ["North", " north", "NORTH "],
    "South": ["South", "south", " SoUtH "],
    "East": ["East", "EAST"],
    "West": ["West", " west "],
}


def _ts(rng: random.Random, day: date) -> str:
    base = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(-6 * 3600, 30 * 3600)
    )
    style = rng.randrange(4)
    if style == 0:
        return base.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return base.strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    if style == 2:
        return (base + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+03:00")
    return (base - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-05:00")


def _good(rng: random.Random, sale_id: str, day: date) -> tuple[str, ...]:
    quantity = rng.randint(1, 5)
    price = Decimal(rng.randint(100, 50_000)) / 100
    amount = quantity * price + Decimal(rng.choice([0, 0, 0, 1, -1])) / 100  # within 0.01
    region = rng.choice(list(REGION_SPELLINGS))
    return (
        sale_id,
        _ts(rng, day),
        f" ST-{rng.randint(1, 6):03d}" if rng.random() < 0.1 else f"ST-{rng.randint(1, 6):03d}",
        "" if rng.random() < 0.2 else f"CU-{rng.randint(1, 40):06d}",
        f"PR-{rng.randint(1, 12):04d}",
        str(quantity),
        str(price),
        str(amount),
        rng.choice(REGION_SPELLINGS[region]),
    )


def _bad(rng: random.Random, sale_id: str, day: date) -> Row:
    row = list(_good(rng, sale_id, day))
    kind = rng.randrange(10)
    if kind == 0:
        return Malformed(",".join(row[:5]))
    if kind == 1:
        row[0] = " "
    elif kind == 2:
        row[2] = ""
    elif kind == 3:
        row[4] = ""
    elif kind == 4:
        row[1] = rng.choice(["not-a-time", "2026-13-01T00:00:00Z", ""])
    elif kind == 5:
        row[5] = rng.choice(["2.0", "0", "-3", "two"])
    elif kind == 6:
        row[6] = rng.choice(["0", "-1.50", "abc"])
    elif kind == 7:
        row[7] = rng.choice(["", "n/a", "12,50"])
    elif kind == 8:
        row[7] = str(Decimal(row[5]) * Decimal(row[6]) + Decimal("0.02"))
    else:
        row[8] = rng.choice(["Nord", "Central", ""])
    return tuple(row)


def dirty_stream(seed: int, n_days: int = 8, rows_per_day: int = 120) -> list[list[Delivery]]:
    """Deliveries grouped into batches (one pipeline run per batch).

    Args:
        seed: Random seed.
        n_days: Daily sales files.
        rows_per_day: Records per daily file (before re-deliveries).

    Returns:
        Batches of deliveries, in the order they arrive.
    """
    rng = random.Random(seed)
    start = date(2026, 1, 1)
    history: list[tuple[str, ...]] = []
    days: list[Delivery] = []
    counter = 0
    for d in range(n_days):
        day = start + timedelta(days=d)
        rows: list[Row] = []
        for _ in range(rows_per_day):
            r = rng.random()
            if r < 0.08 and history:
                rows.append(rng.choice(history))  # exact repeat: duplicate
            elif r < 0.16 and history:
                old = rng.choice(history)  # correction: same sale_id, new values, maybe new day
                moved = start + timedelta(days=rng.randrange(d + 1))
                rows.append(_good(rng, str(old[0]), moved))
            elif r < 0.24:
                counter += 1
                rows.append(_bad(rng, f"SL-{counter:07d}", day))
            else:
                counter += 1
                row = _good(rng, f"SL-{counter:07d}", day - timedelta(days=rng.randrange(2)))
                rows.append(row)
                history.append(row)
            if rows and not isinstance(rows[-1], Malformed) and rng.random() < 0.03:
                rows.append(rows[-1])  # the same line twice in one file
        days.append(Delivery(f"sales/sales_{day.isoformat()}.csv.gz", rows))

    batches: list[list[Delivery]] = [days[:3], days[3:5], [], days[5:]]
    # A re-delivered early file that drops a tenth of its rows and fixes a few amounts.
    redo = [row for row in days[1].rows if rng.random() > 0.1]
    batches[2].append(Delivery(days[1].file_name, redo))
    # An unreadable file, delivered again readable in the last batch.
    late = start + timedelta(days=n_days)
    batches[2].append(Delivery(f"sales/sales_{late.isoformat()}.csv.gz", failed=True))
    late_rows: list[Row] = [
        _good(rng, str(rng.choice(history)[0]), start + timedelta(days=2)) for _ in range(15)
    ]
    batches[3].append(Delivery(f"sales/sales_{late.isoformat()}.csv.gz", late_rows))
    return batches
