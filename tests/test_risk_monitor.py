"""Tests of the per-symbol breakers, with explicit ``now`` values."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.risk.monitor import BreakerChange, RiskMonitor
from mm_trio.domain.config import RiskConfig
from mm_trio.domain.model import Quote, Trade

D = Decimal
SYM = "BTC/USDT"


def q(mid: str | Decimal) -> Quote:
    m = D(mid)
    return Quote(symbol=SYM, bid=m - D("0.5"), bid_qty=D(1), ask=m + D("0.5"), ask_qty=D(1), ts=0)


def tr(price: str | Decimal, qty: str | Decimal, tid: int = 0) -> Trade:
    return Trade(symbol=SYM, price=D(price), qty=D(qty), buyer_maker=True, trade_id=tid, ts=0)


def names(changes: list[BreakerChange]) -> list[tuple[str, bool]]:
    return [(c.breaker, c.tripped) for c in changes]


CFG = RiskConfig(
    stale_after=10.0,
    jump_pct=D("0.03"),
    jump_window=5.0,
    jump_cooldown=30.0,
    volume_window=10.0,
    volume_baseline_windows=3,
    volume_spike_factor=D("5"),
    volume_drop_pct=D("0.005"),
    volume_cooldown=30.0,
    reject_storm_count=3,
    reject_storm_window=10.0,
    reject_cooldown=20.0,
    max_loss=D("100"),
)
NO_STALE = attrs.evolve(CFG, stale_after=1e9)  # isolate the other breakers


# --------------------------------------------------------------------------- stale


def test_stale_from_start_then_cleared_by_a_quote() -> None:
    m = RiskMonitor(CFG)
    assert m.tick(100.0) == []  # first call sets the baseline
    assert m.tick(109.9) == []
    [c] = m.tick(110.0)
    assert (c.breaker, c.tripped, c.at) == ("stale", True, 110.0)
    assert "no quote at all for 10.0s (limit 10.0s)" in c.reason
    assert m.halt_opening and not m.stopped
    assert m.tick(120.0) == []  # no repeated trip
    [c] = m.on_quote(q("100"), 121.0)
    assert (c.breaker, c.tripped) == ("stale", False)
    assert not m.halt_opening
    assert m.trips == 1


def test_stale_after_last_quote() -> None:
    m = RiskMonitor(CFG)
    m.on_quote(q("100"), 0.0)
    m.on_quote(q("100"), 5.0)
    assert m.tick(14.0) == []
    [c] = m.tick(15.5)
    assert c.reason == "no quote for 10.5s (limit 10.0s)"
    [c] = m.on_quote(q("100"), 17.0)
    assert not c.tripped and c.reason == "quote received after 12.0s (limit 10.0s)"
    assert m.tripped() == {}


# --------------------------------------------------------------------------- price jump


def test_price_jump_trips_and_clears_after_cooldown() -> None:
    m = RiskMonitor(NO_STALE)
    m.on_quote(q("100"), 0.0)
    m.on_quote(q("101"), 1.0)
    assert m.on_quote(q("102.9"), 2.0) == []  # 2.9%: under the limit
    [c] = m.on_quote(q("103.4"), 2.0)
    assert (c.breaker, c.tripped) == ("price_jump", True)
    assert c.reason.startswith("mid moved 3.4% in 2.0s (100 -> 103.4; limit 3% in 5.0s)")
    assert m.halt_opening
    assert m.on_quote(q("103.5"), 10.0) == []  # stays tripped, no new jump
    assert m.tick(31.9) == []
    [c] = m.tick(32.0)
    assert (c.breaker, c.tripped) == ("price_jump", False)
    assert "no new jump for 30.0s (cool-down 30.0s)" in c.reason
    assert not m.halt_opening


def test_price_jump_down_and_outside_window() -> None:
    m = RiskMonitor(NO_STALE)
    m.on_quote(q("100"), 0.0)
    assert m.on_quote(q("96"), 5.1) == []  # 4% but over 5.1s > window
    [c] = m.on_quote(q("92.5"), 8.0)  # 96 -> 92.5 = -3.65% in 2.9s
    assert "mid moved -3.65% in 2.9s" in c.reason


def test_new_jump_extends_the_cooldown() -> None:
    m = RiskMonitor(NO_STALE)
    m.on_quote(q("100"), 0.0)
    m.on_quote(q("104"), 1.0)  # trip
    m.on_quote(q("104"), 18.0)
    assert m.on_quote(q("108"), 20.0) == []  # a new 3.8% move from 104: extends, no change

    assert m.tick(45.0) == []
    [c] = m.tick(50.0)
    assert not c.tripped
    assert m.trips == 1


def test_jump_detects_any_pair_in_window() -> None:
    m = RiskMonitor(NO_STALE)
    m.on_quote(q("100"), 0.0)
    m.on_quote(q("102"), 1.0)
    m.on_quote(q("99"), 2.0)
    [c] = m.on_quote(q("98.9"), 3.0)  # max 102 at t=1 -> 98.9: -3.04% in 2.0s
    assert "in 2.0s" in c.reason


# --------------------------------------------------------------------------- volume spike


def feed_baseline(m: RiskMonitor, until: float, price: str = "100") -> None:
    t = 0.0
    while t < until:
        m.on_trade(tr(price, "1"), t)
        t += 1.0


def test_volume_spike_with_falling_price_trips_then_cools_down() -> None:
    m = RiskMonitor(NO_STALE)
    feed_baseline(m, 40.0)  # 1 per second: 10 per window
    # a burst with falling price: 60 volume in the window, price 100 -> 99
    out: list[BreakerChange] = []
    for i in range(6):
        out += m.on_trade(tr(D(100) - D("0.2") * (i + 1), "10"), 40.0 + i * 0.5)
    assert names(out) == [("volume_spike", True)]
    reason = out[0].reason
    assert "is 5." in reason and "3-window average" in reason and "limit 5x" in reason
    assert "price fell" in reason and "limit 0.5%" in reason
    assert m.halt_opening
    t_last = 42.5  # the burst keeps re-detecting the spike: the cool-down starts at its end
    assert m.tick(t_last + 29.0) == []
    [c] = m.tick(t_last + 30.0)
    assert (c.breaker, c.tripped) == ("volume_spike", False)
    assert "no new volume spike for 30.0s" in c.reason


def test_volume_spike_needs_falling_price() -> None:
    m = RiskMonitor(NO_STALE)
    feed_baseline(m, 40.0)
    out: list[BreakerChange] = []
    for i in range(10):
        out += m.on_trade(tr(D(100) + D("0.1") * i, "20"), 40.0 + i * 0.5)  # rising
    assert out == []


def test_volume_spike_needs_history() -> None:
    m = RiskMonitor(NO_STALE)
    out: list[BreakerChange] = []
    for i in range(10):
        out += m.on_trade(tr(D(100) - i, "100"), i * 0.1)
    assert out == []


def test_no_spike_for_normal_volume() -> None:
    m = RiskMonitor(NO_STALE)
    feed_baseline(m, 100.0)
    assert m.tripped() == {}


# --------------------------------------------------------------------------- rejects


def test_reject_storm_trips_and_clears() -> None:
    m = RiskMonitor(NO_STALE)
    assert m.on_reject("post only", 0.0) == []
    assert m.on_reject("post only", 5.0) == []
    assert m.on_reject("post only", 10.5) == []  # 3 rejects, but over 10.5s
    [c] = m.on_reject("insufficient balance", 12.0)  # 5.0, 10.5, 12.0: 3 in 7.0s
    assert c.reason == ("3 rejects in 7.0s (limit 3 in 10.0s); last: insufficient balance")
    assert m.halt_opening
    assert m.tick(31.9) == []
    [c] = m.tick(32.0)
    assert (c.breaker, c.tripped) == ("reject_storm", False)
    assert "cool-down 20.0s" in c.reason


# --------------------------------------------------------------------------- loss limit


def test_loss_limit_latches_until_reset() -> None:
    m = RiskMonitor(CFG)
    assert m.on_pnl(D("-99.99"), 1.0) == []
    [c] = m.on_pnl(D("-100"), 2.0)
    assert (c.breaker, c.tripped) == ("loss_limit", True)
    assert c.reason == "PnL -100 reached the loss limit -100"
    assert m.stopped and not m.halt_opening
    assert m.on_pnl(D("50"), 3.0) == []  # latched
    assert m.tick(1000.0) != [] and m.stopped  # (stale trips, loss stays)
    [c] = m.reset_loss_limit(1001.0)
    assert (c.breaker, c.tripped, c.at) == ("loss_limit", False, 1001.0)
    assert not m.stopped


def test_history_is_bounded_and_ordered() -> None:
    m = RiskMonitor(NO_STALE)
    t = 0.0
    for _ in range(400):
        m.on_pnl(D(-1000), t)
        m.reset_loss_limit(t)
        t += 1
    h = m.history()
    assert len(h) == 500
    assert [c.at for c in h] == sorted(c.at for c in h)
    assert m.trips == 400


# --------------------------------------------------------------------------- properties


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["quote", "trade", "reject", "tick", "pnl"]),
            st.floats(min_value=0, max_value=8, allow_nan=False),
            st.integers(min_value=900, max_value=1100),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=120,
    )
)
def test_changes_alternate_and_flags_match(events: list[tuple[str, float, int, int]]) -> None:
    m = RiskMonitor(CFG)
    now = 0.0
    state: dict[str, bool] = {}
    for kind, dt, price, qty in events:
        now += dt
        p = D(price) / 10
        if kind == "quote":
            out = m.on_quote(q(p), now)
        elif kind == "trade":
            out = m.on_trade(tr(p, qty), now)
        elif kind == "reject":
            out = m.on_reject("x", now)
        elif kind == "pnl":
            out = m.on_pnl(D(-qty * 3), now)
        else:
            out = m.tick(now)
        for c in out:
            assert state.get(c.breaker, False) != c.tripped  # trips and clears alternate
            state[c.breaker] = c.tripped
            assert c.at == now and c.reason
        assert set(m.tripped()) == {b for b, on in state.items() if on}
        assert m.halt_opening == any(
            state.get(b, False) for b in ("stale", "price_jump", "volume_spike", "reject_storm")
        )
        assert m.stopped == state.get("loss_limit", False)
