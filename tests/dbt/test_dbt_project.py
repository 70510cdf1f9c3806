"""The dbt project, built for real on DuckDB and on PostgreSQL from a hand-written raw layer.

Per target, one module-scoped fixture runs the whole story once (each ``dbt`` call costs
seconds): ``dbt build`` on state 1 of the raw layer, then on state 2 (a correction that
moves a sale to another date and empties a date, a new date, a late sale in an earlier
month, a re-delivered file without two sales, a new customer version, an unknown customer
becoming known) as an incremental run, then a plain re-run and a ``--full-refresh`` of every
model. The tests assert on what each step left in the warehouse against figures computed
here in Python from the sales list of ``tests/dbt/raw_data.py``, independently of the SQL,
and that the incremental run left every mart (and every incremental intermediate model)
exactly as the full refresh builds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from elt_settings import dbt_env_for
from tests.dbt import raw_data
from tests.dbt.raw_data import (
    CUSTOMERS_2,
    LOAD_1,
    LOAD_2,
    LOADED_AT,
    PRODUCTS_1,
    PRODUCTS_2,
    STORES_1,
    Sale,
)

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
TIMEZONE = "Europe/Moscow"

MARTS = {
    "fct_daily_sales": "sale_date, store_id, product_id, region",
    "fct_monthly_sales": "sale_month, region, store_id, product_id",
    "sales_by_region_product": "region, product_id",
    "dim_stores": "store_id",
    "dim_products": "product_id",
    "dim_customers": "customer_id",
    "dim_dates": "date_day",
    "data_quality_by_file": "file_name",
    "store_performance": "store_id",
    "category_revenue": "sale_month, category",
    "customer_cohorts": "cohort_month, months_since_first",
    "customer_activity_monthly": "sale_month",
    "kpi_overview": "n_stores",
}
# The incremental intermediate models: compared with a full refresh like the marts.
INCREMENTAL_INTERMEDIATE = {
    "int_customers_historized": "customer_id, valid_from",
    "int_customer_months_joined_to_cohorts": "customer_id, sale_month",
}


# --- running dbt and reading the warehouse -------------------------------------------------


@dataclass
class Warehouse:
    """One target's warehouse and what the dbt runs on it left behind."""

    target: str
    env: dict[str, str]
    duckdb_path: str
    postgres_dsn: str
    outputs: dict[str, str] = field(default_factory=dict)
    marts: dict[str, dict[str, list[tuple]]] = field(default_factory=dict)
    run_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write_raw(self, state: int) -> None:
        """(Re)write the raw layer of a state."""
        if self.target == "duckdb":
            raw_data.write_raw_duckdb(self.duckdb_path, state)
        else:
            raw_data.write_raw_postgres(self.postgres_dsn, state)

    def query(self, sql: str) -> list[tuple]:
        """Rows of a query, as Python values."""
        if self.target == "duckdb":
            import duckdb

            # Same configuration as dbt's connection, which dbt-duckdb may keep open in
            # this process (a read-only connection would be refused).
            with duckdb.connect(self.duckdb_path) as conn:
                return conn.execute(sql).fetchall()
        import psycopg2

        conn = psycopg2.connect(self.postgres_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def dbt(self, step: str, *args: str, check: bool = True, isolated: bool = False) -> str:
        """Run a dbt command; keep its log and run results under ``step``.

        In-process by default (no interpreter start-up per command); dbt reads its settings
        from the environment (``profiles.yml`` uses ``env_var``), so the target's environment
        is set for the call and restored afterwards. ``isolated`` runs the ``dbt`` command in
        a subprocess instead, for tests whose other stages open the same DuckDB file in this
        process (dbt-duckdb may keep its connection open).
        """
        command = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
        if isolated:
            proc = subprocess.run(
                [str(Path(sys.executable).with_name("dbt")), *command],
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            success, self.outputs[step] = proc.returncode == 0, proc.stdout + proc.stderr
        else:
            from dbt.cli.main import dbtRunner

            messages: list[str] = []
            saved = dict(os.environ)
            os.environ.update(self.env)
            try:
                result = dbtRunner(
                    callbacks=[lambda event: messages.append(event.info.msg)]
                ).invoke(command)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            success, self.outputs[step] = result.success, "\n".join(str(m) for m in messages)
        results = Path(self.env["DBT_TARGET_PATH"]) / "run_results.json"
        if results.exists():
            self.run_results[step] = json.loads(results.read_text())
        assert success or not check, f"dbt {' '.join(args)} failed:\n{self.outputs[step][-6000:]}"
        return self.outputs[step]

    def read_marts(self, step: str) -> None:
        """Keep every mart's and incremental intermediate model's rows (ordered by its key)
        as they are after ``step``."""
        relations = {
            **{f"marts.{name}": key for name, key in MARTS.items()},
            **{f"intermediate.{name}": key for name, key in INCREMENTAL_INTERMEDIATE.items()},
        }
        self.marts[step] = {
            relation.split(".")[1]: [
                normalize(row) for row in self.query(f"select * from {relation} order by {key}")
            ]
            for relation, key in relations.items()
        }

    def mart(self, step: str, name: str) -> list[dict[str, Any]]:
        """A mart's (or incremental intermediate model's) rows after ``step`` as dicts."""
        schema = "intermediate" if name in INCREMENTAL_INTERMEDIATE else "marts"
        columns = [
            row[0]
            for row in self.query(
                "select column_name from information_schema.columns"
                f" where table_schema = '{schema}' and table_name = '{name}'"
                " order by ordinal_position"
            )
        ]
        return [dict(zip(columns, row, strict=True)) for row in self.marts[step][name]]


def normalize(row: tuple) -> tuple:
    """Row values comparable across targets: floats rounded, aware datetimes in UTC."""
    out: list[Any] = []
    for value in row:
        if isinstance(value, float):
            value = round(value, 9)
        elif isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        out.append(value)
    return tuple(out)


def _story(warehouse: Warehouse) -> Warehouse:
    warehouse.write_raw(1)
    # State 1 only needs to exist (models and snapshots); every test runs on state 2.
    warehouse.dbt("build_1", "build", "--resource-type", "model", "--resource-type", "snapshot")
    warehouse.read_marts("build_1")
    warehouse.write_raw(2)
    warehouse.dbt("build_2", "build")
    warehouse.read_marts("build_2")
    warehouse.dbt("rerun", "run")
    warehouse.read_marts("rerun")
    # Every model: the incremental fact, history and customer months, and all they feed.
    warehouse.dbt("full_refresh", "run", "--full-refresh")
    warehouse.read_marts("full_refresh")
    if warehouse.target == "duckdb":  # target-independent: checked once, to keep the suite fast
        warehouse.dbt("docs", "docs", "generate")
        warehouse.dbt("freshness", "source", "freshness", check=False)
    return warehouse


def _env(tmp: Path, target: str, duckdb_path: str, dsn: str) -> dict[str, str]:
    env = dbt_env_for(target, duckdb_path, dsn, TIMEZONE)
    env["DBT_TARGET_PATH"] = str(tmp / "target")
    env["DBT_LOG_PATH"] = str(tmp / "logs")
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["DO_NOT_TRACK"] = "1"
    return env


@pytest.fixture(scope="module")
def duckdb_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The story run on a fresh DuckDB file."""
    tmp = tmp_path_factory.mktemp("dbt_duckdb")
    path = str(tmp / "warehouse.duckdb")
    unused_dsn = "postgresql://unused@127.0.0.1:1/unused"
    return _story(Warehouse("duckdb", _env(tmp, "duckdb", path, unused_dsn), path, unused_dsn))


@pytest.fixture(scope="module")
def postgres_warehouse(
    tmp_path_factory: pytest.TempPathFactory, pg_server: Any
) -> Iterator[Warehouse]:
    """The story run on a fresh PostgreSQL database."""
    import psycopg2

    tmp = tmp_path_factory.mktemp("dbt_postgres")
    name = f"dbt_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(pg_server.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    conn.close()
    dsn = pg_server.dsn(name)
    path = str(tmp / "unused.duckdb")
    yield _story(Warehouse("postgres", _env(tmp, "postgres", path, dsn), path, dsn))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    """Each target's warehouse after the story."""
    return request.getfixturevalue(f"{request.param}_warehouse")


# --- the expected figures, computed from the sales list -------------------------------------


def _current(rows: list[tuple[tuple, str]], key: int, updated: int, modified: int) -> dict:
    """The current version per id: latest updated_at, ties by latest file modification."""
    best: dict[str, tuple] = {}
    for row, _load in rows:
        if row[key] not in best or (row[updated], row[modified]) > (
            best[row[key]][updated],
            best[row[key]][modified],
        ):
            best[row[key]] = row
    return best


PRODUCT_NAMES = {pid: row[1] for pid, row in _current(PRODUCTS_2, 0, 7, 9).items()}
# The current category of each product after each state (PR-0005's changes in state 2).
PRODUCT_CATEGORIES = {
    state: {pid: row[2] for pid, row in _current(products, 0, 7, 9).items()}
    for state, products in ((1, PRODUCTS_1), (2, PRODUCTS_2))
}
STORE_REGIONS = {sid: row[3] for sid, row in _current(STORES_1, 0, 14, 16).items()}


def _totals(sales: list[Sale], key: Any) -> dict[Any, tuple[int, int, Decimal]]:
    out: dict[Any, list] = defaultdict(lambda: [0, 0, Decimal("0")])
    for sale in sales:
        acc = out[key(sale)]
        acc[0] += 1
        acc[1] += sale.quantity
        acc[2] += sale.amount
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def _rank(revenues: dict[Any, Decimal]) -> dict[Any, int]:
    """SQL rank(): 1 + how many have a strictly higher revenue."""
    return {
        k: 1 + sum(1 for other in revenues.values() if other > rev) for k, rev in revenues.items()
    }


def expected_by_region_product(state: int) -> list[dict[str, Any]]:
    """sales_by_region_product, from the sales list of a state."""
    sales = raw_data.sales_for(state)
    totals = _totals(sales, lambda s: (s.region, s.product_id))
    rows = []
    for region in {r for r, _ in totals}:
        revenues = {p: t[2] for (r, p), t in totals.items() if r == region}
        region_revenue = sum(revenues.values())
        ranks = _rank(revenues)
        for product, revenue in revenues.items():
            n, units, _ = totals[(region, product)]
            rows.append(
                {
                    "region": region,
                    "product_id": product,
                    "product_name": PRODUCT_NAMES.get(product),
                    "category": PRODUCT_CATEGORIES[state].get(product, "Unknown"),
                    "n_sales": n,
                    "units": units,
                    "revenue": revenue,
                    "avg_sale_amount": (revenue / n).quantize(Decimal("0.01")),
                    "revenue_rank_in_region": ranks[product],
                    "revenue_share_in_region": float(revenue / region_revenue),
                }
            )
    return sorted(rows, key=lambda r: (r["region"], r["product_id"]))


def expected_monthly(state: int) -> list[dict[str, Any]]:
    """fct_monthly_sales, from the sales list of a state: the months the second load
    replaced have its load id, the others keep the first's; every row has the product's
    current category."""
    totals = _totals(
        raw_data.sales_for(state),
        lambda s: (s.sale_date.replace(day=1), s.region, s.store_id, s.product_id),
    )
    return [
        {
            "sale_month": month,
            "region": region,
            "store_id": store,
            "product_id": product,
            "category": PRODUCT_CATEGORIES[state].get(product, "Unknown"),
            "n_sales": n,
            "units": units,
            "revenue": revenue,
            "source_load_id": (
                LOAD_2 if state == 2 and month in raw_data.CHANGED_MONTHS_2 else LOAD_1
            ),
        }
        for (month, region, store, product), (n, units, revenue) in sorted(totals.items())
    ]


def expected_daily(sales: list[Sale]) -> list[tuple]:
    """fct_daily_sales's interface columns, from the sales list."""
    totals = _totals(sales, lambda s: (s.sale_date, s.store_id, s.product_id, s.region))
    return sorted((*k, *v) for k, v in totals.items())


def _months_between(first: dt.date, second: dt.date) -> int:
    return (second.year - first.year) * 12 + second.month - first.month


def expected_customer_months(state: int) -> list[dict[str, Any]]:
    """int_customer_months_joined_to_cohorts, from the sales list of a state."""
    totals = _totals(
        [s for s in raw_data.sales_for(state) if s.customer_id],
        lambda s: (s.customer_id, s.sale_date.replace(day=1)),
    )
    cohorts: dict[str, dt.date] = {}
    for customer, month in totals:
        cohorts[customer] = min(month, cohorts.get(customer, month))
    rows = []
    for (customer, month), (n, units, revenue) in sorted(totals.items()):
        replaced = state == 2 and month in raw_data.CHANGED_MONTHS_2
        rows.append(
            {
                "customer_id": customer,
                "sale_month": month,
                "cohort_month": cohorts[customer],
                "months_since_first": _months_between(cohorts[customer], month),
                "n_sales": n,
                "units": units,
                "revenue": revenue,
                "source_load_id": LOAD_2 if replaced else LOAD_1,
            }
        )
    return rows


# --- the tests ------------------------------------------------------------------------------


def test_raw_data_declares_every_replaced_partition() -> None:
    """The fixture itself: every date and month whose rows differ between the two states is
    one the second load replaced (else the raw layer would be inconsistent)."""
    for rows_of, key, changed in (
        (raw_data._daily_sales_rows, 0, raw_data.CHANGED_DATES_2),  # by sale_date
        (raw_data._customer_monthly_rows, 1, raw_data.CHANGED_MONTHS_2),  # by sale_month
    ):
        by_partition: list[dict[Any, set]] = [defaultdict(set), defaultdict(set)]
        for state in (1, 2):
            for row, _load in rows_of(state):
                by_partition[state - 1][row[key]].add(row)
        differing = {
            p
            for p in set(by_partition[0]) | set(by_partition[1])
            if by_partition[0].get(p) != by_partition[1].get(p)
        }
        assert differing <= changed
        assert differing  # the second load really changes something


def test_build_is_green_with_only_the_deliberate_warning(warehouse: Warehouse) -> None:
    """Every model, snapshot, unit test and data test passes; the one warning is the dirty
    file's duplicate ratio, and it names the file."""
    first = {r["status"] for r in warehouse.run_results["build_1"]["results"]}
    assert first <= {"success", "no-op"}, first
    statuses = defaultdict(list)
    for result in warehouse.run_results["build_2"]["results"]:
        statuses[result["status"]].append(result["unique_id"])
    assert set(statuses) <= {"success", "pass", "warn", "no-op"}, dict(statuses)
    assert [uid.split(".")[2] for uid in statuses["warn"]] == [
        "duplicate_ratio_at_most_alert_ratio"
    ]
    kinds = {uid.split(".")[0] for uid in statuses["success"] + statuses["pass"]}
    assert {"model", "snapshot", "test", "unit_test"} <= kinds
    # Every data test and unit test of the project ran, and passed (or warned).
    manifest = json.loads((Path(warehouse.env["DBT_TARGET_PATH"]) / "manifest.json").read_text())
    tests = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] == "test"}
    tests |= set(manifest["unit_tests"])
    assert len(tests) > 50
    assert tests == set(statuses["pass"]) | set(statuses["warn"])
    assert f"duplicate ratio alert: file {raw_data.DIRTY_FILE}" in warehouse.outputs["build_2"]


