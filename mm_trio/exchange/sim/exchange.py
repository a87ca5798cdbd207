"""The trio shell of the simulated exchange: :class:`SimulatedExchange` (SPEC §7).

All venue logic lives in the pure :class:`~mm_trio.exchange.sim.matching.MatchingEngine`
and market data in a pure feed (by default the seeded
:class:`~mm_trio.exchange.sim.feed.SyntheticFeed`). This class only adds time, latency, the
shared rate limiter and the event channel:

* :meth:`run` starts the venue clock: every ``tick_interval_ms`` of trio time it advances the
  feed to now and passes each market event through the engine, posting the market event and
  then the fills it caused. Timestamps are ``EPOCH_NS + trio.current_time()`` in ns.
* :meth:`place` / :meth:`cancel` take effect ``latency_ms`` (one way) after they are called;
  their events (``NEW`` / ``CANCELED`` / taker fills and balance updates) go into the same
  stream. Errors are raised to the caller at that moment.
* Determinism: while :meth:`run` is running, delayed requests are applied by the same task
  that applies market ticks, in order of (due time, call order), a request before a tick due
  at the same instant. So the engine's history does not depend on trio's (randomised)
  scheduling of tasks that wake at the same instant, and under ``trio.testing.MockClock`` a
  session with a given seed is reproducible. (With ``latency_ms = 0`` a request is applied
  inline by the caller; a caller woken at exactly a tick time may then land before or after
  that tick.)
* Ordering and back-pressure: an engine call and the posting of its events happen without a
  checkpoint in between, into one FIFO (the channel, overflowing into an outbox that a
  forwarder task drains with ``await send``), so the stream order is the order the engine
  applied things in, and nothing is dropped while the stream is open. Requests never wait for
  the consumer (no deadlock when the consumer itself places orders); market ticks do: while
  the outbox holds more than ``buffer_size`` events no tick is generated, and the feed catches
  up afterwards.
* Every request first takes Binance-like weights from the limiter, if one was given; a
  placement passes its ``still_wanted`` on, so one withdrawn while queued spends nothing.
* Idle time (``advance_clock``, a replay on a ``MockClock`` that autojumps): when every other
  task waits and the venue's next tick (or due request) comes strictly before any other
  task's deadline, the venue moves the clock there itself and carries on, as autojump would
  have done, without a pass of trio's run loop. It keeps doing so for as long as its ticks
  wake nobody (every quote and trade absorbed by the symbols' inboxes, no fill), so a quiet
  stretch of a recording costs the feed and the matching engine, not one scheduler round
  per tick. The clock takes the same values as autojump gives it, so outputs do not change.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Protocol

import trio

# trio.testing re-exports it, but importing that package also imports pytest
from trio._core import wait_all_tasks_blocked

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    Balance,
    Event,
    OpenOrder,
    OrderRequest,
    Quote,
    StreamStatus,
    SymbolSpec,
)
from mm_trio.exchange.base import (
    Exchange,
    OutcomeUnknown,
    StillWanted,
    check_wanted,
    withdrawn_while_queued,
)
from mm_trio.exchange.limiter import Withdrawn
from mm_trio.exchange.sim.feed import SyntheticFeed
from mm_trio.exchange.sim.matching import MatchingEngine

EPOCH_NS = 1_700_000_000_000_000_000
"""Added to trio time so event timestamps look like real Unix ns (2023-11-14)."""
EVENT_BUFFER = 100_000
"""Capacity of the event channel; beyond it the venue waits for the consumer."""

# Binance-like request weights
WEIGHT_PLACE = 1
WEIGHT_CANCEL = 1
WEIGHT_QUERY = 4
WEIGHT_OPEN_ORDERS_SYMBOL = 6
WEIGHT_OPEN_ORDERS_ALL = 80
WEIGHT_BALANCES = 20
WEIGHT_SPECS = 20


class LimiterLike(Protocol):
    """What the venue needs of the shared limiter (:mod:`mm_trio.exchange.limiter`)."""

    async def acquire(
        self,
        weight: int = 1,
        orders: int = 0,
        *,
        cancel: bool = False,
        still_wanted: StillWanted | None = None,
    ) -> None: ...


class MarketFeed(Protocol):
    """A pure market-data source the venue advances on its clock.

    A feed may also have ``next_ts() -> int | None`` (the venue time of its next event, ``None``
    when exhausted): the venue then wakes exactly at each event instead of on a fixed grid —
    this is how a replay drives the venue clock from the recording.
    """

    def add(self, symbol: str, start_price: Decimal) -> None: ...

    def remove(self, symbol: str) -> None: ...

    def advance(self, to_ts: int) -> list[Event]: ...


_Apply = Callable[[int], tuple[OpenOrder, list[Event]]]


class _Request:
    """A place/cancel waiting for its due time on the venue clock."""

    __slots__ = ("due", "seq", "apply", "done", "value", "error")

    def __init__(self, due: float, seq: int, apply: _Apply) -> None:
        self.due = due
        self.seq = seq
        self.apply = apply
        self.done = trio.Event()
        self.value: OpenOrder | None = None
        self.error: BaseException | None = None

    def __lt__(self, other: _Request) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class SimulatedExchange(Exchange):
    """The embedded simulated venue behind the :class:`Exchange` interface.

    ``limiter``: the shared limiter (anything with ``acquire(weight, orders, *, cancel)``);
    ``feed``: a pure market-data source (default: :class:`SyntheticFeed` seeded by
    ``config.seed``); ``engine``: the matching engine (default: a fresh one for ``config``),
    exposed as :attr:`engine` for tests and summaries; ``buffer_size``: the event channel's
    capacity.
    """

    name = "sim"
    lossless_reports = True  # every outcome is posted to the one stream, in engine order

    def __init__(
        self,
        config: SimVenueConfig,
        *,
        limiter: LimiterLike | None = None,
        feed: MarketFeed | None = None,
        engine: MatchingEngine | None = None,
        buffer_size: int = EVENT_BUFFER,
        epoch_ns: int = EPOCH_NS,
        feed_quantum: float = 0.0,
        advance_clock: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        # moves trio's clock forward by that many seconds (MockClock.jump): see the module doc
        self._advance_clock = advance_clock
        self.idle_jumps = 0  # ticks and requests reached by moving the clock ourselves
        self.epoch_ns = epoch_ns
        # a feed with next_ts() is advanced on a grid of feed_quantum seconds: events then
        # reach us in batches, up to that much late (never early)
        self.feed_quantum = feed_quantum
        self.engine = engine if engine is not None else MatchingEngine(config)
        self.feed: MarketFeed = (
            feed if feed is not None else SyntheticFeed(config, self.engine.specs)
        )
        self._limiter = limiter
        self._send, self._recv = trio.open_memory_channel[Event](buffer_size)
        self._buffer_size = buffer_size
        self._outbox: deque[Event] = deque()  # events that did not fit into the channel
        self._wake = trio.Event()  # set when the outbox gets events (wakes the forwarder)
        self._wakeup = trio.Event()  # wakes the venue clock (new request, room in the outbox)
        self._pending: list[_Request] = []  # heap of delayed requests
        self._seq = 0
        self._subscribed: dict[str, None] = {}
        self._latency = config.latency_ms / 1000.0
        self._interval = config.tick_interval_ms / 1000.0
        self._running = False
        self._closed = False
        self.market_events = 0  # market events passed through the engine
        self.dropped_events = 0  # events not delivered because the stream was closed
        self._sink: Callable[[Event], None] | None = None

    def attach(self, sink: Callable[[Event], None]) -> bool:
        """Hand every event to ``sink`` (which never blocks) as it happens, instead of the
        channel: the venue is in-process, so its consumer need not be a task of its own."""
        self._sink = sink
        return True

    # ------------------------------------------------------------------ stream
    @property
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        return self._recv

    @property
    def subscribed(self) -> list[str]:
        """Symbols currently producing market data, in subscription order."""
        return list(self._subscribed)

    def now_ns(self) -> int:
        """Venue time: ``epoch_ns`` plus trio time, in integer ns."""
        return self.epoch_ns + round(trio.current_time() * 1e9)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the venue clock until cancelled; closes the event stream when it ends."""
        if self._running:
            raise RuntimeError("SimulatedExchange.run() is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward)
                self._post((StreamStatus(status="connected", ts=self.now_ns()),))
                task_status.started()
                await self._clock_loop()
        finally:
            self._running = False
            self._closed = True
            self._send.close()
            self.dropped_events += len(self._outbox)
            self._outbox.clear()
            for req in self._pending:  # never applied: the caller must not hang
                req.error = OutcomeUnknown("simulated venue stopped before the request arrived")
                req.done.set()
            self._pending.clear()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[SimulatedExchange]:
        """``async with venue.connect():`` runs :meth:`run` in the background."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    async def _clock_loop(self) -> None:
        """Apply due requests and market ticks in time order (requests first on ties)."""
        interval = self._interval
        pending = self._pending
        t0 = trio.current_time()
        k = 0
        next_ts: Callable[[], int | None] | None = getattr(self.feed, "next_ts", None)
        feed_ts: int | None = None
        quantum = self.feed_quantum
        advance = self._advance_clock
        alone = False  # every other task waits, and we have not yielded since we knew it
        stats = trio.lowlevel.current_statistics
        st: trio.lowlevel.RunStatistics | None = None  # taken while alone, still true
        while True:
            now = trio.current_time()
            if next_ts is not None:
                feed_ts = next_ts()
                tick_at = self._feed_tick(feed_ts, quantum)
            else:
                tick_at = t0 + k * interval
            if len(self._outbox) > self._buffer_size:
                tick_at = math.inf  # slow consumer: no market data until there is room
            due = pending[0].due if pending else math.inf
            if due <= now and due <= tick_at:
                self._apply(heapq.heappop(pending))
                alone, st = False, None  # its caller is runnable now
                continue
            if tick_at <= now:
                to_ts = self.now_ns()
                if feed_ts is not None and feed_ts > to_ts:
                    to_ts = feed_ts  # float rounding of the wake-up time must not stall the feed
                events = self.feed.advance(to_ts)
                if events:
                    self._process(events)
                k += 1
                if t0 + k * interval <= now:  # fell behind: the feed has caught up to now
                    k = math.floor((now - t0) / interval) + 1
                if alone:
                    st = stats()
                    if not st.tasks_runnable and not st.run_sync_soon_queue_size:
                        continue  # nobody woke: nothing to yield to
                alone, st = False, None
                await trio.lowlevel.checkpoint()
                continue
            if advance is not None and next_ts is not None:
                if not alone:
                    await wait_all_tasks_blocked()
                    alone, st = True, None
                    continue  # look again: requests may have come in meanwhile
                at = min(tick_at, due)
                gap = at - now
                if st is None:
                    st = stats()
                # the deadlines are the other tasks' (none ran since st), measured from now
                if gap < st.seconds_to_next_deadline:  # strictly first: no tie to break
                    st = None
                    advance(gap)
                    self.idle_jumps += 1
                    continue
                alone, st = False, None
            self._wakeup = wakeup = trio.Event()
            with trio.move_on_at(min(tick_at, due)):
                await wakeup.wait()

    def _feed_tick(self, feed_ts: int | None, quantum: float) -> float:
        """When the venue clock takes the feed's next event (trio time)."""
        if feed_ts is None:
            return math.inf
        if quantum > 0:  # wake on a fixed grid: a symbol's batches never depend on the
            # timing of other symbols' data
            return math.ceil((feed_ts - self.epoch_ns) / 1e9 / quantum) * quantum
        return (feed_ts - self.epoch_ns) / 1e9

    def _apply(self, req: _Request) -> None:
        try:
            order, events = req.apply(self.now_ns())
        except Exception as exc:  # classified errors (and bugs) go back to the caller
            req.error = exc
        else:
            req.value = order
            self._post(events)
        req.done.set()

    async def _request(self, apply: _Apply) -> OpenOrder:
        """Apply a place/cancel ``latency_ms`` from now; return its ack or raise its error."""
        if self._latency <= 0 or not self._running:
            await self._delay()
            order, events = apply(self.now_ns())
            self._post(events)
            return order
        self._seq += 1
        req = _Request(trio.current_time() + self._latency, self._seq, apply)
        heapq.heappush(self._pending, req)
        self._wakeup.set()
        await req.done.wait()  # if we are cancelled now, the request still arrives
        if req.error is not None:
            raise req.error
        assert req.value is not None
        return req.value

    async def _forward(self) -> None:
        """Move outbox events into the channel, waiting for the consumer as needed."""
        outbox = self._outbox
        send = self._send.send
        low = self._buffer_size // 2
        while True:
            if not outbox:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            try:
                await send(outbox[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed = True
                self.dropped_events += len(outbox)
                outbox.clear()
                return
            outbox.popleft()
            if len(outbox) == low:
                self._wakeup.set()  # the clock may generate market data again

    async def push_market(self, events: Iterable[Event]) -> None:
        """Pass externally sourced market events (e.g. a replay) through the engine and out."""
        await trio.lowlevel.checkpoint()
        self._process(events)

    def _process(self, events: Iterable[Event]) -> None:
        """Match each market event, then post it followed by the fills it caused."""
        engine = self.engine
        on_quote, on_trade = engine.on_quote, engine.on_trade
        sink = self._sink
        if sink is not None:
            n = 0
            for ev in events:
                n += 1
                fills = on_quote(ev) if type(ev) is Quote else on_trade(ev)  # type: ignore[arg-type]
                sink(ev)
                for fill in fills:
                    sink(fill)
            self.market_events += n
            return
        send_nowait = self._send.send_nowait
        outbox = self._outbox
        n = 0
        for ev in events:
            n += 1
            fills = on_quote(ev) if type(ev) is Quote else on_trade(ev)  # type: ignore[arg-type]
            if not outbox and not self._closed:
                try:
                    send_nowait(ev)
                except trio.WouldBlock:
                    self._post((ev,))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._closed = True
            else:
                self._post((ev,))
            if fills:
                self._post(fills)
        self.market_events += n

    def _post(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for the stream in order without ever blocking."""
        sink = self._sink
        if sink is not None:
            for ev in events:
                sink(ev)
            return
        if self._closed:
            self.dropped_events += len(events)
            return
        outbox = self._outbox
        if outbox:
            outbox.extend(events)
            return
        send_nowait = self._send.send_nowait
        for i, ev in enumerate(events):
            try:
                send_nowait(ev)
            except trio.WouldBlock:
                outbox.extend(events[i:])
                self._wake.set()
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed = True
                self.dropped_events += len(events) - i
                return

    # ------------------------------------------------------------------ requests
    async def _acquire(self, weight: int, orders: int = 0, *, cancel: bool = False) -> None:
        if self._limiter is not None:
            await self._limiter.acquire(weight, orders, cancel=cancel)

    async def _acquire_place(self, request: OrderRequest, still_wanted: StillWanted | None) -> None:
        """The limiter grant for a placement; one withdrawn while it waits costs nothing."""
        check_wanted(request, still_wanted)
        if self._limiter is None:
            return
        try:
            await self._limiter.acquire(WEIGHT_PLACE, 1, still_wanted=still_wanted)
        except Withdrawn:
            raise withdrawn_while_queued(request) from None

    async def _delay(self) -> None:
        """The one-way request latency (a bare checkpoint when it is zero)."""
        if self._latency > 0:
            await trio.sleep(self._latency)
        else:
            await trio.lowlevel.checkpoint()

    async def load_specs(self) -> dict[str, SymbolSpec]:
        await self._acquire(WEIGHT_SPECS)
        await trio.lowlevel.checkpoint()
        return dict(self.engine.specs)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Start market data; raises ``UnknownSymbol`` naming the first unlisted symbol."""
        for symbol in symbols:
            self.engine.spec(symbol)  # validates all before changing anything
        for symbol in symbols:
            if symbol in self._subscribed:
                continue
            quote = self.engine.last_quote(symbol)
            start = quote.mid if quote is not None else self.engine.start_prices[symbol]
            self.feed.add(symbol, start)
            self._subscribed[symbol] = None
        await trio.lowlevel.checkpoint()

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        """Stop market data for ``symbols`` (unknown or unsubscribed ones are ignored)."""
        for symbol in symbols:
            if self._subscribed.pop(symbol, 0) is None:
                self.feed.remove(symbol)
        await trio.lowlevel.checkpoint()

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        await self._acquire_place(request, still_wanted)
        check_wanted(request, still_wanted)  # for a limiter that does not ask it itself
        engine = self.engine
        return await self._request(lambda ts: engine.place(request, ts))

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        await self._acquire(WEIGHT_CANCEL, cancel=True)
        engine = self.engine
        return await self._request(lambda ts: engine.cancel(symbol, client_id, ts))

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        await self._acquire(WEIGHT_QUERY)
        await trio.lowlevel.checkpoint()
        return self.engine.query(symbol, client_id)

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        await self._acquire(WEIGHT_OPEN_ORDERS_SYMBOL if symbol else WEIGHT_OPEN_ORDERS_ALL)
        await trio.lowlevel.checkpoint()
        return self.engine.open_orders(symbol)

    async def balances(self) -> dict[str, Balance]:
        await self._acquire(WEIGHT_BALANCES)
        await trio.lowlevel.checkpoint()
        return self.engine.balances()
