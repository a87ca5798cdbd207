"""The venue behind the Binance-compatible API: accounts, order ledger, market data hub.

Accounts
--------
Each account (API key) has its own :class:`~mm_trio.exchange.sim.SimulatedExchange` — its own
:class:`~mm_trio.exchange.sim.MatchingEngine`, i.e. its own resting orders and balances. The
FIRST account's SimulatedExchange runs the venue clock and the seeded synthetic feed; every
market event it produces is published to the market streams and passed through the other
accounts' engines, so all accounts see (and fill against) the same market.

:class:`VenueSim` subclasses SimulatedExchange and replaces its event channel with synchronous
callbacks (``_post`` / ``_process`` are overridden): the engine's events for an order are
turned into ledger updates and ``executionReport`` s before ``place`` returns, so a REST
``FULL`` response carries its fills and the user-data stream is in engine order.

What the engine does not know and the ledger adds: Binance order ids (ints), order type and
time in force, creation/update times, cumulative quote quantity, trades (``myTrades``), and
``EXPIRED`` for MARKET/IOC remainders (the venue places them as limit orders at the touch and
cancels what did not fill at once).

Market data
-----------
The feed gives top-of-book quotes and trades. :class:`SymbolBook` derives a synthetic order
book from each quote (``depth_levels`` per side one tick apart; the top level is the quote,
deeper levels have a deterministic size per price) and numbers every change with an update id,
so the REST depth ``lastUpdateId`` and the depth stream ``U``/``u`` follow Binance's rules for
maintaining a local book.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs
import msgspec
import trio

from mm_trio.apps.paper.auth import AdminToken, Credentials
from mm_trio.apps.paper.config import AccountConfig, VenueServerConfig
from mm_trio.apps.paper.faults import Faults
from mm_trio.apps.paper.ratelimit import RateLimiter
from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    ZERO,
    BalanceUpdate,
    Event,
    OrderRequest,
    OrderUpdate,
    Quote,
    SymbolSpec,
    Trade,
    ceil_to,
    floor_to,
    native_symbol,
)
from mm_trio.exchange.base import (
    DuplicateOrder,
    FilterRejected,
    InsufficientBalance,
    OutcomeUnknown,
    TooManyOrders,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.decode import DepthUpdate
from mm_trio.exchange.binance.encode import (
    encode_account_position,
    encode_book_ticker,
    encode_depth_update,
    encode_execution_report,
    encode_trade,
)
from mm_trio.exchange.sim import MatchingEngine, SimulatedExchange

log = logging.getLogger(__name__)

_JSON = msgspec.json.Encoder(decimal_format="string")
_DECODE = msgspec.json.Decoder()
_DEC_RE_TEXT = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_SYMBOL_RE_TEXT = "^[A-Z0-9-_.]{1,20}$"
_SYMBOL_RE = re.compile(r"[A-Z0-9\-_.]{1,20}")
_SYMBOLS_RE_TEXT = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_CID_RE_TEXT = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CID_CHARS = frozenset(string.ascii_letters + string.digits + "._:/-")
_ID_ALPHABET = string.ascii_letters + string.digits
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
MARKET_PROTECTION = Decimal("0.005")
"""A MARKET order goes to the engine as a limit this far through the touch it was priced at,
so a quote moving a few ticks during the request latency does not leave it unfilled (it
still fills at the engine's book price, never at this limit)."""
_UNSUPPORTED_TYPES = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
MARKET_VALUE_CEILING = Decimal("1e30")
"""Largest price or size a market event may carry into the books. Far above any real market
(and every symbol's own max price / qty), far below where the books' arithmetic (price / tick,
price * qty) overflows the Decimal context; an event beyond it is dropped before matching."""
_LOGGED_REJECTS = 10  # dropped market events logged one by one; later ones only counted


def json_bytes(obj: Any) -> bytes:
    return _JSON.encode(obj)


def fmt(value: Decimal) -> str:
    """Binance decimal string: fixed point with at least 8 decimals."""
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and exp >= -8:
        return f"{value:.8f}"
    return format(value, "f")


def random_client_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


class VenueError(Exception):
    """A Binance error reply: HTTP ``status`` and body ``{"code": code, "msg": msg}``."""

    def __init__(self, code: int, msg: str, status: int = 400,
                 retry_after: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> VenueError:
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                      "malformed.")


def illegal(name: str, legal: str) -> VenueError:
    return VenueError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                      f"'{legal}'.")


def not_required(name: str) -> VenueError:
    return VenueError(-1106, f"Parameter '{name}' sent when not required.")


def param_decimal(params: Mapping[str, str], name: str, *, required: bool = False
                  ) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    head, _, tail = raw.partition(".")
    if (not head.isdigit() or len(head) > 20 or not head.isascii()
            or ("." in raw and (not tail.isdigit() or len(tail) > 20 or not tail.isascii()))):
        raise illegal(name, _DEC_RE_TEXT)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise illegal(name, _DEC_RE_TEXT) from None


def param_int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise illegal(name, "^[0-9]{1,20}$")
    return int(raw)


