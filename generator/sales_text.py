"""The CSV text of sales rows, dirty cases included (the defects of `vocab.DEFECTS`).

`render_lines` turns a `Rows` table into CSV lines with Arrow compute, one column at a time;
each defect replaces one field of its rows by one of several broken variants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .vocab import DEFECTS, REGION_FORMS

if TYPE_CHECKING:
    from .sales import Rows

#: Moscow's offset from UTC: sale timestamps without an offset are local time in the file.
MSK_OFFSET = 3 * 3600

#: Reason codes as integers: 0 valid, then 1.. in the order of vocab.DEFECTS.
R = {name: i + 1 for i, name in enumerate(DEFECTS)}

_REGION_TABLE = pa.array([form for forms in REGION_FORMS for form in forms])
_REGION_TABLE_WIDTH = len(REGION_FORMS[0])
_TS_SUFFIX = pa.array(["+03:00", "Z", ""])


def _money(kop: np.ndarray) -> np.ndarray:
    """Kopecks as two-decimal text (NumPy strings; for small arrays)."""
    a = np.abs(kop)
    text = np.strings.add(
        np.strings.add((a // 100).astype(str), "."), np.strings.zfill((a % 100).astype(str), 2)
    )
    return np.where(kop < 0, np.strings.add("-", text), text)


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _arrow_money(kop: np.ndarray) -> pa.Array:
    units = pc.cast(pa.array(kop // 100), pa.string())
    cents = pc.utf8_lpad(pc.cast(pa.array(kop % 100), pa.string()), width=2, padding="0")
    return _join(units, ".", cents)


def _zfill(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width=width, padding="0")


def render_lines(rows: Rows, day0: int) -> pa.Array:
    """The CSV lines (without line ends) of sales rows.

    Args:
        rows: The rows.
        day0: The epoch day of the drop's first day (sale ids carry the origin date).

    Returns:
        A string array, one line per row.
    """
    c = rows.cols
    if len(rows) == 0:
        return pa.array([], pa.string())
    od_days = np.arange(int(c["od"].max()) + 1) + day0
    ymd = np.strings.replace(np.datetime_as_string(od_days.astype("datetime64[D]")), "-", "")
    prefix = pa.array(np.strings.add(np.strings.add("S-", ymd), "-").tolist())
    local = c["ts"] + np.where(c["tsf"] == 0, MSK_OFFSET, 0)
    # Arrow casts timestamp[s] to "YYYY-MM-DD HH:MM:SS".
    ts_text = pc.replace_substring(
        pc.cast(pa.array(local, pa.timestamp("s")), pa.string()), " ", "T", max_replacements=1
    )
    cust = _join("CU-", _zfill(np.abs(c["cust"]), 6))
    fields: list[pa.Array] = [
        _join(prefix.take(pa.array(c["od"])), _zfill(c["j"], 6)),
        _join(ts_text, _TS_SUFFIX.take(pa.array(c["tsf"]))),
        _join("ST-", _zfill(c["store"], 3)),
        pc.if_else(pa.array(c["cust"] < 0), "", cust),
        _join("PR-", _zfill(c["prod"], 4)),
        pc.cast(pa.array(c["q"]), pa.string()),
        _arrow_money(c["p"]),
        _arrow_money(c["amt"]),
        _REGION_TABLE.take(pa.array(c["region"] * _REGION_TABLE_WIDTH + c["regf"])),
    ]
    defect, var = c["defect"], c["dvar"]
    for code, col, make in _DEFECTS:
        mask = defect == R[code]
        idx = np.nonzero(mask)[0]
        if len(idx) == 0:
            continue
        sub = {k: v[idx] for k, v in c.items()}
        sub["ts_text"] = np.array(ts_text.take(pa.array(idx)).to_pylist(), dtype=str)
        variants = make(sub)
        which = var[idx] % len(variants)
        values = np.empty(len(idx), dtype=object)
        for i, v in enumerate(variants):
            m = which == i
            values[m] = v[m] if isinstance(v, np.ndarray) else v
        fields[col] = pc.replace_with_mask(
            fields[col], pa.array(mask), pa.array(values.tolist(), pa.string())
        )
    lines = pc.binary_join_element_wise(*fields, ",")
    wrong = defect == R["wrong_field_count"]
    if wrong.any():  # a field too few (no region) or one too many
        idx = pa.array(np.nonzero(wrong)[0])
        short = pc.binary_join_element_wise(*(f.take(idx) for f in fields[:8]), ",")
        extra = pc.binary_join_element_wise(lines.take(idx), "promo", ",")
        odd = pa.array(var[wrong] % 2 == 1)
        lines = pc.replace_with_mask(lines, pa.array(wrong), pc.if_else(odd, extra, short))
    return lines


def lines_text(lines: pa.Array) -> bytes:
    """The lines as one UTF-8 text, each ended by a newline."""
    ended = pc.binary_join_element_wise(lines, "", "\n").cast(pa.large_string())
    offsets = np.frombuffer(ended.buffers()[1], np.int64)[
        ended.offset : ended.offset + len(ended) + 1
    ]
    return ended.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _russian_ts(s: dict[str, np.ndarray]) -> np.ndarray:
    t, sl, add = s["ts_text"], np.strings.slice, np.strings.add
    date = add(add(add(add(sl(t, 8, 10), "."), sl(t, 5, 7)), "."), sl(t, 0, 4))
    return add(add(date, " "), sl(t, 11, 19))


def _hour_25(s: dict[str, np.ndarray]) -> np.ndarray:
    t, sl, add = s["ts_text"], np.strings.slice, np.strings.add
    return add(add(add(sl(t, 0, 11), "25"), sl(t, 13, 19)), "+03:00")


def _month_13(s: dict[str, np.ndarray]) -> np.ndarray:
    t, sl, add = s["ts_text"], np.strings.slice, np.strings.add
    return add(add(sl(t, 0, 4), "-13-"), sl(t, 8, 19))


def _feb_30(s: dict[str, np.ndarray]) -> np.ndarray:
    t, add = s["ts_text"], np.strings.add
    return add(add("2026-02-30T", np.strings.slice(t, 11, 19)), "+03:00")


def _comma_amount(s: dict[str, np.ndarray]) -> np.ndarray:
    text = np.strings.replace(_money(s["amt"]), ".", ",")  # a decimal comma, quoted
    return np.strings.add(np.strings.add('"', text), '"')


def _mismatches(s: dict[str, np.ndarray]) -> list[np.ndarray]:
    # Built from the exact amount q * p, not from the (possibly jittered by a kopeck) amount,
    # so that every variant is more than 0.01 away from quantity x unit_price.
    q, p = s["q"], s["p"]
    exact = q * p
    return [
        _money(exact + 2),
        _money(exact * 10),
        _money(exact + 100 * (1 + q)),
        _money(np.where(exact > 2, exact - 2, exact + 5)),
        _money(np.where((q > 1) & (p > 1), p, exact + 50)),
        _money(exact + 1000),
    ]


_EMPTY = ["", " ", "  "]
# (reason, column, variants of the broken text given the rows' columns)
_DEFECTS: tuple[tuple[str, int, Callable[[dict[str, np.ndarray]], list]], ...] = (
    ("empty_sale_id", 0, lambda s: _EMPTY),
    ("empty_store_id", 2, lambda s: _EMPTY),
    ("empty_product_id", 4, lambda s: _EMPTY),
    (
        "bad_sale_ts",
        1,
        lambda s: [_russian_ts(s), "", "not a date", _hour_25(s), _month_13(s), _feb_30(s)],
    ),
    ("bad_quantity", 5, lambda s: ["0", "-1", "2.5", "abc", "", "2.0"]),
    (
        "bad_unit_price",
        6,
        lambda s: ["0", "0.00", np.strings.add("-", _money(s["p"])), "abc", "", "free"],
    ),
    ("bad_sale_amount", 7, lambda s: ["abc", "", _comma_amount(s), "12.3.4", "N/A", "1 000"]),
    ("amount_mismatch", 7, _mismatches),
    ("bad_region", 8, lambda s: ["Central", "", "Nort", "N/A", "Siberia", "Sever"]),
)
