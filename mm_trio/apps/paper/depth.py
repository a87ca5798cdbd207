"""Synthetic order book of one symbol (:class:`SymbolBook`), derived from its quotes.

The feed gives top-of-book quotes only. Each quote becomes a book of ``levels`` per side one
tick apart: the top level is the quote, deeper levels have a deterministic size per price.
Every change is numbered with an update id, so the REST depth ``lastUpdateId`` and the depth
stream ``U``/``u`` follow Binance's rules for maintaining a local book. Pure.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from mm_trio.domain.model import ZERO, Quote, SymbolSpec, native_symbol
from mm_trio.exchange.binance.decode import DepthUpdate
from mm_trio.exchange.binance.protocol import fmt_fixed as fmt

__all__ = ["DEPTH_SPEEDS", "SymbolBook"]

DEPTH_SPEEDS = ("100ms", "1000ms")
"""Update speeds of the depth streams; each has its own pending diff batch."""
_FACTOR_BYTES = 2
_FACTOR_SPREAD = 8  # deeper levels are 1..8 quarters of the top's size
_QUARTERS = 4


def _level_factor(symbol: str, price_units: int) -> int:
    digest = hashlib.blake2b(f"{symbol}/{price_units}".encode(), digest_size=_FACTOR_BYTES).digest()
    return 1 + int.from_bytes(digest, "big") % _FACTOR_SPREAD


class SymbolBook:
    """Synthetic order book of one symbol, built from its quotes, with Binance update ids.

    The levels are built lazily, when they are read (REST depth, a depth-stream flush, at
    most a few times a second) rather than on every quote: a replay at many times real speed
    sends tens of thousands of quotes a second, and building 2 x ``levels`` levels each time
    was most of the venue's time. A depth diff is the difference between the book when its
    batch began and the book at the flush (what changed, in its final state).
    """

    def __init__(self, spec: SymbolSpec, levels: int) -> None:
        self.spec = spec
        self.native = native_symbol(spec.symbol)
        self.levels = levels
        self.update_id = 0
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._built: Quote | None = None  # the quote _bids / _asks were built from
        self.last_quote: Quote | None = None
        self.base_steps = 0
        self._factors: dict[int, int] = {}  # price units -> level factor (deterministic)
        # pending depth-diff batches per speed: first update id and the book it began from
        self.pending: dict[
            str, tuple[int, dict[Decimal, Decimal], dict[Decimal, Decimal]] | None
        ] = {speed: None for speed in DEPTH_SPEEDS}

    def _factor(self, units: int) -> int:
        factor = self._factors.get(units)
        if factor is None:
            factor = self._factors[units] = _level_factor(self.native, units)
        return factor

    def _side(self, top: Decimal, top_qty: Decimal, sign: int) -> dict[Decimal, Decimal]:
        tick, step = self.spec.tick_size, self.spec.step_size
        out = {top: top_qty}
        for i in range(1, self.levels):
            price = top + sign * i * tick
            if price <= 0:
                break
            units = int(price / tick)
            out[price] = step * max(1, (self.base_steps * self._factor(units)) // _QUARTERS)
        return out

    def _build(self) -> None:
        q = self.last_quote
        if q is not None and q is not self._built:
            self._bids = self._side(q.bid, q.bid_qty, -1)
            self._asks = self._side(q.ask, q.ask_qty, 1)
            self._built = q

    @property
    def bids(self) -> dict[Decimal, Decimal]:
        self._build()
        return self._bids

    @property
    def asks(self) -> dict[Decimal, Decimal]:
        self._build()
        return self._asks

    def apply_quote(self, q: Quote) -> int:
        if self.base_steps == 0:
            self.base_steps = max(1, int(q.bid_qty / self.spec.step_size))
        for speed, batch in self.pending.items():
            if batch is None:  # a batch begins: remember the book it starts from
                self.pending[speed] = (self.update_id + 1, self.bids, self.asks)
        self.last_quote = q
        self.update_id += 1
        return self.update_id

    def flush(self, speed: str, ts: int) -> DepthUpdate | None:
        batch = self.pending[speed]
        if batch is None:
            return None
        self.pending[speed] = None
        first, bids0, asks0 = batch
        bids, asks = self.bids, self.asks
        cb = {p for p in bids.keys() | bids0.keys() if bids.get(p) != bids0.get(p)}
        ca = {p for p in asks.keys() | asks0.keys() if asks.get(p) != asks0.get(p)}
        return DepthUpdate(
            symbol=self.spec.symbol,
            first_id=first,
            last_id=self.update_id,
            bids=tuple((p, bids.get(p, ZERO)) for p in sorted(cb, reverse=True)),
            asks=tuple((p, asks.get(p, ZERO)) for p in sorted(ca)),
            ts=ts,
        )

    def snapshot(self, limit: int) -> dict[str, Any]:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.update_id,
            "bids": [[fmt(p), fmt(q)] for p, q in bids],
            "asks": [[fmt(p), fmt(q)] for p, q in asks],
        }
