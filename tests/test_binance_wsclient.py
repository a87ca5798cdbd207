"""The lean websocket client (mm_trio/exchange/binance/wsclient.py) and the streams on it,
against a real trio + wsproto server on loopback (tests/wsproto_server.py): handshake and its
refusal, ping -> pong both ways, close frames, fragmented and oversized messages, a burst
delivered in order and in batches, TLS with a throw-away CA, reconnect after a drop."""

from __future__ import annotations

import functools
import ssl
from decimal import Decimal
from typing import Any

import pytest
import trio

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import StreamStatus, Trade
from mm_trio.exchange.binance.adapter import BinanceExchange
from mm_trio.exchange.binance.encode import encode_trade
from mm_trio.exchange.binance.streams import MarketStream
from mm_trio.exchange.binance.wsclient import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WsConnection,
    open_websocket,
)
from mm_trio.exchange.limiter import Limiter
from tests.wsproto_server import ServerConn, WsServer, encode_frames

pytestmark = pytest.mark.slow  # real sockets on loopback (see the marker's definition)

D = Decimal
TIMEOUT = 10.0
BURST = 5000


async def start(nursery: trio.Nursery, script: Any, **kwargs: Any) -> WsServer:
    server = WsServer(script, **kwargs)
    await nursery.start(server.serve)
    return server


async def idle(conn: ServerConn) -> None:
    await conn.drain()


def trade_message(i: int) -> str:
    trade = Trade(
        symbol="BTC/USDT",
        price=D("100") + i,
        qty=D("0.1"),
        buyer_maker=bool(i % 2),
        trade_id=i,
        ts=1_700_000_000_000_000_000 + i * 1_000_000,
    )
    return encode_trade(trade).decode()


async def all_messages(ws: WsConnection, n: int) -> list[str | bytes]:
    out: list[str | bytes] = []
    while len(out) < n:
        batch, _ = await ws.receive_batch()
        out += batch
    return out


# --------------------------------------------------------------------------- handshake
async def test_handshake_sends_path_query_and_host() -> None:
    async def script(conn: ServerConn) -> None:
        await conn.send_text("hello")
        await conn.drain()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            url = f"ws://127.0.0.1:{server.port}/stream?streams=a@trade/b@trade"
            async with open_websocket(url) as ws:
                assert await ws.get_message() == "hello"
            assert server.paths == ["/stream?streams=a@trade/b@trade"]
            assert server.conns[0].host == f"127.0.0.1:{server.port}"
            nursery.cancel_scope.cancel()


async def test_a_refused_handshake_raises_with_the_status() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, idle, reject=429)
            with pytest.raises(ConnectionRejected) as err:
                async with open_websocket(f"ws://127.0.0.1:{server.port}/stream"):
                    pass  # pragma: no cover
            assert err.value.status_code == 429 and "HTTP 429" in str(err.value)
            assert isinstance(err.value, HandshakeError)
            nursery.cancel_scope.cancel()


async def test_a_wrong_accept_key_is_a_handshake_error() -> None:
    """A ``101`` whose ``Sec-WebSocket-Accept`` does not answer our key is refused as a
    :class:`HandshakeError` (the reconnect loop's kind), not wsproto's own error."""

    async def answer(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
        )
        await trio.sleep(TIMEOUT)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, answer, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(HandshakeError, match="bad websocket handshake answer"):
                async with open_websocket(f"ws://127.0.0.1:{port}/"):
                    pass  # pragma: no cover
            nursery.cancel_scope.cancel()


async def test_not_a_websocket_url_is_a_clear_error() -> None:
    with pytest.raises(HandshakeError, match="not a websocket URL: 'http://x'"):
        async with open_websocket("http://x"):
            pass  # pragma: no cover


async def test_messages_sent_with_the_handshake_answer_are_not_lost() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, idle, greeting=["one", "two"])
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                assert await all_messages(ws, 2) == ["one", "two"]
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- ping / close
async def test_a_server_ping_is_answered_with_its_pong() -> None:
    pong = trio.Event()
    got: list[bytes] = []

    async def script(conn: ServerConn) -> None:
        await conn.ping(b"binance-ping-1")
        got.append(await conn.wait_pong())
        pong.set()
        await conn.drain()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                async with trio.open_nursery() as reader:
                    reader.start_soon(ws.receive_batch)  # reading is what answers pings
                    await pong.wait()
                    reader.cancel_scope.cancel()
            assert got == [b"binance-ping-1"]
            nursery.cancel_scope.cancel()


