"""Tests of the aggregate RiskGovernor: caps, hysteresis, reservations, kill switch."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.risk.governor import GovernorChange, RiskGovernor
from mm_trio.domain.config import GovernorConfig
from mm_trio.domain.intents import CancelOrder, PlaceOrder
from mm_trio.domain.model import OrderRequest, Side

D = Decimal
CFG = GovernorConfig(max_total_exposure=D("1000"), max_symbol_exposure=D("600"),
                     hysteresis=D("0.1"), max_total_loss=D("100"))


def place(symbol: str, side: Side, price: str, qty: str) -> PlaceOrder:
    return PlaceOrder(OrderRequest(symbol=symbol, client_id="mmt_X_B0_1", side=side,
                                   price=D(price), qty=D(qty)))


def upd(g: RiskGovernor, symbol: str, position: str = "0", mid: str | None = "100",
        open_buy: str = "0", pnl: str = "0") -> list[GovernorChange]:
    return g.update(symbol, position=D(position), mid=None if mid is None else D(mid),
                    open_buy_notional=D(open_buy), pnl=D(pnl))


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
        "reduce-only: A/USDT exposure 700.00 above cap 600.00")
    assert g.check("A/USDT", place("A/USDT", "SELL", "100", "1")) is None
    assert g.check("B/USDT", place("B/USDT", "BUY", "100", "1")) is None


def test_reservation_prevents_a_batch_overshoot() -> None:
    g = RiskGovernor(CFG)
    upd(g, "A/USDT", position="1", mid="100", open_buy="100")  # 200
    admitted = [g.check("A/USDT", place("A/USDT", "BUY", "99", "1")) for _ in range(6)]
    assert admitted[:4] == [None] * 4  # 200 + 4 * 99 = 596
    assert admitted[4] is not None and admitted[5] is not None
    assert admitted[4] == ("buy of 99.00 would raise A/USDT exposure from 596.00 to 695.00 "
                           "(cap 600.00)")
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
    changes = g.remove("A/USDT")
    assert GovernorChange("A/USDT", "normal", "A/USDT removed") in changes
    assert g.exposure().total == 0 and g.exposure().total_pnl == D(-70)
    [c] = upd(g, "B/USDT", pnl="-30")
    assert c.state == "killed"
    assert g.remove("nope") == []


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
    st.tuples(st.just("update"), st.sampled_from(SYMS), st.integers(0, 900),
              st.integers(1, 200), st.integers(0, 400), st.integers(-60, 20)),
    st.tuples(st.just("buy"), st.sampled_from(SYMS), st.integers(1, 200), st.integers(1, 300)),
    st.tuples(st.just("sell"), st.sampled_from(SYMS), st.integers(1, 200), st.integers(1, 300)),
    st.tuples(st.just("remove"), st.sampled_from(SYMS)),
    st.tuples(st.just("resume")),
)


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
            g.remove(o[1])
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
