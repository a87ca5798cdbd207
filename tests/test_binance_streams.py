"""Binance websocket behaviour against tiny local trio-websocket servers (real sockets, so
no autojump clock here): combined market streams with live SUBSCRIBE / UNSUBSCRIBE, the
WebSocket-API user data stream, drops -> 'disconnected' then 'resynced', resubscription."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from mm_trio.domain.model import (
    BalanceUpdate,
    Event,
    OrderUpdate,
    Quote,
    StreamStatus,
    Trade,
)
from mm_trio.exchange.binance.adapter import BinanceExchange
from mm_trio.exchange.binance.encode import (
    encode_account_position,
    encode_book_ticker,
    encode_execution_report,
    encode_trade,
)
from mm_trio.exchange.binance.signing import ws_payload
from mm_trio.exchange.binance.streams import MarketStream, StreamRejected
from tests.test_binance_rest import KEY, SECRET, FakeBinance, RecordingLimiter

D = Decimal
TIMEOUT = 10.0

Script = Callable[["LocalServer", WebSocketConnection, int], Awaitable[None]]


class LocalServer:
    """Accepts websocket connections and runs ``script(server, ws, n)`` for the n-th one."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.paths: list[str] = []
        self.received: list[list[Any]] = []  # per connection: decoded client messages
        self.port = 0

    async def handler(self, request: WebSocketRequest) -> None:
        n = len(self.paths)
        self.paths.append(request.path)
        self.received.append([])
        ws = await request.accept()
        await self.script(self, ws, n)

    async def recv(self, ws: WebSocketConnection, n: int) -> Any:
        msg = msgspec.json.decode(await ws.get_message())
        self.received[n].append(msg)
        return msg


async def start_server(nursery: trio.Nursery, script: Script) -> LocalServer:
    server = LocalServer(script)
    ws_server = await nursery.start(serve_websocket, server.handler, "127.0.0.1", 0, None)
    server.port = ws_server.port
    return server


def quote(symbol: str, bid: str) -> Quote:
    return Quote(symbol=symbol, bid=D(bid), bid_qty=D("1"), ask=D(bid) + 1, ask_qty=D("2"), ts=0)


async def next_event(ex: BinanceExchange) -> Event:
    with trio.fail_after(TIMEOUT):
        return await ex.events.receive()


