"""Write a drop (and its manifest) to any fsspec URL; append days to an existing one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import time
import zoneinfo
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import fsspec
import numpy as np

from .entities import Customers, build_catalog, customer_lines_json, document_json
from .hashing import Hasher
from .params import DEFAULT_START_DATE, SCALES, DirtyRates, Params
from .sales import SalesModel
from .truth import Truth

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

_MANAGED = re.compile(
    r"^(stores/store_[^/]+\.json|products/product_[^/]+\.json"
    r"|customers/customers_\d{4}-\d{2}-\d{2}\.jsonl|sales/sales_\d{4}-\d{2}-\d{2}\.csv(\.gz)?)$"
)
_PII_SAMPLE = 200


def manifest_url(drop_url: str) -> str:
    """Where the manifest of a drop lives: beside it, never inside it.

    Args:
        drop_url: The drop (a local path, ``file://`` or ``s3://bucket/prefix`` URL).

    Returns:
        ``<drop_url>.manifest.json`` (``data/source`` -> ``data/source.manifest.json``).
    """
    base = drop_url.rstrip("/")
    if not base or base.endswith(":/") or base.endswith(":"):
        raise ValueError(f"a drop must be a folder or a prefix, not {drop_url!r}")
    return base + ".manifest.json"


def read_manifest(drop_url: str, storage_options: dict | None = None) -> dict:
    """Read the manifest of a generated drop.

    Args:
        drop_url: The drop.
        storage_options: fsspec options (e.g. S3 endpoint and keys).

    Returns:
        The manifest.
    """
    with fsspec.open(manifest_url(drop_url), "rb", **(storage_options or {})) as f:
        return json.loads(f.read().decode("utf-8"))


def generate_drop(
    url: str,
    *,
    scale: str = "demo",
    sales_rows: int | None = None,
    days: int | None = None,
    start_date: dt.date | None = None,
    seed: int = 42,
    rates: DirtyRates | None = None,
    unreadable_file: bool = False,
    timezone: str = "Europe/Moscow",
    storage_options: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Generate a retailer drop and the manifest of its truth.

    (Long for its arguments and their checks; the generation itself is `_run`.)

    The same arguments always give byte-identical files; files whose bytes would not change
    are not rewritten (so their modification time stays). Regenerating into an earlier
    generated drop removes its files that the new generation does not have.

    Args:
        url: The drop: a local folder, ``file://`` or ``s3://bucket/prefix``.
        scale: ``demo``, ``1m`` or ``10m`` (see `SCALES`).
        sales_rows: About how many sales rows, overriding the scale.
        days: Delivery days, overriding the scale.
        start_date: The first delivery date (default 2026-01-01).
        seed: The random seed (>= 0).
        rates: Dirty-data rates (defaults: a few percent in total).
        unreadable_file: Make the second day's sales file unreadable (a corrupt gzip), so a
            run shows a whole-file quarantine (``elt generate`` does it at the demo scale);
            ignored when ``rates`` names corrupt days itself.
        timezone: The business time zone of `by_sale_date` in the manifest.
        storage_options: fsspec options (e.g. S3 endpoint and keys).
        progress: Called with (done_days, total_days) after each day.

    Returns:
        The manifest (also written to `manifest_url(url)`).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    default_rows, default_days = SCALES[scale]
    n_days = default_days if days is None else days
    n_rows = default_rows if sales_rows is None else sales_rows
    if n_days < 1 or n_rows < 1:
        raise ValueError("days and sales_rows must be at least 1")
    rates = rates or DirtyRates()
    if unreadable_file and not rates.corrupt_gzip_days:
        rates = dataclasses.replace(rates, corrupt_gzip_days=(1,))
    if rates.full_resend_days is None:
        resend = (n_days // 2,) if n_days >= 4 else ()
        rates = dataclasses.replace(rates, full_resend_days=resend)
    params = Params(
        seed=seed,
        scale=scale,
        daily_rows=Fraction(n_rows, n_days),
        days=n_days,
        start_date=start_date or DEFAULT_START_DATE,
        rates=rates,
        timezone=timezone,
    )
    _validate(params)
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    old_manifest = _try_read_manifest(url, storage_options)
    existing = _existing_files(fs, root)
    if existing and old_manifest is None:
        raise ValueError(
            f"{url} holds {len(existing)} files but no generator manifest: "
            "generate into an empty location or an earlier generated drop"
        )
    logger.info(
        "generating drop %s: scale=%s, about %d sales rows over %d days from %s, seed %d",
        url, params.scale, params.sales_rows, params.days, params.start_date, params.seed,
    )  # fmt: skip
    manifest, written = _run(
        params, fs, root, first_new_day=0, progress=progress, existing=existing
    )
    stale = sorted(f for f in existing if _MANAGED.match(f) and f not in written)
    for name in stale:
        logger.info("removing %s: not part of the new generation", name)
        fs.rm_file(f"{root}/{name}")
    _write_manifest(url, manifest, storage_options)
    return manifest


def append_days(
    url: str,
    n_days: int,
    *,
    storage_options: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Deliver the next days of an existing generated drop.

    Earlier files are not touched; the new days are exactly what a longer first generation
    would have written. The manifest is rewritten with the truth of the whole drop (a
    correction in a new day supersedes a row of an older file and changes its counts).

    Args:
        url: The drop (generated by `generate_drop`).
        n_days: How many days to add (>= 1).
        storage_options: fsspec options.
        progress: Called with (done_days, total_days) over all days of the drop (earlier
            days are re-derived, not rewritten, to compute the truth).

    Returns:
        The new manifest.
    """
    if n_days < 1:
        raise ValueError("n_days must be at least 1")
    old = _try_read_manifest(url, storage_options)
    if old is None:
        raise FileNotFoundError(f"no generator manifest at {manifest_url(url)}")
    before = Params.from_manifest(old)
    params = dataclasses.replace(before, days=before.days + n_days)
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    logger.info("appending %d days to %s (now %d days)", n_days, url, params.days)
    existing = _existing_files(fs, root)
    manifest, _ = _run(
        params, fs, root, first_new_day=before.days, progress=progress, existing=existing
    )
    _write_manifest(url, manifest, storage_options)
    return manifest


# ---------------------------------------------------------------------------- internals


def _validate(p: Params) -> None:
    if p.seed < 0:
        raise ValueError("seed must be >= 0")
    try:
        zoneinfo.ZoneInfo(p.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {p.timezone!r}") from exc


def _try_read_manifest(url: str, storage_options: dict | None) -> dict | None:
    try:
        return read_manifest(url, storage_options)
    except FileNotFoundError:
        return None


def _existing_files(fs: fsspec.AbstractFileSystem, root: str) -> set[str]:
    try:
        if not fs.exists(root):
            return set()
        found = fs.find(root)
    except FileNotFoundError:
        return set()
    prefix = root.rstrip("/") + "/"
    return {f[len(prefix) :] for f in found if f.startswith(prefix)}


def _put(fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, exists: bool = True) -> bool:
    """Write a file unless it already holds exactly these bytes.

    Args:
        fs: The file system.
        path: The file's path on it.
        data: The content.
        exists: False when the caller knows the file does not exist (saves a request).

    Returns:
        Whether the file was written.
    """
    if exists:
        try:
            if fs.size(path) == len(data) and fs.cat_file(path) == data:
                return False
        except (FileNotFoundError, OSError):
            pass
    fs.pipe_file(path, data)
    return True


def _write_manifest(url: str, manifest: dict, storage_options: dict | None) -> None:
    fs, path = fsspec.core.url_to_fs(manifest_url(url), **(storage_options or {}))
    _put(fs, path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _run(
    params: Params,
    fs: fsspec.AbstractFileSystem,
    root: str,
    *,
    first_new_day: int,
    progress: Progress | None,
    existing: set[str],
) -> tuple[dict, set[str]]:
    """Derive every day of the drop, write days >= first_new_day, and compute the truth."""
    started = time.monotonic()
    hasher = Hasher(params.seed)
    catalog = build_catalog(params)
    customers = Customers(params, catalog, hasher)
    sales = SalesModel(params, catalog, customers, hasher)
    written: set[str] = set()
    n_written = 0
    for sub in ("stores", "products", "customers", "sales"):
        fs.makedirs(f"{root}/{sub}", exist_ok=True)
    docs = [(f"stores/store_{d['store_id']}.json", d) for d in catalog.store_docs]
    docs += [(f"products/product_{d['product_id']}.json", d) for d in catalog.product_docs]
    for name, doc in docs:
        written.add(name)
        if first_new_day == 0:
            n_written += _put(fs, f"{root}/{name}", document_json(doc), exists=name in existing)
    truth = Truth(sales.total_sales)
    log_every = max(1, params.days // 10)
    for d in range(params.days):
        date = (params.start_date + dt.timedelta(days=d)).isoformat()
        f = sales.day_file(d)
        sales_name = f"sales/sales_{date}.csv" + (".gz" if f.gz else "")
        cust_name = f"customers/customers_{date}.jsonl"
        written.update((sales_name, cust_name))
        if d >= first_new_day:
            data = sales.render(f)
            n_written += _put(fs, f"{root}/{sales_name}", data, exists=sales_name in existing)
            data = customer_lines_json(customers.records(customers.day_lines(d), d))
            n_written += _put(fs, f"{root}/{cust_name}", data, exists=cust_name in existing)
        if f.failure:
            truth.add_unreadable(sales_name, date, f.failure)
        else:
            c = f.rows.cols
            truth.add_file(sales_name, date, f.rows, sales.global_index(c["od"], c["j"]))
        if progress is not None:
            progress(d + 1, params.days)
        if (d + 1) % log_every == 0 or d + 1 == params.days:
            logger.info(
                "day %d/%d (%s) done, %.1fs", d + 1, params.days, date, time.monotonic() - started
            )
    report = truth.report(params.timezone)
    last = params.days - 1
    manifest: dict[str, Any] = {
        "generator": params.generator_json(),
        "timezone": params.timezone,
        "counts": {
            "stores": len(catalog.store_docs),
            "products": len(catalog.product_docs),
            "customers": params.customers_until(last),
            "customer_versions": customers.versions_until(last),
        },
        **report,
        "pii_values": _pii_values(catalog, customers, params),
    }
    logger.info(
        "drop done: %d sales files, %d rows in, %d sales, %d files written, %.1fs",
        params.days, report["totals"]["rows_in"], report["totals"]["n_sales"], n_written,
        time.monotonic() - started,
    )  # fmt: skip
    return manifest, written


def _pii_values(catalog: Any, customers: Customers, params: Params) -> dict[str, list[str]]:
    """A sample of plaintext personal values present in the drop (surrounding spaces cut)."""
    emails: list[str] = []
    phones: list[str] = []
    last_names: list[str] = []
    names: list[str] = []
    for doc in catalog.store_docs:
        m = doc["manager"]
        emails.append(m["email"])
        phones.append(m["phone"])
        names.append(m["name"])
        last_names.append(m["name"].split(" ")[-1])
    pool = params.customers_until(params.days - 1)
    picks = np.unique(np.linspace(0, pool - 1, min(pool, _PII_SAMPLE)).astype(np.int64))
    for rec in customers.records([(int(i), 0) for i in picks], None):
        for key, out in (("email", emails), ("phone", phones), ("last_name", last_names)):
            if rec.get(key):
                out.append(rec[key].strip())

    def sample(values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))[:_PII_SAMPLE]

    return {
        "emails": sample(emails),
        "phones": sample(phones),
        "last_names": sample(last_names),
        "manager_names": sample(names),
    }
