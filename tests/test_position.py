"""Tests of the PositionManager: FIFO per level, fees, idempotency, PnL identities."""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.position import Fill, PositionManager
from mm_trio.domain.ids import make_client_id
from mm_trio.domain.model import OrderUpdate, Side

D = Decimal
SYM = "BTC/USDT"


def fill(
    tid: int,
    side: Side,
    price: str,
    qty: str,
    level: int | None = 0,
    *,
    fee: str = "0",
    fee_asset: str = "USDT",
) -> Fill:
    return Fill(tid, SYM, side, D(price), D(qty), D(fee), fee_asset, level, tid)


def pm(start: str = "0") -> PositionManager:
    return PositionManager(SYM, "BTC", "USDT", start_position=D(start))


def test_round_trip_at_one_level() -> None:
    p = pm()
    assert p.on_fill(fill(1, "BUY", "100", "2", 3))
    assert p.position == D(2) and p.avg_cost == D(100)
    assert p.unrealized_pnl(D(105)) == D(10)
    # the take-profit rests at level 4 but carries the slot level 3 in its client id
    assert p.on_fill(fill(2, "SELL", "101", "2", 3))
    assert p.realized_pnl == D(2)
    assert p.position == 0 and p.avg_cost is None
    assert p.level_inventory() == {}
    assert (p.buys, p.sells, p.fills) == (1, 1, 2)
    assert (p.bought_qty, p.sold_qty) == (D(2), D(2))
    assert p.max_inventory == D(2)


def test_fifo_within_a_level_and_levels_are_separate() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1", 0))
    p.on_fill(fill(2, "BUY", "99", "1", 0))
    p.on_fill(fill(3, "BUY", "98", "1", -1))
    assert p.avg_cost == D(99)
    p.on_fill(fill(4, "SELL", "101", "1.5", 0))  # closes 1 @100 and 0.5 @99
    assert p.realized_pnl == D(1) + D("0.5") * 2
    assert p.lots(0) == [(D("0.5"), D(99))]
    assert p.level_inventory() == {0: D("0.5"), -1: D(1)}
    # a sell at level -1 does not touch level 0 lots
    p.on_fill(fill(5, "SELL", "99", "1", -1))
    assert p.realized_pnl == D(3)
    assert p.level_inventory() == {0: D("0.5")}


def test_neutral_sell_then_buy_back_closes_the_short_lot() -> None:
    p = pm("5")
    p.on_fill(fill(1, "SELL", "110", "1", 2))
    assert p.position == D(4)
    assert p.level_inventory() == {2: D(-1)}
    assert p.unrealized_pnl(D(105)) == D(5)
    p.on_fill(fill(2, "BUY", "109", "1", 2))
    assert p.realized_pnl == D(1)
    assert p.position == D(5)
    assert p.max_inventory == D(1)


def test_sell_beyond_long_lots_opens_a_short_lot() -> None:
    p = pm("1")
    p.on_fill(fill(1, "BUY", "100", "1", 0))
    p.on_fill(fill(2, "SELL", "102", "3", 0))
    assert p.realized_pnl == D(2)
    assert p.lots(0) == [(D(-2), D(102))]
    assert p.position == D(-1)


def test_unknown_fills_use_a_symbol_wide_fifo() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1", None))
    p.on_fill(fill(2, "BUY", "90", "1", 5))
    p.on_fill(fill(3, "SELL", "95", "1", None))
    assert p.realized_pnl == D(-5)  # closed the unassigned lot, not level 5
    assert p.level_inventory() == {5: D(1)}
    assert p.unassigned_inventory() == 0


def test_duplicate_trade_id_is_a_no_op() -> None:
    p = pm()
    f = fill(7, "BUY", "100", "1", 0, fee="0.1")
    assert p.on_fill(f)
    before = msgspec.to_builtins(p.snapshot(D(100)))
    assert not p.on_fill(f)
    assert not p.on_fill(fill(7, "SELL", "500", "9", 1))  # same id, whatever the content
    assert msgspec.to_builtins(p.snapshot(D(100))) == before


def test_quote_fee() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1", 0, fee="0.1"))
    p.on_fill(fill(2, "SELL", "101", "1", 0, fee="0.101"))
    assert p.fees == {"USDT": D("0.201")}
    assert p.fees_in_quote(D(101)) == D("0.201")
    assert p.total_pnl(D(101)) == D(1) - D("0.201")