async def test_our_ping_waits_for_the_servers_pong() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, idle)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                async with trio.open_nursery() as reader:
                    reader.start_soon(ws.receive_batch)  # reading is what sees the pongs
                    await ws.ping(b"p1")
                    await ws.ping()  # a random payload
                    reader.cancel_scope.cancel()
            assert server.conns[0].pings[0] == b"p1" and len(server.conns[0].pings) == 2
            nursery.cancel_scope.cancel()


async def test_a_close_frame_is_answered_and_ends_the_connection() -> None:
    async def script(conn: ServerConn) -> None:
        await conn.send_text("last")
        await conn.close(1001, "going away")
        await conn.drain()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                assert await ws.get_message() == "last"
                with pytest.raises(ConnectionClosed) as err:
                    await ws.get_message()
                assert (err.value.code, err.value.reason) == (1001, "going away")
                with pytest.raises(ConnectionClosed):
                    await ws.send_message("too late")
            closed = await server.conns[0].wait_closed()
            assert closed.code == 1001  # our answer echoes the code
            nursery.cancel_scope.cancel()


async def test_leaving_the_context_sends_a_normal_close() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, idle)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send_message("bye")
            closed = await server.conns[0].wait_closed()
            assert server.conns[0].received == ["bye"] and closed.code == 1000
            nursery.cancel_scope.cancel()


async def test_a_lost_socket_is_connection_closed_1006() -> None:
    async def script(conn: ServerConn) -> None:
        await conn.send_text("x")  # then the handler returns: TCP closed, no close frame

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                assert await ws.get_message() == "x"
                with pytest.raises(ConnectionClosed) as err:
                    await ws.get_message()
                assert err.value.code == 1006
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- messages
async def test_fragmented_messages_are_joined() -> None:
    async def script(conn: ServerConn) -> None:
        await conn.send_fragments(['{"stream":', '"btcusdt@trade",', '"data":{}}'])
        for part, last in (("split ", False), ("across ", False), ("reads", True)):
            await conn.send_text_part(part, last)
            await trio.sleep(0.02)  # separate socket reads on the client
        await conn.send_bytes(b"\x00\x01binary")
        await conn.drain()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                assert await all_messages(ws, 3) == [
                    '{"stream":"btcusdt@trade","data":{}}',
                    "split across reads",
                    b"\x00\x01binary",
                ]
            nursery.cancel_scope.cancel()


async def test_a_message_over_the_limit_closes_with_1009() -> None:
    async def script(conn: ServerConn) -> None:
        await conn.send_text("small")
        await conn.send_fragments(["a" * 600, "b" * 600])  # 1,200 bytes in two frames
        await conn.drain()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            url = f"ws://127.0.0.1:{server.port}/"
            async with open_websocket(url, max_message_size=1000) as ws:
                with pytest.raises(ConnectionClosed) as err:
                    await all_messages(ws, 2)
                assert err.value.code == 1009 and "over 1000 bytes" in err.value.reason
            assert (await server.conns[0].wait_closed()).code == 1009
            nursery.cancel_scope.cancel()


async def test_a_burst_reaches_the_event_channel_in_order_and_in_batches() -> None:
    """BURST trades written in one go reach BinanceExchange's event channel, all of them, in
    order, many per consumer wake-up (no task switch per message), with their lag timed."""

    async def script(conn: ServerConn) -> None:
        await conn.send_raw(encode_frames([trade_message(i) for i in range(BURST)]))
        await conn.drain()

    with trio.fail_after(TIMEOUT * 3):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            ex = BinanceExchange(
                base_url="http://127.0.0.1:9",
                ws_url=f"ws://127.0.0.1:{server.port}",
                ws_api_url="ws://unused",
                api_key=None,
                limiter=Limiter(LimiterConfig()),
            )
            ex.decoder.add_symbol("BTCUSDT", "BTC/USDT")
            await ex.market.subscribe(ex.streams_for("BTCUSDT"))
            nursery.start_soon(ex.market.run)
            ids: list[int] = []
            wakeups = 0
            while len(ids) < BURST:
                batch = [await ex.events.receive()]
                wakeups += 1
                while True:
                    try:
                        batch.append(ex.events.receive_nowait())
                    except trio.WouldBlock:
                        break
                ids += [e.trade_id for e in batch if isinstance(e, Trade)]
            assert ids == list(range(BURST))
            assert wakeups < BURST // 10  # ~400 messages per 64 KiB read
            assert ex.market.messages == BURST
            assert ex.market_ingest.trades == BURST and ex.market_ingest.lag.count == BURST
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- TLS
def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_wss_over_tls_with_a_trusted_ca() -> None:
    server_ctx, client_ctx = _tls_contexts()
    got: list[str | bytes] = []
    done = trio.Event()

    async def script(conn: ServerConn) -> None:
        await conn.send_raw(encode_frames([trade_message(i) for i in range(100)]))
        await conn.drain()

    async def on_message(message: str | bytes, recv_ns: int) -> None:
        got.append(message)
        if len(got) == 100:
            done.set()
        await trio.lowlevel.checkpoint()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script, ssl_context=server_ctx)
            stream = MarketStream(
                f"wss://127.0.0.1:{server.port}", on_message=on_message, ssl_context=client_ctx
            )
            await stream.subscribe(["btcusdt@trade"])
            await nursery.start(stream.run)
            await done.wait()
            assert got == [trade_message(i) for i in range(100)]
            assert server.paths == ["/stream?streams=btcusdt@trade"]
            nursery.cancel_scope.cancel()


