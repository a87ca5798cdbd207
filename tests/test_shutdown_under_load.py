"""Shutdown with many symbols while placements queue in the shared limiter (issue 7, item 5).

Fifty symbols on the simulated venue with a tight order limit: after a few seconds most
placements still wait for order tokens. Shutdown must withdraw them at once (spending no
order tokens) and sweep ahead of them, finishing within ``run.shutdown_timeout`` with no
ERROR log line and no order of ours left on the venue. On trio's MockClock.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio
import trio.testing

from mm_trio.domain.config import config_from_dict
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.sim.exchange import SimulatedExchange
from mm_trio.exchange.sim.matching import BUILTIN_SYMBOLS

SYMBOLS = 50
RUN_SECONDS = 5.0
ORDERS_PER_10S = 50  # 45 effective: fifty grids need far more than that to start


def many_symbols() -> tuple[list[str], dict[str, str]]:
    """``SYMBOLS`` symbols: the venue's built-ins, then extras it is told to list."""
    symbols = list(BUILTIN_SYMBOLS)
    extra = {f"Q{i:02d}/USDT": str(Decimal(5 + i)) for i in range(SYMBOLS - len(symbols))}
    return symbols + list(extra), extra


@pytest.mark.slow
async def test_fifty_symbols_shut_down_in_time_while_placements_queue(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    symbols, extra = many_symbols()
    config = config_from_dict(
        {
            "venue": {"extra_symbols": extra, "seed": 3},
            "limiter": {"orders_per_10s": ORDERS_PER_10S},
        }
    )
    limiter = Limiter(config.limiter)
    exchange = SimulatedExchange(config.venue, limiter=limiter)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        managers = await orch.add_symbols(symbols)
        await trio.sleep(RUN_SECONDS)
        queued = limiter.queued
        sent_before = limiter.sent_orders
        assert queued > len(symbols)  # the scenario: placements wait for the limiter
        started = trio.current_time()
        await orch.shutdown()
        took = trio.current_time() - started
        assert orch.symbols() == []
    assert took <= config.run.shutdown_timeout, f"shutdown took {took:.1f}s"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert exchange.engine.open_orders() == []
    assert limiter.queued == 0
    # every queued placement was withdrawn, and none of them spent an order token
    withdrawn = sum(m.withdrawn for m in managers)
    assert withdrawn >= queued - len(symbols)
    assert limiter.sent_orders == sent_before


@pytest.mark.slow
async def test_removed_symbol_leaves_the_queue_at_once_behind_other_symbols(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A symbol whose placements all wait in the queue, among (and behind) the other
    symbols' still wanted ones. Removing it withdraws them from the middle of the queue at
    once: it is flat without waiting for the others' placements to be served."""
    caplog.set_level(logging.WARNING)
    symbols, extra = many_symbols()
    config = config_from_dict(
        {
            "venue": {"extra_symbols": extra, "seed": 3},
            "limiter": {"orders_per_10s": ORDERS_PER_10S},
        }
    )
    limiter = Limiter(config.limiter)
    exchange = SimulatedExchange(config.venue, limiter=limiter)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        managers = await orch.add_symbols(symbols)
        await trio.sleep(RUN_SECONDS)
        # (which symbols got order tokens first depends on trio's scheduling)
        queued = [
            m
            for m in managers
            if m.strategy.live_orders()
            and all(o.status == "PENDING_NEW" for o in m.strategy.live_orders())
        ]
        assert len(queued) > 1
        last = queued[-1]
        pending = len(last.strategy.live_orders())
        sent_before = limiter.sent_orders
        snap = await orch.remove_symbol(last.symbol)
        # ... and left without waiting for (or spending) a single order token
        assert limiter.sent_orders == sent_before
        assert last.flat.is_set(), "not flat: a cancel waited for its placement's turn"
        assert snap.open_orders == 0
        assert last.withdrawn >= pending
        assert exchange.engine.open_orders(last.symbol) == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == []
