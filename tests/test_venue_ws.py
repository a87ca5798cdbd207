"""The venue's websockets: market streams and the WebSocket API user-data stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from mm_trio.apps.paper import DEFAULT_API_KEY, PaperConfig, PaperServer, open_paper_venue
from mm_trio.apps.paper.server import _hypercorn_config
from mm_trio.apps.paper.testing import hmac_sign, now_ms, signed_query
from mm_trio.domain.config import SimVenueConfig

D = Decimal


def venue_config(tick_ms: float = 20, **kw: Any) -> PaperConfig:
    sim = attrs.evolve(
        SimVenueConfig(), tick_interval_ms=tick_ms, latency_ms=1, queue_model="trade_through"
    )
    kw.setdefault("market_symbols", ("BTC/USDT", "ETH/USDT"))
    return PaperConfig(venue=sim, **kw)


@pytest.fixture
async def server() -> AsyncIterator[PaperServer]:
    async with open_paper_venue(venue_config()) as srv:
        with trio.fail_after(5):
            await srv.venue.hub.wait_quote("BTC/USDT")
        yield srv


async def recv(ws: WebSocketConnection, wait: float = 3.0) -> Any:
    with trio.fail_after(wait):
        return json.loads(await ws.get_message())


_BACKLOG: dict[int, list[Any]] = {}


async def recv_until(ws: WebSocketConnection, pred: Any, wait: float = 3.0) -> Any:
    """The first message matching ``pred``; others are kept for later calls."""
    backlog = _BACKLOG.setdefault(id(ws), [])
    for i, msg in enumerate(backlog):
        if pred(msg):
            return backlog.pop(i)
    with trio.fail_after(wait):
        while True:
            msg = json.loads(await ws.get_message())
            if pred(msg):
                return msg
            backlog.append(msg)


async def inject_trade(srv: PaperServer, symbol: str, price: str, qty: str = "1") -> None:
    async with httpx.AsyncClient(base_url=srv.http_url, headers=srv.admin_headers) as c:
        r = await c.post(
            "/_admin/market", json={"type": "trade", "symbol": symbol, "price": price, "qty": qty}
        )
        assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- market streams


async def test_raw_book_ticker_stream(server: PaperServer) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws/btcusdt@bookTicker") as ws:
        msg = await recv(ws)
        assert set(msg) == {"u", "s", "b", "B", "a", "A"}
        assert msg["s"] == "BTCUSDT" and D(msg["b"]) < D(msg["a"])
        nxt = await recv(ws)
        assert nxt["u"] > msg["u"]


async def test_combined_streams_wrap_and_trade(server: PaperServer) -> None:
    url = f"{server.ws_url}/stream?streams=btcusdt@bookTicker/ethusdt@trade"
    async with open_websocket_url(url) as ws:
        msg = await recv(ws)
        assert set(msg) == {"stream", "data"}
        assert msg["stream"] == "btcusdt@bookTicker" and msg["data"]["s"] == "BTCUSDT"
        await inject_trade(server, "ETHUSDT", "3000.00", "0.5")
        t = await recv_until(
            ws, lambda m: m["stream"] == "ethusdt@trade" and m["data"]["p"] == "3000.00000000"
        )
        d = t["data"]
        assert d["e"] == "trade" and d["s"] == "ETHUSDT" and d["q"] == "0.50000000"
        assert {"E", "t", "T", "m", "M"} <= set(d)


async def test_live_subscribe_unsubscribe_list(server: PaperServer) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws") as ws:
        await ws.send_message(
            json.dumps(
                {
                    "method": "SUBSCRIBE",
                    "params": ["btcusdt@bookTicker", "ethusdt@aggTrade"],
                    "id": 1,
                }
            )
        )
        assert await recv(ws) == {"result": None, "id": 1}
        msg = await recv(ws)
        assert msg["s"] == "BTCUSDT"  # raw payload, not wrapped
        await ws.send_message(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        lst = await recv_until(ws, lambda m: m.get("id") == 2)
        assert lst == {"result": ["btcusdt@bookTicker", "ethusdt@aggTrade"], "id": 2}
        await ws.send_message(
            json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3})
        )
        await recv_until(ws, lambda m: m.get("id") == 3)
        wrapped = await recv(ws)
        assert wrapped["stream"] == "btcusdt@bookTicker"
        await ws.send_message(
            json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 4})
        )
        assert (await recv_until(ws, lambda m: m.get("id") == 4))["result"] is True
        await ws.send_message(
            json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 5})
        )
        await recv_until(ws, lambda m: m.get("id") == 5)
        with trio.move_on_after(0.2):
            while True:
                m = json.loads(await ws.get_message())
                assert m.get("stream") != "btcusdt@bookTicker"
        await ws.send_message(json.dumps({"method": "NOPE", "id": 6}))
        bad = await recv_until(ws, lambda m: m.get("id") == 6)
        assert bad["code"] == 2 and "unknown variant" in bad["msg"]
        await ws.send_message("{not json")
        bad = await recv_until(ws, lambda m: "code" in m)
        assert bad["code"] == 3
        await ws.send_message(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt"], "id": 7}))
        bad = await recv_until(ws, lambda m: m.get("id") == 7)
        assert bad["code"] == 2


async def test_depth_diffs_consistent_with_rest_snapshot() -> None:
    async with (
        open_paper_venue(venue_config(tick_ms=150)) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as c,
        open_websocket_url(f"{srv.ws_url}/ws/btcusdt@depth@100ms") as ws,
    ):
        first = await recv(ws)
        assert first["e"] == "depthUpdate" and first["s"] == "BTCUSDT"
        snap = (await c.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "1000"})).json()
        last_id = snap["lastUpdateId"]
        bids = {D(p): D(q) for p, q in snap["bids"]}
        asks = {D(p): D(q) for p, q in snap["asks"]}
        prev_u: int | None = None
        compared = 0
        book = srv.venue.hub.book("BTC/USDT")
        with trio.fail_after(5):
            while compared < 2:
                ev = json.loads(await ws.get_message())
                if ev["u"] <= last_id:
                    continue
                if prev_u is None:
                    assert ev["U"] <= last_id + 1 <= ev["u"]
                else:
                    assert ev["U"] == prev_u + 1
                prev_u = ev["u"]
                for side, levels in ((bids, ev["b"]), (asks, ev["a"])):
                    for p, q in levels:
                        if D(q) == 0:
                            side.pop(D(p), None)
                        else:
                            side[D(p)] = D(q)
                if book.update_id == ev["u"]:  # no quote since this diff: books must match
                    assert bids == book.bids and asks == book.asks
                    compared += 1
        assert max(bids) < min(asks)


async def test_drop_websockets_fault(server: PaperServer) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws/btcusdt@bookTicker") as ws:
        await recv(ws)
        async with httpx.AsyncClient(base_url=server.http_url, headers=server.admin_headers) as c:
            r = await c.post("/_admin/faults", json={"drop_websockets": True})
            assert r.json()["dropped"] == 1
        with pytest.raises(ConnectionClosed), trio.fail_after(3):
            while True:
                await ws.get_message()


async def test_invalid_stream_path_rejected(server: PaperServer) -> None:
    with pytest.raises(HandshakeError):
        async with open_websocket_url(f"{server.ws_url}/ws/btcusdt@nonsense"):
            pass


def test_server_pings_configured() -> None:
    cfg = venue_config(ws_ping_interval=20.0)
    assert _hypercorn_config(cfg, "127.0.0.1", 0).websocket_ping_interval == 20.0


# --------------------------------------------------------------------------- WebSocket API


def ws_signed(params: dict[str, Any], secret: str = "mmtrio-test-secret") -> dict[str, Any]:
    params = {**params, "apiKey": DEFAULT_API_KEY, "timestamp": now_ms()}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {**params, "signature": hmac_sign(payload, secret)}


async def call(
    ws: WebSocketConnection, req_id: Any, method: str, params: dict[str, Any] | None = None
) -> Any:
    req: dict[str, Any] = {"id": req_id, "method": method}
    if params is not None:
        req["params"] = params
    await ws.send_message(json.dumps(req))
    return await recv_until(ws, lambda m: m.get("id") == req_id)


async def test_ws_api_ping_time_and_errors(server: PaperServer) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws-api/v3") as ws:
        r = await call(ws, "p1", "ping")
        assert r["status"] == 200 and r["result"] == {}
        assert r["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        r = await call(ws, 2, "time")
        assert abs(r["result"]["serverTime"] - now_ms()) < 2000
        r = await call(ws, 3, "userDataStream.subscribe.signature", ws_signed({}, secret="wrong"))
        assert r["status"] == 400 and r["error"]["code"] == -1022
        r = await call(ws, 4, "userDataStream.subscribe")
        assert r["status"] == 401 and r["error"]["code"] == -2015
        r = await call(ws, 5, "no.such.method")
        assert r["status"] == 400


async def test_user_data_stream_execution_reports(server: PaperServer) -> None:
    async with (
        open_websocket_url(f"{server.ws_url}/ws-api/v3") as ws,
        httpx.AsyncClient(base_url=server.http_url) as c,
    ):
        r = await call(ws, 1, "userDataStream.subscribe.signature", ws_signed({}))
        assert r["status"] == 200 and r["result"] == {"subscriptionId": 0}
        r = await call(ws, 2, "userDataStream.subscribe.signature", ws_signed({}))
        assert r["error"]["code"] == -2035
        t = (await c.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})).json()
        ask = D(t["askPrice"])
        # a marketable LIMIT takes at once: NEW then TRADE
        q = signed_query(
            [
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "LIMIT"),
                ("timeInForce", "GTC"),
                ("quantity", "0.001"),
                ("price", str(ask + 100)),
                ("newClientOrderId", "uds1"),
            ]
        )
        r2 = await c.post(f"/api/v3/order?{q}", headers={"X-MBX-APIKEY": DEFAULT_API_KEY})
        placed = r2.json()
        assert placed["status"] == "FILLED", placed

        def report(status: str) -> Any:
            return lambda m: (
                m.get("subscriptionId") == 0
                and m["event"]["e"] == "executionReport"
                and m["event"]["X"] == status
            )

        new = (await recv_until(ws, report("NEW")))["event"]
        assert new["s"] == "BTCUSDT" and new["c"] == "uds1" and new["S"] == "BUY"
        assert new["o"] == "LIMIT" and new["f"] == "GTC" and new["x"] == "NEW"
        assert new["i"] == placed["orderId"] and new["q"] == "0.00100000"
        fill = (await recv_until(ws, report("FILLED")))["event"]
        assert fill["x"] == "TRADE" and fill["l"] == "0.00100000" and fill["z"] == "0.00100000"
        assert D(fill["L"]) == D(placed["fills"][0]["price"]) and fill["m"] is False
        assert fill["t"] == placed["fills"][0]["tradeId"] and fill["N"] == "USDT"
        assert D(fill["Z"]) == D(placed["cummulativeQuoteQty"])
        pos = await recv_until(ws, lambda m: m["event"]["e"] == "outboundAccountPosition")
        assets = {b["a"] for b in pos["event"]["B"]}
        assert assets & {"BTC", "USDT"}
        # a resting SELL filled by a trade through its price (maker fill)
        price = str(ask + 500)
        q = signed_query(
            [
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("type", "LIMIT_MAKER"),
                ("quantity", "0.001"),
                ("price", price),
                ("newClientOrderId", "uds2"),
                ("newOrderRespType", "RESULT"),
            ]
        )
        r2 = await c.post(f"/api/v3/order?{q}", headers={"X-MBX-APIKEY": DEFAULT_API_KEY})
        assert r2.json()["status"] == "NEW", r2.text
        await recv_until(ws, lambda m: m["event"].get("c") == "uds2")
        await inject_trade(server, "BTCUSDT", str(ask + 600), "0.01")
        maker = (
            await recv_until(
                ws, lambda m: m["event"].get("c") == "uds2" and m["event"]["X"] == "FILLED"
            )
        )["event"]
        assert maker["m"] is True and D(maker["L"]) == D(price) and maker["o"] == "LIMIT_MAKER"
        r = await call(ws, 3, "userDataStream.unsubscribe", {"subscriptionId": 0})
        assert r["status"] == 200
        r = await call(ws, 4, "session.subscriptions")
        assert r["result"] == []


async def test_ws_api_logon_and_order_entry(server: PaperServer) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws-api/v3") as ws:
        r = await call(ws, 1, "session.logon", ws_signed({}))
        assert r["status"] == 200 and r["result"]["apiKey"] == DEFAULT_API_KEY
        r = await call(ws, 2, "userDataStream.subscribe")
        assert r["result"] == {"subscriptionId": 0}
        book = await call(ws, 3, "ticker.book", {"symbol": "BTCUSDT"})
        bid = D(book["result"]["bidPrice"])
        r = await call(
            ws,
            4,
            "order.place",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.001",
                "price": str(bid - 1000),
                "newClientOrderId": "wsapi1",
            },
        )
        assert r["status"] == 200, r
        assert r["result"]["clientOrderId"] == "wsapi1" and r["result"]["status"] == "NEW"
        kinds = {x["rateLimitType"] for x in r["rateLimits"]}
        assert kinds == {"REQUEST_WEIGHT", "ORDERS"}
        await recv_until(ws, lambda m: m.get("event", {}).get("c") == "wsapi1")
        r = await call(ws, 5, "order.status", {"symbol": "BTCUSDT", "origClientOrderId": "wsapi1"})
        assert r["result"]["status"] == "NEW"
        # a signed request on the same session (explicit signature)
        r = await call(
            ws, 6, "order.cancel", ws_signed({"symbol": "BTCUSDT", "origClientOrderId": "wsapi1"})
        )
        assert r["status"] == 200 and r["result"]["status"] == "CANCELED"
        ev = await recv_until(ws, lambda m: m.get("event", {}).get("X") == "CANCELED")
        assert ev["event"]["C"] == "wsapi1"
        r = await call(ws, 7, "account.status")
        assert r["result"]["accountType"] == "SPOT"


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
