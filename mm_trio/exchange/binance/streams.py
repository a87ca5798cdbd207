"""Binance websocket tasks with reconnect: combined market streams and the user data stream.

Both are long-running trio tasks (``await nursery.start(stream.run)``) built on
:class:`ReconnectingStream`, which owns the reconnect loop:

* connect (:mod:`~mm_trio.exchange.binance.wsclient`: wsproto over trio, TLS for
  ``wss://``; it answers the venue's pings itself), run the stream's handshake,
  then report ``connected`` (first time) or ``resynced`` (after an outage) through
  ``on_status``; the shell reconciles orders over REST on both (SPEC §7);
* pump frames to ``on_message(frame, recv_ns)`` until the connection drops (every message
  of one socket read in one go, stamped with that read's time); a heartbeat
  task pings every ``heartbeat`` seconds and drops a connection whose pong does not come
  within ``heartbeat_timeout`` (a half-open TCP connection would otherwise hang forever);
* on any failure report ``disconnected`` (once per outage) and retry after a jittered
  exponential back-off capped at ``max_backoff`` seconds.

Only ``Exception`` is caught: cancellation always propagates.

:class:`MarketStream` keeps ONE combined-stream connection ``<base>/stream?streams=a/b``;
runtime changes are sent as live ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [...],
"id": n}`` messages (paced under Binance's 5 incoming messages per second). A reconnect
puts the whole current set in the URL, and anything that changed during the handshake is
sent as SUBSCRIBE/UNSUBSCRIBE right after it, so the subscription set survives reconnects.

:class:`UserDataStream` connects to the WebSocket API and sends
``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``, ``signature`` over the
sorted parameters); events arrive as ``{"subscriptionId": n, "event": {...}}``. A rejected
subscription on the first connection is fatal (bad keys must fail loudly); later it is
retried. ``eventStreamTerminated`` / ``serverShutdown`` events force a reconnect.
"""

from __future__ import annotations

import itertools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import trio

from mm_trio.domain.model import StreamState, StreamStatus
from mm_trio.exchange.base import ExchangeError, RateLimited
from mm_trio.exchange.binance.protocol import MAX_STREAMS, ErrorCode, Weights
from mm_trio.exchange.binance.rest import LimiterLike, classify
from mm_trio.exchange.binance.signing import Signer, ws_payload
from mm_trio.exchange.binance.wire import WsApiResponseJson
from mm_trio.exchange.binance.wsclient import (
    MAX_MESSAGE_SIZE,
    RECEIVE_BYTES,
    WsConnection,
    open_websocket,
)

__all__ = [
    "MAX_STREAMS",
    "MarketStream",
    "ReconnectingStream",
    "StreamRejected",
    "UserDataStream",
    "combined_url",
]

log = logging.getLogger(__name__)

CONTROL_INTERVAL = 0.25
"""Seconds between our control messages (Binance allows 5 incoming messages per second)."""

OnMessage = Callable[[str | bytes, int], Awaitable[None]]
OnStatus = Callable[[StreamStatus], Awaitable[None]]


class StreamRejected(ExchangeError):
    """The venue refused a stream handshake (e.g. the user-data subscription)."""

    kind = "stream_rejected"


class _Reconnect(Exception):
    """Internal: drop this connection and reconnect."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an error, looking through single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


def combined_url(base: str, streams: Iterable[str]) -> str:
    """``wss://host:9443`` + streams -> ``wss://host:9443/stream?streams=a/b``."""
    return f"{base.rstrip('/')}/stream?streams={'/'.join(streams)}"


