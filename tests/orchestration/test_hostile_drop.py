"""A hostile drop, on DuckDB and Postgres: odd timestamps, a link out of the drop, spreadsheet
formulas, fields the contract does not name, a gzip bomb and an oversized field, beside good
files. No single row or file stops the run, every good row reaches the marts, nothing from
outside the drop is read or echoed, no undeclared value lands in plain text, and the CSV
report is safe to open.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import generator
from orchestration.flow import RunSummary, retail_elt
from tests.ingestion.drops import (
    HEADER,
    duckdb_strings,
    find_plaintext,
    lake_strings,
    postgres_strings,
)
from tests.orchestration.test_flow import _query

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

SECRET = "TOP-SECRET-LINE-outside-the-drop"
FORMULA = '=HYPERLINK("http://evil.example","x")'
# sale_ts values the contract allows ("any sale_ts is possible"): two are instants whose date
# no tool on the way represents (year 10000 in UTC, year 0 in UTC), two are odd but real.
UNREPRESENTABLE = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+05:00"]
ODD_BUT_REAL = {"2620-01-01T10:00:00+03:00": "2620-01-01", "1026-06-01T10:00:00Z": "1026-06-01"}
# Schema drift: fields nobody declared, holding personal data in plain text.
DRIFT = {
    "Email": "drift.person@evil.example",
    "mobile_phone": "+7 999 000-11-22",
    "notes": "call Ivan Driftovich after six",
}
MANAGER_EMAIL2 = "second.boss@evil.example"
SALES_EXTRA = "leaky.buyer@evil.example"


def _a_valid_line(drop: Path) -> list[str]:
    path = sorted((drop / "sales").glob("sales_*.csv*"))[0]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()[1].split(",")


def _hostile_drop(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A generated drop plus hostile files; its manifest and what the additions should give."""
    drop = tmp_path / "drop"
    manifest = generator.generate_drop(str(drop), sales_rows=1500, days=3, seed=31)

    line = _a_valid_line(drop)
    rows = [HEADER]
    for i, ts in enumerate([*UNREPRESENTABLE, *ODD_BUT_REAL]):
        rows.append(",".join([f"ODD-{i}", ts, *line[2:]]))
    (drop / "sales" / "sales_2026-01-20.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SECRET},1,2\n", encoding="utf-8")
    (drop / "sales" / "sales_2026-01-21.csv").symlink_to(outside / "secret.txt")

    customers = sorted((drop / "customers").glob("*.jsonl"))[0]
    drifted = {"customer_id": "CU-DRIFT", "first_name": "Drift", **DRIFT}
    with customers.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(drifted) + "\n")
    store = drop / "stores" / "store_ST-001.json"
    doc = json.loads(store.read_text(encoding="utf-8"))
    doc["manager"]["email2"] = MANAGER_EMAIL2
    store.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    extra_column = f"{HEADER},customer_email\n{','.join(line)},{SALES_EXTRA}\n"
    (drop / "sales" / "sales_2026-01-22.csv").write_text(extra_column, encoding="utf-8")

    # A gzip that inflates past ELT_MAX_FILE_MB (1 MB here), and a record with a 512 KB field
    # (past ELT_MAX_RECORD_KB, 64 KB) beside a good one.
    bomb = gzip.compress((HEADER + "\n").encode() + b"0" * (64 * 2**20), compresslevel=9)
    (drop / "sales" / "sales_2026-01-23.csv.gz").write_bytes(bomb)
    long_record = ",".join(["LONG-2", *line[1:-1], "North" + "x" * (512 * 2**10)])
    both = [HEADER, ",".join(["LONG-1", *line[1:]]), long_record]
    (drop / "sales" / "sales_2026-01-24.csv").write_text("\n".join(both) + "\n", encoding="utf-8")

    # Sales files without a real delivery date in their name.
    for name in ("sales_latest.csv", "sales_2026-02-30.csv"):
        (drop / "sales" / name).write_text("\n".join(both[:2]) + "\n", encoding="utf-8")

    # Files the contract does not name: not read, reported.
    (drop / "sales" / "old").mkdir()
    for name in (".hidden_x.csv", "X.CSV", "x.csv.bak", "old/sales_2026-01-02.csv"):
        (drop / "sales" / name).write_text("\n".join(both[:2]) + "\n", encoding="utf-8")

    for product_id, name in (("PR-0001", FORMULA), ("PR-0002", "Milk\nwith\nnewlines")):
        path = drop / "products" / f"product_{product_id}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["name"] = name
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    quantity, amount = int(line[5]), Decimal(line[7])
    counted = len(ODD_BUT_REAL) + 1  # and LONG-1
    extra = {"n_sales": counted, "units": counted * quantity, "revenue": counted * amount}
    return drop, manifest, extra