async def test_wss_refuses_a_certificate_it_does_not_trust() -> None:
    server_ctx, _ = _tls_contexts()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, idle, ssl_context=server_ctx)
            with pytest.raises(trio.BrokenResourceError) as err:
                async with open_websocket(f"wss://127.0.0.1:{server.port}/"):
                    pass  # pragma: no cover
            assert isinstance(err.value.__cause__, ssl.SSLCertVerificationError)
            assert server.conns == []
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- reconnect
async def test_the_stream_reconnects_after_drops_and_refusals() -> None:
    """A dropped socket, a close frame and a refused handshake each end in a reconnect that
    reports disconnected -> resynced, carrying the subscription set again."""
    statuses: list[StreamStatus] = []
    got: list[str | bytes] = []
    handled = [trio.Event() for _ in range(3)]

    async def script(conn: ServerConn) -> None:
        n = len(got)
        await conn.send_text(f"m{n}")
        await handled[n].wait()  # the client has it
        if n == 0:
            return  # TCP drop, no close frame
        if n == 1:
            server.reject_next = 503  # the connect after this close frame is refused
            await conn.close(1001, "restart")
            await conn.drain()
            return
        await conn.drain()

    async def on_message(message: str | bytes, recv_ns: int) -> None:
        got.append(message)
        handled[len(got) - 1].set()
        await trio.lowlevel.checkpoint()

    async def on_status(status: StreamStatus) -> None:
        statuses.append(status)
        await trio.lowlevel.checkpoint()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            stream = MarketStream(
                f"ws://127.0.0.1:{server.port}",
                on_message=on_message,
                on_status=on_status,
                initial_backoff=0.01,
            )
            await stream.subscribe(["btcusdt@trade"])
            await nursery.start(stream.run)
            await handled[2].wait()
            assert got == ["m0", "m1", "m2"]
            assert [s.status for s in statuses] == [
                "connected",
                "disconnected",
                "resynced",
                "disconnected",
                "resynced",
            ]
            assert "1006 connection lost" in statuses[1].reason
            assert "1001 restart" in statuses[3].reason
            assert server.refused == 1 and "HTTP 503" in stream.last_error
            assert server.paths == ["/stream?streams=btcusdt@trade"] * 3
            assert stream.connects == 3 and stream.disconnects == 2
            nursery.cancel_scope.cancel()


async def test_a_missing_pong_drops_the_connection() -> None:
    """A half-open connection (the server reads nothing, answers no ping) is dropped after
    ``heartbeat_timeout`` and the stream reconnects."""
    statuses: list[StreamStatus] = []
    resynced = trio.Event()

    async def script(conn: ServerConn) -> None:
        if len(server.conns) == 1:
            await trio.sleep_forever()  # never reads: our pings go unanswered
        await conn.drain()

    async def on_message(message: str | bytes, recv_ns: int) -> None:
        await trio.lowlevel.checkpoint()

    async def on_status(status: StreamStatus) -> None:
        statuses.append(status)
        if status.status == "resynced":
            resynced.set()
        await trio.lowlevel.checkpoint()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, script)
            stream = MarketStream(
                f"ws://127.0.0.1:{server.port}",
                on_message=on_message,
                on_status=on_status,
                initial_backoff=0.01,
                heartbeat=0.05,
                heartbeat_timeout=0.2,
            )
            await stream.subscribe(["btcusdt@trade"])
            await nursery.start(stream.run)
            await resynced.wait()
            assert [s.status for s in statuses] == ["connected", "disconnected", "resynced"]
            assert "no pong within 0.2s" in statuses[1].reason
            nursery.cancel_scope.cancel()
