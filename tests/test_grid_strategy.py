"""Unit tests of the pure grid strategy: window, trailing, take-profits, gates, ids."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mm_trio.core.grid import GridStrategy
from mm_trio.domain.config import GridConfig
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import OrderUpdate, Quote, SymbolSpec

D = Decimal
SYM = "BTC/USDT"


def spec(**kw: object) -> SymbolSpec:
    base = dict(symbol=SYM, base="BTC", quote="USDT", tick_size=D("0.01"), step_size=D("0.01"))
    base.update(kw)
    return SymbolSpec(**base)  # type: ignore[arg-type]


def cfg(**kw: object) -> GridConfig:
    base = dict(
        spacing="arithmetic",
        step=D("1"),
        levels_below=3,
        levels_above=2,
        order_size=D("1"),
        order_size_in="base",
        mode="long",
        anchor=D("100"),
    )
    base.update(kw)
    return GridConfig(**base)  # type: ignore[arg-type]


def quote(bid: str, ask: str) -> Quote:
    return Quote(symbol=SYM, bid=D(bid), bid_qty=D(1), ask=D(ask), ask_qty=D(1), ts=0)


def places(intents: list[Intent]) -> list[PlaceOrder]:
    return [i for i in intents if isinstance(i, PlaceOrder)]


def cancels(intents: list[Intent]) -> list[str]:
    return [i.client_id for i in intents if isinstance(i, CancelOrder)]


def summary(intents: list[Intent]) -> list[tuple[str, str, Decimal, Decimal, bool]]:
    return [
        (
            p.request.side,
            p.request.client_id.split("_")[2],
            p.request.price,
            p.request.qty,
            p.opening,
        )
        for p in places(intents)
    ]


class Book:
    """Tiny helper: the strategy plus report builders."""

    def __init__(self, s: GridStrategy) -> None:
        self.s = s
        self.trade = 0

    def order(self, level: int, side: str = "BUY") -> PlaceOrder:
        for o in self.s.live_orders():
            if o.level == level and o.side == side:
                return PlaceOrder(  # rebuilt view of the live order
                    request=_req(o.client_id, o.side, o.price, o.qty), opening=o.opening
                )
        raise AssertionError(f"no live {side} at level {level}: {self.s.live_orders()}")

    def report(
        self,
        p: PlaceOrder,
        status: str,
        cum: str = "0",
        last: str = "0",
        fee: str = "0",
        fee_asset: str = "USDT",
    ) -> list[Intent]:
        r = p.request
        trade_id = None
        if D(last) > 0:
            self.trade += 1
            trade_id = self.trade
        return self.s.on_order_update(
            OrderUpdate(
                symbol=SYM,
                client_id=r.client_id,
                side=r.side,
                price=r.price,
                qty=r.qty,
                status=status,
                cum_qty=D(cum),
                last_qty=D(last),  # type: ignore[arg-type]
                last_price=r.price if D(last) else D(0),
                fee=D(fee),
                fee_asset=fee_asset,
                trade_id=trade_id,
            )
        )

    def fill(self, p: PlaceOrder, cum: str | None = None, **kw: str) -> list[Intent]:
        done = cum is None or D(cum) == p.request.qty
        c = str(p.request.qty) if cum is None else cum
        prev = next(
            (o.filled for o in self.s.live_orders() if o.client_id == p.request.client_id), D(0)
        )
        return self.report(p, "FILLED" if done else "PARTIALLY_FILLED", c, str(D(c) - prev), **kw)


def _req(cid: str, side: str, price: Decimal, qty: Decimal):  # type: ignore[no-untyped-def]
    from mm_trio.domain.model import OrderRequest

    return OrderRequest(
        symbol=SYM,
        client_id=cid,
        side=side,
        price=price,  # type: ignore[arg-type]
        qty=qty,
    )


# --------------------------------------------------------------------------- window
def test_initial_window_places_post_only_buys_below_price() -> None:
    s = GridStrategy(spec(), cfg())
    out = s.on_quote(quote("100.40", "100.60"))
    assert summary(out) == [
        ("BUY", "B0", D("100"), D("1"), True),
        ("BUY", "B-1", D("99"), D("1"), True),
        ("BUY", "B-2", D("98"), D("1"), True),
    ]
    assert all(p.request.post_only for p in places(out))
    assert s.open_buy_notional == D("297")
    assert s.anchor == D("100")
    # the window did not move: nothing to do
    assert s.on_quote(quote("100.41", "100.59")) == []
    assert s.on_quote(quote("100.01", "100.99")) == []


def _wobble(s: GridStrategy, mids: list[str]) -> list[Intent]:
    """Quotes one cent wide around each mid; every intent they produce, acks applied."""
    b = Book(s)
    out: list[Intent] = []
    for m in mids:
        mid = D(m)
        got = s.on_quote(quote(str(mid - D("0.01")), str(mid + D("0.01"))))
        out += got
        # confirm cancels at once, so the window can refill
        for cid in cancels(got):
            o = next(o for o in s.live_orders() if o.client_id == cid)
            out += b.report(b.order(o.level, o.side), "CANCELED")
    return out


def test_price_wobbling_around_a_level_does_not_churn() -> None:
    """Hysteresis (default 0.25 of a level): a mid wobbling a few cents around level 1
    (101) leaves the window alone; without it, every crossing cancels and re-places."""
    wobble = ["100.90", "101.10", "100.95", "101.20", "100.80", "101.05"] * 5
    calm = GridStrategy(spec(), cfg())
    calm.on_quote(quote("100.40", "100.60"))
    assert _wobble(calm, wobble) == []
    plain = GridStrategy(spec(), cfg(trail_hysteresis=D(0)))
    plain.on_quote(quote("100.40", "100.60"))
    churn = _wobble(plain, wobble)
    assert len(cancels(churn)) >= 10 and len(places(churn)) >= 10


def test_window_moves_once_the_price_clears_the_band() -> None:
    s = GridStrategy(spec(), cfg())  # levels 1 apart, h = 0.25
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    assert s.on_quote(quote("101.23", "101.25")) == []  # x = 101.24 <= 101 + 0.25
    low = b.order(-2)
    out = s.on_quote(quote("101.25", "101.27"))  # x = 101.26 > 101.25: top is now level 1
    assert cancels(out) == [low.request.client_id]
    assert summary(b.report(low, "CANCELED")) == [("BUY", "B1", D("101"), D("1"), True)]
    # back down: level 1 is kept until x <= 101 - 0.25 (it would be filled first on a venue)
    assert s.on_quote(quote("100.76", "100.78")) == []
    out = s.on_quote(quote("100.73", "100.75"))  # x = 100.74
    assert cancels(out) == [b.order(1).request.client_id]


def test_kept_edge_level_gets_no_new_buy_until_the_price_is_above_it_again() -> None:
    """Inside the band below the top level, that level keeps its order but a new one there
    would not be post-only safe: none is placed until the price is back above it."""
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    assert s.on_quote(quote("99.80", "99.90")) == []  # x = 99.85 in (100 - 0.25, 100]
    top = b.order(0)
    assert b.report(top, "CANCELED") == []  # e.g. cancelled by the venue: not re-placed
    assert sorted(o.level for o in s.live_orders()) == [-2, -1]
    assert s.on_quote(quote("99.98", "100.00")) == []  # x = 99.99: still not below the ask
    out = s.on_quote(quote("100.01", "100.03"))  # x = 100.02 > 100: the same window, placeable
    assert summary(out) == [("BUY", "B0", D("100"), D("1"), True)]
    assert s.on_quote(quote("100.02", "100.04")) == []  # a fixpoint again


def test_hysteresis_applies_to_the_sell_window_too() -> None:
    s = GridStrategy(
        spec(), cfg(mode="neutral", levels_below=0, levels_above=2), start_position=D(10)
    )
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))  # sells at 101, 102
    assert sorted((o.side, o.level) for o in s.live_orders()) == [("SELL", 1), ("SELL", 2)]
    assert s.on_quote(quote("99.78", "99.80")) == []  # y = 99.79 >= 100 - 0.25: kept
    assert s.on_quote(quote("99.74", "99.76")) == []  # y = 99.75: the band's edge, kept
    out = s.on_quote(quote("99.72", "99.74"))  # y = 99.73: bottom is now level 0 (100)
    assert cancels(out) == [b.order(2, "SELL").request.client_id]
    assert summary(b.report(b.order(2, "SELL"), "CANCELED")) == [
        ("SELL", "S0", D("100"), D("1"), True)
    ]


def test_anchor_defaults_to_first_mid_snapped() -> None:
    s = GridStrategy(spec(), cfg(anchor=None))
    s.on_quote(quote("100.00", "100.03"))
    assert s.anchor == D("100.01")  # mid 100.015 snapped down


def test_buy_window_respects_best_ask() -> None:
    s = GridStrategy(spec(), cfg(inventory_skew=D(0)))
    out = s.on_quote(quote("99.50", "100.00"))  # mid 99.75: level 0 (100) is not < ask
    assert [p.request.price for p in places(out)] == [D("99"), D("98"), D("97")]


def test_trailing_cancels_and_replaces_after_confirmation() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    low = b.order(-2)
    out = s.on_quote(quote("101.40", "101.60"))  # window moves up one level
    assert cancels(out) == [low.request.client_id]
    assert places(out) == []  # the cap counts cancel-requested orders
    out = b.report(low, "CANCELED")
    assert summary(out) == [("BUY", "B1", D("101"), D("1"), True)]
    # and down again
    out = s.on_quote(quote("99.40", "99.60"))
    assert sorted(cancels(out)) == sorted(
        [b.order(1).request.client_id, b.order(0).request.client_id]
    )


def test_quote_sized_orders_and_skipped_levels() -> None:
    s = GridStrategy(spec(min_notional=D("99")), cfg(order_size=D("100"), order_size_in="quote"))
    out = s.on_quote(quote("100.40", "100.60"))
    # 100/100 = 1.00; 100/99 = 1.0101 -> 1.01; 100/98 -> 1.02 but 98*1.02 = 99.96 ok
    assert [(p.request.price, p.request.qty) for p in places(out)] == [
        (D("100"), D("1.00")),
        (D("99"), D("1.01")),
        (D("98"), D("1.02")),
    ]
    s = GridStrategy(spec(min_qty=D("2")), cfg())
    assert s.on_quote(quote("100.40", "100.60")) == []  # every level below min qty


def test_bounds_limit_opening_orders() -> None:
    s = GridStrategy(spec(), cfg(lower=D("98.5")))
    out = s.on_quote(quote("100.40", "100.60"))
    assert [p.request.price for p in places(out)] == [D("100"), D("99")]
    s = GridStrategy(spec(), cfg(upper=D("99.5")))
    out = s.on_quote(quote("100.40", "100.60"))
    assert [p.request.price for p in places(out)] == [D("99"), D("98")]


# --------------------------------------------------------------------------- take-profit
def test_fill_places_take_profit_one_level_up_for_exact_qty() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    assert b.report(p, "NEW") == []
    out = b.fill(p)
    assert summary(out) == [("SELL", "S0", D("101"), D("1"), False)]
    assert places(out)[0].request.post_only is False
    assert s.position == D("1")
    assert s.level_inventory() == {0: D("1")}
    # the take-profit fills: level 0 is free again and buys again
    tp = b.order(0, "SELL")
    out = b.fill(tp)
    assert s.position == D("0") and s.level_inventory() == {}
    assert summary(out) == [("BUY", "B0", D("100"), D("1"), True)]


def test_partial_fill_then_cancel_takes_profit_on_filled_part() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    assert b.fill(p, "0.3") == []  # still working: no take-profit yet
    assert s.position == D("0.3")
    assert s.level_inventory() == {0: D("0.3")}
    out = s.on_quote(quote("103.40", "103.60"))  # all three leave the window
    assert len(cancels(out)) == 3 and places(out) == []
    out = b.report(p, "CANCELED", "0.3")
    # no new buy at or above the take-profit (101): nothing else to place yet
    assert summary(out) == [("SELL", "S0", D("101"), D("0.3"), False)]


def test_take_profit_below_opening_buys_cancels_them_first() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(-2)
    b.fill(p, "0.3")
    out = s.on_quote(quote("101.40", "101.60"))
    assert cancels(out) == [p.request.client_id]
    out = b.report(p, "CANCELED", "0.3")
    # its take-profit (99) would cross our buys at 99 and 100: cancel them, defer it
    assert places(out) == []
    assert sorted(cancels(out)) == sorted(
        [b.order(0).request.client_id, b.order(-1).request.client_id]
    )
    b.report(b.order(0), "CANCELED")
    out = b.report(b.order(-1), "CANCELED")
    assert summary(out) == [("SELL", "S-2", D("99"), D("0.3"), False)]


def test_dust_is_carried_to_the_next_lot() -> None:
    s = GridStrategy(spec(step_size=D("0.1"), min_qty=D("0.2")), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    b.fill(p, "0.1")
    out = b.report(p, "CANCELED", "0.1")
    # 0.1 is dust (below min qty): no take-profit; the level is empty and buys again
    assert summary(out) == [("BUY", "B0", D("100"), D("1.0"), True)]
    assert s.level_inventory() == {0: D("0.1")}
    out = b.fill(b.order(0))
    assert summary(out) == [("SELL", "S0", D("101"), D("1.1"), False)]


def test_base_fee_reduces_lot_and_take_profit() -> None:
    s = GridStrategy(spec(step_size=D("0.001")), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    out = b.fill(b.order(0), fee="0.001", fee_asset="BTC")
    assert summary(out) == [("SELL", "S0", D("101"), D("0.999"), False)]
    assert s.position == D("0.999")


def test_unconfirmed_fill_keeps_a_fee_reserve() -> None:
    s = GridStrategy(spec(step_size=D("0.001")), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    # the cancel confirmation (cumulative qty) overtakes the trade report with the fee
    out = b.report(p, "CANCELED", "0.5")
    assert s.position == D("0.5")
    assert ("SELL", "S0", D("101"), D("0.495"), False) in summary(out)  # 1 % kept back
    out = b.report(p, "PARTIALLY_FILLED", "0.5", "0.5", fee="0.0005", fee_asset="BTC")
    assert places(out) == []
    assert s.position == D("0.4995")  # 0.495 to sell, 0.0045 dust stays on the level
    assert s.level_inventory() == {0: D("0.4995")}


def test_reports_are_idempotent_sticky_and_monotonic() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    b.fill(p, "0.4")
    before = (s.position, s.live_orders())
    # a duplicate (same cum, same trade) and a stale lower cum change nothing
    assert (
        s.on_order_update(
            OrderUpdate(
                symbol=SYM,
                client_id=p.request.client_id,
                side="BUY",
                price=D(100),
                qty=D(1),
                status="PARTIALLY_FILLED",
                cum_qty=D("0.4"),
                last_qty=D("0.4"),
                trade_id=1,
            )
        )
        == []
    )
    assert b.report(p, "NEW") == []
    assert (s.position, s.live_orders()) == before
    b.report(p, "FILLED", "1", "0.6")
    # a late NEW does not revive a filled order
    assert b.report(p, "NEW") == []
    assert all(o.client_id != p.request.client_id for o in s.live_orders())
    assert s.position == D("1")


def test_higher_cum_after_cancel_still_counts() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    out = b.report(p, "CANCELED", "0")
    assert summary(out) == [("BUY", "B0", D("100"), D("1"), True)]  # level 0 re-opens
    assert s.position == 0
    assert b.report(p, "PARTIALLY_FILLED", "0.5", "0.5") == []  # joins the level's lot
    assert s.position == D("0.5")
    assert s.level_inventory() == {0: D("0.5")}
    out = b.fill(b.order(0))
    assert summary(out) == [("SELL", "S0", D("101"), D("1.5"), False)]


def test_unknown_updates_are_counted_and_ignored() -> None:
    s = GridStrategy(spec(), cfg())
    s.on_quote(quote("100.40", "100.60"))
    u = OrderUpdate(
        symbol=SYM,
        client_id="other_1",
        side="BUY",
        price=D(1),
        qty=D(1),
        status="FILLED",
        cum_qty=D(1),
    )
    assert s.on_order_update(u) == []
    assert s.ignored_updates == 1
    assert s.position == 0


def test_rejected_opening_not_retried_until_window_moves() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(0)
    assert b.report(p, "REJECTED") == []
    assert b.fill(b.order(-2), "0.1") == []  # re-evaluated, but level 0 is not retried
    out = s.on_quote(quote("101.40", "101.60"))
    assert summary(out) == [("BUY", "B1", D("101"), D("1"), True)]
    out = b.report(b.order(-1), "CANCELED")  # window moved: level 0 may try again
    assert summary(out) == [("BUY", "B0", D("100"), D("1"), True)]


# --------------------------------------------------------------------------- no self-cross
def test_take_profit_blocked_by_opening_buy_cancels_it_first() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    blocker = b.order(0)
    out = b.fill(b.order(-1))  # take-profit would sit at 100, where our buy rests
    assert cancels(out) == [blocker.request.client_id]
    assert places(out) == []
    out = b.report(blocker, "CANCELED")
    assert summary(out) == [("SELL", "S-1", D("100"), D("1"), False)]
    # level 0 is not re-opened below... it is not strictly below the take-profit
    assert s.on_quote(quote("100.30", "100.70")) == []
    live = s.live_orders()
    assert max(o.price for o in live if o.side == "BUY") < min(
        o.price for o in live if o.side == "SELL"
    )


def test_max_orders_makes_room_for_closing_orders() -> None:
    s = GridStrategy(
        spec(max_orders=2),
        cfg(mode="neutral", levels_below=1, levels_above=3),
        start_position=D("5"),
    )
    b = Book(s)
    out = s.on_quote(quote("100.40", "100.60"))
    assert summary(out) == [
        ("BUY", "B0", D("100"), D("1"), True),
        ("SELL", "S1", D("101"), D("1"), True),
    ]
    out = b.fill(b.order(1, "SELL"))
    assert summary(out) == [("BUY", "B1", D("100"), D("1"), False)]  # the buy-back
    out = s.set_gates(halt_opening=False, reduce_only=True)
    assert out == []  # reduce-only keeps resting buys: the governor trims what is too much
    out = s.trim_buys(D(0))
    assert len(cancels(out)) == 2
    out = b.report(b.order(0), "CANCELED")
    assert summary(out) == [("SELL", "S2", D("102"), D("1"), True)]
    out = b.report(b.order(1), "CANCELED")
    assert summary(out) == [("SELL", "S3", D("103"), D("1"), True)]
    out = s.set_gates(halt_opening=False, reduce_only=False)
    # the buy-back is due but the venue max is reached: the farthest opening order goes
    assert cancels(out) == [b.order(3, "SELL").request.client_id]
    assert places(out) == []
    out = b.report(b.order(3, "SELL"), "CANCELED")
    assert summary(out) == [("BUY", "B1", D("100"), D("1"), False)]
    assert len(s.live_orders()) == 2


# --------------------------------------------------------------------------- neutral
def test_neutral_sells_held_base_and_buys_back_one_level_down() -> None:
    s = GridStrategy(spec(), cfg(mode="neutral", levels_below=1), start_position=D("1.5"))
    b = Book(s)
    out = s.on_quote(quote("100.40", "100.60"))
    # only 1.5 base is held: one opening sell of 1
    assert summary(out) == [
        ("BUY", "B0", D("100"), D("1"), True),
        ("SELL", "S1", D("101"), D("1"), True),
    ]
    out = b.fill(b.order(1, "SELL"))
    assert s.position == D("0.5")
    assert s.level_inventory() == {1: D("-1")}
    # the buy-back sits one level down (slot 1, price of level 0)
    assert summary(out) == [("BUY", "B1", D("100"), D("1"), False)]
    out = b.fill(b.order(1, "BUY"))
    assert s.position == D("1.5") and s.level_inventory() == {}
    assert summary(out) == [("SELL", "S1", D("101"), D("1"), True)]  # level 1 sells again


def test_inventory_skew_shifts_the_window_down() -> None:
    base = cfg(levels_below=2, inventory_skew=D(1))
    s = GridStrategy(spec(), base)
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    out = b.fill(b.order(0))
    # one held long level: ref = 100.5 - 1 step = 99.5, so the window is 99, 98
    assert summary(out) == [
        ("SELL", "S0", D("101"), D("1"), False),
        ("BUY", "B-2", D("98"), D("1"), True),
    ]


# --------------------------------------------------------------------------- gates
def test_halt_opening_cancels_openings_keeps_take_profits() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    b.fill(b.order(0))
    tp = b.order(0, "SELL")
    out = s.set_gates(halt_opening=True, reduce_only=False)
    assert sorted(cancels(out)) == sorted(o.client_id for o in s.live_orders() if o.opening)
    assert tp.request.client_id not in cancels(out)
    for o in s.live_orders():
        if o.opening:
            b.report(b.order(o.level), "CANCELED")
    assert s.on_quote(quote("98.40", "98.60")) == []
    out = s.set_gates(halt_opening=False, reduce_only=False)
    assert all(p.opening for p in places(out)) and places(out)


def test_reduce_only_keeps_resting_buys_and_places_none() -> None:
    s = GridStrategy(spec(), cfg(mode="neutral"), start_position=D("5"))
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    b.fill(b.order(1, "SELL"))  # short lot at 1: needs a buy-back
    buys = {o.client_id for o in s.live_orders() if o.side == "BUY"}
    assert len(buys) == 4  # three opening buys and the buy-back
    out = s.set_gates(halt_opening=False, reduce_only=True)
    assert out == []  # nothing cancelled, nothing placed
    # a trailing buy still leaves the window; its level is not bought again
    out = s.on_quote(quote("103.40", "103.60"))
    assert all(p.request.side == "SELL" for p in places(out))
    gone = [o for o in s.live_orders() if o.client_id in cancels(out) and o.side == "BUY"]
    assert gone and all(o.opening for o in gone)
    for o in gone:
        out = b.report(b.order(o.level), "CANCELED")
        assert all(p.request.side == "SELL" for p in places(out))
    out = s.trim_buys(D(0))  # the governor trims every buy: the buy-back goes too
    assert {o.client_id for o in s.live_orders() if o.side == "BUY"} == set(cancels(out))
    for cid in cancels(out):
        o = next(o for o in s.live_orders() if o.client_id == cid)
        b.report(b.order(o.level, "BUY"), "CANCELED")
    out = s.set_gates(halt_opening=False, reduce_only=False)
    assert any(p.request.side == "BUY" and not p.opening for p in places(out))


def test_trim_buys_cancels_the_farthest_first_down_to_the_allowance() -> None:
    s = GridStrategy(spec(), cfg(levels_below=4))
    s.on_quote(quote("100.40", "100.60"))
    assert s.open_buy_notional == D(100 + 99 + 98 + 97)
    s.set_gates(halt_opening=False, reduce_only=True)
    out = s.trim_buys(D(250))  # keep 250 of 394: 97 and 98 go (the lowest prices)
    assert [s.live_order(c).price for c in cancels(out)] == [D(97), D(98)]  # type: ignore[union-attr]
    assert s.cancelling_buy_notional == D(97 + 98)
    assert s.open_buy_notional == D(394)  # still live until the venue confirms
    assert s.trim_buys(D(250)) == []  # idempotent: cancels under way are not asked twice
    out = s.trim_buys(D(100))
    assert [s.live_order(c).price for c in cancels(out)] == [D(99)]  # type: ignore[union-attr]
    assert s.trim_buys(D(1000)) == []


def test_stop_cancels_everything_and_resume_replaces_take_profit_remainder() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    b.fill(b.order(0))
    tp = b.order(0, "SELL")
    b.fill(tp, "0.4")
    out = s.stop()
    assert s.stopped
    assert sorted(cancels(out)) == sorted(o.client_id for o in s.live_orders())
    assert places(out) == []
    for o in list(s.live_orders()):
        b.report(b.order(o.level, o.side), "CANCELED", str(o.filled))
    assert s.live_orders() == []
    assert s.on_quote(quote("102.40", "102.60")) == []
    assert s.level_inventory() == {0: D("0.6")}
    out = s.resume()
    assert ("SELL", "S0", D("101"), D("0.6"), False) in summary(out)


# --------------------------------------------------------------------------- ids, config
def test_client_ids_unique_and_generation_counts_up() -> None:
    s = GridStrategy(spec(), cfg(), generation_start=41)
    out = s.on_quote(quote("100.40", "100.60"))
    ids = [p.request.client_id for p in places(out)]
    parsed = [parse_client_id(i) for i in ids]
    assert [p.generation for p in parsed if p] == [42, 43, 44]
    assert all(p is not None and p.prefix == "mmt" and p.sym == "BTCUSDT" for p in parsed)
    assert s.generation == 44


def test_geometric_strategy_prices() -> None:
    s = GridStrategy(spec(), cfg(spacing="geometric", step=D("0.01")))
    out = s.on_quote(quote("100.40", "100.60"))
    assert [p.request.price for p in places(out)] == [D("100"), D("99.00"), D("98.02")]


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(step=D("0.001")), "grid.step"),
        (dict(step=D("0")), "grid.step"),
        (dict(levels_below=0, levels_above=0), "levels_below"),
        (dict(order_size=D("-1")), "grid.order_size"),
        (dict(spacing="geometric", step=D("0.00001")), "grid.step"),
        (dict(client_id_prefix="bad prefix"), "client_id_prefix"),
        (dict(trail_hysteresis=D("1")), "grid.trail_hysteresis"),
        (dict(trail_hysteresis=D("-0.1")), "grid.trail_hysteresis"),
    ],
)
def test_bad_config_raises_value_error_naming_key(kw: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        GridStrategy(spec(), cfg(**kw))


def test_geometric_step_too_small_at_first_mid_raises() -> None:
    s = GridStrategy(spec(), cfg(spacing="geometric", step=D("0.00001"), anchor=None))
    with pytest.raises(ValueError, match="grid.step"):
        s.on_quote(quote("100.40", "100.60"))


# --------------------------------------------------------------------------- tables
def test_order_transition_table_is_complete_and_sticky() -> None:
    from mm_trio.core.grid.slots import ORDER_TRANSITIONS
    from mm_trio.domain.model import TERMINAL_STATUSES

    statuses = [
        "PENDING_NEW",
        "NEW",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELED",
        "EXPIRED",
        "REJECTED",
    ]
    for cur in statuses:
        for rep in statuses:
            nxt, _ = ORDER_TRANSITIONS[(cur, rep)]  # type: ignore[index]
            if cur in TERMINAL_STATUSES:
                assert nxt == cur
    assert ORDER_TRANSITIONS[("PARTIALLY_FILLED", "NEW")] == ("PARTIALLY_FILLED", False)
    assert ORDER_TRANSITIONS[("NEW", "REJECTED")] == ("NEW", True)


def test_illegal_slot_transition_raises() -> None:
    from mm_trio.core.grid.slots import Slot, SlotEvent, SlotState, SlotStateError

    slot = Slot(3)
    slot.closing = "x"
    with pytest.raises(SlotStateError, match="EMPTY --place_open--> CLOSING"):
        slot.check(SlotState.EMPTY, SlotEvent.PLACE_OPEN)


def test_cancel_reject_keeps_order_live_and_is_counted() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    p = b.order(-2)
    b.report(p, "NEW")
    out = s.on_quote(quote("101.40", "101.60"))
    assert cancels(out) == [p.request.client_id]
    assert b.report(p, "REJECTED") == []  # the cancel was refused
    assert s.cancel_rejects == 1
    o = next(o for o in s.live_orders() if o.client_id == p.request.client_id)
    assert o.cancel_requested and o.status == "NEW"
    out = b.fill(p)  # it had filled: its take-profit (99) first clears our buys at 99, 100
    assert sorted(cancels(out)) == sorted(
        [b.order(0).request.client_id, b.order(-1).request.client_id]
    )
    assert s.level_inventory() == {-2: D("1")}


def test_crossed_quotes_are_ignored() -> None:
    s = GridStrategy(spec(), cfg())
    assert s.on_quote(quote("100.60", "100.40")) == []
    assert s.ignored_quotes == 1
    assert s.anchor == D("100")  # configured anchor, no quote seen yet


def test_open_buy_notional_tracks_remaining_quantity() -> None:
    s = GridStrategy(spec(), cfg())
    b = Book(s)
    s.on_quote(quote("100.40", "100.60"))
    assert s.open_buy_notional == D("297")
    b.fill(b.order(-2), "0.5")
    assert s.open_buy_notional == D("248")
