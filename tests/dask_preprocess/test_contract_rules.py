"""Each sales rule of the source contract (§4, §5) on small hand-written lake inputs.

Every test writes raw Parquet in the ingestion stage's layout, runs the real stage on a real
local Dask cluster and reads the Parquet it wrote.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

from tests.dask_preprocess.lakebuilder import LakeBuilder, Malformed, sale
from tests.dask_preprocess.support import (
    all_mtimes,
    assert_balanced,
    customer_monthly,
    daily,
    daily_by_date,
    output_mtimes,
    quality,
    quarantine,
    run,
)

F10 = "sales/sales_2026-01-10.csv.gz"
F11 = "sales/sales_2026-01-11.csv.gz"
F12 = "sales/sales_2026-01-12.csv.gz"
D = date.fromisoformat


def test_same_sale_id_twice_in_one_file(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [
            sale("S1", quantity="1", unit_price="10.00"),
            # the same sale again, spelled differently: still the same normalized values
            sale("S1", quantity=" 1 ", unit_price="10.0", sale_amount="10", region=" NORTH "),
            sale("S2", quantity="1", unit_price="10.00"),
            # S2 again with changed values further down: the later line wins
            sale("S2", quantity="3", unit_price="10.00"),
        ],
    )
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    q = quality(tmp_path)[F10]
    assert (q["rows_in"], q["rows_valid"], q["rows_duplicate"], q["rows_superseded"]) == (
        4,
        2,
        1,
        1,
    )
    assert q["duplicate_ratio"] == 0.25
    assert q["is_alert"] is False
    assert daily(tmp_path) == {
        (D("2026-01-10"), "ST-001", "PR-0001", "North"): (2, 4, Decimal("40.00"))
    }


def test_correction_weeks_later_moves_the_sale_to_another_day(
    tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [
            sale("S1", sale_ts="2026-01-10T12:00:00+03:00", quantity="1", unit_price="100"),
            sale("S2", sale_ts="2026-01-09T12:00:00+03:00", quantity="1", unit_price="7"),
        ],
    )
    first = run(tmp_path, dask_address)
    assert first.affected_sale_dates == [D("2026-01-09"), D("2026-01-10")]
    before = output_mtimes(tmp_path)

    # Weeks later, S1 is corrected: it happened on 2026-02-03 and was 3 units.
    lake.deliver(
        "sales/sales_2026-02-04.csv.gz",
        [sale("S1", sale_ts="2026-02-03T10:00:00+03:00", quantity="3", unit_price="100")],
    )
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    assert result.affected_sale_dates == [D("2026-01-10"), D("2026-02-03")]
    assert result.affected_sale_months == [D("2026-01-01"), D("2026-02-01")]
    by_date = daily_by_date(tmp_path)
    assert by_date == {
        D("2026-01-09"): (1, 1, Decimal("7.00")),
        D("2026-02-03"): (1, 3, Decimal("300.00")),
    }
    # The old day's partition is rewritten as an empty file, so the loader clears it.
    emptied = tmp_path / "preprocessed/daily_sales/sale_date=2026-01-10/part-0.parquet"
    assert pq.read_table(emptied).num_rows == 0
    assert "revenue" in pq.read_schema(emptied).names
    # The unaffected day was not touched.
    after = output_mtimes(tmp_path)
    untouched = "preprocessed/daily_sales/sale_date=2026-01-09/part-0.parquet"
    assert after[untouched] == before[untouched]
    assert after[str(emptied.relative_to(tmp_path))] != before[str(emptied.relative_to(tmp_path))]
    q = quality(tmp_path)
    assert (q[F10]["rows_valid"], q[F10]["rows_superseded"]) == (1, 1)
    assert q["sales/sales_2026-02-04.csv.gz"]["rows_valid"] == 1
    months = customer_monthly(tmp_path)
    assert months[("CU-000001", D("2026-01-01"))]["n_sales"] == 1
    assert months[("CU-000001", D("2026-02-01"))]["revenue"] == Decimal("300.00")


def test_redelivered_file_that_drops_a_row(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [
            sale("S1", quantity="1", unit_price="10"),
            sale("S2", quantity="1", unit_price="20"),
            sale("S3", quantity="x", unit_price="30"),
        ],
    )
    lake.deliver(F11, [sale("S9", sale_ts="2026-01-11T12:00:00+03:00", unit_price="5")])
    run(tmp_path, dask_address)
    assert len(quarantine(tmp_path)) == 1
    before = output_mtimes(tmp_path)

    # The same file again, newer: S2 and the broken S3 are gone.
    lake.deliver(F10, [sale("S1", quantity="1", unit_price="10")])
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    assert result.files_processed == [F10]
    q = quality(tmp_path)[F10]
    assert (q["rows_in"], q["rows_valid"], q["rows_quarantined"]) == (1, 1, 0)
    assert daily_by_date(tmp_path)[D("2026-01-10")] == (1, 1, Decimal("10.00"))
    assert quarantine(tmp_path) == []  # the earlier version's quarantined row counts no more
    after = output_mtimes(tmp_path)
    day11 = "preprocessed/daily_sales/sale_date=2026-01-11/part-0.parquet"
    assert after[day11] == before[day11]


def test_redelivering_the_same_content_changes_no_aggregate(
    tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    rows = [sale("S1"), sale("S2", customer_id="")]
    lake.deliver(F10, rows)
    run(tmp_path, dask_address)
    before = output_mtimes(tmp_path)
    lake.deliver(F10, rows)  # a newer version with identical content
    result = run(tmp_path, dask_address)
    assert result.did_work and result.files_processed == [F10]
    assert result.affected_sale_dates == []
    after = output_mtimes(tmp_path)
    for path, mtime in before.items():
        if "daily_sales" in path or "customer_monthly" in path:
            assert after[path] == mtime


def test_timestamps_around_midnight_in_moscow(tmp_path: Path, dask_address: str) -> None:
    cases = {
        "2026-01-10T23:59:59+03:00": "2026-01-10",
        "2026-01-11T00:00:00+03:00": "2026-01-11",
        "2026-01-10T20:59:59Z": "2026-01-10",
        "2026-01-10T21:00:00Z": "2026-01-11",
        "2026-01-10T20:59:59": "2026-01-10",  # no offset: UTC
        "2026-01-10T21:00:00": "2026-01-11",
        "2026-01-10T15:59:59-05:00": "2026-01-10",
        "2026-01-10T16:00:00-05:00": "2026-01-11",
        "2026-01-10 21:30:00+00:00": "2026-01-11",
        "2026-01-10T20:59:59.999+00:00": "2026-01-10",
    }
    lake = LakeBuilder(str(tmp_path))
    rows = [sale(f"S{i}", sale_ts=ts, product_id=f"PR-{i:04d}") for i, ts in enumerate(cases)]
    # The same instant written another way is the same normalized value: a duplicate.
    rows.append(sale("S3", sale_ts="2026-01-11T00:00:00+03:00", product_id="PR-0003"))
    rows.append(sale("X1", sale_ts="2026-01-10T25:00:00Z"))
    rows.append(sale("X2", sale_ts="10.01.2026 12:00"))
    rows.append(sale("X3", sale_ts="2026-02-30T12:00:00Z"))
    lake.deliver(F10, rows)
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    got = {product: d for (d, _, product, _) in daily(tmp_path)}
    assert got == {f"PR-{i:04d}": D(expected) for i, expected in enumerate(cases.values())}
    q = quality(tmp_path)[F10]
    assert q["rows_duplicate"] == 1
    assert result.quarantined_by_reason == {"bad_sale_ts": 3}
    # Other time zones are a setting.
    other = tmp_path / "utc"
    LakeBuilder(str(other)).deliver(F10, [sale("S1", sale_ts="2026-01-10T22:00:00+03:00")])
    run(other, dask_address, timezone="UTC")
    assert list(daily_by_date(other)) == [D("2026-01-10")]


def test_region_spellings(tmp_path: Path, dask_address: str) -> None:
    spellings = {
        "North": "North",
        " north ": "North",
        "SOUTH": "South",
        "\teast": "East",
        "wEsT  ": "West",
    }
    bad = ["Nord", "", "North-West", "N", "Северный"]
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [sale(f"S{i}", region=r, store_id=f"ST-{i}") for i, r in enumerate(spellings)]
        + [sale(f"B{i}", region=r) for i, r in enumerate(bad)],
    )
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    got = {store: region for (_, store, _, region) in daily(tmp_path)}
    assert got == {f"ST-{i}": canonical for i, canonical in enumerate(spellings.values())}
    assert result.quarantined_by_reason == {"bad_region": len(bad)}
    assert [r["region"] for r in quarantine(tmp_path)] == bad  # kept as delivered


def test_amount_within_one_kopeck(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [
            sale("OFF_011", quantity="3", unit_price="33.33", sale_amount="100.001"),  # 0.011
            sale("OFF_009", quantity="3", unit_price="33.33", sale_amount="99.999"),  # 0.009
            sale("OFF_010", quantity="3", unit_price="33.33", sale_amount="100.00"),  # 0.010
            sale("UNDER_011", quantity="3", unit_price="33.33", sale_amount="99.979"),  # -0.011
            sale("FLOATY", quantity="3", unit_price="0.1", sale_amount="0.31"),  # 0.3 + 0.01
            sale("PRICE4", quantity="7", unit_price="1.2345", sale_amount="8.64"),  # 8.6415
            sale("PRICE5", quantity="1", unit_price="1.23456", sale_amount="1.23"),
        ],
    )
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    reasons = {r["sale_id"]: r["reason"] for r in quarantine(tmp_path)}
    assert reasons == {
        "OFF_011": "amount_mismatch",
        "UNDER_011": "amount_mismatch",
        "PRICE5": "bad_unit_price",  # more than four decimal places: documented choice
    }
    # Revenue sums the exact delivered amounts (99.999 + 100.00 + 0.31 + 8.64 = 208.949)
    # and is rounded half-up to kopecks only at the end.
    assert daily_by_date(tmp_path)[D("2026-01-10")] == (4, 3 + 3 + 3 + 7, Decimal("208.95"))


def test_quarantine_reasons_first_failing_check_wins(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    rows: list = [
        Malformed("S0,2026-01-10T12:00:00Z,ST-001"),
        sale("  ", sale_ts="nonsense"),  # empty sale_id wins over the bad timestamp
        sale("S2", store_id=""),
        sale("S3", product_id=" "),
        sale("S4", sale_ts="yesterday", quantity="0"),
        sale("S5", quantity="2.0", unit_price="10", sale_amount="20"),
        sale("S6", quantity="0", unit_price="10", sale_amount="0"),
        sale("S7", quantity="-1", unit_price="10", sale_amount="-10"),
        sale("S8", unit_price="0", sale_amount="0"),
        sale("S9", unit_price="abc", sale_amount="1"),
        sale("S10", unit_price="-5", sale_amount="-10"),
        sale("S11", sale_amount="1e3"),
        sale("S12", sale_amount="179,80"),
        sale("S13", quantity="2", unit_price="89.90", sale_amount="180.00"),
        sale("S14", region="Moon", sale_amount="1"),  # the amount is checked before the region
        sale("S15", region="Moon"),
        sale("OK", quantity="+2", sale_amount="179.8"),
    ]
    lake.deliver(F10, rows)
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    got = [(r["_line_number"], r["sale_id"], r["reason"]) for r in quarantine(tmp_path)]
    assert got == [
        (2, None, "wrong_field_count"),
        (3, "  ", "empty_sale_id"),
        (4, "S2", "empty_store_id"),
        (5, "S3", "empty_product_id"),
        (6, "S4", "bad_sale_ts"),
        (7, "S5", "bad_quantity"),
        (8, "S6", "bad_quantity"),
        (9, "S7", "bad_quantity"),
        (10, "S8", "bad_unit_price"),
        (11, "S9", "bad_unit_price"),
        (12, "S10", "bad_unit_price"),
        (13, "S11", "bad_sale_amount"),
        (14, "S12", "bad_sale_amount"),
        (15, "S13", "amount_mismatch"),
        (16, "S14", "amount_mismatch"),
        (17, "S15", "bad_region"),
    ]
    rows_q = quarantine(tmp_path)
    assert rows_q[0]["_raw_line"] == "S0,2026-01-10T12:00:00Z,ST-001"
    assert {r["_file_name"] for r in rows_q} == {F10}
    assert {r["_delivery_date"] for r in rows_q} == {D("2026-01-10")}
    q = quality(tmp_path)[F10]
    assert (q["rows_in"], q["rows_valid"], q["rows_quarantined"]) == (17, 1, 16)


def test_anonymous_customers_and_customer_months(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(
        F10,
        [
            sale("S1", customer_id="", sale_ts="2026-01-31T20:59:00Z", unit_price="1"),
            sale("S2", customer_id="  ", sale_ts="2026-01-31T21:00:00Z", unit_price="2"),
            sale("S3", customer_id=" CU-7 ", sale_ts="2026-01-05T10:00:00Z", unit_price="3"),
            sale("S4", customer_id="CU-7", sale_ts="2026-01-20T10:00:00Z", unit_price="4"),
        ],
    )
    run(tmp_path, dask_address)
    months = customer_monthly(tmp_path)
    assert set(months) == {
        (None, D("2026-01-01")),
        (None, D("2026-02-01")),
        ("CU-7", D("2026-01-01")),
    }
    assert months[(None, D("2026-02-01"))]["revenue"] == Decimal("4.00")  # 2 × 2, Feb in Moscow
    cu7 = months[("CU-7", D("2026-01-01"))]
    assert (cu7["n_sales"], cu7["units"], cu7["revenue"]) == (2, 4, Decimal("14.00"))
    assert cu7["_revenue_e4"] == 140_000  # the exact sum the revenue is rounded from


def test_failed_file_counts_zero_until_delivered_again(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1")])
    lake.fail(F11, "corrupt gzip")
    result = run(tmp_path, dask_address)
    q = quality(tmp_path)[F11]
    assert (q["status"], q["failure_reason"], q["rows_in"], q["rows_valid"]) == (
        "failed",
        "corrupt gzip",
        0,
        0,
    )
    assert result.failed_files == [F11]
    assert quality(tmp_path)[F10]["status"] == "processed"

    lake.deliver(F11, [sale("S2", sale_ts="2026-01-11T12:00:00+03:00")])
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    q = quality(tmp_path)[F11]
    assert (q["status"], q["failure_reason"], q["rows_in"], q["rows_valid"]) == (
        "processed",
        None,
        1,
        1,
    )
    assert result.affected_sale_dates == [D("2026-01-11")]

    # A later version that cannot be read replaces the good one: nothing of it counts.
    lake.fail(F11, "header does not match")
    result = run(tmp_path, dask_address)
    assert quality(tmp_path)[F11]["status"] == "failed"
    assert D("2026-01-11") not in daily_by_date(tmp_path)
    assert result.totals["rows_in"] == 1


def test_duplicate_ratio_above_half_raises_the_alert(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1")] * 3 + [sale("S2")])
    lake.deliver(F11, [sale("S3")] * 2)
    run(tmp_path, dask_address)
    q = quality(tmp_path)
    assert (q[F10]["duplicate_ratio"], q[F10]["is_alert"]) == (0.5, False)
    assert (q[F11]["duplicate_ratio"], q[F11]["is_alert"]) == (0.5, False)
    lake.deliver(F12, [sale("S4")] * 3)
    run(tmp_path, dask_address)
    q = quality(tmp_path)[F12]
    assert q["duplicate_ratio"] == 2 / 3
    assert q["is_alert"] is True


def test_the_duplicate_alert_ratio_is_a_setting(tmp_path: Path, dask_address: str) -> None:
    """A file with a quarter of its rows duplicates raises the alert at a ratio of 0.2, not
    at the default (0.5): in the run's result and in ``file_quality``."""
    for ratio, alert in ((None, False), (0.2, True)):
        lake = tmp_path / str(ratio)
        LakeBuilder(str(lake)).deliver(F10, [sale("S1")] * 2 + [sale("S2"), sale("S3")])
        options = {} if ratio is None else {"duplicate_alert_ratio": ratio}
        result = run(lake, dask_address, **options)
        assert [(q.duplicate_ratio, q.is_alert) for q in result.file_quality] == [(0.25, alert)]
        assert (quality(lake)[F10]["duplicate_ratio"], quality(lake)[F10]["is_alert"]) == (
            0.25,
            alert,
        )


