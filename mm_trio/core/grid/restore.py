"""Taking over an earlier run's grid: which resting orders of ours a restarted strategy can
adopt into its slots (pure; see :meth:`GridStrategy.restore
<mm_trio.core.grid.strategy.GridStrategy.restore>`).

A restarted symbol gets its held lots per level (from the fill ledger) and the orders of
ours still resting on the venue. An order is adopted only where the slot model would have
placed it itself, so every invariant of :mod:`~mm_trio.core.grid.strategy` holds after the
take-over exactly as if the strategy had never stopped:

* an **opening** order rests at its own level's price (a BUY; a SELL only in neutral mode),
  and its slot held no placeable lot before the order's own fills;
* a **closing** order (take-profit / buy-back) rests at the slot's closing price, on the
  side that reduces the slot's lot, and sells (buys) no more than the lot;
* a slot takes at most one order.

Everything else is *unfit* (a changed grid, a lot sold meanwhile, a duplicate): the caller
cancels it, and the strategy places what it needs afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

import msgspec

from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.sizing import Sizing
from mm_trio.domain.model import ZERO, OrderStatus, Side


class RestingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One of our orders resting on the venue, as recovery found it (and the journal
    explains it): ``filled`` is the venue's cumulative quantity, every trade of which is in
    the fill ledger under ``trade_ids``."""

    client_id: str
    side: Side
    level: int
    price: Decimal
    qty: Decimal
    filled: Decimal = ZERO
    status: OrderStatus = "NEW"
    trade_ids: frozenset[int] = frozenset()
    traded: Decimal | None = None  # what the ledger holds of it (``None``: ``filled``)
    not_before_ns: int = 0  # the venue time it was journalled: older venue records are not it


def adoption_role(
    order: RestingOrder,
    lot: Decimal,
    *,
    grid: LevelGrid,
    sizing: Sizing,
    neutral: bool,
) -> bool | None:
    """``True``: adopt as the slot's opening order; ``False``: as its closing order;
    ``None``: unfit. ``lot`` is the slot's held lot, this order's own fills included."""
    signed_fill = order.filled if order.side == "BUY" else -order.filled
    if order.price == grid.price(order.level) and (order.side == "BUY" or neutral):
        before = lot - signed_fill
        if sizing.closing_qty(grid, order.level, before, ZERO) == 0:
            return True
        return None
    if lot == 0 or (lot > 0) != (order.side == "SELL"):
        return None
    if order.price != sizing.closing_price(grid, order.level, lot):
        return None
    remaining = order.qty - order.filled
    if not ZERO < remaining <= abs(lot) or sizing.closing_qty(grid, order.level, lot, ZERO) == 0:
        return None
    return False


def plan_adoption(
    orders: Iterable[RestingOrder],
    held: Mapping[int, Decimal],
    *,
    grid: LevelGrid,
    sizing: Sizing,
    neutral: bool,
) -> tuple[list[tuple[RestingOrder, bool]], list[RestingOrder]]:
    """``(adopted as (order, opening), unfit)``; orders are visited by client id, so the
    outcome does not depend on the order the venue listed them in."""
    adopted: list[tuple[RestingOrder, bool]] = []
    unfit: list[RestingOrder] = []
    taken: set[int] = set()
    for order in sorted(orders, key=lambda o: o.client_id):
        role = None
        if order.level not in taken:
            role = adoption_role(
                order, held.get(order.level, ZERO), grid=grid, sizing=sizing, neutral=neutral
            )
        if role is None:
            unfit.append(order)
        else:
            taken.add(order.level)
            adopted.append((order, role))
    return adopted, unfit