class ReconnectingStream:
    """The reconnect loop shared by the market and user-data streams (see module doc)."""

    name = "stream"

    def __init__(
        self,
        *,
        on_message: OnMessage,
        on_status: OnStatus | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        heartbeat: float = 30.0,
        heartbeat_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        stable_after: float = 30.0,
        max_initial_attempts: int | None = None,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_status = on_status
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout
        self.stable_after = stable_after
        self.max_initial_attempts = max_initial_attempts
        self._rng = rng or random.Random()
        self.ssl_context = ssl_context  # for wss:// (None: the system's trusted CAs)
        self._ws: WsConnection | None = None
        self.connects = 0
        self.disconnects = 0
        self.messages = 0
        self.last_error = ""

    # ------------------------------------------------------------------ hooks
    def _url(self) -> str:
        raise NotImplementedError

    async def _ready(self) -> None:
        """Wait until there is a reason to connect (default: connect at once)."""
        await trio.lowlevel.checkpoint()

    async def _handshake(self, ws: WsConnection) -> None:
        """Run after the websocket opens, before the connection counts as up."""
        await trio.lowlevel.checkpoint()

    async def _handle(self, message: str | bytes, recv_ns: int) -> None:
        await self._on_message(message, recv_ns)

    # ------------------------------------------------------------------ loop
    @property
    def connected(self) -> bool:
        return self._ws is not None

    def backoff(self, failures: int) -> float:
        """Jittered exponential back-off before reconnect attempt ``failures`` (>= 1)."""
        base = min(self.max_backoff, self.initial_backoff * 2 ** max(0, failures - 1))
        return base * self._rng.uniform(0.5, 1.0)

    async def _status(self, status: StreamState, reason: str) -> None:
        if self._on_status is not None:
            await self._on_status(StreamStatus(status=status, reason=reason, ts=time.time_ns()))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the stream connected until cancelled.

        ``task_status.started()`` is called after the first successful connection (after
        ``max_initial_attempts`` failed first attempts the last error is raised).
        """
        first = True
        down = False
        failures = 0
        while True:
            await self._ready()
            opened_at: float | None = None
            try:
                url = self._url()
                async with open_websocket(
                    url,
                    connect_timeout=self.connect_timeout,
                    disconnect_timeout=min(5.0, self.connect_timeout),
                    ssl_context=self.ssl_context,
                    max_message_size=MAX_MESSAGE_SIZE,
                    receive_bytes=RECEIVE_BYTES,
                ) as ws:
                    await self._handshake(ws)
                    opened_at = trio.current_time()
                    self._ws = ws
                    self.connects += 1
                    await self._status("connected" if first else "resynced", self.name)
                    if first:
                        first = False
                        task_status.started()
                    down = False
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._heartbeat, ws)
                        await self._pump(ws)
                        nursery.cancel_scope.cancel()  # pragma: no cover (pump never returns)
            except StreamRejected as exc:
                self._ws = None
                self.last_error = str(exc)
                if first:
                    raise
                log.error("%s stream: %s", self.name, exc)
            except Exception as exc:  # any failure of this connection: reconnect
                self._ws = None
                self.last_error = describe(exc)
                if (
                    first
                    and self.max_initial_attempts is not None
                    and failures + 1 >= self.max_initial_attempts
                ):
                    raise ExchangeError(
                        f"{self.name} stream: cannot connect after "
                        f"{failures + 1} attempts: {self.last_error}"
                    ) from exc
                log.warning("%s stream dropped: %s", self.name, self.last_error)
            self._ws = None
            if opened_at is not None and trio.current_time() - opened_at >= self.stable_after:
                failures = 0
            failures += 1
            if not first and not down:
                down = True
                self.disconnects += 1
                await self._status("disconnected", f"{self.name}: {self.last_error}")
            await trio.sleep(self.backoff(failures))

    async def _pump(self, ws: WsConnection) -> None:
        # a socket read's worth of messages is handled with no checkpoint between them
        # (``_handle`` does not checkpoint unless the event channel is full): the read is the
        # one checkpoint per batch, so the consumer gets them in one go
        handle = self._handle
        while True:
            batch, recv_ns = await ws.receive_batch()
            for message in batch:
                self.messages += 1
                await handle(message, recv_ns)

    async def _heartbeat(self, ws: WsConnection) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            try:
                with trio.fail_after(self.heartbeat_timeout):
                    await ws.ping()
            except trio.TooSlowError:
                raise _Reconnect(f"no pong within {self.heartbeat_timeout}s") from None


class MarketStream(ReconnectingStream):
    """One combined-stream connection with live SUBSCRIBE / UNSUBSCRIBE (see module doc)."""

    name = "market"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self._wanted: dict[str, None] = {}  # ordered set of stream names
        self._live: dict[str, None] = {}  # what the current connection is subscribed to
        self._changed = trio.Event()
        self._ids = itertools.count(1)
        self._send_lock = trio.Lock()
        self._last_control = -float("inf")
        self.sent_controls: list[dict[str, Any]] = []  # last few control messages (tests)

    @property
    def streams(self) -> list[str]:
        """The stream names we want, in subscription order."""
        return list(self._wanted)

    def _url(self) -> str:
        self._live = dict(self._wanted)
        return combined_url(self.base_url, self._live)

    async def _ready(self) -> None:
        while not self._wanted:
            self._changed = trio.Event()
            await self._changed.wait()

    async def _handshake(self, ws: WsConnection) -> None:
        self._ws = ws
        try:
            await self._sync(ws)
        finally:
            self._ws = None

    async def subscribe(self, streams: Iterable[str]) -> None:
        """Add streams (idempotent); sent live if connected, else at the next connect."""
        new = [s for s in streams if s not in self._wanted]
        if len(self._wanted) + len(new) > MAX_STREAMS:
            raise ValueError(f"more than {MAX_STREAMS} streams on one connection")
        for s in new:
            self._wanted[s] = None
        if new:
            self._changed.set()
        await self._sync_current()

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        """Remove streams (idempotent)."""
        for s in streams:
            self._wanted.pop(s, None)
        await self._sync_current()

    async def _sync_current(self) -> None:
        ws = self._ws
        if ws is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._sync(ws)
        except Exception as exc:  # the pump sees the broken connection and reconnects
            log.info("market stream: live (un)subscribe not sent: %s", exc)

    async def _sync(self, ws: WsConnection) -> None:
        """Send SUBSCRIBE / UNSUBSCRIBE for the difference between wanted and live."""
        async with self._send_lock:
            add = [s for s in self._wanted if s not in self._live]
            drop = [s for s in self._live if s not in self._wanted]
            for method, names in (("SUBSCRIBE", add), ("UNSUBSCRIBE", drop)):
                if not names:
                    continue
                wait = self._last_control + CONTROL_INTERVAL - trio.current_time()
                if wait > 0:
                    await trio.sleep(wait)
                msg = {"method": method, "params": names, "id": next(self._ids)}
                await ws.send_message(msgspec.json.encode(msg).decode())
                self._last_control = trio.current_time()
                self.sent_controls = [*self.sent_controls[-31:], msg]
                if method == "SUBSCRIBE":
                    for s in names:
                        self._live[s] = None
                else:
                    for s in names:
                        self._live.pop(s, None)


_RESPONSE = msgspec.json.Decoder(WsApiResponseJson)
_TERMINATED = (b'"eventStreamTerminated"', b'"serverShutdown"')
_FATAL_CODES = frozenset(
    {
        ErrorCode.UNAUTHORIZED,
        ErrorCode.INVALID_SIGNATURE,
        ErrorCode.BAD_API_KEY_FMT,
        ErrorCode.REJECTED_MBX_KEY,
    }
)


class UserDataStream(ReconnectingStream):
    """User data over the WebSocket API via ``userDataStream.subscribe.signature``."""

    name = "user"

    def __init__(
        self,
        ws_api_url: str,
        *,
        api_key: str,
        signer: Signer,
        limiter: LimiterLike | None = None,
        recv_window_ms: int | None = None,
        timestamp_ms: Callable[[], int] | None = None,
        response_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ws_api_url = ws_api_url
        self._api_key = api_key
        self._signer = signer
        self._limiter = limiter
        self.recv_window_ms = recv_window_ms
        self._timestamp_ms = timestamp_ms or (lambda: time.time_ns() // 1_000_000)
        self.response_timeout = response_timeout
        self._ids = itertools.count(1)
        self.subscription_id: int | None = None

    def __repr__(self) -> str:
        return f"UserDataStream(url={self.ws_api_url!r}, api_key='***', signer={self._signer!r})"

    def _url(self) -> str:
        return self.ws_api_url

    def subscribe_request(self) -> dict[str, Any]:
        """The signed ``userDataStream.subscribe.signature`` request (new id, timestamp)."""
        params: dict[str, Any] = {"apiKey": self._api_key, "timestamp": self._timestamp_ms()}
        if self.recv_window_ms is not None:
            params["recvWindow"] = self.recv_window_ms
        params["signature"] = self._signer.sign(ws_payload(params))
        return {
            "id": f"mmtrio-uds-{next(self._ids)}",
            "method": "userDataStream.subscribe.signature",
            "params": params,
        }

    async def _handshake(self, ws: WsConnection) -> None:
        if self._limiter is not None:
            await self._limiter.acquire(Weights.WS_USER_STREAM_SUBSCRIBE)
        request = self.subscribe_request()
        await ws.send_message(msgspec.json.encode(request).decode())
        with trio.fail_after(self.response_timeout):
            while True:
                message = await ws.get_message()
                recv_ns = time.time_ns()
                raw = message.encode() if isinstance(message, str) else message
                try:
                    resp = _RESPONSE.decode(raw)
                except msgspec.DecodeError:
                    resp = None
                if resp is None or resp.id != request["id"]:
                    await self._on_message(message, recv_ns)  # an event: deliver it
                    continue
                break
        if resp.status == 200:
            result = resp.result if isinstance(resp.result, dict) else {}
            sid = result.get("subscriptionId")
            self.subscription_id = sid if isinstance(sid, int) else None
            return
        err = resp.error or {}
        code = err.get("code") if isinstance(err.get("code"), int) else None
        status = resp.status or 0
        exc = classify(
            status, code, str(err.get("msg", "")), where="userDataStream.subscribe.signature"
        )
        if isinstance(exc, RateLimited):
            if self._limiter is not None:
                self._limiter.pause(exc.retry_after, banned=exc.banned, reason=str(exc))
            raise exc
        if code in _FATAL_CODES or status in (401, 403):
            raise StreamRejected(str(exc), code=code)
        raise exc

    async def _handle(self, message: str | bytes, recv_ns: int) -> None:
        raw = message.encode() if isinstance(message, str) else message
        if any(marker in raw for marker in _TERMINATED):
            raise _Reconnect("user data subscription ended by the venue")
        await self._on_message(message, recv_ns)
