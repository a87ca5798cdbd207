"""Domain model: symbols, symbol specs, order requests and the venue event union.

Everything here is an immutable msgspec Struct with exact numbers (``Decimal``); the
events form a tagged union (``Event``) that adapters produce once, at their boundary.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

import msgspec

Side = Literal["BUY", "SELL"]
OrderStatus = Literal[
    "PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
ZERO = Decimal(0)


class SymbolError(ValueError):
    """A symbol that is malformed or that the venue does not list."""


def parse_symbol(symbol: str) -> tuple[str, str]:
    """Split a unified ``BASE/QUOTE`` symbol; raise :class:`SymbolError` naming it if malformed."""
    parts = symbol.split("/")
    if (
        len(parts) != 2
        or not all(p and p.isalnum() and p.isupper() for p in parts)
        or symbol != symbol.strip()
    ):
        raise SymbolError(f"malformed symbol {symbol!r}: expected BASE/QUOTE such as BTC/USDT")
    return parts[0], parts[1]


def native_symbol(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (the form only adapters use)."""
    base, quote = parse_symbol(symbol)
    return base + quote


def floor_to(value: Decimal, increment: Decimal) -> Decimal:
    """Largest multiple of ``increment`` that is <= ``value``."""
    return (value / increment).to_integral_value(rounding=ROUND_FLOOR) * increment


def ceil_to(value: Decimal, increment: Decimal) -> Decimal:
    """Smallest multiple of ``increment`` that is >= ``value``."""
    return (value / increment).to_integral_value(rounding=ROUND_CEILING) * increment


class SymbolSpec(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Trading rules of one symbol, as the venue states them."""

    symbol: str  # unified BASE/QUOTE
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_price: Decimal = ZERO
    max_price: Decimal = Decimal("1e12")
    min_qty: Decimal = ZERO
    max_qty: Decimal = Decimal("1e12")
    min_notional: Decimal = ZERO
    max_orders: int = 200

    def on_tick(self, price: Decimal) -> bool:
        return price % self.tick_size == 0

    def on_step(self, qty: Decimal) -> bool:
        return qty % self.step_size == 0

    def filter_error(self, price: Decimal | None, qty: Decimal) -> str | None:
        """Why ``(price, qty)`` breaks a filter, or ``None`` if it passes every filter.

        ``price`` may be ``None`` for a market order (then only the quantity filters apply).
        """
        if price is not None:
            if price <= 0 or price < self.min_price or price > self.max_price:
                return f"PRICE_FILTER: price {price} outside [{self.min_price}, {self.max_price}]"
            if not self.on_tick(price):
                return f"PRICE_FILTER: price {price} not a multiple of tick {self.tick_size}"
        if qty <= 0 or qty < self.min_qty or qty > self.max_qty:
            return f"LOT_SIZE: quantity {qty} outside [{self.min_qty}, {self.max_qty}]"
        if not self.on_step(qty):
            return f"LOT_SIZE: quantity {qty} not a multiple of step {self.step_size}"
        if price is not None and price * qty < self.min_notional:
            return f"NOTIONAL: {price * qty} below min notional {self.min_notional}"
        return None


# --------------------------------------------------------------------------- events
# The structs here are frozen and hold only strings, numbers, Decimals and tuples of strings,
# so they can never be part of a reference cycle: ``gc=False`` keeps the garbage collector
# from tracking them. Hundreds of thousands are made a minute on a busy stream; tracked, each
# would count towards the next collection, and every full collection would walk them all.

# Every event carries ``ts``: venue/receive time in integer nanoseconds.


class Quote(msgspec.Struct, frozen=True, gc=False, tag="quote", kw_only=True):
    """Best bid and ask."""

    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


class Trade(msgspec.Struct, frozen=True, gc=False, tag="trade", kw_only=True):
    """A public trade. ``buyer_maker`` True means the aggressor sold (trade at the bid)."""

    symbol: str
    price: Decimal
    qty: Decimal
    buyer_maker: bool
    trade_id: int
    ts: int


class OrderUpdate(msgspec.Struct, frozen=True, gc=False, tag="order", kw_only=True):
    """An execution report for one of our orders.

    ``cum_qty`` is the cumulative filled quantity; ``last_qty``/``last_price``/``fee``
    describe the fill this report carries (zero when it carries none); ``trade_id`` is
    the venue's id of that fill (``None`` when there is no fill).
    """

    symbol: str
    client_id: str
    side: Side
    price: Decimal
    qty: Decimal
    status: OrderStatus
    cum_qty: Decimal = ZERO
    last_qty: Decimal = ZERO
    last_price: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""
    trade_id: int | None = None
    order_id: str = ""
    reason: str = ""
    maker: bool = True
    ts: int = 0


class BalanceUpdate(msgspec.Struct, frozen=True, gc=False, tag="balance", kw_only=True):
    """Free and locked amount of one asset after a change."""

    asset: str
    free: Decimal
    locked: Decimal
    ts: int = 0


StreamState = Literal["connected", "disconnected", "resynced"]


class StreamStatus(msgspec.Struct, frozen=True, gc=False, tag="stream", kw_only=True):
    """State of the venue connection. ``symbols`` empty means all symbols."""

    status: StreamState
    symbols: tuple[str, ...] = ()
    reason: str = ""
    ts: int = 0


Event = Quote | Trade | OrderUpdate | BalanceUpdate | StreamStatus


# --------------------------------------------------------------------------- orders


class OrderRequest(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A limit order we want placed. ``post_only`` maps to LIMIT_MAKER on Binance."""

    symbol: str
    client_id: str
    side: Side
    price: Decimal
    qty: Decimal
    post_only: bool = True


class OpenOrder(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An order as the venue reports it when asked (open orders, query order)."""

    symbol: str
    client_id: str
    order_id: str
    side: Side
    price: Decimal
    qty: Decimal
    cum_qty: Decimal
    status: OrderStatus
    ts: int = 0


CLOCK_TOLERANCE_NS = 1_000_000_000
"""How far the venue's order timestamps may run behind our venue-corrected clock (1 s)."""


def order_mismatch(
    found: OpenOrder, *, side: Side, price: Decimal, qty: Decimal, not_before_ns: int
) -> str | None:
    """Why ``found`` (the venue's answer to a query by client id) cannot be the order we
    sent with ``side``/``price``/``qty`` no earlier than ``not_before_ns``; ``None`` if it
    can. A mismatch means the id names some other order (an earlier run's, say): it must
    never be adopted, nor its fills taken for ours. ``found.ts == 0`` means no time known.
    """
    if found.side != side:
        return f"side {found.side} != {side}"
    if found.price != price:
        return f"price {found.price} != {price}"
    if found.qty != qty:
        return f"quantity {found.qty} != {qty}"
    if found.ts and found.ts < not_before_ns - CLOCK_TOLERANCE_NS:
        return f"last updated at {found.ts} ns, before this symbol started ({not_before_ns} ns)"
    return None


class Balance(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked
