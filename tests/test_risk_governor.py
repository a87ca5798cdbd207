"""Tests of the aggregate RiskGovernor: caps, hysteresis, reservations, kill switch."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.risk.governor import GovernorChange, RiskGovernor
from mm_trio.domain.config import GovernorConfig
from mm_trio.domain.intents import CancelOrder, PlaceOrder
from mm_trio.domain.model import OrderRequest, Side

D = Decimal
# no hold time: these tests are about the value band (the time hold is tested further down)
CFG = GovernorConfig(
    max_total_exposure=D("1000"),
    max_symbol_exposure=D("600"),
    hysteresis=D("0.1"),
    max_total_loss=D("100"),
    reduce_only_min_hold=0.0,
)


def place(symbol: str, side: Side, price: str, qty: str) -> PlaceOrder:
    return PlaceOrder(
        OrderRequest(symbol=symbol, client_id="mmt_X_B0_1", side=side, price=D(price), qty=D(qty))
    )


def upd(
    g: RiskGovernor,
    symbol: str,
    position: str = "0",
    mid: str | None = "100",
    open_buy: str = "0",
    pnl: str = "0",
    now: float = 0.0,
    cancelling: str = "0",
) -> list[GovernorChange]:
    return g.update(
        symbol,
        position=D(position),
        mid=None if mid is None else D(mid),
        open_buy_notional=D(open_buy),
        pnl=D(pnl),
        now=now,
        cancelling_buy_notional=D(cancelling),
    )


def test_exposure_is_position_value_plus_open_buys() -> None:
    g = RiskGovernor(CFG)
    assert upd(g, "BTC/USDT", position="2", mid="100", open_buy="150") == []
    assert upd(g, "ETH/USDT", position="-1", mid="50", open_buy="0") == []
    snap = g.exposure()
    assert snap.per_symbol == {"BTC/USDT": D(350), "ETH/USDT": D(50)}
    assert snap.total == D(400)
    assert (snap.max_total, snap.max_symbol) == (D(1000), D(600))
    assert not snap.reduce_only_total and snap.reduce_only_symbols == []


def test_symbol_hysteresis() -> None:
    g = RiskGovernor(CFG)
    assert upd(g, "A/USDT", position="6", mid="100") == []  # 600: at the cap, not above
    [c] = upd(g, "A/USDT", position="6.01", mid="100")
    assert c == GovernorChange("A/USDT", "reduce_only", "A/USDT exposure 601.00 above cap 600.00")
    assert g.reduce_only("A/USDT") and not g.reduce_only("B/USDT")
    assert upd(g, "A/USDT", position="5.5", mid="100") == []  # below cap, inside the band
    assert g.reduce_only("A/USDT")
    assert upd(g, "A/USDT", position="5.4", mid="100") == []  # 540 = cap * 0.9: not below
    [c] = upd(g, "A/USDT", position="5.39", mid="100")
    assert (c.scope, c.state) == ("A/USDT", "normal")
    assert "539.00 below 540.00" in c.reason
    assert not g.reduce_only("A/USDT")


def test_total_cap_makes_every_symbol_reduce_only() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="5", mid="100")
    [c] = upd(g, "B/USDT", position="5.5", mid="100")
    assert c == GovernorChange("total", "reduce_only", "total exposure 1050.00 above cap 1000.00")
    assert g.reduce_only("A/USDT") and g.reduce_only("B/USDT") and g.reduce_only("C/USDT")
    assert g.exposure().reduce_only_symbols == []  # per-symbol caps are fine
    assert g.check("C/USDT", place("C/USDT", "BUY", "1", "1")) is not None
    [c] = upd(g, "B/USDT", position="3.9", mid="100")  # 890 < 900
    assert (c.scope, c.state) == ("total", "normal")


def test_per_symbol_reduce_only_does_not_block_other_symbols() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="7", mid="100")
    assert g.check("A/USDT", place("A/USDT", "BUY", "100", "0.1")).startswith(
        "reduce-only: A/USDT exposure 700.00 above cap 600.00"
    )
    assert g.check("A/USDT", place("A/USDT", "SELL", "100", "1")) is None
    assert g.check("B/USDT", place("B/USDT", "BUY", "100", "1")) is None


def test_reservation_prevents_a_batch_overshoot() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="1", mid="100", open_buy="100")  # 200
    admitted = [g.check("A/USDT", place("A/USDT", "BUY", "99", "1")) for _ in range(6)]
    assert admitted[:4] == [None] * 4  # 200 + 4 * 99 = 596
    assert admitted[4] is not None and admitted[5] is not None
    assert admitted[4] == (
        "buy of 99.00 would raise A/USDT exposure from 596.00 to 695.00 (cap 600.00)"
    )
    assert g.symbol_exposure("A/USDT") == D(596)
    # the next update replaces the reservation with the real open buy notional
    upd(g, "A/USDT", position="1", mid="100", open_buy="298")
    assert g.symbol_exposure("A/USDT") == D(398)


def test_reservation_respects_total_cap_across_symbols() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="4", mid="100")
    upd(g, "B/USDT", position="4", mid="100")
    assert g.check("A/USDT", place("A/USDT", "BUY", "100", "1")) is None  # total 900
    reason = g.check("B/USDT", place("B/USDT", "BUY", "100", "1.5"))
    assert reason == "buy of 150.00 would raise total exposure from 900.00 to 1050.00 (cap 1000.00)"
    assert g.check("B/USDT", place("B/USDT", "BUY", "100", "1")) is None
    assert g.total_exposure == D(1000)


def test_cancels_always_pass() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", pnl="-500")
    assert g.killed
    assert g.check("A/USDT", CancelOrder("A/USDT", "mmt_X_B0_1")) is None


def test_kill_switch_latches_until_resume() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", pnl="-60")
    [c] = upd(g, "B/USDT", pnl="-40")
    assert (c.scope, c.state) == ("kill", "killed")
    assert c.reason == "total PnL -100.00 reached the loss limit -100.00 (max_total_loss 100.00)"
    assert g.killed and g.kill_reason == c.reason
    refused = g.check("A/USDT", place("A/USDT", "SELL", "100", "1"))
    assert refused is not None and refused.startswith("kill switch: total PnL -100.00")
    assert upd(g, "B/USDT", pnl="+500") == []  # latched: recovery does not un-kill
    assert g.killed
    [c] = g.resume()
    assert (c.scope, c.state) == ("kill", "resumed")
    assert not g.killed and g.kill_reason == ""
    assert g.resume() == []
    assert g.check("A/USDT", place("A/USDT", "BUY", "100", "1")) is None


def test_resume_restarts_the_loss_allowance() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", pnl="-150")
    assert g.killed
    g.resume()
    assert upd(g, "A/USDT", pnl="-160") == []  # a fresh 100 from -150
    [c] = upd(g, "A/USDT", pnl="-250")
    assert c.state == "killed" and "loss limit -250.00" in c.reason


def test_removed_symbol_pnl_still_counts() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="7", mid="100", pnl="-70")
    changes = g.remove("A/USDT", now=0.0)
    assert GovernorChange("A/USDT", "normal", "A/USDT removed") in changes
    assert g.exposure().total == 0 and g.exposure().total_pnl == D(-70)
    [c] = upd(g, "B/USDT", pnl="-30")
    assert c.state == "killed"
    assert g.remove("nope", now=0.0) == []


def test_unknown_mid_counts_open_buys_only() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="3", mid=None, open_buy="50")
    assert g.symbol_exposure("A/USDT") == D(50)
    upd(g, "A/USDT", position="3", mid="100", open_buy="50")
    upd(g, "A/USDT", position="3", mid=None, open_buy="50")  # keeps the last mid
    assert g.symbol_exposure("A/USDT") == D(350)


# --------------------------------------------------------------------------- property

SYMS = ["A/USDT", "B/USDT", "C/USDT"]
op = st.one_of(
    st.tuples(
        st.just("update"),
        st.sampled_from(SYMS),
        st.integers(0, 900),
        st.integers(1, 200),
        st.integers(0, 400),
        st.integers(-60, 20),
    ),
    st.tuples(st.just("buy"), st.sampled_from(SYMS), st.integers(1, 200), st.integers(1, 300)),
    st.tuples(st.just("sell"), st.sampled_from(SYMS), st.integers(1, 200), st.integers(1, 300)),
    st.tuples(st.just("remove"), st.sampled_from(SYMS)),
    st.tuples(st.just("resume")),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_admitted_buys_never_push_exposure_over_caps(ops: list[tuple]) -> None:
    g = RiskGovernor(CFG)
    known: dict[str, tuple[Decimal, Decimal | None, Decimal]] = {}
    reserved: dict[str, Decimal] = {}
    for o in ops:
        if o[0] == "update":
            _, sym, pos, mid, ob, pnl = o
            known[sym] = (D(pos) / 100, D(mid), D(ob))
            reserved[sym] = D(0)
            upd(g, sym, str(D(pos) / 100), str(mid), str(ob), str(pnl))
            snap = g.exposure()
            # flags follow the band
            for s, e in snap.per_symbol.items():
                if e > CFG.max_symbol_exposure:
                    assert s in snap.reduce_only_symbols
                if e < CFG.max_symbol_exposure * (1 - CFG.hysteresis):
                    assert s not in snap.reduce_only_symbols
        elif o[0] in ("buy", "sell"):
            _, sym, price, qty = o
            side: Side = "BUY" if o[0] == "buy" else "SELL"
            was_ro, was_killed = g.reduce_only(sym), g.killed
            before_sym, before_total = g.symbol_exposure(sym), g.total_exposure
            reason = g.check(sym, place(sym, side, str(price), str(D(qty) / 100)))
            if reason is None:
                assert not was_killed
                if side == "BUY":
                    assert not was_ro
                    notional = D(price) * D(qty) / 100
                    reserved[sym] = reserved.get(sym, D(0)) + notional
                    assert g.symbol_exposure(sym) == before_sym + notional
                    assert g.symbol_exposure(sym) <= CFG.max_symbol_exposure
                    assert g.total_exposure <= CFG.max_total_exposure
                    assert g.total_exposure == before_total + notional
            else:
                assert g.symbol_exposure(sym) == before_sym
                assert side == "BUY" or was_killed
        elif o[0] == "remove":
            g.remove(o[1], now=0.0)
            known.pop(o[1], None)
            reserved.pop(o[1], None)
        else:
            g.resume()
        # the exposure the governor tracks is exactly the reference
        ref: dict[str, Decimal] = {}
        for s in set(known) | set(reserved):
            pos, mid, ob = known.get(s, (D(0), None, D(0)))
            ref[s] = abs(pos) * (mid or 0) + ob + reserved.get(s, D(0))
        snap = g.exposure()
        for s, e in ref.items():
            assert snap.per_symbol.get(s, D(0)) == e
        assert snap.total == sum(ref.values(), D(0))


# --------------------------------------------------------------------------- at scale
# Issue 7 item 6: with many symbols the total cap binds; the budget must fill it fairly from
# below, reduce-only must hold in time as well as in value, and only the excess is trimmed.

HOLD = 5.0
HELD = GovernorConfig(
    max_total_exposure=D("1000"),
    max_symbol_exposure=D("600"),
    hysteresis=D("0.1"),
    max_total_loss=D("100"),
    reduce_only_min_hold=HOLD,
)


def buy(g: RiskGovernor, symbol: str, notional: str) -> str | None:
    return g.check(symbol, place(symbol, "BUY", notional, "1"))


@pytest.mark.parametrize(
    ("steps", "states"),
    [
        # (now, total exposure) -> reduce-only afterwards
        ([(0, 1001), (1, 800), (4.9, 800), (5, 800)], [True, True, True, False]),
        ([(0, 1001), (6, 950), (7, 899)], [True, True, False]),  # time alone does not release
        ([(0, 1001), (2, 1100), (4, 899), (5, 899)], [True, True, True, False]),  # held from entry
        ([(0, 1000), (1, 899), (2, 1000.01)], [False, False, True]),  # at the cap is not above it
        (
            [(0, 1001), (5, 899), (5.5, 1001), (9, 700), (10.5, 700)],
            [True, False, True, True, False],
        ),  # a re-entry starts a fresh hold
    ],
    ids=["hold", "value", "from-entry", "edge", "re-entry"],
)
def test_reduce_only_holds_in_time_and_in_value(
    steps: list[tuple[float, float]], states: list[bool]
) -> None:
    g = RiskGovernor(HELD)
    got = []
    for now, total in steps:
        upd(g, "A/USDT", position=str(D(str(total)) / 100), mid="100", now=now)
        got.append(g.reduce_only("B/USDT"))
    assert got == states


def test_tick_releases_once_the_hold_is_over_without_a_report() -> None:
    g = RiskGovernor(HELD)
    upd(g, "A/USDT", position="5", now=100.0)
    [c] = upd(g, "B/USDT", open_buy="550", now=100.0)
    assert c == GovernorChange("total", "reduce_only", "total exposure 1050.00 above cap 1000.00")
    upd(g, "B/USDT", open_buy="100", now=101.0)  # 600: below the band at once
    assert g.tick(104.9) == [] and g.reduce_only("A/USDT")
    [c] = g.tick(105.0)
    assert (c.scope, c.state) == ("total", "normal")
    assert c.reason == (
        "total exposure 600.00 below 900.00 (cap 1000.00 less 10.0% "
        "hysteresis) after 5.0s reduce-only (at least 5s)"
    )
    assert g.tick(200.0) == []


def test_symbol_reduce_only_holds_too() -> None:
    g = RiskGovernor(HELD)
    [c] = upd(g, "A/USDT", position="7", now=0.0)
    assert (c.scope, c.state) == ("A/USDT", "reduce_only")
    assert upd(g, "A/USDT", position="1", now=1.0) == []
    assert g.reduce_only("A/USDT") and not g.reduce_only("B/USDT")
    [c] = g.tick(5.0)
    assert (c.scope, c.state) == ("A/USDT", "normal")


def test_first_come_cannot_take_all_of_the_room() -> None:
    """Four symbols, cap 1000: each is guaranteed 250. A asks first and often, yet gets two
    orders of 100; its unusable remainder (50 < 100) goes to whoever asks next."""
    g = RiskGovernor(HELD)
    for s in ("A", "B", "C", "D"):
        g.add(f"{s}/USDT")
    assert g.fair_share == D(250)
    results = {s: [buy(g, f"{s}/USDT", "100") is None for _ in range(4)] for s in "ABCD"}
    assert results == {
        "A": [True, True, False, False],
        "B": [True, True, True, False],
        "C": [True, True, False, False],
        "D": [True, True, True, False],
    }
    assert g.total_exposure == D(1000)
    reason = buy(g, "C/USDT", "100")
    assert reason == (
        "buy of 100.00 would raise total exposure from 1000.00 to 1100.00 (cap 1000.00)"
    )


def test_room_nobody_can_use_is_spread_one_order_per_symbol() -> None:
    g = RiskGovernor(HELD)
    for s in ("A", "B", "C", "D"):
        g.add(f"{s}/USDT")
    for s in "BCD":  # two orders of 100 each: the 50 left of a share is no use to them
        assert [buy(g, f"{s}/USDT", "100") is None for _ in range(2)] == [True, True]
    assert [buy(g, "A/USDT", "100") is None for _ in range(3)] == [True, True, True]
    assert buy(g, "A/USDT", "100") == (
        "A/USDT exposure 300.00 is already above its fair share 250.00 of the total cap 1000.00"
    )
    assert buy(g, "B/USDT", "100") is None  # the last 100 goes to another symbol
    assert g.total_exposure == D(1000)


def test_a_share_is_kept_for_a_symbol_that_has_not_asked_yet() -> None:
    g = RiskGovernor(HELD)
    g.add("A/USDT")
    g.add("B/USDT")  # no report yet: its share is kept all the same
    assert g.fair_share == D(500)
    assert [buy(g, "A/USDT", "200") is None for _ in range(3)] == [True, True, False]
    assert buy(g, "A/USDT", "50") is None  # within its own share
    assert buy(g, "A/USDT", "100") == (
        "buy of 100.00 would raise A/USDT exposure to 550.00, "
        "above its fair share 500.00 of the total cap "
        "1000.00, into room other symbols claim (500.00)"
    )
    assert [buy(g, "B/USDT", "200") is None for _ in range(3)] == [True, True, False]
    # B's remaining 100 is smaller than its orders: A may use it
    assert buy(g, "A/USDT", "100") is None
    assert (g.symbol_exposure("A/USDT"), g.symbol_exposure("B/USDT")) == (D(550), D(400))


def test_the_share_follows_the_symbol_count_and_the_symbol_cap() -> None:
    g = RiskGovernor(HELD)
    assert g.fair_share == D(600)  # no symbol yet: capped by max_symbol_exposure
    g.add("A/USDT")
    assert g.fair_share == D(600)
    for s in ("B", "C", "D", "E"):
        g.add(f"{s}/USDT")
    assert g.fair_share == D(200)
    g.remove("E/USDT", now=0.0)
    assert g.fair_share == D(250)


def test_own_orders_never_trip_reduce_only() -> None:
    """Reports that only confirm what was admitted can never push the total over the cap."""
    g = RiskGovernor(HELD)
    syms = [f"S{i}/USDT" for i in range(10)]
    for s in syms:
        g.add(s)
    open_: dict[str, D] = {s: D(0) for s in syms}
    changes = []
    for round_ in range(8):
        for s in syms:
            if buy(g, s, "33") is None:
                open_[s] += 33
            changes += upd(g, s, open_buy=str(open_[s]), now=float(round_))
    assert changes == [] and not g.reduce_only(syms[0])
    assert sum(open_.values()) <= HELD.max_total_exposure
    assert max(open_.values()) - min(open_.values()) <= 33


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        # held value of A rose: excess 50 over the cap; A has the largest exposure: A trims 50
        (
            {"A/USDT": ("4.5", "150", "0"), "B/USDT": ("0", "450", "0")},
            {"A/USDT": D(100), "B/USDT": None},
        ),
        # a cancel of 50 already under way covers the excess: nothing more to trim
        (
            {"A/USDT": ("4.5", "150", "50"), "B/USDT": ("0", "450", "0")},
            {"A/USDT": None, "B/USDT": None},
        ),
        # the largest exposure cannot cover it all: the next largest gives up the rest
        (
            {"A/USDT": ("5", "100", "0"), "B/USDT": ("3", "200", "0"), "C/USDT": ("0", "100", "0")},
            {"A/USDT": D(0), "B/USDT": D(100), "C/USDT": None},
        ),
        # ties go by name
        (
            {"A/USDT": ("0", "550", "0"), "B/USDT": ("0", "550", "0")},
            {"A/USDT": D(450), "B/USDT": None},
        ),
        # a symbol over its own cap (600) trims its own excess even with the total below the cap
        ({"A/USDT": ("6", "100", "0")}, {"A/USDT": D(0)}),
        ({"A/USDT": ("5", "300", "0")}, {"A/USDT": D(100)}),
        # under the caps: nothing to trim
        (
            {"A/USDT": ("3", "200", "0"), "B/USDT": ("3", "200", "0")},
            {"A/USDT": None, "B/USDT": None},
        ),
    ],
    ids=["largest", "cancelling", "spill", "ties", "own-all", "own-part", "none"],
)
def test_buy_allowance_trims_only_the_excess(
    reports: dict[str, tuple[str, str, str]], expected: dict[str, D | None]
) -> None:
    g = RiskGovernor(HELD)
    for s, (pos, ob, cancelling) in reports.items():
        upd(g, s, position=pos, mid="100", open_buy=ob, cancelling=cancelling)
    assert {s: g.buy_allowance(s) for s in reports} == expected
    assert g.buy_allowance("nope/USDT") is None


def test_reduce_only_refuses_buys_and_admits_within_the_room_after_release() -> None:
    g = RiskGovernor(HELD)
    upd(g, "A/USDT", position="5.5", now=0.0)
    upd(g, "B/USDT", position="5", now=0.0)  # held 1050 > 1000
    assert buy(g, "B/USDT", "10").startswith("reduce-only: total exposure 1050.00")  # type: ignore[union-attr]
    upd(g, "A/USDT", position="3", now=6.0)  # 800 < 900 after the hold: released
    assert not g.reduce_only("A/USDT")
    # the room is 200: C is owed its share (333.33) but the cap comes first
    assert buy(g, "C/USDT", "150") is None
    assert buy(g, "C/USDT", "100") == (
        "buy of 100.00 would raise total exposure from 950.00 to 1050.00 (cap 1000.00)"
    )
    assert g.total_exposure == D(950)


# --------------------------------------------------------------------------- property: scale

ASYMS = [f"S{i}/USDT" for i in range(3)]
aop = st.one_of(
    # (kind, symbol, a): time advances by `dt` tenths of a second before every op
    st.tuples(st.just("buy"), st.sampled_from(ASYMS), st.integers(1, 400)),
    st.tuples(st.just("fill"), st.sampled_from(ASYMS), st.integers(0, 1)),
    st.tuples(st.just("price"), st.sampled_from(ASYMS), st.integers(50, 300)),
    st.tuples(st.just("cancel"), st.sampled_from(ASYMS), st.integers(0, 3)),
    st.tuples(st.just("sell"), st.sampled_from(ASYMS), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.just(""), st.just(0)),
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(aop, st.integers(0, 10)), min_size=10, max_size=80))
def test_budget_and_hold_at_scale(ops: list[tuple[tuple, int]]) -> None:
    """A consistent shell around the governor: admitted buys rest until cancelled or filled;
    fills turn them into held inventory, whose price moves. Then: (1) an admitted buy never
    takes the total above the cap; (2) reduce-only is entered only when the held inventory's
    value moved (a price move or a fill), never by our own opening orders; (3) every
    reduce-only period lasts at least the hold, so transitions are bounded by the number of
    hold windows elapsed; (4) the allowance never asks to cancel more than is open."""
    g = RiskGovernor(HELD)
    for s in ASYMS:
        g.add(s)
    now = 0.0
    held: dict[str, D] = {s: D(0) for s in ASYMS}  # base quantity
    mid: dict[str, D] = {s: D(1) for s in ASYMS}
    orders: dict[str, list[D]] = {s: [] for s in ASYMS}  # open buy notionals (price 1 each)
    entries: dict[str, list[float]] = {}
    exits: dict[str, list[float]] = {}

    def report(s: str) -> list[GovernorChange]:
        return g.update(
            s,
            position=held[s],
            mid=mid[s],
            open_buy_notional=sum(orders[s], D(0)),
            pnl=D(0),
            now=now,
        )

    for (kind, s, a), dt in ops:
        now += dt / 10
        changes: list[GovernorChange] = []
        value_moved = False
        if kind == "price":
            mid[s] = D(a) / 100
            changes = report(s)
            value_moved = True
        elif kind == "fill" and a < len(orders[s]):
            held[s] += orders[s].pop(a)  # bought at price 1: value = qty * mid
            changes = report(s)
            value_moved = True
        elif kind == "buy":
            before = g.total_exposure
            if buy(g, s, str(a)) is None:
                assert before + a <= HELD.max_total_exposure
                assert g.total_exposure <= HELD.max_total_exposure
                orders[s].append(D(a))
            if a % 2:
                changes = report(s)  # sometimes the venue's confirmation comes right away
        elif kind == "cancel" and a < len(orders[s]):
            orders[s].pop(a)
            changes = report(s)
        elif kind == "sell" and held[s] > 0:
            held[s] = held[s] * a / 4
            changes = report(s)
        elif kind == "tick":
            changes = g.tick(now)
        for c in changes:
            if c.state == "reduce_only":
                assert value_moved, c  # our own orders never trip it
                entries.setdefault(c.scope, []).append(now)
            elif c.state == "normal":
                assert now - entries[c.scope][-1] >= HOLD
                exits.setdefault(c.scope, []).append(now)
        for s2 in ASYMS:
            keep = g.buy_allowance(s2)
            if keep is not None:
                assert D(0) <= keep < sum(orders[s2], D(0))
    for times in entries.values():
        assert len(times) <= now // HOLD + 1
        assert all(b - a >= HOLD for a, b in zip(times, times[1:], strict=False))
