"""The fast path for public trades (issue 12): a trade inside the risk monitor's trade band
cannot trip a breaker, so the inbox keeps it for later instead of waking the symbol.

* Risk (hypothesis): at any point of a random market, any number of trades priced inside
  ``RiskMonitor.trade_band()`` and arriving before its ``until``, of any size, trip and clear
  nothing -- while the same markets do trip the volume breaker outside the band.
* Inbox: kept trades do not wake the symbol, keep their arrival times and order, and
  whatever goes into the channel clears the band, so no kept trade is handed over after one
  that arrived later.
* Manager: the kept trades reach the risk monitor, in order and at their arrival times,
  before the next event the symbol handles, or at the next tick.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.risk.monitor import VOLUME_SPIKE, RiskMonitor
from mm_trio.domain.config import RiskConfig
from mm_trio.domain.model import Quote, Trade
from mm_trio.engine.inbox import Inbox, Marker

D = Decimal
INF = D("Infinity")

RISK = RiskConfig(
    volume_window=1.0,
    volume_baseline_windows=3,
    volume_spike_factor=D("2"),
    volume_drop_pct=D("0.01"),
    stale_after=4.0,
    jump_pct=D("0.5"),  # this test is about trades: quotes never jump
)


def _quote(mid: Decimal) -> Quote:
    return Quote(
        symbol="X", bid=mid - D("0.01"), bid_qty=D(1), ask=mid + D("0.01"), ask_qty=D(1), ts=0
    )


def _trade(price: Decimal, qty: Decimal, n: int = 0) -> Trade:
    return Trade(symbol="X", price=price, qty=qty, buyer_maker=True, trade_id=n, ts=0)


# one step of the market: (seconds since the last step, "q"uote or "t"rade, price, qty)
steps = st.lists(
    st.tuples(
        st.floats(0.0, 1.5),
        st.sampled_from("qtt"),
        st.decimals("90", "110", places=2),
        st.decimals("0.01", "50", places=2),
    ),
    min_size=5,
    max_size=80,
)
seen = {"probes": 0, "trips": 0}


@pytest.mark.slow
def test_trades_in_the_trade_band_trip_and_clear_nothing() -> None:
    seen.update(probes=0, trips=0)

    @settings(max_examples=400, deadline=None)
    @given(steps, st.data())
    def holds(market: list[tuple[float, str, Decimal, Decimal]], data: st.DataObject) -> None:
        risk = RiskMonitor(RISK)
        now = 0.0
        for n, (gap, kind, price, qty) in enumerate(market):
            now += gap
            if kind == "q":
                risk.on_quote(_quote(price), now)
            else:
                changes = risk.on_trade(_trade(price, qty, n), now)
                seen["trips"] += sum(c.breaker == VOLUME_SPIKE and c.tripped for c in changes)
            band = risk.trade_band()
            if band is None:
                continue
            lo, hi, until = band
            if not now < until:
                continue
            probe = copy.deepcopy(risk)
            t = now
            for k in range(data.draw(st.integers(1, 12))):
                t += data.draw(st.floats(0.0, 0.5))
                if t >= until:
                    break
                low = max(lo, D("0.01"))
                high = hi if hi != INF else D("1000")
                p = data.draw(st.decimals(low, high, places=6))
                q = data.draw(st.decimals("0.01", "1000000", places=2))
                assert probe.on_trade(_trade(p, q, 10_000 + k), t) == [], (band, p, q, t)
                seen["probes"] += 1
            assert probe.tripped() == risk.tripped()

    holds()
    assert seen["probes"] > 2000  # not vacuous: that many kept trades were checked
    assert seen["trips"] > 0  # and the same markets trip the breaker outside the band


def test_no_trade_band_while_a_breaker_is_tripped_or_before_any_quote() -> None:
    risk = RiskMonitor(RISK)
    assert risk.trade_band() is None  # no quote, no trade yet
    risk.on_quote(_quote(D(100)), 0.0)
    assert risk.trade_band() is None  # no trade yet: the first one starts the history
    risk.on_trade(_trade(D(100), D(1)), 0.1)
    assert risk.trade_band() == (-INF, INF, 4.0)  # baseline not full before 4.1 s
    for i in range(1, 45):  # a full, calm baseline
        risk.on_quote(_quote(D(100)), 0.1 * i)
        risk.on_trade(_trade(D(100), D(1)), 0.1 * i)
    lo, hi, until = risk.trade_band()  # type: ignore[misc]
    assert (lo, hi) == (D(100) * (1 - RISK.volume_drop_pct), D(100)) and until == 4.4 + 4.0
    risk.on_trade(_trade(D(90), D(500)), 4.5)  # a crash on volume trips the breaker
    assert VOLUME_SPIKE in risk.tripped()
    assert risk.trade_band() is None


def test_the_inbox_keeps_quiet_trades_in_order_until_anything_is_queued() -> None:
    times = iter([1.0, 2.0, 3.0, 4.0])
    inbox = Inbox(10, lambda: None, clock=lambda: next(times))
    band = (D("99"), D("101"), 10.0)
    inbox.trade_band = band
    a, b = _trade(D("100"), D(1), 1), _trade(D("100.5"), D(7), 2)
    inbox.deliver(a)
    inbox.deliver(b)
    with pytest.raises(trio.WouldBlock):
        inbox.receive.receive_nowait()  # nothing woke the symbol
    assert inbox.trades == [(a, 1.0), (b, 2.0)] and inbox.trades_absorbed == 2
    loud = _trade(D("98"), D(1), 3)  # below the band: it is queued, and clears the band
    inbox.deliver(loud)
    assert inbox.trade_band is None
    quiet = _trade(D("100"), D(1), 4)
    inbox.deliver(quiet)  # queued behind the loud one, not kept ahead of it
    assert inbox.receive.receive_nowait() is loud
    assert inbox.receive.receive_nowait() is quiet
    assert inbox.take_trades() == [(a, 1.0), (b, 2.0)] and inbox.trades == []
    inbox.trade_band = band
    inbox.deliver(_trade(D("100"), D(1), 5))  # arrives at 3.0 < until: kept
    late = Inbox(10, lambda: None, clock=lambda: 11.0)
    late.trade_band = band
    late.deliver(quiet)  # arrives after `until` (staleness may trip): queued
    assert late.receive.receive_nowait() is quiet and late.trades == []
    inbox.poke(Marker.GATES)  # a marker clears both bands
    assert inbox.trade_band is None and inbox.band is None
    assert len(inbox.trades) == 1  # what was kept stays kept, to be handed over first


async def test_kept_trades_reach_the_risk_monitor_in_order_before_the_next_event(
    autojump_clock: trio.abc.Clock,
) -> None:
    from mm_trio.domain.config import config_from_dict
    from mm_trio.engine.orchestrator import open_orchestrator
    from mm_trio.exchange.limiter import Limiter
    from tests.fakes import QuotingFake

    sym = "AAA/USDT"
    config = config_from_dict(
        {"risk": {"stale_after": 30.0, "volume_window": 0.05, "volume_baseline_windows": 2}}
    )
    fake = QuotingFake([sym])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(sym)
        handled: list[tuple[int, float]] = []
        on_trade = m.risk.on_trade

        def spy(trade: Trade, now: float) -> list[object]:
            handled.append((trade.trade_id, now))
            return on_trade(trade, now)  # type: ignore[return-value]

        m.risk.on_trade = spy  # type: ignore[method-assign]

        def trade(n: int, price: str = "10.005") -> Trade:
            return Trade(symbol=sym, price=D(price), qty=D(1), buyer_maker=True, trade_id=n, ts=n)

        first = trio.current_time()
        fake.inject(trade(1))  # the first trade is handled at once: it starts the history
        await trio.sleep(0.25)
        assert handled == [(1, first)] and m.inbox.trade_band is not None
        arrivals = []
        for n in (2, 3, 4):
            await trio.sleep(0.1)
            arrivals.append(trio.current_time())
            fake.inject(trade(n))
        await trio.sleep(0.01)
        assert [t for t, _ in handled] == [1] and m.inbox.trades_absorbed == 3
        events = m.events
        assert m.inbox.trade_band is not None
        assert m.inbox.trade_band[1] == D("10.005")  # the baseline is full: a price band
        fake.inject(trade(9, "10.02"))  # above it: queued, and the kept ones go first
        await trio.sleep(0.01)
        assert [t for t, _ in handled] == [1, 2, 3, 4, 9]
        assert [at for _, at in handled[1:4]] == arrivals  # each at its arrival time
        assert m.events == events + 4  # three kept trades and the one that woke the symbol
        fake.inject(trade(5))
        await trio.sleep(0.01)
        assert [t for t, _ in handled] == [1, 2, 3, 4, 9]  # kept again ...
        await trio.sleep(1.5)
        assert [t for t, _ in handled] == [1, 2, 3, 4, 9, 5]  # ... the ticker hands it over


async def test_the_tick_hands_an_absorbed_quote_over_without_waking_the_symbol(
    autojump_clock: trio.abc.Clock,
) -> None:
    from mm_trio.domain.config import config_from_dict
    from mm_trio.engine.orchestrator import open_orchestrator
    from mm_trio.exchange.limiter import Limiter
    from tests.fakes import QuotingFake, symbol_quote

    sym = "AAA/USDT"
    config = config_from_dict({})
    fake = QuotingFake([sym])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(sym)
        await trio.sleep(0.5)  # the first quote built the grid; the band is set
        assert m.inbox.band is not None
        lo, hi = m.inbox.band
        quiet = symbol_quote(sym, "10.00", "10.02")
        assert lo < quiet.mid < hi and quiet.mid != m.mid
        fake.inject(quiet)
        await trio.sleep(0.01)
        assert m.inbox.absorbed_at is not None and m.mid != quiet.mid
        orders = [o.client_id for o in m.strategy.live_orders()]
        m.tick()  # what the orchestrator's ticker does each second
        assert m.mid == quiet.mid and m.inbox.absorbed_at is None
        with pytest.raises(trio.WouldBlock):
            m.inbox.receive.receive_nowait()  # the symbol's task was not woken
        assert [o.client_id for o in m.strategy.live_orders()] == orders  # nothing decided
        assert m.inbox.band is not None  # and the band is set again
