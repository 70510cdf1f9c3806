"""The truth of a drop: every sales row's bucket by the rules of docs/interfaces.md.

Files are fed in delivery order. The state is kept per sale id in NumPy arrays (about 50 bytes
a sale), so 10 million sales fit in well under a gigabyte. Money is integer kopecks.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

import numpy as np

from contract.sales import REGIONS

from .hashing import mix64
from .sales import Rows
from .vocab import DEFECTS


def row_hash(gi: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
    """A 64-bit hash of the normalized values of rows (equal values, equal hash).

    Args:
        gi: The dense sale-id index per row.
        c: The row columns.

    Returns:
        uint64 per row.
    """
    h = mix64(gi.astype(np.int64).view(np.uint64))
    for name in ("ts", "store", "cust", "prod", "q", "p", "amt", "region"):
        h = mix64(h ^ c[name].astype(np.int64).view(np.uint64))
    return h


def kop_text(kop: int) -> str:
    """Kopecks as a two-decimal string.

    Args:
        kop: An amount in kopecks.

    Returns:
        e.g. ``"123.45"``.
    """
    sign = "-" if kop < 0 else ""
    kop = abs(int(kop))
    return f"{sign}{kop // 100}.{kop % 100:02d}"


@dataclass
class FileStats:
    """Counts of one sales file that do not depend on later files."""

    name: str
    delivery_date: str
    readable: bool
    failure: str | None
    rows_in: int = 0
    rows_kept: int = 0
    rows_duplicate: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)


class Truth:
    """Applies the sales rules file by file and reports the manifest's numbers.

    Args:
        total_sales: The number of distinct sale ids (dense indexes 0..total_sales-1).
    """

    def __init__(self, total_sales: int) -> None:
        self.nver = np.zeros(total_sales, np.uint8)  # kept versions so far
        self.h_first = np.zeros(total_sales, np.uint64)
        self.h_last = np.zeros(total_sales, np.uint64)
        self.middle: dict[int, list[int]] = {}  # hashes of versions between first and last
        self.last_file = np.full(total_sales, -1, np.int32)
        self.q = np.zeros(total_sales, np.int32)
        self.amt = np.zeros(total_sales, np.int64)
        self.ts = np.zeros(total_sales, np.int64)
        self.region = np.zeros(total_sales, np.int8)
        self.prod = np.zeros(total_sales, np.int32)
        self.files: list[FileStats] = []

    def add_unreadable(self, name: str, delivery_date: str, failure: str) -> None:
        """Record a file that cannot be read (its rows count nowhere).

        Args:
            name: File name relative to the drop.
            delivery_date: ISO date from the name.
            failure: Why it cannot be read.
        """
        self.files.append(FileStats(name, delivery_date, False, failure))

    def add_file(self, name: str, delivery_date: str, rows: Rows, gi: np.ndarray) -> None:
        """Apply the rules to the next file in delivery order.

        Args:
            name: File name relative to the drop.
            delivery_date: ISO date from the name.
            rows: The file's rows in file order.
            gi: Dense sale-id index per row.
        """
        fidx = len(self.files)
        c = rows.cols
        stats = FileStats(name, delivery_date, True, None, rows_in=len(rows))
        counts = np.bincount(c["defect"], minlength=len(DEFECTS) + 1)
        stats.quarantined = {r: int(counts[i + 1]) for i, r in enumerate(DEFECTS) if counts[i + 1]}
        vi = np.nonzero(c["defect"] == 0)[0]
        g = gi[vi]
        h = row_hash(g, {k: v[vi] for k, v in c.items()})
        # 1. duplicates: the first row with given values is kept, within the file ...
        order = np.lexsort((np.arange(len(vi)), h, g))
        gs, hs = g[order], h[order]
        first_sorted = np.ones(len(vi), bool)
        first_sorted[1:] = (gs[1:] != gs[:-1]) | (hs[1:] != hs[:-1])
        is_first = np.empty(len(vi), bool)
        is_first[order] = first_sorted
        cand = np.nonzero(is_first)[0]
        gc, hc = g[cand], h[cand]
        nv = self.nver[gc]
        seen = (nv > 0) & ((self.h_first[gc] == hc) | (self.h_last[gc] == hc))
        # ... and across earlier files (versions between the first and last are rare).
        for i in np.nonzero((nv >= 3) & ~seen)[0]:
            if int(hc[i]) in self.middle.get(int(gc[i]), ()):
                seen[i] = True
        kept = cand[~seen]
        stats.rows_kept = len(kept)
        stats.rows_duplicate = len(vi) - len(kept)
        self.files.append(stats)
        # 2. superseded: the last kept row of a sale id wins; record the versions.
        gk, hk = g[kept], h[kept]
        rk = vi[kept]
        uniq, counts_k = np.unique(gk, return_counts=True)
        single = counts_k[np.searchsorted(uniq, gk)] == 1
        s = np.nonzero(single)[0]
        gs1, hs1 = gk[s], hk[s]
        old = self.nver[gs1]
        for i in np.nonzero(old >= 2)[0]:
            self.middle.setdefault(int(gs1[i]), []).append(int(self.h_last[gs1[i]]))
        self.h_first[gs1] = np.where(old == 0, hs1, self.h_first[gs1])
        self.h_last[gs1] = hs1
        self.nver[gs1] = np.minimum(old.astype(np.int32) + 1, 255).astype(np.uint8)
        self._set_last(gs1, rk[s], c, fidx)
        for i in np.nonzero(~single)[0]:  # several versions of one sale in this file: rare
            gi_, hi_ = int(gk[i]), hk[i]
            n_old = int(self.nver[gi_])
            if n_old >= 2:
                self.middle.setdefault(gi_, []).append(int(self.h_last[gi_]))
            if n_old == 0:
                self.h_first[gi_] = hi_
            self.h_last[gi_] = hi_
            self.nver[gi_] = min(n_old + 1, 255)
            self._set_last(np.array([gi_]), np.array([rk[i]]), c, fidx)

    def _set_last(self, g: np.ndarray, r: np.ndarray, c: dict[str, np.ndarray], fidx: int) -> None:
        self.last_file[g] = fidx
        self.q[g] = c["q"][r]
        self.amt[g] = c["amt"][r]
        self.ts[g] = c["ts"][r]
        self.region[g] = c["region"][r]
        self.prod[g] = c["prod"][r]

    def report(self, timezone: str) -> dict:
        """The manifest's numbers for the drop as it stands.

        Args:
            timezone: The business time zone (for `by_sale_date`).

        Returns:
            A dict with `files`, `totals`, `by_region_product` and `by_sale_date`.
        """
        valid = np.nonzero(self.nver > 0)[0]
        lf = self.last_file[valid]
        nfiles = len(self.files)
        n_valid = np.bincount(lf, minlength=nfiles)
        units = np.zeros(nfiles, np.int64)
        np.add.at(units, lf, self.q[valid].astype(np.int64))
        revenue = np.zeros(nfiles, np.int64)
        np.add.at(revenue, lf, self.amt[valid])
        files: dict[str, dict] = {}
        totals = dict.fromkeys(
            ("rows_in", "rows_valid", "rows_duplicate", "rows_superseded", "rows_quarantined"), 0
        )
        for i, f in enumerate(self.files):
            nq = sum(f.quarantined.values())
            entry = {
                "delivery_date": f.delivery_date,
                "rows_in": f.rows_in,
                "rows_valid": int(n_valid[i]),
                "rows_duplicate": f.rows_duplicate,
                "rows_superseded": f.rows_kept - int(n_valid[i]),
                "rows_quarantined": nq,
                "quarantined_by_reason": dict(f.quarantined),
                "valid_units": int(units[i]),
                "valid_revenue": kop_text(int(revenue[i])),
                "readable": f.readable,
            }
            if not f.readable:
                entry["failure"] = f.failure
            files[f.name] = entry
            for key in totals:
                totals[key] += entry[key]
        totals["n_sales"] = len(valid)
        totals["units"] = int(units.sum())
        totals["revenue"] = kop_text(int(revenue.sum()))
        return {
            "files": files,
            "totals": totals,
            "by_region_product": self._by_region_product(valid),
            "by_sale_date": self._by_sale_date(valid, timezone),
        }

    def _grouped(self, key: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, ...]:
        keys, inv = np.unique(key, return_inverse=True)
        n = np.bincount(inv, minlength=len(keys))
        units = np.zeros(len(keys), np.int64)
        np.add.at(units, inv, self.q[valid].astype(np.int64))
        rev = np.zeros(len(keys), np.int64)
        np.add.at(rev, inv, self.amt[valid])
        return keys, n, units, rev

    def _by_region_product(self, valid: np.ndarray) -> list[dict]:
        key = self.region[valid].astype(np.int64) * 100_000 + self.prod[valid]
        keys, n, units, rev = self._grouped(key, valid)
        return [
            {
                "region": REGIONS[int(k) // 100_000],
                "product_id": f"PR-{int(k) % 100_000:04d}",
                "n_sales": int(n[i]),
                "units": int(units[i]),
                "revenue": kop_text(int(rev[i])),
            }
            for i, k in enumerate(keys)
        ]

    def _by_sale_date(self, valid: np.ndarray, timezone: str) -> list[dict]:
        days = local_days(self.ts[valid], timezone)
        keys, n, units, rev = self._grouped(days, valid)
        epoch = dt.date(1970, 1, 1)
        return [
            {
                "sale_date": (epoch + dt.timedelta(days=int(k))).isoformat(),
                "n_sales": int(n[i]),
                "units": int(units[i]),
                "revenue": kop_text(int(rev[i])),
            }
            for i, k in enumerate(keys)
        ]


def local_days(ts: np.ndarray, timezone: str) -> np.ndarray:
    """Local calendar days (days since 1970-01-01) of UTC instants in a time zone.

    Args:
        ts: Epoch seconds (UTC).
        timezone: An IANA time zone name.

    Returns:
        int64 day numbers.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    # UTC offsets only change on quarter hours: look them up once per quarter hour.
    quarters, inv = np.unique(ts // 900, return_inverse=True)
    offsets = np.array(
        [
            int(dt.datetime.fromtimestamp(int(q) * 900, tz).utcoffset().total_seconds())
            for q in quarters
        ],
        dtype=np.int64,
    )
    return (ts + offsets[inv]) // 86400
