"""The trailing window of a grid, with hysteresis (SPEC §4; the strategy module's "Window" and
"Hysteresis").

:class:`TrailingWindow` finds the window's edge levels for a reference price: the top BUY
level (the highest level strictly below ``x = min(ref, best ask)``) and the bottom SELL level
(the lowest strictly above ``y = max(ref, best bid)``). Each edge keeps its level while its
bound stays inside a band around it, ``h = trail_hysteresis`` of a level gap wider than the
level's own interval on each side, so a price wobbling around a level does not move the
window. It caches the bands: an unchanged window costs two ``Decimal`` comparisons per side.

The window remembers two keys: the one just *tracked* and the one *committed* by the last
reconcile; the strategy is at its fixpoint while they agree.
"""

from __future__ import annotations

from decimal import Decimal

from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.sides import AWAY
from mm_trio.domain.model import Side

_NEG_INF = Decimal("-Infinity")
_POS_INF = Decimal("Infinity")

Key = tuple[int | None, int | None]
"""``(top BUY level, bottom SELL level)``; ``None`` for a side without a window."""


class _Edge:
    """One side's edge level and the band of bounds that keeps it.

    The band is the level's interval toward the market, ``(price(k), price(k+1)]`` for the
    BUY top ``k``, ``[price(k-1), price(k))`` for the SELL bottom ``k``, each end widened by
    ``h`` times the gap to the next level beyond it.
    """

    __slots__ = ("buy", "size", "lo", "hi", "level", "price", "bound")

    def __init__(self, side: Side, size: int) -> None:
        self.buy = side == "BUY"
        self.size = size  # levels in the window
        self.lo: Decimal | None = None
        self.hi: Decimal | None = None
        self.level: int | None = None
        self.price: Decimal | None = None  # price(level)
        self.bound: Decimal | None = None  # the latest x (BUY) or y (SELL)

    def track(self, grid: LevelGrid, bound: Decimal, h: Decimal) -> int | None:
        """The edge level for ``bound`` (``None``: no level below a non-positive bound)."""
        self.bound = bound
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            if (lo < bound <= hi) if self.buy else (lo <= bound < hi):
                return self.level
        if bound <= 0 and grid.spacing != "arithmetic":
            return None  # keeps the old band: no geometric level below zero
        if self.buy:
            k = grid.level_below(bound)
            base = k  # the band starts at price(base)
        else:
            k = grid.level_above(bound)
            base = k - 1
        lo, hi = grid.price(base), grid.price(base + 1)
        self.level, self.price = k, (lo if self.buy else hi)
        if h:
            lo -= h * (lo - grid.price(base - 1))
            hi += h * (grid.price(base + 2) - hi)
        self.lo, self.hi = lo, hi
        return k

    def quiet(self) -> tuple[Decimal, Decimal] | None:
        """The open interval of bounds that keep this edge exactly as it is: its level, and
        whether it takes new orders (``None`` before the first bound)."""
        lo, hi, price, bound = self.lo, self.hi, self.price, self.bound
        if lo is None or hi is None or price is None or bound is None:
            return None
        if self.buy:  # kept while lo < x <= hi; takes orders while x > price
            return (max(lo, price), hi) if bound > price else (lo, price)
        # kept while lo <= y < hi; takes orders while y < price
        return (lo, min(hi, price)) if bound < price else (price, hi)

    def takes_orders(self) -> bool:
        """A new post-only order fits on the edge level: its price is strictly inside the
        bound (a kept edge level the price has reached keeps its order but gets no new one)."""
        price, bound = self.price, self.bound
        if price is None or bound is None:
            return True
        return bound > price if self.buy else bound < price