def _a_dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def _lake_bytes(lake: Path) -> bytes:
    return b"".join(p.read_bytes() for p in lake.rglob("*") if p.is_file())


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
def test_a_hostile_drop_runs_and_its_good_rows_all_count(
    target: str, elt_env, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    drop, manifest, extra = _hostile_drop(tmp_path)
    limits = {"ELT_SOURCE_URL": str(drop), "ELT_MAX_FILE_MB": "1", "ELT_MAX_RECORD_KB": "64"}
    if target == "duckdb":
        where = str(tmp_path / "warehouse.duckdb")
        elt_env(**limits)
    else:
        where = request.getfixturevalue("postgres_dsn")
        elt_env(**limits, ELT_TARGET="postgres", ELT_POSTGRES_DSN=where)

    # What a killed run leaves behind: its dlt working folder (its pid is gone).
    leftover = Path(tempfile.gettempdir()) / f"elt-dlt-{_a_dead_pid()}-x1"
    leftover.mkdir()

    state = retail_elt(return_state=True)
    assert state.is_completed(), state.message
    summary: RunSummary = state.result()

    # The link out of the drop: failed with its reason, not read, nothing of it echoed.
    failed = {f["file_name"]: f["reason"] for f in summary.failed_files}
    assert failed["sales/sales_2026-01-21.csv"] == (
        "link_outside_drop: the file is a link to a path outside the drop; it was not read"
    )
    assert SECRET not in summary.to_markdown()
    assert SECRET.encode() not in _lake_bytes(tmp_path / "lake")

    # Schema drift: reported, and no undeclared value in plain text in the lake or warehouse
    # (the sales file with an extra column is refused whole, its bytes not kept).
    assert failed["sales/sales_2026-01-22.csv"].startswith("wrong_header")
    assert failed["sales/sales_2026-01-23.csv.gz"] == (
        "too_large: more than 1 MB uncompressed (ELT_MAX_FILE_MB); it was not loaded"
    )
    for name in ("sales/sales_latest.csv", "sales/sales_2026-02-30.csv"):
        assert failed[name].startswith("bad_file_name: a sales file is named sales_<YYYY-MM-DD>")
    assert set(failed) == {
        "sales/sales_2026-01-21.csv",
        "sales/sales_2026-01-22.csv",
        "sales/sales_2026-01-23.csv.gz",
        "sales/sales_latest.csv",
        "sales/sales_2026-02-30.csv",
    }
    assert not leftover.exists(), "a killed run's dlt folder is removed by the next run"
    assert summary.ignored_files == [
        "sales/.hidden_x.csv: a hidden file",
        "sales/X.CSV: not a sales file (.csv or .csv.gz)",
        "sales/old/sales_2026-01-02.csv: outside the contract's folders "
        "(stores, products, customers, sales)",
        "sales/x.csv.bak: not a sales file (.csv or .csv.gz)",
    ]
    assert sorted(summary.undeclared_fields) == [
        "customers: Email, mobile_phone, notes",
        "stores: manager.email2",
    ]
    plaintext = {"drift": [*DRIFT.values(), MANAGER_EMAIL2, SALES_EXTRA]}
    warehouse_strings = duckdb_strings(where) if target == "duckdb" else postgres_strings(where)
    assert find_plaintext(lake_strings(str(tmp_path / "lake")), plaintext) == []
    assert find_plaintext(warehouse_strings, plaintext) == []

    # Every good row counts: the generated files as the manifest says, plus the odd-but-real
    # timestamps; the unrepresentable ones are quarantined as bad_sale_ts.
    totals = manifest["totals"]
    n_sales, units, revenue = _query(
        target, where, "select sum(n_sales), sum(units), sum(revenue) from marts.fct_daily_sales"
    )[0]
    assert int(n_sales) == totals["n_sales"] + extra["n_sales"]
    assert int(units) == totals["units"] + extra["units"]
    assert (
        Decimal(str(revenue)).quantize(Decimal("0.01"))
        == Decimal(totals["revenue"]) + extra["revenue"]
    )
    quality = {
        name: (rows_in, valid, quarantined, str(reasons))
        for name, rows_in, valid, quarantined, reasons in _query(
            target,
            where,
            "select file_name, rows_in, rows_valid, rows_quarantined, "
            "rows_quarantined_by_reason from marts.data_quality_by_file",
        )
    }
    for name, truth in manifest["files"].items():
        assert quality[name][:3] == (
            truth["rows_in"],
            truth["rows_valid"],
            truth["rows_quarantined"],
        )
    ignored = {
        name: (status, reason)
        for name, status, reason in _query(
            target,
            where,
            "select file_name, status, failure_reason from marts.data_quality_by_file "
            "where status = 'ignored'",
        )
    }
    assert ignored == {
        "sales/.hidden_x.csv": ("ignored", "a hidden file"),
        "sales/X.CSV": ("ignored", "not a sales file (.csv or .csv.gz)"),
        "sales/x.csv.bak": ("ignored", "not a sales file (.csv or .csv.gz)"),
        "sales/old/sales_2026-01-02.csv": (
            "ignored",
            "outside the contract's folders (stores, products, customers, sales)",
        ),
    }
    odd = quality["sales/sales_2026-01-20.csv"]
    assert odd[:3] == (4, 2, 2) and "bad_sale_ts" in odd[3], odd
    long = quality["sales/sales_2026-01-24.csv"]
    assert long[:3] == (2, 1, 1) and "record_too_long" in long[3], long

    # dim_dates has every sale date (the relationships test passed), and not centuries of days.
    dates = {d for (d,) in _query(target, where, "select date_day from marts.dim_dates")}
    assert {dt.date.fromisoformat(d) for d in ODD_BUT_REAL.values()} <= dates
    assert len(dates) < 400

    # The CSV report: formulas defused, records counted as records.
    with open(summary.report_url or "", encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == summary.stages[-1].rows["report_rows"]
    names = {r["product_id"]: r["product_name"] for r in records}
    assert names["PR-0001"] == "'" + FORMULA
    assert names["PR-0002"] == "Milk\nwith\nnewlines"
    assert not any(
        value.startswith(("=", "+", "@")) for record in records for value in record.values()
    )

    # The next run is not stopped by any of it, and changes nothing.
    again = retail_elt(return_state=True)
    assert again.is_completed(), again.message
    assert _query(
        target, where, "select sum(n_sales), sum(units), sum(revenue) from marts.fct_daily_sales"
    )[0] == (n_sales, units, revenue)
