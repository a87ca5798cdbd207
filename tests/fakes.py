"""Test-only helpers on top of the shipped test double (:mod:`mm_trio.exchange.testing`):
a venue that quotes each symbol once on subscription, the orders it holds per symbol, and
an order's report as the venue would send it again."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from mm_trio.domain.model import OpenOrder, OrderUpdate, Quote
from mm_trio.exchange.testing import FakeExchange

D = Decimal


def symbol_quote(symbol: str, bid: str, ask: str, ts: int = 1) -> Quote:
    """A quote with 100 on each side of the book."""
    return Quote(symbol=symbol, bid=D(bid), bid_qty=D(100), ask=D(ask), ask_qty=D(100), ts=ts)


class QuotingFake(FakeExchange):
    """FakeExchange that publishes one quote per symbol as soon as it is subscribed."""

    PRICES = {"AAA/USDT": ("10.00", "10.01"), "BBB/USDT": ("20.00", "20.02")}

    async def subscribe(self, symbols: Sequence[str]) -> None:
        await super().subscribe(symbols)
        for s in symbols:
            bid, ask = self.PRICES[s]
            self.inject(symbol_quote(s, bid, ask))


def ours(fake: FakeExchange, symbol: str) -> list[OpenOrder]:
    """The orders open on ``fake`` for ``symbol``."""
    return [o for o in fake.orders.values() if o.symbol == symbol]


def report_again(fake: FakeExchange, client_id: str, **changes: object) -> OrderUpdate:
    """The venue's report of ``client_id`` as it stands (one the symbol already applied),
    with ``changes`` applied."""
    o = fake.history[client_id]
    update = OrderUpdate(
        symbol=o.symbol,
        client_id=o.client_id,
        side=o.side,
        price=o.price,
        qty=o.qty,
        status=o.status,
        cum_qty=o.cum_qty,
        order_id=o.order_id,
    )
    return msgspec.structs.replace(update, **changes) if changes else update
