"""Websocket market streams: ``/ws/<stream>[/<stream>...]``, ``/ws`` and ``/stream?streams=``.

As on Binance: raw streams (``/ws``) send the payload alone, combined streams (``/stream``)
wrap it as ``{"stream": name, "data": payload}``; live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` / ``GET_PROPERTY`` requests get
``{"result": ..., "id": n}`` replies, bad requests ``{"code": n, "msg": ..., "id": n}``.
Server pings are hypercorn's (``websocket_ping_interval``). A client that does not keep up
(its send queue overflows) is disconnected, as Binance does.

:func:`run_connection` is the lifecycle shared with the WebSocket API: one task sends from a
queue, the handler reads; the connection's cancel scope is registered with the venue so the
``drop_websockets`` fault can cut it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.websockets import WebSocket

from mm_trio.apps.paper.hub import parse_stream
from mm_trio.apps.paper.params import json_bytes
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.exchange.binance.protocol import MAX_STREAMS

log = logging.getLogger(__name__)

SEND_QUEUE = 10_000
"""Messages a connection may have queued: one more and it is dropped as too slow."""
MAX_WRITE_BYTES = 256 * 1024
"""A sender's batch: messages taken at once, up to about this many bytes (one socket write
on the lean stream server)."""
MAX_CACHED_STREAMS = 4096
"""Stream names whose combined-message prefix is kept encoded."""
MAX_CONNECTION_STATS = 64
"""Market-stream connections whose counters ``/_admin/stats`` keeps (the latest ones)."""
CONTROL_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# error codes of market-stream control requests (their own numbering, not the REST codes)
_UNKNOWN_PROPERTY = 0
_INVALID_VALUE = 1
_INVALID_REQUEST = 2
_INVALID_JSON = 3
POLICY_VIOLATION = 1008
"""Websocket close code for a connection asking for streams we do not serve."""


class _Refused(Exception):
    """A control request answered with ``{"code", "msg", "id"}`` and nothing else done."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class Connection:
    """Outgoing queue and cancel scope of one websocket connection.

    The queue holds at most :data:`SEND_QUEUE` messages: one more and the connection is
    cancelled as too slow (``overflowed``). Its sender takes everything queued at once
    (:meth:`take`), so a fast transport writes many messages per wake-up.
    """

    def __init__(self, venue: PaperVenue) -> None:
        self.venue = venue
        self.outbox: deque[bytes] = deque()
        self.in_flight = 0  # messages taken by the sender and not yet written
        self._wake: trio.Event | None = None  # set while the sender waits for messages
        self.scope = trio.CancelScope()
        self.overflowed = False
        self.ended = False
        self.sent = 0  # messages handed to the websocket

    def send_nowait(self, message: bytes) -> None:
        if self.ended:
            return
        if len(self.outbox) >= SEND_QUEUE:
            self.overflowed = True
            self.ended = True
            self.scope.cancel()
            return
        self.outbox.append(message)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def end(self) -> None:
        """The connection is over: queue nothing more, drop what is queued."""
        self.ended = True
        self.outbox.clear()
        self.in_flight = 0

    @property
    def queued(self) -> int:
        """Messages queued or being written."""
        return len(self.outbox) + self.in_flight

    async def take(self, max_bytes: int = MAX_WRITE_BYTES) -> list[bytes]:
        """Wait for queued messages and take them all (oldest first), up to about
        ``max_bytes`` (at least one); :meth:`done` reports them written."""
        while not self.outbox:
            self._wake = wake = trio.Event()
            await wake.wait()
        outbox = self.outbox
        if len(outbox) <= 1:
            batch = [outbox.popleft()]
        else:
            batch = []
            size = 0
            while outbox and size < max_bytes:
                message = outbox.popleft()
                batch.append(message)
                size += len(message)
        self.in_flight = len(batch)
        return batch

    def done(self, count: int) -> None:
        """``count`` messages taken by :meth:`take` were written."""
        self.sent += count
        self.in_flight = 0


async def _sender(websocket: WebSocket, conn: Connection) -> None:
    while True:
        for i, message in enumerate(batch := await conn.take()):
            await websocket.send_text(message.decode())
            conn.sent += 1
            conn.in_flight = len(batch) - i - 1


