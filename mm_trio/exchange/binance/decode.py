"""Sans-I/O decoding of Binance stream payloads into the domain ``Event`` structs.

:class:`StreamDecoder` turns one websocket message (bytes or str) into zero or more events:

* combined-stream market data ``{"stream": "btcusdt@bookTicker", "data": {...}}`` and the
  same payloads unwrapped (raw streams): ``bookTicker`` (spot and USDⓈ-M futures),
  ``trade``, ``aggTrade`` -> :class:`~mm_trio.domain.model.Quote` /
  :class:`~mm_trio.domain.model.Trade`;
  ``depthUpdate`` diffs -> :class:`DepthUpdate` (only with ``decode_depth=True``; otherwise
  they are validated, counted and skipped);
* user data ``executionReport`` -> :class:`~mm_trio.domain.model.OrderUpdate` and
  ``outboundAccountPosition`` -> one :class:`~mm_trio.domain.model.BalanceUpdate` per asset, raw,
  inside a combined stream, or wrapped as a WebSocket-API event
  ``{"subscriptionId": n, "event": {...}}``.

``decode`` never raises (SPEC §12): malformed messages, unknown streams, symbols that are not
routed, control replies (``{"result": null, "id": 1}``) and REST depth snapshots (which
hftbacktest recordings contain) are counted in :class:`DecodeStats` and skipped;
``stats.last_error`` keeps the latest problem for rate-limited logging by the caller.

Hot path: a combined-stream message whose first key is ``"stream"`` (how Binance sends it) is
dispatched by the stream name sniffed from its bytes (each name is parsed once and its handler
remembered) and decoded in ONE typed msgspec pass; anything else goes through a generic
envelope (``msgspec.Raw`` for the payload) and a second typed pass. Each distinct number
string is checked and made a ``Decimal`` once (a bounded cache). Prices and quantities must be
Binance's decimal strings (``"61837.63000000"``): a JSON number, a sign, an exponent, or a
magnitude beyond 1e±30 makes the message malformed.

The JSON shapes are in :mod:`~mm_trio.exchange.binance.wire`; the encoders that produce them
(for the paper venue and the fixture generator) in :mod:`~mm_trio.exchange.binance.encode`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from mm_trio.domain.model import BalanceUpdate, Event, OrderUpdate, Quote, Trade
from mm_trio.exchange.binance.protocol import ORDER_STATUS, SIDES
from mm_trio.exchange.binance.wire import (
    AccountPositionJson,
    AggTradeJson,
    BookTickerJson,
    DepthJson,
    DepthSkipJson,
    EnvelopeJson,
    EventTypeJson,
    ExecutionReportJson,
    TradeJson,
)

__all__ = [
    "DecodeStats",
    "DepthUpdate",
    "StreamDecoder",
]

_MS = 1_000_000  # ms -> ns
_MAX_UNKNOWN_NAMES = 64
_MAX_ERROR_LEN = 200
_MAX_NAME_LEN = 64

Level = tuple[Decimal, Decimal]


class DepthUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One order-book diff (``depthUpdate``). Not part of the ``Event`` union.

    ``first_id``/``last_id`` are Binance ``U``/``u``; ``prev_last_id`` is futures ``pu``
    (``None`` on spot). A level with quantity 0 removes that price.
    """

    symbol: str
    first_id: int
    last_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts: int
    prev_last_id: int | None = None


class DecodeStats(msgspec.Struct, kw_only=True):
    """Counters of everything :meth:`StreamDecoder.decode` saw (mutable, cumulative)."""

    messages: int = 0  # calls to decode()
    decoded: int = 0  # messages that produced events (or a DepthUpdate)
    events: int = 0  # events returned
    malformed: int = 0
    unknown_stream: int = 0
    unrouted: int = 0  # well-formed but for a symbol not in the map
    unrouted_names: dict[str, int] = msgspec.field(default_factory=dict)  # native -> count
    control: int = 0  # subscribe replies / WebSocket-API responses
    snapshot: int = 0  # REST depth snapshots ({"lastUpdateId",...}: no symbol, skipped)
    book_ticker: int = 0
    trade: int = 0
    agg_trade: int = 0
    depth: int = 0  # depth diffs seen (decoded or skipped)
    depth_skipped: int = 0  # depth diffs validated but not decoded (decode_depth=False)
    execution_report: int = 0
    account_position: int = 0
    unknown_names: dict[str, int] = msgspec.field(default_factory=dict)
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def _combined_type(payload: type) -> type:
    return msgspec.defstruct(f"Combined{payload.__name__}", [("data", payload)])


