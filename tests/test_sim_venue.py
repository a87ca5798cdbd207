"""The trio shell of the simulated venue (driven by trio's MockClock)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import attrs
import pytest
import trio
import trio.testing

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    BalanceUpdate,
    Event,
    OrderRequest,
    OrderUpdate,
    Quote,
    StreamStatus,
    Trade,
)
from mm_trio.exchange.base import OutcomeUnknown, UnknownOrder, UnknownSymbol, WouldTake
from mm_trio.exchange.sim import EPOCH_NS, SimulatedExchange

D = Decimal
SYM = "BTC/USDT"
MS = 1_000_000


def cfg(**kw: object) -> SimVenueConfig:
    return attrs.evolve(SimVenueConfig(), **kw)


def drain(venue: SimulatedExchange) -> list[Event]:
    out: list[Event] = []
    while True:
        try:
            out.append(venue.events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


class ScriptedFeed:
    """A feed that plays given market events at their ts (relative to EPOCH_NS)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.symbols: set[str] = set()

    def add(self, symbol: str, start_price: Decimal) -> None:
        self.symbols.add(symbol)

    def remove(self, symbol: str) -> None:
        self.symbols.discard(symbol)

    def advance(self, to_ts: int) -> list[Event]:
        due = [e for e in self.events if e.ts <= to_ts]
        self.events = [e for e in self.events if e.ts > to_ts]
        return [e for e in due if e.symbol in self.symbols]  # type: ignore[union-attr]


class StubLimiter:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, bool]] = []

    async def acquire(
        self,
        weight: int = 1,
        orders: int = 0,
        *,
        cancel: bool = False,
        still_wanted: Callable[[], bool] | None = None,
    ) -> None:
        self.calls.append((weight, orders, cancel))
        await trio.lowlevel.checkpoint()


def buy(cid: str, price: str, qty: str = "0.001", post_only: bool = True) -> OrderRequest:
    return OrderRequest(
        symbol=SYM, client_id=cid, side="BUY", price=D(price), qty=D(qty), post_only=post_only
    )


async def test_subscribe_unknown_symbol_names_it() -> None:
    venue = SimulatedExchange(cfg())
    with pytest.raises(UnknownSymbol, match="NOPE/USDT"):
        await venue.subscribe([SYM, "NOPE/USDT"])
    assert venue.subscribed == []  # nothing changed
    with pytest.raises(UnknownSymbol, match="btc-usdt"):
        await venue.subscribe(["btc-usdt"])