def param_client_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 36 or not set(raw) <= _CID_CHARS:
        raise illegal(name, _CID_RE_TEXT)
    return raw


# --------------------------------------------------------------------------- order ledger


@attrs.define(slots=True)
class OrderRecord:
    """Binance's view of one order (the engine keeps only price/qty/fills)."""

    symbol: str  # unified
    native: str
    order_id: int
    client_id: str
    side: str
    type: str
    tif: str
    price: Decimal  # 0 for MARKET
    orig_qty: Decimal
    time_ms: int
    orig_quote_qty: Decimal = ZERO
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    expire_on_cancel: bool = False  # MARKET / IOC remainder: report EXPIRED, not CANCELED
    cancel_client_id: str | None = None
    fills: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def ack(self) -> dict[str, Any]:
        return {"symbol": self.native, "orderId": self.order_id, "orderListId": -1,
                "clientOrderId": self.client_id, "transactTime": self.time_ms}

    def result(self) -> dict[str, Any]:
        out = self.ack()
        out.update({
            "price": fmt(self.price), "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed), "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote), "status": self.status,
            "timeInForce": self.tif, "type": self.type, "side": self.side,
            "workingTime": self.time_ms, "selfTradePreventionMode": "NONE",
        })
        return out

    def full(self) -> dict[str, Any]:
        out = self.result()
        out["fills"] = list(self.fills)
        return out

    def query(self) -> dict[str, Any]:
        return {
            "symbol": self.native, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_id, "price": fmt(self.price),
            "origQty": fmt(self.orig_qty), "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.cum_quote), "status": self.status,
            "timeInForce": self.tif, "type": self.type, "side": self.side,
            "stopPrice": fmt(ZERO), "icebergQty": fmt(ZERO), "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms, "isWorking": True,
            "workingTime": self.time_ms, "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "NONE",
        }

    def cancel_reply(self) -> dict[str, Any]:
        return {
            "symbol": self.native, "origClientOrderId": self.client_id,
            "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.cancel_client_id or self.client_id,
            "transactTime": self.update_ms or self.time_ms, "price": fmt(self.price),
            "origQty": fmt(self.orig_qty), "executedQty": fmt(self.executed),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote), "status": self.status,
            "timeInForce": self.tif, "type": self.type, "side": self.side,
            "selfTradePreventionMode": "NONE",
        }


def market_event_error(ev: Quote | Trade, specs: Mapping[str, SymbolSpec]) -> str | None:
    """Why a market event must not reach the books (None if it may): an unlisted symbol, or
    a price that is not finite and in (0, :data:`MARKET_VALUE_CEILING`], or a size that is
    not finite and in [0, ceiling]. Pure; the admin endpoint's own checks are stricter."""
    if ev.symbol not in specs:
        return f"{ev.symbol}: not a listed symbol"
    if type(ev) is Quote:
        prices = (("bid", ev.bid), ("ask", ev.ask))
        sizes = (("bid_qty", ev.bid_qty), ("ask_qty", ev.ask_qty))
    else:
        assert type(ev) is Trade
        prices = (("price", ev.price),)
        sizes = (("qty", ev.qty),)
    for name, value in prices:
        if not value.is_finite() or not ZERO < value <= MARKET_VALUE_CEILING:
            return f"{ev.symbol} {name} {value}: not a finite price in (0, 1e30]"
    for name, value in sizes:
        if not value.is_finite() or not ZERO <= value <= MARKET_VALUE_CEILING:
            return f"{ev.symbol} {name} {value}: not a finite size in [0, 1e30]"
    return None


UserListener = Callable[[bytes], None]
"""Receives each user-data event payload (unwrapped ``executionReport`` etc. JSON)."""


class VenueSim(SimulatedExchange):
    """A SimulatedExchange whose events go to callbacks synchronously (no event channel).

    Overrides the private ``_post`` / ``_process`` of SimulatedExchange (a public hook there
    would be cleaner; see the venue package README in the final report).
    """

    def __init__(self, config: SimVenueConfig, *, epoch_ns: int,
                 on_account: Callable[[Sequence[Event]], None],
                 on_market: Callable[[Event], None] | None = None,
                 feed: Any = None) -> None:
        super().__init__(config, epoch_ns=epoch_ns, buffer_size=16, feed=feed)
        self._on_account = on_account
        self._on_market = on_market
        self.rejected_market_events = 0  # dropped by market_event_error, never matched

    def _post(self, events: Sequence[Event]) -> None:
        if events:
            self._on_account(events)

    def _process(self, events: Iterable[Event]) -> None:
        """Each market event: checked, matched, its fills into the ledger, then published.

        The ledger takes the fills straight after the engine made them, before anything
        else (books, streams, other accounts) can fail: the engine and the ledger never
        disagree about an order.
        """
        engine = self.engine
        specs = engine.specs
        on_market = self._on_market
        n = 0
        for ev in events:
            n += 1
            kind = type(ev)
            if kind is not Quote and kind is not Trade:
                continue
            why = market_event_error(ev, specs)  # type: ignore[arg-type]
            if why is not None:
                self.rejected_market_events += 1
                if self.rejected_market_events <= _LOGGED_REJECTS:
                    log.warning("market event dropped before matching: %s", why)
                continue
            fills = engine.on_quote(ev) if kind is Quote else engine.on_trade(ev)  # type: ignore[arg-type]
            if fills:
                self._on_account(fills)
            if on_market is not None:
                on_market(ev)
        self.market_events += n


