"""One symbol's inbox: what the demux hands it, never blocking (SPEC §8).

Quotes are conflated (the latest wins; one wake-up marker waits in the channel at a time,
and every quote it replaces is counted); public trades may be dropped (counted) when the
channel is full; order and balance events and the shell's own markers are never dropped:
when they do not fit, ``on_overflow`` is called (the symbol halts and resyncs over REST).

**The fast path.** After every batch it handles, the symbol sets :attr:`Inbox.band`: the
open interval of mids inside which a quote can change nothing but the latest quote (the
strategy's and the risk monitor's quiet bands). Such a quote is *absorbed*: kept as the
latest quote, with the time it arrived, without waking the symbol's task. The task handles
it first thing when anything else wakes it (and the orchestrator's ticker wakes it within a
second), so nothing is decided on a stale quote. Any marker clears the band until the task
has looked again.

Public trades get the same treatment with :attr:`Inbox.trade_band` (the risk monitor's
``trade_band``: the prices, and the time, within which no trade can trip a breaker): such a
trade is kept, with its arrival time, in :attr:`Inbox.trades` and handed over, in arrival
order, before anything else the task handles, or by the ticker. Whatever goes into the
channel clears both bands until the task has looked again, so nothing is kept while anything
is queued: a kept trade is never handled before one that arrived earlier, and a kept quote
is always the newest thing the symbol has not seen.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import trio

from mm_trio.domain.model import Quote, Trade


class Marker(enum.Enum):
    QUOTE = "quote"  # the conflated latest quote is waiting in ``Inbox.latest_quote``
    GATES = "gates"  # governor state changed: recompute gates
    STOP = "stop"  # cancel everything and place nothing more
    RESUME = "resume"
    RESYNC = "resync"  # query the venue for every live order and apply what it says
    FAIL = "fail"  # the ticker met an error in this symbol's logic: raise it in its task


_MUST_ARRIVE = (Marker.STOP, Marker.RESYNC, Marker.GATES, Marker.FAIL)


class Inbox:
    """The bounded channel into one symbol's event loop (see the module docstring)."""

    def __init__(
        self,
        capacity: int,
        on_overflow: Callable[[], None],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.send, self.receive = trio.open_memory_channel[Any](capacity)
        self._on_overflow = on_overflow
        self._clock = clock
        self.latest_quote: Quote | None = None
        self._quote_pending = False
        self.band: tuple[Decimal, Decimal] | None = None  # quiet mids (see the module doc)
        self.absorbed_at: float | None = None  # arrival of the absorbed latest quote
        self.taken_at: float | None = None  # ... of the quote :meth:`take_quote` returned
        self.quotes_absorbed = 0
        # trades that cannot trip a breaker (see the module doc): (low, high, until)
        self.trade_band: tuple[Decimal, Decimal, float] | None = None
        self.trades: list[tuple[Trade, float]] = []  # kept trades and their arrival times
        self._trades_cap = capacity
        self.trades_absorbed = 0
        self.quotes_skipped = 0
        self.trades_dropped = 0
        self.overflows = 0
        # when the waiting QUOTE marker was queued (perf_counter seconds): the oldest
        # unserved quote, so the event-to-intent latency includes time spent queued
        self.quote_since = 0.0

    def take_quote(self) -> Quote | None:
        """The latest quote (its arrival time in :attr:`taken_at` if it was absorbed)."""
        self._quote_pending = False
        self.taken_at, self.absorbed_at = self.absorbed_at, None
        return self.latest_quote

    def take_trades(self) -> list[tuple[Trade, float]]:
        """The kept trades with their arrival times, oldest first (and forget them)."""
        trades, self.trades = self.trades, []
        return trades

    def deliver(self, event: Any) -> None:
        """Hand one routed event to the symbol. Never blocks."""
        kind = type(event)
        if kind is Trade:
            keep = self.trade_band
            if (
                keep is not None
                and keep[0] <= event.price <= keep[1]
                and len(self.trades) < self._trades_cap
            ):
                now = self._clock()
                if now < keep[2]:
                    self.trades.append((event, now))
                    self.trades_absorbed += 1
                    return
        if kind is Quote:
            if self._quote_pending or self.absorbed_at is not None:
                self.quotes_skipped += 1  # the waiting quote is replaced unseen
            self.latest_quote = event
            if self._quote_pending:
                return
            band = self.band
            if band is not None:
                bid, ask = event.bid, event.ask
                if 0 < bid < ask and band[0] < (bid + ask) / 2 < band[1]:
                    self.absorbed_at = self._clock()
                    self.quotes_absorbed += 1
                    return
            self.absorbed_at = None
            self.band = self.trade_band = None
            try:
                self.send.send_nowait(Marker.QUOTE)
                self._quote_pending = True
                self.quote_since = time.perf_counter()
            except trio.WouldBlock:  # waits as if absorbed: the ticker hands it over
                self.quotes_skipped += 1
                self.absorbed_at = self._clock()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            return
        self.band = self.trade_band = None
        try:
            self.send.send_nowait(event)
        except trio.WouldBlock:
            if kind is Trade:
                self.trades_dropped += 1
            else:
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def put(self, item: Any) -> None:
        """Queue ``item`` (a report the shell learnt itself), waiting for room if need be."""
        self.band = self.trade_band = None
        await self.send.send(item)

    def poke(self, marker: Marker, *, must_arrive: bool | None = None) -> None:
        """Queue ``marker``; one that must arrive (STOP, RESYNC, GATES, FAIL, unless
        ``must_arrive=False``) and does not fit calls ``on_overflow``."""
        # the symbol's state may change: absorb nothing until it looked
        self.band = self.trade_band = None
        if marker is Marker.QUOTE and self._quote_pending:
            return  # its marker is already waiting
        try:
            self.send.send_nowait(marker)
            if marker is Marker.QUOTE:
                self._quote_pending = True
        except trio.WouldBlock:
            if marker in _MUST_ARRIVE if must_arrive is None else must_arrive:
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _overflow(self) -> None:
        self.overflows += 1
        self._on_overflow()