def test_base_fee_reduces_position_and_lot() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1", 0, fee="0.001", fee_asset="BTC"))
    assert p.position == D("0.999")
    assert p.lots(0) == [(D("0.999"), D(100))]
    assert p.fees == {"BTC": D("0.001")}
    assert p.fees_in_quote(D(110)) == D("0.1")  # valued when charged
    # equity: paid 100 USDT, hold 0.999 BTC at 110 -> +9.89
    assert p.total_pnl(D(110)) == D("0.999") * 110 - 100


def test_base_fee_on_a_sell() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1.01", 0))
    p.on_fill(fill(2, "SELL", "110", "1", 0, fee="0.01", fee_asset="BTC"))
    assert p.position == 0
    # cash: -101 + 110 = 9, nothing held
    assert p.total_pnl(D(120)) == D(9)


def test_third_asset_fee_is_kept_but_not_converted() -> None:
    p = pm()
    p.on_fill(fill(1, "BUY", "100", "1", 0, fee="0.0002", fee_asset="BNB"))
    assert p.fees == {"BNB": D("0.0002")}
    assert p.fees_in_quote(D(100)) == 0
    assert p.position == D(1)


def test_on_order_update_builds_fills() -> None:
    p = pm()
    cid = make_client_id("mmt", "BTCUSDT", "BUY", -2, 4)
    base = OrderUpdate(symbol=SYM, client_id=cid, side="BUY", price=D(100), qty=D(2), status="NEW")
    assert not p.on_order_update(base)  # no fill
    part = msgspec.structs.replace(
        base,
        status="PARTIALLY_FILLED",
        cum_qty=D(1),
        last_qty=D(1),
        last_price=D(100),
        trade_id=11,
        fee=D("0.1"),
        fee_asset="USDT",
    )
    assert p.on_order_update(part)
    assert not p.on_order_update(part)  # replayed report
    no_tid = msgspec.structs.replace(part, trade_id=None)
    assert not p.on_order_update(no_tid)
    assert p.level_inventory() == {-2: D(1)}
    foreign = OrderUpdate(
        symbol=SYM,
        client_id="web_123",
        side="BUY",
        price=D(90),
        qty=D(1),
        status="FILLED",
        cum_qty=D(1),
        last_qty=D(1),
        last_price=D(90),
        trade_id=12,
    )
    assert p.on_order_update(foreign)
    assert p.unassigned_inventory() == D(1)
    assert p.position == D(2)


def test_prefix_filter() -> None:
    p = PositionManager(SYM, "BTC", "USDT", prefix="mmt")
    other = make_client_id("zzz", "BTCUSDT", "BUY", 1, 1)
    u = OrderUpdate(
        symbol=SYM,
        client_id=other,
        side="BUY",
        price=D(1),
        qty=D(1),
        status="FILLED",
        cum_qty=D(1),
        last_qty=D(1),
        last_price=D(1),
        trade_id=1,
    )
    assert p.fill_from_update(u).level is None


def test_rejects_bad_fills() -> None:
    p = pm()
    with pytest.raises(ValueError):
        p.on_fill(fill(1, "BUY", "100", "0"))
    with pytest.raises(ValueError):
        p.on_fill(Fill(2, "ETH/USDT", "BUY", D(1), D(1), D(0), "USDT", 0, 0))
    assert p.fills == 0


def test_snapshot() -> None:
    p = pm("1")
    p.on_fill(fill(1, "BUY", "100", "1", 0, fee="0.1"))
    snap = p.snapshot(D(102))
    assert snap.position == D(2) and snap.start_position == D(1)
    assert snap.unrealized_pnl == D(2) and snap.total_pnl == D("1.9")
    assert snap.level_inventory == {0: D(1)}
    empty = p.snapshot(None)
    assert empty.unrealized_pnl is None and empty.total_pnl is None
    msgspec.json.encode(snap)  # serializable


# --------------------------------------------------------------------------- properties


def reference_fifo(fills: list[Fill], base: str) -> Decimal:
    """Naive FIFO realized PnL per level (lists of [qty, price], sign-aware)."""
    books: dict[int | None, list[list[Decimal]]] = {}
    realized = D(0)
    for f in fills:
        moves = [(f.qty if f.side == "BUY" else -f.qty, f.price)]
        if f.fee and f.fee_asset == base:
            moves.append((-f.fee, f.price))
        for signed, price in moves:
            book = books.setdefault(f.level, [])
            while signed != 0 and book and (book[0][0] > 0) != (signed > 0):
                q = min(abs(signed), abs(book[0][0]))
                direction = 1 if book[0][0] > 0 else -1
                realized += (price - book[0][1]) * q * direction
                book[0][0] -= direction * q
                signed += direction * q
                if book[0][0] == 0:
                    book.pop(0)
            if signed != 0:
                book.append([signed, price])
    return realized


