"""Recorded market data as a feed for the simulated exchange (SPEC §10).

:class:`RecordedMarket` reads recordings (``<recv ns> <combined-stream JSON>`` lines) once:
the first lines of each file say which symbols they hold, the first merged lines each
symbol's rules (inferred specs) and first price; :class:`ReplayFeed` then goes on with the
same read, merged by receive time, handing the simulated exchange the decoded quotes and
trades of its subscribed symbols up to the venue clock. The lines decoded for the specs and
first prices are not decoded again. ``mm-trio replay`` drives the venue clock from the feed;
the paper venue replays it in real time with :func:`replay_market`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import islice
from pathlib import Path

import msgspec

from mm_trio.domain.config import Config
from mm_trio.domain.errors import ReplayInputError
from mm_trio.domain.model import Event, Quote, SymbolSpec, Trade
from mm_trio.exchange.binance.decode import DepthUpdate, StreamDecoder
from mm_trio.exchange.recording import (
    RecordingPass,
    RecordingStats,
    SpecGuesser,
    iter_recording,
)

# Quote assets recognised when splitting a native symbol (longest match wins).
KNOWN_QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "TUSD",
    "BUSD",
    "DAI",
    "BTC",
    "ETH",
    "BNB",
    "EUR",
    "TRY",
    "BRL",
    "JPY",
    "GBP",
    "AUD",
    "USD",
)


ReplayError = ReplayInputError


def split_native(native: str, overrides: dict[str, str] | None = None) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` using :data:`KNOWN_QUOTES` (or an explicit override)."""
    if overrides and native in overrides:
        return overrides[native]
    for quote in sorted(KNOWN_QUOTES, key=len, reverse=True):
        if native.endswith(quote) and len(native) > len(quote):
            return f"{native[: -len(quote)]}/{quote}"
    raise ReplayError(
        f"cannot tell base from quote in native symbol {native!r}: "
        f'add it to [replay] symbols, e.g. {native} = "BASE/QUOTE"'
    )


#: Records of each file whose stream names say which symbols the recordings hold (a symbol
#: first seen later is not replayed: its lines are counted as unknown symbols).
DISCOVERY_LINES = 5000
#: Merged records whose decimals give each symbol's tick and step sizes.
SPEC_LINES = 8000
#: Merged records searched for each symbol's first price, at most.
MID_LINES = 20_000

Decoded = tuple[int, list[Event | DepthUpdate]]  # a record's receive time and its events


def discover_symbols(
    paths: Sequence[Path],
    overrides: dict[str, str] | None = None,
    max_lines: int = DISCOVERY_LINES,
    unknown: dict[str, str] | None = None,
) -> dict[str, str]:
    """Native -> unified symbol map from the stream names in the first lines of each file.

    A native name that cannot be split into base and quote is left out (its lines are then
    counted as unknown symbols and skipped); with ``unknown``, it is added there with why.
    """
    heads = (islice(iter_recording(p), max_lines) for p in paths)
    return symbols_in(heads, overrides, unknown)


def symbols_in(
    heads: Iterable[Iterable[tuple[int, bytes]]],
    overrides: dict[str, str] | None = None,
    unknown: dict[str, str] | None = None,
) -> dict[str, str]:
    """:func:`discover_symbols` of records already read (the first ones of each file)."""
    found: dict[str, str] = {}
    envelope = msgspec.json.Decoder(_Envelope)
    for head in heads:
        for _ts, raw in head:
            try:
                stream = envelope.decode(raw).stream
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if not stream or "@" not in stream:
                continue
            native = stream.split("@", 1)[0].upper()
            if native and native not in found and native.isalnum():
                try:
                    found[native] = split_native(native, overrides)
                except ReplayError as exc:
                    if unknown is not None:
                        unknown.setdefault(native, str(exc))
    return dict(sorted(found.items()))


class _Envelope(msgspec.Struct):
    stream: str = ""