def test_sales_by_region_product_equals_an_independent_computation(warehouse: Warehouse) -> None:
    """Revenue, n_sales, units, names, ranks (with a tie) and shares by region x product."""
    for step, state in (("build_1", 1), ("build_2", 2)):
        actual = warehouse.mart(step, "sales_by_region_product")
        expected = expected_by_region_product(state)
        assert [
            {k: r[k] for k in expected[0] if k != "revenue_share_in_region"} for r in actual
        ] == [{k: r[k] for k in r if k != "revenue_share_in_region"} for r in expected]
        for a, e in zip(actual, expected, strict=True):
            assert a["revenue_share_in_region"] == pytest.approx(e["revenue_share_in_region"])
    north = {
        r["product_id"]: r
        for r in warehouse.mart("build_1", "sales_by_region_product")
        if r["region"] == "North"
    }
    # The deliberate tie: PR-0002 and PR-0003 share rank 2, the next product is 4th.
    assert (
        north["PR-0002"]["revenue_rank_in_region"]
        == north["PR-0003"]["revenue_rank_in_region"]
        == 2
    )
    assert north["PR-0004"]["revenue_rank_in_region"] == 4
    south = {
        r["product_id"]: r
        for r in warehouse.mart("build_1", "sales_by_region_product")
        if r["region"] == "South"
    }
    assert south["PR-9999"]["product_name"] is None


