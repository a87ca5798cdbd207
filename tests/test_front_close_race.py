"""The lean market-stream server's close handshake racing its pinger
(:mod:`mm_trio.apps.paper.front`): once the client's close frame is parsed, the connection's
wsproto state refuses a Ping; the pinger must then end quietly, not raise a protocol error
that escapes the connection handler (and with it ``serve_listeners``: the whole venue)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from mm_trio.apps.paper import front

PING_S = 1.0


async def test_a_ping_due_while_the_close_answer_waits_for_the_sender_is_no_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    sock = front._Sockets(server_stream)  # type: ignore[arg-type]
    client = WSConnection(ConnectionType.CLIENT)
    sock.ws.receive_data(client.send(Request(host="h", target="/ws/btcusdt@bookTicker")))
    assert any(isinstance(e, Request) for e in sock.ws.events())
    client.receive_data(sock.ws.send(AcceptConnection()))
    list(client.events())

    async def on_text(_: str) -> None:
        raise AssertionError("no text expected")

    errors: list[BaseException] = []

    async def guarded(fn: Any, *args: Any) -> None:
        try:
            await fn(*args)
        except Exception as exc:  # what would escape into serve_front's handler
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guarded, front._pinger, sock, PING_S)
        await trio.sleep(0.1)  # the first ping went out
        # the market sender is mid-write to a slow client: it holds the write lock
        await sock.lock.acquire()
        nursery.start_soon(guarded, front._reader, sock, on_text)
        await client_stream.send_all(client.send(CloseConnection(code=1000)))
        await trio.sleep(2 * PING_S)  # the next ping falls due while the reader waits
        sock.lock.release()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()  # what _serve_market does once the reader returned
    assert errors == [], errors  # actual: LocalProtocolError from the pinger
