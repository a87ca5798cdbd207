"""An order-channel overflow halts the symbol until its resync ends (SPEC §8).

The overflow itself cannot queue a marker (the channel is full), so the halt reaches the
strategy through the next event the symbol handles, whatever it is: also one that changes
nothing (the second report of one outcome), which otherwise skips the gates.
"""

from __future__ import annotations

import trio

from mm_trio.core.lifecycle import SymbolState
from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import OpenOrder
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from tests.fakes import QuotingFake, ours, report_again

SYM = "AAA/USDT"
CHANNEL = 64  # room for the grid's own reports; a burst fills it
RESYNC_TIME = 60.0  # the venue answers the resync's queries this late


class SlowQuery(QuotingFake):
    """A venue whose order queries (the resync's) take :data:`RESYNC_TIME` once slow."""

    slow = False

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        if self.slow:
            await trio.sleep(RESYNC_TIME)
        return await super().query(symbol, client_id)


async def test_unchanged_reports_after_an_overflow_still_halt_opening(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = config_from_dict({"run": {"order_channel_size": CHANNEL}})
    fake = SlowQuery([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)  # the grid is placed and acknowledged
        order = ours(fake, SYM)[0]
        assert m.state is SymbolState.RUNNING
        fake.slow = True
        unchanged, overflows = m.strategy.unchanged_reports, m.overflows
        live = len(m.strategy.live_orders())  # the resync queries each of them
        # a burst of reports that change nothing, more than the channel holds
        for _ in range(CHANNEL + 2):  # the waiting task takes one at once
            m.deliver(report_again(fake, order.client_id))
        assert m.overflows == overflows + 1
        await trio.sleep(1)  # the queued reports are handled; the resync still waits
        assert m._resyncing
        assert m.strategy.unchanged_reports >= unchanged + CHANNEL + 1  # all skipped
        assert m.state is SymbolState.HALTED, m.reason
        assert m.strategy.gates[0], "opening must halt while the symbol resyncs"
        # every resting opening order is being (or has been) cancelled
        assert not [o for o in m.strategy.live_orders() if o.opening and not o.cancel_requested]
        await trio.sleep(RESYNC_TIME * (live + 1))
        assert not m._resyncing
        assert not m._regate  # the resync's end recomputed the gates


async def test_a_kill_whose_stop_marker_did_not_fit_still_stops_the_strategy(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The kill switch pokes STOP; on a full channel that marker is lost (an overflow). The
    next event the symbol handles stops the strategy all the same, and it stays stopped
    once the resync has ended (before, the symbol traded on after the resync)."""
    config = config_from_dict({"run": {"order_channel_size": CHANNEL}})
    fake = SlowQuery([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)
        order = ours(fake, SYM)[0]
        fake.slow = True
        for _ in range(CHANNEL + 1):  # fills the channel (the waiting task takes one at once)
            m.deliver(report_again(fake, order.client_id))
        overflows = m.overflows
        m.kill("test")  # no checkpoint since the burst: its STOP marker does not fit
        assert m.overflows == overflows + 1
        await trio.sleep(1)
        assert m.strategy.stopped
        assert not [o for o in m.strategy.live_orders() if not o.cancel_requested]
        await trio.sleep(RESYNC_TIME * 10)
        assert not m._resyncing
        assert m.strategy.stopped
        assert m.state is SymbolState.STOPPED and "kill switch" in m.reason, m.reason
        assert not ours(fake, SYM)  # nothing was placed again
