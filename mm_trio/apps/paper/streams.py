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

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.websockets import WebSocket

from mm_trio.apps.paper.core import Venue, json_bytes, parse_stream

log = logging.getLogger(__name__)

SEND_QUEUE = 10_000
MAX_STREAMS = 1024


class Connection:
    """Outgoing queue and cancel scope of one websocket connection."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](SEND_QUEUE)
        self.scope = trio.CancelScope()
        self.overflowed = False

    def send_nowait(self, message: bytes) -> None:
        try:
            self.send_ch.send_nowait(message)
        except trio.WouldBlock:
            self.overflowed = True
            self.scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _sender(websocket: WebSocket, conn: Connection) -> None:
    async for message in conn.recv_ch:
        await websocket.send_text(message.decode())


async def run_connection(websocket: WebSocket, conn: Connection,
                         on_text: Callable[[str], Awaitable[None]]) -> None:
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


class StreamConnection(Connection):
    """A market-stream client: its subscriptions and payload wrapping."""

    def __init__(self, venue: Venue, combined: bool) -> None:
        super().__init__(venue)
        self.combined = combined
        self.streams: dict[str, None] = {}

    def sink(self, stream: str, payload: bytes) -> None:
        if self.combined:
            self.send_nowait(b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}")
        else:
            self.send_nowait(payload)

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
        self.streams.clear()

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
            self._error(3, f"Invalid JSON: {exc}")
            return
        if not isinstance(req, dict):
            self._error(2, "Invalid request: expected an object")
            return
        req_id = req.get("id")
        if (isinstance(req_id, bool) or not isinstance(req_id, (int, str))
                or (isinstance(req_id, int) and req_id < 0)):
            self._error(2, "Invalid request: request ID must be an unsigned integer")
            return
        method = req.get("method")
        params = req.get("params", [])
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY",
                          "GET_PROPERTY"):
            self._error(2, f"Invalid request: unknown variant {method!r}, expected one of "
                        "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY",
                        req_id)
            return
        if not isinstance(params, list):
            self._error(2, "Invalid request: params must be an array", req_id)
            return
        result: Any = None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            canon: list[str] = []
            for name in params:
                c = parse_stream(name, self.venue.natives) if isinstance(name, str) else None
                if c is None:
                    self._error(2, f"Invalid request: invalid stream name {name!r}", req_id)
                    return
                canon.append(c)
            if method == "SUBSCRIBE":
                if len(set(canon) | set(self.streams)) > MAX_STREAMS:
                    self._error(2, "Invalid request: too many streams", req_id)
                    return
                await self.subscribe(canon)
            else:
                self.unsubscribe(canon)
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(self.streams)
        elif method == "SET_PROPERTY":
            if len(params) != 2 or params[0] != "combined":
                self._error(0, "Unknown property", req_id)
                return
            if not isinstance(params[1], bool):
                self._error(1, "Invalid value type: expected Boolean", req_id)
                return
            self.combined = params[1]
        else:  # GET_PROPERTY
            if params != ["combined"]:
                self._error(0, "Unknown property", req_id)
                return
            result = self.combined
        self.send_nowait(json_bytes({"result": result, "id": req_id}))


async def market_ws(websocket: WebSocket) -> None:
    """Starlette websocket endpoint for ``/ws``, ``/ws/...`` and ``/stream``."""
    venue: Venue = websocket.app.state.venue
    path = websocket.url.path
    if path.rstrip("/") == "/stream":
        combined = True
        raw = websocket.query_params.get("streams", "")
    else:
        combined = False
        raw = path[len("/ws"):].strip("/")
    names = [n for n in raw.split("/") if n]
    canon = [parse_stream(n, venue.natives) for n in names]
    if any(c is None for c in canon) or len(canon) > MAX_STREAMS:
        await websocket.close(code=1008)
        return
    await websocket.accept()
    conn = StreamConnection(venue, combined)
    try:
        await conn.subscribe([c for c in canon if c is not None])
        await run_connection(websocket, conn, conn.on_text)
    finally:
        conn.close()
