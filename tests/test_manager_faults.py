"""The order path under venue faults (SPEC §3, §12): unknown outcomes are resolved by query,
never by blind re-sending; rate limits pause everything; a cancel that overtakes its own place
does not leave an orphan."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import OpenOrder, OrderRequest, Quote
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.base import (
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    StillWanted,
    UnknownOrder,
    check_wanted,
)
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange
from tests.fakes import QuotingFake, ours, symbol_quote
from tests.test_orchestrator import make_config, wait_for

D = Decimal
CONFIG = config_from_dict(
    {"grid": {"levels_below": 3, "levels_above": 0, "step": "0.01", "order_size": "20"}}
)


def quote(bid: str, ask: str, ts: int = 1) -> Quote:
    return Quote(symbol="AAA/USDT", bid=D(bid), bid_qty=D(5), ask=D(ask), ask_qty=D(5), ts=ts)


class FaultyExchange(FakeExchange):
    """FakeExchange whose first place requests fail in scripted ways."""

    def __init__(self) -> None:
        super().__init__(["AAA/USDT"])
        self.place_faults: list[str] = []  # per place call: "ok", "applied-timeout", ...
        self.place_delay = 0.0
        self.place_calls: list[str] = []
        self.cancel_calls: list[str] = []
        self.query_calls: list[str] = []
        self.limiter: Limiter | None = None  # paused on a 429, as a real adapter does

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        check_wanted(request, still_wanted)  # before it goes on the wire
        self.place_calls.append(request.client_id)
        fault = self.place_faults.pop(0) if self.place_faults else "ok"
        if self.place_delay:
            # a request on the wire lands even if the caller stops waiting for it
            with trio.CancelScope(shield=True):
                await trio.sleep(self.place_delay)
        if fault == "lost-timeout":  # never reached the venue
            raise OutcomeUnknown("timed out")
        if fault == "rate-limited":
            exc = RateLimited("Too many requests", retry_after=5.0)
            if self.limiter is not None:  # the adapter that sees the answer owns the pause
                self.limiter.pause(exc.retry_after, reason=str(exc))
            raise exc
        order = await super().place(request)
        if fault == "applied-timeout":  # reached the venue, the answer was lost
            raise OutcomeUnknown("timed out after sending")
        return order

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        self.cancel_calls.append(client_id)
        return await super().cancel(symbol, client_id)

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        self.query_calls.append(client_id)
        return await super().query(symbol, client_id)


async def test_applied_place_with_lost_answer_is_adopted_not_resent(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FaultyExchange()
    fake.place_faults = ["applied-timeout"]
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(2)
        first = fake.place_calls[0]
        assert fake.place_calls.count(first) == 1  # never re-sent
        assert first in fake.query_calls  # resolved by asking the venue
        assert len(fake.orders) == 3 and len(manager.strategy.live_orders()) == 3
        assert {o.client_id for o in manager.strategy.live_orders()} == set(fake.orders)
    assert fake.orders == {}


async def test_lost_place_is_resent_under_the_same_id_after_two_misses(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FaultyExchange()
    fake.place_faults = ["lost-timeout"]
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(2)
        first = fake.place_calls[0]
        assert fake.query_calls.count(first) == 2  # confirmed absent twice...
        assert fake.place_calls.count(first) == 2  # ...then re-sent with the SAME id
        assert len(fake.orders) == 3  # and exactly one order per level exists
        assert {o.client_id for o in manager.strategy.live_orders()} == set(fake.orders)


async def test_rate_limit_pauses_all_traffic_then_resumes(autojump_clock: trio.abc.Clock) -> None:
    fake = FaultyExchange()
    fake.place_faults = ["rate-limited"]
    sent_at: list[float] = []
    original = fake.place

    async def timed_place(request: OrderRequest, **kw: Any) -> OpenOrder:
        sent_at.append(trio.current_time())
        return await original(request, **kw)

    fake.place = timed_place  # type: ignore[method-assign]
    limiter = Limiter(CONFIG.limiter)
    fake.limiter = limiter
    async with open_orchestrator(fake, CONFIG, limiter=limiter) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        # the fake exchange does not take the limiter itself: the manager's retries must,
        # so route every place through it as a real adapter does
        inner = fake.place

        async def limited(request: OrderRequest, **kw: Any) -> OpenOrder:
            await limiter.acquire(1, 1)
            return await inner(request, **kw)

        fake.place = limited  # type: ignore[method-assign]
        t0 = trio.current_time()
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(10)
        assert len(fake.orders) == 3
        assert len(manager.strategy.live_orders()) == 3
        # one call got 429 at t0; every later call waited for Retry-After (5 s)
        later = [t for t in sent_at if t > t0 + 0.001]
        assert later and min(later) >= t0 + 5.0 - 1e-6
        assert limiter.paused_until >= t0 + 5.0 - 1e-6


async def test_cancel_overtaking_its_place_leaves_no_orphan(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FaultyExchange()
    fake.place_delay = 1.0  # place requests take a second to land
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(0.1)  # places are in flight
        assert len(manager.strategy.live_orders()) == 3 and fake.orders == {}
        snap = await orch.remove_symbol("AAA/USDT")  # cancels race ahead of the places
        assert snap.open_orders == 0
    assert fake.orders == {}  # nothing was left behind on the venue
    assert len(fake.cancel_calls) >= 3
    # ...and not thanks to the final cancel-all safety net: every cancel found its order
    assert "leftover" not in caplog.text


async def test_unknown_cancel_of_filled_order_is_resolved_by_query(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A cancel answered "unknown order" may mean it filled: the query finds out."""
    fake = FaultyExchange()
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(1)
        cid = sorted(fake.orders)[0]
        order = fake.orders[cid]
        # the venue filled it, but the fill report is lost; the order is gone from the book
        filled = OpenOrder(
            symbol=order.symbol,
            client_id=cid,
            order_id=order.order_id,
            side=order.side,
            price=order.price,
            qty=order.qty,
            cum_qty=order.qty,
            status="FILLED",
        )
        del fake.orders[cid]
        original_query = fake.query

        async def query(symbol: str, client_id: str) -> OpenOrder:
            if client_id == cid:
                fake.query_calls.append(client_id)
                return filled
            return await original_query(symbol, client_id)

        fake.query = query  # type: ignore[method-assign]
        await orch.remove_symbol("AAA/USDT")
        assert cid in fake.query_calls
        # the strategy learnt of the fill: its inventory holds the filled quantity
        assert manager.strategy.position == order.qty