async def test_market_stream_drop_reconnect_resubscribe() -> None:
    subscribed = trio.Event()
    unsubscribed = trio.Event()

    async def script(server: LocalServer, ws: WebSocketConnection, n: int) -> None:
        if n == 0:
            await ws.send_message(encode_book_ticker(quote("BTC/USDT", "100")).decode())
            await ws.send_message(
                encode_trade(
                    Trade(
                        symbol="BTC/USDT",
                        price=D("100.5"),
                        qty=D("0.1"),
                        buyer_maker=True,
                        trade_id=9,
                        ts=1_700_000_000_000_000_000,
                    )
                ).decode()
            )
            await ws.send_message('{"stream":"btcusdt@bookTicker","data":{"garbage":1}}')
            msg = await server.recv(ws, n)  # the live SUBSCRIBE for SHIB/USDT
            await ws.send_message(msgspec.json.encode({"result": None, "id": msg["id"]}).decode())
            subscribed.set()
            msg = await server.recv(ws, n)  # the live UNSUBSCRIBE for SHIB/USDT
            unsubscribed.set()
            msg = await server.recv(ws, n)  # SUBSCRIBE SHIB/USDT again
            await ws.aclose()  # drop
            return
        await ws.send_message(encode_book_ticker(quote("SHIB/USDT", "7")).decode())
        await trio.sleep_forever()

    fake = FakeBinance()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, script)
        ex = BinanceExchange(
            base_url="https://api.test",
            ws_url=f"ws://127.0.0.1:{server.port}",
            ws_api_url="ws://unused",
            api_key=None,
            limiter=RecordingLimiter(),
            transport=httpx.MockTransport(fake),
            reconnect_initial=0.01,
        )
        await nursery.start(ex.run)
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and ev.status == "connected"
        await ex.subscribe(["BTC/USDT"])
        await ex.subscribe(["BTC/USDT"])  # idempotent
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and (ev.status, ev.reason) == ("connected", "market")
        assert server.paths[0] == "/stream?streams=btcusdt@bookTicker/btcusdt@trade"
        ev = await next_event(ex)
        assert isinstance(ev, Quote) and ev.symbol == "BTC/USDT" and ev.bid == D("100")
        assert ev.ts > 1_600_000_000_000_000_000  # receive time stamped (spot bookTicker)
        ev = await next_event(ex)
        assert isinstance(ev, Trade) and ev.trade_id == 9 and ev.price == D("100.5")
        await ex.subscribe(["SHIB/USDT"])
        with trio.fail_after(TIMEOUT):
            await subscribed.wait()
        assert server.received[0][0]["method"] == "SUBSCRIBE"
        assert server.received[0][0]["params"] == ["shibusdt@bookTicker", "shibusdt@trade"]
        await ex.unsubscribe(["SHIB/USDT"])
        with trio.fail_after(TIMEOUT):
            await unsubscribed.wait()
        assert server.received[0][1]["method"] == "UNSUBSCRIBE"
        assert server.received[0][1]["params"] == ["shibusdt@bookTicker", "shibusdt@trade"]
        await ex.subscribe(["SHIB/USDT"])
        ids = [m["id"] for m in server.received[0]]
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and ev.status == "disconnected"
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and ev.status == "resynced"
        # the reconnect carries the whole current subscription set
        assert server.paths[1] == (
            "/stream?streams=btcusdt@bookTicker/btcusdt@trade/shibusdt@bookTicker/shibusdt@trade"
        )
        ev = await next_event(ex)
        assert isinstance(ev, Quote) and ev.symbol == "SHIB/USDT"
        assert len(set(ids)) == len(ids)
        assert ex.decode_stats.malformed == 1 and ex.decode_stats.control >= 1
        assert ex.market.disconnects == 1 and ex.market.connects == 2
        nursery.cancel_scope.cancel()
    # run() closed the event stream when it ended
    with pytest.raises(trio.EndOfChannel):
        ex.events.receive_nowait()


async def test_changes_during_handshake_are_sent_as_subscribe() -> None:
    """A subscription that changed while (re)connecting is sent right after connect."""
    got = trio.Event()

    async def script(server: LocalServer, ws: WebSocketConnection, n: int) -> None:
        await server.recv(ws, n)
        got.set()
        await trio.sleep_forever()

    async def on_message(message: str | bytes, recv_ns: int) -> None:
        await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, script)
        stream = MarketStream(f"ws://127.0.0.1:{server.port}", on_message=on_message)
        await stream.subscribe(["a@trade"])

        url = stream._url  # simulate a subscribe racing with the URL snapshot

        def racing_url() -> str:
            u = url()
            stream._wanted["b@trade"] = None
            return u

        stream._url = racing_url  # type: ignore[method-assign]
        nursery.start_soon(stream.run)
        with trio.fail_after(TIMEOUT):
            await got.wait()
        assert server.paths[0] == "/stream?streams=a@trade"
        assert server.received[0][0]["method"] == "SUBSCRIBE"
        assert server.received[0][0]["params"] == ["b@trade"]
        nursery.cancel_scope.cancel()


def verify_ws_signature(params: dict[str, Any]) -> None:
    expected = hmac.new(SECRET.encode(), ws_payload(params).encode(), hashlib.sha256).hexdigest()
    assert params["signature"] == expected
    assert params["apiKey"] == KEY


