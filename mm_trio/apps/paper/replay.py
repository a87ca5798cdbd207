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
from mm_trio.exchange.recording import RecordingStats
from mm_trio.exchange.sim.recorded import RecordedMarket, ReplayFeed

__all__ = ["PUBLISH_QUANTUM_NS", "ScaledReplayFeed", "scaled_replay"]

PUBLISH_QUANTUM_NS = 1_000_000
"""Scheduled times are rounded up to this grid (1 ms, the resolution of Binance's ``E``)."""
MAX_BATCH_RECORDS = 50
"""Records one clock tick publishes at most: a venue behind its schedule catches up in
batches this size, so its stream senders run in between (a batch far beyond a client's
send queue would disconnect it as too slow when it is not)."""


class _CachedPass:
    """A pass replayed from the events a previous pass decoded (same interface as
    :class:`ReplayFeed`): groups of (recording time, records, events)."""

    def __init__(
        self, groups: list[tuple[int, int, tuple[Event, ...]]], stats: RecordingStats
    ) -> None:
        self._groups = groups
        self._i = 0
        self.stats = stats
        self.first_ts = groups[0][0] if groups else 0
        self.last_ts = self.first_ts
        self.records = 0
        self.events = 0

    def next_ts(self) -> int | None:
        return self._groups[self._i][0] if self._i < len(self._groups) else None

    @property
    def exhausted(self) -> bool:
        return self._i >= len(self._groups)

    def advance(self, to_ts: int) -> list[Event]:
        out: list[Event] = []
        groups = self._groups
        i = self._i
        while i < len(groups) and groups[i][0] <= to_ts:
            ts, records, events = groups[i]
            out += events
            self.records += records
            self.last_ts = ts
            i += 1
        self._i = i
        self.events += len(out)
        return out


MAX_CACHED_EVENTS = 1_000_000
"""Decoded events a replay keeps to serve its later passes (~0.4 KB each in memory); a
longer recording is decoded again on every pass."""


class ScaledReplayFeed:
    """A venue feed replaying recordings ``speed`` times faster, ``repeat`` times (0: ever).

    ``make`` builds a fresh :class:`ReplayFeed` on recording time (one per pass).

    The first pass keeps the events it decodes (up to :data:`MAX_CACHED_EVENTS`) and the
    following passes replay them instead of reading and decoding the files again: decoding
    is about half the venue's cost per event. Subscribing or unsubscribing a symbol drops
    the kept events (a pass being replayed from them goes on from the files, from where it
    was) and the next pass keeps its own.
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
        self._inner: ReplayFeed | _CachedPass = make()
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
        # the current pass's decoded events while it keeps them (None: it does not)
        self._keeping: list[tuple[int, int, tuple[Event, ...]]] | None = []
        self._kept_events = 0
        self._cache: list[tuple[int, int, tuple[Event, ...]]] | None = None

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
        self._forget_cache().add(symbol, start_price)

    def remove(self, symbol: str) -> None:
        self._symbols.pop(symbol, None)
        self._forget_cache().remove(symbol)

    def _forget_cache(self) -> ReplayFeed:
        """The kept events no longer match the subscribed symbols: drop them, and go on
        from the files if this pass is being replayed from them (the pass's feed)."""
        self._cache = None
        self._kept_events = 0
        cached = self._inner
        # a pass that has served nothing yet can still keep all it decodes
        self._keeping = [] if not cached.records and not isinstance(cached, _CachedPass) else None
        if isinstance(cached, _CachedPass):
            self._inner = self._make()
            for symbol, price in self._symbols.items():
                self._inner.add(symbol, price)
            if cached.records:  # skip what the cached pass already served
                self._inner.advance(cached.last_ts)
            self._inner.records = cached.records
            self.stats = self._inner.stats
        assert isinstance(self._inner, ReplayFeed)
        return self._inner

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
            group = inner.advance(due)  # every record at this one recording time
            out += group
            records = inner.records - before
            taken += records
            if self._keeping is not None:
                self._keep(due, records, group)
        self.records += taken
        self.events += len(out)
        return [self._stamp(ev, to_ts) for ev in out]

    # ------------------------------------------------------------------ helpers
    def _keep(self, ts: int, records: int, events: list[Event]) -> None:
        assert self._keeping is not None
        self._kept_events += len(events)
        if self._kept_events > MAX_CACHED_EVENTS:  # too big to keep: decode every pass
            self._keeping = None
            return
        # a tuple of the (untracked) event structs: the collector stops tracking it, and
        # it does not walk a million kept events at every full collection
        self._keeping.append((ts, records, tuple(events)))

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
        if self._keeping is not None:  # this pass kept all its events: replay them
            self._cache, self._keeping = self._keeping, None
        if self._cache is not None:
            self._inner = _CachedPass(self._cache, self.stats)
            return not self._inner.exhausted
        self._inner = self._make()
        for symbol, price in self._symbols.items():
            self._inner.add(symbol, price)
        self.stats = self._inner.stats
        self._keeping, self._kept_events = [], 0
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
