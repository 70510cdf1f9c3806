"""Unit tests of the pseudonymization rules (contract §6, docs/interfaces.md)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ingestion.pii import (
    CUSTOMER_PII_FIELDS,
    MissingPiiKeyError,
    mask_email,
    mask_name,
    mask_phone,
    normalize_email,
    normalize_name,
    normalize_phone,
    pseudonymize,
    pseudonymize_fields,
    require_key,
)

KEY = require_key("test-key")


def test_normalization_rules() -> None:
    assert normalize_email("  Anna.Smirnova@Mail.RU ") == "anna.smirnova@mail.ru"
    assert normalize_phone("8 (912) 345-67-89") == "79123456789"
    assert normalize_phone("+7 912 345 67 89") == "79123456789"
    # only an 11-digit number starting with 8 is rewritten
    assert normalize_phone("8 912 345") == "8912345"
    assert normalize_name("  Anna \t  Maria  Smirnova ") == "Anna Maria Smirnova"


def test_hash_is_hmac_sha256_of_the_normalized_value() -> None:
    expected = hmac.new(b"test-key", b"79123456789", hashlib.sha256).hexdigest()
    assert pseudonymize("8 (912) 345-67-89", "phone", KEY)[0] == expected
    expected_email = hmac.new(b"test-key", b"a.b@mail.ru", hashlib.sha256).hexdigest()
    assert pseudonymize(" A.B@Mail.ru ", "email", KEY)[0] == expected_email


def test_same_person_twice_gets_the_same_hash() -> None:
    assert pseudonymize("8 (912) 345-67-89", "phone", KEY) == pseudonymize(
        "+7 912 345 67 89", "phone", KEY
    )
    assert (
        pseudonymize("Anna.Smirnova@Mail.ru ", "email", KEY)[0]
        == pseudonymize("anna.smirnova@mail.ru", "email", KEY)[0]
    )
    # names are hashed casefolded, masked with their case
    assert pseudonymize(" SMIRNOVA", "name", KEY)[0] == pseudonymize("smirnova ", "name", KEY)[0]


def test_different_people_and_keys_hash_differently() -> None:
    assert pseudonymize("Smirnova", "name", KEY)[0] != pseudonymize("Smirnov", "name", KEY)[0]
    other = require_key("another-key")
    assert pseudonymize("Smirnova", "name", KEY)[0] != pseudonymize("Smirnova", "name", other)[0]


def test_masks() -> None:
    assert mask_email(normalize_email("Anna.Smirnova@Mail.ru ")) == "a***@mail.ru"
    assert mask_phone(normalize_phone("8 (912) 345-67-89")) == "+7 *** ***-**-89"
    assert mask_name(normalize_name(" smirnova")) == "s***"
    assert pseudonymize("Smirnova", "name", KEY)[1] == "S***"


def test_null_and_empty_values_give_nulls() -> None:
    assert pseudonymize(None, "email", KEY) == (None, None)
    assert pseudonymize("   ", "email", KEY) == (None, None)
    assert pseudonymize("n/a", "phone", KEY) == (None, None)


def test_pseudonymize_fields_removes_the_plain_fields() -> None:
    record = {"customer_id": "CU-1", "email": "X@y.ru", "last_name": "Smirnova"}
    pseudonymize_fields(record, CUSTOMER_PII_FIELDS, KEY)
    assert "email" not in record and "last_name" not in record and "phone" not in record
    assert record["email_masked"] == "x***@y.ru"
    assert record["phone_hash"] is None and record["phone_masked"] is None
    assert len(record["last_name_hash"]) == 64


@pytest.mark.parametrize("key", ["", "   ", None])
def test_an_empty_key_is_refused(key: str | None) -> None:
    with pytest.raises(MissingPiiKeyError):
        require_key(key)
