"""End to end: ``BinanceExchange`` against the local Binance-compatible venue server
(``mm_trio.apps.paper``), over real HTTP and websockets: every Exchange method, rejections,
fills on the user data stream, faults (429, 5xx, order timeouts) and websocket drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import trio

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import (
    BalanceUpdate,
    Event,
    OrderRequest,
    OrderUpdate,
    Quote,
    StreamStatus,
    SymbolSpec,
    floor_to,
)
from mm_trio.exchange.base import (
    DuplicateOrder,
    FilterRejected,
    InsufficientBalance,
    OutcomeUnknown,
    RateLimited,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.adapter import BinanceExchange
from mm_trio.exchange.limiter import Limiter

venue_mod = pytest.importorskip("mm_trio.apps.paper")

D = Decimal
SYM = "BTC/USDT"
TIMEOUT = 15.0


@asynccontextmanager
async def connected(**kw: Any) -> AsyncIterator[tuple[BinanceExchange, Any]]:
    cfg = venue_mod.PaperConfig()
    async with venue_mod.open_paper_venue(cfg) as server, trio.open_nursery() as nursery:
        env = {
            "MM_TRIO_API_KEY": venue_mod.DEFAULT_API_KEY,
            "MM_TRIO_API_SECRET": venue_mod.DEFAULT_API_SECRET,
        }
        ex = BinanceExchange.from_env(
            "binance",
            base_url=server.http_url,
            limiter=Limiter(LimiterConfig()),
            env=env,
            reconnect_initial=0.05,
            **kw,
        )
        await nursery.start(ex.run)
        try:
            yield ex, server
        finally:
            nursery.cancel_scope.cancel()


async def wait_for(ex: BinanceExchange, pred: Any) -> Event:
    with trio.fail_after(TIMEOUT):
        async for ev in ex.events:
            if pred(ev):
                return ev
    raise AssertionError("event stream ended")


async def first_quote(ex: BinanceExchange, symbol: str = SYM) -> Quote:
    ev = await wait_for(ex, lambda e: isinstance(e, Quote) and e.symbol == symbol)
    assert isinstance(ev, Quote)
    return ev


def resting_buy(spec: SymbolSpec, q: Quote, cid: str) -> OrderRequest:
    price = floor_to(q.bid * D("0.98"), spec.tick_size)  # far enough to rest a while
    qty = spec.min_qty
    while price * qty < spec.min_notional * 2:
        qty += spec.step_size
    return OrderRequest(
        symbol=spec.symbol,
        client_id=cid,
        side="BUY",
        price=price,
        qty=floor_to(qty * 1, spec.step_size),
        post_only=True,
    )


async def test_every_exchange_method_end_to_end() -> None:
    async with connected() as (ex, _server):
        ev = await wait_for(ex, lambda e: isinstance(e, StreamStatus))
        assert ev.status == "connected"  # type: ignore[union-attr]
        specs = await ex.load_specs()
        assert SYM in specs and "ETH/USDT" in specs
        spec = specs[SYM]
        balances = await ex.balances()
        assert balances["USDT"].free > 0

        await ex.subscribe([SYM])
        q = await first_quote(ex)
        assert q.bid < q.ask

        order = resting_buy(spec, q, "mm_BTCUSDT_1_B_1")
        placed = await ex.place(order)
        assert (placed.client_id, placed.status, placed.symbol) == (order.client_id, "NEW", SYM)
        assert placed.price == order.price and placed.qty == order.qty
        new = await wait_for(ex, lambda e: isinstance(e, OrderUpdate))
        assert isinstance(new, OrderUpdate)
        assert (new.client_id, new.status) == (order.client_id, "NEW")

        queried = await ex.query(SYM, order.client_id)
        assert queried.order_id == placed.order_id and queried.status == "NEW"
        assert [o.client_id for o in await ex.open_orders(SYM)] == [order.client_id]
        assert [o.client_id for o in await ex.open_orders()] == [order.client_id]

        cancelled = await ex.cancel(SYM, order.client_id)
        assert (cancelled.client_id, cancelled.status) == (order.client_id, "CANCELED")
        upd = await wait_for(ex, lambda e: isinstance(e, OrderUpdate))
        assert isinstance(upd, OrderUpdate)
        assert (upd.client_id, upd.status) == (order.client_id, "CANCELED")
        with pytest.raises(UnknownOrder):
            await ex.cancel(SYM, order.client_id)
        assert (await ex.query(SYM, order.client_id)).status == "CANCELED"
        with pytest.raises(UnknownOrder):
            await ex.query(SYM, "mm_never_sent")
        assert await ex.open_orders(SYM) == []

        # cancel_all touches only our prefix
        q = await first_quote(ex)
        for cid in ("mm_a_1", "mm_b_1", "other_c_1"):
            await ex.place(resting_buy(spec, q, cid))
        done = await ex.cancel_all(SYM, "mm")
        assert sorted(o.client_id for o in done) == ["mm_a_1", "mm_b_1"]
        assert [o.client_id for o in await ex.open_orders(SYM)] == ["other_c_1"]
        await ex.cancel(SYM, "other_c_1")

        book = await ex.depth(SYM, 5)
        assert book["bids"] and book["asks"]
        assert isinstance(await ex.my_trades(SYM), list)

        await ex.unsubscribe([SYM])
        assert ex.market.streams == []
        await trio.sleep(0.5)
        while True:  # drain what was in flight
            try:
                ex.events.receive_nowait()
            except trio.WouldBlock:
                break
        with trio.move_on_after(1.0):
            ev = await wait_for(ex, lambda e: isinstance(e, Quote) and e.symbol == SYM)
            pytest.fail(f"quote after unsubscribe: {ev}")


async def test_rejections_are_classified() -> None:
    async with connected() as (ex, _server):
        specs = await ex.load_specs()
        spec = specs[SYM]
        await ex.subscribe([SYM])
        q = await first_quote(ex)
        ok = resting_buy(spec, q, "mm_r_1")
        await ex.place(ok)
        with pytest.raises(DuplicateOrder):
            await ex.place(ok)
        crossing = OrderRequest(
            symbol=SYM,
            client_id="mm_r_2",
            side="BUY",
            price=floor_to(q.ask * D("1.02"), spec.tick_size),
            qty=ok.qty,
            post_only=True,
        )
        with pytest.raises(WouldTake):
            await ex.place(crossing)
        off_tick = OrderRequest(
            symbol=SYM,
            client_id="mm_r_3",
            side="BUY",
            price=ok.price + spec.tick_size / 2,
            qty=ok.qty,
        )
        with pytest.raises(FilterRejected):
            await ex.place(off_tick)
        huge = OrderRequest(
            symbol=SYM,
            client_id="mm_r_4",
            side="BUY",
            price=ok.price,
            qty=floor_to(D(10_000_000) / ok.price, spec.step_size),
        )
        with pytest.raises(InsufficientBalance):
            await ex.place(huge)
        with pytest.raises(UnknownSymbol):
            await ex.place(
                OrderRequest(
                    symbol="NOPE/USDT", client_id="mm_r_5", side="BUY", price=D(1), qty=D(1)
                )
            )
        await ex.cancel(SYM, ok.client_id)


async def test_taker_fill_arrives_on_user_stream() -> None:
    async with connected() as (ex, _server):
        spec = (await ex.load_specs())[SYM]
        await ex.subscribe([SYM])
        q = await first_quote(ex)
        qty = spec.min_qty
        while q.ask * qty < spec.min_notional * 2:
            qty += spec.step_size
        req = OrderRequest(
            symbol=SYM,
            client_id="mm_take_1",
            side="BUY",
            price=floor_to(q.ask * D("1.02"), spec.tick_size),
            qty=qty,
            post_only=False,
        )
        await ex.place(req)
        ev = await wait_for(ex, lambda e: isinstance(e, OrderUpdate) and e.last_qty > 0)
        assert isinstance(ev, OrderUpdate)
        assert ev.client_id == "mm_take_1" and ev.trade_id is not None and not ev.maker
        filled = (
            await wait_for(ex, lambda e: isinstance(e, OrderUpdate) and e.status == "FILLED")
            if ev.status != "FILLED"
            else ev
        )
        assert isinstance(filled, OrderUpdate) and filled.cum_qty == qty
        bal = await wait_for(ex, lambda e: isinstance(e, BalanceUpdate) and e.asset == "BTC")
        assert isinstance(bal, BalanceUpdate)
        assert (await ex.query(SYM, "mm_take_1")).status == "FILLED"
        # the fills can be fetched again (as after a stream outage) with the same trade ids
        fills = await ex.order_fills(await ex.query(SYM, "mm_take_1"))
        assert fills and fills[-1].cum_qty == qty and fills[-1].status == "FILLED"
        assert fills[0].trade_id == ev.trade_id and fills[0].last_qty == ev.last_qty
        assert sum((f.last_qty for f in fills), D(0)) == qty
        assert all(f.client_id == "mm_take_1" and f.side == "BUY" for f in fills)


async def test_faults_rate_limit_5xx_and_unknown_outcome() -> None:
    async with connected(timeout=0.5) as (ex, server):
        spec = (await ex.load_specs())[SYM]
        await ex.subscribe([SYM])
        q = await first_quote(ex)
        faults = server.venue.faults

        faults.update({"force_429": 1, "forced_retry_after": 1})
        t0 = trio.current_time()
        with pytest.raises(RateLimited) as err:
            await ex.balances()
        assert err.value.retry_after == 1 and not err.value.banned
        assert ex.limiter.paused_until >= t0 + 0.9  # type: ignore[attr-defined]
        await ex.balances()  # waits for the pause, then goes through
        assert trio.current_time() >= t0 + 0.9

        faults.update({"fail_next": 1, "fail_status": 503})
        assert (await ex.balances())["USDT"].free > 0  # GET retried internally

        faults.update({"timeout_next_orders": 1, "timeout_hang_s": 2.0})
        req = resting_buy(spec, q, "mm_to_1")
        with pytest.raises(OutcomeUnknown):
            await ex.place(req)
        found = await ex.query(SYM, "mm_to_1")  # the order WAS applied
        assert found.status == "NEW"
        await ex.cancel(SYM, "mm_to_1")


async def test_websocket_drop_gives_disconnected_then_resynced() -> None:
    async with connected() as (ex, server):
        await ex.subscribe([SYM])
        await first_quote(ex)
        server.venue.drop_websockets()
        seen: dict[str, list[str]] = {"market": [], "user": []}
        with trio.fail_after(TIMEOUT):
            async for ev in ex.events:
                if isinstance(ev, StreamStatus):
                    stream = ev.reason.split(":", 1)[0]
                    seen[stream].append(ev.status)
                if seen["market"][-1:] == ["resynced"] and seen["user"][-1:] == ["resynced"]:
                    break
        assert seen["market"] == ["disconnected", "resynced"]
        assert seen["user"] == ["disconnected", "resynced"]
        await first_quote(ex)  # market data flows again on the re-subscribed streams


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
