"""Recorded market data as a feed for the simulated exchange (SPEC §10).

:class:`ReplayFeed` merges recordings (``<recv ns> <combined-stream JSON>`` lines) by receive
time and hands the simulated exchange the decoded quotes and trades of its subscribed
symbols, up to the venue clock; :func:`recorded_market` says what the recordings hold
(symbols, inferred specs, first prices). ``mm-trio replay`` drives the venue clock from it;
the paper venue replays it in real time with :func:`replay_market`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from mm_trio.domain.config import Config
from mm_trio.domain.errors import ReplayInputError
from mm_trio.domain.model import Event, Quote, SymbolSpec, Trade
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import RecordingStats, infer_specs, merge_recordings

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


def discover_symbols(
    paths: Sequence[Path],
    overrides: dict[str, str] | None = None,
    max_lines: int = 5000,
    unknown: dict[str, str] | None = None,
) -> dict[str, str]:
    """Native -> unified symbol map from the stream names in the first lines of each file.

    A native name that cannot be split into base and quote is left out (its lines are then
    counted as unknown symbols and skipped); with ``unknown``, it is added there with why.
    """
    found: dict[str, str] = {}
    envelope = msgspec.json.Decoder(_Envelope)
    for path in paths:
        for n, (_ts, raw) in enumerate(merge_recordings([path])):
            if n >= max_lines:
                break
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


class ReplayFeed:
    """Recorded market data as a venue feed: ``next_ts`` drives the venue clock."""

    def __init__(
        self, paths: Sequence[Path], decoder: StreamDecoder, stats: RecordingStats | None = None
    ) -> None:
        self.stats = stats if stats is not None else RecordingStats()
        self._records = merge_recordings(paths, self.stats)
        self._decoder = decoder
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
        decode = self._decoder.decode
        subscribed = self._subscribed
        records = self._records
        n = 0
        while rec is not None and rec[0] <= to_ts:
            n += 1
            for ev in decode(rec[1], rec[0]):
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

    def __init__(
        self,
        paths: Sequence[Path],
        decoder: StreamDecoder,
        shift_ns: int,
        stats: RecordingStats | None = None,
    ) -> None:
        super().__init__(paths, decoder, stats)
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
    specs and first prices (for a venue serving recorded market data)."""
    for p in paths:
        if not p.is_file():
            raise ReplayError(f"recording {str(p)!r} does not exist")
    native_map, specs, mids = recorded_market(paths, config)
    feed = ShiftedReplayFeed(paths, StreamDecoder(native_map, clock="recv"), 0)
    feed.shift_ns = start_ns - feed.first_ts
    return feed, specs, mids


def recorded_market(
    paths: Sequence[Path],
    config: Config,
) -> tuple[dict[str, str], dict[str, SymbolSpec], dict[str, Decimal]]:
    """What the recordings hold: native -> unified names, a spec per recorded symbol
    (inferred, then ``[replay.specs]`` overrides) and each symbol's first price."""
    unknown: dict[str, str] = {}
    native_map = discover_symbols(paths, dict(config.replay.symbols), unknown=unknown)
    if not native_map:
        why = "; ".join(unknown.values())
        raise ReplayError(
            "no market-data streams found in "
            + ", ".join(map(str, paths))
            + (f" ({why})" if why else "")
        )
    specs = build_specs(paths, config, native_map)
    mids = _first_mids(paths, StreamDecoder(native_map, clock="recv"), set(specs))
    return native_map, specs, mids


def _first_mids(
    paths: Sequence[Path], decoder: StreamDecoder, symbols: set[str], max_lines: int = 20000
) -> dict[str, Decimal]:
    mids: dict[str, Decimal] = {}
    for n, (ts, raw) in enumerate(merge_recordings(paths)):
        if n >= max_lines or len(mids) == len(symbols):
            break
        for ev in decoder.decode(raw, ts):
            if type(ev) is Quote and ev.symbol not in mids:
                mids[ev.symbol] = ev.mid
            elif type(ev) is Trade and ev.symbol not in mids:
                mids[ev.symbol] = ev.price
    return mids


def build_specs(
    paths: Sequence[Path], config: Config, native_map: dict[str, str]
) -> dict[str, SymbolSpec]:
    """Specs for every recorded symbol: inferred from the data, then config overrides."""
    decoder = StreamDecoder(native_map, clock="recv")
    overrides: dict[str, dict[str, Any]] = {
        sym: dict(values) for sym, values in config.replay.specs.items()
    }
    return infer_specs(paths, decoder, overrides=overrides, max_lines=8000)