def test_fct_daily_sales_equals_the_sales_and_reconciles(warehouse: Warehouse) -> None:
    """The fact holds exactly the sales aggregated at its grain, after each build."""
    for step, state in (("build_1", 1), ("build_2", 2)):
        rows = [row[:7] for row in warehouse.marts[step]["fct_daily_sales"]]
        assert rows == expected_daily(raw_data.sales_for(state))
    dates = {row[0] for row in warehouse.marts["build_2"]["fct_daily_sales"]}
    assert dt.date(2026, 1, 8) not in dates  # the correction emptied this date


def test_fct_monthly_sales_equals_the_sales_with_current_categories(
    warehouse: Warehouse,
) -> None:
    """The monthly fact after each build equals an independent computation. After the
    incremental build, March (a month the second load did not replace, so its rows were
    kept) has PR-0005's new category, set by the post-hook, and the first load's id."""
    for step, state in (("build_1", 1), ("build_2", 2)):
        assert warehouse.mart(step, "fct_monthly_sales") == expected_monthly(state), step
    march = [
        r
        for r in warehouse.mart("build_2", "fct_monthly_sales")
        if r["sale_month"] == dt.date(2026, 3, 1)
    ]
    assert {(r["product_id"], r["category"], r["source_load_id"]) for r in march} == {
        ("PR-0005", "Fats", LOAD_1)
    }
    compiled = next(
        r["compiled_code"]
        for r in warehouse.run_results["build_2"]["results"]
        if r["unique_id"] == "model.retail_elt.fct_monthly_sales"
    )
    assert "loaded_partitions" in compiled  # the incremental branch ran


