"""One symbol's inbox: what the demux hands it, never blocking (SPEC §8).

Quotes are conflated (the latest wins; one wake-up marker waits in the channel at a time,
and every quote it replaces is counted); public trades may be dropped (counted) when the
channel is full; order and balance events and the shell's own markers are never dropped:
when they do not fit, ``on_overflow`` is called (the symbol halts and resyncs over REST).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any

import trio

from mm_trio.domain.model import Quote, Trade


class Marker(enum.Enum):
    QUOTE = "quote"  # the conflated latest quote is waiting in ``Inbox.latest_quote``
    GATES = "gates"  # governor state changed: recompute gates
    STOP = "stop"  # cancel everything and place nothing more
    RESUME = "resume"
    RESYNC = "resync"  # query the venue for every live order and apply what it says


_MUST_ARRIVE = (Marker.STOP, Marker.RESYNC, Marker.GATES)


class Inbox:
    """The bounded channel into one symbol's event loop (see the module docstring)."""

    def __init__(self, capacity: int, on_overflow: Callable[[], None]) -> None:
        self.send, self.receive = trio.open_memory_channel[Any](capacity)
        self._on_overflow = on_overflow
        self.latest_quote: Quote | None = None
        self._quote_pending = False
        self.quotes_skipped = 0
        self.trades_dropped = 0
        self.overflows = 0
        # when the waiting QUOTE marker was queued (perf_counter seconds): the oldest
        # unserved quote, so the event-to-intent latency includes time spent queued
        self.quote_since = 0.0

    def take_quote(self) -> Quote | None:
        """The latest quote, for the QUOTE marker just received."""
        self._quote_pending = False
        return self.latest_quote

    def deliver(self, event: Any) -> None:
        """Hand one routed event to the symbol. Never blocks."""
        if type(event) is Quote:
            self.latest_quote = event
            if self._quote_pending:
                self.quotes_skipped += 1
                return
            try:
                self.send.send_nowait(Marker.QUOTE)
                self._quote_pending = True
                self.quote_since = time.perf_counter()
            except trio.WouldBlock:
                self.quotes_skipped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            return
        try:
            self.send.send_nowait(event)
        except trio.WouldBlock:
            if type(event) is Trade:
                self.trades_dropped += 1
            else:
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def poke(self, marker: Marker) -> None:
        try:
            self.send.send_nowait(marker)
        except trio.WouldBlock:
            if marker in _MUST_ARRIVE:
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _overflow(self) -> None:
        self.overflows += 1
        self._on_overflow()
