"""The venue's listening port: market streams served by a lean trio + wsproto server, every
other connection handed to hypercorn.

Why: through hypercorn -> starlette -> wsproto, every market message costs a task switch or
more, an ASGI event dict, a ``str`` round trip and its own ``send()`` system call (~190 µs a
message all told). Here a connection's sender wakes once for everything queued and writes it
in ONE socket write, each message framed by hand (a server frame is a 2-10 byte header and
the payload, unmasked), so the cost per message is a few µs.

Each accepted connection's request head is read first (at most :data:`MAX_HEAD_BYTES`, within
:data:`HEAD_TIMEOUT_S`). A websocket upgrade of ``/ws``, ``/ws/<streams>`` or
``/stream?streams=...`` is served here; anything else (REST, ``/ws-api/v3``, admin, a bad
request) goes to hypercorn's own connection handler together with the bytes already read, so
hypercorn sees the connection exactly as the client sent it.

The market-stream protocol is the one :mod:`~mm_trio.apps.paper.streams` implements (stream
names, control requests, combined wrapping); this module only carries it: pings every
``ws_ping_interval`` seconds as hypercorn did, pongs to the client's pings, the close
handshake, client messages capped at :data:`~mm_trio.apps.paper.config.MAX_BODY_BYTES`
(close 1009 beyond), and a client that lets :data:`~mm_trio.apps.paper.streams.SEND_QUEUE`
messages pile up is disconnected as too slow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import ProtocolError, RemoteProtocolError

from mm_trio.apps.paper import streams
from mm_trio.apps.paper.config import MAX_BODY_BYTES
from mm_trio.apps.paper.streams import StreamConnection, stream_request
from mm_trio.apps.paper.venue import PaperVenue

__all__ = ["HEAD_TIMEOUT_S", "MAX_HEAD_BYTES", "serve_front", "text_frame"]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
"""Request head read before choosing the server (h11's, so hypercorn's, own limit)."""
HEAD_TIMEOUT_S = 10.0
"""A client that has not sent a whole request head by then goes to hypercorn as it is."""
RECV_BYTES = 64 * 1024
_FORBIDDEN = 403  # what hypercorn answers a websocket the app closes before accepting
_END_OF_HEAD = b"\r\n\r\n"
_MARKET_PATHS = ("/ws", "/stream")
_TEXT_OPCODE = 0x81  # FIN + text
_LEN_16 = 126
_LEN_64 = 127
_MAX_LEN_7 = 125
_MAX_LEN_16 = 0xFFFF


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame carrying ``payload`` (RFC 6455 §5.2)."""
    n = len(payload)
    if n <= _MAX_LEN_7:
        return bytes((_TEXT_OPCODE, n)) + payload
    if n <= _MAX_LEN_16:
        return bytes((_TEXT_OPCODE, _LEN_16)) + n.to_bytes(2, "big") + payload
    return bytes((_TEXT_OPCODE, _LEN_64)) + n.to_bytes(8, "big") + payload


