"""Which way is "toward the market" for each side of the grid.

A BUY and a SELL mirror each other: the BUY window extends *down* from its edge level, the
SELL window *up*; a BUY at a price reaches everything at or below it, a SELL everything at
or above it. The strategy's phases are written once, for a ``side``, with these helpers.
"""

from __future__ import annotations

from decimal import Decimal

from mm_trio.domain.model import Side

OPPOSITE: dict[Side, Side] = {"BUY": "SELL", "SELL": "BUY"}

#: Level step away from the market: BUY windows run down from their edge, SELL windows up.
AWAY: dict[Side, int] = {"BUY": -1, "SELL": 1}


def reaches(side: Side, price: Decimal, bound: Decimal) -> bool:
    """A ``side`` order at ``price`` is at or through ``bound``: a BUY at or above it, a SELL
    at or below it (it would cross an opposite order at ``bound``)."""
    return price >= bound if side == "BUY" else price <= bound


def most_aggressive(side: Side, a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """The price nearer the market of two ``side`` prices (the highest BUY, the lowest SELL);
    ``None`` stands for no price."""
    if a is None:
        return b
    if b is None:
        return a
    if side == "BUY":
        return b if b > a else a
    return b if b < a else a