async def test_events_flow_only_for_subscribed_symbols(autojump_clock: object) -> None:
    venue = SimulatedExchange(cfg(latency_ms=0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run)
        await venue.subscribe([SYM, "ETH/USDT"])
        await venue.subscribe([SYM])  # idempotent
        await trio.sleep(1.0)
        events = drain(venue)
        assert isinstance(events[0], StreamStatus) and events[0].status == "connected"
        market = [e for e in events if isinstance(e, (Quote, Trade))]
        assert {e.symbol for e in market} == {SYM, "ETH/USDT"}
        btc_quotes = [e for e in market if isinstance(e, Quote) and e.symbol == SYM]
        assert 9 <= len(btc_quotes) <= 11
        assert all(EPOCH_NS <= e.ts <= EPOCH_NS + 2_000 * MS for e in market)
        assert all((e.ts - EPOCH_NS) % (100 * MS) == 0 for e in market)
        await venue.unsubscribe(["ETH/USDT", "SOL/USDT"])
        await trio.sleep(0.05)
        drain(venue)
        await trio.sleep(1.0)
        assert {e.symbol for e in drain(venue)} == {SYM}  # type: ignore[union-attr]
        assert venue.engine.last_quote(SYM) is not None
        nursery.cancel_scope.cancel()
    # the stream is closed when run ends
    with pytest.raises(trio.EndOfChannel):
        while True:
            await venue.events.receive()


async def test_place_new_fill_and_cancel_flow(autojump_clock: object) -> None:
    t = EPOCH_NS
    feed = ScriptedFeed(
        [
            Quote(
                symbol=SYM,
                bid=D("59999"),
                bid_qty=D(1),
                ask=D("60000"),
                ask_qty=D(1),
                ts=t + 100 * MS,
            ),
            Trade(
                symbol=SYM,
                price=D("59000"),
                qty=D("0.0004"),
                buyer_maker=True,
                trade_id=1,
                ts=t + 500 * MS,
            ),
        ]
    )
    limiter = StubLimiter()
    venue = SimulatedExchange(cfg(latency_ms=20.0), feed=feed, limiter=limiter)
    async with venue.connect():
        await venue.subscribe([SYM])
        await trio.sleep(0.15)
        start = trio.current_time()
        ack = await venue.place(buy("b1", "59500"))
        assert trio.current_time() - start == pytest.approx(0.02)  # latency
        assert ack.status == "NEW" and ack.cum_qty == 0
        with pytest.raises(WouldTake):
            await venue.place(buy("b2", "60000"))
        await venue.place(buy("b3", "58000"))
        events = drain(venue)
        news = [e for e in events if isinstance(e, OrderUpdate)]
        assert [(e.client_id, e.status) for e in news] == [("b1", "NEW"), ("b3", "NEW")]
        assert news[0].ts == EPOCH_NS + 170 * MS
        await trio.sleep(0.5)
        events = drain(venue)
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["Trade", "OrderUpdate", "BalanceUpdate", "BalanceUpdate"]
        fill = events[1]
        assert isinstance(fill, OrderUpdate)
        assert (fill.client_id, fill.status, fill.last_qty, fill.cum_qty) == (
            "b1",
            "PARTIALLY_FILLED",
            D("0.0004"),
            D("0.0004"),
        )
        assert fill.ts == EPOCH_NS + 500 * MS
        assert (await venue.query(SYM, "b1")).cum_qty == D("0.0004")
        assert [o.client_id for o in await venue.open_orders(SYM)] == ["b1", "b3"]
        cancelled = await venue.cancel(SYM, "b1")
        assert cancelled.status == "CANCELED" and cancelled.cum_qty == D("0.0004")
        events = drain(venue)
        assert isinstance(events[0], OrderUpdate) and events[0].status == "CANCELED"
        assert isinstance(events[1], BalanceUpdate) and events[1].asset == "USDT"
        with pytest.raises(UnknownOrder):
            await venue.cancel(SYM, "b1")
        assert [o.client_id for o in await venue.cancel_all(SYM, "b3")] == []
        bal = await venue.balances()
        assert bal["BTC"].free == D(1) + D("0.0004")
        assert len(await venue.open_orders()) == 1
        specs = await venue.load_specs()
        assert specs[SYM].tick_size == D("0.01")
    assert (1, 1, False) in limiter.calls  # place
    assert (1, 0, True) in limiter.calls  # cancel
    weights = {w for w, _, _ in limiter.calls}
    assert {4, 6, 20, 80} <= weights


async def test_zero_latency_is_immediate(autojump_clock: object) -> None:
    venue = SimulatedExchange(cfg(latency_ms=0.0))
    start = trio.current_time()
    await venue.place(buy("b", "50000"))
    await venue.cancel(SYM, "b")
    assert trio.current_time() == start
    kinds = [(e.status) for e in drain(venue) if isinstance(e, OrderUpdate)]
    assert kinds == ["NEW", "CANCELED"]


async def test_slow_consumer_loses_nothing(autojump_clock: object) -> None:
    venue = SimulatedExchange(cfg(), buffer_size=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run)
        await venue.subscribe([SYM])
        await trio.sleep(5.0)  # nobody reads: the feed waits for room
        got: list[Event] = []
        with trio.move_on_after(10.0):
            async for ev in venue.events:
                got.append(ev)
                if isinstance(ev, Quote) and ev.ts >= EPOCH_NS + 8_000 * MS:
                    break
        nursery.cancel_scope.cancel()
    quotes = [e.ts for e in got if isinstance(e, Quote)]
    assert quotes == list(range(quotes[0], quotes[-1] + 1, 100 * MS))
    trades = [e.trade_id for e in got if isinstance(e, Trade)]
    assert trades == list(range(trades[0], trades[0] + len(trades)))


async def _session(seed: int, latency_ms: float) -> list[Event]:
    """A small grid session on two tasks.

    The consumer buys below the mid and puts a take-profit one step up on each fill; a second
    task places and cancels an order every second (waking at the same instants as ticks).
    """
    venue = SimulatedExchange(
        cfg(seed=seed, queue_model="probabilistic", volatility=0.002, latency_ms=latency_ms)
    )
    log: list[Event] = []

    async def pinger() -> None:
        for i in range(1000):
            await trio.sleep(1.0)
            q = venue.engine.start_prices["ETH/USDT"]
            req = OrderRequest(
                symbol="ETH/USDT", client_id=f"p{i}", side="BUY", price=q - D(5), qty=D("0.01")
            )
            try:
                await venue.place(req)
            except WouldTake:
                continue
            await trio.sleep(0.5)
            try:
                await venue.cancel("ETH/USDT", f"p{i}")
            except UnknownOrder:
                pass

    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run)
        await venue.subscribe([SYM, "ETH/USDT"])
        nursery.start_soon(pinger)
        n = 0
        placed = False
        end = trio.current_time() + 60
        async for ev in venue.events:
            log.append(ev)
            if isinstance(ev, Quote) and ev.symbol == SYM and not placed:
                placed = True
                for k in range(1, 6):
                    n += 1
                    price = ev.bid - k * D(10)
                    await venue.place(
                        OrderRequest(
                            symbol=SYM, client_id=f"b{n}", side="BUY", price=price, qty=D("0.001")
                        )
                    )
            elif (
                isinstance(ev, OrderUpdate)
                and ev.symbol == SYM
                and ev.side == "BUY"
                and ev.last_qty > 0
            ):
                n += 1
                q = venue.engine.last_quote(SYM)
                price = max(ev.last_price + D(10), q.ask + D("0.01") if q else D(0))
                try:
                    await venue.place(
                        OrderRequest(
                            symbol=SYM, client_id=f"s{n}", side="SELL", price=price, qty=ev.last_qty
                        )
                    )
                except WouldTake:  # the market moved during the latency: deterministic too
                    log.append(StreamStatus(status="connected", reason=f"s{n} would take"))
            if trio.current_time() >= end:
                break
        nursery.cancel_scope.cancel()
    return log