_PAYLOAD_TYPES: dict[str, type] = {
    "bookTicker": BookTickerJson,
    "trade": TradeJson,
    "aggTrade": AggTradeJson,
    "depth": DepthJson,
    "depth_skip": DepthSkipJson,
    "executionReport": ExecutionReportJson,
    "account": AccountPositionJson,
}
_PAYLOAD_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(t) for k, t in _PAYLOAD_TYPES.items()
}
_COMBINED_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(_combined_type(t)) for k, t in _PAYLOAD_TYPES.items()
}
_ENVELOPE = msgspec.json.Decoder(EnvelopeJson)
_EVENT_TYPE = msgspec.json.Decoder(EventTypeJson)

# stream-name suffix (after the first "@", or the name after "!") -> kind
_STREAM_KINDS: dict[str, str] = {
    "bookTicker": "bookTicker",
    "trade": "trade",
    "aggTrade": "aggTrade",
    "depth": "depth",
}
# "e" field -> kind
_EVENT_KINDS: dict[str, str] = {
    "bookTicker": "bookTicker",
    "trade": "trade",
    "aggTrade": "aggTrade",
    "depthUpdate": "depth",
    "executionReport": "executionReport",
    "outboundAccountPosition": "account",
}
_PREFIX = b'{"stream":"'
_PREFIX_LEN = len(_PREFIX)
# stream names whose handler is remembered: a bound against garbage names, far above what
# one decoder meets (a replay of 1,000 symbols has 2,000+ names; past the bound every
# message of the other streams sniffed its name again)
_MAX_STREAM_NAMES = 16_384
# ... and only names this long at most (Binance's are ~30 bytes): garbage names cannot hold
# more than ~2 MB of the table
_MAX_STREAM_NAME_BYTES = 128


class MalformedMessage(ValueError):
    """Internal: a message that parsed but carries impossible values."""


def _stream_kind(stream: str) -> str | None:
    """``btcusdt@depth@100ms`` -> ``depth``; ``!bookTicker`` -> ``bookTicker``; else None."""
    if stream.startswith("!"):
        name = stream[1:].split("@", 1)[0]
    else:
        parts = stream.split("@", 2)
        if len(parts) < 2:
            return None
        name = parts[1]
    return _STREAM_KINDS.get(name)


MAX_EXPONENT = 30  # |log10| of any price or quantity we accept; beyond it is not a market


NUMBER_CACHE_SIZE = 65_536
"""Decoded number strings kept: a market repeats the same prices and sizes all the time,
and a dictionary hit costs a small fraction of checking and building a ``Decimal``."""


_DIGITS_AND_POINT = "0123456789."


class _NumberCache(dict[str, Decimal]):
    """Number string -> Decimal; ``cache[text]`` checks and converts only a string it has
    not seen (``__missing__``), so a hit is one dictionary lookup with no Python call."""

    def __missing__(self, text: str) -> Decimal:
        # only ASCII digits and points (Decimal alone would take signs, exponents, spaces,
        # "_", "NaN" and non-ASCII digits); Decimal itself then refuses "", "." and "1.2.3"
        if not text or text.strip(_DIGITS_AND_POINT):
            raise MalformedMessage(f"bad number {text[:40]!r}")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise MalformedMessage(f"bad number {text[:40]!r}") from None
        if value and abs(value.adjusted()) > MAX_EXPONENT:
            raise MalformedMessage(f"number out of range {text[:40]!r}")
        if len(self) >= NUMBER_CACHE_SIZE:
            self.clear()  # bounded memory; the hot prices come back at once
        self[text] = value  # Decimals are immutable: one object serves every message
        return value


_numbers = _NumberCache()


def _num(text: str) -> Decimal:
    """A Binance decimal string (ASCII digits, at most one point) as a Decimal."""
    return _numbers[text]


