"""The ticker's part of the fast path (``SymbolManager.tick`` / ``_hand_over``).

* Arrival order: once something is queued in the symbol's channel, no trade that arrives
  later may be handed to the risk monitor before it -- not even after the ticker handed an
  absorbed quote over in place.
* An error the ticker meets in a symbol's logic fails that symbol, even when its channel
  is full at that moment (the FAIL marker must not be lost with the symbol left running
  and never ticked again).
* A kept quote the ticker hands over the quiet way (``_note_quiet_quote``) leaves the
  symbol, its strategy, risk monitor and the governor exactly as ``_handle`` would.
* The equity sample's per-symbol read (``equity_row``) holds the snapshot's values.
"""

from __future__ import annotations

from decimal import Decimal

import trio
from trio.testing import MockClock

from mm_trio.core.lifecycle import SymbolState
from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import Trade
from mm_trio.engine.inbox import Marker
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.engine.snapshot import equity_row
from mm_trio.exchange.limiter import Limiter
from tests.fakes import QuotingFake, symbol_quote
from tests.test_note_quote import dump

D = Decimal
SYM = "AAA/USDT"
FIXED_NS = 1_767_225_600_000_000_000


def _trade(n: int, price: str) -> Trade:
    return Trade(symbol=SYM, price=D(price), qty=D(1), buyer_maker=True, trade_id=n, ts=n)


async def test_a_kept_trade_never_overtakes_a_trade_queued_before_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = config_from_dict(
        {"risk": {"stale_after": 30.0, "volume_window": 0.05, "volume_baseline_windows": 2}}
    )
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        handled: list[int] = []
        on_trade = m.risk.on_trade

        def spy(trade: Trade, now: float) -> list[object]:
            handled.append(trade.trade_id)
            return on_trade(trade, now)  # type: ignore[return-value]

        m.risk.on_trade = spy  # type: ignore[method-assign]
        m.deliver(_trade(1, "10.005"))  # starts the volume history
        await trio.sleep(0.25)  # the baseline is full: a price band
        assert m.inbox.band is not None and m.inbox.trade_band is not None
        assert m.inbox.trade_band[1] == D("10.005")
        lo, hi = m.inbox.band
        quiet = symbol_quote(SYM, "10.00", "10.02")
        assert lo < quiet.mid < hi  # a quote the band would absorb ...
        # no checkpoint from here on: the symbol's task does not run in between
        m.deliver(_trade(2, "10.02"))  # above the band: queued, clears both bands
        assert m.inbox.trade_band is None and m.inbox.band is None
        m.deliver(quiet)  # ... is queued behind it, not absorbed
        assert m.inbox.absorbed_at is None
        m.tick()  # so the ticker has nothing to hand over in place
        m.deliver(_trade(3, "10.005"))  # a later trade, inside the old trade band: queued
        assert m.inbox.trades == []
        await trio.sleep(0.01)
        assert handled == [1, 2, 3]  # in arrival order


async def test_a_ticker_error_fails_the_symbol_even_when_its_channel_is_full(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = config_from_dict({"run": {"order_channel_size": 4}})
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)
        assert m.state is SymbolState.RUNNING
        lo, hi = m.inbox.band  # type: ignore[misc]
        m.deliver(symbol_quote(SYM, "10.00", "10.02"))  # absorbed: the ticker handles it
        assert m.inbox.absorbed_at is not None

        def broken(*_: object) -> list[object]:
            raise RuntimeError("bug in the strategy")

        m.strategy.on_quote = broken  # type: ignore[method-assign]
        m.strategy.note_quote = broken  # type: ignore[method-assign]  # the ticker's way in
        while True:  # a burst fills the channel just before the tick
            try:
                m.inbox.send.send_nowait(Marker.RESUME)
            except trio.WouldBlock:
                break
        m.tick()  # meets the error; its FAIL marker does not fit
        await trio.sleep(5.0)
        assert m.state is SymbolState.FAILED  # actual: still RUNNING, never ticked again


def _hand_over_once(*, full: bool) -> tuple[object, ...]:
    """Run one symbol, keep a quiet quote, let the ticker hand it over; what it left.
    ``full``: through the whole ``_handle(Marker.QUOTE)`` instead of the quiet path."""

    async def main() -> tuple[object, ...]:
        config = config_from_dict({"risk": {"stale_after": 30.0}})
        fake = QuotingFake([SYM])
        fake.now_ns = lambda: FIXED_NS  # type: ignore[method-assign]  # the same client ids
        async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
            m = await orch.add_symbol(SYM)
            await trio.sleep(0.5)
            assert m.inbox.band is not None
            m.deliver(symbol_quote(SYM, "10.00", "10.02"))
            assert m.inbox.absorbed_at is not None
            await trio.sleep(0.3)  # the kept quote waits for the ticker ...
            paths: list[str] = []
            handle, note = m._handle, m._note_quiet_quote

            def full_handle(item: object) -> None:
                paths.append("handle")
                handle(item)

            def quiet(*_: object) -> None:
                paths.append("quiet")
                note()

            m._handle = full_handle  # type: ignore[method-assign]
            m._note_quiet_quote = quiet  # type: ignore[method-assign]
            if full:
                m.risk.quiet_at = lambda now: False  # type: ignore[method-assign]
            m.tick()  # ... and is handed over in place
            assert paths == (["handle"] if full else ["quiet"])
            assert m.inbox.absorbed_at is None
            if full:
                del m.risk.quiet_at  # the monitor as it was, for the comparison
            return (
                m.snapshot(),
                m.events,
                dict(m.event_counts),
                m.mid,
                m.inbox.band,
                m.inbox.trade_band,
                dump(m.strategy),
                dump(m.risk),
                orch.governor.exposure(),
                fake.orders,
            )

    return trio.run(main, clock=MockClock(autojump_threshold=0))


def test_the_quiet_hand_over_leaves_what_the_full_handle_leaves() -> None:
    """The ticker's cheap way for a kept quote changes exactly what ``_handle`` would."""
    assert _hand_over_once(full=False) == _hand_over_once(full=True)


async def test_an_equity_row_holds_the_snapshot_values(autojump_clock: trio.abc.Clock) -> None:
    """The equity sample's light read (``equity_row``) gives what the full snapshot shows,
    open orders counted without building their views."""
    config = config_from_dict({})
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)
        m.deliver(symbol_quote(SYM, "10.00", "10.02"))  # kept: the row reads the latest mid
        snap, row = m.snapshot(), equity_row(m)
        assert row.open_orders == len(m.strategy.live_orders()) > 0
        assert row.mid == D("10.01")
        assert row == (
            snap.mid,
            snap.position,
            snap.realized_pnl,
            snap.unrealized_pnl,
            snap.fees_quote,
            snap.total_pnl,
            snap.open_orders,
            snap.state,
            snap.breakers,
        )