def _run_session(seed: int, latency_ms: float = 5.0) -> list[Event]:
    return trio.run(_session, seed, latency_ms, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("latency_ms", [5.0, 100.0])
def test_whole_session_is_deterministic_by_seed(latency_ms: float) -> None:
    a = _run_session(3, latency_ms)
    for _ in range(4):  # trio randomises the order of tasks woken at the same instant
        assert _run_session(3, latency_ms) == a
    assert _run_session(4, latency_ms) != a
    our = [e for e in a if isinstance(e, OrderUpdate)]
    assert any(e.last_qty > 0 and e.side == "BUY" for e in our)
    assert any(e.last_qty > 0 and e.side == "SELL" for e in our)
    assert any(e.client_id.startswith("p") and e.status == "CANCELED" for e in our)


async def test_cancelled_caller_request_still_arrives(autojump_clock: object) -> None:
    venue = SimulatedExchange(cfg(latency_ms=50.0))
    async with venue.connect():
        with trio.move_on_after(0.01):
            await venue.place(buy("b", "50000"))
        assert venue.engine.open_orders() == []
        await trio.sleep(0.1)
        assert [o.client_id for o in venue.engine.open_orders()] == ["b"]


async def test_pending_request_fails_when_venue_stops(autojump_clock: object) -> None:
    venue = SimulatedExchange(cfg(latency_ms=50.0))
    errors: list[BaseException] = []

    async def placer() -> None:
        try:
            await venue.place(buy("b", "50000"))
        except OutcomeUnknown as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as inner:
            await inner.start(venue.run)
            outer.start_soon(placer)
            await trio.sleep(0.01)
            inner.cancel_scope.cancel()
    assert len(errors) == 1
    assert venue.engine.open_orders() == []


async def test_consumer_placing_inline_with_tiny_buffer_does_not_deadlock(
    autojump_clock: object,
) -> None:
    venue = SimulatedExchange(cfg(latency_ms=5.0), buffer_size=2)
    placed = 0
    async with venue.connect():
        await venue.subscribe([SYM, "ETH/USDT", "SOL/USDT"])
        await trio.sleep(2.0)  # fill the buffer and the outbox
        with trio.fail_after(30):
            async for ev in venue.events:
                if isinstance(ev, Quote) and ev.symbol == SYM and placed < 20:
                    placed += 1
                    await venue.place(buy(f"b{placed}", str(ev.bid - 100)))
                if placed >= 20:
                    break
    assert placed == 20


async def test_with_the_shared_limiter_orders_are_paced(autojump_clock: object) -> None:
    from mm_trio.domain.config import LimiterConfig
    from mm_trio.exchange.limiter import Limiter

    limiter = Limiter(LimiterConfig(orders_per_10s=10, safety_margin=D(0)))
    venue = SimulatedExchange(cfg(latency_ms=0.0), limiter=limiter)
    start = trio.current_time()
    for i in range(25):
        await venue.place(buy(f"b{i}", str(50000 - i)))
    assert trio.current_time() - start >= 20.0  # 10 per 10 s
    assert limiter.sent_orders == 25


async def test_placement_withdrawn_while_queued_never_reaches_the_book(
    autojump_clock: object,
) -> None:
    from mm_trio.domain.config import LimiterConfig
    from mm_trio.exchange.base import PlaceWithdrawn
    from mm_trio.exchange.limiter import Limiter

    limiter = Limiter(LimiterConfig(safety_margin=D(0)))
    venue = SimulatedExchange(cfg(latency_ms=0.0), limiter=limiter)
    limiter.pause(5.0, reason="test")
    wanted = True

    async def withdraw_later() -> None:
        nonlocal wanted
        await trio.sleep(1.0)
        wanted = False

    async with trio.open_nursery() as nursery:
        nursery.start_soon(withdraw_later)
        with pytest.raises(PlaceWithdrawn):
            await venue.place(buy("w1", "49000"), still_wanted=lambda: wanted)
    assert trio.current_time() >= 5.0 - 1e-9  # it did wait for the grant
    assert await venue.open_orders() == []
    with pytest.raises(UnknownOrder):
        await venue.query(SYM, "w1")


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# about a second each or more: left out of the fast unit pass, pytest -m "not slow"
pytest.mark.slow(test_whole_session_is_deterministic_by_seed)
