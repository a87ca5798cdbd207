"""Table-driven tests of the grid's order and slot state machines (core/grid/slots.py).

Every ``(state, event)`` pair of both tables is checked against an independent statement of
the expected transition, the data actions around the slot table are checked, and a
hypothesis run audits that the table-driven slot states always agree with the slots' data.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings

from mm_trio.core.grid import GridStrategy
from mm_trio.core.grid.slots import (
    ORDER_TRANSITIONS,
    SLOT_TRANSITIONS,
    OrderReaction,
    OrderReportError,
    OrderState,
    Slot,
    SlotBookkeepingError,
    SlotEvent,
    SlotState,
    SlotStateError,
    order_transition,
)
from mm_trio.domain.config import GridConfig
from mm_trio.domain.intents import Intent, PlaceOrder
from mm_trio.domain.model import TERMINAL_STATUSES, OrderStatus, OrderUpdate, Quote, SymbolSpec
from tests.grid_harness import Run, scenarios

D = Decimal
SYM = "BTC/USDT"
STATUSES: list[OrderStatus] = [
    "PENDING_NEW",
    "NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "EXPIRED",
    "REJECTED",
]

# --------------------------------------------------------------------------- order table
# expected (next status, reaction) per (current, reported); "=" = the current status,
# A = APPLY, X = CANCEL_REJECTED, I = IGNORED
_LIVE_ROWS: dict[OrderStatus, dict[OrderStatus, str]] = {
    "PENDING_NEW": {
        "PENDING_NEW": "PENDING_NEW A",
        "NEW": "NEW A",
        "PARTIALLY_FILLED": "PARTIALLY_FILLED A",
        "FILLED": "FILLED A",
        "CANCELED": "CANCELED A",
        "EXPIRED": "EXPIRED A",
        "REJECTED": "REJECTED A",
    },
    "NEW": {
        "PENDING_NEW": "= A",
        "NEW": "= A",
        "PARTIALLY_FILLED": "PARTIALLY_FILLED A",
        "FILLED": "FILLED A",
        "CANCELED": "CANCELED A",
        "EXPIRED": "EXPIRED A",
        "REJECTED": "= X",
    },
    "PARTIALLY_FILLED": {
        "PENDING_NEW": "= A",
        "NEW": "= A",
        "PARTIALLY_FILLED": "= A",
        "FILLED": "FILLED A",
        "CANCELED": "CANCELED A",
        "EXPIRED": "EXPIRED A",
        "REJECTED": "= X",
    },
}
_REACTIONS = {
    "A": OrderReaction.APPLY,
    "X": OrderReaction.CANCEL_REJECTED,
    "I": OrderReaction.IGNORED,
}


def _expected_order(cur: OrderStatus, rep: OrderStatus) -> tuple[str, OrderReaction]:
    if cur in TERMINAL_STATUSES:  # sticky: a duplicate is applied (no-op), the rest ignored
        return cur, OrderReaction.APPLY if rep == cur else OrderReaction.IGNORED
    status, reaction = _LIVE_ROWS[cur][rep].split()
    return (cur if status == "=" else status), _REACTIONS[reaction]


@pytest.mark.parametrize("cur", STATUSES)
@pytest.mark.parametrize("rep", STATUSES)
def test_order_table_entry(cur: OrderStatus, rep: OrderStatus) -> None:
    expected = _expected_order(cur, rep)
    assert tuple(order_transition(cur, rep)) == expected
    order = OrderState("c", "BUY", 0, D(1), D(1), True)
    order.status = cur
    assert order.take_status(rep).reaction is expected[1]
    assert order.status == expected[0]


def test_order_table_has_exactly_every_pair() -> None:
    assert set(ORDER_TRANSITIONS) == {(c, r) for c in STATUSES for r in STATUSES}
    # the terminal rows are the model's terminal statuses
    sticky = {c for c in STATUSES if all(ORDER_TRANSITIONS[(c, r)].status == c for r in STATUSES)}
    assert sticky == TERMINAL_STATUSES


def test_order_reactions_keep_the_old_cancel_rejected_flag() -> None:
    # the older entries were (status, cancel_rejected): they still unpack and compare so
    status, flag = ORDER_TRANSITIONS[("NEW", "REJECTED")]
    assert (status, flag) == ("NEW", True)
    assert ORDER_TRANSITIONS[("NEW", "FILLED")] == ("FILLED", False)


def test_unknown_report_status_raises_a_named_error() -> None:
    with pytest.raises(OrderReportError, match="'NEW'.*'PENDING_CANCEL'"):
        order_transition("NEW", "PENDING_CANCEL")  # type: ignore[arg-type]
    order = OrderState("c", "BUY", 0, D(1), D(1), True)
    with pytest.raises(OrderReportError):
        order.take_status("SOMETHING")  # type: ignore[arg-type]
    assert order.status == "PENDING_NEW"  # nothing changed


# --------------------------------------------------------------------------- slot table
_E, _O, _H, _C = SlotState.EMPTY, SlotState.OPENING, SlotState.HOLDING, SlotState.CLOSING
_EXPECTED_SLOT: dict[SlotEvent, dict[SlotState, SlotState]] = {
    SlotEvent.PLACE_OPEN: {_E: _O},
    SlotEvent.PLACE_CLOSE: {_H: _C},
    SlotEvent.REPORT: {_O: _O, _C: _C},
    SlotEvent.DONE_HOLDING: {_O: _H, _C: _H},
    SlotEvent.DONE_EMPTY: {_O: _E, _C: _E},
    SlotEvent.LATE_HOLDING: {_E: _H, _H: _H, _O: _O, _C: _C},
    SlotEvent.LATE_EMPTY: {_E: _E, _H: _E, _O: _O, _C: _C},
}


@pytest.mark.parametrize("state", list(SlotState))
@pytest.mark.parametrize("event", list(SlotEvent))
def test_slot_table_entry(state: SlotState, event: SlotEvent) -> None:
    slot = Slot(7)
    slot.state = state
    expected = _EXPECTED_SLOT[event].get(state)
    if expected is None:
        assert (state, event) not in SLOT_TRANSITIONS
        with pytest.raises(
            SlotBookkeepingError, match=f"slot 7: no transition {state.value} --{event.value}-->"
        ):
            slot.fire(event)
        assert slot.state is state  # a refused transition changes nothing
    else:
        assert slot.fire(event) is expected
        assert slot.state is expected


def test_slot_table_lists_only_expected_pairs() -> None:
    expected = {(s, e) for e, row in _EXPECTED_SLOT.items() for s in row}
    assert set(SLOT_TRANSITIONS) == expected
    assert SlotStateError is SlotBookkeepingError  # the former name still catches it


def test_slot_place_records_the_order_only_on_a_legal_transition() -> None:
    slot = Slot(1)
    slot.place("a", opening=True)
    assert (slot.state, slot.opening, slot.closing) == (_O, "a", None)
    with pytest.raises(SlotBookkeepingError):
        slot.place("b", opening=True)  # one opening order at a time
    with pytest.raises(SlotBookkeepingError):
        slot.place("b", opening=False)  # no closing order while opening
    assert (slot.state, slot.opening, slot.closing) == (_O, "a", None)


def test_slot_reports_release_the_order_by_outcome() -> None:
    slot = Slot(1)
    slot.place("a", opening=True)
    slot.reported("a", was_live=True, live=True)
    assert slot.state is _O
    slot.closing_qty = D("0.5")  # the fill left a placeable lot
    slot.reported("a", was_live=True, live=False)
    assert (slot.state, slot.opening) == (_H, None)
    slot.place("tp", opening=False)
    slot.closing_qty = D(0)
    slot.reported("tp", was_live=True, live=False)
    assert (slot.state, slot.closing) == (_E, None)
    slot.closing_qty = D("0.5")  # a late fill on the finished take-profit
    slot.reported("tp", was_live=False, live=False)
    assert slot.state is _H


def test_slot_refuses_the_end_of_an_order_it_does_not_hold() -> None:
    slot = Slot(2)
    slot.place("a", opening=True)
    with pytest.raises(SlotBookkeepingError, match="order x ended.*live order is a"):
        slot.reported("x", was_live=True, live=False)
    assert (slot.state, slot.opening) == (_O, "a")


def test_slot_audit_compares_data_with_the_table() -> None:
    slot = Slot(3)
    slot.place("a", opening=True)
    slot.check(_E, SlotEvent.PLACE_OPEN)  # data and table agree
    slot.opening = None
    with pytest.raises(SlotBookkeepingError, match="EMPTY --place_open--> EMPTY"):
        slot.check(_E, SlotEvent.PLACE_OPEN)


# --------------------------------------------------------------------------- strategy
def _strategy() -> GridStrategy:
    spec = SymbolSpec(
        symbol=SYM, base="BTC", quote="USDT", tick_size=D("0.01"), step_size=D("0.01")
    )
    cfg = GridConfig(
        spacing="arithmetic",
        step=D(1),
        levels_below=1,
        levels_above=0,
        order_size=D(1),
        order_size_in="base",
        anchor=D(100),
    )
    return GridStrategy(spec, cfg)


def _report(
    p: PlaceOrder, status: str, cum: str, last: str = "0", trade_id: int | None = None
) -> OrderUpdate:
    r = p.request
    return OrderUpdate(
        symbol=SYM,
        client_id=r.client_id,
        side=r.side,
        price=r.price,
        qty=r.qty,
        status=status,
        cum_qty=D(cum),  # type: ignore[arg-type]
        last_qty=D(last),
        trade_id=trade_id,
    )


def test_reports_for_a_terminal_order_are_ignored_and_counted() -> None:
    s = _strategy()
    (buy,) = s.on_quote(
        Quote(symbol=SYM, bid=D("100.40"), bid_qty=D(1), ask=D("100.60"), ask_qty=D(1), ts=0)
    )
    assert isinstance(buy, PlaceOrder)
    s.on_order_update(_report(buy, "NEW", "0"))
    out: list[Intent] = s.on_order_update(_report(buy, "FILLED", "1", "1", trade_id=1))
    assert [i.request.side for i in out if isinstance(i, PlaceOrder)] == ["SELL"]
    state = (s.position, s.level_inventory(), s.live_orders(), s.generation)
    assert s.on_order_update(_report(buy, "FILLED", "1", "1", trade_id=1)) == []  # duplicate
    assert s.stale_reports == 0
    assert s.on_order_update(_report(buy, "NEW", "0")) == []  # would reopen it
    assert s.on_order_update(_report(buy, "PARTIALLY_FILLED", "0.5", "0.5", 1)) == []
    assert s.on_order_update(_report(buy, "CANCELED", "1")) == []
    assert s.stale_reports == 3
    assert (s.position, s.level_inventory(), s.live_orders(), s.generation) == state
    assert s.ignored_updates == 0  # known order: not an unknown one


# --------------------------------------------------------------------------- audit
def _audit(run: Run, kind: str, intents: list[Intent]) -> None:
    for slot in run.strategy._inventory.slots.values():
        assert slot.state is slot.derived_state(), (slot.level, slot.state)


@settings(max_examples=150)
@given(scenarios())
def test_table_states_always_agree_with_the_slot_data(scn: object) -> None:
    run = Run(scn, checks=[_audit])  # type: ignore[arg-type]
    run.run()
    run.drain()