fill_strategy = st.builds(
    lambda side, p, q, lvl, fee, asset: (side, p, q, lvl, fee, asset),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(min_value=90, max_value=110),
    st.integers(min_value=1, max_value=50),
    st.one_of(st.none(), st.integers(min_value=-3, max_value=3)),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(["USDT", "BTC", "BNB"]),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(fill_strategy, max_size=40),
    st.integers(min_value=0, max_value=100),
    st.randoms(use_true_random=False),
    st.integers(min_value=80, max_value=120),
)
def test_random_fills_properties(
    raw: list[tuple], start_raw: int, rnd: random.Random, mid_raw: int
) -> None:
    start = D(start_raw) / 10
    mid = D(mid_raw) + D("0.5")
    fills = [
        Fill(i + 1, SYM, side, D(p), D(q) / 10, D(fee) / 1000, asset, lvl, i)
        for i, (side, p, q, lvl, fee, asset) in enumerate(raw)
    ]
    # deliver with duplicates, in a random order of distinct trade ids
    order = list(fills)
    rnd.shuffle(order)
    deliveries = list(order)
    for f in order:
        if rnd.random() < 0.3:
            deliveries.insert(rnd.randrange(len(deliveries) + 1), f)
    p = pm(str(start))
    seen: set[int] = set()
    applied: list[Fill] = []
    for f in deliveries:
        first = f.trade_id not in seen
        assert p.on_fill(f) is first
        if first:
            seen.add(f.trade_id)
            applied.append(f)

    buys = sum((f.qty for f in fills if f.side == "BUY"), D(0))
    sells = sum((f.qty for f in fills if f.side == "SELL"), D(0))
    base_fees = sum((f.fee for f in fills if f.fee_asset == "BTC"), D(0))
    assert p.position == start + buys - sells - base_fees
    assert p.position == start + sum(p.level_inventory().values(), D(0)) + p.unassigned_inventory()
    assert p.fills == len(fills)
    assert p.bought_qty == buys and p.sold_qty == sells

    # FIFO realized PnL matches a naive reference in delivery order
    assert p.realized_pnl == reference_fifo(applied, "BTC")

    # PnL identity: realized + unrealized = cash flow + net held at mid (any lot matching)
    cash = sum((f.price * f.qty * (1 if f.side == "SELL" else -1) for f in fills), D(0))
    cash += sum((f.price * f.fee for f in fills if f.fee_asset == "BTC"), D(0))
    assert p.realized_pnl + p.unrealized_pnl(mid) == cash + (p.position - start) * mid
    quote_fees = sum((f.fee for f in fills if f.fee_asset == "USDT"), D(0))
    equity = sum((f.price * f.qty * (1 if f.side == "SELL" else -1) for f in fills), D(0))
    assert p.total_pnl(mid) == equity - quote_fees + (p.position - start) * mid

    # round trips at a level: realized of a closed level equals its cash flow
    for level in {f.level for f in fills}:
        mine = [f for f in fills if f.level == level]
        if p.lots(level) == [] and level is not None:
            flow = sum((f.price * f.qty * (1 if f.side == "SELL" else -1) for f in mine), D(0))
            flow += sum((f.price * f.fee for f in mine if f.fee_asset == "BTC"), D(0))
            realized_here = reference_fifo([f for f in applied if f.level == level], "BTC")
            assert realized_here == flow

    # max inventory bounds the final inventory
    assert p.max_inventory >= abs(p.position - start)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(st.lists(fill_strategy, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_order_of_delivery_does_not_change_position_or_total_pnl(
    raw: list[tuple], rnd: random.Random
) -> None:
    fills = [
        Fill(i + 1, SYM, side, D(p), D(q) / 10, D(fee) / 1000, asset, lvl, i)
        for i, (side, p, q, lvl, fee, asset) in enumerate(raw)
    ]
    a, b = pm("3"), pm("3")
    for f in fills:
        a.on_fill(f)
    shuffled = deque(fills)
    shuffled.rotate(rnd.randrange(len(fills)))
    for f in shuffled:
        b.on_fill(f)
    assert a.position == b.position
    assert a.total_pnl(D(100)) == b.total_pnl(D(100))
    assert a.fees == b.fees
