"""A lean websocket client: wsproto over a trio stream (TCP, or TLS for ``wss://``).

Made for the market stream's rate (tens of thousands of small messages per second): one
socket read of up to ``receive_bytes`` is fed to wsproto and every complete message in it is
returned at once by :meth:`WsConnection.receive_batch`, stamped with that read's receive
time. The socket read is the one checkpoint per batch; a general-purpose client (trio-websocket)
instead passes each message from its reader task through a channel, a few task switches per
message, which capped the market stream at ~16,000 messages/s.

Protocol duties the venue relies on: pings are answered with pongs at once (Binance drops a
client that does not pong), :meth:`WsConnection.ping` waits for its pong, a close frame is
answered and ends the connection with :class:`ConnectionClosed`, fragmented messages are
joined, a message over ``max_message_size`` closes the connection (1009). A refused
handshake raises :class:`ConnectionRejected` (with the HTTP status), other handshake failures
:class:`HandshakeError`; the stream's reconnect loop retries on all of them.

Sends (control messages, pings, pongs, close) share a lock: one writer at a time, while one
task reads.
"""

from __future__ import annotations

import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, ProtocolError

__all__ = [
    "ConnectionClosed",
    "ConnectionRejected",
    "HandshakeError",
    "WsConnection",
    "open_websocket",
]

RECEIVE_BYTES = 64 * 1024
"""Bytes per socket read (~400 market messages)."""
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
PING_PAYLOAD_BYTES = 8
REJECT_BODY_BYTES = 200
"""How much of a refused handshake's body goes into the error."""
CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006
"""RFC 6455: no close frame was received (never sent on the wire)."""
CLOSE_TOO_BIG = 1009
DEFAULT_PORTS = {"ws": 80, "wss": 443}

Message = str | bytes


class HandshakeError(Exception):
    """The websocket handshake failed (connection lost or a malformed answer)."""


class ConnectionRejected(HandshakeError):
    """The server answered the handshake with an HTTP status instead of ``101``."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body
        text = body[:REJECT_BODY_BYTES].decode("utf-8", "replace").strip()
        super().__init__(
            f"websocket handshake rejected: HTTP {status_code}" + (f" {text}" * bool(text))
        )


class ConnectionClosed(Exception):
    """The connection ended: the server's close frame (``code``, ``reason``) or a lost socket."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"websocket closed: {code}" + (f" {reason}" * bool(reason)))


