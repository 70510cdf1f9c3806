"""Parameters of a generation: scales, dirty-data rates and the derived sizes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .vocab import DEFECTS

SCALES: dict[str, tuple[int, int]] = {
    "demo": (50_000, 90),
    "1m": (1_000_000, 365),
    "10m": (10_000_000, 365),
}
DEFAULT_START_DATE = dt.date(2026, 1, 1)
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class DirtyRates:
    """How dirty the drop is. Rates are per sales row unless said otherwise.

    Row defects (`wrong_field_count` ... `bad_region`) make a row invalid with exactly that
    quarantine reason (docs/interfaces.md). The others are valid oddities the pipeline must
    digest. Day lists are day indexes counted from the first delivery (0).
    """

    duplicate_in_file: float = 0.01
    duplicate_across_files: float = 0.01
    duplicate_reformatted: float = 0.2  # share of cross-file duplicates spelt differently
    correction_across_files: float = 0.008
    correction_in_file: float = 0.002
    correction_moves_ts: float = 0.35  # share of corrections that change sale_ts
    wrong_field_count: float = 0.001
    empty_sale_id: float = 0.0007
    empty_store_id: float = 0.0007
    empty_product_id: float = 0.0007
    bad_sale_ts: float = 0.001
    bad_quantity: float = 0.0015
    bad_unit_price: float = 0.001
    bad_sale_amount: float = 0.001
    amount_mismatch: float = 0.0015
    bad_region: float = 0.001
    odd_region_spelling: float = 0.08  # " north ", "SOUTH": valid
    amount_off_by_cent: float = 0.003  # sale_amount 0.01 away from quantity x unit_price: valid
    ts_utc_z: float = 0.25  # sale_ts written in UTC with "Z"
    ts_no_offset: float = 0.15  # sale_ts written in UTC without an offset
    near_midnight: float = 0.03  # sales between 23:00 and 01:00 Moscow time
    late_sale: float = 0.03  # sales 2 to 10 days older than the delivery
    anonymous: float = 0.3
    unknown_store: float = 0.002
    unknown_product: float = 0.003
    unknown_customer: float = 0.003
    promo_price: float = 0.05
    bom_file: float = 0.15  # per sales file: UTF-8 byte-order mark
    plain_csv_file: float = 0.15  # per sales file: .csv instead of .csv.gz
    customer_null_field: float = 0.04  # per customer and nullable field: null
    customer_missing_field: float = 0.02  # per customer: `city` key absent
    customer_update: float = 0.25  # share of customers changed later (again: 0.3 of those)
    # Deliveries that re-send the whole previous day's file in front of a small day of their
    # own (duplicate ratio above 0.5). None: one, in the middle of the first generation's days
    # (fixed then: appended days never add one).
    full_resend_days: tuple[int, ...] | None = None
    resend_own_share: float = 0.3
    corrupt_gzip_days: tuple[int, ...] = ()  # off by default: unreadable .csv.gz
    bad_header_days: tuple[int, ...] = ()  # off by default: header that does not match

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {f.name} must be within [0, 1], got {value}")
        if sum(self.reason_rates()) > 0.5:
            raise ValueError("the row defect rates add up to more than 0.5")
        if self.ts_utc_z + self.ts_no_offset > 1.0:
            raise ValueError("ts_utc_z + ts_no_offset must not exceed 1")

    def reason_rates(self) -> tuple[float, ...]:
        """Rates of the row defects, in the order of `vocab.DEFECTS`.

        Returns:
            One rate per reason code.
        """
        return tuple(getattr(self, r) for r in DEFECTS)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists).

        Returns:
            Field name -> value.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DirtyRates:
        """Rebuild rates written by `to_json`.

        Args:
            data: Field name -> value.

        Returns:
            The rates.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**{k: v for k, v in kwargs.items() if k in names})


@dataclass(frozen=True)
class Params:
    """Everything a drop is a pure function of."""

    seed: int
    scale: str
    daily_rows: Fraction  # mean sales rows (records) a day, before weekly and yearly cycles
    days: int  # days delivered so far
    start_date: dt.date
    rates: DirtyRates = field(default_factory=DirtyRates)
    timezone: str = "Europe/Moscow"

    @property
    def sales_rows(self) -> int:
        """About how many sales rows the drop holds."""
        return round(self.daily_rows * self.days)

    @functools.cached_property
    def n_base_customers(self) -> int:
        """Customers delivered on the first day (registered before it)."""
        return int(min(300_000, max(200, int(self.daily_rows * 5))))

    @functools.cached_property
    def n_new_customers_per_day(self) -> int:
        """Customers registering each day."""
        return max(1, self.n_base_customers // 300)

    def customers_until(self, day: int) -> int:
        """Customers registered up to and including a day.

        Args:
            day: A day index.

        Returns:
            The size of the customer pool on that day.
        """
        return self.n_base_customers + (day + 1) * self.n_new_customers_per_day

    @functools.cached_property
    def resend_days(self) -> frozenset[int]:
        """Day indexes of full re-send deliveries."""
        return frozenset(d for d in (self.rates.full_resend_days or ()) if d > 0)

    def generator_json(self) -> dict[str, Any]:
        """The manifest's `generator` block.

        Returns:
            A JSON-ready dict.
        """
        return {
            "seed": self.seed,
            "scale": self.scale,
            "sales_rows": self.sales_rows,
            "days": self.days,
            "daily_rows": str(self.daily_rows),
            "start_date": self.start_date.isoformat(),
            "rates": self.rates.to_json(),
            "version": GENERATOR_VERSION,
        }

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Params:
        """Rebuild the parameters of an existing drop from its manifest.

        Args:
            manifest: A manifest written by this generator.

        Returns:
            The parameters.
        """
        g = manifest["generator"]
        if g.get("version") != GENERATOR_VERSION:
            raise ValueError(f"manifest of generator version {g.get('version')!r} is not supported")
        return cls(
            seed=int(g["seed"]),
            scale=str(g["scale"]),
            daily_rows=Fraction(g["daily_rows"]),
            days=int(g["days"]),
            start_date=dt.date.fromisoformat(g["start_date"]),
            rates=DirtyRates.from_json(g["rates"]),
            timezone=str(manifest["timezone"]),
        )
