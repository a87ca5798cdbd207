"""The market data hub of the paper venue: books per symbol and the subscribers of every
market stream (:class:`MarketHub`), and the stream names it serves (:func:`parse_stream`).

Every market event of the feed goes through :meth:`MarketHub.on_market`: quotes update the
symbol's :class:`~mm_trio.apps.paper.depth.SymbolBook` and go out on ``@bookTicker``, trades on
``@trade`` and ``@aggTrade``; the depth loops call :meth:`MarketHub.flush_depth` for the
``@depth`` diffs and partial-depth snapshots. Payloads are Binance's raw (unwrapped) JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import trio

from mm_trio.apps.paper.depth import SymbolBook
from mm_trio.apps.paper.params import json_bytes
from mm_trio.domain.model import Event, Quote, SymbolSpec, Trade, native_symbol
from mm_trio.exchange.binance.encode import (
    encode_agg_trade,
    encode_book_ticker,
    encode_depth_update,
    encode_trade,
)

__all__ = ["DEPTH_PARTIAL", "MarketHub", "StreamSink", "parse_stream"]

StreamSink = Callable[[str, bytes], None]
"""A stream subscriber: called with (canonical stream name, raw payload JSON)."""

DEPTH_PARTIAL = (5, 10, 20)
"""Levels of the partial-depth streams ``<symbol>@depth<N>``."""
_MAX_STREAM_NAME = 100
_DEPTH = "depth"


def parse_stream(name: str, natives: Mapping[str, str]) -> str | None:
    """Canonical form of a market stream name, or None if it is not one we serve.

    Accepted: ``<symbol>@bookTicker``, ``@trade``, ``@aggTrade``, ``@depth``, ``@depth@100ms``,
    ``@depth@1000ms`` (= ``@depth``), ``@depth<5|10|20>[@100ms|@1000ms]``. Symbols of any
    case; unknown symbols are accepted (and never produce data), as on Binance.
    """
    if not isinstance(name, str) or "@" not in name or len(name) > _MAX_STREAM_NAME:
        return None
    sym, _, rest = name.partition("@")
    if not sym or not sym.isalnum():
        return None
    sym = sym.lower()
    kind, _, speed = rest.partition("@")
    low = kind.lower()
    if low == "bookticker" and not speed:
        return f"{sym}@bookTicker"
    if low == "trade" and not speed:
        return f"{sym}@trade"
    if low == "aggtrade" and not speed:
        return f"{sym}@aggTrade"
    if low.startswith(_DEPTH):
        levels = low[len(_DEPTH) :]
        if levels and (not levels.isdigit() or int(levels) not in DEPTH_PARTIAL):
            return None
        if speed in ("", "1000ms"):
            return f"{sym}@depth{levels}"
        if speed == "100ms":
            return f"{sym}@depth{levels}@100ms"
    return None


class MarketHub:
    """Books per symbol and the subscribers of every market stream.

    ``specs`` is the venue's live symbol table (unified symbol -> spec); a book is made the
    first time a symbol is used, with ``depth_levels`` per side.
    """

    def __init__(self, specs: Mapping[str, SymbolSpec], depth_levels: int) -> None:
        self.specs = specs
        self.depth_levels = depth_levels
        self.books: dict[str, SymbolBook] = {}  # unified -> book
        self.subs: dict[str, set[StreamSink]] = {}
        self._agg_ids: dict[str, int] = {}
        self._quoted: dict[str, trio.Event] = {}
        self.published: Counter[str] = Counter()  # market events by kind ("quote", "trade")

    async def wait_quote(self, symbol: str) -> None:
        """Wait until ``symbol`` has had a quote (market data is flowing)."""
        if self.book(symbol).last_quote is None:
            await self._quoted.setdefault(symbol, trio.Event()).wait()

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(self.specs[symbol], self.depth_levels)
        return book

    def subscribe(self, sink: StreamSink, streams: Iterable[str]) -> None:
        for s in streams:
            self.subs.setdefault(s, set()).add(sink)

    def unsubscribe(self, sink: StreamSink, streams: Iterable[str]) -> None:
        for s in streams:
            sinks = self.subs.get(s)
            if sinks is not None:
                sinks.discard(sink)
                if not sinks:
                    del self.subs[s]

    def _publish(self, stream: str, payload: bytes) -> None:
        for sink in list(self.subs.get(stream, ())):
            sink(stream, payload)

    def on_market(self, ev: Event) -> None:
        if type(ev) is Quote:
            self._on_quote(ev)
        elif type(ev) is Trade:
            self._on_trade(ev)

    def _on_quote(self, ev: Quote) -> None:
        self.published["quote"] += 1
        book = self.book(ev.symbol)
        u = book.apply_quote(ev)
        if u == 1 and ev.symbol in self._quoted:
            self._quoted.pop(ev.symbol).set()
        name = f"{book.native.lower()}@bookTicker"
        if name in self.subs:
            self._publish(
                name, encode_book_ticker(ev, update_id=u, native=book.native, combined=False)
            )

    def _on_trade(self, ev: Trade) -> None:
        self.published["trade"] += 1
        native = native_symbol(ev.symbol)
        low = native.lower()
        name = f"{low}@trade"
        if name in self.subs:
            self._publish(name, encode_trade(ev, native=native, combined=False))
        agg = self._agg_ids[ev.symbol] = self._agg_ids.get(ev.symbol, 0) + 1
        name = f"{low}@aggTrade"
        if name in self.subs:
            self._publish(name, encode_agg_trade(ev, agg_id=agg, native=native, combined=False))

    def flush_depth(self, speed: str, ts: int) -> None:
        suffix = "@100ms" if speed == "100ms" else ""
        for book in self.books.values():
            low = book.native.lower()
            diff = book.flush(speed, ts)
            name = f"{low}@depth{suffix}"
            if diff is not None and name in self.subs:
                self._publish(name, encode_depth_update(diff, native=book.native, combined=False))
            for n in DEPTH_PARTIAL:
                pname = f"{low}@depth{n}{suffix}"
                if pname in self.subs:
                    self._publish(pname, json_bytes(book.snapshot(n)))
