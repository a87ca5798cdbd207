"""A lean websocket server on trio + wsproto for the stream tests and ``bench_ws_reader``.

Unlike trio-websocket's server it lets a test control the wire: send many pre-encoded frames
in one socket write, fragment a message, send a ping and wait for the pong, close with a code,
reject the handshake with an HTTP status, or serve over TLS (``ssl_context``). Each accepted
connection runs ``script(conn)`` after the handshake; the connection is closed when the
script returns.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

__all__ = ["ServerConn", "WsServer", "encode_frames"]

READ_BYTES = 64 * 1024


def encode_frames(messages: list[str]) -> bytes:
    """Server-to-client text frames (unmasked), back to back, as one byte string."""
    proto = FrameProtocol(client=False, extensions=[])
    return b"".join(proto.send_data(m, fin=True) for m in messages)


class ServerConn:
    """One accepted websocket connection (server side)."""

    def __init__(self, stream: trio.abc.Stream, request: Request, ws: WSConnection) -> None:
        self.stream = stream
        self.path = request.target
        self.host = request.host  # the client's Host header
        self.ws = ws
        self.received: list[str | bytes] = []  # complete client messages, in order
        self.pongs: list[bytes] = []  # payloads of the client's pongs
        self.pings: list[bytes] = []  # payloads of the client's pings (answered)
        self.closed: CloseConnection | None = None  # the client's close frame
        self.closed_event = trio.Event()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self._wake = trio.Event()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_text(self, message: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=message)))

    async def send_text_part(self, part: str, last: bool) -> None:
        """One frame of a (possibly fragmented) text message."""
        await self.stream.send_all(self.ws.send(TextMessage(data=part, message_finished=last)))

    async def send_bytes(self, message: bytes) -> None:
        await self.stream.send_all(self.ws.send(BytesMessage(data=message)))

    async def send_fragments(self, parts: list[str]) -> None:
        """One text message split into ``len(parts)`` frames, in one socket write."""
        out = b"".join(
            self.ws.send(TextMessage(data=p, message_finished=i == len(parts) - 1))
            for i, p in enumerate(parts)
        )
        await self.stream.send_all(out)

    async def ping(self, payload: bytes) -> None:
        await self.stream.send_all(self.ws.send(Ping(payload=payload)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.stream.send_all(self.ws.send(CloseConnection(code=code, reason=reason)))

    async def send_close_frame(self, code: int) -> None:
        """A close frame written directly (works whatever wsproto's state)."""
        proto = FrameProtocol(client=False, extensions=[])
        await self.stream.send_all(proto.close(code=code))

    async def wait_closed(self) -> CloseConnection:
        """The client's close frame (read by a task draining this connection)."""
        await self.closed_event.wait()
        assert self.closed is not None
        return self.closed

    async def recv(self) -> str | bytes:
        """The next complete client message (pings answered, pongs recorded meanwhile)."""
        start = len(self.received)
        while len(self.received) == start:
            await self.read_once()
        return self.received[start]

    async def wait_pong(self) -> bytes:
        start = len(self.pongs)
        while len(self.pongs) == start:
            await self.read_once()
        return self.pongs[start]

    async def read_once(self) -> None:
        data = await self.stream.receive_some(READ_BYTES)
        if not data:
            raise trio.BrokenResourceError("client closed the TCP connection")
        self.ws.receive_data(bytes(data))  # bytes(b) is b itself: no copy
        for event in self.ws.events():
            await self._on_event(event)

    async def drain(self) -> None:
        """Read (and answer) until the client goes away."""
        try:
            while True:
                await self.read_once()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.received.append("".join(self._text))
                self._text.clear()
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                self.received.append(b"".join(self._bytes))
                self._bytes.clear()
        elif isinstance(event, Ping):
            self.pings.append(bytes(event.payload))
            await self.stream.send_all(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            self.closed = event
            self.closed_event.set()
            if self.ws.state.name == "REMOTE_CLOSING":
                await self.stream.send_all(self.ws.send(event.response()))
            raise trio.ClosedResourceError("client closed the websocket")


Script = Callable[[ServerConn], Awaitable[None]]


class WsServer:
    """Accepts websocket connections on 127.0.0.1; runs ``script(conn)`` for each.

    ``reject`` (an HTTP status) refuses every handshake, ``reject_next`` only the next one;
    ``greeting`` messages go out in the same write as the handshake's answer;
    ``ssl_context`` serves TLS.
    """

    def __init__(
        self,
        script: Script,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reject: int | None = None,
        greeting: list[str] | None = None,
    ) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.reject = reject
        self.reject_next: int | None = None
        self.refused = 0
        self.greeting = greeting or []
        self.conns: list[ServerConn] = []
        self.port = 0
        self.errors: list[BaseException] = []

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.conns]

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        sock = listeners[0].socket
        self.port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            while True:
                tcp = await listeners[0].accept()
                nursery.start_soon(self._handle, tcp)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        try:
            if self.ssl_context is not None:
                stream = trio.SSLStream(tcp, self.ssl_context, server_side=True)
                await stream.do_handshake()
            ws = WSConnection(ConnectionType.SERVER)
            request = await self._request(stream, ws)
            if request is None:
                return
            status = self.reject if self.reject is not None else self.reject_next
            if status is not None:
                self.reject_next = None
                self.refused += 1
                await stream.send_all(ws.send(RejectConnection(status_code=status)))
                return
            answer = ws.send(AcceptConnection())
            answer += b"".join(ws.send(TextMessage(data=m)) for m in self.greeting)
            await stream.send_all(answer)
            conn = ServerConn(stream, request, ws)
            self.conns.append(conn)
            await self.script(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:  # a test's script failed: keep it for the test to see
            self.errors.append(exc)
        finally:
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _request(stream: trio.abc.Stream, ws: WSConnection) -> Request | None:
        while True:
            data = await stream.receive_some(READ_BYTES)
            if not data:
                return None
            ws.receive_data(bytes(data))  # bytes(b) is b itself: no copy
            for event in ws.events():
                if isinstance(event, Request):
                    return event
