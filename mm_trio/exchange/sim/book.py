"""Per-symbol state of the simulated venue's matching engine: our resting orders in
price-time priority and the latest market data (displayed quantities not yet used up)."""

from __future__ import annotations

from bisect import insort
from decimal import Decimal

from mm_trio.domain.model import ZERO, OpenOrder, Quote, Side, SymbolSpec, Trade


class RestingOrder:
    """A resting order (mutable, internal to the engine)."""

    __slots__ = (
        "symbol",
        "client_id",
        "order_id",
        "side",
        "is_buy",
        "price",
        "qty",
        "cum_qty",
        "status",
        "ts",
        "seq",
    )

    def __init__(
        self,
        symbol: str,
        client_id: str,
        order_id: str,
        side: Side,
        price: Decimal,
        qty: Decimal,
        ts: int,
        seq: int,
    ) -> None:
        self.symbol = symbol
        self.client_id = client_id
        self.order_id = order_id
        self.side: Side = side
        self.is_buy = side == "BUY"
        self.price = price
        self.qty = qty
        self.cum_qty = ZERO
        self.status = "NEW"
        self.ts = ts
        self.seq = seq  # placement order across the venue: the time priority

    def snapshot(self) -> OpenOrder:
        return OpenOrder(
            symbol=self.symbol,
            client_id=self.client_id,
            order_id=self.order_id,
            side=self.side,
            price=self.price,
            qty=self.qty,
            cum_qty=self.cum_qty,
            status=self.status,  # type: ignore[arg-type]
            ts=self.ts,
        )


def _bid_key(o: RestingOrder) -> tuple[Decimal, int]:
    return (-o.price, o.seq)


def _ask_key(o: RestingOrder) -> tuple[Decimal, int]:
    return (o.price, o.seq)


class SymbolBook:
    """One symbol: our resting orders in priority order and the latest market data."""

    __slots__ = (
        "spec",
        "base",
        "quote",
        "bids",
        "asks",
        "by_cid",
        "last_quote",
        "last_trade",
        "bid_avail",
        "ask_avail",
    )

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.base = spec.base
        self.quote = spec.quote
        self.bids: list[RestingOrder] = []  # our BUYs, best (highest) price first, then time
        self.asks: list[RestingOrder] = []  # our SELLs, best (lowest) price first, then time
        self.by_cid: dict[str, RestingOrder] = {}
        self.last_quote: Quote | None = None
        self.last_trade: Trade | None = None
        self.bid_avail = ZERO  # displayed bid qty not yet used up by our fills
        self.ask_avail = ZERO

    def rest(self, order: RestingOrder) -> None:
        """Put ``order`` in its side's queue, behind every order at a better or equal price."""
        self.by_cid[order.client_id] = order
        if order.is_buy:
            insort(self.bids, order, key=_bid_key)
        else:
            insort(self.asks, order, key=_ask_key)

    def remove(self, client_id: str) -> RestingOrder | None:
        """Take a resting order out of the book (``None`` if it is not resting)."""
        order = self.by_cid.pop(client_id, None)
        if order is not None:
            (self.bids if order.is_buy else self.asks).remove(order)
        return order

    def take_displayed(self, is_buy: bool, qty: Decimal) -> Decimal:
        """Use up to ``qty`` of the displayed quantity a taker on that side meets (the ask
        for a BUY, the bid for a SELL); returns the quantity taken."""
        if is_buy:
            take = min(qty, self.ask_avail)
            if take > 0:
                self.ask_avail -= take
        else:
            take = min(qty, self.bid_avail)
            if take > 0:
                self.bid_avail -= take
        return take
