"""A restarted grid takes over its own inventory and resting orders (issue 9, SPEC §9).

Table-driven: which resting orders the slot model adopts (:func:`adoption_role`). Property
(hypothesis, over the random markets and venues of :mod:`tests.grid_harness`): a strategy
"crashes" mid-run; a fresh one is restored from what recovery knows -- the lots the fill
reports give per level (base fees included) and the orders resting on the venue -- and

* adopts every resting order (nothing is unfit when nothing changed),
* has the same position, lots per level and live orders as the one that crashed,
* then trades on with every grid invariant of SPEC §4 checked after every call.
"""

from __future__ import annotations

from decimal import Decimal

import attrs
import msgspec
import pytest
from hypothesis import given, settings

from mm_trio.core.grid import GridStrategy
from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.restore import RestingOrder, adoption_role, plan_adoption
from mm_trio.core.grid.sizing import Sizing
from mm_trio.core.position import PositionManager
from mm_trio.domain.config import GridConfig
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import OrderUpdate, Quote, SymbolSpec
from tests.grid_harness import Run, Scenario, scenarios
from tests.test_grid_invariants import (
    _check_inv01,
    _check_inv02,
    _check_inv05,
    _check_inv06,
    _check_inv07,
    _check_inv10,
)

D = Decimal
SPEC = SymbolSpec(
    symbol="ABC/USDT",
    base="ABC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D(0),
    min_notional=D(0),
    max_orders=50,
)
GRID = LevelGrid(spacing="arithmetic", step=D("1"), anchor=D("100"), tick=D("0.01"))
CONFIG = GridConfig(spacing="arithmetic", step=D("1"), order_size=D("1"), order_size_in="base")
SIZING = Sizing(SPEC, CONFIG)


def order(side: str, level: int, price: str, qty: str = "1", filled: str = "0") -> RestingOrder:
    return RestingOrder(
        client_id=f"mmt_ABCUSDT_{side[0]}{level}_7",
        side=side,  # type: ignore[arg-type]
        level=level,
        price=D(price),
        qty=D(qty),
        filled=D(filled),
    )


# (order, held lot of its level, neutral) -> True opening / False closing / None unfit
ROLES = [
    (order("BUY", -1, "99"), "0", False, True),  # an opening buy on an empty level
    (order("BUY", -1, "99", filled="0.4"), "0.4", False, True),  # partly filled: its own lot
    (order("BUY", -1, "99"), "1", False, None),  # the level holds a lot: its TP is due
    (order("BUY", -1, "99"), "0.0004", False, True),  # dust is no lot
    (order("SELL", -1, "100"), "1", False, False),  # the take-profit of level -1's lot
    (order("SELL", -1, "100", qty="1", filled="0.4"), "0.6", False, False),  # partly sold
    (order("SELL", -1, "100", qty="2"), "1", False, None),  # sells more than the lot
    (order("SELL", -1, "100"), "0", False, None),  # nothing to take profit on
    (order("SELL", -1, "101"), "1", False, None),  # not at the closing price: the grid moved
    (order("SELL", 1, "101"), "0", False, None),  # an opening sell in long mode
    (order("SELL", 1, "101"), "0", True, True),  # ... is one in neutral mode
    (order("BUY", 1, "100"), "-1", True, False),  # a neutral short lot's buy-back
    (order("BUY", 1, "100"), "1", True, None),  # a buy-back of a long lot
]


@pytest.mark.parametrize(("resting", "lot", "neutral", "role"), ROLES)
def test_adoption_role(resting: RestingOrder, lot: str, neutral: bool, role: bool | None) -> None:
    assert adoption_role(resting, D(lot), grid=GRID, sizing=SIZING, neutral=neutral) is role


def test_a_slot_takes_one_order() -> None:
    first = order("BUY", -1, "99")
    second = msgspec.structs.replace(first, client_id="mmt_ABCUSDT_B-1_8")
    adopted, unfit = plan_adoption([second, first], {}, grid=GRID, sizing=SIZING, neutral=False)
    assert [o.client_id for o, _ in adopted] == [first.client_id]  # by client id: stable
    assert unfit == [second]