class _Prefixed(trio.abc.HalfCloseableStream):
    """A socket stream whose first bytes (already read) are given back first."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self.stream = stream
        self.socket = stream.socket  # hypercorn reads the peer's address from it
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _read_head(stream: trio.SocketStream) -> bytes:
    """The bytes of the request head (and any after it), or less at the limits."""
    buf = bytearray()
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while _END_OF_HEAD not in buf and len(buf) < MAX_HEAD_BYTES:
            data = await stream.receive_some(RECV_BYTES)
            if not data:
                break
            buf += data
    return bytes(buf)


def _market_path(head: bytes) -> bool:
    """True if ``head`` is a whole request head upgrading a market-stream path."""
    if _END_OF_HEAD not in head:
        return False
    line, _, headers = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":  # noqa: PLR2004 -- method, target, version
        return False
    path = unquote(urlsplit(parts[1].decode("latin-1")).path)
    if path not in _MARKET_PATHS and not path.startswith("/ws/"):
        return False
    return b"websocket" in headers.lower()


class _Sockets:
    """The websocket and its socket: every write goes through one lock (the sender's batch,
    pings, pongs and the close frame must not interleave)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.lock = trio.Lock()

    async def write(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def write_frames(self, data: bytes) -> None:
        """Market frames (framed by hand): only while the websocket is open."""
        async with self.lock:
            if self.ws.state is WsState.OPEN:
                await self.stream.send_all(data)

    async def send_event(self, event: Any) -> None:
        """A wsproto event, if the state still allows it when our turn to write comes: once
        a close has begun only the close frame may go out (a ping that fell due while the
        close answer waited for the lock is dropped, not an error)."""
        async with self.lock:
            state = self.ws.state
            if state in (WsState.OPEN, WsState.CONNECTING) or (
                state is WsState.REMOTE_CLOSING and isinstance(event, CloseConnection)
            ):
                await self.stream.send_all(self.ws.send(event))


async def _market_sender(sock: _Sockets, conn: StreamConnection) -> None:
    while True:
        batch = await conn.take()
        await sock.write_frames(b"".join([text_frame(m) for m in batch]))
        conn.done(len(batch))


async def _pinger(sock: _Sockets, interval: float) -> None:
    while True:  # as hypercorn: one ping at once, then every interval
        await sock.send_event(Ping())
        await trio.sleep(interval)


async def _reader(sock: _Sockets, on_text: Callable[[str], Awaitable[None]]) -> None:
    """Client frames until the client closes or goes away."""
    ws = sock.ws
    parts: list[str] = []
    size = 0
    while True:
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                data = event.data
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                size += len(text)
                if size > MAX_BODY_BYTES:
                    await sock.send_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    return
                parts.append(text)
                if event.message_finished:
                    message, parts, size = "".join(parts), [], 0
                    await on_text(message)
            elif isinstance(event, Ping):
                await sock.send_event(event.response())
            elif isinstance(event, CloseConnection):
                if ws.state is WsState.REMOTE_CLOSING:
                    await sock.send_event(event.response())
                return
        data = await sock.stream.receive_some(RECV_BYTES)
        if not data:
            return
        ws.receive_data(data)


async def _serve_market(stream: trio.SocketStream, head: bytes, venue: PaperVenue) -> None:
    sock = _Sockets(stream)
    ws = sock.ws
    try:
        ws.receive_data(head)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError as exc:
        await sock.write(ws.send(exc.event_hint or RejectConnection()))
        return
    if request is None:
        return
    target = urlsplit(request.target)
    path = unquote(target.path)
    asked = stream_request(path, parse_qs(target.query).get("streams", [""])[-1], venue)
    if asked is None:
        await sock.send_event(RejectConnection(status_code=_FORBIDDEN))
        return
    combined, canon = asked
    await sock.send_event(AcceptConnection())
    conn = StreamConnection(venue, combined)
    venue.ws_scopes.add(conn.scope)
    try:
        with conn.scope:
            await conn.subscribe(canon)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_ended_by, _market_sender(sock, conn), nursery.cancel_scope)
                interval = venue.config.ws_ping_interval
                if interval is not None:
                    nursery.start_soon(_pinger, sock, interval)
                await _reader(sock, conn.on_text)
                nursery.cancel_scope.cancel()
    finally:
        conn.end()
        venue.ws_scopes.discard(conn.scope)
        conn.close()
    if conn.overflowed:
        log.warning(
            "market-stream client too slow (%d messages queued): disconnected", streams.SEND_QUEUE
        )


async def _ended_by(coro: Awaitable[None], scope: trio.CancelScope) -> None:
    """Run ``coro``; when it ends, however, end the connection (``scope``)."""
    try:
        await coro
    finally:
        scope.cancel()


async def serve_front(
    app: Any,
    hc_config: HypercornConfig,
    venue: PaperVenue,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port) until cancelled; ``started(bound port)``."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    for extra in listeners[1:]:  # one address, as hypercorn bound one socket
        await extra.aclose()
    listener = listeners[0]
    hc_config.set_statsd_logger_class(StatsdLogger)
    context = WorkerContext(None)
    wrapped = wrap_app(app, hc_config.wsgi_max_body_size, "asgi")

    async def handle(stream: trio.SocketStream) -> None:
        try:
            head = await _read_head(stream)
            if not head:
                return
            if _market_path(head):
                await _serve_market(stream, head, venue)
            else:
                # hypercorn types its stream as SSL but serves a plain one (it duck-types)
                prefixed: Any = _Prefixed(stream, head)
                await TCPServer(wrapped, hc_config, context, ConnectionState({}), prefixed)
        except* (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            ProtocolError,
        ) as group:
            # the peer went away mid-read or mid-write (from any task of the connection)
            log.debug("connection ended: %r", group.exceptions[0])
        finally:
            await trio.aclose_forcefully(stream)

    task_status.started(listener.socket.getsockname()[1])
    await trio.serve_listeners(handle, [listener])