class Account:
    """One API key: its SimulatedExchange, order ledger and user-data listeners."""

    def __init__(self, venue: Venue, config: AccountConfig, sim_config: SimVenueConfig, *,
                 primary: bool, feed: Any = None,
                 extra_specs: dict[str, tuple[SymbolSpec, Decimal]] | None = None) -> None:
        self.venue = venue
        self.api_key = config.api_key
        self.credentials = Credentials(config)
        if config.balances is not None:
            sim_config = attrs.evolve(sim_config, balances=dict(config.balances))
        self.sim = VenueSim(sim_config, epoch_ns=venue.epoch_ns, on_account=self.on_events,
                            on_market=venue.on_market if primary else None,
                            feed=feed if primary else None)
        self.engine: MatchingEngine = self.sim.engine
        for spec, price in (extra_specs or {}).values():  # recorded symbols
            self.engine.add_symbol(spec, price, replace=True)
        self.orders: OrderedDict[int, OrderRecord] = OrderedDict()
        self.by_cid: dict[tuple[str, str], int] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.pending: dict[tuple[str, str], OrderRecord] = {}
        self.listeners: set[UserListener] = set()
        self.last_update_ms = 0

    def __repr__(self) -> str:
        return f"Account(api_key={self.api_key!r})"

    # ------------------------------------------------------------------ events
    def on_events(self, events: Sequence[Event]) -> None:
        """Engine events (synchronously, in engine order) -> ledger and user-data stream."""
        balances: dict[str, BalanceUpdate] = {}
        for ev in events:
            if type(ev) is OrderUpdate:
                if balances:
                    self._emit_balances(balances)
                    balances = {}
                self._on_order(ev)
            elif type(ev) is BalanceUpdate:
                balances[ev.asset] = ev
        if balances:
            self._emit_balances(balances)

    def _emit_balances(self, balances: dict[str, BalanceUpdate]) -> None:
        items = list(balances.values())
        self.last_update_ms = items[-1].ts // 1_000_000
        if self.listeners:
            self._emit(encode_account_position(items))

    def _emit(self, payload: bytes) -> None:
        for listener in list(self.listeners):
            listener(payload)

    def _on_order(self, u: OrderUpdate) -> None:
        ms = u.ts // 1_000_000
        oid = int(u.order_id)
        rec = self.orders.get(oid)
        key = (u.symbol, u.client_id)
        if rec is None:
            rec = self.pending.pop(key, None)
            if rec is None:  # placed around the venue API (e.g. a test poking the engine)
                rec = OrderRecord(symbol=u.symbol, native=native_symbol(u.symbol), order_id=oid,
                                  client_id=u.client_id, side=u.side, type="LIMIT", tif="GTC",
                                  price=u.price, orig_qty=u.qty, time_ms=ms)
            rec.order_id = oid
            rec.time_ms = ms
            self.orders[oid] = rec
            self.by_cid[key] = oid
            self._trim()
        rec.executed = u.cum_qty
        rec.update_ms = ms
        status = u.status
        if status == "CANCELED" and rec.expire_on_cancel:
            status = "EXPIRED"
        rec.status = status
        if u.last_qty > 0:
            quote_qty = u.last_qty * u.last_price
            rec.cum_quote += quote_qty
            trade_id = u.trade_id if u.trade_id is not None else 0
            rec.fills.append({"price": fmt(u.last_price), "qty": fmt(u.last_qty),
                              "commission": fmt(u.fee), "commissionAsset": u.fee_asset,
                              "tradeId": trade_id})
            self.trades.setdefault(u.symbol, []).append({
                "symbol": rec.native, "id": trade_id, "orderId": oid, "orderListId": -1,
                "price": fmt(u.last_price), "qty": fmt(u.last_qty), "quoteQty": fmt(quote_qty),
                "commission": fmt(u.fee), "commissionAsset": u.fee_asset, "time": ms,
                "isBuyer": rec.side == "BUY", "isMaker": u.maker, "isBestMatch": True,
            })
        if self.listeners:
            self._emit(self._execution_report(rec, u, status))

    def _execution_report(self, rec: OrderRecord, u: OrderUpdate, status: str) -> bytes:
        if status != u.status:
            u = msgspec.structs.replace(u, status=status)  # type: ignore[arg-type]
        raw = encode_execution_report(u, native=rec.native, order_type=rec.type,
                                      cancel_client_id=rec.cancel_client_id)
        data = _DECODE.decode(raw)
        data["f"] = rec.tif
        data["p"] = fmt(rec.price)
        data["q"] = fmt(rec.orig_qty)
        data["Z"] = fmt(rec.cum_quote)
        data["O"] = rec.time_ms
        data["W"] = rec.time_ms
        data["Q"] = fmt(rec.orig_quote_qty)
        data["V"] = "NONE"
        if status in ("CANCELED", "EXPIRED"):
            data["x"] = status
        return json_bytes(data)

    def _trim(self) -> None:
        limit = self.venue.config.max_orders_kept
        orders = self.orders
        while len(orders) > limit:
            oid, rec = next(iter(orders.items()))
            if rec.is_open:
                orders.move_to_end(oid)
                break
            del orders[oid]
            if self.by_cid.get((rec.symbol, rec.client_id)) == oid:
                del self.by_cid[(rec.symbol, rec.client_id)]

    # ------------------------------------------------------------------ lookups
    def find(self, symbol: str, order_id: int | None, client_id: str | None
             ) -> OrderRecord | None:
        if order_id is not None:
            rec = self.orders.get(order_id)
            if rec is None or rec.symbol != symbol:
                return None
            if client_id is not None and rec.client_id != client_id:
                return None
            return rec
        if client_id is not None:
            oid = self.by_cid.get((symbol, client_id))
            return None if oid is None else self.orders.get(oid)
        return None

    def open_records(self, symbol: str | None) -> list[OrderRecord]:
        out: list[OrderRecord] = []
        for o in self.engine.open_orders(symbol):
            oid = self.by_cid.get((o.symbol, o.client_id))
            rec = None if oid is None else self.orders.get(oid)
            if rec is not None and rec.is_open:
                out.append(rec)
        return out


