"""The simulated venue's pure matching engine."""

from __future__ import annotations

import random
from decimal import Decimal

import attrs
import pytest

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import BalanceUpdate, OrderRequest, OrderUpdate, Quote, Trade
from mm_trio.exchange.base import (
    DuplicateOrder,
    FilterRejected,
    InsufficientBalance,
    TooManyOrders,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.sim.matching import MatchingEngine, derive_spec

D = Decimal
SYM = "BTC/USDT"


def make(queue_model: str = "trade_through", **kw: object) -> MatchingEngine:
    config = SimVenueConfig(queue_model=queue_model, **kw)  # type: ignore[arg-type]
    return MatchingEngine(config, rng=random.Random(7))


def req(
    cid: str, side: str, price: str, qty: str, post_only: bool = True, symbol: str = SYM
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        client_id=cid,
        side=side,  # type: ignore[arg-type]
        price=D(price),
        qty=D(qty),
        post_only=post_only,
    )


def quote(
    bid: str, ask: str, bid_qty: str = "1", ask_qty: str = "1", ts: int = 1, symbol: str = SYM
) -> Quote:
    return Quote(
        symbol=symbol, bid=D(bid), bid_qty=D(bid_qty), ask=D(ask), ask_qty=D(ask_qty), ts=ts
    )


_tid = 0


def trade(price: str, qty: str, ts: int = 2, buyer_maker: bool = True) -> Trade:
    global _tid
    _tid += 1
    return Trade(
        symbol=SYM, price=D(price), qty=D(qty), buyer_maker=buyer_maker, trade_id=_tid, ts=ts
    )


def fills(events: list) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate) and e.last_qty > 0]


def total(engine: MatchingEngine, asset: str) -> Decimal:
    return engine.balance(asset).total


# ---------------------------------------------------------------- registry and balances


def test_registry_has_majors_with_binance_like_rules() -> None:
    e = make()
    btc = e.spec("BTC/USDT")
    assert (btc.tick_size, btc.step_size, btc.min_notional) == (D("0.01"), D("0.00001"), D(5))
    assert e.spec("ETH/USDT").step_size == D("0.0001")
    for s in ("SOL/USDT", "BNB/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LTC/USDT", "ETH/BTC"):
        assert e.spec(s).symbol == s
        assert e.start_prices[s] > 0
    assert e.spec("ETH/BTC").min_notional == D("0.0001")


def test_extra_symbols_and_default_balances() -> None:
    e = make(extra_symbols={"FOO/USDT": D("2.5")}, balances={"USDT": D("1000")})
    spec = e.spec("FOO/USDT")
    assert spec.base == "FOO" and spec.quote == "USDT"
    assert e.start_prices["FOO/USDT"] % spec.tick_size == 0
    # 10000 USDT worth at 2.5, rounded down to the step
    foo = e.balance("FOO").free
    assert foo == D(4000) and foo % spec.step_size == 0
    assert e.balance("USDT").free == D(1000)
    sol = e.balance("SOL").free
    assert sol % e.spec("SOL/USDT").step_size == 0
    assert D(9990) < sol * e.start_prices["SOL/USDT"] <= D(10000)


def test_derive_spec_scales_with_price() -> None:
    hi = derive_spec("HI/USDT", D("60000"))
    lo = derive_spec("LO/USDT", D("0.15"))
    assert hi.step_size == D("0.00001") and lo.step_size == D(1)
    assert hi.tick_size > lo.tick_size


# ---------------------------------------------------------------- errors


def test_unknown_symbol() -> None:
    e = make()
    with pytest.raises(UnknownSymbol, match="NOPE/USDT"):
        e.place(req("a", "BUY", "100", "1", symbol="NOPE/USDT"), 1)
    with pytest.raises(UnknownSymbol, match="btcusdt"):
        e.spec("btcusdt")


