"""Order and slot state machines of the grid strategy, written down as tables (h11 style).

Looking a transition up in its table IS the transition: the new state is the table's entry,
and a pair the table does not list raises a named error instead of being guessed at.

Orders
------
Every order the strategy emits is tracked by an :class:`OrderState`; it is live from the
moment it is emitted (``PENDING_NEW``). Execution reports move it through
:data:`ORDER_TRANSITIONS`, keyed by ``(current status, reported status)``, whose entries are
``(next status, reaction)``:

================  =====  ================  ======  ========  =======  ========
current \\ report  NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  REJECTED
================  =====  ================  ======  ========  =======  ========
PENDING_NEW       NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  REJECTED
NEW               NEW    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  NEW (*)
PARTIALLY_FILLED  (=)    PARTIALLY_FILLED  FILLED  CANCELED  EXPIRED  (=) (*)
terminal          (!)    (!)               (!)     (!)       (!)      (!)
================  =====  ================  ======  ========  =======  ========

(A ``PENDING_NEW`` report, not shown, keeps a live order's status and is ignored for a
terminal one.) ``(=)`` keeps the current status: a live order's status never moves back (a
late ``NEW``, overtaken by its fill report, never undoes the fill). ``(*)`` a ``REJECTED`` for
an order the venue already acknowledged can only be a rejected *cancel*
(:attr:`OrderReaction.CANCEL_REJECTED`): the order stays live and cancel-requested (the shell
queries the order and reports its real state); the strategy only counts it. ``(!)`` terminal
statuses are sticky: a report of the same status is a duplicate; any other status for a
terminal order (late, or contradicting it, e.g. ``NEW`` after ``CANCELED``) is
:attr:`OrderReaction.IGNORED`: counted by the strategy (``stale_reports``), never fatal.
Quantities are applied separately, by cumulative quantity (``filled = max(filled,
cum_qty)``), so a higher ``cum_qty`` counts even when its report's status is stale or ignored.
A status outside the table raises :class:`OrderReportError`.

Slots
-----
A :class:`Slot` is one grid level ``k`` and owns the signed inventory ``lot`` bought
(``> 0``, closed by a take-profit SELL at level ``k+1``) or sold (``< 0``, neutral mode,
closed by a buy-back BUY at level ``k-1``) at ``price(k)``. It holds at most one live
*opening* order and one live *closing* order, and never both at once:

* ``EMPTY``   - no live order and the lot is dust (closing qty below the symbol's minimums)
* ``OPENING`` - a live opening order (maybe partially filled, maybe cancel-requested)
* ``HOLDING`` - no live order, a placeable lot: a closing order is due (maybe deferred)
* ``CLOSING`` - a live closing order

Its state moves only through :data:`SLOT_TRANSITIONS` (``(state, event) -> next state``):
placing an order on it, or one execution report about one of its orders (its live order's,
or a late one's about a finished order). Any other pair is a bookkeeping bug of ours, never a
market condition, and raises :class:`SlotBookkeepingError`.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum, IntEnum
from typing import NamedTuple

import msgspec

from mm_trio.domain.model import TERMINAL_STATUSES, ZERO, OrderStatus, OrderUpdate, Side

# --------------------------------------------------------------------------- orders


class OrderReaction(IntEnum):
    """What a report's status does to an order (besides its quantities).

    ``APPLY`` and ``CANCEL_REJECTED`` equal ``False`` / ``True``: the ``cancel_rejected``
    flag of the older two-field table entries, which still unpack and compare the same.
    """

    APPLY = 0  # take the table's status (maybe the current one: a stale or duplicate report)
    CANCEL_REJECTED = 1  # a REJECTED for an acknowledged order: our cancel was refused
    IGNORED = 2  # another status for a terminal order: it stays as it is; counted


class OrderTransition(NamedTuple):
    status: OrderStatus
    reaction: OrderReaction


class OrderReportError(ValueError):
    """A report status :data:`ORDER_TRANSITIONS` does not know (a broken venue adapter)."""


_APPLY, _CANCEL_REJECTED, _IGNORED = (
    OrderReaction.APPLY,
    OrderReaction.CANCEL_REJECTED,
    OrderReaction.IGNORED,
)
_ALL_REPORTS: tuple[OrderStatus, ...] = (
    "PENDING_NEW",
    "NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "EXPIRED",
    "REJECTED",
)
# the model's TERMINAL_STATUSES, typed
_TERMINAL: tuple[OrderStatus, ...] = ("FILLED", "CANCELED", "EXPIRED", "REJECTED")


def _t(status: OrderStatus, reaction: OrderReaction = _APPLY) -> OrderTransition:
    return OrderTransition(status, reaction)


#: ``(current, reported) -> (next status, reaction)``
ORDER_TRANSITIONS: dict[tuple[OrderStatus, OrderStatus], OrderTransition] = {
    ("PENDING_NEW", "PENDING_NEW"): _t("PENDING_NEW"),
    ("PENDING_NEW", "NEW"): _t("NEW"),
    ("PENDING_NEW", "PARTIALLY_FILLED"): _t("PARTIALLY_FILLED"),
    ("PENDING_NEW", "FILLED"): _t("FILLED"),
    ("PENDING_NEW", "CANCELED"): _t("CANCELED"),
    ("PENDING_NEW", "EXPIRED"): _t("EXPIRED"),
    ("PENDING_NEW", "REJECTED"): _t("REJECTED"),
    ("NEW", "PENDING_NEW"): _t("NEW"),
    ("NEW", "NEW"): _t("NEW"),
    ("NEW", "PARTIALLY_FILLED"): _t("PARTIALLY_FILLED"),
    ("NEW", "FILLED"): _t("FILLED"),
    ("NEW", "CANCELED"): _t("CANCELED"),
    ("NEW", "EXPIRED"): _t("EXPIRED"),
    ("NEW", "REJECTED"): _t("NEW", _CANCEL_REJECTED),
    ("PARTIALLY_FILLED", "PENDING_NEW"): _t("PARTIALLY_FILLED"),
    ("PARTIALLY_FILLED", "NEW"): _t("PARTIALLY_FILLED"),
    ("PARTIALLY_FILLED", "PARTIALLY_FILLED"): _t("PARTIALLY_FILLED"),
    ("PARTIALLY_FILLED", "FILLED"): _t("FILLED"),
    ("PARTIALLY_FILLED", "CANCELED"): _t("CANCELED"),
    ("PARTIALLY_FILLED", "EXPIRED"): _t("EXPIRED"),
    ("PARTIALLY_FILLED", "REJECTED"): _t("PARTIALLY_FILLED", _CANCEL_REJECTED),
    # terminal statuses are sticky: the same one again is a duplicate, any other is ignored
    **{
        (cur, rep): _t(cur, _APPLY if rep == cur else _IGNORED)
        for cur in _TERMINAL
        for rep in _ALL_REPORTS
    },
}


def order_transition(current: OrderStatus, reported: OrderStatus) -> OrderTransition:
    """Look ``(current, reported)`` up in :data:`ORDER_TRANSITIONS`."""
    try:
        return ORDER_TRANSITIONS[(current, reported)]
    except KeyError:
        raise OrderReportError(
            f"order status {current!r}: no transition for a report of status {reported!r}"
        ) from None


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

    __slots__ = (
        "client_id",
        "side",
        "level",
        "price",
        "qty",
        "filled",
        "opening",
        "cancel_requested",
        "status",
        "trade_ids",
        "traded",
    )

    def __init__(
        self, client_id: str, side: Side, level: int, price: Decimal, qty: Decimal, opening: bool
    ) -> None:
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

    def take_status(self, reported: OrderStatus) -> OrderTransition:
        """Move the status through :data:`ORDER_TRANSITIONS`; returns the entry used."""
        transition = order_transition(self.status, reported)
        self.status = transition.status
        return transition

    def view(self) -> LiveOrder:
        return LiveOrder(
            client_id=self.client_id,
            side=self.side,
            level=self.level,
            price=self.price,
            qty=self.qty,
            filled=self.filled,
            opening=self.opening,
            cancel_requested=self.cancel_requested,
            status=self.status,
        )


# --------------------------------------------------------------------------- slots


class SlotState(Enum):
    EMPTY = "EMPTY"
    OPENING = "OPENING"
    HOLDING = "HOLDING"
    CLOSING = "CLOSING"


class SlotEvent(Enum):
    PLACE_OPEN = "place_open"  # an opening order is emitted on the slot
    PLACE_CLOSE = "place_close"  # a closing order is emitted for the slot's lot
    REPORT = "report"  # a report for the slot's live order, which stays live
    DONE_HOLDING = "done_holding"  # ... which ends it, leaving a placeable lot
    DONE_EMPTY = "done_empty"  # ... which ends it, leaving dust
    LATE_HOLDING = "late_holding"  # a late fill/fee on a finished order: the lot is placeable
    LATE_EMPTY = "late_empty"  # ... the lot is dust


_E, _O, _H, _C = SlotState.EMPTY, SlotState.OPENING, SlotState.HOLDING, SlotState.CLOSING
_EV = SlotEvent

#: ``(state, event) -> next state``; a pair not listed is a bookkeeping bug
SLOT_TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
    (_E, _EV.PLACE_OPEN): _O,
    (_H, _EV.PLACE_CLOSE): _C,
    # ack/partial fill keeps it open; terminal with a placeable fill holds, else empties
    (_O, _EV.REPORT): _O,
    (_O, _EV.DONE_HOLDING): _H,
    (_O, _EV.DONE_EMPTY): _E,
    # partial fill keeps it closing; full fill (or cancel) empties it or leaves a residual
    (_C, _EV.REPORT): _C,
    (_C, _EV.DONE_HOLDING): _H,
    (_C, _EV.DONE_EMPTY): _E,
    # a late fill/fee on a finished order only moves the lot
    (_E, _EV.LATE_HOLDING): _H,
    (_E, _EV.LATE_EMPTY): _E,
    (_H, _EV.LATE_HOLDING): _H,
    (_H, _EV.LATE_EMPTY): _E,
    (_O, _EV.LATE_HOLDING): _O,
    (_O, _EV.LATE_EMPTY): _O,
    (_C, _EV.LATE_HOLDING): _C,
    (_C, _EV.LATE_EMPTY): _C,
}


class SlotBookkeepingError(RuntimeError):
    """A slot transition :data:`SLOT_TRANSITIONS` does not list: a bookkeeping bug of ours
    (h11's ``LocalProtocolError``), never a market condition."""


SlotStateError = SlotBookkeepingError
"""The former name of :class:`SlotBookkeepingError`."""


class Slot:
    """One grid level: its signed lot and its (at most one) live opening/closing order.

    ``closing_qty`` is the placeable closing quantity of the lot (``0`` when the lot is dust);
    the strategy recomputes it whenever the lot or ``pending`` changes. ``state`` changes
    only through :meth:`fire`.
    """

    __slots__ = (
        "level",
        "lot",
        "lot_sign",
        "pending",
        "closing_qty",
        "opening",
        "closing",
        "state",
    )

    def __init__(self, level: int) -> None:
        self.level = level
        self.lot = ZERO
        self.lot_sign = 0  # sign of the lot when closing_qty was last computed
        self.pending = ZERO  # unconfirmed BUY fills (a base fee may still reduce the lot)
        self.closing_qty = ZERO
        self.opening: str | None = None
        self.closing: str | None = None
        self.state = SlotState.EMPTY

    @property
    def holds(self) -> bool:
        """Holds inventory: a placeable lot or a live closing order."""
        return self.closing_qty > 0 or self.closing is not None

    def fire(self, event: SlotEvent) -> SlotState:
        """Move to ``SLOT_TRANSITIONS[(state, event)]``; :class:`SlotBookkeepingError` if the
        table has no such transition."""
        after = SLOT_TRANSITIONS.get((self.state, event))
        if after is None:
            raise SlotBookkeepingError(
                f"slot {self.level}: no transition {self.state.value} "
                f"--{event.value}--> (a bookkeeping bug)"
            )
        self.state = after
        return after

    def place(self, client_id: str, *, opening: bool) -> None:
        """An order was emitted on the slot (its opening order, or its lot's closing one)."""
        if opening:
            self.fire(SlotEvent.PLACE_OPEN)
            self.opening = client_id
        else:
            self.fire(SlotEvent.PLACE_CLOSE)
            self.closing = client_id

    def reported(self, client_id: str, *, was_live: bool, live: bool) -> None:
        """A report about the slot's order ``client_id`` was applied (its lot and
        ``closing_qty`` are up to date); ``was_live`` / ``live``: the order before / after."""
        if not was_live:
            self.fire(SlotEvent.LATE_HOLDING if self.closing_qty > 0 else SlotEvent.LATE_EMPTY)
            return
        if live:
            self.fire(SlotEvent.REPORT)
            return
        before = self.state
        if client_id not in (self.opening, self.closing):
            raise SlotBookkeepingError(
                f"slot {self.level}: order {client_id} ended but the "
                f"slot's live order is {self.opening or self.closing}"
            )
        self.fire(SlotEvent.DONE_HOLDING if self.closing_qty > 0 else SlotEvent.DONE_EMPTY)
        if before is SlotState.OPENING:
            self.opening = None
        else:
            self.closing = None

    # ------------------------------------------------------------------ audit
    def derived_state(self) -> SlotState:
        """The state the slot's data describe (equal to :attr:`state` unless we have a bug)."""
        if self.opening is not None:
            return SlotState.OPENING
        if self.closing is not None:
            return SlotState.CLOSING
        return SlotState.HOLDING if self.holds else SlotState.EMPTY

    def check(self, before: SlotState, event: SlotEvent) -> None:
        """Audit one transition: raise :class:`SlotBookkeepingError` unless the slot's data
        now describe the table's state for ``(before, event)``."""
        after = self.derived_state()
        if SLOT_TRANSITIONS.get((before, event)) is not after:
            raise SlotBookkeepingError(
                f"slot {self.level}: illegal transition {before.value} --{event.value}--> "
                f"{after.value}"
            )