async def test_user_data_stream_over_ws_api() -> None:
    report = OrderUpdate(
        symbol="BTC/USDT",
        client_id="mm_1",
        side="BUY",
        price=D("100"),
        qty=D("1"),
        status="PARTIALLY_FILLED",
        cum_qty=D("0.4"),
        last_qty=D("0.4"),
        last_price=D("100"),
        trade_id=77,
        order_id="5",
        ts=1_700_000_000_000_000_000,
    )
    balance = BalanceUpdate(
        asset="USDT", free=D("960"), locked=D("60"), ts=1_700_000_000_000_000_000
    )

    async def script(server: LocalServer, ws: WebSocketConnection, n: int) -> None:
        req = await server.recv(ws, n)
        assert req["method"] == "userDataStream.subscribe.signature"
        verify_ws_signature(req["params"])
        await ws.send_message(
            msgspec.json.encode(
                {"id": req["id"], "status": 200, "result": {"subscriptionId": n}}
            ).decode()
        )
        if n == 0:
            await ws.send_message(encode_execution_report(report, ws_api_subscription=0).decode())
            await trio.sleep(0.05)
            await ws.aclose()
            return
        await ws.send_message(encode_account_position([balance], ws_api_subscription=n).decode())
        await trio.sleep_forever()

    fake = FakeBinance()
    limiter = RecordingLimiter()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, script)
        base = f"ws://127.0.0.1:{server.port}"
        ex = BinanceExchange(
            base_url="https://api.test",
            ws_url=base,
            ws_api_url=base + "/ws-api/v3",
            api_key=KEY,
            api_secret=SECRET,
            limiter=limiter,
            transport=httpx.MockTransport(fake),
            reconnect_initial=0.01,
        )
        await nursery.start(ex.run)
        assert server.paths[0] == "/ws-api/v3"
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and (ev.status, ev.reason) == ("connected", "user")
        ev = await next_event(ex)
        assert isinstance(ev, OrderUpdate)
        assert (ev.symbol, ev.client_id, ev.cum_qty, ev.trade_id) == (
            "BTC/USDT",
            "mm_1",
            D("0.4"),
            77,
        )
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and ev.status == "disconnected"
        ev = await next_event(ex)
        assert isinstance(ev, StreamStatus) and (ev.status, ev.reason) == ("resynced", "user")
        ev = await next_event(ex)
        assert isinstance(ev, BalanceUpdate) and ev.free == D("960")
        assert ex.user is not None and ex.user.subscription_id == 1
        # the subscription request took its WebSocket-API weight each time
        assert limiter.acquired.count((2, 0, False)) == 2
        nursery.cancel_scope.cancel()


async def test_user_stream_rejected_on_first_connect_is_fatal() -> None:
    async def script(server: LocalServer, ws: WebSocketConnection, n: int) -> None:
        req = await server.recv(ws, n)
        await ws.send_message(
            msgspec.json.encode(
                {
                    "id": req["id"],
                    "status": 401,
                    "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions."},
                }
            ).decode()
        )
        await trio.sleep_forever()

    fake = FakeBinance()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, script)
        base = f"ws://127.0.0.1:{server.port}"
        ex = BinanceExchange(
            base_url="https://api.test",
            ws_url=base,
            ws_api_url=base + "/ws-api/v3",
            api_key=KEY,
            api_secret=SECRET,
            limiter=RecordingLimiter(),
            transport=httpx.MockTransport(fake),
        )
        with pytest.raises(StreamRejected) as err:
            with trio.fail_after(TIMEOUT):
                await nursery.start(ex.run)
        assert "-2015" in str(err.value)
        assert KEY not in str(err.value) and SECRET not in str(err.value)
        nursery.cancel_scope.cancel()


async def test_event_stream_terminated_forces_resubscribe() -> None:
    async def script(server: LocalServer, ws: WebSocketConnection, n: int) -> None:
        req = await server.recv(ws, n)
        await ws.send_message(
            msgspec.json.encode(
                {"id": req["id"], "status": 200, "result": {"subscriptionId": 0}}
            ).decode()
        )
        if n == 0:
            await ws.send_message(
                '{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1728973001334}}'
            )
        await trio.sleep_forever()

    fake = FakeBinance()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, script)
        base = f"ws://127.0.0.1:{server.port}"
        ex = BinanceExchange(
            base_url="https://api.test",
            ws_url=base,
            ws_api_url=base + "/ws-api/v3",
            api_key=KEY,
            api_secret=SECRET,
            limiter=RecordingLimiter(),
            transport=httpx.MockTransport(fake),
            reconnect_initial=0.01,
        )
        await nursery.start(ex.run)
        statuses = []
        while len(statuses) < 3:
            ev = await next_event(ex)
            assert isinstance(ev, StreamStatus)
            statuses.append(ev.status)
        assert statuses == ["connected", "disconnected", "resynced"]
        assert len(server.paths) == 2
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
