"""Tests of the source-data generator against the contract, with an independent reader."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import zlib
from collections import Counter
from pathlib import Path

import fsspec
import pytest

from generator import DirtyRates, append_days, generate_drop, manifest_url, read_manifest
from generator.vocab import LAST_NAMES, non_pii_texts
from tests.generator.contract_reader import (
    CUSTOMERS_NAME,
    HEADER,
    apply_rules,
    list_drop,
    parse_ts,
    read_jsonl,
    read_sales_file,
)
from tests.support.services import S3Server

REASONS = [
    "wrong_field_count",
    "empty_sale_id",
    "empty_store_id",
    "empty_product_id",
    "bad_sale_ts",
    "bad_quantity",
    "bad_unit_price",
    "bad_sale_amount",
    "amount_mismatch",
    "bad_region",
]
# Dirtier than the defaults, so that 3,000 rows show every case.
DIRTY = DirtyRates(
    **dict.fromkeys(REASONS, 0.004),
    bom_file=0.3,
    plain_csv_file=0.3,
    full_resend_days=(4,),
    corrupt_gzip_days=(6,),
    bad_header_days=(8,),
)
MSK = dt.timezone(dt.timedelta(hours=3))


@pytest.fixture(scope="module")
def small_drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("gen") / "drop"
    calls: list[tuple[int, int]] = []
    manifest = generate_drop(
        str(root), sales_rows=3000, days=10, rates=DIRTY, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (10, 10) and len(calls) == 10
    return root, manifest


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_documents_follow_the_contract(small_drop: tuple[Path, dict]) -> None:
    root, manifest = small_drop
    layout = list_drop(str(root))
    assert sorted(layout) == ["customers", "products", "sales", "stores"]
    assert Path(str(root) + ".manifest.json").is_file()  # beside the drop, not inside
    assert len(layout["stores"]) == 45
    assert all(re.fullmatch(r"store_ST-\d{3}\.json", n) for n in layout["stores"])
    assert all(re.fullmatch(r"product_PR-\d{4}\.json", n) for n in layout["products"])
    assert 60 <= len(layout["products"]) <= 150
    dates = [(dt.date(2026, 1, 1) + dt.timedelta(days=d)).isoformat() for d in range(10)]
    assert [CUSTOMERS_NAME.match(n).group(1) for n in layout["customers"]] == dates
    sales_dates = [re.match(r"sales_(.{10})\.csv(\.gz)?$", n).group(1) for n in layout["sales"]]
    assert sales_dates == dates
    assert {n.endswith(".gz") for n in layout["sales"]} == {True, False}  # both kinds

    stores = [json.loads((root / "stores" / n).read_text("utf-8")) for n in layout["stores"]]
    assert {s["region"] for s in stores} == {"North", "South", "East", "West"}
    assert {s["format"] for s in stores} <= {"hypermarket", "supermarket", "express"}
    for s in stores:
        assert list(s) == [
            "store_id", "name", "format", "region", "city", "address", "opened_on", "manager",
            "updated_at",
        ]  # fmt: skip
        assert re.search("[а-яА-Я]", s["name"])  # Cyrillic names
        assert set(s["address"]) == {"street", "postcode"} and re.fullmatch(
            r"\d{6}", s["address"]["postcode"]
        )
        assert set(s["manager"]) == {"name", "phone", "email"}
        dt.date.fromisoformat(s["opened_on"])
        assert dt.datetime.fromisoformat(s["updated_at"]).utcoffset() == dt.timedelta(hours=3)

    for n in layout["products"]:
        text = (root / "products" / n).read_text("utf-8")
        p = json.loads(text)
        assert list(p) == [
            "product_id", "name", "category", "brand", "supplier", "unit_price", "currency",
            "updated_at",
        ]  # fmt: skip
        assert p["currency"] == "RUB" and p["unit_price"] > 0
        assert re.search(r'"unit_price": \d+\.\d{2},', text)  # two decimals, as in the contract

    versions = [r for n in layout["customers"] for r in read_jsonl(str(root / "customers" / n))]
    ids = Counter(r["customer_id"] for r in versions)
    assert manifest["counts"] == {
        "stores": 45,
        "products": len(layout["products"]),
        "customers": len(ids),
        "customer_versions": len(versions),
    }
    home = Counter(r["home_store_id"] for r in versions)
    assert len(home) == 45  # at least one customer per store
    for r in versions:
        assert r["gender"] in ("F", "M", None)
        assert r["home_store_id"] in {s["store_id"] for s in stores}
        assert dt.datetime.fromisoformat(r["updated_at"]) > dt.datetime.fromisoformat(
            r["registered_at"]
        )
    assert any(r.get("email") is None for r in versions)
    assert any("city" not in r for r in versions)  # missing fields too
    emails = [r["email"] for r in versions if r.get("email")]
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    phones = [r["phone"] for r in versions if r.get("phone")]
    assert any(re.fullmatch(r"8 \(\d{3}\) \d{3}-\d{2}-\d{2}", p) for p in phones)
    assert any(re.fullmatch(r"\+7 \d{3} \d{3} \d{2} \d{2}", p) for p in phones)
    # Changed customers: a later version with a newer updated_at and another city/email/phone.
    changed = [c for c, n in ids.items() if n > 1]
    assert changed
    for c in changed:
        vs = [r for r in versions if r["customer_id"] == c]
        assert [dt.datetime.fromisoformat(v["updated_at"]) for v in vs] == sorted(
            dt.datetime.fromisoformat(v["updated_at"]) for v in vs
        )
        diff = {k for k in ("city", "email", "phone") if vs[0].get(k) != vs[-1].get(k)}
        assert diff


def test_sales_files_and_manifest_match_an_independent_reading(
    small_drop: tuple[Path, dict],
) -> None:
    root, manifest = small_drop
    files = [read_sales_file(str(root), n) for n in sorted(os.listdir(root / "sales"))]
    assert any(f.bom for f in files) and not all(f.bom for f in files)
    failures = {f.name: f.failure for f in files if not f.readable}
    assert failures == {
        "sales/sales_2026-01-07.csv.gz": "corrupt_gzip",
        next(n for n in (f.name for f in files) if "2026-01-09" in n): "bad_header",
    }
    truth = apply_rules(files, "Europe/Moscow")

    assert list(manifest["files"]) == [f.name for f in files]
    for name, got in manifest["files"].items():
        want = truth["files"][name]
        for key in (
            "rows_in", "rows_valid", "rows_duplicate", "rows_superseded", "rows_quarantined",
            "quarantined_by_reason", "valid_units", "valid_revenue", "readable",
        ):  # fmt: skip
            assert got[key] == want[key], (name, key)
        assert got["rows_in"] == (
            got["rows_valid"]
            + got["rows_duplicate"]
            + got["rows_superseded"]
            + got["rows_quarantined"]
        )
        if not got["readable"]:
            assert got["rows_in"] == 0 and got["failure"] == failures[name]
    totals = manifest["totals"]
    assert totals["n_sales"] == truth["n_sales"] == totals["rows_valid"]
    assert totals["units"] == truth["units"]
    assert totals["revenue"] == truth["revenue"]
    assert totals["rows_in"] == sum(f["rows_in"] for f in truth["files"].values())
    got_rp = {
        (r["region"], r["product_id"]): (r["n_sales"], r["units"], r["revenue"])
        for r in manifest["by_region_product"]
    }
    assert got_rp == truth["by_region_product"]
    got_day = {
        r["sale_date"]: (r["n_sales"], r["units"], r["revenue"]) for r in manifest["by_sale_date"]
    }
    assert got_day == truth["by_sale_date"]

    # Every reason code, every dirty and odd case of the contract is present.
    reasons = Counter()
    for f in manifest["files"].values():
        reasons.update(f["quarantined_by_reason"])
    assert set(reasons) == set(REASONS)
    records = [r for f in files for r in f.records]
    good = [r for r in records if len(r) == 9]
    ts = [r[1] for r in good]
    assert any(t.endswith("+03:00") for t in ts) and any(t.endswith("Z") for t in ts)
    assert any(re.fullmatch(r"[\d-]{10}T[\d:]{8}", t) for t in ts)  # no offset: UTC
    regions = {r[8] for r in good}
    assert {"North", "South", "East", "West"} <= regions
    assert any(x != x.strip() for x in regions) and any(x.isupper() for x in regions)
    assert any(r[3] == "" for r in good)  # anonymous
    store_ids = {json.loads(p.read_text("utf-8"))["store_id"] for p in (root / "stores").iterdir()}
    product_ids = {p.stem.removeprefix("product_") for p in (root / "products").iterdir()}
    valid = truth["valid_rows"]
    assert any(v[2] not in store_ids for _, v in valid)  # unknown stores count
    assert any(v[4] not in product_ids for _, v in valid)  # unknown products count
    assert any(abs(v[7] - v[5] * v[6]) == v[7].__class__("0.01") for _, v in valid)  # within 0.01
    # Sales around midnight: the Moscow date differs from the UTC date.
    assert any(v[1].astimezone(MSK).date() != v[1].astimezone(dt.UTC).date() for _, v in valid)
    assert sum(1 for _, v in valid if v[5] <= 3) > 0.85 * len(valid)  # mostly 1-3
    # Duplicates within and across files; corrections in later files, some moving the day.
    assert all(f["rows_duplicate"] > 0 for f in manifest["files"].values() if f["readable"])
    by_id: dict[str, list] = {}
    for name, v in truth["kept"]:
        by_id.setdefault(v[0], []).append((name, v))
    corrected = [vs for vs in by_id.values() if len({n for n, _ in vs}) > 1]
    assert corrected
    assert any(
        vs[0][1][1].astimezone(MSK).date() != vs[-1][1][1].astimezone(MSK).date()
        for vs in corrected
    )
    # A file covers mostly its own day and the day before.
    own = sum(
        1
        for name, v in valid
        if 0 <= (dt.date.fromisoformat(name[12:22]) - v[1].astimezone(MSK).date()).days <= 1
    )
    assert own > 0.9 * len(valid)
    # The re-sent delivery (day 4) is the only one over the alert ratio.
    ratios = {
        n: f["rows_duplicate"] / f["rows_in"] for n, f in manifest["files"].items() if f["rows_in"]
    }
    assert [n for n, r in ratios.items() if r > 0.5] == [
        next(n for n in ratios if "2026-01-05" in n)
    ]


def test_header_and_text_format(small_drop: tuple[Path, dict]) -> None:
    root, _ = small_drop
    for p in sorted((root / "sales").iterdir()):
        raw = p.read_bytes()
        if p.name.endswith(".gz"):
            if "2026-01-07" in p.name:  # the corrupt one: a gzip header, then garbage
                assert raw[:2] == b"\x1f\x8b"
                with pytest.raises((OSError, EOFError, zlib.error)):
                    gzip.decompress(raw)
                continue
            assert raw[3] & 0x08 == 0  # no file name in the gzip header
            assert raw[4:8] == b"\0\0\0\0"  # mtime 0
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8").removeprefix("\ufeff")
        first = text.split("\n", 1)[0]
        if "2026-01-09" in p.name:
            assert first != ",".join(HEADER)
        else:
            assert first == ",".join(HEADER)
        assert text.endswith("\n")


def test_pii_values_are_in_the_drop_and_last_names_nowhere_else(
    small_drop: tuple[Path, dict],
) -> None:
    root, manifest = small_drop
    pii = manifest["pii_values"]
    blob = "\n".join(p.read_text("utf-8") for p in root.rglob("*.json*"))
    for kind in ("emails", "phones", "last_names", "manager_names"):
        assert 0 < len(pii[kind]) <= 200
        for value in pii[kind]:
            assert value and value == value.strip() and value in blob, (kind, value)
    assert len(pii["phones"]) >= 45 + 100  # managers and customers
    # A last name found in the lake is a leak: it never appears inside non-personal text.
    last = set(LAST_NAMES) | {n + "a" for n in LAST_NAMES}
    for text in non_pii_texts():
        assert not any(n in text for n in last), text


def test_same_arguments_same_bytes_and_seed_changes_them(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ma = generate_drop(str(a), sales_rows=1500, days=6)
    mb = generate_drop(str(b), sales_rows=1500, days=6)
    fa, fb = _all_files(a), _all_files(b)
    assert fa == fb and ma == mb
    assert Path(manifest_url(str(a))).read_bytes() == Path(manifest_url(str(b))).read_bytes()
    # Re-running on the same drop rewrites nothing (modification times stay).
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    assert generate_drop(str(a), sales_rows=1500, days=6) == ma
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == mtimes
    mc = generate_drop(str(c), sales_rows=1500, days=6, seed=7)
    fc = _all_files(c)
    sales_a = {k: v for k, v in fa.items() if k.startswith("sales/")}
    sales_c = {k: v for k, v in fc.items() if k.startswith("sales/")}
    assert all(sales_a.get(k) != v for k, v in sales_c.items())
    assert mc["totals"] != ma["totals"]


def test_regenerating_a_shorter_drop_removes_its_extra_days(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    generate_drop(str(root), sales_rows=600, days=5)
    generate_drop(str(root), sales_rows=360, days=3)
    assert len(os.listdir(root / "sales")) == 3 and len(os.listdir(root / "customers")) == 3
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a drop")
    with pytest.raises(ValueError, match="no generator manifest"):
        generate_drop(str(foreign), sales_rows=300, days=2)


def test_append_days_equals_a_longer_generation(tmp_path: Path) -> None:
    rates = DirtyRates(full_resend_days=(4,))
    longer, appended = tmp_path / "longer", tmp_path / "appended"
    m15 = generate_drop(str(longer), sales_rows=4500, days=15, rates=rates)
    m10 = generate_drop(str(appended), sales_rows=3000, days=10, rates=rates)
    before = _all_files(appended)
    mtimes = {p: p.stat().st_mtime_ns for p in appended.rglob("*") if p.is_file()}
    seen: list[tuple[int, int]] = []
    m_app = append_days(str(appended), 5, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (15, 15)
    after = _all_files(appended)
    assert after == _all_files(longer)
    assert m_app == m15 == read_manifest(str(appended))
    # Earlier files are untouched; new days are added.
    assert all(after[k] == v for k, v in before.items())
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert len(after) == len(before) + 10

    # A correction delivered in a new day changes an older file's counts.
    def counts(m: dict, name: str) -> tuple[int, int]:
        return m["files"][name]["rows_valid"], m["files"][name]["rows_superseded"]

    changed = [n for n in m10["files"] if counts(m10, n) != counts(m_app, n)]
    assert changed
    for n in changed:
        assert m_app["files"][n]["rows_superseded"] > m10["files"][n]["rows_superseded"]


def test_generation_to_s3(s3: S3Server, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/drop"
    opts = s3.storage_options()
    manifest = generate_drop(url, sales_rows=400, days=3, storage_options=opts)
    assert manifest_url(url) == f"s3://{s3_bucket}/drop.manifest.json"
    fs = fsspec.filesystem("s3", **opts)
    assert fs.exists(f"{s3_bucket}/drop.manifest.json")
    assert read_manifest(url, storage_options=opts) == manifest
    names = fs.find(f"{s3_bucket}/drop")
    assert len([n for n in names if "/stores/" in n]) == 45
    assert len([n for n in names if "/sales/sales_" in n]) == 3
    # The bytes equal those of the same generation on a local disk.
    local = generate_drop("memory://gen-s3-compare/drop", sales_rows=400, days=3)
    assert local == manifest
    mem = fsspec.filesystem("memory")
    for n in (n for n in names if "/stores/" not in n and "/products/" not in n):
        rel = n.split("/drop/", 1)[1]
        assert fs.cat_file(n) == mem.cat_file(f"/gen-s3-compare/drop/{rel}")


@pytest.mark.slow
def test_demo_scale(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    manifest = generate_drop(str(root), unreadable_file=True)
    assert manifest["generator"]["scale"] == "demo" and manifest["generator"]["days"] == 90
    assert 45_000 <= manifest["totals"]["rows_in"] <= 56_000
    ratios = [
        f["rows_duplicate"] / f["rows_in"] for f in manifest["files"].values() if f["rows_in"]
    ]
    assert sum(r > 0.5 for r in ratios) == 1
    # one file a run cannot read, so the demo shows a whole-file quarantine
    unreadable = {n: f for n, f in manifest["files"].items() if not f["readable"]}
    assert list(unreadable) == ["sales/sales_2026-01-02.csv.gz"]
    corrupt = root / "sales" / "sales_2026-01-02.csv.gz"
    with gzip.open(corrupt) as fh, pytest.raises((OSError, zlib.error)):
        fh.read()
    reasons = Counter()
    for f in manifest["files"].values():
        reasons.update(f["quarantined_by_reason"])
    assert set(reasons) == set(REASONS)
    assert manifest["counts"]["stores"] == 45
    stores = [json.loads(p.read_text("utf-8")) for p in (root / "stores").iterdir()]
    assert {s["region"] for s in stores} == {"North", "South", "East", "West"}
    assert 1_000 <= manifest["counts"]["customers"] <= 10_000
    # The independent reader agrees on the totals of the whole demo drop (its readable files).
    names = sorted(f"sales/{n}" for n in os.listdir(root / "sales"))
    files = [read_sales_file(str(root), n.split("/")[1]) for n in names if n not in unreadable]
    truth = apply_rules(files, "Europe/Moscow")
    assert (truth["n_sales"], truth["units"], truth["revenue"]) == (
        manifest["totals"]["n_sales"], manifest["totals"]["units"], manifest["totals"]["revenue"],
    )  # fmt: skip
    assert parse_ts(manifest["generator"]["start_date"] + "T00:00:00") is not None


def test_manifest_url_is_beside_the_drop() -> None:
    assert manifest_url("data/source") == "data/source.manifest.json"
    assert manifest_url("data/source/") == "data/source.manifest.json"
    assert manifest_url("s3://b/drop") == "s3://b/drop.manifest.json"
    assert manifest_url("file:///srv/drop") == "file:///srv/drop.manifest.json"
    with pytest.raises(ValueError):
        manifest_url("s3://")


def test_rates_are_checked_and_round_trip() -> None:
    with pytest.raises(ValueError):
        DirtyRates(bad_region=1.5)
    with pytest.raises(ValueError):
        DirtyRates(**dict.fromkeys(REASONS, 0.06))
    rates = DirtyRates(corrupt_gzip_days=(3,), full_resend_days=(5,))
    assert DirtyRates.from_json(json.loads(json.dumps(rates.to_json()))) == rates
    with pytest.raises(ValueError, match="unknown scale"):
        generate_drop("memory://nowhere", scale="huge")


def test_every_injected_amount_mismatch_is_more_than_a_kopeck_off(tmp_path: Path) -> None:
    """Amounts carry a kopeck of rounding jitter; a mismatch must still be a real mismatch.

    With a high mismatch rate, the independent reader must find exactly the manifest's
    ``amount_mismatch`` rows (a mismatch only 0.01 off would be valid by the contract).
    """
    rates = DirtyRates(amount_mismatch=0.2)
    manifest = generate_drop(str(tmp_path / "d"), sales_rows=4000, days=4, seed=5, rates=rates)
    files = [
        read_sales_file(str(tmp_path / "d"), n) for n in sorted(os.listdir(tmp_path / "d/sales"))
    ]
    truth = apply_rules(files, "Europe/Moscow")
    injected = sum(
        f["quarantined_by_reason"].get("amount_mismatch", 0) for f in manifest["files"].values()
    )
    found = sum(
        f["quarantined_by_reason"].get("amount_mismatch", 0) for f in truth["files"].values()
    )
    assert injected > 400
    assert found == injected