def test_duplicate_of_an_earlier_file_and_a_later_supersession(
    tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1", unit_price="10", quantity="1")])
    lake.deliver(F11, [sale("S1", unit_price="10", quantity="1")])  # a repeat: duplicate
    lake.deliver(F12, [sale("S1", unit_price="11", quantity="1")])  # a correction
    result = run(tmp_path, dask_address)
    assert_balanced(result)
    q = quality(tmp_path)
    assert (q[F10]["rows_superseded"], q[F11]["rows_duplicate"], q[F12]["rows_valid"]) == (1, 1, 1)
    assert daily_by_date(tmp_path)[D("2026-01-10")] == (1, 1, Decimal("11.00"))


def test_a_run_with_nothing_new_changes_no_file(tmp_path: Path, dask_address: str) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1"), sale("S2", quantity="bad")])
    lake.fail(F11)
    first = run(tmp_path, dask_address)
    before = all_mtimes(tmp_path)
    second = run(tmp_path, dask_address)
    assert not second.did_work
    assert second.files_processed == [] and second.affected_sale_dates == []
    assert all_mtimes(tmp_path) == before
    assert second.totals == first.totals
    assert second.file_quality == first.file_quality


def test_files_of_an_unfinished_load_wait_until_the_load_is_recorded(
    tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1", quantity="1", unit_price="10")])
    run(tmp_path, dask_address)
    # A re-delivery whose dlt load has not completed (not in raw/_dlt_loads): not read yet.
    lake.deliver(F10, [sale("S1", quantity="5", unit_price="10")], complete=False)
    pending = run(tmp_path, dask_address)
    assert not pending.did_work
    assert daily_by_date(tmp_path)[D("2026-01-10")] == (1, 1, Decimal("10.00"))
    lake.complete(lake.last_load_id)
    done = run(tmp_path, dask_address)
    assert done.files_processed == [F10]
    assert daily_by_date(tmp_path)[D("2026-01-10")] == (1, 5, Decimal("50.00"))


def test_the_only_file_turning_unreadable_empties_its_partitions(
    tmp_path: Path, dask_address: str
) -> None:
    lake = LakeBuilder(str(tmp_path))
    lake.deliver(F10, [sale("S1"), sale("S2", customer_id="")])
    run(tmp_path, dask_address)
    lake.fail(F10, "corrupt_gzip: bad deflate stream")
    result = run(tmp_path, dask_address)
    assert result.totals["rows_in"] == 0 and result.failed_files == [F10]
    assert result.affected_sale_dates == [D("2026-01-10")]
    for rel in (
        "preprocessed/daily_sales/sale_date=2026-01-10/part-0.parquet",
        "preprocessed/customer_monthly/sale_month=2026-01-01/part-0.parquet",
    ):
        assert pq.read_table(tmp_path / rel).num_rows == 0
    assert not list((tmp_path / "preprocessed/_state/rows").rglob("*.parquet"))