def _level(level: tuple[str, str]) -> Level:
    return _num(level[0]), _num(level[1])


_Handler = Callable[[bytes, int | None], list[Any]]


def _combined_handler(
    decode: Callable[[bytes], Any], convert: Callable[[Any, int | None], list[Any]]
) -> _Handler:
    """Decode a combined-stream message in one typed pass, then convert its ``data``."""

    def handle(raw: bytes, recv_ts: int | None) -> list[Any]:
        return convert(decode(raw).data, recv_ts)

    return handle


class StreamDecoder:
    """Decode Binance websocket messages into events, routing native symbols to unified ones.

    ``symbols`` maps native names to unified ones (``{"BTCUSDT": "BTC/USDT"}``); messages for
    other symbols are counted as ``unrouted`` and skipped (balances are never unrouted).
    ``clock="venue"`` stamps market data with the venue event time ``E`` when present (else
    the receive time); ``clock="recv"`` always uses ``recv_ts`` when given (what a replay
    wants: one clock for every stream). Missing both, ``ts`` is 0 (no clock is read here).
    """

    def __init__(
        self,
        symbols: Mapping[str, str] | None = None,
        *,
        decode_depth: bool = False,
        clock: Literal["venue", "recv"] = "venue",
    ) -> None:
        if clock not in ("venue", "recv"):
            raise ValueError(f"clock must be 'venue' or 'recv', not {clock!r}")
        self._symbols: dict[str, str] = dict(symbols or {})
        self._use_recv = clock == "recv"
        self.stats = DecodeStats()
        self._converters: dict[str, Callable[[Any, int | None], list[Any]]] = {
            "bookTicker": self._book_ticker,
            "trade": self._trade,
            "aggTrade": self._agg_trade,
            "depth": self._depth,
            "depth_skip": self._depth_skip,
            "executionReport": self._execution_report,
            "account": self._account,
        }
        # combined-stream name (the bytes between its quotes) -> what decodes its messages:
        # the name is sniffed once, not once per message
        self._routes: dict[bytes, _Handler] = {}
        self.decode_depth = decode_depth

    @property
    def decode_depth(self) -> bool:
        """Whether depth diffs become :class:`DepthUpdate` (else validated and skipped)."""
        return self._decode_depth

    @decode_depth.setter
    def decode_depth(self, value: bool) -> None:
        self._decode_depth = value
        self._routes.clear()  # their handlers decode depth one way or the other

    def _payload_kind(self, kind: str) -> str:
        return "depth_skip" if kind == "depth" and not self._decode_depth else kind

    def _learn(self, name: bytes) -> _Handler:
        """The handler of a combined stream's messages by its name (remembered)."""
        try:
            kind = _stream_kind(name.decode())
        except UnicodeDecodeError:
            kind = None
        handler: _Handler
        if kind is None:  # the name says nothing: the envelope's contents decide
            handler = self._generic
        else:
            kind = self._payload_kind(kind)
            handler = _combined_handler(_COMBINED_DECODERS[kind].decode, self._converters[kind])
        if len(self._routes) < _MAX_STREAM_NAMES and len(name) <= _MAX_STREAM_NAME_BYTES:
            self._routes[name] = handler
        return handler

    # ------------------------------------------------------------------ symbol map
    @property
    def symbols(self) -> Mapping[str, str]:
        return self._symbols

    def add_symbol(self, native: str, unified: str) -> None:
        self._symbols[native] = unified

    def remove_symbol(self, native: str) -> None:
        self._symbols.pop(native, None)

    # ------------------------------------------------------------------ decoding
    def decode(
        self, raw: bytes | bytearray | memoryview | str, recv_ts: int | None = None
    ) -> list[Event | DepthUpdate]:
        """Events carried by one message (``[]`` when it carries none). Never raises.

        The list holds ``Event`` structs, plus :class:`DepthUpdate` when ``decode_depth``.
        """
        stats = self.stats
        stats.messages += 1
        try:
            if type(raw) is not bytes:
                raw = raw.encode() if isinstance(raw, str) else bytes(raw)
            # how Binance sends a combined stream: its name first, so it can be sniffed
            end = raw.find(b'"', _PREFIX_LEN) if raw.startswith(_PREFIX) else -1
            if end > 0:
                name = raw[_PREFIX_LEN:end]
                handler = self._routes.get(name) or self._learn(name)
                events = handler(raw, recv_ts)
            else:
                events = self._generic(raw, recv_ts)
        except Exception as exc:  # decode never raises (SPEC §12)
            stats.malformed += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_LEN]
            return []
        if events:
            stats.decoded += 1
            stats.events += len(events)
        return events

    def decode_many(self, lines: Iterable[tuple[int, bytes]]) -> list[Event | DepthUpdate]:
        """Decode ``(recv_ts, payload)`` pairs (e.g. a recording) into one list of events."""
        out: list[Event | DepthUpdate] = []
        for ts, payload in lines:
            out.extend(self.decode(payload, ts))
        return out

    def _unknown(self, name: str) -> None:
        name = name[:_MAX_NAME_LEN]
        stats = self.stats
        stats.unknown_stream += 1
        names = stats.unknown_names
        if name in names:
            names[name] += 1
        elif len(names) < _MAX_UNKNOWN_NAMES:
            names[name] = 1
        stats.last_error = f"unknown stream/event {name!r}"[:_MAX_ERROR_LEN]

    def _generic(self, raw: bytes, recv_ts: int | None) -> list[Any]:
        """Any message: its envelope says what it is (a second typed pass decodes it)."""
        kind, payload = self._decode_generic(raw)
        if kind is None:
            return []
        return self._converters[kind](payload, recv_ts)

    def _decode_generic(self, raw: bytes) -> tuple[str | None, Any]:
        env = _ENVELOPE.decode(raw)
        body: bytes
        if env.data:
            body = env.data
            name = env.stream or ""
            kind = _stream_kind(name) if env.stream else None
            if kind is None:  # user-data streams are named by listen key: use "e"
                et = _EVENT_TYPE.decode(body)
                if et.e is not None:
                    name = et.e
                    kind = _EVENT_KINDS.get(et.e)
                elif et.A and not env.stream:
                    kind = "bookTicker"
                if kind is None:
                    self._unknown(name or "<no stream>")
                    return None, None
        elif env.event:
            body = env.event
            et = _EVENT_TYPE.decode(body)
            kind = _EVENT_KINDS.get(et.e or "")
            if kind is None:
                self._unknown(et.e or "<no event type>")
                return None, None
        elif env.e is not None:
            body = raw
            kind = _EVENT_KINDS.get(env.e)
            if kind is None:
                self._unknown(env.e)
                return None, None
        elif env.A:  # raw spot bookTicker: {u,s,b,B,a,A}
            body = raw
            kind = "bookTicker"
        elif env.lastUpdateId is not None:
            self.stats.snapshot += 1
            return None, None
        elif env.id or env.result or env.status is not None:
            self.stats.control += 1
            return None, None
        else:
            self._unknown(env.stream or "<no stream>")
            return None, None
        kind = self._payload_kind(kind)
        return kind, _PAYLOAD_DECODERS[kind].decode(body)

    def _ts(self, venue_ms: int | None, recv_ts: int | None) -> int:
        if self._use_recv and recv_ts is not None:
            return recv_ts
        if venue_ms is not None:
            return venue_ms * _MS
        return recv_ts if recv_ts is not None else 0

    def _unrouted(self, native: str) -> None:
        stats = self.stats
        stats.unrouted += 1
        name = native[:_MAX_NAME_LEN]
        names = stats.unrouted_names
        if name in names:
            names[name] += 1
        elif len(names) < _MAX_UNKNOWN_NAMES:
            names[name] = 1

    # Converters, one per kind: numbers first (a bad one makes the message malformed, counted
    # as nothing else), then the kind's counter, then the route (unrouted: counted, no event).
    def _book_ticker(self, p: BookTickerJson, recv_ts: int | None) -> list[Any]:
        num = _numbers
        bid, bid_qty, ask, ask_qty = num[p.b], num[p.B], num[p.a], num[p.A]
        self.stats.book_ticker += 1
        sym = self._symbols.get(p.s)
        if sym is None:
            self._unrouted(p.s)
            return []
        return [
            Quote(
                symbol=sym,
                bid=bid,
                bid_qty=bid_qty,
                ask=ask,
                ask_qty=ask_qty,
                ts=recv_ts if self._use_recv and recv_ts is not None else self._ts(p.E, recv_ts),
            )
        ]

    def _trade(self, p: TradeJson, recv_ts: int | None) -> list[Any]:
        num = _numbers
        price, qty = num[p.p], num[p.q]
        self.stats.trade += 1
        return self._trade_event(p, p.t, price, qty, recv_ts)

    def _agg_trade(self, p: AggTradeJson, recv_ts: int | None) -> list[Any]:
        num = _numbers
        price, qty = num[p.p], num[p.q]
        self.stats.agg_trade += 1
        return self._trade_event(p, p.a, price, qty, recv_ts)

    def _trade_event(
        self,
        p: TradeJson | AggTradeJson,
        trade_id: int,
        price: Decimal,
        qty: Decimal,
        recv_ts: int | None,
    ) -> list[Any]:
        sym = self._symbols.get(p.s)
        if sym is None:
            self._unrouted(p.s)
            return []
        return [
            Trade(
                symbol=sym,
                price=price,
                qty=qty,
                buyer_maker=p.m,
                trade_id=trade_id,
                ts=recv_ts
                if self._use_recv and recv_ts is not None
                else self._ts(p.E if p.E is not None else p.T, recv_ts),
            )
        ]

    def _depth_skip(self, p: DepthSkipJson, recv_ts: int | None) -> list[Any]:
        stats = self.stats
        stats.depth += 1
        stats.depth_skipped += 1
        if p.s not in self._symbols:
            self._unrouted(p.s)  # counted, as any message for a symbol not routed
        return []

    def _depth(self, p: DepthJson, recv_ts: int | None) -> list[Any]:
        bids = tuple(map(_level, p.b))
        asks = tuple(map(_level, p.a))
        self.stats.depth += 1
        sym = self._symbols.get(p.s)
        if sym is None:
            self._unrouted(p.s)
            return []
        return [
            DepthUpdate(
                symbol=sym,
                first_id=p.U,
                last_id=p.u,
                bids=bids,
                asks=asks,
                ts=self._ts(p.E, recv_ts),
                prev_last_id=p.pu,
            )
        ]

    def _account(self, p: AccountPositionJson, recv_ts: int | None) -> list[Any]:
        balances = [(entry.a, _num(entry.f), _num(entry.l)) for entry in p.B]
        self.stats.account_position += 1
        ts = self._ts(p.E, recv_ts)
        return [
            BalanceUpdate(asset=asset, free=free, locked=locked, ts=ts)
            for asset, free, locked in balances
        ]

    def _execution_report(self, p: ExecutionReportJson, recv_ts: int | None) -> list[Any]:
        status = ORDER_STATUS.get(p.X)
        side = SIDES.get(p.S)
        if status is None or side is None:
            raise MalformedMessage(f"executionReport with status {p.X!r} side {p.S!r}")
        price, qty, cum_qty, last_qty, last_price = (
            _num(p.p),
            _num(p.q),
            _num(p.z),
            _num(p.l),
            _num(p.L),
        )
        fee = _num(p.n) if p.n is not None else Decimal(0)
        self.stats.execution_report += 1
        sym = self._symbols.get(p.s)
        if sym is None:
            self._unrouted(p.s)
            return []
        client_id = p.C if p.X == "CANCELED" and p.C else p.c
        venue_ms = p.E if p.E is not None else p.T
        ts = self._ts(venue_ms, recv_ts)
        return [
            OrderUpdate(
                symbol=sym,
                client_id=client_id,
                side=side,
                price=price,
                qty=qty,
                status=status,
                cum_qty=cum_qty,
                last_qty=last_qty,
                last_price=last_price,
                fee=fee,
                fee_asset=p.N or "",
                trade_id=None if p.t is None or p.t < 0 else p.t,
                order_id=str(p.i),
                reason="" if p.r in (None, "NONE") else p.r,
                maker=p.m,
                ts=ts,
            )
        ]