def test_incremental_run_rebuilt_only_changed_dates_and_equals_full_refresh(
    warehouse: Warehouse,
) -> None:
    """The second build was incremental (unchanged dates kept their first load), and a re-run
    and a full refresh give identical marts."""
    fct = warehouse.mart("build_2", "fct_daily_sales")
    for row in fct:
        expected_load = LOAD_2 if row["sale_date"] in raw_data.CHANGED_DATES_2 else LOAD_1
        assert row["source_load_id"] == expected_load
    compiled = {
        step: next(
            r["compiled_code"]
            for r in warehouse.run_results[step]["results"]
            if r["unique_id"] == "model.retail_elt.fct_daily_sales"
        )
        for step in ("build_1", "build_2", "full_refresh")
    }
    assert "loaded_partitions" in compiled["build_2"]  # the incremental branch ran
    assert "loaded_partitions" not in compiled["build_1"]
    assert "loaded_partitions" not in compiled["full_refresh"]
    assert warehouse.marts["rerun"] == warehouse.marts["build_2"]
    assert warehouse.marts["full_refresh"] == warehouse.marts["build_2"]


def test_incremental_customer_models_took_their_incremental_path(warehouse: Warehouse) -> None:
    """The customer history, the customer months and the customer dimension ran their
    incremental branch in the second build and the re-run (their full-build branch in the
    first build and the full refresh); what they hold then is checked against the full
    refresh above and against the sales list below (the dimension's unknown members: one
    made known, one no sale refers to any more, in test_dimensions_are_current_versions...)."""
    markers = {
        "int_customers_historized": "changed_customers",
        "int_customer_months_joined_to_cohorts": "kept_months",
        "dim_customers": "kept_customers",
    }
    for model, marker in markers.items():
        compiled = {
            step: next(
                r["compiled_code"]
                for r in warehouse.run_results[step]["results"]
                if r["unique_id"] == f"model.retail_elt.{model}"
            )
            for step in ("build_1", "build_2", "rerun", "full_refresh")
        }
        assert marker in compiled["build_2"] and marker in compiled["rerun"], model
        assert marker not in compiled["build_1"] and marker not in compiled["full_refresh"]
    for name in [*MARTS, *INCREMENTAL_INTERMEDIATE]:
        assert warehouse.marts["full_refresh"][name] == warehouse.marts["build_2"][name], name


def test_customer_months_equal_the_sales_with_moved_cohorts(warehouse: Warehouse) -> None:
    """The customer months and cohorts after each build equal an independent computation:
    after the incremental build, CU-000004's cohort moved to the late, earlier December,
    CU-000005's to March (its February sale was removed), CU-999998 is gone, and the months
    the second load did not replace kept their first load."""
    for step, state in (("build_1", 1), ("build_2", 2)):
        actual = warehouse.mart(step, "int_customer_months_joined_to_cohorts")
        assert actual == expected_customer_months(state), step
    cohorts = {
        step: {
            r["customer_id"]: r["cohort_month"]
            for r in warehouse.mart(step, "int_customer_months_joined_to_cohorts")
        }
        for step in ("build_1", "build_2")
    }
    assert cohorts["build_1"]["CU-000004"] == dt.date(2026, 3, 1)
    assert cohorts["build_2"]["CU-000004"] == dt.date(2025, 12, 1)
    assert cohorts["build_1"]["CU-000005"] == dt.date(2026, 2, 1)
    assert cohorts["build_2"]["CU-000005"] == dt.date(2026, 3, 1)
    assert "CU-999998" in cohorts["build_1"] and "CU-999998" not in cohorts["build_2"]


def test_dimensions_are_current_versions_with_unknown_members(warehouse: Warehouse) -> None:
    """Current versions win; ids without a document are unknown members, so that every
    sale's store and product is in the dimensions."""
    stores = {r["store_id"]: r for r in warehouse.mart("build_2", "dim_stores")}
    assert stores["ST-004"]["city"] == "Tomsk" and stores["ST-004"]["format"] == "hypermarket"
    assert {k for k, r in stores.items() if r["is_unknown"]} == {"ST-999", "ST-998"}
    assert stores["ST-999"]["store_name"] == "Unknown" and stores["ST-999"]["region"] is None
    products = {r["product_id"]: r for r in warehouse.mart("build_2", "dim_products")}
    assert products["PR-0004"]["product_name"] == "Apple juice 1 l"
    assert products["PR-0004"]["unit_price"] == Decimal("120.00")
    assert products["PR-9999"]["is_unknown"] and products["PR-9999"]["product_name"] is None
    customers = {r["customer_id"]: r for r in warehouse.mart("build_2", "dim_customers")}
    first_customers = {r["customer_id"]: r for r in warehouse.mart("build_1", "dim_customers")}
    # An unknown customer becomes known when its document arrives; an unknown member no
    # sale refers to any more disappears.
    assert first_customers["CU-000005"]["is_unknown"]
    assert not customers["CU-000005"]["is_unknown"] and customers["CU-000005"]["city"] == "Tula"
    assert first_customers["CU-999998"]["is_unknown"] and "CU-999998" not in customers
    assert {k for k, r in customers.items() if r["is_unknown"]} == {"CU-999999"}
    assert customers["CU-000001"]["city"] == "Perm"  # the last of three versions
    assert customers["CU-000003"]["city"] == "Omsk"  # same updated_at, later file wins
    assert customers["CU-000002"]["city"] == "Yalta"  # the version of the second load
    assert customers["CU-999999"]["is_unknown"]
    # The load of each current version: what the incremental run compares.
    assert customers["CU-000002"]["load_id"] == LOAD_2
    assert customers["CU-000005"]["load_id"] == LOAD_2
    assert customers["CU-000001"]["load_id"] == LOAD_1
    assert customers["CU-999999"]["load_id"] is None
    # The second load's late version of CU-000004 and CU-000003's losing re-delivery leave
    # their current versions (and rows) as they were.
    for cid, city in (("CU-000004", "Tver"), ("CU-000003", "Omsk")):
        assert customers[cid] == first_customers[cid]
        assert (customers[cid]["city"], customers[cid]["load_id"]) == (city, LOAD_1)
    assert customers["CU-000001"]["registered_date"] == dt.date(2024, 3, 2)
    assert not any(
        "email" in k and "hash" not in k and "masked" not in k for k in customers["CU-000001"]
    )
    sales = raw_data.sales_for(2)
    assert {s.store_id for s in sales} <= set(stores)
    assert {s.product_id for s in sales} <= set(products)


