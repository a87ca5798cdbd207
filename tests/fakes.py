"""Test-only helpers on top of the shipped test double (:mod:`mm_trio.exchange.testing`):
a venue that quotes each symbol once on subscription, and the orders it holds per symbol."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from mm_trio.domain.model import OpenOrder, Quote
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