class TrailingWindow:
    """Where the opening orders of a grid go: ``levels_below`` BUY levels down from the top
    level, ``levels_above`` SELL levels up from the bottom level (either may be 0)."""

    __slots__ = (
        "_buy",
        "_sell",
        "_edges",
        "_skew",
        "_h",
        "key",
        "_key_now",
        "_takes",
        "_takes_now",
    )

    def __init__(
        self, *, levels_below: int, levels_above: int, inventory_skew: Decimal, hysteresis: Decimal
    ) -> None:
        self._buy = _Edge("BUY", levels_below) if levels_below else None
        self._sell = _Edge("SELL", levels_above) if levels_above else None
        self._edges: dict[Side, _Edge | None] = {"BUY": self._buy, "SELL": self._sell}
        self._skew = inventory_skew
        self._h = hysteresis
        self.key: Key = (None, None)  # as of the last commit
        self._key_now: Key = (None, None)
        # (BUY edge, SELL edge) take new orders; only tracked with hysteresis (else always)
        self._takes = (True, True)
        self._takes_now = (True, True)

    def track(
        self,
        grid: LevelGrid | None,
        mid: Decimal | None,
        bid: Decimal | None,
        ask: Decimal | None,
        net_held: int,
    ) -> Key:
        """Find the edge levels for the market and ``net_held`` (held long slots minus held
        short slots, for the inventory skew); returns the tracked key."""
        if grid is None or mid is None or ask is None or bid is None:
            self._key_now = (None, None)
            return self._key_now
        skew = self._skew
        ref = mid - skew * net_held * grid.step_at(mid) if (net_held and skew) else mid
        h = self._h
        buy, sell = self._buy, self._sell
        top = None if buy is None else buy.track(grid, min(ref, ask), h)
        bottom = None if sell is None else sell.track(grid, max(ref, bid), h)
        if h:
            self._takes_now = (
                top is None or buy is None or buy.takes_orders(),
                bottom is None or sell is None or sell.takes_orders(),
            )
        self._key_now = (top, bottom)
        return self._key_now

    def note(self, ref: Decimal, bid: Decimal, ask: Decimal) -> None:
        """The latest bounds for a reference inside :meth:`quiet_band`: what :meth:`track`
        records there (the edges, their bands and the keys stay as they are)."""
        if self._buy is not None:
            self._buy.bound = min(ref, ask)
        if self._sell is not None:
            self._sell.bound = max(ref, bid)

    def quiet_band(self) -> tuple[Decimal, Decimal] | None:
        """The open interval of bounds (``x`` and ``y`` alike) inside which tracking gives
        the committed window again, unchanged; ``None`` if there is none (not settled, or
        no edge tracked yet)."""
        if not self.settled:
            return None
        lo, hi = _NEG_INF, _POS_INF
        for edge in (self._buy, self._sell):
            if edge is None:
                continue
            band = edge.quiet()
            if band is None:
                return None
            lo, hi = max(lo, band[0]), min(hi, band[1])
        return (lo, hi) if lo < hi else None

    @property
    def settled(self) -> bool:
        """The tracked window is the committed one (nothing for a reconcile to do)."""
        return self._key_now == self.key and self._takes_now == self._takes

    def commit(self) -> bool:
        """Adopt the tracked window; ``True`` if its levels moved."""
        moved = self._key_now != self.key
        self.key = self._key_now
        self._takes = self._takes_now
        return moved

    # ------------------------------------------------------------------ committed window
    def edge(self, side: Side) -> int | None:
        """The committed edge level of ``side`` (``None``: no window on that side)."""
        return self.key[0] if side == "BUY" else self.key[1]

    def size(self, side: Side) -> int:
        edge = self._edges[side]
        return 0 if edge is None else edge.size

    def bound(self, side: Side) -> Decimal | None:
        """The latest bound of ``side``: new opening orders stay strictly inside it."""
        edge = self._edges[side]
        return None if edge is None else edge.bound

    def levels(self, side: Side) -> range:
        """The committed window's levels of ``side``, from its edge away from the market."""
        edge = self.edge(side)
        if edge is None:
            return range(0)
        away = AWAY[side]
        return range(edge, edge + away * self.size(side), away)

    def contains(self, side: Side, level: int) -> bool:
        """``level`` is in the committed window of ``side``."""
        if self.edge(side) is None:
            return False
        return 0 <= self.distance(side, level) < self.size(side)

    def distance(self, side: Side, level: int) -> int:
        """Levels from the committed edge of ``side`` away from the market (0 without one)."""
        edge = self.edge(side)
        return 0 if edge is None else (level - edge) * AWAY[side]
