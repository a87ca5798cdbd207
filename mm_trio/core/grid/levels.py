"""Grid level maths (SPEC §4): anchored levels snapped to the tick grid.

Level ``k`` (an integer, 0 at the anchor) has the price

* arithmetic: ``anchor + k * step``
* geometric:  ``anchor * (1 + step) ** k``

snapped DOWN to the tick grid. Everything is exact ``Decimal`` arithmetic in a private,
high-precision context, so the result never depends on the caller's decimal context; the
geometric power uses an integer exponent and is cached per level. Floats are used only to
*estimate* a level index from a price (a logarithm); the estimate is then corrected with
exact price comparisons, so lookups are exact.

Prices are monotone non-decreasing in ``k``. Arithmetic levels are strictly increasing
(``step >= tick`` is required). Geometric levels may collide far below the anchor, where
``price * step`` is smaller than a tick; callers skip such levels (see
:meth:`LevelGrid.distinct_above` / :meth:`LevelGrid.distinct_below`).
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Context, Decimal
from typing import Literal

Spacing = Literal["arithmetic", "geometric"]

_CTX = Context(prec=60)
_CACHE_LIMIT = 1_000_000


def snap_down(value: Decimal, tick: Decimal) -> Decimal:
    """Largest multiple of ``tick`` that is ``<= value`` (exact, context independent)."""
    n = _CTX.divide(value, tick).to_integral_value(rounding=ROUND_FLOOR, context=_CTX)
    return _CTX.multiply(n, tick)


class LevelGrid:
    """Prices of an anchored grid and fast price → level lookups."""

    __slots__ = ("spacing", "step", "tick", "anchor", "_cache", "_ratio", "_log_ratio", "_anchor_f")

    def __init__(self, *, spacing: Spacing, step: Decimal, anchor: Decimal, tick: Decimal) -> None:
        if tick <= 0:
            raise ValueError(f"tick_size = {tick}: must be > 0")
        if step <= 0:
            raise ValueError(f"grid.step = {step}: must be > 0")
        if spacing not in ("arithmetic", "geometric"):
            raise ValueError(f"grid.spacing = {spacing!r}: must be arithmetic or geometric")
        snapped = snap_down(anchor, tick)
        if snapped <= 0:
            raise ValueError(f"grid.anchor = {anchor}: below one tick ({tick})")
        if spacing == "arithmetic":
            if step < tick:
                raise ValueError(
                    f"grid.step = {step}: smaller than one tick ({tick}); levels would collide"
                )
        else:
            if step >= 1:
                raise ValueError(f"grid.step = {step}: a geometric ratio must be < 1")
            if _CTX.multiply(snapped, step) < tick:
                raise ValueError(
                    f"grid.step = {step}: one step at the anchor {snapped} is "
                    f"{_CTX.multiply(snapped, step)}, smaller than one tick ({tick}); "
                    "levels would collide"
                )
        self.spacing: Spacing = spacing
        self.step = step
        self.tick = tick
        self.anchor = snapped
        self._cache: dict[int, Decimal] = {0: snapped}
        self._ratio = _CTX.add(Decimal(1), step)
        self._log_ratio = math.log1p(float(step))
        self._anchor_f = float(snapped)

    # ------------------------------------------------------------------ prices
    def price(self, k: int) -> Decimal:
        """Price of level ``k`` (may be <= 0 far below an arithmetic anchor)."""
        p = self._cache.get(k)
        if p is None:
            if self.spacing == "arithmetic":
                raw = _CTX.add(self.anchor, _CTX.multiply(Decimal(k), self.step))
            else:
                raw = _CTX.multiply(self.anchor, _CTX.power(self._ratio, k))
            p = snap_down(raw, self.tick)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[k] = p
        return p

    def step_at(self, price: Decimal) -> Decimal:
        """The size of one grid step near ``price`` (in price units)."""
        if self.spacing == "arithmetic":
            return self.step
        return price * self.step

    def min_gap(self, k: int) -> Decimal:
        """Lower bound of ``price(k+1) - price(k)``: one step at ``price(k)``, floored to tick."""
        if self.spacing == "arithmetic":
            return snap_down(self.step, self.tick)
        return snap_down(_CTX.multiply(self.price(k), self.step), self.tick)

    def distinct_above(self, k: int) -> bool:
        """``price(k+1) > price(k)`` (a take-profit one level up is a real price step)."""
        return self.price(k + 1) > self.price(k)

    def distinct_below(self, k: int) -> bool:
        """``price(k-1) < price(k)`` (a buy-back one level down is a real price step)."""
        return self.price(k - 1) < self.price(k)

    # ------------------------------------------------------------------ lookups
    def _estimate(self, x: Decimal) -> int:
        if self.spacing == "arithmetic":
            q = _CTX.divide(_CTX.subtract(x, self.anchor), self.step)
            return int(q.to_integral_value(rounding=ROUND_FLOOR, context=_CTX))
        if x <= 0:
            raise ValueError(f"no geometric level near a non-positive price {x}")
        return math.floor(math.log(float(x) / self._anchor_f) / self._log_ratio)

    def level_at_or_below(self, x: Decimal) -> int:
        """Largest ``k`` with ``price(k) <= x``."""
        k = self._estimate(x)
        price = self.price
        while price(k) > x:
            k -= 1
        while price(k + 1) <= x:
            k += 1
        return k

    def level_below(self, x: Decimal) -> int:
        """Largest ``k`` with ``price(k) < x`` (strictly)."""
        k = self._estimate(x)
        price = self.price
        while price(k) >= x:
            k -= 1
        while price(k + 1) < x:
            k += 1
        return k

    def level_above(self, x: Decimal) -> int:
        """Smallest ``k`` with ``price(k) > x`` (strictly)."""
        k = self._estimate(x)
        price = self.price
        while price(k) <= x:
            k += 1
        while price(k - 1) > x:
            k -= 1
        return k
