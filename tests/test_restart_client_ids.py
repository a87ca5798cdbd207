"""A restarted process never takes an earlier run's orders or fills for its own.

End to end over real sockets: the Orchestrator and BinanceExchange trade the in-process
Binance-compatible paper venue. Run 1 gets a fill and "crashes" (exits without cancelling);
its leftovers are cancelled, as an operator would. Run 2 starts on the same account in the
same (still) market, and its first placements are answered 503 without reaching the venue
(outcome unknown: each is resolved by querying its client id). Before the fix run 2 reused
run 1's client ids, the query found run 1's FILLED order, and run 2 adopted a fill that
never happened in it (and sold that inventory as its own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import trio

from mm_trio.apps.paper import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    PaperConfig,
    PaperServer,
    open_paper_venue,
)
from mm_trio.domain.config import (
    Config,
    GridConfig,
    LimiterConfig,
    RiskConfig,
    RunConfig,
    SimVenueConfig,
)
from mm_trio.domain.model import Trade
from mm_trio.engine.manager import SymbolManager
from mm_trio.engine.orchestrator import Orchestrator, open_orchestrator
from mm_trio.exchange.binance.adapter import BinanceExchange, derive_ws_urls
from mm_trio.exchange.limiter import Limiter

D = Decimal
BTC = "BTC/USDT"
PREFIX = "mmt"
# a market that stands still: both runs anchor their grids at the same mid
STILL = SimVenueConfig(seed=5, latency_ms=1.0, volatility=0.0, tick_interval_ms=50.0)
GRID = GridConfig(step=D("0.001"), levels_below=3, order_size=D("50"), client_id_prefix=PREFIX)
CALM_RISK = RiskConfig(
    jump_pct=D("0.5"), volume_spike_factor=D("100000"), reject_storm_count=100000, stale_after=60.0
)


class FailFirstPlacements(httpx.AsyncBaseTransport):
    """Answers the first ``n`` order placements 503 without forwarding them (a gateway
    error: the venue never saw them); everything else goes through."""

    def __init__(self, n: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.left = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/v3/order" and self.left:
            self.left -= 1
            return httpx.Response(503, json={"code": -1001, "msg": "Internal error."})
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def run(
    server: PaperServer,
    placed: list[str],
    *,
    cancel_on_exit: bool,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Orchestrator]:
    config = Config(
        grid=GRID,
        risk=CALM_RISK,
        limiter=LimiterConfig(),
        run=RunConfig(shutdown_timeout=5.0, cancel_on_exit=cancel_on_exit),
    )

    def journal(kind: str, payload: Any) -> None:
        if kind == "place":
            placed.append(payload.client_id)

    limiter = Limiter(config.limiter)
    ws_url, ws_api_url = derive_ws_urls(server.http_url)
    exchange = BinanceExchange(
        base_url=server.http_url,
        ws_url=ws_url,
        ws_api_url=ws_api_url,
        api_key=DEFAULT_API_KEY,
        api_secret=DEFAULT_API_SECRET,
        limiter=limiter,
        timeout=5.0,
        transport=transport,
        reconnect_initial=0.05,
        reconnect_max=2.0,
    )
    async with open_orchestrator(exchange, config, limiter=limiter, journal=journal) as orch:
        yield orch


async def wait_until(predicate: Any, what: str, m: SymbolManager, limit: float = 15.0) -> None:
    with trio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other tasks
            await trio.sleep(0.02)
        return
    raise AssertionError(
        f"timed out after {limit}s waiting for {what}; the grid's orders: "
        f"{m.strategy.live_orders()}; mid {m.mid}"
    )


def resting_buys(m: SymbolManager) -> list[Any]:
    return [o for o in m.strategy.live_orders() if o.side == "BUY" and o.status == "NEW"]


async def test_restart_after_a_fill_never_adopts_the_earlier_runs_orders() -> None:
    with trio.fail_after(60):
        async with open_paper_venue(PaperConfig(venue=STILL, market_symbols=(BTC,))) as server:
            acct = server.venue.primary
            first: list[str] = []
            async with run(server, first, cancel_on_exit=False) as orch:
                btc = await orch.add_symbol(BTC)
                await wait_until(lambda: len(resting_buys(btc)) == 3, "run 1's grid resting", btc)
                low = min(resting_buys(btc), key=lambda o: o.price)
                # a trade through all our buys: they fill
                await server.venue.ensure_market(BTC)
                await acct.sim.push_market(
                    [
                        Trade(
                            symbol=BTC,
                            price=low.price - btc.spec.tick_size,
                            qty=D(5),
                            buyer_maker=True,
                            trade_id=10**9,
                            ts=acct.sim.now_ns(),
                        )
                    ]
                )
                await wait_until(lambda: btc.position.fills >= 3, "run 1's fills", btc)
                await trio.sleep(0.5)  # its take-profit goes out
            # the crash left run 1's orders resting: the operator cancels them
            for rec in acct.open_records(BTC):
                await acct.sim.cancel(BTC, rec.client_id)
            assert acct.open_records(BTC) == []
            trades_before = len(acct.trades.get(BTC, []))
            assert trades_before >= 1

            second: list[str] = []
            async with run(
                server, second, cancel_on_exit=True, transport=FailFirstPlacements(3)
            ) as orch:
                btc2 = await orch.add_symbol(BTC)
                await wait_until(
                    lambda: (
                        len(btc2.strategy.live_orders()) >= 3
                        and all(o.status != "PENDING_NEW" for o in btc2.strategy.live_orders())
                    ),
                    "run 2's orders resting",
                    btc2,
                )
                await trio.sleep(1.0)  # every answer and report has landed
                snap = btc2.snapshot()
                since = acct.trades.get(BTC, [])[trades_before:]
                by_id = {rec.order_id: rec.client_id for rec in acct.orders.values()}
                # the venue's trades since the restart are all of run 2's own orders ...
                assert {by_id[t["orderId"]] for t in since} <= set(second)
                # ... and they are exactly run 2's fills: nothing of run 1's was adopted
                assert snap.fills == len(since), (snap, since)
                bought = sum((D(t["qty"]) for t in since if t["isBuyer"]), D(0))
                sold = sum((D(t["qty"]) for t in since if not t["isBuyer"]), D(0))
                assert btc2.strategy.position == snap.position == bought - sold
                # every take-profit sells above the buy it closes
                assert btc2.position.realized_pnl >= 0
                await orch.remove_symbol(BTC)
            # no client id of run 2 was used by run 1
            assert not set(first) & set(second), sorted(set(first) & set(second))
            assert acct.open_records(BTC) == []


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue): left out of the fast
# unit pass, pytest -m "not slow"
import pytest  # noqa: E402

pytestmark = pytest.mark.slow