@pytest.mark.parametrize(
    ("price", "qty", "what"),
    [
        ("100.001", "0.1", "PRICE_FILTER"),
        ("0", "0.1", "PRICE_FILTER"),
        ("100", "0.000001", "LOT_SIZE"),
        ("100", "0.000015", "LOT_SIZE"),
        ("100", "0.01", "NOTIONAL"),
    ],
)
def test_filters(price: str, qty: str, what: str) -> None:
    e = make()
    with pytest.raises(FilterRejected, match=f"Filter failure: {what}") as exc:
        e.place(req("a", "BUY", price, qty), 1)
    assert exc.value.kind == "filter"
    assert e.open_orders() == []
    assert e.balance("USDT").locked == 0


def test_duplicate_open_client_id() -> None:
    e = make()
    e.place(req("a", "BUY", "50000", "0.001"), 1)
    with pytest.raises(DuplicateOrder, match="Duplicate order sent."):
        e.place(req("a", "BUY", "49000", "0.001"), 2)
    e.cancel(SYM, "a", 3)
    e.place(req("a", "BUY", "49000", "0.001"), 4)  # a finished id may be reused


def test_insufficient_balance_buy_and_sell() -> None:
    e = make(balances={"USDT": D("100"), "BTC": D("0.001")})
    with pytest.raises(
        InsufficientBalance, match="Account has insufficient balance for requested action."
    ):
        e.place(req("a", "BUY", "50000", "0.01"), 1)  # 500 > 100
    with pytest.raises(InsufficientBalance):
        e.place(req("b", "SELL", "70000", "0.002"), 1)
    e.place(req("c", "SELL", "70000", "0.001"), 1)
    with pytest.raises(InsufficientBalance):
        e.place(req("d", "SELL", "70000", "0.0001"), 1)  # everything is locked
    assert e.balance("BTC").free == 0 and e.balance("BTC").locked == D("0.001")


def test_too_many_orders() -> None:
    e = make(max_orders=3)
    for i in range(3):
        e.place(req(f"o{i}", "BUY", str(50000 - i), "0.001"), 1)
    with pytest.raises(TooManyOrders, match="MAX_NUM_ORDERS"):
        e.place(req("o3", "BUY", "49000", "0.001"), 1)
    e.place(req("x", "BUY", "2000", "0.01", symbol="ETH/USDT"), 1)  # per symbol


def test_post_only_would_take() -> None:
    e = make()
    e.on_quote(quote("59999", "60000"))
    with pytest.raises(WouldTake, match="Order would immediately match and take."):
        e.place(req("a", "BUY", "60000", "0.001"), 1)
    with pytest.raises(WouldTake):
        e.place(req("b", "SELL", "59999", "0.001"), 1)
    e.place(req("c", "BUY", "59999", "0.001"), 1)
    e.place(req("d", "SELL", "60000", "0.001"), 1)


def test_cancel_unknown_and_query() -> None:
    e = make()
    with pytest.raises(UnknownOrder, match="Unknown order sent."):
        e.cancel(SYM, "nope", 1)
    with pytest.raises(UnknownOrder):
        e.query(SYM, "nope")
    e.place(req("a", "BUY", "50000", "0.001"), 1)
    assert e.query(SYM, "a").status == "NEW"
    e.cancel(SYM, "a", 2)
    assert e.query(SYM, "a").status == "CANCELED"
    with pytest.raises(UnknownOrder):
        e.cancel(SYM, "a", 3)


# ---------------------------------------------------------------- place / cancel / balances


def test_place_locks_and_cancel_releases_exactly() -> None:
    e = make()
    usdt0, btc0 = e.balance("USDT").free, e.balance("BTC").free
    order, events = e.place(req("b", "BUY", "50000.01", "0.00123"), 10)
    assert order.status == "NEW" and order.order_id and order.ts == 10
    new = events[0]
    assert isinstance(new, OrderUpdate) and new.status == "NEW" and new.cum_qty == 0
    assert events[1] == BalanceUpdate(
        asset="USDT", free=usdt0 - D("61.5000123"), locked=D("61.5000123"), ts=10
    )
    e.place(req("s", "SELL", "70000", "0.5"), 11)
    assert e.balance("BTC").locked == D("0.5") and e.balance("BTC").free == btc0 - D("0.5")
    assert [o.client_id for o in e.open_orders()] == ["b", "s"]
    assert [o.client_id for o in e.open_orders(SYM)] == ["b", "s"]
    order, events = e.cancel(SYM, "b", 12)
    assert order.status == "CANCELED"
    assert events[0].status == "CANCELED"  # type: ignore[union-attr]
    e.cancel(SYM, "s", 13)
    assert e.balance("USDT").free == usdt0 and e.balance("USDT").locked == 0
    assert e.balance("BTC").free == btc0 and e.balance("BTC").locked == 0
    assert e.open_orders() == []


# ---------------------------------------------------------------- fills


def test_trade_through_fills_buy_at_limit_with_maker_fee() -> None:
    e = make(maker_fee=D("0.001"))
    usdt0, btc0 = total(e, "USDT"), total(e, "BTC")
    e.place(req("b", "BUY", "50000", "0.01"), 1)
    assert e.on_trade(trade("50000.01", "1")) == []  # above: nothing
    events = e.on_trade(trade("49999.99", "1", ts=5))
    (f,) = fills(events)
    assert f.status == "FILLED" and f.cum_qty == D("0.01") and f.last_qty == D("0.01")
    assert f.last_price == D("50000") and f.maker is True and f.ts == 5
    assert f.fee == D("0.5") and f.fee_asset == "USDT" and f.trade_id == 1
    bal = [ev for ev in events if isinstance(ev, BalanceUpdate)]
    assert {b.asset for b in bal} == {"BTC", "USDT"}
    assert total(e, "BTC") == btc0 + D("0.01")
    assert total(e, "USDT") == usdt0 - D("500") - D("0.5")
    assert e.balance("USDT").locked == 0
    assert e.open_orders() == [] and e.query(SYM, "b").status == "FILLED"


def test_sell_trade_through() -> None:
    e = make(maker_fee=D("0.001"))
    usdt0, btc0 = total(e, "USDT"), total(e, "BTC")
    e.place(req("s", "SELL", "61000", "0.1"), 1)
    (f,) = fills(e.on_trade(trade("61000.5", "0.5", buyer_maker=False)))
    assert f.last_price == D("61000") and f.fee == D("6.1")
    assert total(e, "BTC") == btc0 - D("0.1")
    assert total(e, "USDT") == usdt0 + D("6100") - D("6.1")
    assert e.balance("BTC").locked == 0


@pytest.mark.parametrize(("model", "filled"), [("trade_through", False), ("touch", True)])
def test_touch_by_queue_model(model: str, filled: bool) -> None:
    e = make(model)
    e.place(req("b", "BUY", "50000", "0.01"), 1)
    assert bool(fills(e.on_trade(trade("50000", "1")))) is filled


def test_touch_probabilistic_is_seeded_and_near_probability() -> None:
    def run(seed: int) -> list[bool]:
        config = SimVenueConfig(queue_model="probabilistic", queue_fill_probability=0.3)
        e = MatchingEngine(config, rng=random.Random(seed))
        out = []
        for i in range(400):
            e.place(req(f"b{i}", "BUY", "50000", "0.0001"), i)
            hit = bool(fills(e.on_trade(trade("50000", "1", ts=i))))
            if not hit:
                e.cancel(SYM, f"b{i}", i)
            out.append(hit)
        return out

    a, b = run(1), run(1)
    assert a == b
    assert run(2) != a
    assert 0.2 < sum(a) / len(a) < 0.4


def test_probabilistic_never_draws_without_orders_at_touch() -> None:
    e = make("probabilistic")
    state = e.rng.getstate()
    e.on_trade(trade("50000", "1"))
    e.place(req("b", "BUY", "49000", "0.01"), 1)
    e.on_trade(trade("50000", "1"))
    assert e.rng.getstate() == state


def test_partial_fills_bounded_by_trade_size_in_time_priority() -> None:
    e = make("touch")
    e.place(req("first", "BUY", "50000", "0.2"), 1)
    e.place(req("second", "BUY", "50000", "0.2"), 2)
    e.place(req("better", "BUY", "50001", "0.1"), 3)
    events = e.on_trade(trade("50000", "0.3", ts=10))
    fs = fills(events)
    assert [(f.client_id, f.last_qty, f.status) for f in fs] == [
        ("better", D("0.1"), "FILLED"),
        ("first", D("0.2"), "FILLED"),
    ]
    assert [f.trade_id for f in fs] == [1, 2]
    fs = fills(e.on_trade(trade("50000", "0.05", ts=11)))
    assert [(f.client_id, f.last_qty, f.cum_qty, f.status) for f in fs] == [
        ("second", D("0.05"), D("0.05"), "PARTIALLY_FILLED")
    ]
    assert e.query(SYM, "second").cum_qty == D("0.05")
    # cancel the rest: CANCELED carries cum_qty, the remaining lock is released
    order, events = e.cancel(SYM, "second", 12)
    assert order.cum_qty == D("0.05") and events[0].cum_qty == D("0.05")  # type: ignore
    assert e.balance("USDT").locked == 0


def test_trade_through_levels_share_the_trade_size() -> None:
    e = make()
    for i, p in enumerate(("50003", "50002", "50001")):
        e.place(req(f"b{i}", "BUY", p, "0.1"), i)
    fs = fills(e.on_trade(trade("50000", "0.25")))
    assert [(f.client_id, f.last_qty, f.last_price) for f in fs] == [
        ("b0", D("0.1"), D("50003")),
        ("b1", D("0.1"), D("50002")),
        ("b2", D("0.05"), D("50001")),
    ]


def test_quote_crossing_fills_at_most_displayed_qty() -> None:
    e = make()
    e.on_quote(quote("49990", "49999"))
    e.place(req("b1", "BUY", "49995", "0.3"), 1)
    e.place(req("b2", "BUY", "49994", "0.3"), 2)
    # ask drops to exactly our price: counts (the ask would match us), displayed 0.4
    fs = fills(e.on_quote(quote("49990", "49995", ask_qty="0.4", ts=5)))
    assert [(f.client_id, f.last_qty) for f in fs] == [("b1", D("0.3"))]
    # ask through both: 0.4 displayed -> b2 gets 0.3
    fs = fills(e.on_quote(quote("49900", "49901", ask_qty="0.4", ts=6)))
    assert [(f.client_id, f.last_qty, f.last_price) for f in fs] == [("b2", D("0.3"), D("49994"))]


def test_quote_crossing_sell() -> None:
    e = make()
    e.place(req("s", "SELL", "60000", "0.3"), 1)
    fs = fills(e.on_quote(quote("60000", "60001", bid_qty="0.1")))
    assert [(f.last_qty, f.status) for f in fs] == [(D("0.1"), "PARTIALLY_FILLED")]


def test_taker_cross_fills_at_book_and_rests_remainder() -> None:
    e = make(taker_fee=D("0.002"))
    usdt0, btc0 = total(e, "USDT"), total(e, "BTC")
    e.on_quote(quote("59990", "60000", ask_qty="0.1"))
    order, events = e.place(req("t", "BUY", "60010", "0.3", post_only=False), 1)
    (f,) = fills(events)
    assert f.maker is False and f.last_price == D("60000") and f.last_qty == D("0.1")
    assert f.fee == D("12")  # 6000 * 0.002
    assert order.status == "PARTIALLY_FILLED" and order.cum_qty == D("0.1")
    assert total(e, "BTC") == btc0 + D("0.1")
    # bought 0.1 at 60000 (not 60010), 0.2 at 60010 still locked
    assert total(e, "USDT") == usdt0 - D("6000") - D("12")
    assert e.balance("USDT").locked == D("12002")
    # the displayed ask is used up: a second taker gets nothing until the next quote
    _, events = e.place(req("t2", "BUY", "60000", "0.01", post_only=False), 2)
    assert fills(events) == []
    e.cancel(SYM, "t2", 3)
    e.cancel(SYM, "t", 3)
    assert e.balance("USDT").locked == 0


