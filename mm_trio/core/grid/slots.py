"""Order and slot state machines of the grid strategy, written down as tables (h11 style).

Orders
------
Every order the strategy emits is tracked by an :class:`OrderState`; it is live from the
moment it is emitted (``PENDING_NEW``). Execution reports move it through
:data:`ORDER_TRANSITIONS`, keyed by ``(current status, reported status)``:

================  =====  ================  ======  ========  =======  ========
current \\ report  NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  REJECTED
================  =====  ================  ======  ========  =======  ========
PENDING_NEW       NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  REJECTED
NEW               NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  NEW (*)
PARTIALLY_FILLED  (=)    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  (=) (*)
terminal          (=)    (=)               (=)     (=)       (=)      (=)
================  =====  ================  ======  ========  =======  ========

``(=)`` keeps the current status: a late ``NEW`` never undoes a fill, terminal statuses are
sticky. ``(*)`` a ``REJECTED`` for an order the venue already acknowledged can only be a
rejected *cancel*: the order stays live and cancel-requested (the shell queries the order
and reports its real state); the strategy only counts it. Quantities are applied separately,
by cumulative quantity (``filled = max(filled, cum_qty)``), so a higher ``cum_qty`` counts
even when its report's status is stale.

Slots
-----
A :class:`Slot` is one grid level ``k`` and owns the signed inventory ``lot`` bought
(``> 0``, closed by a take-profit SELL at level ``k+1``) or sold (``< 0``, neutral mode,
closed by a buy-back BUY at level ``k-1``) at ``price(k)``. It holds at most one live
*opening* order and one live *closing* order, and never both at once. Its state is derived
from its data:

* ``EMPTY``   - no live order and the lot is dust (closing qty below the symbol's minimums)
* ``OPENING`` - a live opening order (maybe partially filled, maybe cancel-requested)
* ``HOLDING`` - no live order, a placeable lot: a closing order is due (maybe deferred)
* ``CLOSING`` - a live closing order

:data:`SLOT_TRANSITIONS` lists every allowed ``(state, event) -> {next states}``; the
strategy checks each slot mutation against it and raises :class:`SlotStateError` on any
other transition (a bookkeeping bug, never a market condition).
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

import msgspec

from mm_trio.domain.model import TERMINAL_STATUSES, ZERO, OrderStatus, OrderUpdate, Side

# --------------------------------------------------------------------------- orders

_LIVE_STATUSES: tuple[OrderStatus, ...] = ("PENDING_NEW", "NEW", "PARTIALLY_FILLED")
_ALL_REPORTS: tuple[OrderStatus, ...] = (
    "PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED",
)

#: ``(current, reported) -> (next status, cancel_rejected)``
ORDER_TRANSITIONS: dict[tuple[OrderStatus, OrderStatus], tuple[OrderStatus, bool]] = {
    ("PENDING_NEW", "PENDING_NEW"): ("PENDING_NEW", False),
    ("PENDING_NEW", "NEW"): ("NEW", False),
    ("PENDING_NEW", "PARTIALLY_FILLED"): ("PARTIALLY_FILLED", False),
    ("PENDING_NEW", "FILLED"): ("FILLED", False),
    ("PENDING_NEW", "CANCELED"): ("CANCELED", False),
    ("PENDING_NEW", "EXPIRED"): ("EXPIRED", False),
    ("PENDING_NEW", "REJECTED"): ("REJECTED", False),
    ("NEW", "PENDING_NEW"): ("NEW", False),
    ("NEW", "NEW"): ("NEW", False),
    ("NEW", "PARTIALLY_FILLED"): ("PARTIALLY_FILLED", False),
    ("NEW", "FILLED"): ("FILLED", False),
    ("NEW", "CANCELED"): ("CANCELED", False),
    ("NEW", "EXPIRED"): ("EXPIRED", False),
    ("NEW", "REJECTED"): ("NEW", True),
    ("PARTIALLY_FILLED", "PENDING_NEW"): ("PARTIALLY_FILLED", False),
    ("PARTIALLY_FILLED", "NEW"): ("PARTIALLY_FILLED", False),
    ("PARTIALLY_FILLED", "PARTIALLY_FILLED"): ("PARTIALLY_FILLED", False),
    ("PARTIALLY_FILLED", "FILLED"): ("FILLED", False),
    ("PARTIALLY_FILLED", "CANCELED"): ("CANCELED", False),
    ("PARTIALLY_FILLED", "EXPIRED"): ("EXPIRED", False),
    ("PARTIALLY_FILLED", "REJECTED"): ("PARTIALLY_FILLED", True),
}
for _terminal in sorted(TERMINAL_STATUSES):
    for _reported in _ALL_REPORTS:
        ORDER_TRANSITIONS[(_terminal, _reported)] = (_terminal, False)  # type: ignore[index]


def next_order_status(current: OrderStatus, reported: OrderStatus) -> tuple[OrderStatus, bool]:
    """Apply :data:`ORDER_TRANSITIONS`; returns ``(status, cancel_rejected)``."""
    return ORDER_TRANSITIONS[(current, reported)]


class LiveOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Read-only view of one live order (see :meth:`GridStrategy.live_orders`)."""

    client_id: str
    side: Side
    level: int
    price: Decimal
    qty: Decimal
    filled: Decimal
    opening: bool
    cancel_requested: bool
    status: OrderStatus