# --------------------------------------------------------------------------- market data


def _level_factor(symbol: str, price_units: int) -> int:
    digest = hashlib.blake2b(f"{symbol}/{price_units}".encode(), digest_size=2).digest()
    return 1 + int.from_bytes(digest, "big") % 8


class SymbolBook:
    """Synthetic order book of one symbol, built from its quotes, with Binance update ids."""

    def __init__(self, spec: SymbolSpec, levels: int) -> None:
        self.spec = spec
        self.native = native_symbol(spec.symbol)
        self.levels = levels
        self.update_id = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last_quote: Quote | None = None
        self.base_steps = 0
        # pending depth-diff batches per speed: first update id and changed prices
        self.pending: dict[str, tuple[int, set[Decimal], set[Decimal]] | None] = {
            "100ms": None, "1000ms": None}

    def _side(self, top: Decimal, top_qty: Decimal, sign: int) -> dict[Decimal, Decimal]:
        tick, step = self.spec.tick_size, self.spec.step_size
        out = {top: top_qty}
        for i in range(1, self.levels):
            price = top + sign * i * tick
            if price <= 0:
                break
            units = int(price / tick)
            out[price] = step * max(1, (self.base_steps * _level_factor(self.native, units)) // 4)
        return out

    def apply_quote(self, q: Quote) -> int:
        if self.base_steps == 0:
            self.base_steps = max(1, int(q.bid_qty / self.spec.step_size))
        bids = self._side(q.bid, q.bid_qty, -1)
        asks = self._side(q.ask, q.ask_qty, 1)
        changed_b = {p for p in bids.keys() | self.bids.keys() if bids.get(p) != self.bids.get(p)}
        changed_a = {p for p in asks.keys() | self.asks.keys() if asks.get(p) != self.asks.get(p)}
        self.bids, self.asks = bids, asks
        self.last_quote = q
        self.update_id += 1
        for speed, batch in self.pending.items():
            if batch is None:
                self.pending[speed] = (self.update_id, changed_b, changed_a)
            else:
                batch[1].update(changed_b)
                batch[2].update(changed_a)
        return self.update_id

    def flush(self, speed: str, ts: int) -> DepthUpdate | None:
        batch = self.pending[speed]
        if batch is None:
            return None
        self.pending[speed] = None
        first, cb, ca = batch
        return DepthUpdate(
            symbol=self.spec.symbol, first_id=first, last_id=self.update_id,
            bids=tuple((p, self.bids.get(p, ZERO)) for p in sorted(cb, reverse=True)),
            asks=tuple((p, self.asks.get(p, ZERO)) for p in sorted(ca)), ts=ts)

    def snapshot(self, limit: int) -> dict[str, Any]:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {"lastUpdateId": self.update_id,
                "bids": [[fmt(p), fmt(q)] for p, q in bids],
                "asks": [[fmt(p), fmt(q)] for p, q in asks]}


StreamSink = Callable[[str, bytes], None]
"""A stream subscriber: called with (canonical stream name, raw payload JSON)."""

_DEPTH_PARTIAL = (5, 10, 20)


def parse_stream(name: str, natives: Mapping[str, str]) -> str | None:
    """Canonical form of a market stream name, or None if it is not one we serve.

    Accepted: ``<symbol>@bookTicker``, ``@trade``, ``@aggTrade``, ``@depth``, ``@depth@100ms``,
    ``@depth@1000ms`` (= ``@depth``), ``@depth<5|10|20>[@100ms|@1000ms]``. Symbols of any
    case; unknown symbols are accepted (and never produce data), as on Binance.
    """
    if not isinstance(name, str) or "@" not in name or len(name) > 100:
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
    if low.startswith("depth"):
        levels = low[5:]
        if levels and (not levels.isdigit() or int(levels) not in _DEPTH_PARTIAL):
            return None
        if speed in ("", "1000ms"):
            return f"{sym}@depth{levels}"
        if speed == "100ms":
            return f"{sym}@depth{levels}@100ms"
    return None


class MarketHub:
    """Books per symbol and the subscribers of every market stream."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.books: dict[str, SymbolBook] = {}  # unified -> book
        self.subs: dict[str, set[StreamSink]] = {}
        self._agg_ids: dict[str, int] = {}
        self._quoted: dict[str, trio.Event] = {}

    async def wait_quote(self, symbol: str) -> None:
        """Wait until ``symbol`` has had a quote (market data is flowing)."""
        if self.book(symbol).last_quote is None:
            await self._quoted.setdefault(symbol, trio.Event()).wait()

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            spec = self.venue.engine_specs[symbol]
            book = self.books[symbol] = SymbolBook(spec, self.venue.config.depth_levels)
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
            book = self.book(ev.symbol)
            u = book.apply_quote(ev)
            if u == 1 and ev.symbol in self._quoted:
                self._quoted.pop(ev.symbol).set()
            name = f"{book.native.lower()}@bookTicker"
            if name in self.subs:
                self._publish(name, encode_book_ticker(ev, update_id=u, native=book.native,
                                                       combined=False))
        elif type(ev) is Trade:
            native = native_symbol(ev.symbol)
            low = native.lower()
            name = f"{low}@trade"
            if name in self.subs:
                self._publish(name, encode_trade(ev, native=native, combined=False))
            agg = self._agg_ids[ev.symbol] = self._agg_ids.get(ev.symbol, 0) + 1
            name = f"{low}@aggTrade"
            if name in self.subs:
                ms = ev.ts // 1_000_000
                self._publish(name, json_bytes({
                    "e": "aggTrade", "E": ms, "s": native, "a": agg, "p": fmt(ev.price),
                    "q": fmt(ev.qty), "f": ev.trade_id, "l": ev.trade_id, "T": ms,
                    "m": ev.buyer_maker, "M": True}))

    def flush_depth(self, speed: str, ts: int) -> None:
        suffix = "@100ms" if speed == "100ms" else ""
        for book in self.books.values():
            low = book.native.lower()
            diff = book.flush(speed, ts)
            name = f"{low}@depth{suffix}"
            if diff is not None and name in self.subs:
                self._publish(name, encode_depth_update(diff, native=book.native,
                                                        combined=False))
            for n in _DEPTH_PARTIAL:
                pname = f"{low}@depth{n}{suffix}"
                if pname in self.subs:
                    self._publish(pname, json_bytes(book.snapshot(n)))


# --------------------------------------------------------------------------- the venue


class Venue:
    """Accounts, market hub, rate limiter and faults; the operations both APIs call.

    Construct inside a trio run (it reads the trio clock to align venue time with the wall
    clock); run :meth:`run` in a nursery.
    """

    def __init__(self, config: VenueServerConfig) -> None:
        self.config = config
        self.epoch_ns = time.time_ns() - round(trio.current_time() * 1e9)
        self.limiter = RateLimiter(config.rate_limits)
        self.faults = Faults(config.faults)
        self.admin_token = AdminToken.resolve(config.admin_token, os.environ)
        self.hub = MarketHub(self)
        self.accounts: dict[str, Account] = {}
        feed: Any = None
        extra: dict[str, tuple[SymbolSpec, Decimal]] = {}
        self.replay_symbols: tuple[str, ...] = ()
        if config.replay:
            from mm_trio.domain.config import Config
            from mm_trio.exchange.sim.recorded import replay_market

            feed, specs, mids = replay_market([Path(p) for p in config.replay],
                                              Config(venue=config.venue), time.time_ns())
            extra = {s: (spec, mids.get(s, Decimal(1))) for s, spec in specs.items()}
            self.replay_symbols = tuple(extra)
        for i, acct_cfg in enumerate(config.accounts):
            self.accounts[acct_cfg.api_key] = Account(self, acct_cfg, config.venue,
                                                      primary=i == 0, feed=feed,
                                                      extra_specs=extra)
        self.primary = next(iter(self.accounts.values()))
        self.others = list(self.accounts.values())[1:]
        self.engine_specs: dict[str, SymbolSpec] = self.primary.engine.specs
        self.natives: dict[str, str] = {native_symbol(s): s for s in self.engine_specs}
        self.ws_scopes: set[trio.CancelScope] = set()
        self._started = trio.Event()

    # ------------------------------------------------------------------ time
    def now_ms(self) -> int:
        return self.primary.sim.now_ns() // 1_000_000

    def now_s(self) -> float:
        return self.now_ms() / 1000.0

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        symbols = self.config.market_symbols
        if symbols is None:
            symbols = self.replay_symbols if self.config.replay else tuple(self.engine_specs)
        await self.primary.sim.subscribe(list(symbols))
        async with trio.open_nursery() as nursery:
            await nursery.start(self.primary.sim.run)
            nursery.start_soon(self._depth_loop, "100ms", 0.1)
            nursery.start_soon(self._depth_loop, "1000ms", 1.0)
            self._started.set()
            task_status.started()

    async def _depth_loop(self, speed: str, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.hub.flush_depth(speed, self.primary.sim.now_ns())

    def on_market(self, ev: Event) -> None:
        """Every market event of the feed: the other accounts (engine and ledger together),
        then books and streams."""
        for acct in self.others:
            fills = acct.engine.on_event(ev)
            if fills:
                acct.on_events(fills)
        self.hub.on_market(ev)

    async def ensure_market(self, symbol: str) -> None:
        """Start market data for a listed symbol (idempotent)."""
        if symbol not in self.primary.sim.subscribed and symbol in self.engine_specs:
            await self.primary.sim.subscribe([symbol])

    def drop_websockets(self) -> int:
        scopes = list(self.ws_scopes)
        for scope in scopes:
            scope.cancel()
        self.faults.ws_drops += 1
        return len(scopes)

    # ------------------------------------------------------------------ symbols
    def symbol(self, params: Mapping[str, str], *, required: bool = True) -> str | None:
        """Unified symbol of the ``symbol`` parameter, which must be a native name exactly as
        Binance takes it (``BTCUSDT``: a ``BTC/USDT`` is refused, as Binance does)."""
        raw = params.get("symbol")
        if raw is None or raw == "":
            if required:
                raise mandatory("symbol")
            return None
        if not _SYMBOL_RE.fullmatch(raw):
            raise illegal("symbol", _SYMBOL_RE_TEXT)
        unified = self.natives.get(raw)
        if unified is None:
            raise VenueError(-1121, "Invalid symbol.")
        return unified

    def symbols_param(self, params: Mapping[str, str]) -> list[str] | None:
        raw = params.get("symbols")
        if raw is None or raw == "":
            return None
        try:
            names = _DECODE.decode(raw)
        except msgspec.DecodeError:
            raise illegal("symbols", _SYMBOLS_RE_TEXT) from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise mandatory("symbols")
        if len(set(names)) != len(names):
            raise VenueError(-1151, "Symbol is present multiple times in the list.")
        return [self.symbol({"symbol": n}) or "" for n in names]

    # ------------------------------------------------------------------ public data
    def exchange_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        one = self.symbol(params, required=False)
        many = self.symbols_param(params)
        symbols = [one] if one else (many if many is not None else list(self.engine_specs))
        return {
            "timezone": "UTC", "serverTime": self.now_ms(),
            "rateLimits": self.limiter.rate_limits_info(), "exchangeFilters": [],
            "symbols": [self._symbol_info(self.engine_specs[s]) for s in symbols],
            "sors": [],
        }

    def _symbol_info(self, spec: SymbolSpec) -> dict[str, Any]:
        max_notional = Decimal("9000000")
        return {
            "symbol": native_symbol(spec.symbol), "status": "TRADING",
            "baseAsset": spec.base, "baseAssetPrecision": 8,
            "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": list(ORDER_TYPES),
            "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "amendAllowed": False,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.min_price),
                 "maxPrice": fmt(spec.max_price), "tickSize": fmt(spec.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty),
                 "maxQty": fmt(spec.max_qty), "stepSize": fmt(spec.step_size)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(ZERO),
                 "maxQty": fmt(spec.max_qty), "stepSize": fmt(ZERO)},
                {"filterType": "MIN_NOTIONAL", "minNotional": fmt(spec.min_notional),
                 "applyToMarket": True, "avgPriceMins": 5},
                {"filterType": "NOTIONAL", "minNotional": fmt(spec.min_notional),
                 "applyMinToMarket": True, "maxNotional": fmt(max_notional),
                 "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": spec.max_orders},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    async def depth(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.symbol(params)
        assert symbol is not None
        limit = param_int(params, "limit")
        limit = 100 if limit is None else min(max(limit, 1), 5000)
        await self.ensure_market(symbol)
        return self.hub.book(symbol).snapshot(limit)

    def book_ticker(self, symbol: str) -> dict[str, Any]:
        q = self.hub.book(symbol).last_quote
        native = native_symbol(symbol)
        if q is None:
            return {"symbol": native, "bidPrice": fmt(ZERO), "bidQty": fmt(ZERO),
                    "askPrice": fmt(ZERO), "askQty": fmt(ZERO)}
        return {"symbol": native, "bidPrice": fmt(q.bid), "bidQty": fmt(q.bid_qty),
                "askPrice": fmt(q.ask), "askQty": fmt(q.ask_qty)}

    def price_ticker(self, symbol: str) -> dict[str, Any]:
        book = self.hub.book(symbol)
        trade = self.primary.engine.last_trade(symbol)
        price = trade.price if trade is not None else (
            book.last_quote.mid if book.last_quote is not None else ZERO)
        return {"symbol": native_symbol(symbol), "price": fmt(price)}

    # ------------------------------------------------------------------ account
    def account_info(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        omit = params.get("omitZeroBalances", "false").lower() == "true"
        cfg = self.config.venue
        balances = [
            {"asset": b.asset, "free": fmt(b.free), "locked": fmt(b.locked)}
            for b in acct.engine.balances().values()
            if not (omit and b.free == 0 and b.locked == 0)
        ]
        return {
            "makerCommission": int(cfg.maker_fee * 10000),
            "takerCommission": int(cfg.taker_fee * 10000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt(Decimal(cfg.maker_fee)),
                                "taker": fmt(Decimal(cfg.taker_fee)),
                                "buyer": fmt(ZERO), "seller": fmt(ZERO)},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": acct.last_update_ms, "accountType": "SPOT", "balances": balances,
            "permissions": ["SPOT"], "uid": 1000 + list(self.accounts).index(acct.api_key),
        }

    def my_trades(self, acct: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.symbol(params)
        assert symbol is not None
        order_id = param_int(params, "orderId")
        start = param_int(params, "startTime")
        end = param_int(params, "endTime")
        from_id = param_int(params, "fromId")
        limit = param_int(params, "limit")
        limit = 500 if limit is None else min(max(limit, 1), 1000)
        if from_id is not None and (start is not None or end is not None):
            raise VenueError(-1128, "Combination of optional parameters invalid.")
        out = []
        for t in acct.trades.get(symbol, ()):
            if order_id is not None and t["orderId"] != order_id:
                continue
            if from_id is not None and t["id"] < from_id:
                continue
            if start is not None and t["time"] < start:
                continue
            if end is not None and t["time"] > end:
                continue
            out.append(t)
        if from_id is not None or start is not None:
            return out[:limit]
        return out[-limit:]

    def open_orders(self, acct: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.symbol(params, required=False)
        return [rec.query() for rec in acct.open_records(symbol)]

    def lookup(self, acct: Account, params: Mapping[str, str], *, cancel: bool
               ) -> tuple[str, OrderRecord]:
        symbol = self.symbol(params)
        assert symbol is not None
        order_id = param_int(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise VenueError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                             "both were empty/null!")
        rec = acct.find(symbol, order_id, client_id)
        if rec is None or (cancel and not rec.is_open):
            if cancel:
                raise VenueError(-2011, "Unknown order sent.")
            raise VenueError(-2013, "Order does not exist.")
        return symbol, rec

    def query_order(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        return self.lookup(acct, params, cancel=False)[1].query()

    async def cancel_order(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        symbol, rec = self.lookup(acct, params, cancel=True)
        rec.cancel_client_id = param_client_id(params, "newClientOrderId") or random_client_id()
        await self._cancel(acct, symbol, rec)
        return rec.cancel_reply()

    async def _cancel(self, acct: Account, symbol: str, rec: OrderRecord) -> None:
        try:
            await acct.sim.cancel(symbol, rec.client_id)
        except UnknownOrder:
            raise VenueError(-2011, "Unknown order sent.") from None
        except OutcomeUnknown:
            raise VenueError(-1007, "Timeout waiting for response from backend server. Send "
                             "status unknown; execution status unknown.", 503) from None

    async def cancel_open_orders(self, acct: Account, params: Mapping[str, str]
                                 ) -> list[dict[str, Any]]:
        symbol = self.symbol(params)
        recs = acct.open_records(symbol)
        if not recs:
            raise VenueError(-2011, "Unknown order sent.")
        out = []
        for rec in recs:
            rec.cancel_client_id = random_client_id()
            try:
                await self._cancel(acct, rec.symbol, rec)
            except VenueError:
                continue  # filled meanwhile
            out.append(rec.cancel_reply())
        return out

    # ------------------------------------------------------------------ new order
    def validate_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Parameter checks of a new order, in Binance's order (before any rate counting)."""
        symbol = self.symbol(params)
        assert symbol is not None
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(-1117, "Invalid side.")
        otype = params.get("type")
        if not otype:
            raise mandatory("type")
        if otype in _UNSUPPORTED_TYPES:
            raise VenueError(-2010, _UNSUPPORTED_TYPES[otype])
        if otype not in ORDER_TYPES:
            raise VenueError(-1116, "Invalid orderType.")
        tif = params.get("timeInForce") or None
        qty = param_decimal(params, "quantity")
        quote_qty = param_decimal(params, "quoteOrderQty")
        price = param_decimal(params, "price")
        if otype == "LIMIT":
            if tif is None:
                raise mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise VenueError(-1115, "Invalid timeInForce.")
            if tif == "FOK":
                raise VenueError(-1014, "Unsupported order combination.")
            if price is None:
                raise mandatory("price")
            if qty is None:
                raise mandatory("quantity")
            if quote_qty is not None:
                raise not_required("quoteOrderQty")
        elif otype == "LIMIT_MAKER":
            if tif is not None:
                raise not_required("timeInForce")
            if price is None:
                raise mandatory("price")
            if qty is None:
                raise mandatory("quantity")
            if quote_qty is not None:
                raise not_required("quoteOrderQty")
            tif = "GTC"
        else:  # MARKET
            if price is not None:
                raise not_required("price")
            if tif is not None:
                raise not_required("timeInForce")
            if (qty is None) == (quote_qty is None):
                if qty is None:
                    raise VenueError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, "
                                     "but both were empty/null!")
                raise VenueError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, "
                                 "but not both!")
            tif = "GTC"
        client_id = param_client_id(params, "newClientOrderId") or random_client_id()
        resp = params.get("newOrderRespType") or ("ACK" if otype == "LIMIT_MAKER" else "FULL")
        if resp not in ("ACK", "RESULT", "FULL"):
            raise VenueError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        spec = self.engine_specs[symbol]
        if price is not None:
            err = spec.filter_error(price, qty if qty is not None else spec.min_qty)
            if err is not None:
                raise VenueError(-1013, "Filter failure: " + err.split(":", 1)[0])
        elif qty is not None:
            err = spec.filter_error(None, qty)
            if err is not None:
                raise VenueError(-1013, "Filter failure: " + err.split(":", 1)[0])
        return {"symbol": symbol, "side": side, "type": otype, "tif": tif, "qty": qty,
                "quote_qty": quote_qty, "price": price, "client_id": client_id, "resp": resp}

    async def place_order(self, acct: Account, order: dict[str, Any]) -> OrderRecord:
        """Place a validated order; returns its record (after any immediate fills)."""
        symbol: str = order["symbol"]
        otype: str = order["type"]
        side: str = order["side"]
        spec = self.engine_specs[symbol]
        await self.ensure_market(symbol)
        price: Decimal | None = order["price"]
        qty: Decimal | None = order["qty"]
        quote_qty: Decimal = order["quote_qty"] or ZERO
        if otype == "MARKET":
            q = self.hub.book(symbol).last_quote
            if q is None:
                raise VenueError(-2010, "Market is closed.")
            touch = q.ask if side == "BUY" else q.bid
            if qty is None:
                qty = floor_to(quote_qty / touch, spec.step_size)
                if qty < spec.min_qty or qty <= 0:
                    raise VenueError(-1013, "Filter failure: LOT_SIZE")
            if touch * qty < spec.min_notional:
                raise VenueError(-1013, "Filter failure: NOTIONAL")
            if side == "BUY":
                price = min(ceil_to(touch * (1 + MARKET_PROTECTION), spec.tick_size),
                            max(spec.max_price, touch))
            else:
                price = max(floor_to(touch * (1 - MARKET_PROTECTION), spec.tick_size),
                            min(spec.min_price, touch), spec.tick_size)
        assert price is not None and qty is not None
        cid: str = order["client_id"]
        rec = OrderRecord(
            symbol=symbol, native=native_symbol(symbol), order_id=0, client_id=cid,
            side=side, type=otype, tif=order["tif"], price=ZERO if otype == "MARKET" else price,
            orig_qty=qty, time_ms=self.now_ms(), orig_quote_qty=quote_qty,
            expire_on_cancel=otype == "MARKET" or order["tif"] == "IOC")
        request = OrderRequest(symbol=symbol, client_id=cid, side=side,  # type: ignore[arg-type]
                               price=price, qty=qty, post_only=otype == "LIMIT_MAKER")
        acct.pending[(symbol, cid)] = rec
        try:
            await acct.sim.place(request)
        except DuplicateOrder:
            raise VenueError(-2010, "Duplicate order sent.") from None
        except InsufficientBalance:
            raise VenueError(-2010, "Account has insufficient balance for requested "
                             "action.") from None
        except WouldTake:
            raise VenueError(-2010, "Order would immediately match and take.") from None
        except TooManyOrders:
            raise VenueError(-1013, "Filter failure: MAX_NUM_ORDERS") from None
        except FilterRejected as exc:
            name = str(exc).removeprefix("Filter failure: ").split(":", 1)[0]
            raise VenueError(-1013, f"Filter failure: {name}") from None
        except UnknownSymbol:
            raise VenueError(-1121, "Invalid symbol.") from None
        except OutcomeUnknown:
            raise VenueError(-1007, "Timeout waiting for response from backend server. Send "
                             "status unknown; execution status unknown.", 503) from None
        finally:
            acct.pending.pop((symbol, cid), None)
        if rec.expire_on_cancel and rec.is_open:
            try:
                await acct.sim.cancel(symbol, cid)
            except (UnknownOrder, OutcomeUnknown):
                pass  # filled meanwhile
        return rec

    @staticmethod
    def order_reply(rec: OrderRecord, resp: str) -> dict[str, Any]:
        if resp == "ACK":
            return rec.ack()
        if resp == "RESULT":
            return rec.result()
        return rec.full()