def test_restore_places_take_profits_for_held_lots_and_keeps_adopted_ones() -> None:
    config = attrs.evolve(CONFIG, anchor=D("100"), levels_below=2)
    strategy = GridStrategy(SPEC, config, generation_start=10)
    tp = order("SELL", -1, "100", qty="1")
    unfit = strategy.restore({-1: D("1"), -2: D("1")}, [tp])
    assert unfit == []
    assert strategy.position == D(2)
    quote = Quote(symbol="ABC/USDT", bid=D("99.5"), bid_qty=D(1), ask=D("99.6"), ask_qty=D(1), ts=0)
    intents = strategy.on_quote(quote)
    placed = [i.request for i in intents if hasattr(i, "request")]
    # level -2's lot gets its take-profit at level -1's price; level -1 keeps the adopted one
    assert [(r.side, r.price, r.qty) for r in placed if r.side == "SELL"] == [
        ("SELL", D("99"), D("1"))
    ]
    assert tp.client_id in {o.client_id for o in strategy.live_orders()}
    assert not any(getattr(i, "client_id", None) == tp.client_id for i in intents)  # not cancelled
    assert all(parse_client_id(r.client_id).generation > 10 for r in placed)  # type: ignore[union-attr]


def test_restore_needs_the_anchor_of_the_lots() -> None:
    strategy = GridStrategy(SPEC, CONFIG)
    with pytest.raises(ValueError, match="anchor"):
        strategy.restore({-1: D(1)}, [])
    assert strategy.restore({}, []) == []  # flat: anchors afresh at the first quote


# --------------------------------------------------------------------------- property
def _crash_and_restore(run: Run) -> list[RestingOrder]:
    """Replace ``run.strategy`` by a fresh one restored as recovery would; return unfit."""
    old = run.strategy
    scn = run.scn
    ledger = PositionManager(
        "ABC/USDT", scn.spec.base, scn.spec.quote, start_position=scn.start_position
    )
    for event in run.events:  # the fill ledger: every trade report, once per trade id
        if isinstance(event, OrderUpdate):
            ledger.on_order_update(event)
    held = ledger.level_inventory()
    resting = [
        RestingOrder(
            client_id=o.client_id,
            side=o.side,  # type: ignore[arg-type]
            level=o.level,
            price=o.price,
            qty=o.qty,
            filled=o.cum,
            status=o.status,  # type: ignore[arg-type]
        )
        for o in run.venue.values()
        if o.status in ("NEW", "PARTIALLY_FILLED")
    ]
    config = attrs.evolve(scn.config, anchor=old.anchor)
    fresh = GridStrategy(
        scn.spec, config, start_position=scn.start_position, generation_start=old.generation
    )
    unfit = fresh.restore(held, resting)
    assert fresh.position == old.position
    assert fresh.level_inventory() == old.level_inventory()
    assert fresh.live_orders() == old.live_orders()
    run.strategy = fresh
    if old.stopped:
        run.stop()
    if old.gates != (False, False):
        run.set_gates(*old.gates)
    return unfit


def _restart_scenario(scn: Scenario) -> None:
    run = Run(
        scn,
        checks=[_check_inv01, _check_inv02, _check_inv05, _check_inv06, _check_inv07, _check_inv10],
    )
    run.run()
    run.drain()  # recovery completes the ledger and learns every order's state
    if run.strategy.anchor is None:
        return  # never quoted: nothing to take over
    assert _crash_and_restore(run) == []
    run.send_quote()
    for _ in range(scn.steps):
        run.step()
    run.drain()
    assert run.strategy.position == run.true_position


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(scenarios(steps=120))
def test_a_restored_grid_is_the_grid_that_crashed_and_trades_on(scn: Scenario) -> None:
    _restart_scenario(scn)
