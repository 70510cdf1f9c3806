"""The aggregates' exact sums: ``daily_sales`` and ``customer_monthly`` are sums of the valid
rows per group, kept exact (``n``, ``units``, ``amount_e4`` in 1/10,000), so a partition can be
updated by difference: its file's sums plus what a run added, minus what it removed."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dask_preprocess.arrays import MONEY, TS_UTC, money_array

DAILY_SCHEMA = pa.schema(
    [
        ("sale_date", pa.date32()),
        ("store_id", pa.string()),
        ("product_id", pa.string()),
        ("region", pa.string()),
        ("n_sales", pa.int64()),
        ("units", pa.int64()),
        ("revenue", MONEY),
        ("_revenue_e4", pa.int64()),
        ("_computed_at", TS_UTC),
    ]
)
CUSTOMER_MONTHLY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("sale_month", pa.date32()),
        ("n_sales", pa.int64()),
        ("units", pa.int64()),
        ("revenue", MONEY),
        ("_revenue_e4", pa.int64()),
        ("_computed_at", TS_UTC),
    ]
)
DAILY_GROUP = ["sale_date", "store_id", "product_id", "region"]
MONTHLY_GROUP = ["customer_id", "sale_month"]
DATE_COLUMNS = ("sale_date", "sale_month")  # day numbers in the state, dates in the outputs
MEASURES = ("n", "units", "amount_e4")  # the exact sums of an aggregate group


def sums_schema(schema: pa.Schema, group: list[str]) -> pa.Schema:
    """The exact sums an aggregate (``schema``) is written from: its group (dates as day
    numbers), ``n``, ``units`` and ``amount_e4`` (1/10,000). A partition file keeps them
    (``_revenue_e4``), so a later run can update it by difference."""
    return pa.schema(
        [
            *((c, pa.int32()) if c in DATE_COLUMNS else schema.field(c) for c in group),
            ("n", pa.int64()),
            ("units", pa.int64()),
            ("amount_e4", pa.int64()),
        ]
    )


DAILY_SUMS = sums_schema(DAILY_SCHEMA, DAILY_GROUP)
MONTHLY_SUMS = sums_schema(CUSTOMER_MONTHLY_SCHEMA, MONTHLY_GROUP)


def group_sums(rows: pa.Table, group: list[str], schema: pa.Schema) -> pa.Table:
    """Exact sums of state rows per group: ``n``, ``units``, ``amount_e4``."""
    sums = rows.group_by(group, use_threads=False).aggregate(
        [([], "count_all"), ("quantity", "sum"), ("amount_e4", "sum")]
    )
    return pa.table(
        {
            **{c: sums[c] for c in group},
            "n": sums["count_all"].cast(pa.int64()),
            "units": sums["quantity_sum"].cast(pa.int64()),
            "amount_e4": sums["amount_e4_sum"].cast(pa.int64()),
        },
        schema=schema,
    )


def aggregate_table(
    sums: pa.Table, computed_at: datetime, schema: pa.Schema, sort: list[tuple[str, ...]]
) -> pa.Table:
    """An aggregate partition's rows (``schema``) of its exact sums, sorted."""
    group = [c for c in sums.column_names if c not in MEASURES]
    return pa.table(
        {
            **{c: sums[c].cast(pa.date32()) if c in DATE_COLUMNS else sums[c] for c in group},
            "n_sales": sums["n"],
            "units": sums["units"],
            "revenue": money_array(sums["amount_e4"].to_numpy()),
            "_revenue_e4": sums["amount_e4"],
            "_computed_at": pa.repeat(pa.scalar(computed_at, TS_UTC), sums.num_rows),
        },
        schema=schema,
    ).sort_by(sort)


def sums_of_partition(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The exact sums an aggregate partition file was written from."""
    group = [c for c in schema.names if c not in MEASURES]
    return pa.table(
        {
            **{c: table[c].cast(pa.int32()) if c in DATE_COLUMNS else table[c] for c in group},
            "n": table["n_sales"],
            "units": table["units"],
            "amount_e4": table["_revenue_e4"],
        },
        schema=schema,
    )


def combined_sums(parts: list[pa.Table], group: list[str]) -> pa.Table:
    """The sums of several parts per group (a group missing from a part adds nothing)."""
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts)
    sums = table.group_by(group, use_threads=False).aggregate([(c, "sum") for c in MEASURES])
    return pa.table(
        {**{c: sums[c] for c in group}, **{c: sums[f"{c}_sum"] for c in MEASURES}}
    ).cast(table.schema)


def updated_sums(written: pa.Table, changes: pa.Table, group: list[str]) -> pa.Table:
    """``written`` (one row per group) plus ``changes``, as :func:`combined_sums` gives them
    (in another order), grouping again only the written rows a change may touch.

    A written row is touched only if each of its group columns holds a value of the changes'
    (nulls match nulls, like the grouping): a superset of the rows whose group changes, so
    the others are kept as they are. A new day changes a few hundred of the 200,000 customer
    rows of its month: grouping them all again was most of the aggregate step of a day.
    """
    if not changes.num_rows:
        return written
    touched = pa.array(np.ones(written.num_rows, dtype=bool))
    for c in group:
        values = pc.unique(changes[c])
        touched = pc.and_(touched, pc.is_in(written[c], value_set=values, skip_nulls=False))
    regrouped = combined_sums([written.filter(touched), changes], group)
    return pa.concat_tables([written.filter(pc.invert(touched)), regrouped])


def negated(sums: pa.Table) -> pa.Table:
    """Sums to subtract: the same groups with their counts and amounts negated."""
    for c in MEASURES:
        sums = sums.set_column(sums.schema.get_field_index(c), c, pc.negate(sums[c]))
    return sums


class Aggregate(NamedTuple):
    """One aggregate output: its zone, its group, its sums' and its file's schemas."""

    zone: str
    group: list[str]
    sums_schema: pa.Schema
    schema: pa.Schema
    sort: list[tuple[str, ...]]

    @property
    def columns(self) -> list[str]:
        """The state columns read (rows are counted, not their wide sale_id)."""
        return [*self.group, "quantity", "amount_e4"]

    def sums(self, rows: pa.Table) -> pa.Table:
        """The exact sums of state rows per group."""
        return group_sums(rows, self.group, self.sums_schema)

    def table(self, sums: pa.Table, computed_at: datetime) -> pa.Table:
        """The output rows of exact sums."""
        return aggregate_table(sums, computed_at, self.schema, self.sort)

    def sums_of_partition(self, table: pa.Table) -> pa.Table:
        """The exact sums a partition file of this aggregate was written from."""
        return sums_of_partition(table, self.sums_schema)


#: Per partition column: the zone it partitions and how its rows are computed.
AGGREGATES: dict[str, Aggregate] = {
    "sale_date": Aggregate(
        "daily_sales",
        DAILY_GROUP,
        DAILY_SUMS,
        DAILY_SCHEMA,
        [(c, "ascending") for c in DAILY_GROUP],
    ),
    "sale_month": Aggregate(
        "customer_monthly",
        MONTHLY_GROUP,
        MONTHLY_SUMS,
        CUSTOMER_MONTHLY_SCHEMA,
        [("sale_month", "ascending"), ("customer_id", "ascending", "at_start")],
    ),
}


def changes_of(added: pa.Table, removed: pa.Table) -> dict[str, pa.Table]:
    """Per partition column, what valid rows added and removed change its aggregate by: the
    sums of the added rows minus those of the removed ones, per group."""
    return {
        column: combined_sums([agg.sums(added), negated(agg.sums(removed))], agg.group)
        for column, agg in AGGREGATES.items()
    }
