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
dispatched by sniffing the stream name from the bytes and decoded in ONE typed msgspec pass;
anything else goes through a generic envelope (``msgspec.Raw`` for the payload) and a second
typed pass. Prices and quantities must be Binance's decimal strings (``"61837.63000000"``):
a JSON number, a sign, an exponent, or a magnitude beyond 1e±30 makes the message malformed.

The ``encode_*`` helpers produce Binance spot JSON (decimal strings, spot field names) for the
fixture generator and the Binance-compatible venue server; they round-trip through
:class:`StreamDecoder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec

from mm_trio.domain.model import (
    BalanceUpdate,
    Event,
    OrderStatus,
    OrderUpdate,
    Quote,
    Side,
    Trade,
    native_symbol,
)

__all__ = [
    "DecodeStats",
    "DepthUpdate",
    "StreamDecoder",
    "encode_account_position",
    "encode_book_ticker",
    "encode_depth_update",
    "encode_execution_report",
    "encode_trade",
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


# --------------------------------------------------------------------------- wire structs

# Prices and quantities are decoded as strings, so that msgspec refuses a JSON number there
# (it would accept one for a Decimal field), then checked and converted by _num.
Num = str
WireLevel = tuple[Num, Num]


class _BookTicker(msgspec.Struct):
    s: str
    b: Num
    B: Num
    a: Num
    A: Num
    u: int = 0
    E: int | None = None  # futures only
    T: int | None = None  # futures only


class _Trade(msgspec.Struct):
    s: str
    p: Num
    q: Num
    t: int
    m: bool
    E: int | None = None
    T: int | None = None


class _AggTrade(msgspec.Struct):
    s: str
    p: Num
    q: Num
    a: int
    m: bool
    E: int | None = None
    T: int | None = None


class _Depth(msgspec.Struct):
    s: str
    U: int
    u: int
    b: list[WireLevel]
    a: list[WireLevel]
    E: int | None = None
    pu: int | None = None


class _DepthSkip(msgspec.Struct):
    """Validates a depth message without materialising its levels."""

    s: str


class _ExecutionReport(msgspec.Struct):
    s: str
    c: str
    S: str
    p: Num
    q: Num
    X: str
    i: int | str
    z: Num = "0"
    l: Num = "0"  # noqa: E741
    L: Num = "0"
    n: Num | None = None
    N: str | None = None
    t: int | None = None
    C: str | None = None
    r: str | None = None
    m: bool = False
    E: int | None = None
    T: int | None = None


class _BalanceEntry(msgspec.Struct):
    a: str
    f: Num
    l: Num  # noqa: E741


class _AccountPosition(msgspec.Struct):
    B: list[_BalanceEntry]
    E: int | None = None


class _Combined(msgspec.Struct):
    """Generic envelope: combined stream, WS-API event, control reply or raw payload."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    event: msgspec.Raw = msgspec.Raw()
    e: str | None = None
    id: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    status: int | None = None
    lastUpdateId: int | None = None  # REST depth snapshot (hftbacktest records one)
    A: msgspec.Raw = msgspec.Raw()  # spot raw bookTicker has no "e"


class _EventType(msgspec.Struct):
    e: str | None = None
    A: msgspec.Raw = msgspec.Raw()


def _combined_type(payload: type) -> type:
    return msgspec.defstruct(f"_Combined{payload.__name__}", [("data", payload)])


_PAYLOAD_TYPES: dict[str, type] = {
    "bookTicker": _BookTicker,
    "trade": _Trade,
    "aggTrade": _AggTrade,
    "depth": _Depth,
    "depth_skip": _DepthSkip,
    "executionReport": _ExecutionReport,
    "account": _AccountPosition,
}
_PAYLOAD_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(t) for k, t in _PAYLOAD_TYPES.items()
}
_COMBINED_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(_combined_type(t)) for k, t in _PAYLOAD_TYPES.items()
}
_ENVELOPE = msgspec.json.Decoder(_Combined)
_EVENT_TYPE = msgspec.json.Decoder(_EventType)

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
ORDER_STATUS: dict[str, OrderStatus] = {
    "PENDING_NEW": "PENDING_NEW",
    "NEW": "NEW",
    "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED",
    "CANCELED": "CANCELED",
    "PENDING_CANCEL": "NEW",  # unused by Binance; the order is still live
    "REJECTED": "REJECTED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",  # self-trade prevention
}
SIDES: dict[str, Side] = {"BUY": "BUY", "SELL": "SELL"}
_PREFIX = b'{"stream":"'
_PREFIX_LEN = len(_PREFIX)


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


def _num(text: str) -> Decimal:
    """A Binance decimal string (ASCII digits, at most one point) as a Decimal."""
    if not (text.isascii() and text.replace(".", "", 1).isdigit()):
        raise MalformedMessage(f"bad number {text[:40]!r}")
    value = Decimal(text)
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        raise MalformedMessage(f"number out of range {text[:40]!r}")
    return value


def _level(level: tuple[str, str]) -> Level:
    return _num(level[0]), _num(level[1])


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
        self.decode_depth = decode_depth
        self._use_recv = clock == "recv"
        self.stats = DecodeStats()

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
            if isinstance(raw, str):
                raw = raw.encode()
            elif not isinstance(raw, bytes):
                raw = bytes(raw)
            kind: str | None = None
            payload: Any = None
            if raw.startswith(_PREFIX):
                end = raw.find(b'"', _PREFIX_LEN)
                if end > 0:
                    try:
                        kind = _stream_kind(raw[_PREFIX_LEN:end].decode())
                    except UnicodeDecodeError:
                        kind = None
                    if kind is not None:
                        if kind == "depth" and not self.decode_depth:
                            kind = "depth_skip"
                        payload = _COMBINED_DECODERS[kind].decode(raw).data
            if payload is None:
                kind, payload = self._decode_generic(raw)
                if kind is None:
                    return []
            events = self._convert(kind, payload, recv_ts)
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
        if kind == "depth" and not self.decode_depth:
            kind = "depth_skip"
        return kind, _PAYLOAD_DECODERS[kind].decode(body)

    def _ts(self, venue_ms: int | None, recv_ts: int | None) -> int:
        if self._use_recv and recv_ts is not None:
            return recv_ts
        if venue_ms is not None:
            return venue_ms * _MS
        return recv_ts if recv_ts is not None else 0

    def _route(self, native: str) -> str | None:
        unified = self._symbols.get(native)
        if unified is None:
            stats = self.stats
            stats.unrouted += 1
            name = native[:_MAX_NAME_LEN]
            names = stats.unrouted_names
            if name in names:
                names[name] += 1
            elif len(names) < _MAX_UNKNOWN_NAMES:
                names[name] = 1
        return unified

    def _convert(self, kind: str, p: Any, recv_ts: int | None) -> list[Any]:
        stats = self.stats
        if kind == "bookTicker":
            bid, bid_qty, ask, ask_qty = _num(p.b), _num(p.B), _num(p.a), _num(p.A)
            stats.book_ticker += 1
            sym = self._route(p.s)
            if sym is None:
                return []
            return [
                Quote(
                    symbol=sym,
                    bid=bid,
                    bid_qty=bid_qty,
                    ask=ask,
                    ask_qty=ask_qty,
                    ts=self._ts(p.E, recv_ts),
                )
            ]
        if kind == "trade" or kind == "aggTrade":
            price, qty = _num(p.p), _num(p.q)
            if kind == "trade":
                stats.trade += 1
                trade_id = p.t
            else:
                stats.agg_trade += 1
                trade_id = p.a
            sym = self._route(p.s)
            if sym is None:
                return []
            return [
                Trade(
                    symbol=sym,
                    price=price,
                    qty=qty,
                    buyer_maker=p.m,
                    trade_id=trade_id,
                    ts=self._ts(p.E if p.E is not None else p.T, recv_ts),
                )
            ]
        if kind == "depth_skip":
            stats.depth += 1
            stats.depth_skipped += 1
            self._route(p.s)  # counted if unrouted
            return []
        if kind == "depth":
            bids = tuple(map(_level, p.b))
            asks = tuple(map(_level, p.a))
            stats.depth += 1
            sym = self._route(p.s)
            if sym is None:
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
        if kind == "executionReport":
            return self._execution_report(p, recv_ts)
        if kind == "account":
            balances = [(entry.a, _num(entry.f), _num(entry.l)) for entry in p.B]
            stats.account_position += 1
            ts = self._ts(p.E, recv_ts)
            return [
                BalanceUpdate(asset=asset, free=free, locked=locked, ts=ts)
                for asset, free, locked in balances
            ]
        raise MalformedMessage(f"no converter for {kind}")  # pragma: no cover

    def _execution_report(self, p: _ExecutionReport, recv_ts: int | None) -> list[Any]:
        status = ORDER_STATUS.get(p.X)
        side = SIDES.get(p.S)
        if status is None or side is None:
            raise MalformedMessage(f"executionReport with status {p.X!r} side {p.S!r}")
        price, qty, cum_qty, last_qty, last_price = (
            _num(p.p), _num(p.q), _num(p.z), _num(p.l), _num(p.L))
        fee = _num(p.n) if p.n is not None else Decimal(0)
        self.stats.execution_report += 1
        sym = self._route(p.s)
        if sym is None:
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


# --------------------------------------------------------------------------- encoding

_ENCODER = msgspec.json.Encoder()


def _dec(value: Decimal) -> str:
    """Binance-style decimal string: fixed point, at least 8 decimals, no exponent."""
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and exp >= -8:
        return f"{value:.8f}"
    return format(value, "f")


def _stream_name(native: str, suffix: str) -> str:
    return f"{native.lower()}@{suffix}"


def _wrap(native: str, suffix: str, data: dict[str, Any], combined: bool) -> bytes:
    if combined:
        return _ENCODER.encode({"stream": _stream_name(native, suffix), "data": data})
    return _ENCODER.encode(data)


def encode_book_ticker(
    quote: Quote, *, update_id: int = 0, native: str | None = None, combined: bool = True
) -> bytes:
    """Spot ``bookTicker`` JSON (no event time: the decoder stamps it with the receive time)."""
    nat = native or native_symbol(quote.symbol)
    data = {
        "u": update_id,
        "s": nat,
        "b": _dec(quote.bid),
        "B": _dec(quote.bid_qty),
        "a": _dec(quote.ask),
        "A": _dec(quote.ask_qty),
    }
    return _wrap(nat, "bookTicker", data, combined)


def encode_trade(
    trade: Trade,
    *,
    native: str | None = None,
    combined: bool = True,
    trade_time_ms: int | None = None,
) -> bytes:
    """Spot ``trade`` JSON; ``E`` is ``trade.ts`` in ms, ``T`` defaults to the same."""
    nat = native or native_symbol(trade.symbol)
    event_ms = trade.ts // _MS
    data = {
        "e": "trade",
        "E": event_ms,
        "s": nat,
        "t": trade.trade_id,
        "p": _dec(trade.price),
        "q": _dec(trade.qty),
        "T": event_ms if trade_time_ms is None else trade_time_ms,
        "m": trade.buyer_maker,
        "M": True,
    }
    return _wrap(nat, "trade", data, combined)


def encode_depth_update(
    depth: DepthUpdate,
    *,
    native: str | None = None,
    combined: bool = True,
    speed: str = "100ms",
) -> bytes:
    """Spot ``depthUpdate`` JSON on stream ``<symbol>@depth@<speed>`` (``speed=""``: 1000ms)."""
    nat = native or native_symbol(depth.symbol)
    data = {
        "e": "depthUpdate",
        "E": depth.ts // _MS,
        "s": nat,
        "U": depth.first_id,
        "u": depth.last_id,
        "b": [[_dec(p), _dec(q)] for p, q in depth.bids],
        "a": [[_dec(p), _dec(q)] for p, q in depth.asks],
    }
    return _wrap(nat, f"depth@{speed}" if speed else "depth", data, combined)


def encode_execution_report(
    update: OrderUpdate,
    *,
    native: str | None = None,
    order_type: str = "LIMIT_MAKER",
    cancel_client_id: str | None = None,
    ws_api_subscription: int | None = None,
) -> bytes:
    """Spot ``executionReport`` JSON (``E``/``T`` = ``update.ts`` in ms).

    For a CANCELED report the original client id goes to ``C`` and ``c`` carries the cancel
    request's id (``cancel_client_id``, defaulting to the original), as Binance does. With
    ``ws_api_subscription`` the payload is wrapped as a WebSocket-API event.
    """
    nat = native or native_symbol(update.symbol)
    canceled = update.status == "CANCELED"
    ms = update.ts // _MS
    exec_type = {
        "PARTIALLY_FILLED": "TRADE",
        "FILLED": "TRADE",
        "CANCELED": "CANCELED",
        "REJECTED": "REJECTED",
        "EXPIRED": "EXPIRED",
    }.get(update.status, "NEW")
    quote_qty = update.cum_qty * update.last_price if update.cum_qty else Decimal(0)
    data = {
        "e": "executionReport",
        "E": ms,
        "s": nat,
        "c": (cancel_client_id or update.client_id) if canceled else update.client_id,
        "S": update.side,
        "o": order_type,
        "f": "GTC",
        "q": _dec(update.qty),
        "p": _dec(update.price),
        "P": _dec(Decimal(0)),
        "F": _dec(Decimal(0)),
        "g": -1,
        "C": update.client_id if canceled else "",
        "x": exec_type,
        "X": update.status,
        "r": update.reason or "NONE",
        "i": int(update.order_id) if update.order_id.isdigit() else update.order_id,
        "l": _dec(update.last_qty),
        "z": _dec(update.cum_qty),
        "L": _dec(update.last_price),
        "n": _dec(update.fee),
        "N": update.fee_asset or None,
        "T": ms,
        "t": -1 if update.trade_id is None else update.trade_id,
        "I": 0,
        "w": update.status in ("NEW", "PARTIALLY_FILLED"),
        "m": update.maker,
        "M": False,
        "O": ms,
        "Z": _dec(quote_qty),
        "Y": _dec(update.last_qty * update.last_price),
        "Q": _dec(Decimal(0)),
        "W": ms,
        "V": "EXPIRE_MAKER",
    }
    if ws_api_subscription is not None:
        return _ENCODER.encode({"subscriptionId": ws_api_subscription, "event": data})
    return _ENCODER.encode(data)


def encode_account_position(
    balances: Iterable[BalanceUpdate],
    *,
    ts: int | None = None,
    ws_api_subscription: int | None = None,
) -> bytes:
    """Spot ``outboundAccountPosition`` JSON; ``E``/``u`` = ``ts`` (default: first entry's)."""
    items = list(balances)
    when = ts if ts is not None else (items[0].ts if items else 0)
    ms = when // _MS
    data = {
        "e": "outboundAccountPosition",
        "E": ms,
        "u": ms,
        "B": [{"a": b.asset, "f": _dec(b.free), "l": _dec(b.locked)} for b in items],
    }
    if ws_api_subscription is not None:
        return _ENCODER.encode({"subscriptionId": ws_api_subscription, "event": data})
    return _ENCODER.encode(data)