def test_type_2_history_and_snapshots(warehouse: Warehouse) -> None:
    """The customer with three versions has a bounded three-row history; the snapshot kept
    the change of CU-000002 between the two runs."""
    history = warehouse.query(
        "select city, valid_from, valid_to, is_current from intermediate.int_customers_historized"
        " where customer_id = 'CU-000001' order by valid_from"
    )
    assert [h[0] for h in history] == ["Kazan", "Moscow", "Perm"]
    assert [h[3] for h in history] == [False, False, True]
    assert history[0][2] == history[1][1] and history[1][2] == history[2][1]
    assert history[2][2] is None
    late = warehouse.query(
        "select city, is_current from intermediate.int_customers_historized"
        " where customer_id = 'CU-000004' order by valid_from"
    )
    assert late == [("Tambov", False), ("Tver", True)]
    snapshot = warehouse.query(
        "select city, dbt_valid_to is null from snapshots.snap_customers"
        " where customer_id = 'CU-000002' order by dbt_valid_from"
    )
    assert snapshot == [("Sochi", False), ("Yalta", True)]
    assert warehouse.query("select count(*) from snapshots.snap_stores")[0][0] == 5
    n_customers = len({row[0] for row, _ in CUSTOMERS_2})
    assert (
        warehouse.query("select count(*) from snapshots.snap_customers where dbt_valid_to is null")[
            0
        ][0]
        == n_customers
    )
    # The second build's snapshot read only the versions of newer loads, and still holds
    # exactly the current versions as its current rows.
    compiled = {
        step: next(
            r["compiled_code"]
            for r in warehouse.run_results[step]["results"]
            if r["unique_id"] == "snapshot.retail_elt.snap_customers"
        )
        for step in ("build_1", "build_2")
    }
    assert "snapshotted.load_id" in compiled["build_2"]
    assert "snapshotted.load_id" not in compiled["build_1"]
    current = "select customer_id, city, load_id from {} order by customer_id"
    assert warehouse.query(
        current.format("snapshots.snap_customers where dbt_valid_to is null")
    ) == warehouse.query(current.format("intermediate.int_customers_filtered_to_current"))


def test_store_performance_and_kpis(warehouse: Warehouse) -> None:
    """Store count, totals, ranks and shares by store; the one-row KPI overview."""
    sales = raw_data.sales_for(2)
    by_store = _totals(sales, lambda s: s.store_id)
    performance = {r["store_id"]: r for r in warehouse.mart("build_2", "store_performance")}
    for store_id, (n, units, revenue) in by_store.items():
        assert (
            performance[store_id]["n_sales"],
            performance[store_id]["units"],
            performance[store_id]["revenue"],
        ) == (n, units, revenue)
    revenues = {s: performance[s]["revenue"] for s in performance}
    assert {s: r["revenue_rank"] for s, r in performance.items()} == _rank(revenues)
    north = [s for s, region in STORE_REGIONS.items() if region == "North"]
    north_revenue = sum(by_store.get(s, (0, 0, Decimal(0)))[2] for s in north)
    for s in north:
        assert performance[s]["revenue_share_in_region"] == pytest.approx(
            float(by_store.get(s, (0, 0, Decimal(0)))[2] / north_revenue)
        )
    [kpi] = warehouse.mart("build_2", "kpi_overview")
    assert kpi["n_stores"] == len(STORE_REGIONS) == 5
    assert kpi["n_products"] == len(PRODUCT_NAMES)
    assert kpi["n_sales"] == len(sales)
    assert kpi["units"] == sum(s.quantity for s in sales)
    assert kpi["revenue"] == sum(s.amount for s in sales)
    assert kpi["first_sale_date"] == min(s.sale_date for s in sales)
    assert kpi["last_imported_at"] == LOADED_AT[LOAD_2]


def test_customer_cohorts_and_activity(warehouse: Warehouse) -> None:
    """Cohorts by first-purchase month, retention, new/returning customers, anonymous sales,
    after the first build and after the incremental one."""
    for step, state in (("build_1", 1), ("build_2", 2)):
        sales = raw_data.sales_for(state)
        months: dict[str, set[dt.date]] = defaultdict(set)
        for s in sales:
            if s.customer_id:
                months[s.customer_id].add(s.sale_date.replace(day=1))
        cohort = {c: min(m) for c, m in months.items()}
        expected: dict[tuple, set[str]] = defaultdict(set)
        for c, ms in months.items():
            for m in ms:
                expected[(cohort[c], _months_between(cohort[c], m))].add(c)
        sizes = {k[0]: len(v) for k, v in expected.items() if k[1] == 0}
        actual = warehouse.mart(step, "customer_cohorts")
        assert [
            (r["cohort_month"], r["months_since_first"], r["cohort_size"], r["active_customers"])
            for r in actual
        ] == sorted((k[0], k[1], sizes[k[0]], len(v)) for k, v in expected.items()), step
        for r in actual:
            assert r["retention_rate"] == pytest.approx(r["active_customers"] / r["cohort_size"])
        activity = {r["sale_month"]: r for r in warehouse.mart(step, "customer_activity_monthly")}
        assert set(activity) == {s.sale_date.replace(day=1) for s in sales}
        for month, row in activity.items():
            buyers = {c for c, ms in months.items() if month in ms}
            assert row["anonymous_sales"] == sum(
                1 for s in sales if s.customer_id is None and s.sale_date.replace(day=1) == month
            )
            assert row["new_customers"] == sum(1 for c in buyers if cohort[c] == month)
            assert row["returning_customers"] == sum(1 for c in buyers if cohort[c] < month)


def test_data_quality_by_file(warehouse: Warehouse) -> None:
    """Ratios and alerts per file; only the dirty file alerts; the failed file is there."""
    rows = {r["file_name"]: r for r in warehouse.mart("build_2", "data_quality_by_file")}
    for name, _day, rows_in, valid, dup, sup, quar, status in raw_data.files_for(2):
        row = rows[name]
        assert (
            row["rows_in"],
            row["rows_valid"],
            row["rows_duplicate"],
            row["rows_superseded"],
            row["rows_quarantined"],
            row["status"],
        ) == (rows_in, valid, dup, sup, quar, status)
        assert row["duplicate_ratio"] == pytest.approx(dup / rows_in if rows_in else 0.0)
    assert {n for n, r in rows.items() if r["is_alert"]} == {raw_data.DIRTY_FILE}