def test_fault_classes_are_exchange_errors() -> None:
    assert issubclass(UnknownOrder, Exception) and issubclass(OutcomeUnknown, Exception)


async def test_missed_fills_are_recovered_with_their_trade_ids(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A fill whose report was lost (stream down) is found by query; the venue's fill list
    gives the position manager the trade, once, with its price and fee."""
    from mm_trio.domain.model import OrderUpdate

    fake = FaultyExchange()
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(1)
        cid = sorted(fake.orders)[-1]
        order = fake.orders.pop(cid)  # filled on the venue; its reports never arrive
        filled = OpenOrder(
            symbol=order.symbol,
            client_id=cid,
            order_id=order.order_id,
            side=order.side,
            price=order.price,
            qty=order.qty,
            cum_qty=order.qty,
            status="FILLED",
        )
        fills = [
            OrderUpdate(
                symbol=order.symbol,
                client_id=cid,
                side=order.side,
                price=order.price,
                qty=order.qty,
                status="FILLED",
                cum_qty=order.qty,
                last_qty=order.qty,
                last_price=order.price,
                fee=D("0.01"),
                fee_asset="USDT",
                trade_id=777,
                maker=True,
            )
        ]

        async def query(symbol: str, client_id: str) -> OpenOrder:
            if client_id == cid:
                return filled
            return await FakeExchange.query(fake, symbol, client_id)

        async def order_fills(o: OpenOrder) -> list[OrderUpdate]:
            return fills if o.client_id == cid else []

        fake.query = query  # type: ignore[method-assign]
        fake.order_fills = order_fills  # type: ignore[method-assign]
        from mm_trio.domain.model import StreamStatus

        fake.inject(StreamStatus(status="resynced"))  # e.g. after a reconnect
        await trio.sleep(2)
        assert manager.position.fills == 1 and manager.position.buys == 1
        assert manager.position.position == order.qty == manager.strategy.position
        assert manager.position.fees["USDT"] == D("0.01")
        fake.inject(StreamStatus(status="resynced"))  # a second resync changes nothing
        await trio.sleep(2)
        assert manager.position.fills == 1


async def test_placement_cancelled_while_queued_is_withdrawn_not_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The limiter is paused when the grid goes out; before the pause ends the price runs away
    and the strategy cancels those orders. They are withdrawn: never sent, so no cancel
    request either; the new window's orders go out instead."""
    config = config_from_dict(
        {
            "grid": {"levels_below": 3, "levels_above": 0, "step": "0.01", "order_size": "20"},
            "risk": {"jump_pct": "0.5"},
        }
    )  # the run-away is no breaker
    fake = FaultyExchange()
    limiter = Limiter(config.limiter)
    inner = fake.place

    async def limited(request: OrderRequest, **kw: Any) -> OpenOrder:
        await limiter.acquire(1, 1)  # as a real adapter does, before still_wanted
        return await inner(request, **kw)

    fake.place = limited  # type: ignore[method-assign]
    async with open_orchestrator(fake, config, limiter=limiter) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        limiter.pause(5.0, reason="test: a 429 elsewhere")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(1)
        first = sorted(o.client_id for o in manager.strategy.live_orders())
        assert len(first) == 3 and fake.placed == []  # queued behind the pause
        fake.inject(quote("11.00", "11.02"))  # ~10 levels up: all three leave the window
        await trio.sleep(10)
        assert manager.withdrawn == 3
        sent = [r.client_id for r in fake.placed]
        assert not set(first) & set(sent), "a withdrawn placement was sent"
        assert fake.cancel_calls == [], "a cancel was sent for an order that never existed"
        live = manager.strategy.live_orders()
        assert len(live) == 3 and all(o.price < D("11.01") for o in live)
        assert sorted(o.client_id for o in live) == sorted(sent)
        assert manager.rejects == 0


async def test_order_presumed_gone_that_lands_late_is_cancelled_on_sight(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Every send of one order times out and queries find nothing, so the manager gives up
    on it. Seconds later the first send lands after all (NEW on the stream): the manager
    cancels it at once instead of leaving an order the grid does not manage."""
    async with trio.open_nursery() as nursery:
        fake = FaultyExchange()
        target: list[str] = []
        inner = FakeExchange.place

        async def place(request: OrderRequest, **kw: Any) -> OpenOrder:
            if not target:
                target.append(request.client_id)

                async def land_late() -> None:
                    await trio.sleep(5.0)
                    await inner(fake, request)  # acknowledged on the stream (NEW)

                nursery.start_soon(land_late)
            if request.client_id == target[0]:
                fake.place_calls.append(request.client_id)
                raise OutcomeUnknown("timed out")
            return await inner(fake, request, **kw)

        fake.place = place  # type: ignore[method-assign]
        async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
            manager = await orch.add_symbol("AAA/USDT")
            fake.inject(quote("10.00", "10.02"))
            await trio.sleep(4.0)
            cid = target[0]
            assert fake.place_calls.count(cid) == 3  # sent three times, then given up
            assert manager.strategy.live_order(cid) is None and cid not in fake.orders
            await trio.sleep(2.0)  # it landed at 5 s
            assert cid in fake.cancel_calls
            assert cid not in fake.orders, "the late order was left on the venue"
            assert all(manager.strategy.live_order(c) is not None for c in fake.orders)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- rejected cancel


class RejectFirstCancel(QuotingFake):
    """The first cancel is refused with a 4xx the adapter maps to OrderRejected (e.g. -1021
    timestamp outside recvWindow); the order stays open on the venue."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(symbols)
        self.rejected: str | None = None

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        if self.rejected is None:
            self.rejected = client_id
            raise OrderRejected(
                "HTTP 400 code -1021: Timestamp for this request was outside of the recvWindow."
            )
        return await super().cancel(symbol, client_id)


async def test_rejected_cancel_is_not_left_as_a_zombie(autojump_clock: trio.abc.Clock) -> None:
    """A cancel the venue refuses leaves the order open there: it is cancelled again, not
    forgotten by the strategy while it stays on the venue."""
    fake = RejectFirstCancel(["AAA/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol("AAA/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) == 4)
        fake.inject(symbol_quote("AAA/USDT", "11.00", "11.01", ts=2))  # every buy leaves the window
        await wait_for(lambda: fake.rejected is not None)
        await trio.sleep(120)
        assert fake.rejected not in fake.orders, "out-of-window order still open on the venue"
        assert fake.rejected not in {o.client_id for o in m.strategy.live_orders()}
