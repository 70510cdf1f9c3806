"""Pseudonymization of personal data (contract §6), applied in the stream before any write.

Every personal field ``f`` is replaced by two fields: ``f_hash``, the hex HMAC-SHA256 under the
secret key of the field's normalized value, and ``f_masked``, a display form that reveals
little. The plain field is removed. Normalization rules (``docs/interfaces.md``):

- email: ``strip().lower()``; masked ``a***@mail.ru``
- phone: digits only, an 11-digit number starting with 8 becomes 7...; masked
  ``+7 *** ***-**-89``
- name: ``strip()`` with inner whitespace collapsed, case kept; casefolded before hashing;
  masked ``S***``

A value that is null, not text, or empty after normalization gives a null hash and a null mask.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

PiiKind = Literal["email", "phone", "name"]

_WHITESPACE = re.compile(r"\s+")
_NON_DIGITS = re.compile(r"\D+")

#: Personal fields of a customer record: field name -> kind.
CUSTOMER_PII_FIELDS: Mapping[str, PiiKind] = {
    "email": "email",
    "phone": "phone",
    "last_name": "name",
}

#: Personal fields of the ``manager`` object of a store document: field name -> kind.
STORE_MANAGER_PII_FIELDS: Mapping[str, PiiKind] = {
    "name": "name",
    "phone": "phone",
    "email": "email",
}


class MissingPiiKeyError(ValueError):
    """Raised when pseudonymization is asked for without a key."""


def require_key(key: str | None) -> bytes:
    """Check the PII key and return it as bytes.

    Args:
        key: the secret key (``PII_HASH_KEY``).

    Returns:
        The key encoded as UTF-8.

    Raises:
        MissingPiiKeyError: when the key is missing or empty.
    """
    if not key or not str(key).strip():
        raise MissingPiiKeyError(
            "pii_key is empty: personal data cannot be pseudonymized. Pass the PII_HASH_KEY "
            "setting (the settings module supplies the demo key only when ELT_DEMO is on)."
        )
    return str(key).encode("utf-8")


def normalize_email(value: str) -> str:
    """Normalize an email address: trimmed and lower-cased.

    Args:
        value: the email as delivered.

    Returns:
        The normalized email (may be empty).
    """
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    """Normalize a phone number: its digits, a leading 8 of an 11-digit number read as 7.

    Args:
        value: the phone number as delivered, e.g. ``8 (912) 345-67-89``.

    Returns:
        The digits, e.g. ``79123456789`` (may be empty).
    """
    digits = _NON_DIGITS.sub("", value)
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return digits


def normalize_name(value: str) -> str:
    """Normalize a name: trimmed, inner whitespace collapsed to one space, case kept.

    Args:
        value: the name as delivered.

    Returns:
        The normalized name (may be empty). Hashing casefolds it.
    """
    return _WHITESPACE.sub(" ", value.strip())


def mask_email(normalized: str) -> str:
    """Mask a normalized email: first character of the local part, then ``***@domain``.

    Args:
        normalized: the output of :func:`normalize_email`.

    Returns:
        e.g. ``a***@mail.ru``.
    """
    local, at, domain = normalized.partition("@")
    return f"{local[:1]}***{at}{domain}"


def mask_phone(normalized: str) -> str:
    """Mask normalized phone digits: country code and the last two digits are kept.

    Args:
        normalized: the output of :func:`normalize_phone`.

    Returns:
        e.g. ``+7 *** ***-**-89``; ``***-**-89`` when there is no country code.
    """
    if len(normalized) < 4:
        return "***"
    tail = normalized[-2:]
    if len(normalized) > 10:
        return f"+{normalized[:-10]} *** ***-**-{tail}"
    return f"***-**-{tail}"


def mask_name(normalized: str) -> str:
    """Mask a normalized name: its first character and ``***``.

    Args:
        normalized: the output of :func:`normalize_name`.

    Returns:
        e.g. ``S***``.
    """
    return f"{normalized[:1]}***"


_NORMALIZERS: Mapping[PiiKind, Callable[[str], str]] = {
    "email": normalize_email,
    "phone": normalize_phone,
    "name": normalize_name,
}
_MASKS: Mapping[PiiKind, Callable[[str], str]] = {
    "email": mask_email,
    "phone": mask_phone,
    "name": mask_name,
}


def keyed_hash(normalized: str, key: bytes) -> str:
    """HMAC-SHA256 of a normalized value under the key, as hex.

    Args:
        normalized: the normalized value.
        key: the secret key as bytes (see :func:`require_key`).

    Returns:
        64 hex characters.
    """
    return hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymize(value: Any, kind: PiiKind, key: bytes) -> tuple[str | None, str | None]:
    """Hash and mask one personal value.

    Args:
        value: the value as delivered (``None`` and non-text values are treated as text or null).
        kind: ``email``, ``phone`` or ``name``.
        key: the secret key as bytes.

    Returns:
        ``(hash, masked)``, both ``None`` when the value is null or empty after normalization.
    """
    if value is None:
        return None, None
    normalized = _NORMALIZERS[kind](str(value))
    if not normalized:
        return None, None
    hashed_form = normalized.casefold() if kind == "name" else normalized
    return keyed_hash(hashed_form, key), _MASKS[kind](normalized)


def pseudonymize_fields(record: dict[str, Any], fields: Mapping[str, PiiKind], key: bytes) -> None:
    """Replace personal fields of a record, in place, by ``<f>_hash`` and ``<f>_masked``.

    Both output fields are always set (null when the input is null or missing), so every
    record has the same columns; the plain field is removed.

    Args:
        record: a JSON object (dict) as delivered.
        fields: personal field name -> kind.
        key: the secret key as bytes.
    """
    for field, kind in fields.items():
        hashed, masked = pseudonymize(record.pop(field, None), kind, key)
        record[f"{field}_hash"] = hashed
        record[f"{field}_masked"] = masked


_EMAIL_SHAPED = re.compile(r"[^@\s]+@[^@\s]+")
_PHONE_SHAPED = re.compile(r"[+\d\s().-]+")

#: Where the undeclared fields of a record go: one flat group of columns
#: (``undeclared__<field>_hash``, ``undeclared__<field>_masked``).
UNDECLARED_PREFIX = "undeclared__"


def _shape_of(text: str) -> PiiKind:
    """How to normalize and mask a value nobody declared: by what it looks like."""
    if _EMAIL_SHAPED.fullmatch(text.strip()):
        return "email"
    if _PHONE_SHAPED.fullmatch(text) and len(_NON_DIGITS.sub("", text)) >= 7:
        return "phone"
    return "name"


def pseudonymize_undeclared(
    record: dict[str, Any], declared: Mapping[str, Any], key: bytes
) -> list[str]:
    """Replace, in place, every field the contract does not name by its hash and mask.

    A delivery may carry fields nobody declared (``Email``, ``mobile_phone``, ``notes``,
    ``manager.email2``), and whether one holds personal data cannot be known from its name.
    So none is written as delivered: each becomes ``undeclared__<path>_hash`` (the keyed hash
    of its normalized text) and ``undeclared__<path>_masked`` at the record's top level,
    normalized and masked as an e-mail when it looks like one, as a phone number when it looks
    like one, and as a name otherwise. Objects and lists are hashed as their JSON text. Null
    values give no columns.

    Args:
        record: a JSON object as delivered.
        declared: the contract's fields; a nested object maps to its own fields.
        key: the secret key as bytes.

    Returns:
        The undeclared fields' paths (``manager.email2``), for the run's report.
    """
    found: list[str] = []
    _replace_undeclared(record, declared, key, "", record, found)
    return found


def _replace_undeclared(
    obj: dict[str, Any],
    declared: Mapping[str, Any],
    key: bytes,
    path: str,
    sink: dict[str, Any],
    found: list[str],
) -> None:
    for name in list(obj):
        value = obj[name]
        if name in declared:
            nested = declared[name]
            if isinstance(nested, Mapping) and isinstance(value, dict):
                _replace_undeclared(value, nested, key, f"{path}{name}.", sink, found)
            continue
        del obj[name]
        found.append(f"{path}{name}")
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        hashed, masked = pseudonymize(text, _shape_of(text), key)
        column = UNDECLARED_PREFIX + f"{path}{name}".replace(".", "__")
        sink[f"{column}_hash"] = hashed
        sink[f"{column}_masked"] = masked