class RecordedMarket:
    """Recordings read once: what they hold, then (:meth:`records`) all of it, decoded.

    At construction it reads the first :data:`DISCOVERY_LINES` records of each file (the
    symbols: :attr:`native_map`, for :attr:`decoder`) and decodes the first
    :data:`SPEC_LINES` merged records (:attr:`specs`: inferred, then ``[replay.specs]``
    overrides), and on until every symbol has a first price (:attr:`mids`, up to
    :data:`MID_LINES`). :meth:`records` then yields every merged record with its events,
    the ones decoded already first, then the rest as they are read. ``stats`` counts what the
    readers saw, exactly as a single read of the files would, in the same order.
    """

    def __init__(
        self, paths: Sequence[Path], config: Config, stats: RecordingStats | None = None
    ) -> None:
        self.stats = stats if stats is not None else RecordingStats()
        reading = RecordingPass(paths, self.stats, head_lines=DISCOVERY_LINES)
        unknown: dict[str, str] = {}
        self.native_map = symbols_in(reading.heads, dict(config.replay.symbols), unknown)
        if not self.native_map:
            why = "; ".join(unknown.values())
            raise ReplayError(
                "no market-data streams found in "
                + ", ".join(map(str, paths))
                + (f" ({why})" if why else "")
            )
        self.decoder = StreamDecoder(self.native_map, clock="recv")
        decode = self.decoder.decode
        self._rest = reading.records()
        # the records decoded for the specs and the first prices, kept for the replay
        decoded: list[Decoded] = []
        self._decoded = decoded
        guess = SpecGuesser()
        for ts, raw in islice(self._rest, SPEC_LINES):
            events = decode(raw, ts)
            guess.see(events)
            decoded.append((ts, events))
        self.specs = guess.specs(
            overrides={sym: dict(values) for sym, values in config.replay.specs.items()}
        )
        self.mids = self._first_mids(set(self.specs))
        self._taken = False

    def _first_mids(self, symbols: set[str]) -> dict[str, Decimal]:
        """Each symbol's first mid (or trade price) in the first :data:`MID_LINES` records,
        decoding on past the ones decoded for the specs only as far as needed."""
        mids: dict[str, Decimal] = {}
        decoded = self._decoded
        decode = self.decoder.decode
        n = 0
        while n < MID_LINES and len(mids) != len(symbols):
            if n < len(decoded):
                events = decoded[n][1]
            else:
                rec = next(self._rest, None)
                if rec is None:
                    break
                events = decode(rec[1], rec[0])
                decoded.append((rec[0], events))
            n += 1
            for ev in events:
                if type(ev) is Quote and ev.symbol not in mids:
                    mids[ev.symbol] = ev.mid
                elif type(ev) is Trade and ev.symbol not in mids:
                    mids[ev.symbol] = ev.price
        return mids

    def records(self) -> Iterator[Decoded]:
        """Every merged record, with its events (``decoder``'s), in order; taken once."""
        if self._taken:
            raise RuntimeError("a RecordedMarket is replayed once: records() was already taken")
        self._taken = True
        return self._all()

    def _all(self) -> Iterator[Decoded]:
        decoded, self._decoded = self._decoded, []
        yield from decoded
        del decoded
        decode = self.decoder.decode
        for ts, raw in self._rest:
            yield ts, decode(raw, ts)


class ReplayFeed:
    """Recorded market data as a venue feed: ``next_ts`` drives the venue clock."""

    def __init__(self, market: RecordedMarket) -> None:
        self.stats = market.stats
        self.decoder = market.decoder
        self._records = market.records()
        self._next = next(self._records, None)
        self.first_ts = self._next[0] if self._next is not None else 0
        self.last_ts = self.first_ts
        self._subscribed: set[str] = set()
        self.records = 0
        self.events = 0

    def next_ts(self) -> int | None:
        return self._next[0] if self._next is not None else None

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def add(self, symbol: str, start_price: Decimal) -> None:
        self._subscribed.add(symbol)

    def remove(self, symbol: str) -> None:
        self._subscribed.discard(symbol)

    def advance(self, to_ts: int) -> list[Event]:
        out: list[Event] = []
        rec = self._next
        subscribed = self._subscribed
        records = self._records
        n = 0
        while rec is not None and rec[0] <= to_ts:
            n += 1
            for ev in rec[1]:
                if (type(ev) is Quote or type(ev) is Trade) and ev.symbol in subscribed:
                    out.append(ev)
            self.last_ts = rec[0]
            rec = next(records, None)
        self._next = rec
        self.records += n
        self.events += len(out)
        return out


class ShiftedReplayFeed(ReplayFeed):
    """A :class:`ReplayFeed` played on another clock: every time is moved by ``shift_ns``
    (the paper venue replays a recording in real time, stamped with today's time)."""

    def __init__(self, market: RecordedMarket, shift_ns: int) -> None:
        super().__init__(market)
        self.shift_ns = shift_ns

    def next_ts(self) -> int | None:
        ts = super().next_ts()
        return None if ts is None else ts + self.shift_ns

    def advance(self, to_ts: int) -> list[Event]:
        shift = self.shift_ns
        return [
            msgspec.structs.replace(ev, ts=ev.ts + shift) for ev in super().advance(to_ts - shift)
        ]


def replay_market(
    paths: Sequence[Path],
    config: Config,
    start_ns: int,
) -> tuple[ShiftedReplayFeed, dict[str, SymbolSpec], dict[str, Decimal]]:
    """A feed replaying ``paths`` from venue time ``start_ns``, with the recorded symbols'
    specs and first prices (for a venue serving recorded market data). One read of the
    files serves all three."""
    for p in paths:
        if not p.is_file():
            raise ReplayError(f"recording {str(p)!r} does not exist")
    market = RecordedMarket(paths, config)
    feed = ShiftedReplayFeed(market, 0)
    feed.shift_ns = start_ns - feed.first_ts
    return feed, market.specs, market.mids