def test_dim_dates_covers_the_sales(warehouse: Warehouse) -> None:
    """One row per day from the first to the last sale date, with calendar attributes."""
    days = warehouse.mart("build_2", "dim_dates")
    sales = raw_data.sales_for(2)
    first, last = min(s.sale_date for s in sales), max(s.sale_date for s in sales)
    assert [d["date_day"] for d in days] == [
        first + dt.timedelta(days=i) for i in range((last - first).days + 1)
    ]
    for d in days:
        assert d["day_of_week"] == d["date_day"].isoweekday()
        assert d["iso_week"] == d["date_day"].isocalendar().week
        assert d["is_weekend"] == (d["date_day"].isoweekday() >= 6)
        assert d["month_start"] == d["date_day"].replace(day=1)


def test_docs_describe_every_mart_and_tag_pii(duckdb_warehouse: Warehouse) -> None:
    """`dbt docs generate` works; every mart model and column is described; PII is tagged."""
    target = Path(duckdb_warehouse.env["DBT_TARGET_PATH"])
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    marts = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["schema"] == "marts"
    ]
    assert {n["name"] for n in marts} >= set(MARTS)
    for node in marts:
        assert node["description"].strip(), node["name"]
        catalog_columns = catalog["nodes"][node["unique_id"]]["columns"]
        for column in catalog_columns:
            assert node["columns"].get(column, {}).get("description", "").strip(), (
                node["name"],
                column,
            )
    customers = next(n for n in marts if n["name"] == "dim_customers")
    assert "pii" in customers["columns"]["email_hash"]["tags"]
    assert "pii" not in customers["columns"]["city"]["tags"]


def test_source_freshness_reads_the_dlt_load_time(duckdb_warehouse: Warehouse) -> None:
    """Freshness is measured on dlt's load time: the fixture's loads are months old, so the
    sources are reported stale (a warning: ELT_FRESHNESS_WARN_DAYS, 8 days by default), with
    the last load's time; every source has a result (the runs' selection needs them all)."""
    target = Path(duckdb_warehouse.env["DBT_TARGET_PATH"])
    sources = json.loads((target / "sources.json").read_text())["results"]
    by_table = {r["unique_id"].split(".")[-1]: r for r in sources if "sales" in r["unique_id"]}
    daily = by_table["daily_sales"]
    assert daily["status"] == "warn"
    assert daily["criteria"]["warn_after"] == {"count": 8, "period": "day"}
    assert not daily["criteria"]["error_after"].get("count")
    assert len(sources) == 11 and {r["status"] for r in sources} <= {"pass", "warn"}
    loaded = dt.datetime.fromisoformat(daily["max_loaded_at"].replace("Z", "+00:00"))
    assert abs(loaded.timestamp() - float(LOAD_2)) < 1


def test_manifest_checks_accept_the_marts_and_catch_a_wrong_figure(warehouse: Warehouse) -> None:
    """The helper the end-to-end tests use against the generator's manifest: it accepts a
    manifest built from the fixture's sales and fails on one wrong figure."""
    from tests.dbt.manifest_checks import assert_marts_match_manifest

    sales = raw_data.sales_for(2)
    by_region_product = [
        {"region": r, "product_id": p, "n_sales": n, "units": u, "revenue": f"{rev:.2f}"}
        for (r, p), (n, u, rev) in _totals(sales, lambda s: (s.region, s.product_id)).items()
    ]
    manifest = {
        "by_region_product": by_region_product,
        "by_sale_date": [
            {"sale_date": d.isoformat(), "n_sales": n, "units": u, "revenue": f"{rev:.2f}"}
            for d, (n, u, rev) in _totals(sales, lambda s: s.sale_date).items()
        ],
        "totals": {
            "n_sales": len(sales),
            "units": sum(s.quantity for s in sales),
            "revenue": f"{sum(s.amount for s in sales):.2f}",
        },
        "files": {
            name: {
                "rows_in": i,
                "rows_valid": v,
                "rows_duplicate": d,
                "rows_superseded": s,
                "rows_quarantined": q,
            }
            for name, _day, i, v, d, s, q, _status in raw_data.files_for(2)
        },
    }
    assert_marts_match_manifest(warehouse.query, manifest, n_stores=len(STORE_REGIONS))
    by_region_product[0]["revenue"] = f"{Decimal(by_region_product[0]['revenue']) + 1:.2f}"
    with pytest.raises(AssertionError):
        assert_marts_match_manifest(warehouse.query, manifest, n_stores=len(STORE_REGIONS))


# Contract §7: the public interface, columns first and in this order.
INTERFACE = {
    "fct_daily_sales": "sale_date store_id product_id region n_sales units revenue",
    "sales_by_region_product": "region product_id product_name category n_sales units revenue"
    " avg_sale_amount revenue_rank_in_region revenue_share_in_region",
    "dim_stores": "store_id store_name format region city",
    "dim_products": "product_id product_name category brand unit_price",
    "dim_customers": "customer_id email_hash phone_hash gender city home_store_id registered_at",
    "data_quality_by_file": "file_name rows_in rows_valid rows_duplicate rows_superseded"
    " rows_quarantined duplicate_ratio is_alert",
}


def _mart_columns(warehouse: Warehouse, name: str) -> list[str]:
    """The columns of ``marts.<name>``, in order."""
    return [
        row[0]
        for row in warehouse.query(
            "select column_name from information_schema.columns where table_schema = 'marts'"
            f" and table_name = '{name}' order by ordinal_position"
        )
    ]


def test_interface_relations_have_the_contract_columns(warehouse: Warehouse) -> None:
    """Every relation of contract §7 is in schema marts with its columns, in order."""
    for name, columns in INTERFACE.items():
        actual = _mart_columns(warehouse, name)
        assert actual[: len(columns.split())] == columns.split(), name
    schemas = {
        row[0] for row in warehouse.query("select schema_name from information_schema.schemata")
    }
    assert {"staging", "intermediate", "marts", "snapshots"} <= schemas


