"""Order prices and quantities of a grid: opening orders per level, closing orders per lot.

An opening order at level ``k`` is ``order_size`` (base, or quote / price) floored to the
step; it is placed only inside ``[lower, upper]`` and only if it, and the closing order of
its full fill (one level beyond, at a distinct price), both pass the symbol's filters. A
closing order is for the slot's lot floored to the step (the rest is dust); of a long lot's
unconfirmed quantity (no trade report, so no fee, yet) :data:`FEE_RESERVE` is kept back, as
the fee may still be charged in the base asset.
"""

from __future__ import annotations

from decimal import Decimal

from mm_trio.core.grid.levels import LevelGrid, snap_down
from mm_trio.core.grid.sides import AWAY
from mm_trio.domain.config import GridConfig
from mm_trio.domain.model import ZERO, Side, SymbolSpec

FEE_RESERVE = Decimal("0.01")
"""Share of an unconfirmed buy fill (no trade report yet) not sold: room for a base fee."""

_OPENING_CACHE_LIMIT = 100_000  # (level, side) entries; the cache is emptied beyond it


class Sizing:
    """Prices and placeable quantities for one symbol's grid (pure; caches opening sizes)."""

    __slots__ = ("spec", "config", "_opening")

    def __init__(self, spec: SymbolSpec, config: GridConfig) -> None:
        self.spec = spec
        self.config = config
        self._opening: dict[tuple[int, Side], Decimal] = {}

    @staticmethod
    def closing_price(grid: LevelGrid, level: int, lot: Decimal) -> Decimal:
        """Where the lot of slot ``level`` is closed: one level up (long), down (short)."""
        return grid.price(level + 1 if lot > 0 else level - 1)

    def closing_qty(
        self, grid: LevelGrid | None, level: int, lot: Decimal, pending: Decimal
    ) -> Decimal:
        """Placeable closing quantity of ``lot`` at ``level`` (``0`` for dust).

        Of a long lot's ``pending`` (unconfirmed) quantity, whose trade report and so its
        fee (maybe in the base asset) has not arrived yet, :data:`FEE_RESERVE` is kept back.
        """
        if lot == 0 or grid is None:
            return ZERO
        spec = self.spec
        size = lot - pending * FEE_RESERVE if lot > 0 else -lot
        if size <= 0:
            return ZERO
        qty = snap_down(min(size, spec.max_qty), spec.step_size)
        if qty <= 0:
            return ZERO
        if spec.filter_error(self.closing_price(grid, level, lot), qty) is not None:
            return ZERO
        return qty

    def opening_qty(self, grid: LevelGrid, level: int, side: Side) -> Decimal:
        """Placeable opening quantity at ``level`` (``0``: skip the level)."""
        qty = self._opening.get((level, side))
        if qty is not None:
            return qty
        spec, cfg = self.spec, self.config
        price = grid.price(level)
        qty = ZERO
        in_bounds = (cfg.lower is None or price >= cfg.lower) and (
            cfg.upper is None or price <= cfg.upper
        )
        if in_bounds and price > 0:
            size = cfg.order_size if cfg.order_size_in == "base" else cfg.order_size / price
            q = snap_down(min(size, spec.max_qty), spec.step_size)
            # the order, and the closing order of a full fill (one level toward the market,
            # at a distinct price: levels may collide far below a geometric anchor), must
            # both be placeable
            close_price = grid.price(level - AWAY[side])
            if (
                q > 0
                and close_price != price
                and spec.filter_error(price, q) is None
                and spec.filter_error(close_price, q) is None
            ):
                qty = q
        if len(self._opening) > _OPENING_CACHE_LIMIT:
            self._opening.clear()
        self._opening[(level, side)] = qty
        return qty
