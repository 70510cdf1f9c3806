"""Sales rows: what each delivery day contains, and the bytes of a day's file.

Every row is described by integer columns (a `Rows` table). A sale is identified by
(origin day `od`, index `j`); its original content is a pure function of (seed, od, j) and a
correction made on day `cd` is a pure function of (seed, od, j, cd). A day's file is a pure
function of (seed, day, the drop's fixed parameters), so an appended day is identical to the
same day of a longer first generation and earlier files never change.
"""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass

import numpy as np

from contract.sales import SALES_COLUMNS

from .entities import N_STORES, Catalog, Customers
from .hashing import Hasher
from .params import Params
from .sales_text import MSK_OFFSET, lines_text, render_lines
from .vocab import DEFECTS

STREAM_SALE = 10
STREAM_CORRECTION = 11
STREAM_FILE = 12

(
    _F_LAG,
    _F_LATE,
    _F_HOUR,
    _F_SEC,
    _F_MIDNIGHT,
    _F_MIDSIDE,
    _F_ANON,
    _F_CUST,
    _F_UNKC,
    _F_UNKCN,
    _F_HOME,
    _F_STORE,
    _F_UNKS,
    _F_UNKSN,
    _F_REGION,
    _F_PROD,
    _F_UNKP,
    _F_UNKPN,
    _F_QTY,
    _F_PROMO,
    _F_CENT,
    _F_CENTSIGN,
    _F_TSFMT,
    _F_REGFMT,
    _F_REGFMTV,
    _F_DEFECT,
    _F_DEFVAR,
) = range(1, 28)

# Local (Moscow) hour-of-day profile of sales.
_HOUR_WEIGHTS = np.array(
    [0.6, 0.3, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 3, 4, 5, 6, 7, 7, 6, 6, 7, 8.5, 9, 8.5, 7, 5, 3, 1.5]
)
_HOUR_CUM = np.cumsum(_HOUR_WEIGHTS) / _HOUR_WEIGHTS.sum()
_QTY_VALUES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12])
_QTY_CUM = np.cumsum([0.58, 0.24, 0.10, 0.04, 0.02, 0.01, 0.005, 0.003, 0.002])
_WEEKDAY = tuple(x / 1.03 for x in (0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.2))  # Monday .. Sunday
_WEIGHT_UNIT = 1_000_000

COLUMNS = (
    "od",  # origin day of the sale
    "j",  # index of the sale within its origin day
    "cd",  # day of the correction, -1 for the original content
    "ts",  # sale instant, epoch seconds UTC
    "store",  # store number (ST-001 is 1; 900+ unknown)
    "cust",  # customer number (CU-000001 is 1; 9000000+ unknown; -1 anonymous)
    "prod",  # product number (PR-0001 is 1; 9000+ unknown)
    "q",  # quantity
    "p",  # unit price, kopecks
    "amt",  # sale amount, kopecks
    "region",  # region index
    "tsf",  # sale_ts spelling: 0 +03:00, 1 Z, 2 no offset
    "regf",  # region spelling, 0 canonical
    "defect",  # 0 valid, else the reason code
    "dvar",  # which variant of the defect
)


@dataclass
class Rows:
    """A table of sales rows as integer columns (see `COLUMNS`)."""

    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["od"])

    def take(self, idx: np.ndarray) -> Rows:
        """Rows at positions.

        Args:
            idx: Positions.

        Returns:
            A new table.
        """
        return Rows({k: v[idx] for k, v in self.cols.items()})

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """Concatenate tables.

        Args:
            parts: Tables, in order.

        Returns:
            One table.
        """
        return Rows({k: np.concatenate([p.cols[k] for p in parts]) for k in COLUMNS})


@dataclass(frozen=True)
class DayFile:
    """One delivery day's sales file: its rows and how it is written."""

    day: int
    rows: Rows
    gz: bool
    bom: bool
    failure: str | None  # None, "corrupt_gzip" or "bad_header"


