"""An independent reader of a drop, written from the contract only (no generator code).

It reads a local drop with the standard library (os, gzip, csv, json, decimal, datetime)
and applies docs/interfaces.md's sales rules, row by row, with plain Python: slow and obvious
on purpose, so it can check the generator's vectorized truth on small drops.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

HEADER = [
    "sale_id",
    "sale_ts",
    "store_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
    "sale_amount",
    "region",
]
REGIONS = {"north": "North", "south": "South", "east": "East", "west": "West"}
SALES_NAME = re.compile(r"^sales_(\d{4}-\d{2}-\d{2})\.csv(\.gz)?$")
CUSTOMERS_NAME = re.compile(r"^customers_(\d{4}-\d{2}-\d{2})\.jsonl$")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
CENT = Decimal("0.01")


@dataclass
class SalesFile:
    """One sales file as read."""

    name: str
    delivery_date: str
    readable: bool
    failure: str | None = None
    bom: bool = False
    records: list[list[str]] = field(default_factory=list)


def list_drop(root: str) -> dict[str, list[str]]:
    """Files of each folder of the drop (names only, sorted)."""
    return {
        sub: sorted(os.listdir(os.path.join(root, sub)))
        for sub in sorted(os.listdir(root))
        if os.path.isdir(os.path.join(root, sub))
    }


def read_sales_file(root: str, name: str) -> SalesFile:
    """Read one sales file; unreadable files are reported, not raised."""
    m = SALES_NAME.match(name)
    assert m, name
    out = SalesFile(f"sales/{name}", m.group(1), True)
    with open(os.path.join(root, "sales", name), "rb") as fh:
        raw = fh.read()
    if name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            out.readable, out.failure = False, "corrupt_gzip"
            return out
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        out.bom, text = True, text[1:]
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] != HEADER:
        out.readable, out.failure = False, "bad_header"
        return out
    out.records = rows[1:]
    return out


def parse_ts(text: str) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware instant (no offset means UTC); None if invalid."""
    text = text.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?$", text):
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def classify(rec: list[str]) -> tuple[str | None, tuple | None]:
    """The quarantine reason of a record (None when valid) and its normalized values."""
    if len(rec) != 9:
        return "wrong_field_count", None
    sale_id, ts, store, cust, prod, qty, price, amount, region = (v.strip() for v in rec)
    if not sale_id:
        return "empty_sale_id", None
    if not store:
        return "empty_store_id", None
    if not prod:
        return "empty_product_id", None
    instant = parse_ts(ts)
    if instant is None:
        return "bad_sale_ts", None
    if not re.fullmatch(r"\d+", qty) or int(qty) < 1:
        return "bad_quantity", None
    if not NUMBER.match(price) or Decimal(price) <= 0:
        return "bad_unit_price", None
    if not NUMBER.match(amount):
        return "bad_sale_amount", None
    try:
        p, a = Decimal(price), Decimal(amount)
    except InvalidOperation:  # pragma: no cover - the regexes above rule this out
        return "bad_sale_amount", None
    if abs(a - int(qty) * p) > CENT:
        return "amount_mismatch", None
    if region.lower() not in REGIONS:
        return "bad_region", None
    return None, (
        sale_id,
        instant,
        store,
        cust or None,
        prod,
        int(qty),
        p,
        a,
        REGIONS[region.lower()],
    )


def apply_rules(files: list[SalesFile], timezone: str) -> dict:
    """The manifest numbers, recomputed with the contract's rules."""
    per_file: dict[str, dict] = {}
    seen: set[tuple] = set()
    kept: list[tuple[str, tuple]] = []  # (file, values) in delivery order
    ordered = sorted(files, key=lambda f: (f.delivery_date, f.name))
    for f in ordered:
        stats = {
            "rows_in": 0,
            "rows_duplicate": 0,
            "quarantined_by_reason": Counter(),
            "readable": f.readable,
        }
        per_file[f.name] = stats
        for rec in f.records:
            stats["rows_in"] += 1
            reason, values = classify(rec)
            if reason:
                stats["quarantined_by_reason"][reason] += 1
            elif values in seen:
                stats["rows_duplicate"] += 1
            else:
                seen.add(values)
                kept.append((f.name, values))
    last_of: dict[str, int] = {}
    for i, (_, values) in enumerate(kept):
        last_of[values[0]] = i
    kept_count = Counter(name for name, _ in kept)
    valid = [kept[i] for i in sorted(last_of.values())]
    tz = ZoneInfo(timezone)
    by_rp: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    by_day: dict[str, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for f in per_file.values():
        f.update(rows_valid=0, valid_units=0, valid_revenue=Decimal(0))
    for name, v in valid:
        f = per_file[name]
        f["rows_valid"] += 1
        f["valid_units"] += v[5]
        f["valid_revenue"] += v[7]
        for acc in (by_rp[(v[8], v[4])], by_day[v[1].astimezone(tz).date().isoformat()]):
            acc[0] += 1
            acc[1] += v[5]
            acc[2] += v[7]
    for name, f in per_file.items():
        f["rows_superseded"] = kept_count[name] - f["rows_valid"]
        f["rows_quarantined"] = sum(f["quarantined_by_reason"].values())
        f["quarantined_by_reason"] = dict(f["quarantined_by_reason"])
        f["valid_revenue"] = f"{f['valid_revenue']:.2f}"
    return {
        "files": per_file,
        "by_region_product": {k: (n, u, f"{r:.2f}") for k, (n, u, r) in by_rp.items()},
        "by_sale_date": {k: (n, u, f"{r:.2f}") for k, (n, u, r) in by_day.items()},
        "n_sales": len(valid),
        "units": sum(v[5] for _, v in valid),
        "revenue": f"{sum((v[7] for _, v in valid), Decimal(0)):.2f}",
        "valid_rows": valid,
        "kept": kept,
    }


def read_jsonl(path: str) -> list[dict]:
    """A JSON-lines file as a list of objects."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
