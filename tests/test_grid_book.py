"""Unit tests of the grid's bookkeeping: the order book (core/grid/book.py) and the slots'
inventory (core/grid/inventory.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mm_trio.core.grid import book as book_module
from mm_trio.core.grid.book import OrderBook
from mm_trio.core.grid.inventory import Inventory
from mm_trio.core.grid.slots import OrderState, SlotState

D = Decimal


def order(
    cid: str,
    side: str = "BUY",
    level: int = 0,
    price: str = "100",
    qty: str = "1",
    opening: bool = True,
) -> OrderState:
    return OrderState(cid, side, level, D(price), D(qty), opening)  # type: ignore[arg-type]


def test_retired_orders_are_remembered_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "DONE_MEMORY", 2)
    b = OrderBook()
    for cid in "abc":
        b.add(order(cid))
    assert len(b) == 3
    for cid in "abc":
        b.retire(b.live[cid])
    assert len(b) == 0 and list(b.done) == ["b", "c"]  # the oldest is forgotten
    assert b.find("c") is b.done["c"] and b.knows("b")
    assert b.find("a") is None and not b.knows("a")


def test_live_orders_by_level_and_by_client_id() -> None:
    b = OrderBook()
    b.add(order("z", "SELL", 1, "101"))
    b.add(order("y", "BUY", -1, "99", "2"))
    b.add(order("x", "BUY", 1, "101", opening=False))
    assert [o.client_id for o in b.by_level()] == ["y", "x", "z"]
    assert [v.client_id for v in b.views()] == ["x", "y", "z"]
    assert (b.opening_count("BUY"), b.opening_count("SELL")) == (1, 1)
    b.live["y"].filled = D("0.5")
    assert b.open_buy_notional() == D(99) * D("1.5") + D(101)


def test_held_level_counters_follow_closing_quantities() -> None:
    inv = Inventory()
    long_slot, short_slot = inv.slot(0), inv.slot(5)
    long_slot.lot = D(1)
    inv.set_closing_qty(long_slot, D(1))
    short_slot.lot = D(-2)
    inv.set_closing_qty(short_slot, D(2))
    assert (inv.held_long, inv.held_short, inv.net_held) == (1, 1, 0)
    long_slot.lot = D("-0.5")  # sold through: now a short lot
    inv.set_closing_qty(long_slot, D("0.5"))
    assert (inv.held_long, inv.held_short) == (0, 2)
    long_slot.lot = D("0.001")  # dust
    inv.set_closing_qty(long_slot, D(0))
    assert (inv.held_long, inv.held_short, inv.held_levels()) == (0, 1, 1)
    assert inv.level_inventory() == {0: D("0.001"), 5: D(-2)}


def test_holding_fee_reserve_uncovered_and_prune() -> None:
    inv = Inventory()
    for level, lot, pending in ((3, "1", "0.5"), (1, "2", "0"), (2, "-1", "0")):
        s = inv.slot(level)
        s.lot, s.pending = D(lot), D(pending)
        inv.set_closing_qty(s, abs(D(lot)))
        s.state = SlotState.HOLDING
    inv.slots[3].closing = "tp"
    inv.slots[3].state = SlotState.CLOSING
    assert [s.level for s in inv.holding()] == [1, 2]
    assert inv.fee_reserve() == D("0.005")  # 1 % of the unconfirmed 0.5
    assert inv.uncovered_long() == D(2)  # level 3's lot has its take-profit
    empty = inv.slot(9)
    inv.prune(empty)
    inv.prune(inv.slots[1])  # holds a lot: kept
    assert sorted(inv.slots) == [1, 2, 3]
