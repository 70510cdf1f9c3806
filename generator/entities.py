"""Stores, products and customers: the documents of the drop and what sales need of them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np

from contract.sales import REGIONS

from .hashing import Hasher
from .params import Params
from .vocab import (
    ALL_CITIES,
    CATALOGUE,
    CITIES,
    EMAIL_DOMAINS,
    FEMALE_FIRST,
    FORMAT_WEIGHTS,
    FORMAT_WORDS,
    FORMATS,
    LAST_NAMES,
    MALE_FIRST,
    MANAGER_EMAIL_DOMAIN,
    MOBILE_CODES,
    REGION_WORDS,
    STREETS,
)

N_STORES = 45
STREAM_CUSTOMER = 20
MSK = dt.timezone(dt.timedelta(hours=3))


def iso_msk(day: dt.date, seconds: int) -> str:
    """A Moscow-time ISO timestamp with offset.

    Args:
        day: The local date.
        seconds: Seconds after local midnight (may exceed a day).

    Returns:
        e.g. ``2026-01-10T09:00:00+03:00``.
    """
    t = dt.datetime(day.year, day.month, day.day, tzinfo=MSK) + dt.timedelta(seconds=seconds)
    return t.isoformat()


def format_phone(code: int, number: int, style: int) -> str:
    """A Russian mobile number in one of the styles people type.

    Args:
        code: The three-digit operator code, e.g. 912.
        number: The seven-digit subscriber number.
        style: 0..5.

    Returns:
        e.g. ``8 (912) 345-67-89`` or ``+7 912 345 67 89``.
    """
    s = f"{number:07d}"
    a, b, c = s[:3], s[3:5], s[5:]
    return (
        f"8 ({code}) {a}-{b}-{c}",
        f"+7 {code} {a} {b} {c}",
        f"+7{code}{s}",
        f"8{code}{s}",
        f"8-{code}-{a}-{b}-{c}",
        f"+7 ({code}) {a}-{b}-{c}",
    )[style % 6]


@dataclass
class Catalog:
    """Stores and products: their documents and the arrays sales are drawn from."""

    store_docs: list[dict]
    store_region: np.ndarray  # int8 region index per store
    store_cum_weight: np.ndarray  # int64 cumulative sales weight per store
    product_docs: list[dict]
    product_price: np.ndarray  # int64 kopecks per product
    product_cum_weight: np.ndarray  # int64 cumulative popularity (Zipf-like)


def _stores(params: Params) -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng([params.seed, 101])
    opened_limit = (params.start_date - dt.date(2005, 1, 1)).days - 30
    updated_at = iso_msk(params.start_date - dt.timedelta(days=1), 9 * 3600)
    docs: list[dict] = []
    regions = np.zeros(N_STORES, np.int8)
    weights = np.zeros(N_STORES, np.int64)
    per_region = dict.fromkeys(REGIONS, 0)
    for i in range(N_STORES):
        region = REGIONS[i % 4]
        per_region[region] += 1
        k = per_region[region]
        fmt = "hypermarket" if k == 1 else FORMATS[int(rng.choice(3, p=[0.2, 0.45, 0.35]))]
        city, postcode = CITIES[region][int(rng.integers(len(CITIES[region])))]
        female = bool(rng.random() < 0.5)
        first = (FEMALE_FIRST if female else MALE_FIRST)[int(rng.integers(16))]
        last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))] + ("a" if female else "")
        code = MOBILE_CODES[int(rng.integers(len(MOBILE_CODES)))]
        phone = format_phone(code, int(rng.integers(10**7)), int(rng.integers(6)))
        street = f"{STREETS[int(rng.integers(len(STREETS)))]} {int(rng.integers(1, 150))}"
        docs.append(
            {
                "store_id": f"ST-{i + 1:03d}",
                "name": f"{FORMAT_WORDS[fmt]} {REGION_WORDS[region]} {k}",
                "format": fmt,
                "region": region,
                "city": city,
                "address": {"street": street, "postcode": f"{postcode}{rng.integers(1000):03d}"},
                "opened_on": (
                    dt.date(2005, 1, 1) + dt.timedelta(days=int(rng.integers(opened_limit)))
                ).isoformat(),
                "manager": {
                    "name": f"{first} {last}",
                    "phone": phone,
                    "email": f"{first[0].lower()}.{last.lower()}@{MANAGER_EMAIL_DOMAIN}",
                },
                "updated_at": updated_at,
            }
        )
        regions[i] = REGIONS.index(region)
        weights[i] = FORMAT_WEIGHTS[fmt]
    return docs, regions, np.cumsum(weights)


def _products(params: Params) -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng([params.seed, 102])
    n = int(rng.integers(60, 151))
    combos = []
    for c_i, (category, (supplier, brands, items)) in enumerate(CATALOGUE.items()):
        for i_i, (item, sizes) in enumerate(items):
            for s_i, (size, price) in enumerate(sizes):
                for b_i, brand in enumerate(brands):
                    combos.append(
                        (c_i, i_i, s_i, b_i, category, supplier, brand, item, size, price)
                    )
    chosen = sorted(combos[k] for k in rng.permutation(len(combos))[:n])
    name_count: dict[str, int] = {}
    for c in chosen:
        name_count[f"{c[7]} {c[8]}"] = name_count.get(f"{c[7]} {c[8]}", 0) + 1
    updated_at = iso_msk(params.start_date - dt.timedelta(days=1), 9 * 3600)
    docs = []
    prices = np.zeros(n, np.int64)
    for p_i, (*_, category, supplier, brand, item, size, price) in enumerate(chosen):
        factor = 0.85 + 0.35 * rng.random()
        kop = max(1, round(price * factor / 10)) * 1000 - 10
        name = f"{item} {size}"
        if name_count[name] > 1:
            name = f"{name} {brand}"
        docs.append(
            {
                "product_id": f"PR-{p_i + 1:04d}",
                "name": name,
                "category": category,
                "brand": brand,
                "supplier": supplier,
                "unit_price": kop,  # kopecks here; written as a two-decimal number
                "currency": "RUB",
                "updated_at": updated_at,
            }
        )
        prices[p_i] = kop
    rank = rng.permutation(n)
    weights = np.floor(1e9 / (rank + 1.0) ** 1.1).astype(np.int64)
    return docs, prices, np.cumsum(weights)


def build_catalog(params: Params) -> Catalog:
    """The stores and products of a drop (a pure function of the seed and start date).

    Args:
        params: The generation parameters.

    Returns:
        The catalog.
    """
    store_docs, store_region, store_cum = _stores(params)
    product_docs, prices, product_cum = _products(params)
    return Catalog(store_docs, store_region, store_cum, product_docs, prices, product_cum)


def document_json(doc: dict) -> bytes:
    """Serialize a store or product document (prices as two-decimal numbers).

    Args:
        doc: A document from the catalog.

    Returns:
        UTF-8 JSON, pretty-printed, with a final newline.
    """
    if "unit_price" in doc:
        kop = int(doc["unit_price"])
        text = json.dumps({**doc, "unit_price": "@@PRICE@@"}, ensure_ascii=False, indent=2)
        text = text.replace('"@@PRICE@@"', f"{kop // 100}.{kop % 100:02d}")
    else:
        text = json.dumps(doc, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


# Fields of the customer hash stream.
(
    _F_HOME,
    _F_GENDER,
    _F_GNULL,
    _F_FIRST,
    _F_LAST,
    _F_LNULL,
    _F_BIRTH,
    _F_BNULL,
    _F_CITY,
    _F_CITYOTHER,
    _F_CMISS,
    _F_EPAT,
    _F_EDOM,
    _F_ECASE,
    _F_ESPACE,
    _F_ENULL,
    _F_PCODE,
    _F_PNUM,
    _F_PSTYLE,
    _F_PNULL,
    _F_REG,
    _F_UPD_T,
    _F_U1,
    _F_U1DAY,
    _F_U2,
    _F_U2DAY,
    _F_K1,
    _F_K2,
    _F_ACT,
) = range(1, 30)


class Customers:
    """The customer base: who exists on which day, their home store, region and versions.

    Customer `i` (0-based, id ``CU-{i+1:06d}``) is a pure function of (seed, i): the first
    `n_base_customers` are delivered on day 0, then `n_new_customers_per_day` register each day.
    A customer may change later (one or two versions, each on a fixed day).

    Args:
        params: The generation parameters (`days` bounds the pool).
        catalog: The stores.
        hasher: The seed's hasher.
    """

    def __init__(self, params: Params, catalog: Catalog, hasher: Hasher) -> None:
        self.params = params
        self.catalog = catalog
        self.hasher = hasher
        self.pool = params.customers_until(params.days - 1)
        idx = np.arange(self.pool, dtype=np.int64)
        k = hasher.keys(STREAM_CUSTOMER, idx)
        total = int(catalog.store_cum_weight[-1])
        home = np.searchsorted(
            catalog.store_cum_weight, Hasher.ints(k, _F_HOME, total), side="right"
        )
        home[: min(N_STORES, self.pool)] = np.arange(min(N_STORES, self.pool))
        self.home_store = home.astype(np.int32)
        self.region = catalog.store_region[self.home_store]
        act = np.minimum(np.floor(1000.0 * (1.0 - Hasher.u(k, _F_ACT)) ** -0.6), 10**6)
        self.cum_activity = np.cumsum(act.astype(np.int64))
        self.reg_day = np.where(
            idx < params.n_base_customers,
            0,
            (idx - params.n_base_customers) // params.n_new_customers_per_day,
        )
        has1 = Hasher.u(k, _F_U1) < params.rates.customer_update
        self.u1 = np.where(has1, self.reg_day + 1 + Hasher.ints(k, _F_U1DAY, 180), -1)
        has2 = has1 & (Hasher.u(k, _F_U2) < 0.3)
        self.u2 = np.where(has2, self.u1 + 1 + Hasher.ints(k, _F_U2DAY, 180), -1)

    def versions_until(self, day: int) -> int:
        """Customer lines delivered in the files of days 0..day.

        Args:
            day: The last day index.

        Returns:
            The number of customer versions.
        """
        n = self.params.customers_until(day)
        u1, u2 = self.u1[:n], self.u2[:n]
        changed = np.count_nonzero((u1 >= 0) & (u1 <= day)) + np.count_nonzero(
            (u2 >= 0) & (u2 <= day)
        )
        return int(n + changed)

    def day_lines(self, day: int) -> list[tuple[int, int]]:
        """Who is in the customers file of a day.

        Args:
            day: The day index.

        Returns:
            (customer index, version) pairs in file order: new customers, then changes.
        """
        p = self.params
        lo = 0 if day == 0 else p.customers_until(day - 1)
        hi = p.customers_until(day)
        out = [(i, 0) for i in range(lo, hi)]
        changed1 = np.nonzero(self.u1[:lo] == day)[0]
        changed2 = np.nonzero(self.u2[:lo] == day)[0]
        changes = sorted([(int(i), 1) for i in changed1] + [(int(i), 2) for i in changed2])
        return out + changes

    def records(self, lines: list[tuple[int, int]], day: int | None) -> list[dict]:
        """Customer JSON objects (field order fixed; null or missing fields as delivered).

        (Long because it spells out every field of the contract's customer document, with
        its dirty variants, in the order they are delivered.)

        Args:
            lines: (customer index, version) pairs.
            day: The delivery day (sets `updated_at`); None for the version's own day.

        Returns:
            One dict per line.
        """
        if not lines:
            return []
        p, stores = self.params, self.catalog.store_docs
        idx = np.array([i for i, _ in lines], np.int64)
        k = self.hasher.keys(STREAM_CUSTOMER, idx)
        r = p.rates
        u = np.stack([Hasher.u(k, f) for f in range(30)], axis=1).tolist()  # row per line
        out = []
        for n, (i, version) in enumerate(lines):
            g = u[n]
            female = g[_F_GENDER] < 0.52
            first = (FEMALE_FIRST if female else MALE_FIRST)[int(g[_F_FIRST] * 16)]
            last = LAST_NAMES[int(g[_F_LAST] * len(LAST_NAMES))] + ("a" if female else "")
            home = stores[int(self.home_store[i])]
            city = (
                home["city"]
                if g[_F_CITY] < 0.9
                else ALL_CITIES[int(g[_F_CITYOTHER] * len(ALL_CITIES))]
            )
            email = self._email(first, last, i, g, 0)
            code = MOBILE_CODES[int(g[_F_PCODE] * len(MOBILE_CODES))]
            phone: str | None = format_phone(code, int(g[_F_PNUM] * 10**7), int(g[_F_PSTYLE] * 6))
            kinds: list[int] = []  # what later versions changed: 0 city, 1 email, 2 phone
            if version >= 1:
                kinds = [int(g[_F_K1] * 3)]
                if version >= 2:
                    kinds.append((kinds[0] + 1 + int(g[_F_K2] * 2)) % 3)
                for v, kind in enumerate(kinds, start=1):
                    kv = self.hasher.keys(STREAM_CUSTOMER + v, np.array([i], np.int64))
                    x = float(Hasher.u(kv, 1)[0])
                    if kind == 0:
                        new_city = ALL_CITIES[int(x * len(ALL_CITIES))]
                        city = (
                            new_city
                            if new_city != city
                            else ALL_CITIES[0 if city != ALL_CITIES[0] else 1]
                        )
                    elif kind == 1:
                        g2 = list(g)
                        g2[_F_EDOM], g2[_F_EPAT] = x, 1 - x
                        email = self._email(first, last, i, g2, v)
                    else:
                        code2 = MOBILE_CODES[int(x * len(MOBILE_CODES))]
                        phone = format_phone(
                            code2, int(float(Hasher.u(kv, 2)[0]) * 10**7), int(x * 6)
                        )
            reg_day = int(self.reg_day[i])
            if i < p.n_base_customers:
                reg_date = p.start_date - dt.timedelta(days=1 + int(g[_F_REG] * 1100))
            else:
                reg_date = p.start_date + dt.timedelta(days=reg_day - 1)
            reg_secs = 8 * 3600 + int(g[_F_UPD_T] * 14 * 3600)
            vday = reg_day if version == 0 else int(self.u1[i] if version == 1 else self.u2[i])
            delivered = p.start_date + dt.timedelta(days=vday if day is None else day)
            rec: dict = {
                "customer_id": f"CU-{i + 1:06d}",
                "first_name": first,
                "last_name": None if g[_F_LNULL] < r.customer_null_field / 4 else last,
                "email": None
                if (1 not in kinds and g[_F_ENULL] < r.customer_null_field)
                else email,
                "phone": None
                if (2 not in kinds and g[_F_PNULL] < r.customer_null_field)
                else phone,
                "birth_date": None
                if g[_F_BNULL] < r.customer_null_field * 2
                else (
                    dt.date(1950, 1, 1) + dt.timedelta(days=int(g[_F_BIRTH] * 20440))
                ).isoformat(),
                "gender": None
                if g[_F_GNULL] < r.customer_null_field * 1.5
                else ("F" if female else "M"),
                "city": city,
                "home_store_id": home["store_id"],
                "registered_at": iso_msk(reg_date, reg_secs),
                "updated_at": iso_msk(
                    delivered, 5 * 3600 + version * 600 + int(g[_F_UPD_T] * 3000)
                ),
            }
            if 0 not in kinds and g[_F_CMISS] < r.customer_missing_field:
                del rec["city"]
            out.append(rec)
        return out

    @staticmethod
    def _email(first: str, last: str, i: int, g: list[float], salt: int) -> str:
        domain = EMAIL_DOMAINS[int(g[_F_EDOM] * len(EMAIL_DOMAINS))]
        pattern = int(g[_F_EPAT] * 4)
        num = (i * 7 + salt * 13) % 100
        local = (
            f"{first}.{last}",
            f"{first[0]}.{last}{num}",
            f"{last}.{first}{1960 + num % 45}",
            f"{first}{last}{num}",
        )[pattern]
        text = f"{local}@{domain}"
        case = g[_F_ECASE]
        if case < 0.55:
            text = text.lower()
        elif case < 0.62:
            text = text.upper()
        elif case < 0.7:
            text = f"{local}@{domain.capitalize()}"
        space = g[_F_ESPACE]
        if space < 0.06:
            text = text + " "
        elif space < 0.1:
            text = " " + text
        return text


def customer_lines_json(records: list[dict]) -> bytes:
    """Serialize customer records as JSON lines.

    Args:
        records: Customer dicts.

    Returns:
        UTF-8 JSONL bytes.
    """
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
