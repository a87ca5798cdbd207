"""Recordings served faster than real time, and looped: :class:`ScaledReplayFeed`.

``mm-trio venue --replay FILE... --replay-speed X --replay-repeat N`` plays the recordings
``X`` times faster than they were recorded, ``N`` times in a row (``0``: until stopped). It
exists to offer a trader a controlled, high market-event rate over the real websocket path
(issue 12 (f)); a recording at ``X = 1`` played once keeps the plain real-time feed of
:func:`~mm_trio.exchange.sim.recorded.replay_market`.

Time: recording time ``r`` (its receive-time column) maps to venue time
``start + offset + (r - first) / X``; each pass starts where the previous one ended.
Arithmetic is exact (``Fraction``), so the venue clock never stalls on a rounding error.

Each event is stamped with the venue time of the clock tick that publishes it (what a trade's
``E`` then says: when the venue sent it), not its scheduled time; how far publication ran
behind the schedule is kept in :attr:`ScaledReplayFeed.max_lag_ns`. Scheduled times are
rounded up to :data:`PUBLISH_QUANTUM_NS`, so a fast replay wakes the venue clock at most once
per quantum instead of once per record.

A repeated pass offsets public trade ids by the first pass's id span per symbol, so they keep
increasing as Binance's do. Prices jump back to the recording's start at each new pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec

from mm_trio.domain.config import Config
from mm_trio.domain.model import Event, Trade
from mm_trio.exchange.sim.recorded import RecordedMarket, ReplayFeed

__all__ = ["PUBLISH_QUANTUM_NS", "ScaledReplayFeed", "scaled_replay"]

PUBLISH_QUANTUM_NS = 1_000_000
"""Scheduled times are rounded up to this grid (1 ms, the resolution of Binance's ``E``)."""
MAX_BATCH_RECORDS = 500
"""Records one clock tick publishes at most: a venue behind its schedule catches up in
batches this size, so its stream senders run in between (a batch far beyond a client's
send queue would disconnect it as too slow when it is not)."""


class ScaledReplayFeed:
    """A venue feed replaying recordings ``speed`` times faster, ``repeat`` times (0: ever).

    ``make`` builds a fresh :class:`ReplayFeed` on recording time (one per pass).
    """

    def __init__(
        self,
        make: Callable[[], ReplayFeed],
        *,
        start_ns: int,
        speed: float,
        repeat: int = 1,
    ) -> None:
        self._make = make
        self.speed = Fraction(str(speed))  # exact: "1.5" is 3/2, not a binary float
        self.repeat = repeat
        self._inner = make()
        self.first_ts = self._inner.first_ts
        self._pass_start = start_ns  # venue time of the current pass's first record
        self._symbols: dict[str, Decimal] = {}
        self.passes = 1
        self.records = 0
        self.events = 0
        self.max_lag_ns = 0
        self.stats = self._inner.stats
        # trade id spans of the first pass (symbol -> [first id, last id])
        self._ids: dict[str, list[int]] = {}
        self._id_shift: dict[str, int] = {}

    def start_at(self, venue_ns: int) -> None:
        """Play the first pass from venue time ``venue_ns`` (the venue calls this as its
        clock starts, so its own start-up does not count as publication lag)."""
        self._pass_start = venue_ns

    # ------------------------------------------------------------------ time mapping
    def _venue_ns(self, rec_ts: int) -> int:
        """Venue time at which the record at recording time ``rec_ts`` is due (quantised)."""
        exact = self._pass_start + Fraction(rec_ts - self.first_ts) / self.speed
        q = PUBLISH_QUANTUM_NS
        return math.ceil(exact / q) * q

    def _rec_ns(self, venue_ns: int) -> int:
        """Latest recording time due by venue time ``venue_ns``."""
        return self.first_ts + math.floor((venue_ns - self._pass_start) * self.speed)

    # ------------------------------------------------------------------ feed protocol
    def next_ts(self) -> int | None:
        ts = self._inner.next_ts()
        if ts is None:
            if not self._next_pass():
                return None
            ts = self._inner.next_ts()
        return None if ts is None else self._venue_ns(ts)

    @property
    def exhausted(self) -> bool:
        """Every pass played (never, with ``repeat = 0``)."""
        return self._inner.exhausted and bool(self.repeat) and self.passes >= self.repeat

    def add(self, symbol: str, start_price: Decimal) -> None:
        self._symbols[symbol] = start_price
        self._inner.add(symbol, start_price)

    def remove(self, symbol: str) -> None:
        self._symbols.pop(symbol, None)
        self._inner.remove(symbol)

    def advance(self, to_ts: int) -> list[Event]:
        """The events due by venue time ``to_ts``, at most about :data:`MAX_BATCH_RECORDS`
        records' worth (the rest stays due: the venue clock comes back at once, after the
        stream senders had their turn)."""
        out: list[Event] = []
        inner = self._inner
        due = inner.next_ts()
        if due is not None:
            self.max_lag_ns = max(self.max_lag_ns, to_ts - self._venue_ns(due))
        taken = 0
        rec_to = self._rec_ns(to_ts)
        while taken < MAX_BATCH_RECORDS:
            due = inner.next_ts()
            if due is None:
                if not self._next_pass():
                    break
                inner = self._inner
                rec_to = self._rec_ns(to_ts)
                continue
            if due > rec_to:
                break
            before = inner.records
            out += inner.advance(due)  # every record at this one recording time
            taken += inner.records - before
        self.records += taken
        self.events += len(out)
        return [self._stamp(ev, to_ts) for ev in out]

    # ------------------------------------------------------------------ helpers
    def _stamp(self, ev: Event, ts: int) -> Event:
        if type(ev) is Trade:
            ids = self._ids.get(ev.symbol)
            if self.passes == 1:
                if ids is None:
                    self._ids[ev.symbol] = [ev.trade_id, ev.trade_id]
                else:
                    ids[1] = max(ids[1], ev.trade_id)
            shift = self._id_shift.get(ev.symbol, 0)
            return msgspec.structs.replace(ev, ts=ts, trade_id=ev.trade_id + shift)
        return msgspec.structs.replace(ev, ts=ts)

    def _next_pass(self) -> bool:
        """Start the recordings over after the last record of this pass (False: done)."""
        if self.repeat and self.passes >= self.repeat:
            return False
        last = self._inner.last_ts
        self._pass_start = self._venue_ns(last)
        self.passes += 1
        for symbol, (first, last_id) in self._ids.items():
            self._id_shift[symbol] = (self.passes - 1) * (last_id - first + 1)
        self._inner = self._make()
        for symbol, price in self._symbols.items():
            self._inner.add(symbol, price)
        self.stats = self._inner.stats
        return not self._inner.exhausted


def scaled_replay(
    market: RecordedMarket,
    paths: Sequence[Path],
    config: Config,
    *,
    start_ns: int,
    speed: float,
    repeat: int,
) -> ScaledReplayFeed:
    """A :class:`ScaledReplayFeed` of ``paths`` starting at venue time ``start_ns``; its
    first pass replays ``market`` (the read that found the symbols, specs and prices),
    every later pass reads the files again."""
    first: list[RecordedMarket] = [market]

    def make() -> ReplayFeed:
        return ReplayFeed(first.pop() if first else RecordedMarket(paths, config))

    return ScaledReplayFeed(make, start_ns=start_ns, speed=speed, repeat=repeat)