async def run_connection(
    websocket: WebSocket, conn: Connection, on_text: Callable[[str], Awaitable[None]]
) -> None:
    """Serve an accepted websocket until it closes, is dropped, or overflows."""
    venue = conn.venue
    venue.ws_scopes.add(conn.scope)
    try:
        with conn.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_guard, _sender(websocket, conn), nursery.cancel_scope)
                while True:
                    msg = await websocket.receive()
                    if msg["type"] == "websocket.disconnect":
                        break
                    text = msg.get("text")
                    if text is None:
                        raw = msg.get("bytes") or b""
                        text = raw.decode("utf-8", "replace")
                    await on_text(text)
                nursery.cancel_scope.cancel()
    except Exception as exc:  # the peer went away mid-send/receive: just end
        log.debug("websocket ended: %r", exc)
    finally:
        conn.end()
        venue.ws_scopes.discard(conn.scope)
    if conn.overflowed:
        log.warning("websocket client too slow: disconnected")


async def _guard(coro: Awaitable[None], scope: trio.CancelScope) -> None:
    """Run ``coro``; when it ends (e.g. the peer is gone), end the connection."""
    try:
        await coro
    except Exception as exc:
        log.debug("websocket send failed: %r", exc)
    finally:
        scope.cancel()


@functools.lru_cache(maxsize=MAX_CACHED_STREAMS)
def _combined_prefix(stream: str) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":'


class _CombinedCache:
    """The combined-stream message of the payload last published: the hub hands the same
    payload object to every subscriber, so each event is wrapped once, not once per
    connection."""

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._stream = ""
        self._message = b""

    def wrap(self, stream: str, payload: bytes) -> bytes:
        if payload is not self._payload or stream != self._stream:
            self._payload, self._stream = payload, stream
            self._message = _combined_prefix(stream) + payload + b"}"
        return self._message


_COMBINED = _CombinedCache()


