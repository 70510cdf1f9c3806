"""The lake's ``raw/`` tables as the drop -> lake pipeline writes them: columns, keys, hints.

The load reads the same tables back (``shop_source``): the primary keys are the ones its merge
uses. Documents go to dlt as Arrow typed like these columns when they are flat
(:func:`documents_as_arrow`), or as dicts dlt normalizes row by row when they are not.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import dlt
import pyarrow as pa

_TS = {"data_type": "timestamp", "timezone": True}
_TEXT = {"data_type": "text"}
_LINEAGE_COLUMNS: dict[str, dict[str, Any]] = {
    "_file_name": {**_TEXT, "nullable": False},
    "_file_modified_at": {**_TS, "nullable": False},
    "_line_number": {"data_type": "bigint", "nullable": False},
}
_PII_TEXT = {**_TEXT, "nullable": True}

#: Column hints of the lake tables (dlt column schemas).
TABLE_COLUMNS: dict[str, dict[str, dict[str, Any]]] = {
    "stores": {
        "store_id": {**_TEXT, "nullable": False},
        "opened_on": {"data_type": "date"},
        "updated_at": {**_TS},
        **{
            f"manager__{f}_{suffix}": {**_PII_TEXT}
            for f in ("name", "phone", "email")
            for suffix in ("hash", "masked")
        },
        **_LINEAGE_COLUMNS,
    },
    "products": {
        "product_id": {**_TEXT, "nullable": False},
        "unit_price": {"data_type": "decimal"},
        "updated_at": {**_TS},
        **_LINEAGE_COLUMNS,
    },
    "customers": {
        "customer_id": {**_TEXT, "nullable": False},
        "first_name": {**_TEXT},
        "birth_date": {"data_type": "date"},
        "gender": {**_TEXT},
        "city": {**_TEXT},
        "home_store_id": {**_TEXT},
        "registered_at": {**_TS},
        "updated_at": {**_TS},
        **{
            f"{f}_{suffix}": {**_PII_TEXT}
            for f in ("email", "phone", "last_name")
            for suffix in ("hash", "masked")
        },
        **_LINEAGE_COLUMNS,
    },
    "delivered_files": {
        "file_name": {**_TEXT, "nullable": False},
        "kind": {**_TEXT, "nullable": False},
        "delivery_date": {"data_type": "date"},
        "file_modified_at": {**_TS, "nullable": False},
        "size_bytes": {"data_type": "bigint"},
        "status": {**_TEXT, "nullable": False},
        "failure_reason": {**_TEXT},
        "rows_read": {"data_type": "bigint", "nullable": False},
        "load_id": {**_TEXT, "nullable": False},
    },
}

#: Primary key of every version row of the shop documents (see docs/interfaces.md).
SHOP_PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "stores": ("store_id", "_file_name", "_file_modified_at", "_line_number"),
    "products": ("product_id", "_file_name", "_file_modified_at", "_line_number"),
    "customers": ("customer_id", "_file_name", "_file_modified_at", "_line_number"),
    "delivered_files": ("file_name", "file_modified_at"),
}


def table_hints(table: str) -> Any:
    """dlt's hints for a lake table: its columns and primary key, appended to."""
    primary_key = SHOP_PRIMARY_KEYS.get(table)
    return dlt.mark.make_hints(
        table_name=table,
        write_disposition="append",
        # dlt writes the column name into each column dict: give it its own copies
        columns=copy.deepcopy(TABLE_COLUMNS.get(table)),
        primary_key=list(primary_key) if primary_key else None,
    )


class TableHinter:
    """Dispatch items to their tables; each table's hints go to dlt with its first item only.

    dlt recomputes and re-validates a table's schema for every item that carries hints (about
    6 ms each); later items only name their table.
    """

    def __init__(self) -> None:
        self._sent: set[str] = set()

    def __call__(self, item: Any, hints: Any) -> Any:
        table = hints["table_name"]
        if table in self._sent:
            return dlt.mark.with_table_name(item, table)
        self._sent.add(table)
        return dlt.mark.with_hints(item, hints, create_table_variant=True)


def delivered_file_row(
    file_name: str,
    kind: str,
    *,
    delivery_date: dt.date | None,
    modified: dt.datetime,
    size_bytes: int | None,
    status: str,
    failure_reason: str | None,
    rows_read: int,
    load_id: str,
) -> dict[str, Any]:
    """One ``delivered_files`` row: a delivered file version and what became of it."""
    return {
        "file_name": file_name,
        "kind": kind,
        "delivery_date": delivery_date,
        "file_modified_at": modified,
        "size_bytes": size_bytes,
        "status": status,
        "failure_reason": failure_reason,
        "rows_read": rows_read,
        "load_id": load_id,
    }


_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bigint": pa.int64(),
}


def documents_as_arrow(records: list[dict[str, Any]], kind: str, load_id: str) -> pa.Table | None:
    """Flat documents as one Arrow table typed like the lake table, or None when not flat.

    The Arrow path skips dlt's row-by-row normalization (the customers are hundreds of
    thousands of rows). Documents with nested values, values that do not fit their column's
    type, or time stamps without an offset return None: they take dlt's own path, which
    flattens and coerces them.
    """
    known = TABLE_COLUMNS.get(kind, {})
    names: dict[str, None] = dict.fromkeys(known)
    for record in records:
        for name, value in record.items():
            if isinstance(value, (dict, list)):
                return None
            names.setdefault(name, None)
    fields, arrays = [], []
    try:
        for name in names:
            values = [r.get(name) for r in records]
            hint = known.get(name)
            if hint is None:  # a field the contract does not name: dlt would infer its type
                array = pa.array(values)
                if pa.types.is_null(array.type):
                    continue  # dlt creates no column for a field that is always null
                fields.append(pa.field(name, array.type))
            else:
                target = _ARROW_TYPES.get(hint["data_type"])
                if target is None:
                    return None
                if name == "_file_modified_at" or hint["data_type"] in ("text", "bigint"):
                    array = pa.array(values, target)
                else:  # ISO text from the document
                    array = pa.array(values, pa.string()).cast(target)
                fields.append(pa.field(name, target, nullable=hint.get("nullable", True)))
            arrays.append(array)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return None
    fields.append(pa.field("_dlt_load_id", pa.string(), nullable=False))
    arrays.append(pa.repeat(pa.scalar(load_id), len(records)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
