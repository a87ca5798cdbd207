"""The venue's lean market-stream server (:mod:`mm_trio.apps.paper.front`): frames, batching,
pings, the close handshake, message caps, too-slow clients, and the hand-off of every other
connection to hypercorn on the same port."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from mm_trio.apps.paper import PaperServer, open_paper_venue, streams
from mm_trio.apps.paper.config import MAX_BODY_BYTES
from mm_trio.apps.paper.front import text_frame
from tests.test_venue_ws import venue_config

WAIT_S = 5.0


class RawClient:
    """A websocket client on wsproto over a trio socket: every event the server sent."""

    def __init__(self, sock: trio.SocketStream, ws: WSConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.pending: list[Any] = []
        self.reads = 0  # socket reads that brought data

    async def event(self) -> Any:
        """The next event (None when the server closed the socket)."""
        with trio.fail_after(WAIT_S):
            while not self.pending:
                data = await self.sock.receive_some(65536)
                if not data:
                    return None
                self.reads += 1
                self.ws.receive_data(data)
                self.pending += list(self.ws.events())
        return self.pending.pop(0)

    async def message(self) -> Any:
        """The next text message, parsed (pings answered on the way)."""
        while True:
            ev = await self.event()
            if isinstance(ev, TextMessage):
                return json.loads(ev.data)
            if isinstance(ev, Ping):
                await self.send(ev.response())
            elif ev is None or isinstance(ev, CloseConnection):
                raise AssertionError(f"connection ended: {ev!r}")

    async def send(self, event: Any) -> None:
        await self.sock.send_all(self.ws.send(event))


@asynccontextmanager
async def raw_client(server: PaperServer, target: str) -> AsyncIterator[RawClient]:
    sock = await trio.open_tcp_stream(server.host, server.port)
    ws = WSConnection(ConnectionType.CLIENT)
    client = RawClient(sock, ws)
    try:
        await client.send(Request(host=f"{server.host}:{server.port}", target=target))
        ev = await client.event()
        assert isinstance(ev, AcceptConnection), ev
        yield client
    finally:
        await sock.aclose()


@pytest.fixture
async def server() -> AsyncIterator[PaperServer]:
    async with open_paper_venue(venue_config(ws_ping_interval=None)) as srv:
        with trio.fail_after(WAIT_S):
            await srv.venue.hub.wait_quote("BTC/USDT")
        yield srv


def _open_client() -> WSConnection:
    """A client past the handshake with an in-memory wsproto server."""
    client, peer = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    peer.receive_data(client.send(Request(host="h", target="/")))
    assert isinstance(next(peer.events()), Request)
    client.receive_data(peer.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client


# lengths around the 7-bit, 16-bit and 64-bit length encodings
@given(st.integers(0, 70_000) | st.sampled_from([125, 126, 65_535, 65_536]), st.characters())
def test_text_frames_parse_as_one_text_message_each(length: int, char: str) -> None:
    payload = (char * length).encode()
    client = _open_client()
    client.receive_data(text_frame(payload) + text_frame(b"next"))
    texts = [ev for ev in client.events() if isinstance(ev, TextMessage)]
    assert "".join(ev.data for ev in texts[:-1]) == char * length
    assert texts[-2].message_finished if len(texts) > 1 else True
    assert texts[-1].data == "next"


async def test_combined_stream_over_the_lean_server(server: PaperServer) -> None:
    target = "/stream?streams=btcusdt%40bookTicker/ethusdt@bookTicker"  # %40 is "@"
    async with raw_client(server, target) as client:
        seen: set[str] = set()
        while len(seen) < 2:
            msg = await client.message()
            assert set(msg) == {"stream", "data"}
            seen.add(msg["stream"])
            assert msg["data"]["s"] == msg["stream"].split("@")[0].upper()
        await client.send(TextMessage(data=json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7})))
        while "result" not in (reply := await client.message()):
            pass
        assert reply == {"result": ["btcusdt@bookTicker", "ethusdt@bookTicker"], "id": 7}
    conn = server.venue.stream_connections[-1]
    assert conn.market_messages >= 2 and conn.combined


async def test_many_messages_arrive_in_few_socket_reads(server: PaperServer) -> None:
    burst = 2_000
    async with raw_client(server, "/ws/btcusdt@trade") as client:
        await trio.sleep(0.05)  # subscribed (the handshake reply came first)
        for i in range(burst):  # one tick's worth, published without yielding
            server.venue.hub._publish("btcusdt@trade", b'{"n":%d}' % i)
        got = [await client.message() for _ in range(burst)]
        assert [m["n"] for m in got] == list(range(burst))  # all, in order
        assert client.reads < burst / 10  # the sender wrote them in batches


async def test_server_pings_and_answers_pings_and_closes_cleanly() -> None:
    async with open_paper_venue(venue_config(ws_ping_interval=0.2)) as srv:
        async with raw_client(srv, "/ws") as client:
            while not isinstance(ev := await client.event(), Ping):
                assert ev is not None
            await client.send(Ping(payload=b"hi"))
            while not isinstance(ev := await client.event(), Pong):
                assert ev is not None
            assert ev.payload == b"hi"
            await client.send(CloseConnection(code=1000))
            while not isinstance(ev := await client.event(), CloseConnection):
                assert ev is not None
            assert ev.code == 1000
            assert await client.event() is None  # then the socket closes


async def test_an_oversized_client_message_is_closed_with_1009(server: PaperServer) -> None:
    async with raw_client(server, "/ws") as client:
        await client.send(TextMessage(data="x" * (MAX_BODY_BYTES + 1)))
        while not isinstance(ev := await client.event(), CloseConnection):
            assert ev is not None
        assert ev.code == 1009


async def test_an_unknown_stream_is_refused_with_403(server: PaperServer) -> None:
    sock = await trio.open_tcp_stream(server.host, server.port)
    ws = WSConnection(ConnectionType.CLIENT)
    client = RawClient(sock, ws)
    await client.send(Request(host="venue", target="/ws/btcusdt@nonsense"))
    ev = await client.event()
    assert isinstance(ev, RejectConnection) and ev.status_code == 403
    await sock.aclose()


async def test_a_too_slow_client_is_dropped_and_others_keep_streaming(
    server: PaperServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 50
    monkeypatch.setattr(streams, "SEND_QUEUE", limit)
    async with (
        raw_client(server, "/ws/ethusdt@trade") as slow,
        raw_client(server, "/ws/btcusdt@trade") as fast,
    ):
        await trio.sleep(0.05)
        for i in range(limit + 1):  # more than the slow one's queue before its sender runs
            server.venue.hub._publish("ethusdt@trade", b'{"n":%d}' % i)
        for i in range(3):
            server.venue.hub._publish("btcusdt@trade", b'{"n":%d}' % i)
        while (ev := await slow.event()) is not None:  # disconnected
            assert not isinstance(ev, TextMessage)  # nothing went out before the drop
        assert [(await fast.message())["n"] for _ in range(3)] == [0, 1, 2]
    stats = [c.stats() for c in server.venue.stream_connections[-2:]]
    assert stats[0]["overflowed"] and not stats[0]["open"] and stats[0]["queued"] == 0
    assert not stats[1]["overflowed"] and stats[1]["sent"] == 3


async def test_rest_and_a_late_upgrade_share_the_port(server: PaperServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.get("/api/v3/ping")
        assert r.status_code == 200 and r.json() == {}
    # a keep-alive connection that served a request first is hypercorn's: it upgrades there
    sock = await trio.open_tcp_stream(server.host, server.port)
    await sock.send_all(b"GET /api/v3/ping HTTP/1.1\r\nHost: venue\r\n\r\n")
    head = b""
    with trio.fail_after(WAIT_S):
        while not head.endswith(b"{}"):
            head += await sock.receive_some(65536)
    assert head.startswith(b"HTTP/1.1 200")
    ws = WSConnection(ConnectionType.CLIENT)
    client = RawClient(sock, ws)
    await client.send(Request(host="venue", target="/ws/btcusdt@bookTicker"))
    assert isinstance(await client.event(), AcceptConnection)
    assert (await client.message())["s"] == "BTCUSDT"
    await sock.aclose()


async def test_a_client_reset_mid_stream_ends_only_its_connection(server: PaperServer) -> None:
    async with raw_client(server, "/ws/btcusdt@trade") as gone:
        await trio.sleep(0.05)
        # close with a reset (linger 0): the venue's read or write fails, not ends
        gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for i in range(100):
        server.venue.hub._publish("btcusdt@trade", b'{"n":%d}' % i)
    with trio.fail_after(WAIT_S):
        while server.venue.stream_connections[-1].stats()["open"]:  # noqa: ASYNC110 -- no event to wait on
            await trio.sleep(0.01)
    async with raw_client(server, "/ws/btcusdt@bookTicker") as client:  # the server goes on
        assert (await client.message())["s"] == "BTCUSDT"
