"""Parse the shop's JSON documents (stores, products, customers) and pseudonymize them.

Documents are small, nested JSON: they stay Python objects so that dlt normalizes them its
way (``address__street``, ``manager__phone_hash``). Personal data is replaced here, before
the records leave the reader.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Literal

from .pii import (
    CUSTOMER_PII_FIELDS,
    STORE_MANAGER_PII_FIELDS,
    pseudonymize_fields,
    pseudonymize_undeclared,
)
from .sales_csv import FileLimits, UnreadableFileError, decompress

DocumentKind = Literal["stores", "products", "customers"]

#: The identifying field of each document kind.
ID_FIELDS: dict[str, str] = {
    "stores": "store_id",
    "products": "product_id",
    "customers": "customer_id",
}


def _decode(data: bytes, file_name: str, limits: FileLimits | None) -> str:
    text = decompress(data, file_name, limits)
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"not_utf8: {exc}") from exc


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(f"invalid_json: {where}: {exc}") from exc


def _check_object(obj: Any, kind: str, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UnreadableFileError(f"invalid_json: {where}: expected a JSON object")
    id_field = ID_FIELDS[kind]
    value = obj.get(id_field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UnreadableFileError(f"missing_id: {where}: no {id_field}")
    return obj


#: The fields the contract (§2) names, per kind; a nested object maps to its own fields. Any
#: other field is kept only pseudonymized (see :func:`pseudonymize_undeclared`).
DECLARED_FIELDS: dict[str, dict[str, Any]] = {
    "stores": {
        "store_id": None,
        "name": None,
        "format": None,
        "region": None,
        "city": None,
        "address": {"street": None, "postcode": None},
        "opened_on": None,
        "manager": {"name": None, "phone": None, "email": None},
        "updated_at": None,
    },
    "products": dict.fromkeys(
        [
            "product_id",
            "name",
            "category",
            "brand",
            "supplier",
            "unit_price",
            "currency",
            "updated_at",
        ]
    ),
    "customers": dict.fromkeys(
        [
            "customer_id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "birth_date",
            "gender",
            "city",
            "home_store_id",
            "registered_at",
            "updated_at",
        ]
    ),
}


def _pseudonymize(record: dict[str, Any], kind: str, key: bytes, undeclared: set[str]) -> None:
    undeclared.update(pseudonymize_undeclared(record, DECLARED_FIELDS[kind], key))
    if kind == "customers":
        pseudonymize_fields(record, CUSTOMER_PII_FIELDS, key)
    elif kind == "stores":
        manager = record.get("manager")
        if manager is None:
            manager = {}
        if not isinstance(manager, dict):
            raise UnreadableFileError("invalid_json: manager is not an object")
        pseudonymize_fields(manager, STORE_MANAGER_PII_FIELDS, key)
        record["manager"] = manager


def parse_documents(
    data: bytes,
    *,
    kind: DocumentKind,
    file_name: str,
    file_modified_at: dt.datetime,
    key: bytes,
    undeclared: set[str] | None = None,
    limits: FileLimits | None = None,
) -> list[dict[str, Any]]:
    """Parse a document file into pseudonymized records with their lineage.

    Stores and products are one JSON document per file; customers are JSON Lines (blank lines
    are skipped). The file is parsed completely before anything is returned, so a file with one
    bad document is rejected whole.

    Args:
        data: the file's bytes.
        kind: ``stores``, ``products`` or ``customers``.
        file_name: path relative to the drop.
        file_modified_at: the version's modification time (timezone-aware).
        key: the PII key as bytes.
        undeclared: collects the names of the fields the contract does not name (kept only
            pseudonymized, as ``undeclared__<field>_hash`` and ``..._masked``).
        limits: what one file may cost (default :class:`FileLimits`).

    Returns:
        The records, each with ``_file_name``, ``_file_modified_at`` and ``_line_number``
        (1 for a document), personal fields replaced by ``*_hash`` and ``*_masked``.

    Raises:
        UnreadableFileError: not UTF-8, invalid JSON, not an object, or no id.
    """
    text = _decode(data, file_name, limits)
    numbered: list[tuple[int, dict[str, Any]]] = []
    if kind == "customers":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            numbered.append((number, _check_object(_loads(line, where), kind, where)))
    else:
        numbered.append((1, _check_object(_loads(text, "document"), kind, "document")))
    for number, record in numbered:
        _pseudonymize(record, kind, key, undeclared if undeclared is not None else set())
        record["_line_number"] = number
        record["_file_name"] = file_name
        record["_file_modified_at"] = file_modified_at
    return [record for _, record in numbered]
