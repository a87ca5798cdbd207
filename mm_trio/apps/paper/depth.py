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
    """Synthetic order book of one symbol, built from its quotes, with Binance update ids."""

    def __init__(self, spec: SymbolSpec, levels: int) -> None:
        self.spec = spec
        self.native = native_symbol(spec.symbol)
        self.levels = levels
        self.update_id = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last_quote: Quote | None = None
        self.base_steps = 0
        # pending depth-diff batches per speed: first update id and changed prices
        self.pending: dict[str, tuple[int, set[Decimal], set[Decimal]] | None] = {
            speed: None for speed in DEPTH_SPEEDS
        }

    def _side(self, top: Decimal, top_qty: Decimal, sign: int) -> dict[Decimal, Decimal]:
        tick, step = self.spec.tick_size, self.spec.step_size
        out = {top: top_qty}
        for i in range(1, self.levels):
            price = top + sign * i * tick
            if price <= 0:
                break
            units = int(price / tick)
            out[price] = step * max(
                1, (self.base_steps * _level_factor(self.native, units)) // _QUARTERS
            )
        return out

    def apply_quote(self, q: Quote) -> int:
        if self.base_steps == 0:
            self.base_steps = max(1, int(q.bid_qty / self.spec.step_size))
        bids = self._side(q.bid, q.bid_qty, -1)
        asks = self._side(q.ask, q.ask_qty, 1)
        changed_b = {p for p in bids.keys() | self.bids.keys() if bids.get(p) != self.bids.get(p)}
        changed_a = {p for p in asks.keys() | self.asks.keys() if asks.get(p) != self.asks.get(p)}
        self.bids, self.asks = bids, asks
        self.last_quote = q
        self.update_id += 1
        for speed, batch in self.pending.items():
            if batch is None:
                self.pending[speed] = (self.update_id, changed_b, changed_a)
            else:
                batch[1].update(changed_b)
                batch[2].update(changed_a)
        return self.update_id

    def flush(self, speed: str, ts: int) -> DepthUpdate | None:
        batch = self.pending[speed]
        if batch is None:
            return None
        self.pending[speed] = None
        first, cb, ca = batch
        return DepthUpdate(
            symbol=self.spec.symbol,
            first_id=first,
            last_id=self.update_id,
            bids=tuple((p, self.bids.get(p, ZERO)) for p in sorted(cb, reverse=True)),
            asks=tuple((p, self.asks.get(p, ZERO)) for p in sorted(ca)),
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