class OrderState:
    """Mutable bookkeeping of one emitted order."""

    __slots__ = ("client_id", "side", "level", "price", "qty", "filled", "opening",
                 "cancel_requested", "status", "trade_ids", "traded")

    def __init__(self, client_id: str, side: Side, level: int, price: Decimal, qty: Decimal,
                 opening: bool) -> None:
        self.client_id = client_id
        self.side: Side = side
        self.level = level
        self.price = price
        self.qty = qty
        self.filled = ZERO
        self.opening = opening
        self.cancel_requested = False
        self.status: OrderStatus = "PENDING_NEW"
        self.trade_ids: set[int] = set()
        self.traded = ZERO  # quantity confirmed by trade reports (whose fees are known)

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def unconfirmed(self) -> Decimal:
        """Filled quantity whose trade report (with its fee) has not arrived yet."""
        return self.filled - self.traded if self.filled > self.traded else ZERO

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled if self.filled < self.qty else ZERO

    def count_fill(self, u: OrderUpdate, base: str) -> tuple[Decimal, Decimal, bool]:
        """Apply a report's quantities: ``(filled increase, base fee, anything changed)``.

        ``filled`` follows the highest ``cum_qty``; a trade report counts once per
        ``trade_id`` (one without a trade id that raises ``filled`` is its own trade), and
        only a counted trade's fee charged in ``base`` is returned.
        """
        changed = False
        delta = ZERO
        cum = min(u.cum_qty, self.qty)
        if cum > self.filled:
            delta = cum - self.filled
            self.filled = cum
            changed = True
        fee = ZERO
        if u.trade_id is not None and u.last_qty > 0:
            if u.trade_id not in self.trade_ids:
                self.trade_ids.add(u.trade_id)
                self.traded += u.last_qty
                changed = True
                if u.fee_asset == base:
                    fee = u.fee
        elif delta > 0 and u.last_qty > 0:
            # a fill report without a trade id: it is the trade (and carries its fee)
            self.traded += delta
            if u.fee_asset == base:
                fee = u.fee
        return delta, fee, changed

    def view(self) -> LiveOrder:
        return LiveOrder(client_id=self.client_id, side=self.side, level=self.level,
                         price=self.price, qty=self.qty, filled=self.filled,
                         opening=self.opening, cancel_requested=self.cancel_requested,
                         status=self.status)


# --------------------------------------------------------------------------- slots


class SlotState(Enum):
    EMPTY = "EMPTY"
    OPENING = "OPENING"
    HOLDING = "HOLDING"
    CLOSING = "CLOSING"


class SlotEvent(Enum):
    PLACE_OPEN = "place_open"        # an opening order is emitted on the slot
    PLACE_CLOSE = "place_close"      # a closing order is emitted for the slot's lot
    REPORT = "report"                # an execution report for the slot's live order
    LATE_REPORT = "late_report"      # a report (late fill/fee) for an already terminal order


_E, _O, _H, _C = SlotState.EMPTY, SlotState.OPENING, SlotState.HOLDING, SlotState.CLOSING

#: ``(state, event) -> allowed next states``
SLOT_TRANSITIONS: dict[tuple[SlotState, SlotEvent], frozenset[SlotState]] = {
    (_E, SlotEvent.PLACE_OPEN): frozenset({_O}),
    (_H, SlotEvent.PLACE_CLOSE): frozenset({_C}),
    # ack/fill keeps it open; terminal without (placeable) fill empties it; with fill it holds
    (_O, SlotEvent.REPORT): frozenset({_O, _E, _H}),
    # partial fill keeps it closing; full fill (or cancel) empties it or leaves a residual
    (_C, SlotEvent.REPORT): frozenset({_C, _E, _H}),
    # a late fill/fee on a finished order only moves the lot
    (_E, SlotEvent.LATE_REPORT): frozenset({_E, _H}),
    (_H, SlotEvent.LATE_REPORT): frozenset({_H, _E}),
    (_O, SlotEvent.LATE_REPORT): frozenset({_O}),
    (_C, SlotEvent.LATE_REPORT): frozenset({_C}),
}


class SlotStateError(RuntimeError):
    """A slot mutation that :data:`SLOT_TRANSITIONS` does not allow (a bookkeeping bug)."""


class Slot:
    """One grid level: its signed lot and its (at most one) live opening/closing order.

    ``closing_qty`` is the placeable closing quantity of the lot (``0`` when the lot is dust);
    the strategy recomputes it whenever the lot or ``pending`` changes.
    """

    __slots__ = ("level", "lot", "lot_sign", "pending", "closing_qty", "opening", "closing")

    def __init__(self, level: int) -> None:
        self.level = level
        self.lot = ZERO
        self.lot_sign = 0  # sign of the lot when closing_qty was last computed
        self.pending = ZERO  # unconfirmed BUY fills (a base fee may still reduce the lot)
        self.closing_qty = ZERO
        self.opening: str | None = None
        self.closing: str | None = None

    @property
    def state(self) -> SlotState:
        if self.opening is not None:
            return SlotState.OPENING
        if self.closing is not None:
            return SlotState.CLOSING
        return SlotState.HOLDING if self.holds else SlotState.EMPTY

    @property
    def holds(self) -> bool:
        """Holds inventory: a placeable lot or a live closing order."""
        return self.closing_qty > 0 or self.closing is not None

    def check(self, before: SlotState, event: SlotEvent) -> None:
        after = self.state
        allowed = SLOT_TRANSITIONS.get((before, event))
        if allowed is None or after not in allowed:
            raise SlotStateError(
                f"slot {self.level}: illegal transition {before.value} --{event.value}--> "
                f"{after.value}"
            )