def _split_url(url: str) -> tuple[str, int, str, str, bool]:
    """``wss://h:9443/stream?x`` -> (host, port, Host header, resource, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise HandshakeError(f"not a websocket URL: {url!r}")
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return parts.hostname, port, host_header, resource, parts.scheme == "wss"


class WsConnection:
    """An open client websocket (see module doc). Made by :func:`open_websocket`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        receive_bytes: int = RECEIVE_BYTES,
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_size
        self._receive_bytes = receive_bytes
        self._send_lock = trio.Lock()
        self._parts: list[Message] = []  # the fragments of a message not finished yet
        self._size = 0
        self._pending: deque[Message] = deque()  # read but not yet handed out
        self._pending_ns = 0
        self._pings: dict[bytes, trio.Event] = {}  # in sending order
        self._buffered = True  # wsproto may hold frames read with the handshake's answer
        self.closed: ConnectionClosed | None = None

    # ------------------------------------------------------------------ receiving
    async def receive_batch(self) -> tuple[list[Message], int]:
        """The complete messages of the next socket read(s) (at least one), in order, and the
        receive time (``time.time_ns()``) of the read that completed them."""
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
            return batch, self._pending_ns
        while True:
            out, recv_ns = await self._read()
            if out:
                return out, recv_ns

    async def get_message(self) -> Message:
        """The next message (one at a time, for request/answer exchanges)."""
        while not self._pending:
            batch, self._pending_ns = await self._read()
            self._pending.extend(batch)
        return self._pending.popleft()

    async def _read(self) -> tuple[list[Message], int]:
        if self.closed is not None:
            raise self.closed
        ws = self._ws
        if self._buffered:
            self._buffered = False
            recv_ns = time.time_ns()
            return await self._parse(), recv_ns
        try:
            data = await self._stream.receive_some(self._receive_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = ConnectionClosed(CLOSE_ABNORMAL, f"connection lost: {exc}")
            self._wake_pings()
            raise self.closed from exc
        recv_ns = time.time_ns()
        if not data:
            self.closed = ConnectionClosed(CLOSE_ABNORMAL, "connection lost")
            self._wake_pings()
            raise self.closed
        ws.receive_data(bytes(data))  # bytes(b) is b itself: no copy
        return await self._parse(), recv_ns

    async def _parse(self) -> list[Message]:
        """Every event wsproto has: complete messages out, control frames answered."""
        out: list[Message] = []
        for event in self._ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                data_ = event.data  # type: ignore[attr-defined]
                if event.message_finished and not self._parts:  # type: ignore[attr-defined]
                    # the usual case: a whole message in one frame, in one read
                    if len(data_) > self._max:
                        await self._too_big()
                        break
                    out.append(data_ if kind is TextMessage else bytes(data_))
                    continue
                self._size += len(data_)
                if self._size > self._max:
                    await self._too_big()
                    break
                self._parts.append(data_ if kind is TextMessage else bytes(data_))
                if event.message_finished:  # type: ignore[attr-defined]
                    joined = "" if kind is TextMessage else b""
                    out.append(joined.join(self._parts))  # type: ignore[arg-type]
                    self._parts.clear()
                    self._size = 0
            elif kind is Ping:
                await self._send(event.response())  # type: ignore[attr-defined]
            elif kind is Pong:
                self._on_pong(event.payload)  # type: ignore[attr-defined]
            elif kind is CloseConnection:
                await self._on_close(event)  # type: ignore[arg-type]
                break
        # messages before a close (or an oversized message) are still delivered; the next
        # read raises ``self.closed``
        return out

    async def _too_big(self) -> None:
        reason = f"message over {self._max} bytes"
        await self._close_quietly(CLOSE_TOO_BIG, reason)
        self.closed = ConnectionClosed(CLOSE_TOO_BIG, reason)
        self._wake_pings()

    async def _on_close(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            try:
                await self._send(event.response())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server may not wait for our answer
        self.closed = ConnectionClosed(event.code, event.reason or "")
        self._wake_pings()

    # ------------------------------------------------------------------ sending
    async def _send(
        self, event: TextMessage | BytesMessage | Ping | Pong | CloseConnection
    ) -> None:
        async with self._send_lock:
            if self.closed is not None and not isinstance(event, CloseConnection):
                raise self.closed
            await self._stream.send_all(self._ws.send(event))

    async def send_message(self, message: Message) -> None:
        """One text (``str``) or binary (``bytes``) message."""
        if isinstance(message, str):
            await self._send(TextMessage(data=message))
        else:
            await self._send(BytesMessage(data=message))

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (a pong to a later ping counts too)."""
        if payload is None:
            payload = os.urandom(PING_PAYLOAD_BYTES)
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already waiting")
        event = self._pings[payload] = trio.Event()
        try:
            await self._send(Ping(payload=payload))
            await event.wait()
        finally:
            self._pings.pop(payload, None)
        if self.closed is not None:
            raise self.closed

    def _on_pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return  # unsolicited (allowed by RFC 6455) or for a ping that gave up
        for key in list(self._pings):  # a pong answers its ping and every earlier one
            self._pings.pop(key).set()
            if key == payload:
                break

    def _wake_pings(self) -> None:
        for event in self._pings.values():
            event.set()
        self._pings.clear()

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            if self._ws.state is ConnectionState.OPEN:
                await self._send(CloseConnection(code=code, reason=reason))
        except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
            pass

    async def aclose(self, grace: float) -> None:
        """Send a close frame (if still open, within ``grace`` seconds) and close the socket.
        Safe to call while cancelled: the close frame is sent under a shield."""
        with trio.move_on_after(grace, shield=True):
            await self._close_quietly(CLOSE_NORMAL, "")
        if self.closed is None:
            self.closed = ConnectionClosed(CLOSE_NORMAL, "closed by us")
        self._wake_pings()
        await trio.aclose_forcefully(self._stream)


async def _connect(
    url: str,
    *,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    receive_bytes: int,
) -> WsConnection:
    host, port, host_header, resource, tls = _split_url(url)
    with trio.fail_after(connect_timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        try:
            if tls:
                stream = trio.SSLStream(
                    stream,
                    ssl_context or ssl.create_default_context(),
                    server_hostname=host,
                    https_compatible=True,
                )
                await stream.do_handshake()
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host=host_header, target=resource)))
            await _await_accept(stream, ws, receive_bytes)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    conn = WsConnection(stream, ws, max_message_size=max_message_size, receive_bytes=receive_bytes)
    return conn


def _handshake_events(ws: WSConnection) -> Iterator[Any]:
    """``ws.events()``, lazily (what follows the ``101`` stays buffered for the connection),
    with a malformed answer (e.g. a wrong ``Sec-WebSocket-Accept``) as :class:`HandshakeError`
    like every other handshake failure."""
    events = ws.events()
    while True:
        try:
            event = next(events)
        except StopIteration:
            return
        except ProtocolError as exc:
            raise HandshakeError(f"bad websocket handshake answer: {exc}") from None
        yield event


async def _await_accept(stream: trio.abc.Stream, ws: WSConnection, receive_bytes: int) -> None:
    """Read the handshake's answer. Frames that came in the same read as the ``101`` stay in
    ``ws``'s buffer: the connection's first read parses them before it reads the socket."""
    rejected: int | None = None
    body = b""
    while True:
        data = await stream.receive_some(receive_bytes)
        if not data:
            if rejected is not None:
                raise ConnectionRejected(rejected, body)
            raise HandshakeError("connection closed during the websocket handshake")
        try:
            ws.receive_data(bytes(data))  # bytes(b) is b itself: no copy
        except ProtocolError as exc:
            raise HandshakeError(f"bad websocket handshake answer: {exc}") from None
        for event in _handshake_events(ws):
            if isinstance(event, AcceptConnection):
                return
            if isinstance(event, RejectConnection):
                rejected = event.status_code
                if not event.has_body:
                    raise ConnectionRejected(rejected, b"")
            elif isinstance(event, RejectData):
                body += bytes(event.data)
                if event.body_finished or len(body) >= REJECT_BODY_BYTES:
                    raise ConnectionRejected(rejected or 0, body)


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_bytes: int = RECEIVE_BYTES,
) -> AsyncIterator[WsConnection]:
    """Connect (TCP, TLS for ``wss://``, the websocket handshake; all within
    ``connect_timeout``), yield the connection, close it on the way out."""
    conn = await _connect(
        url,
        connect_timeout=connect_timeout,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        receive_bytes=receive_bytes,
    )
    try:
        yield conn
    finally:
        await conn.aclose(disconnect_timeout)