class SalesModel:
    """Sales of a drop: per-day volumes and plans, row content and rendering.

    Args:
        params: The generation parameters.
        catalog: Stores and products.
        customers: The customer base.
        hasher: The seed's hasher.
    """

    def __init__(
        self, params: Params, catalog: Catalog, customers: Customers, hasher: Hasher
    ) -> None:
        self.p = params
        self.catalog = catalog
        self.customers = customers
        self.h = hasher
        self.day0 = int(np.datetime64(params.start_date, "D").astype(np.int64))
        ndays = params.days
        dates = [params.start_date + dt.timedelta(days=d) for d in range(ndays)]
        noise = 0.92 + 0.16 * Hasher.u(hasher.keys(STREAM_FILE, np.arange(ndays)), 1)
        w = np.array(
            [
                round(_WEIGHT_UNIT * _WEEKDAY[day.weekday()] * _season(day) * noise[i])
                for i, day in enumerate(dates)
            ],
            dtype=np.int64,
        )
        cum = np.concatenate([[0], np.cumsum(w)]).tolist()
        rate = params.daily_rows / _WEIGHT_UNIT  # exact: same rate, same day volumes
        self.volume = np.array(
            [int(rate * cum[d + 1]) - int(rate * cum[d]) for d in range(ndays)], np.int64
        )
        counts = [self._counts(d) for d in range(ndays)]
        self.counts = np.array(counts, dtype=np.int64).reshape(ndays, 5)
        self.n_base = self.counts[:, 0]
        self.offset = np.concatenate([[0], np.cumsum(self.n_base)])
        self._cache: dict[int, Rows] = {}

    @property
    def total_sales(self) -> int:
        """Distinct sale ids (origin day, index) over all days."""
        return int(self.offset[-1])

    def _counts(self, d: int) -> tuple[int, int, int, int, int]:
        r = self.p.rates
        n = int(self.volume[d])
        own = max(1, round(n * r.resend_own_share)) if d in self.p.resend_days else max(1, n)
        rng = np.random.default_rng([self.p.seed, d, 0])
        draws = [
            int(rng.binomial(own, r.duplicate_in_file)),
            int(rng.binomial(own, r.duplicate_across_files)) if d > 0 else 0,
            int(rng.binomial(own, r.correction_in_file)),
            int(rng.binomial(own, r.correction_across_files)) if d > 0 else 0,
        ]
        if own < 20 or sum(draws) > own // 2:
            draws = [0, 0, 0, 0]
        return (own - sum(draws), *draws)

    def global_index(self, od: np.ndarray, j: np.ndarray) -> np.ndarray:
        """A dense integer per sale id.

        Args:
            od: Origin days.
            j: Indexes within the origin day.

        Returns:
            int64 indexes in [0, total_sales).
        """
        return self.offset[od] + j

    # ------------------------------------------------------------------ content

    def base_content(self, od: np.ndarray, j: np.ndarray) -> Rows:
        """The original rows of sales (with their defect, if any).

        (One long function on purpose: each column is drawn from its own hash stream in a
        fixed order, which is what keeps the generated bytes the same from version to version.)

        Args:
            od: Origin days.
            j: Indexes within the origin day.

        Returns:
            One row per sale.
        """
        p, r, cat = self.p, self.p.rates, self.catalog
        n = len(od)
        if n == 0:
            return Rows({name: np.zeros(0, np.int64) for name in COLUMNS})
        k = self.h.keys(STREAM_SALE, od, j)
        u = Hasher.u
        # When: mostly the delivery day or the day before, some late; Moscow local hours.
        lag_u = u(k, _F_LAG)
        lag = np.where(lag_u < (1 - r.late_sale) * 0.6, 0, 1)
        lag = np.where(lag_u >= 1 - r.late_sale, 2 + Hasher.ints(k, _F_LATE, 9), lag)
        hour = np.searchsorted(_HOUR_CUM, u(k, _F_HOUR), side="right")
        midnight = u(k, _F_MIDNIGHT) < r.near_midnight
        hour = np.where(midnight, np.where(u(k, _F_MIDSIDE) < 0.5, 23, 0), np.minimum(hour, 23))
        local = (self.day0 + od - lag) * 86400 + hour * 3600 + Hasher.ints(k, _F_SEC, 3600)
        ts = local - MSK_OFFSET
        # Who: a returning customer (Zipf-like activity) or anonymous.
        anon = u(k, _F_ANON) < r.anonymous
        pool_n = p.n_base_customers + (od + 1) * p.n_new_customers_per_day
        cum = self.customers.cum_activity
        target = np.floor(u(k, _F_CUST) * cum[pool_n - 1]).astype(np.int64)
        cust = np.searchsorted(cum, target, side="right").astype(np.int64)
        unknown_c = ~anon & (u(k, _F_UNKC) < r.unknown_customer)
        # Where: mostly the customer's home store.
        total_sw = int(cat.store_cum_weight[-1])
        any_store = np.searchsorted(
            cat.store_cum_weight, Hasher.ints(k, _F_STORE, total_sw), side="right"
        )
        home = self.customers.home_store[cust]
        at_home = ~anon & ~unknown_c & (u(k, _F_HOME) < 0.85)
        store = np.where(at_home, home, any_store) + 1
        unknown_s = u(k, _F_UNKS) < r.unknown_store
        store = np.where(unknown_s, 900 + Hasher.ints(k, _F_UNKSN, 99), store)
        rand_region = Hasher.ints(k, _F_REGION, 4)
        store_region = cat.store_region[np.minimum(store, N_STORES) - 1]
        region = np.where(anon, np.where(unknown_s, rand_region, store_region), 0)
        region = np.where(~anon, self.customers.region[cust], region)
        region = np.where(unknown_c, rand_region, region)
        cust = np.where(
            anon, -1, np.where(unknown_c, 9_000_000 + Hasher.ints(k, _F_UNKCN, 999_999), cust + 1)
        )
        # What: popular and slow products, quantity mostly 1-3, the catalogue price.
        total_pw = int(cat.product_cum_weight[-1])
        prod = np.searchsorted(
            cat.product_cum_weight, Hasher.ints(k, _F_PROD, total_pw), side="right"
        )
        price = cat.product_price[prod]
        prod = prod + 1
        unknown_p = u(k, _F_UNKP) < r.unknown_product
        prod = np.where(unknown_p, 9000 + Hasher.ints(k, _F_UNKPN, 999), prod)
        unknown_price = 4990 + (
            (Hasher.bits(self.h.keys(STREAM_SALE, -1, prod), 1) % np.uint64(400)).astype(np.int64)
            * 100
        )
        price = np.where(unknown_p, unknown_price, price)
        price = np.where(u(k, _F_PROMO) < r.promo_price, price * 85 // 100, price)
        qty = _QTY_VALUES[np.minimum(np.searchsorted(_QTY_CUM, u(k, _F_QTY), side="right"), 8)]
        amt = qty * price
        off = (u(k, _F_CENT) < r.amount_off_by_cent) & (amt > 1)
        amt = amt + np.where(off, np.where(u(k, _F_CENTSIGN) < 0.5, -1, 1), 0)
        # How it is spelt, and whether it is broken.
        ts_u = u(k, _F_TSFMT)
        tsf = np.where(ts_u < r.ts_utc_z, 1, np.where(ts_u < r.ts_utc_z + r.ts_no_offset, 2, 0))
        regf = np.where(
            u(k, _F_REGFMT) < r.odd_region_spelling, 1 + Hasher.ints(k, _F_REGFMTV, 5), 0
        )
        defect = np.searchsorted(np.cumsum(r.reason_rates()), u(k, _F_DEFECT), side="right") + 1
        defect = np.where(defect > len(DEFECTS), 0, defect)
        return Rows(
            {
                "od": od.astype(np.int64),
                "j": j.astype(np.int64),
                "cd": np.full(n, -1, np.int64),
                "ts": ts.astype(np.int64),
                "store": store.astype(np.int64),
                "cust": cust.astype(np.int64),
                "prod": prod.astype(np.int64),
                "q": qty.astype(np.int64),
                "p": price.astype(np.int64),
                "amt": amt.astype(np.int64),
                "region": region.astype(np.int64),
                "tsf": tsf.astype(np.int64),
                "regf": regf.astype(np.int64),
                "defect": defect.astype(np.int64),
                "dvar": Hasher.ints(k, _F_DEFVAR, 6),
            }
        )

    def corrected_content(self, od: np.ndarray, j: np.ndarray, cd: int) -> Rows:
        """Corrected versions of sales, as re-delivered on day `cd` (always valid).

        A correction changes the quantity, the unit price or the sale time (which may move
        the sale to another day); it always differs from the original.

        Args:
            od: Origin days.
            j: Indexes within the origin day.
            cd: The day of the correction.

        Returns:
            One row per sale.
        """
        rows = self.base_content(od, j)
        c = rows.cols
        k = self.h.keys(STREAM_CORRECTION, od, j, cd)
        u = Hasher.u
        moves = u(k, 1) < self.p.rates.correction_moves_ts
        qty_change = ~moves & (u(k, 2) < 0.6)
        price_change = ~moves & ~qty_change
        shift = (1800 + Hasher.ints(k, 3, 30 * 3600)) * np.where(u(k, 4) < 0.5, -1, 1)
        c["ts"] = np.where(moves, c["ts"] + shift, c["ts"])
        new_q = np.where((u(k, 5) < 0.5) | (c["q"] == 1), c["q"] + 1, c["q"] - 1)
        c["q"] = np.where(qty_change, new_q, c["q"])
        cheaper = np.maximum(1, c["p"] - np.maximum(1, c["p"] // 10))
        cheaper = np.where(cheaper == c["p"], c["p"] + 1, cheaper)
        c["p"] = np.where(price_change, cheaper, c["p"])
        c["amt"] = c["q"] * c["p"]
        ts_u = u(k, 6)
        r = self.p.rates
        c["tsf"] = np.where(
            ts_u < r.ts_utc_z, 1, np.where(ts_u < r.ts_utc_z + r.ts_no_offset, 2, 0)
        )
        c["regf"] = np.where(u(k, 7) < r.odd_region_spelling, 1 + Hasher.ints(k, 8, 5), 0)
        c["defect"] = np.zeros(len(rows), np.int64)
        c["cd"] = np.full(len(rows), cd, np.int64)
        return rows

    # ------------------------------------------------------------------ days

    def day_file(self, d: int) -> DayFile:
        """The sales file delivered on a day.

        Args:
            d: The day index.

        Returns:
            The file's rows in file order and how it is written.
        """
        r = self.p.rates
        fk = self.h.keys(STREAM_FILE, np.array([d]))
        failure = None
        if d in r.corrupt_gzip_days:
            failure = "corrupt_gzip"
        elif d in r.bad_header_days:
            failure = "bad_header"
        gz = failure == "corrupt_gzip" or bool(Hasher.u(fk, 3)[0] >= r.plain_csv_file)
        bom = bool(Hasher.u(fk, 2)[0] < r.bom_file)
        return DayFile(d, self.day_rows(d), gz, bom, failure)

    def day_rows(self, d: int) -> Rows:
        """The rows of a day's sales file, in file order.

        Args:
            d: The day index.

        Returns:
            The rows.
        """
        if d in self._cache:
            return self._cache[d]
        n_base, dup_in, dup_x, cor_in, cor_x = (int(x) for x in self.counts[d])
        rng = np.random.default_rng([self.p.seed, d, 1])
        j = np.arange(n_base, dtype=np.int64)
        parts = [self.base_content(np.full(n_base, d, np.int64), j)]
        pos = [j.astype(np.float64)]
        # Exact duplicates later in the same file.
        jd = rng.integers(0, n_base, dup_in)
        parts.append(self.base_content(np.full(dup_in, d, np.int64), jd))
        pos.append(jd + rng.uniform(0.01, 1.0, dup_in) * (n_base - jd))
        # Duplicates of earlier files' rows, some spelt differently.
        od = np.maximum(d - rng.geometric(0.45, dup_x), 0)
        jx = np.floor(rng.random(dup_x) * self.n_base[od]).astype(np.int64)
        dup = self.base_content(od, jx)
        respell = rng.random(dup_x) < self.p.rates.duplicate_reformatted
        ts_u, reg_u = rng.random(dup_x), rng.random(dup_x)
        dup.cols["tsf"] = np.where(respell, np.floor(ts_u * 3).astype(np.int64), dup.cols["tsf"])
        dup.cols["regf"] = np.where(respell, np.floor(reg_u * 6).astype(np.int64), dup.cols["regf"])
        parts.append(dup)
        pos.append(rng.random(dup_x) * n_base)
        # Corrections of rows earlier in the same file.
        jc = rng.integers(0, n_base, cor_in)
        parts.append(self.corrected_content(np.full(cor_in, d, np.int64), jc, d))
        pos.append(jc + rng.uniform(0.01, 1.0, cor_in) * (n_base - jc))
        # Corrections of earlier files' rows.
        oc = np.maximum(d - rng.geometric(0.3, cor_x), 0)
        jcx = np.floor(rng.random(cor_x) * self.n_base[oc]).astype(np.int64)
        parts.append(self.corrected_content(oc, jcx, d))
        pos.append(rng.random(cor_x) * n_base)
        order = np.argsort(np.concatenate(pos), kind="stable")
        rows = Rows.concat(parts).take(order)
        if d in self.p.resend_days and d > 0:
            # The previous day's file sent again in full, then this day's own sales.
            rows = Rows.concat([self.day_rows(d - 1), rows])
        self._cache[d] = rows
        for old in [x for x in self._cache if x < d - 1]:
            del self._cache[old]
        return rows

    # ------------------------------------------------------------------ text

    def render(self, f: DayFile) -> bytes:
        """The bytes of a sales file as delivered.

        Args:
            f: The day's file.

        Returns:
            The file content (gzip-compressed, deterministically, when `f.gz`).
        """
        header = ",".join(SALES_COLUMNS)
        if f.failure == "bad_header":
            header = "id,ts,store,customer,product,qty,price,amount,region"
        lines = render_lines(f.rows, self.day0)
        head = ("\ufeff" if f.bom else "") + header + "\n"
        data = head.encode("utf-8") + (lines_text(lines) if len(lines) else b"")
        if not f.gz:
            return data
        out = gzip.compress(data, compresslevel=6, mtime=0)
        if f.failure == "corrupt_gzip":
            # A valid gzip header, then a deflate block of the reserved type: unreadable.
            junk = Hasher.bits(self.h.keys(STREAM_FILE, np.arange(len(out) // 8 + 1), f.day), 9)
            out = out[:10] + b"\x07" + junk.tobytes()[: max(0, len(out) - 11)]
        return out


def _season(day: dt.date) -> float:
    """A mild yearly cycle, peaking before the New Year."""
    doy = day.timetuple().tm_yday
    return 1.0 + 0.08 * np.cos(2 * np.pi * (doy - 358) / 365.25)
