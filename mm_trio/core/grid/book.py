"""The orders one grid strategy emitted: the live ones, and the most recent terminal ones.

Terminal orders are remembered (the most recent :data:`DONE_MEMORY`) so that late reports on
them (a fill overtaken by its cancel, a fee) still count; reports for any other client id are
not ours.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from mm_trio.core.grid.slots import LiveOrder, OrderState
from mm_trio.domain.model import ZERO, Side

DONE_MEMORY = 10_000
"""How many terminal orders are remembered for late reports."""


class OrderBook:
    """Live orders by client id, and the remembered terminal ones, oldest first."""

    __slots__ = ("live", "done")

    def __init__(self) -> None:
        self.live: dict[str, OrderState] = {}
        self.done: OrderedDict[str, OrderState] = OrderedDict()

    def __len__(self) -> int:
        """The number of live orders."""
        return len(self.live)

    def find(self, client_id: str) -> OrderState | None:
        """A live or remembered order (``None``: not ours, or long forgotten)."""
        order = self.live.get(client_id)
        return self.done.get(client_id) if order is None else order

    def knows(self, client_id: str) -> bool:
        return client_id in self.live or client_id in self.done

    def add(self, order: OrderState) -> None:
        self.live[order.client_id] = order

    def retire(self, order: OrderState) -> None:
        """``order`` became terminal: remember it among the done ones."""
        del self.live[order.client_id]
        self.done[order.client_id] = order
        if len(self.done) > DONE_MEMORY:
            self.done.popitem(last=False)

    def by_level(self) -> list[OrderState]:
        """Live orders by ``(level, side, client id)``: the order reconciling visits them."""
        return sorted(self.live.values(), key=lambda o: (o.level, o.side, o.client_id))

    def views(self) -> list[LiveOrder]:
        """Read-only views of the live orders, by client id."""
        live = self.live
        return [live[cid].view() for cid in sorted(live)]

    def opening_count(self, side: Side) -> int:
        """Live opening orders of ``side`` (cancel-requested ones included)."""
        return sum(1 for o in self.live.values() if o.opening and o.side == side)

    def open_buy_notional(self) -> Decimal:
        return sum((o.price * o.remaining for o in self.live.values() if o.side == "BUY"), ZERO)
