"""``BinanceExchange``: the Binance spot venue behind the :class:`Exchange` interface.

* REST (:class:`~mm_trio.exchange.binance.rest.BinanceRest`): exchangeInfo, orders, open
  orders, account; HMAC-SHA256 or Ed25519 signing; every request weighted through the shared
  limiter; errors classified (SPEC §12).
* Market data: ONE combined-stream websocket (``bookTicker`` + ``trade`` per symbol) with live
  SUBSCRIBE / UNSUBSCRIBE (:class:`~mm_trio.exchange.binance.streams.MarketStream`).
* User data: the WebSocket API ``userDataStream.subscribe.signature``
  (:class:`~mm_trio.exchange.binance.streams.UserDataStream`), only when keys are configured.
* Every frame is decoded once by :class:`~mm_trio.exchange.binance.decode.StreamDecoder`
  into one event channel (:attr:`BinanceExchange.events`), together with
  :class:`StreamStatus` ``connected`` / ``disconnected`` / ``resynced`` (``reason`` names
  the stream) -- the shell reconciles orders over REST on ``connected`` and ``resynced``.

Orders: ``LIMIT_MAKER`` when ``post_only`` else ``LIMIT`` + ``GTC``; ``newClientOrderId`` is
our client id and ``newOrderRespType=RESULT``; cancel and query by ``origClientOrderId``.
Prices and quantities go out as plain decimal strings (:func:`fmt_decimal`). Unified symbols
(``BTC/USDT``) are mapped to native ones (``BTCUSDT``) only here, through the exchangeInfo map.

Secrets (API key, secret, Ed25519 key) never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import (
    CLOCK_TOLERANCE_NS,
    Balance,
    Event,
    OpenOrder,
    OrderRequest,
    OrderUpdate,
    Quote,
    StreamStatus,
    SymbolError,
    SymbolSpec,
    Trade,
    native_symbol,
)
from mm_trio.exchange.base import (
    Exchange,
    ExchangeError,
    StillWanted,
    UnknownSymbol,
    check_wanted,
    withdrawn_while_queued,
)
from mm_trio.exchange.binance.decode import DecodeStats, DepthUpdate, StreamDecoder
from mm_trio.exchange.binance.protocol import DEFAULT_RECV_WINDOW_MS, Weights, depth_weight
from mm_trio.exchange.binance.rest import BinanceRest, LimiterLike
from mm_trio.exchange.binance.signing import MASK, make_signer
from mm_trio.exchange.binance.specs import (
    SymbolMap,
    balances_from_account,
    open_order_from_json,
    order_params,
    parse_exchange_info,
)
from mm_trio.exchange.binance.streams import MarketStream, UserDataStream
from mm_trio.exchange.binance.trades import (
    MyTrade,
    fills_from_trades,
    my_trades_from_json,
    my_trades_params,
)
from mm_trio.exchange.ingest import IngestStats
from mm_trio.exchange.limiter import Limiter, Withdrawn

__all__ = ["VENUES", "BinanceExchange", "MyTrade", "derive_ws_urls"]

log = logging.getLogger(__name__)

EVENT_BUFFER = 100_000
_NS_PER_MS = 1_000_000

VENUES: dict[str, tuple[str, str, str]] = {
    "binance": (
        "https://api.binance.com",
        "wss://stream.binance.com:9443",
        "wss://ws-api.binance.com:443/ws-api/v3",
    ),
    "binance-testnet": (
        "https://testnet.binance.vision",
        "wss://stream.testnet.binance.vision",
        "wss://ws-api.testnet.binance.vision/ws-api/v3",
    ),
}
"""Venue name -> (REST base, market-stream base, WebSocket API URL)."""

ENV_API_KEY = "MM_TRIO_API_KEY"
ENV_API_SECRET = "MM_TRIO_API_SECRET"
ENV_ED25519_KEY = "MM_TRIO_ED25519_KEY"
ENV_ED25519_PASSWORD = "MM_TRIO_ED25519_PASSWORD"

MARKET_STREAMS = ("bookTicker", "trade")
DECODE_LOG_INTERVAL = 10.0
"""Seconds between log lines about skipped malformed / unknown-stream messages."""


def connection_settings(
    venue: str, base_url: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    """Constructor keywords of :meth:`BinanceExchange.from_env`: the venue's URLs (or those
    derived from ``base_url``) and the keys found in ``environ``."""
    if venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}; expected one of {sorted(VENUES)}")
    rest_url, ws_url, ws_api_url = VENUES[venue]
    if base_url is not None:
        rest_url = base_url
        ws_url, ws_api_url = derive_ws_urls(base_url)
    password = environ.get(ENV_ED25519_PASSWORD)
    return {
        "base_url": rest_url,
        "ws_url": ws_url,
        "ws_api_url": ws_api_url,
        "api_key": environ.get(ENV_API_KEY) or None,
        "api_secret": environ.get(ENV_API_SECRET) or None,
        "ed25519_key_path": environ.get(ENV_ED25519_KEY) or None,
        "ed25519_password": password.encode() if password else None,
    }


class _DecodeProblemLog:
    """Logs skipped malformed / unknown-stream messages at most once per interval."""

    def __init__(self, name: str, interval: float = DECODE_LOG_INTERVAL) -> None:
        self.name = name
        self.interval = interval
        self._last = -float("inf")
        self._logged = 0

    def check(self, stats: DecodeStats) -> None:
        problems = stats.malformed + stats.unknown_stream
        if problems == self._logged:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        log.warning(
            "%s: %d malformed / unknown stream messages skipped (last: %s)",
            self.name,
            problems - self._logged,
            stats.last_error,
        )
        self._logged = problems


def derive_ws_urls(base_url: str) -> tuple[str, str]:
    """``http://127.0.0.1:P`` -> (``ws://127.0.0.1:P``, ``ws://127.0.0.1:P/ws-api/v3``)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"cannot derive websocket URLs from base URL {base_url!r}")
    root = urlunsplit((scheme, parts.netloc, "", "", ""))
    return root, root + "/ws-api/v3"


