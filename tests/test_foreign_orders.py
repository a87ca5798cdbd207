"""Orders that are not ours (SPEC §3): their reports and fills are never our position.

A trader may place orders by hand on the account the market maker trades, or run other
programs on it. Their execution reports arrive on the same user-data stream and are routed
to the symbol's manager; they must not count as our fills, inventory, PnL or rejects.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio

from mm_trio.domain.model import OrderRequest, OrderUpdate
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange
from tests.test_orchestrator import make_config, sim, wait_for

D = Decimal


async def test_a_hand_placed_marketable_order_is_not_our_fill(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A marketable order ``manual-1`` (no prefix) fills on the account while the grid
    runs: the grid's fills, position and max inventory do not include it."""
    config = make_config()
    exchange, limiter = sim(config)
    reports: list[OrderUpdate] = []

    def journal(kind: str, payload: Any) -> None:
        if kind == "report":
            reports.append(payload)

    async with open_orchestrator(exchange, config, limiter=limiter, journal=journal) as orch:
        btc = await orch.add_symbol("BTC/USDT")
        await wait_for(lambda: btc.mid is not None and len(btc.strategy.live_orders()) > 0)
        assert btc.mid is not None
        big = D("0.05")  # far more than a grid order: it would dominate max_inventory
        manual = OrderRequest(
            symbol="BTC/USDT",
            client_id="manual-1",
            side="BUY",
            price=(btc.mid * D("1.01")).quantize(btc.spec.tick_size),
            qty=big,
            post_only=False,
        )
        await exchange.place(manual)
        await wait_for(lambda: exchange.engine.query("BTC/USDT", "manual-1").status == "FILLED")
        await trio.sleep(1)  # its reports reach the manager
        snap = btc.snapshot()
        manual_fills = {r.trade_id for r in reports if r.client_id == "manual-1" and r.last_qty > 0}
        our_fills = {
            r.trade_id for r in reports if r.client_id.startswith("mmt_") and r.last_qty > 0
        }
        assert manual_fills  # the venue did report its fills to us
        assert btc.position.fills == len(our_fills)
        assert snap.max_inventory < big
        assert btc.strategy.position == btc.position.position
        assert snap.foreign_reports >= 2  # NEW and FILLED at least


async def test_foreign_reports_do_not_trip_our_reject_breaker(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rejects of someone else's orders are not ours: no reject storm, no reject count."""
    fake = FakeExchange(["AAA/USDT"])
    config = make_config({"risk": {"reject_storm_count": 3}})
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol("AAA/USDT")
        for i in range(10):
            fake.inject(
                OrderUpdate(
                    symbol="AAA/USDT",
                    client_id=f"bot-{i}",
                    side="BUY",
                    price=D("9"),
                    qty=D(1),
                    status="REJECTED",
                    reason="balance",
                )
            )
            fake.inject(
                OrderUpdate(
                    symbol="AAA/USDT",
                    client_id=f"bot-{i}x",
                    side="SELL",
                    price=D("9"),
                    qty=D(1),
                    status="FILLED",
                    cum_qty=D(1),
                    last_qty=D(1),
                    last_price=D("9"),
                    trade_id=1000 + i,
                )
            )
        await trio.sleep(1)
        snap = m.snapshot()
        assert snap.fills == 0 and snap.position == 0
        assert snap.rejects == 0
        assert "reject_storm" not in snap.breakers
        assert snap.foreign_reports == 20