# A value each interface mart must refuse: (relation, column, value, constraint violated).
# These were data tests (not_null, positive_amount, accepted_values) before the contracted
# marts declared them as constraints, which the warehouse enforces on every write.
REFUSED_VALUES = [
    ("fct_daily_sales", "store_id", "null", "not null"),
    ("fct_daily_sales", "region", "'Nowhere'", "check"),
    ("fct_daily_sales", "revenue", "0", "check"),
    ("fct_daily_sales", "n_sales", "-1", "check"),
    ("sales_by_region_product", "units", "0", "check"),
    ("sales_by_region_product", "revenue_rank_in_region", "null", "not null"),
    ("dim_stores", "format", "'kiosk'", "check"),
    ("dim_stores", "is_unknown", "null", "not null"),
    ("dim_products", "unit_price", "-1", "check"),
    ("dim_products", "category", "null", "not null"),
    ("dim_customers", "gender", "'X'", "check"),
    ("dim_customers", "customer_id", "null", "not null"),
    ("data_quality_by_file", "status", "'lost'", "check"),
    ("data_quality_by_file", "rows_in", "null", "not null"),
]


def _error_of(warehouse: Warehouse, sql: str) -> str | None:
    """Run a statement in a transaction that is always rolled back: its error, or None."""
    if warehouse.target == "duckdb":
        import duckdb

        with duckdb.connect(warehouse.duckdb_path) as conn:
            conn.begin()
            try:
                conn.execute(sql)
            except duckdb.Error as exc:
                return str(exc)
            finally:
                conn.rollback()
        return None
    import psycopg2

    conn = psycopg2.connect(warehouse.postgres_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except psycopg2.Error as exc:
        return str(exc)
    finally:
        conn.rollback()
        conn.close()
    return None


def _copy_with(relation: str, columns: list[str], column: str, value: str) -> str:
    """An insert of one row copied from the mart, with ``value`` (SQL) for ``column``."""
    picked = ", ".join(value if c == column else c for c in columns)
    return (
        f"insert into marts.{relation} ({', '.join(columns)}) "
        f"select {picked} from marts.{relation} limit 1"
    )


def test_interface_marts_refuse_what_their_constraints_forbid(warehouse: Warehouse) -> None:
    """The contracted marts carry their not-null and check constraints in the warehouse
    (created by dbt, also on the incremental fct_daily_sales): a row copied from the table
    with one forbidden value is refused, naming the kind of constraint, and the same copy
    with the column's own value is accepted (so the refusal is the constraint's). Each
    statement is rolled back."""
    for relation, column, value, kind in REFUSED_VALUES:
        columns = _mart_columns(warehouse, relation)
        assert column in columns, (relation, column)

        error = _error_of(warehouse, _copy_with(relation, columns, column, value))
        assert error is not None, (relation, column, value)
        assert kind in error.lower().replace("-", " "), (relation, column, error)
        own_value = _copy_with(relation, columns, column, column)
        assert _error_of(warehouse, own_value) is None, (relation, column)


def _test_results(warehouse: Warehouse, step: str) -> list[dict[str, Any]]:
    """The data tests' results of a dbt command (not its hooks')."""
    return [r for r in warehouse.run_results[step]["results"] if r["unique_id"].startswith("test.")]


def _execute(warehouse: Warehouse, sql: str) -> None:
    """Run a statement that changes data, committed."""
    if warehouse.target == "duckdb":
        import duckdb

        with duckdb.connect(warehouse.duckdb_path) as conn:
            conn.execute(sql)
        return
    import psycopg2

    conn = psycopg2.connect(warehouse.postgres_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def test_totals_reconcile_fails_on_the_one_measure_that_does_not_add_up(
    warehouse: Warehouse,
) -> None:
    """One reconciliation test per pair of relations compares every measure and returns a
    row per measure off by more than the tolerance (here units, not n_sales or revenue)."""
    key = warehouse.query(
        "select sale_date, store_id, product_id, region from marts.fct_daily_sales "
        "order by sale_date, store_id, product_id, region limit 1"
    )[0]
    where = (
        f"sale_date = '{key[0]}' and store_id = '{key[1]}' and product_id = '{key[2]}' "
        f"and region = '{key[3]}'"
    )
    _execute(warehouse, f"update marts.fct_daily_sales set units = units + 1 where {where}")
    try:
        warehouse.dbt(
            "reconcile",
            "test",
            "--select",
            "fct_daily_sales,test_name:totals_reconcile",
            check=False,
        )
    finally:
        _execute(warehouse, f"update marts.fct_daily_sales set units = units - 1 where {where}")
    results = {
        r["unique_id"].split(".")[2]: (r["status"], r["failures"])
        for r in _test_results(warehouse, "reconcile")
    }
    # Every pair with fct_daily_sales: those that compare units fail with one row (units),
    # the others pass.
    assert len(results) == 7, results
    with_units = {name for name in results if "units" in name}
    assert len(with_units) == 3, results  # to staging, fct_monthly_sales, by region and product
    assert {name: results[name] for name in with_units} == dict.fromkeys(with_units, ("fail", 1))
    assert {r for name, r in results.items() if name not in with_units} == {("pass", 0)}


@contextlib.contextmanager
def _rows_restored(warehouse: Warehouse, relation: str) -> Iterator[None]:
    """A table's rows, changed inside the block, are put back as they were after it."""
    kept = f"{relation}_kept"
    _execute(warehouse, f"create table {kept} as select * from {relation}")
    try:
        yield
    finally:
        _execute(
            warehouse,
            f"delete from {relation}; insert into {relation} select * from {kept}; "
            f"drop table {kept}",
        )


def test_column_rules_return_a_row_per_broken_rule(warehouse: Warehouse) -> None:
    """A model's single-column rules are one test (one query): it returns a row per broken
    rule with the column, the rule and how many rows break it; a null passes the value rules
    (as it passes dbt's accepted_values), only the not-null rules count it."""
    keys = warehouse.query(
        "select sale_month, region, store_id, product_id from marts.fct_monthly_sales "
        "order by sale_month, region, store_id, product_id limit 4"
    )
    where = [
        f"sale_month = '{k[0]}' and region = '{k[1]}' and store_id = '{k[2]}' "
        f"and product_id = '{k[3]}'"
        for k in keys
    ]
    with _rows_restored(warehouse, "marts.fct_monthly_sales"):
        _execute(warehouse, f"update marts.fct_monthly_sales set category = null where {where[0]}")
        for clause in where[1:3]:
            _execute(
                warehouse, f"update marts.fct_monthly_sales set region = 'Atlantis' where {clause}"
            )
        _execute(warehouse, f"update marts.fct_monthly_sales set region = null where {where[3]}")
        warehouse.dbt(
            "column_rules", "test", "--select", "column_rules_fct_monthly_sales", check=False
        )
        (result,) = _test_results(warehouse, "column_rules")
        assert (result["status"], result["failures"]) == ("fail", 3), result["message"]
        broken = sorted(warehouse.query(result["compiled_code"]))
    # the null region counts once, as a null (not as a value outside the list)
    assert broken == [
        ("category", "not null", 1),
        ("region", "not null", 1),
        ("region", "one of North, South, East, West", 2),
    ]
    warehouse.dbt("column_rules_again", "test", "--select", "column_rules_fct_monthly_sales")

    # unique: the rows beyond the first of each repeated value (a null repeats nothing)
    activity = "marts.customer_activity_monthly"
    with _rows_restored(warehouse, activity):
        _execute(
            warehouse,
            f"insert into {activity} select * from {activity} "
            f"where sale_month = (select min(sale_month) from {activity}); "
            f"insert into {activity} select * from {activity} "
            f"where sale_month = (select max(sale_month) from {activity}); "
            f"insert into {activity} select * from {activity} "
            f"where sale_month = (select max(sale_month) from {activity})",
        )
        warehouse.dbt(
            "column_rules_unique",
            "test",
            "--select",
            "column_rules_customer_activity_monthly",
            check=False,
        )
        (result,) = _test_results(warehouse, "column_rules_unique")
        broken = warehouse.query(result["compiled_code"])
    assert (result["status"], broken) == ("fail", [("sale_month", "unique", 4)])


#: The uniqueness tests limited to new partitions: their watermark key, relation and load id.
WATERMARKED = {
    "stg_sales__daily_sales:sale_date,store_id,product_id,region": (
        "staging.stg_sales__daily_sales",
        "load_id",
    ),
    "stg_sales__customer_months:customer_id,sale_month": (
        "staging.stg_sales__customer_months",
        "load_id",
    ),
    "fct_daily_sales:sale_date,store_id,product_id,region": (
        "marts.fct_daily_sales",
        "source_load_id",
    ),
}


def test_uniqueness_tests_check_the_partitions_loaded_since_they_last_passed(
    warehouse: Warehouse,
) -> None:
    """The daily and monthly sales' uniqueness tests check only the partitions holding rows of
    loads newer than the last load they passed on (their keys hold the partition column, so a
    key can only repeat within a partition): each passing run records that load id; a row of a
    newer load repeating a key of an older one in its partition fails the test, a partition
    with no newer row is not read again, and a full refresh checks every row."""
    schema = "main" if warehouse.target == "duckdb" else "public"

    def marks() -> dict[str, str]:
        return dict(
            warehouse.query(f"select test_key, passed_through from {schema}.elt_test_watermarks")
        )

    def record_marks(step: str) -> None:
        warehouse.dbt(
            step,
            "test",
            "--select",
            "test_name:unique_combination",
            "--exclude-resource-type",
            "unit_test",
        )

    newest = {
        key: warehouse.query(f"select max({column}) from {relation}")[0][0]
        for key, (relation, column) in WATERMARKED.items()
    }
    # The story ends with `dbt run --full-refresh`, which rebuilt the incremental models and
    # tested nothing: it left no watermark, so the next test run reads every row.
    assert marks() == {}
    record_marks("watermarks")
    assert marks() == newest

    fct = "fct_daily_sales:sale_date,store_id,product_id,region"
    first, second = (
        warehouse.query(
            "select sale_date, store_id, product_id, region from marts.fct_daily_sales "
            f"order by sale_date {order}, store_id, product_id, region limit 1"
        )[0]
        for order in ("asc", "desc")
    )
    assert first[0] != second[0]  # two partitions (sale dates)

    def repeat(key: tuple, load_id: str) -> None:
        _execute(
            warehouse,
            "insert into marts.fct_daily_sales (sale_date, store_id, product_id, region, n_sales, "
            "units, revenue, source_load_id) select sale_date, store_id, product_id, region, "
            f"999999, units, revenue, '{load_id}' from marts.fct_daily_sales where sale_date = "
            f"'{key[0]}' and store_id = '{key[1]}' and product_id = '{key[2]}' and region = "
            f"'{key[3]}' and n_sales <> 999999",
        )

    def failures(step: str, *flags: str) -> int:
        warehouse.dbt(
            step,
            "build",
            *flags,
            "--select",
            "fct_daily_sales,test_name:unique_combination",
            "--exclude-resource-type",
            "unit_test",
            check=False,
        )
        (result,) = _test_results(warehouse, step)
        return result["failures"]

    try:
        repeat(first, newest[fct])  # in a partition with no newer row: not read
        # a row of a newer load next to the row an older load left in its partition
        repeat(second, "9999999999.5")
        assert failures("since_last_pass") == 1
        assert failures("every_partition", "--full-refresh") == 2
        # A full refresh forgets the watermarks: the next runs test everything again.
        assert marks() == {}
    finally:
        _execute(warehouse, "delete from marts.fct_daily_sales where n_sales = 999999")
    record_marks("watermarks_again")
    assert marks() == newest

    # fct_daily_sales built from scratch without --full-refresh (its table gone): its rows
    # may carry older load ids than the watermark, which its post-hook forgets.
    _execute(warehouse, "alter table marts.fct_daily_sales rename to fct_daily_sales_kept")
    try:
        warehouse.dbt("from_scratch", "run", "--select", "fct_daily_sales")
        assert marks() == {key: mark for key, mark in newest.items() if key != fct}
    finally:
        _execute(
            warehouse,
            "drop table if exists marts.fct_daily_sales; "
            "alter table marts.fct_daily_sales_kept rename to fct_daily_sales",
        )
    record_marks("watermarks_at_last")
    assert marks() == newest