def test_taker_sell_fully_filled_is_finished() -> None:
    e = make()
    e.on_quote(quote("59990", "60000", bid_qty="5"))
    order, events = e.place(req("t", "SELL", "59000", "0.1", post_only=False), 1)
    assert order.status == "FILLED"
    (f,) = fills(events)
    assert f.last_price == D("59990") and not f.maker
    assert e.open_orders() == []
    assert e.query(SYM, "t").status == "FILLED"
    assert e.balance("BTC").locked == 0


def test_fee_rounding_half_up_8dp() -> None:
    e = make(maker_fee=D("0.0005"))
    e.place(req("b", "BUY", "50000.10", "0.0001"), 1)
    (f,) = fills(e.on_trade(trade("50000", "1")))
    # 5.00001 * 0.0005 = 0.002500005 -> 0.00250001 (half up, not half even)
    assert f.fee == D("0.00250001")
    assert e.fees["USDT"] == f.fee and e.fill_count == 1 and e.maker_fills == 1


def test_no_orders_market_data_is_recorded_only() -> None:
    e = make()
    q = quote("1", "2")
    t = trade("1", "1")
    assert e.on_quote(q) == [] and e.on_trade(t) == []
    assert e.last_quote(SYM) == q and e.last_trade(SYM) == t
    other = Quote(symbol="ZZZ/USDT", bid=D(1), bid_qty=D(1), ask=D(2), ask_qty=D(1), ts=1)
    assert e.on_quote(other) == []


def test_balances_conserved_over_random_session() -> None:
    """Base moves exactly by fills; quote by notional + fees; locks return to zero."""
    config = attrs.evolve(SimVenueConfig(), queue_model="probabilistic")
    e = MatchingEngine(config, rng=random.Random(3))
    r = random.Random(11)
    usdt0, btc0 = total(e, "USDT"), total(e, "BTC")
    bought = sold = spent = fees = D(0)
    n = 0
    price = 60000
    for ts in range(2000):
        price += r.randint(-20, 20)
        if r.random() < 0.3:
            side = r.choice(["BUY", "SELL"])
            p = price - r.randint(1, 30) if side == "BUY" else price + r.randint(1, 30)
            try:
                e.place(req(f"o{n}", side, str(p), str(D(r.randint(1, 200)) / 10000)), ts)
            except (InsufficientBalance, WouldTake):
                pass
            n += 1
        if e.open_orders() and r.random() < 0.05:
            e.cancel(SYM, r.choice(e.open_orders()).client_id, ts)
        evs = e.on_quote(quote(str(price - 1), str(price), "0.5", "0.5", ts=ts))
        evs += e.on_trade(trade(str(price), str(D(r.randint(1, 100)) / 1000), ts=ts))
        for f in fills(evs):
            fees += f.fee
            if f.side == "BUY":
                bought += f.last_qty
                spent += f.last_qty * f.last_price
            else:
                sold += f.last_qty
                spent -= f.last_qty * f.last_price
    for o in e.open_orders():
        e.cancel(SYM, o.client_id, 10**6)
    assert bought > 0 and sold > 0
    assert total(e, "BTC") == btc0 + bought - sold
    assert total(e, "USDT") == usdt0 - spent - fees
    assert e.balance("USDT").locked == 0 and e.balance("BTC").locked == 0