class StreamConnection(Connection):
    """A market-stream client: its subscriptions and payload wrapping.

    It counts the market messages queued for it (``market_messages``, with the wall-clock
    times of the first and the last) and those its sender handed to the socket (``sent``,
    control replies included): ``GET /_admin/stats`` shows them, so a client can check it
    lost nothing.
    """

    def __init__(self, venue: PaperVenue, combined: bool) -> None:
        super().__init__(venue)
        self.combined = combined
        self.streams: dict[str, None] = {}
        self.market_messages = 0
        self.first_market_ns = 0
        self.last_market_ns = 0
        self.closed = False
        venue.stream_connections.append(self)
        del venue.stream_connections[:-MAX_CONNECTION_STATS]

    def sink(self, stream: str, payload: bytes) -> None:
        now = time.time_ns()
        if not self.market_messages:
            self.first_market_ns = now
        self.last_market_ns = now
        self.market_messages += 1
        if self.combined:
            self.send_nowait(_COMBINED.wrap(stream, payload))
        else:
            self.send_nowait(payload)

    def stats(self) -> dict[str, Any]:
        """This connection's counters (see the class doc)."""
        return {
            "streams": list(self.streams),
            "combined": self.combined,
            "open": not self.closed,
            "market_messages": self.market_messages,
            "first_market_ns": self.first_market_ns,
            "last_market_ns": self.last_market_ns,
            "sent": self.sent,
            "queued": self.queued,
            "overflowed": self.overflowed,
        }

    async def subscribe(self, streams: list[str]) -> None:
        new = [s for s in streams if s not in self.streams]
        for s in new:
            self.streams[s] = None
            native = s.split("@", 1)[0].upper()
            symbol = self.venue.natives.get(native)
            if symbol is not None:
                await self.venue.ensure_market(symbol)
        self.venue.hub.subscribe(self.sink, new)

    def unsubscribe(self, streams: list[str]) -> None:
        gone = [s for s in streams if s in self.streams]
        for s in gone:
            del self.streams[s]
        self.venue.hub.unsubscribe(self.sink, gone)

    def close(self) -> None:
        self.venue.hub.unsubscribe(self.sink, list(self.streams))
        self.closed = True

    def _error(self, code: int, msg: str, req_id: Any = None) -> None:
        body: dict[str, Any] = {"code": code, "msg": msg}
        if req_id is not None:
            body["id"] = req_id
        self.send_nowait(json_bytes(body))

    async def on_text(self, text: str) -> None:
        """Handle one control request."""
        try:
            req = json.loads(text)
        except ValueError as exc:
            self._error(_INVALID_JSON, f"Invalid JSON: {exc}")
            return
        if not isinstance(req, dict):
            self._error(_INVALID_REQUEST, "Invalid request: expected an object")
            return
        req_id = req.get("id")
        if (
            isinstance(req_id, bool)
            or not isinstance(req_id, (int, str))
            or (isinstance(req_id, int) and req_id < 0)
        ):
            self._error(_INVALID_REQUEST, "Invalid request: request ID must be an unsigned integer")
            return
        try:
            result = await self._control(req.get("method"), req.get("params", []))
        except _Refused as refused:
            self._error(refused.code, refused.msg, req_id)
            return
        self.send_nowait(json_bytes({"result": result, "id": req_id}))

    async def _control(self, method: Any, params: Any) -> Any:
        """The result of one well-formed control request (``_Refused`` if refused)."""
        if method not in CONTROL_METHODS:
            raise _Refused(
                _INVALID_REQUEST,
                f"Invalid request: unknown variant {method!r}, "
                f"expected one of {', '.join(CONTROL_METHODS)}",
            )
        if not isinstance(params, list):
            raise _Refused(_INVALID_REQUEST, "Invalid request: params must be an array")
        if method == "SUBSCRIBE":
            await self._subscribe_request(params)
        elif method == "UNSUBSCRIBE":
            self.unsubscribe(self._stream_names(params))
        elif method == "LIST_SUBSCRIPTIONS":
            return list(self.streams)
        elif method == "SET_PROPERTY":
            self._set_property(params)
        else:  # GET_PROPERTY
            if params != ["combined"]:
                raise _Refused(_UNKNOWN_PROPERTY, "Unknown property")
            return self.combined
        return None

    def _stream_names(self, params: list[Any]) -> list[str]:
        canon: list[str] = []
        for name in params:
            c = parse_stream(name, self.venue.natives) if isinstance(name, str) else None
            if c is None:
                raise _Refused(_INVALID_REQUEST, f"Invalid request: invalid stream name {name!r}")
            canon.append(c)
        return canon

    async def _subscribe_request(self, params: list[Any]) -> None:
        canon = self._stream_names(params)
        if len(set(canon) | set(self.streams)) > MAX_STREAMS:
            raise _Refused(_INVALID_REQUEST, "Invalid request: too many streams")
        await self.subscribe(canon)

    def _set_property(self, params: list[Any]) -> None:
        if len(params) != 2 or params[0] != "combined":
            raise _Refused(_UNKNOWN_PROPERTY, "Unknown property")
        if not isinstance(params[1], bool):
            raise _Refused(_INVALID_VALUE, "Invalid value type: expected Boolean")
        self.combined = params[1]


def stream_request(path: str, streams: str, venue: PaperVenue) -> tuple[bool, list[str]] | None:
    """(combined, canonical stream names) a market-stream request asks for, or None if it
    asks for a stream we do not serve (or too many): ``path`` is the request's (decoded)
    path, ``streams`` its ``streams`` query parameter."""
    if path.rstrip("/") == "/stream":
        combined = True
        raw = streams
    else:
        combined = False
        raw = path[len("/ws") :].strip("/")
    names = [n for n in raw.split("/") if n]
    canon = [parse_stream(n, venue.natives) for n in names]
    if len(canon) > MAX_STREAMS:
        return None
    valid = [c for c in canon if c is not None]
    if len(valid) != len(canon):
        return None
    return combined, valid


async def market_ws(websocket: WebSocket) -> None:
    """Starlette websocket endpoint for ``/ws``, ``/ws/...`` and ``/stream`` (the lean
    server of :mod:`~mm_trio.apps.paper.front` serves them first; this one answers an
    upgrade on a connection hypercorn already serves, e.g. after a REST request)."""
    venue: PaperVenue = websocket.app.state.venue
    request = stream_request(websocket.url.path, websocket.query_params.get("streams", ""), venue)
    if request is None:
        await websocket.close(code=POLICY_VIOLATION)
        return
    await websocket.accept()
    conn = StreamConnection(venue, request[0])
    try:
        await conn.subscribe(request[1])
        await run_connection(websocket, conn, conn.on_text)
    finally:
        conn.close()