class BinanceExchange(Exchange):
    """Binance spot over REST + combined streams + WebSocket API user data (module doc)."""

    name = "binance"

    def __init__(
        self,
        *,
        base_url: str,
        ws_url: str,
        ws_api_url: str,
        api_key: str | None,
        api_secret: str | None = None,
        ed25519_key_path: str | None = None,
        limiter: LimiterLike,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ed25519_password: bytes | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        heartbeat: float = 30.0,
        buffer_size: int = EVENT_BUFFER,
        name: str = "binance",
    ) -> None:
        signer = make_signer(api_key, api_secret, ed25519_key_path, ed25519_password)
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.ws_url = ws_url.rstrip("/")
        self.ws_api_url = ws_api_url
        self._api_key = api_key or None
        self._signer = signer
        self.limiter = limiter
        self.recv_window_ms = recv_window_ms
        self.rest = BinanceRest(
            self.base_url,
            api_key=self._api_key,
            signer=signer,
            limiter=limiter,
            recv_window_ms=recv_window_ms,
            timeout=timeout,
            transport=transport,
        )
        self.decoder = StreamDecoder({})
        self._send, self._recv = trio.open_memory_channel[Event](buffer_size)
        self._specs: dict[str, SymbolSpec] = {}
        self._names = SymbolMap()
        self._subscribed: dict[str, None] = {}
        stream_kw: dict[str, Any] = {
            "on_message": self._on_frame,
            "on_status": self._emit,
            "initial_backoff": reconnect_initial,
            "max_backoff": reconnect_max,
            "heartbeat": heartbeat,
            "connect_timeout": timeout,
        }
        self.market = MarketStream(self.ws_url, **stream_kw)
        self.user: UserDataStream | None = None
        if signer is not None and self._api_key:
            self.user = UserDataStream(
                ws_api_url,
                api_key=self._api_key,
                signer=signer,
                limiter=limiter,
                timestamp_ms=self.rest.timestamp_ms,
                response_timeout=timeout,
                max_initial_attempts=5,
                **stream_kw,
            )
        self._running = False
        self.dropped_events = 0
        self.market_ingest = IngestStats()  # market events received, their lag (metrics)
        self._decode_log = _DecodeProblemLog(name)

    def now_ns(self) -> int:
        """Our clock corrected by the venue's time offset (see ``BinanceRest.sync_time``)."""
        return self.rest.timestamp_ms() * 1_000_000

    def __repr__(self) -> str:
        key = MASK if self._api_key else None
        return (
            f"BinanceExchange(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={key!r}, signer={self._signer!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls,
        venue: str = "binance",
        base_url: str | None = None,
        limiter: LimiterLike | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> BinanceExchange:
        """Build from ``MM_TRIO_API_KEY`` + ``MM_TRIO_API_SECRET`` (HMAC) or
        ``MM_TRIO_ED25519_KEY`` (PEM path; ``MM_TRIO_ED25519_PASSWORD`` if encrypted).

        ``venue`` is ``binance`` or ``binance-testnet``; a custom ``base_url`` (e.g. a local
        Binance-compatible server ``http://127.0.0.1:P``) derives ``ws://127.0.0.1:P`` for
        streams and ``ws://127.0.0.1:P/ws-api/v3`` for the WebSocket API. No keys: public
        market data only.
        """
        settings = connection_settings(venue, base_url, os.environ if env is None else env)
        return cls(
            **settings,
            name=venue,
            limiter=limiter if limiter is not None else Limiter(LimiterConfig()),
            **kwargs,
        )

    # ------------------------------------------------------------------ stream
    @property
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        return self._recv

    @property
    def decode_stats(self) -> DecodeStats:
        return self.decoder.stats

    @property
    def subscribed(self) -> list[str]:
        return list(self._subscribed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load exchangeInfo, start the market stream task and (with keys) the user data
        stream, then ``started()``; runs until cancelled and closes the event stream."""
        if self._running:
            raise RuntimeError("BinanceExchange.run() is already running")
        self._running = True
        try:
            if self.rest.can_sign:
                try:
                    await self.rest.sync_time()
                except ExchangeError as exc:
                    log.warning("%s: server time sync failed: %s", self.name, exc)
            await self.load_specs()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.market.run)
                    if self.user is not None:
                        await nursery.start(self.user.run)
                    else:
                        await self._emit(
                            StreamStatus(
                                status="connected", reason="no user data", ts=time.time_ns()
                            )
                        )
                    task_status.started()
            except BaseExceptionGroup as group:
                # a startup failure (bad keys, venue unreachable) surfaces as itself
                if len(group.exceptions) == 1 and isinstance(group.exceptions[0], ExchangeError):
                    raise group.exceptions[0] from None
                raise
        finally:
            self._running = False
            self._send.close()
            await self.rest.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (``run`` does this itself when it ends)."""
        await self.rest.aclose()

    async def _emit(self, event: Event) -> None:
        try:
            await self._send.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped_events += 1

    async def _on_frame(self, message: str | bytes, recv_ns: int) -> None:
        ingest = self.market_ingest
        for event in self.decoder.decode(message, recv_ns):
            kind = type(event)
            if kind is Quote:
                ingest.quotes += 1
            elif kind is Trade:
                ingest.trades += 1
                offset_ns = self.rest.time_offset_ms * _NS_PER_MS
                ingest.observe_lag(recv_ns + offset_ns, event.ts)
            elif kind is DepthUpdate:
                continue
            try:  # no checkpoint per event: the demux drains what is queued in one go
                self._send.send_nowait(event)  # type: ignore[arg-type]
            except trio.WouldBlock:
                await self._emit(event)  # type: ignore[arg-type]
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.dropped_events += 1
        self._decode_log.check(self.decoder.stats)

    # ------------------------------------------------------------------ symbols
    def _native(self, symbol: str) -> str:
        native = self._names.native(symbol)
        if native is not None:
            return native
        try:
            native = native_symbol(symbol)
        except SymbolError as exc:
            raise UnknownSymbol(str(exc)) from None
        if self._names:
            raise UnknownSymbol(f"symbol {symbol!r} is not listed by {self.name}")
        return native

    def _unified(self, native: str) -> str | None:
        return self._names.unified(native)

    async def load_specs(self) -> dict[str, SymbolSpec]:
        body = await self.rest.request("GET", "/api/v3/exchangeInfo", weight=Weights.EXCHANGE_INFO)
        specs, names = parse_exchange_info(body)
        self._specs = specs
        self._names = names
        for native, unified in names.to_unified.items():
            self.decoder.add_symbol(native, unified)
        return dict(specs)

    @staticmethod
    def streams_for(native: str) -> list[str]:
        return [f"{native.lower()}@{kind}" for kind in MARKET_STREAMS]

    async def subscribe(self, symbols: Sequence[str]) -> None:
        natives = [self._native(s) for s in symbols]  # validates all before changing anything
        streams: list[str] = []
        for symbol, native in zip(symbols, natives, strict=True):
            if symbol not in self._subscribed:
                self._subscribed[symbol] = None
                self.decoder.add_symbol(native, symbol)
                streams += self.streams_for(native)
        if streams:
            await self.market.subscribe(streams)
        else:
            await trio.lowlevel.checkpoint()

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        streams: list[str] = []
        for symbol in symbols:
            if self._subscribed.pop(symbol, 0) is None:
                streams += self.streams_for(self._native(symbol))
        if streams:
            await self.market.unsubscribe(streams)
        else:
            await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ orders
    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        check_wanted(request, still_wanted)
        params = order_params(request, self._native(request.symbol))
        try:
            body = await self.rest.request(
                "POST",
                "/api/v3/order",
                params,
                weight=Weights.PLACE,
                orders=1,
                signed=True,
                order=True,
                retry=False,
                still_wanted=still_wanted,
                before_send=lambda: check_wanted(request, still_wanted),
            )
        except Withdrawn:
            raise withdrawn_while_queued(request) from None
        return open_order_from_json(body, request.symbol, client_id=request.client_id)

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        params = {"symbol": self._native(symbol), "origClientOrderId": client_id}
        body = await self.rest.request(
            "DELETE",
            "/api/v3/order",
            params,
            weight=Weights.CANCEL,
            cancel=True,
            signed=True,
            order=True,
            retry=False,
        )
        return open_order_from_json(body, symbol, client_id=client_id)

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        params = {"symbol": self._native(symbol), "origClientOrderId": client_id}
        body = await self.rest.request(
            "GET", "/api/v3/order", params, weight=Weights.QUERY, signed=True
        )
        return open_order_from_json(body, symbol, client_id=client_id)

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        if symbol is not None:
            params = {"symbol": self._native(symbol)}
            weight = Weights.OPEN_ORDERS_SYMBOL
        else:
            params = {}
            weight = Weights.OPEN_ORDERS_ALL
        body = await self.rest.request(
            "GET", "/api/v3/openOrders", params, weight=weight, signed=True
        )
        out: list[OpenOrder] = []
        for item in body:
            unified = symbol if symbol is not None else self._unified(item.get("symbol", ""))
            if unified is None:
                log.warning(
                    "%s: open order on unlisted symbol %r skipped", self.name, item.get("symbol")
                )
                continue
            out.append(open_order_from_json(item, unified))
        return out

    async def balances(self) -> dict[str, Balance]:
        body = await self.rest.request(
            "GET",
            "/api/v3/account",
            {"omitZeroBalances": "true"},
            weight=Weights.ACCOUNT,
            signed=True,
        )
        return balances_from_account(body)

    # ------------------------------------------------------------------ extras
    async def my_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time_ms: int | None = None,
        limit: int = 500,
    ) -> list[MyTrade]:
        """Our recent fills on ``symbol`` (``GET /api/v3/myTrades``, weight 20)."""
        params = my_trades_params(
            self._native(symbol), from_id=from_id, start_time_ms=start_time_ms, limit=limit
        )
        body = await self.rest.request(
            "GET", "/api/v3/myTrades", params, weight=Weights.MY_TRADES, signed=True
        )
        return my_trades_from_json(body, symbol)

    @property
    def request_lifetime_ns(self) -> int:  # type: ignore[override]
        """A signed request is executed within ``recvWindow`` of its timestamp or never
        (Binance rejects it after that; the WebSocket API's default window is the same)."""
        window_ms = max(self.rest.recv_window_ms, DEFAULT_RECV_WINDOW_MS)
        return window_ms * 1_000_000 + CLOCK_TOLERANCE_NS

    async def order_fills(self, order: OpenOrder) -> list[OrderUpdate]:
        """Every fill of ``order`` as fill reports with trade ids (``myTrades?orderId=``,
        weight 5), so fills missed while the user stream was down are not lost."""
        if not order.order_id:
            return []
        body = await self.rest.request(
            "GET",
            "/api/v3/myTrades",
            {"symbol": self._native(order.symbol), "orderId": order.order_id},
            weight=Weights.MY_TRADES_BY_ORDER,
            signed=True,
        )
        return fills_from_trades(order, body)

    async def depth(self, symbol: str, limit: int = 100) -> Any:
        """Order book snapshot (``GET /api/v3/depth``; weight by ``limit``)."""
        return await self.rest.request(
            "GET",
            "/api/v3/depth",
            {"symbol": self._native(symbol), "limit": limit},
            weight=depth_weight(limit),
        )
