"""``mm-trio trades`` and ``mm-trio orders``: the state store's fill ledger and order journal,
read-only, as an aligned table (with a total line) or as CSV.

The store is opened with :class:`~mm_trio.store.reader.StoreReader`: never created, migrated
or written, readable while a trader runs on it. Numbers are printed exactly as stored, in
fixed-point notation (``1E-8`` is printed ``0.00000001``: the same digits and exponent, so
``Decimal(text)`` gives back the stored value); times as ISO-8601 UTC with milliseconds.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import TextIO

from mm_trio.domain.errors import UsageError
from mm_trio.domain.model import ZERO, SymbolError, parse_symbol
from mm_trio.store.reader import OrderView, StoreReader
from mm_trio.store.schema import SUM_PRECISION, Fill, StoreError

__all__ = [
    "ORDER_COLUMNS",
    "TRADE_COLUMNS",
    "iso_time",
    "order_rows",
    "orders_command",
    "trade_rows",
    "trades_command",
]

TRADE_COLUMNS = (
    "symbol",
    "trade_id",
    "order_id",
    "client_id",
    "side",
    "price",
    "qty",
    "fee",
    "fee_asset",
    "time",
)
ORDER_COLUMNS = (
    "symbol",
    "client_id",
    "side",
    "level",
    "price",
    "qty",
    "generation",
    "status",
    "reason",
    "filled",
    "order_id",
    "created",
    "updated",
)
_RIGHT_ALIGNED = frozenset(
    {"trade_id", "order_id", "price", "qty", "fee", "level", "generation", "filled"}
)
_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
_MS_PER_S = 1000
_COLUMN_GAP = "  "


def iso_time(ts_ns: int) -> str:
    """``2026-12-01T11:22:33.456Z``: UTC, milliseconds (truncated, never rounded up)."""
    seconds, rest_ns = divmod(ts_ns, _NS_PER_S)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest_ns // _NS_PER_MS:03d}Z"


def _num(value: Decimal) -> str:
    return format(value, "f")


def trade_rows(fills: Sequence[Fill]) -> list[list[str]]:
    return [
        [
            f.symbol,
            f.trade_id,
            f.order_id,
            f.client_id,
            f.side,
            _num(f.price),
            _num(f.qty),
            _num(f.fee),
            f.fee_asset,
            iso_time(f.ts_ns),
        ]
        for f in fills
    ]


def order_rows(views: Sequence[OrderView]) -> list[list[str]]:
    rows = []
    for v in views:
        i = v.intent
        filled = _num(Decimal(v.filled)) if v.filled else ""
        rows.append(
            [
                i.symbol,
                i.client_id,
                i.side,
                str(i.level),
                _num(i.price),
                _num(i.qty),
                str(i.generation),
                v.status,
                v.reason,
                filled,
                v.order_id,
                iso_time(i.ts_ns),
                iso_time(v.updated_ns),
            ]
        )
    return rows


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: numbers right, text left; no trailing spaces."""
    widths = [max([len(c), *(len(r[k]) for r in rows)]) for k, c in enumerate(columns)]
    lines = []
    for row in (list(columns), *rows):
        cells = [
            cell.rjust(w) if col in _RIGHT_ALIGNED else cell.ljust(w)
            for col, cell, w in zip(columns, row, widths, strict=True)
        ]
        lines.append(_COLUMN_GAP.join(cells).rstrip())
    return "\n".join(lines)


def trades_total(fills: Sequence[Fill]) -> str:
    """``3 fills; BTC/USDT: 2 fills, bought 0.002, sold 0.001``: the quantities exact."""
    per: dict[str, list[Decimal]] = {}
    counts: Counter[str] = Counter()
    with localcontext() as ctx:
        ctx.prec = SUM_PRECISION  # a sum of quantities never rounds
        for f in fills:
            bought_sold = per.setdefault(f.symbol, [ZERO, ZERO])
            bought_sold[0 if f.side == "BUY" else 1] += f.qty
            counts[f.symbol] += 1
    parts = [
        f"{s}: {counts[s]} {_plural(counts[s], 'fill')}, bought {_num(b)}, sold {_num(sd)}"
        for s, (b, sd) in sorted(per.items())
    ]
    return "; ".join([f"total: {len(fills)} {_plural(len(fills), 'fill')}", *parts])


def orders_total(views: Sequence[OrderView]) -> str:
    """``5 orders, 2 open; FILLED 3, NEW 1, SENT 1``."""
    statuses = Counter(v.status for v in views)
    n_open = sum(1 for v in views if v.open)
    by_status = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
    head = f"total: {len(views)} {_plural(len(views), 'order')}, {n_open} open"
    return f"{head}; {by_status}" if by_status else head


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _symbol_arg(symbol: str | None) -> str | None:
    if symbol is not None:
        try:
            parse_symbol(symbol)
        except SymbolError as exc:
            raise UsageError(f"--symbol: {exc}") from None
    return symbol


def _open(state: Path) -> StoreReader:
    try:
        return StoreReader.open(state)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def trades_command(state: Path, symbol: str | None, *, as_csv: bool, out: TextIO) -> None:
    """Print the fill ledger of ``state``; :class:`UsageError` for a bad file or symbol."""
    symbol = _symbol_arg(symbol)
    with _open(state) as reader:
        try:
            fills = reader.fills(symbol)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    _print_rows(TRADE_COLUMNS, trade_rows(fills), trades_total(fills), as_csv, out)


def orders_command(
    state: Path, symbol: str | None, *, open_only: bool, as_csv: bool, out: TextIO
) -> None:
    """Print the journal's view of our orders; :class:`UsageError` for a bad file or symbol."""
    symbol = _symbol_arg(symbol)
    with _open(state) as reader:
        try:
            views = reader.orders(symbol, open_only=open_only)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    _print_rows(ORDER_COLUMNS, order_rows(views), orders_total(views), as_csv, out)


def _print_rows(
    columns: Sequence[str],
    rows: list[list[str]],
    total: str,
    as_csv: bool,
    out: TextIO,
) -> None:
    """The rows as CSV, or as a table (when there are any) followed by the total line."""
    if as_csv:
        write_csv(columns, rows, out)
        return
    if rows:
        print(table(columns, rows), file=out)
    print(total, file=out)
