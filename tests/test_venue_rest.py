"""The venue's REST API: endpoints, errors, signatures, rate limits, faults (in-process)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mm_trio.apps.paper import (
    DEFAULT_API_KEY,
    AccountConfig,
    FaultConfig,
    PaperConfig,
    PaperServer,
    RateLimitConfig,
    open_paper_venue,
)
from mm_trio.apps.paper.auth import Credentials, split_signature, ws_payload
from mm_trio.apps.paper.testing import API_KEY_HEADER, hmac_sign, now_ms, signed_query
from mm_trio.domain.config import SimVenueConfig

D = Decimal
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def venue_config(**kw: Any) -> PaperConfig:
    sim = attrs.evolve(
        SimVenueConfig(), tick_interval_ms=20, latency_ms=1, queue_model="trade_through"
    )
    kw.setdefault("market_symbols", ("BTC/USDT", "ETH/USDT"))
    # windows start at the first request, so counts never reset mid-test at a minute boundary
    kw.setdefault("rate_limits", RateLimitConfig(aligned_windows=False))
    return PaperConfig(venue=sim, **kw)


@pytest.fixture
async def server() -> AsyncIterator[PaperServer]:
    async with open_paper_venue(venue_config()) as srv:
        await wait_quotes(srv)
        yield srv


async def wait_quotes(srv: PaperServer, symbol: str = "BTC/USDT") -> None:
    with trio.fail_after(5):
        await srv.venue.hub.wait_quote(symbol)


@pytest.fixture
async def client(server: PaperServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as c:
        yield c


async def signed(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    *,
    body: bool = False,
    key: str = DEFAULT_API_KEY,
) -> httpx.Response:
    q = signed_query(params)
    headers = {"X-MBX-APIKEY": key}
    if body:
        return await client.request(method, path, content=q, headers={**headers, **FORM})
    return await client.request(method, f"{path}?{q}", headers=headers)


def limit_order(
    price: str, qty: str = "0.001", side: str = "BUY", **extra: str
) -> list[tuple[str, str]]:
    p = [
        ("symbol", "BTCUSDT"),
        ("side", side),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", qty),
        ("price", price),
    ]
    return p + list(extra.items())


def err(r: httpx.Response) -> tuple[int, int, str]:
    body = r.json()
    return r.status_code, body["code"], body["msg"]


async def best(client: httpx.AsyncClient) -> tuple[Decimal, Decimal]:
    r = await client.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})
    t = r.json()
    return D(t["bidPrice"]), D(t["askPrice"])


# --------------------------------------------------------------------------- public


async def test_ping_time_exchange_info(client: httpx.AsyncClient, server: PaperServer) -> None:
    r = await client.get("/api/v3/ping")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    r = await client.get("/api/v3/time")
    assert abs(r.json()["serverTime"] - now_ms()) < 2000
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "2"
    r = await client.get("/api/v3/exchangeInfo")
    info = r.json()
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "22"
    assert {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    } in info["rateLimits"]
    assert {
        "rateLimitType": "ORDERS",
        "interval": "SECOND",
        "intervalNum": 10,
        "limit": 100,
    } in info["rateLimits"]
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert btc["baseAsset"] == "BTC" and btc["quoteAsset"] == "USDT"
    assert btc["status"] == "TRADING"
    assert set(btc["orderTypes"]) == {"LIMIT", "LIMIT_MAKER", "MARKET"}
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["MIN_NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["MAX_NUM_ORDERS"]["maxNumOrders"] == 200
    r = await client.get("/api/v3/exchangeInfo", params={"symbol": "ETHUSDT"})
    assert [s["symbol"] for s in r.json()["symbols"]] == ["ETHUSDT"]
    r = await client.get("/api/v3/exchangeInfo", params={"symbols": '["ETHUSDT","BTCUSDT"]'})
    assert [s["symbol"] for s in r.json()["symbols"]] == ["ETHUSDT", "BTCUSDT"]
    r = await client.get("/api/v3/exchangeInfo", params={"symbol": "NOPEUSDT"})
    assert err(r) == (400, -1121, "Invalid symbol.")


async def test_depth_and_book_ticker(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"})
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "5"
    book = r.json()
    assert book["lastUpdateId"] > 0
    assert len(book["bids"]) == 5 and len(book["asks"]) == 5
    bids = [D(p) for p, _ in book["bids"]]
    asks = [D(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]
    r = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "500"})
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(5 + 25)
    r = await client.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})
    t = r.json()
    assert set(t) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}
    assert D(t["bidPrice"]) < D(t["askPrice"])
    r = await client.get("/api/v3/ticker/bookTicker")
    assert isinstance(r.json(), list) and len(r.json()) > 2
    r = await client.get("/api/v3/depth")
    assert err(r) == (
        400,
        -1102,
        "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
    )
    r = await client.get("/api/v3/depth", params={"symbol": "XXXYYY"})
    assert err(r)[1] == -1121


# --------------------------------------------------------------------------- signatures


def test_binance_documented_signature_vectors() -> None:
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    creds = Credentials(AccountConfig(api_key="k", api_secret=secret))
    body = (
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        b"&recvWindow=5000&timestamp=1499827319559"
    )
    sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    payload, got = split_signature(b"", body + b"&signature=" + sig.encode())
    assert payload == body and got == sig and creds.verify(payload, got)
    assert creds.verify(payload, sig.upper())  # not case-sensitive
    # example 3: mixed query string and body, no "&" between them
    payload, got = split_signature(
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
        b"0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
    )
    assert got is not None and creds.verify(payload, got)
    assert "NhqPt" not in repr(creds)
    assert ws_payload({"b": 1, "a": "x", "signature": "s", "c": True}) == b"a=x&b=1&c=true"


async def test_signature_any_param_order_query_body_and_mixed(client: httpx.AsyncClient) -> None:
    ts = str(now_ms())
    orders = [
        [("timestamp", ts), ("recvWindow", "5000")],
        [("recvWindow", "5000"), ("timestamp", ts)],
        [("omitZeroBalances", "true"), ("timestamp", ts)],
    ]
    for params in orders:
        q = urlencode(params)
        r = await client.get(
            f"/api/v3/account?{q}&signature={hmac_sign(q)}", headers=API_KEY_HEADER
        )
        assert r.status_code == 200, r.text
        assert r.json()["accountType"] == "SPOT"
    # all in the body
    q = signed_query(limit_order("40000.00", newClientOrderId="body1"))
    r = await client.post("/api/v3/order", content=q, headers={**API_KEY_HEADER, **FORM})
    assert r.status_code == 200, r.text
    # mixed: part in the query string, part (with the signature) in the body
    qs = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
    bd = f"quantity=0.001&price=40000.00&newClientOrderId=mixed1&timestamp={now_ms()}"
    sig = hmac_sign(qs + bd)
    r = await client.post(
        f"/api/v3/order?{qs}", content=f"{bd}&signature={sig}", headers={**API_KEY_HEADER, **FORM}
    )
    assert r.status_code == 200, r.text
    assert r.json()["clientOrderId"] == "mixed1"
    # the same with a "&" inserted (what a naive client signs) is rejected
    sig = hmac_sign(qs + "&" + bd)
    r = await client.post(
        f"/api/v3/order?{qs}", content=f"{bd}&signature={sig}", headers={**API_KEY_HEADER, **FORM}
    )
    assert err(r) == (400, -1022, "Signature for this request is not valid.")


async def test_auth_errors(client: httpx.AsyncClient) -> None:
    q = signed_query([])
    r = await client.get(f"/api/v3/account?{q}")
    assert err(r) == (401, -2014, "API-key format invalid.")
    r = await client.get(f"/api/v3/account?{q}", headers={"X-MBX-APIKEY": "nope"})
    assert err(r) == (401, -2015, "Invalid API-key, IP, or permissions for action.")
    bad = q[:-1] + ("1" if q[-1] == "0" else "0")
    r = await client.get(f"/api/v3/account?{bad}", headers=API_KEY_HEADER)
    assert err(r)[1] == -1022
    r = await client.get(f"/api/v3/account?timestamp={now_ms()}", headers=API_KEY_HEADER)
    assert err(r) == (
        400,
        -1102,
        "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
    )
    r = await client.get("/api/v3/account?recvWindow=5000", headers=API_KEY_HEADER)
    assert err(r)[1:] == (
        -1102,
        "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
    )
    q = signed_query([], timestamp=now_ms() - 10_000)
    r = await client.get(f"/api/v3/account?{q}", headers=API_KEY_HEADER)
    assert err(r) == (400, -1021, "Timestamp for this request is outside of the recvWindow.")
    q = signed_query([("recvWindow", "20000")], timestamp=now_ms() - 10_000)
    r = await client.get(f"/api/v3/account?{q}", headers=API_KEY_HEADER)
    assert r.status_code == 200
    q = signed_query([], timestamp=now_ms() + 5_000)
    r = await client.get(f"/api/v3/account?{q}", headers=API_KEY_HEADER)
    assert err(r) == (
        400,
        -1021,
        "Timestamp for this request was 1000ms ahead of the server's time.",
    )
    q = signed_query([("recvWindow", "70000")])
    r = await client.get(f"/api/v3/account?{q}", headers=API_KEY_HEADER)
    assert err(r)[1] == -1131
    ts = now_ms()
    q = f"timestamp={ts}&timestamp={ts}"
    r = await client.get(f"/api/v3/account?{q}&signature={hmac_sign(q)}", headers=API_KEY_HEADER)
    assert err(r)[1:] == (-1101, "Duplicate values for a parameter detected.")


async def test_ed25519_account() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    cfg = venue_config(
        accounts=(
            AccountConfig(
                api_key="ed-key", ed25519_public_key=pem.decode(), balances={"USDT": D("123")}
            ),
        )
    )
    async with open_paper_venue(cfg) as srv, httpx.AsyncClient(base_url=srv.http_url) as c:
        q = f"timestamp={now_ms()}"
        sig = quote(base64.b64encode(key.sign(q.encode())).decode(), safe="")
        r = await c.get(f"/api/v3/account?{q}&signature={sig}", headers={"X-MBX-APIKEY": "ed-key"})
        assert r.status_code == 200, r.text
        usdt = next(b for b in r.json()["balances"] if b["asset"] == "USDT")
        assert usdt == {"asset": "USDT", "free": "123.00000000", "locked": "0.00000000"}
        other = base64.b64encode(Ed25519PrivateKey.generate().sign(q.encode())).decode()
        r = await c.get(
            f"/api/v3/account?{q}&signature={quote(other, safe='')}",
            headers={"X-MBX-APIKEY": "ed-key"},
        )
        assert err(r)[1] == -1022


# --------------------------------------------------------------------------- orders


async def test_limit_order_lifecycle(client: httpx.AsyncClient) -> None:
    bid, ask = await best(client)
    price = str(bid - 1000)
    r = await signed(
        client,
        "POST",
        "/api/v3/order",
        limit_order(price, "0.002", newClientOrderId="life1", newOrderRespType="RESULT"),
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert r.headers["X-MBX-ORDER-COUNT-1D"] == "1"
    placed = r.json()
    assert placed["symbol"] == "BTCUSDT" and placed["clientOrderId"] == "life1"
    assert placed["status"] == "NEW" and placed["type"] == "LIMIT"
    assert placed["timeInForce"] == "GTC" and placed["side"] == "BUY"
    assert D(placed["price"]) == D(price) and placed["origQty"] == "0.00200000"
    assert placed["executedQty"] == "0.00000000" and "fills" not in placed
    oid = placed["orderId"]
    # query by id and by client id
    for p in ([("orderId", str(oid))], [("origClientOrderId", "life1")]):
        r = await signed(client, "GET", "/api/v3/order", [("symbol", "BTCUSDT"), *p])
        q = r.json()
        assert r.status_code == 200 and q["orderId"] == oid and q["status"] == "NEW"
        assert q["isWorking"] is True and q["time"] == placed["transactTime"]
    r = await signed(client, "GET", "/api/v3/openOrders", [("symbol", "BTCUSDT")])
    assert [o["clientOrderId"] for o in r.json()] == ["life1"]
    assert r.headers["X-MBX-USED-WEIGHT-1M"] is not None
    # balances locked
    r = await signed(client, "GET", "/api/v3/account", [])
    usdt = next(b for b in r.json()["balances"] if b["asset"] == "USDT")
    assert D(usdt["locked"]) == D(price) * D("0.002")
    # duplicate client id
    r = await signed(
        client, "POST", "/api/v3/order", limit_order(price, "0.002", newClientOrderId="life1")
    )
    assert err(r) == (400, -2010, "Duplicate order sent.")
    # cancel
    r = await signed(
        client,
        "DELETE",
        "/api/v3/order",
        [("symbol", "BTCUSDT"), ("origClientOrderId", "life1"), ("newClientOrderId", "cxl1")],
    )
    c = r.json()
    assert r.status_code == 200, r.text
    assert c["status"] == "CANCELED" and c["origClientOrderId"] == "life1"
    assert c["clientOrderId"] == "cxl1" and c["orderId"] == oid
    r = await signed(
        client, "DELETE", "/api/v3/order", [("symbol", "BTCUSDT"), ("orderId", str(oid))]
    )
    assert err(r) == (400, -2011, "Unknown order sent.")
    r = await signed(client, "GET", "/api/v3/order", [("symbol", "BTCUSDT"), ("orderId", str(oid))])
    assert r.json()["status"] == "CANCELED"
    r = await signed(client, "GET", "/api/v3/order", [("symbol", "BTCUSDT"), ("orderId", "999999")])
    assert err(r) == (400, -2013, "Order does not exist.")
    r = await signed(client, "GET", "/api/v3/order", [("symbol", "BTCUSDT")])
    assert err(r)[1] == -1102
    r = await signed(client, "GET", "/api/v3/account", [])
    usdt = next(b for b in r.json()["balances"] if b["asset"] == "USDT")
    assert D(usdt["locked"]) == 0


async def test_ack_and_cancel_all(client: httpx.AsyncClient) -> None:
    bid, _ = await best(client)
    for i in range(3):
        r = await signed(
            client,
            "POST",
            "/api/v3/order",
            limit_order(str(bid - 500 - i), newOrderRespType="ACK", newClientOrderId=f"all{i}"),
        )
        assert set(r.json()) == {
            "symbol",
            "orderId",
            "orderListId",
            "clientOrderId",
            "transactTime",
        }
    r = await signed(client, "DELETE", "/api/v3/openOrders", [("symbol", "BTCUSDT")])
    assert sorted(o["origClientOrderId"] for o in r.json()) == ["all0", "all1", "all2"]
    assert all(o["status"] == "CANCELED" for o in r.json())
    r = await signed(client, "DELETE", "/api/v3/openOrders", [("symbol", "BTCUSDT")])
    assert err(r)[1] == -2011
    r = await signed(client, "GET", "/api/v3/openOrders", [])
    assert r.json() == [] and r.headers["X-MBX-USED-WEIGHT-1M"] == str(2 + 3 + 1 + 1 + 80)


async def test_order_rejections(client: httpx.AsyncClient) -> None:
    bid, ask = await best(client)
    cases: list[tuple[list[tuple[str, str]], tuple[int, int, str]]] = [
        (limit_order(str(bid - 100) + "5"), (400, -1013, "Filter failure: PRICE_FILTER")),
        (limit_order(str(bid - 100), "0.0000011"), (400, -1013, "Filter failure: LOT_SIZE")),
        (limit_order(str(bid - 100), "0.00001"), (400, -1013, "Filter failure: NOTIONAL")),
        (
            limit_order(str(bid - 100), "100"),
            (400, -2010, "Account has insufficient balance for requested action."),
        ),
        (
            limit_order("1.5e3"),
            (
                400,
                -1100,
                "Illegal characters found in parameter 'price'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            ),
        ),
        (
            [
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "LIMIT"),
                ("quantity", "0.001"),
                ("price", "100"),
            ],
            (
                400,
                -1102,
                "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
            ),
        ),
        (
            [
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "MARKET"),
                ("quantity", "0.001"),
                ("price", "100"),
            ],
            (400, -1106, "Parameter 'price' sent when not required."),
        ),
        (
            [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "NOPE"), ("quantity", "1")],
            (400, -1116, "Invalid orderType."),
        ),
        (
            [("symbol", "BTCUSDT"), ("side", "UP"), ("type", "MARKET"), ("quantity", "1")],
            (400, -1117, "Invalid side."),
        ),
        (
            [("symbol", "NOPE"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "1")],
            (400, -1121, "Invalid symbol."),
        ),
        (
            [
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "LIMIT_MAKER"),
                ("quantity", "0.001"),
                ("price", str(ask + 100)),
            ],
            (400, -2010, "Order would immediately match and take."),
        ),
    ]
    for params, expected in cases:
        r = await signed(client, "POST", "/api/v3/order", params)
        assert err(r) == expected, params


async def test_market_order_full_fills_and_my_trades(client: httpx.AsyncClient) -> None:
    r = await signed(
        client,
        "POST",
        "/api/v3/order",
        [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.001"),
            ("newClientOrderId", "mkt1"),
        ],
    )
    assert r.status_code == 200, r.text
    o = r.json()
    # (a market order takes the top of the book only: 0.001 BTC is far below its usual size)
    assert o["status"] == "FILLED" and o["type"] == "MARKET" and o["price"] == "0.00000000"
    assert o["executedQty"] == "0.00100000"
    assert sum(D(f["qty"]) for f in o["fills"]) == D("0.001")
    quote_qty = sum(D(f["price"]) * D(f["qty"]) for f in o["fills"])
    assert D(o["cummulativeQuoteQty"]) == quote_qty
    fee = sum(D(f["commission"]) for f in o["fills"])
    assert o["fills"][0]["commissionAsset"] == "USDT"
    r = await signed(client, "GET", "/api/v3/myTrades", [("symbol", "BTCUSDT")])
    trades = r.json()
    assert len(trades) == len(o["fills"])
    t = trades[0]
    assert t["orderId"] == o["orderId"] and t["isBuyer"] is True and t["isMaker"] is False
    assert t["id"] == o["fills"][0]["tradeId"]
    r = await signed(client, "GET", "/api/v3/account", [("omitZeroBalances", "true")])
    bal = {b["asset"]: b for b in r.json()["balances"]}
    assert D(bal["BTC"]["free"]) == D("1.001")
    assert D(bal["USDT"]["free"]) == D(100000) - quote_qty - fee
    # quoteOrderQty sell
    r = await signed(
        client,
        "POST",
        "/api/v3/order",
        [("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "MARKET"), ("quoteOrderQty", "100")],
    )
    s = r.json()
    assert s["status"] == "FILLED" and s["origQuoteOrderQty"] == "100.00000000"
    assert D(s["executedQty"]) > 0


async def test_marketable_limit_ioc_expires_rest(client: httpx.AsyncClient) -> None:
    _, ask = await best(client)
    r = await signed(
        client,
        "POST",
        "/api/v3/order",
        [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "IOC"),
            ("quantity", "0.001"),
            ("price", str(ask - 50)),
        ],
    )
    o = r.json()
    assert o["status"] == "EXPIRED" and o["executedQty"] == "0.00000000"


# --------------------------------------------------------------------------- rate limits


async def test_weight_limit_429_then_418() -> None:
    cfg = venue_config(
        rate_limits=RateLimitConfig(
            weight_limit=5, ban_after_429s=2, ban_base_seconds=120, aligned_windows=False
        )
    )
    async with open_paper_venue(cfg) as srv, httpx.AsyncClient(base_url=srv.http_url) as c:
        for i in range(5):
            r = await c.get("/api/v3/ping")
            assert r.status_code == 200 and r.headers["X-MBX-USED-WEIGHT-1M"] == str(i + 1)
        r = await c.get("/api/v3/ping")
        assert r.status_code == 429
        assert r.json()["code"] == -1003
        assert "current limit is 5 request weight per 1 MINUTE" in r.json()["msg"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == "5"
        statuses = []
        for _ in range(3):
            statuses.append((await c.get("/api/v3/ping")).status_code)
        assert statuses == [429, 429, 418]
        r = await c.get("/api/v3/time")
        assert r.status_code == 418 and r.json()["code"] == -1003
        assert "IP banned until" in r.json()["msg"]
        assert 110 <= int(r.headers["Retry-After"]) <= 120


async def test_order_rate_limit_429_without_retry_after() -> None:
    cfg = venue_config(rate_limits=RateLimitConfig(orders_limit_short=2, aligned_windows=False))
    async with open_paper_venue(cfg) as srv, httpx.AsyncClient(base_url=srv.http_url) as c:
        await wait_quotes(srv)
        bid, _ = await best(c)
        for i in range(2):
            r = await signed(c, "POST", "/api/v3/order", limit_order(str(bid - 100 - i)))
            assert r.status_code == 200
            assert r.headers["X-MBX-ORDER-COUNT-10S"] == str(i + 1)
        r = await signed(c, "POST", "/api/v3/order", limit_order(str(bid - 200)))
        assert err(r) == (
            429,
            -1015,
            "Too many new orders; current limit is 2 orders per 10 SECOND.",
        )
        assert "Retry-After" not in r.headers


# --------------------------------------------------------------------------- faults


async def test_faults_fail_force_and_delay(server: PaperServer, client: httpx.AsyncClient) -> None:
    admin = server.admin_headers
    r = await client.post(
        "/_admin/faults", json={"fail_next": 2, "fail_status": 503}, headers=admin
    )
    assert r.status_code == 200 and r.json()["fail_next"] == 2
    r = await client.get("/api/v3/ping")
    assert r.status_code == 503 and r.json()["code"] == -1008
    r = await client.get("/api/v3/ping")
    assert r.status_code == 503
    assert (await client.get("/api/v3/ping")).status_code == 200
    await client.post("/_admin/faults", json={"fail_next": 1, "fail_status": 500}, headers=admin)
    r = await client.get("/api/v3/ping")
    assert r.status_code == 500 and r.json()["code"] == -1001
    await client.post(
        "/_admin/faults",
        json={"force_429": 1, "force_418": 1, "forced_retry_after": 7},
        headers=admin,
    )
    r = await client.get("/api/v3/ping")
    assert r.status_code == 418 and r.headers["Retry-After"] == "7"
    r = await client.get("/api/v3/ping")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert (await client.get("/api/v3/ping")).status_code == 200
    await client.post("/_admin/faults", json={"rest_delay_ms": 150}, headers=admin)
    t0 = trio.current_time()
    await client.get("/api/v3/ping")
    assert trio.current_time() - t0 >= 0.14
    await client.post("/_admin/faults", json={"rest_delay_ms": 0}, headers=admin)
    r = await client.post("/_admin/faults", json={"bogus": 1}, headers=admin)
    assert r.status_code == 400


async def test_fault_order_applied_but_unanswered(
    server: PaperServer, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        "/_admin/faults",
        json={"timeout_next_orders": 1, "timeout_hang_s": 5},
        headers=server.admin_headers,
    )
    assert r.status_code == 200, r.text
    bid, _ = await best(client)
    with pytest.raises(httpx.ReadTimeout):
        await signed_timeout(client, limit_order(str(bid - 300), newClientOrderId="lost1"))
    # the order exists although the client never got an answer
    r = await signed(
        client, "GET", "/api/v3/order", [("symbol", "BTCUSDT"), ("origClientOrderId", "lost1")]
    )
    assert r.status_code == 200 and r.json()["status"] == "NEW"
    # the next one is answered normally
    r = await signed(client, "POST", "/api/v3/order", limit_order(str(bid - 301)))
    assert r.status_code == 200


async def signed_timeout(
    client: httpx.AsyncClient, params: list[tuple[str, str]]
) -> httpx.Response:
    q = signed_query(params)
    return await client.post(
        f"/api/v3/order?{q}", headers=API_KEY_HEADER, timeout=httpx.Timeout(0.5)
    )


async def test_multiple_accounts_have_separate_balances() -> None:
    cfg = venue_config(
        accounts=(
            AccountConfig(api_key="a1", api_secret="s1", balances={"USDT": D("1000")}),
            AccountConfig(api_key="a2", api_secret="s2", balances={"USDT": D("50")}),
        )
    )
    async with open_paper_venue(cfg) as srv, httpx.AsyncClient(base_url=srv.http_url) as c:
        out = {}
        for key, secret in (("a1", "s1"), ("a2", "s2")):
            q = signed_query([], secret)
            r = await c.get(f"/api/v3/account?{q}", headers={"X-MBX-APIKEY": key})
            out[key] = next(b["free"] for b in r.json()["balances"] if b["asset"] == "USDT")
        assert out == {"a1": "1000.00000000", "a2": "50.00000000"}
        q = signed_query([], "s1")
        r = await c.get(f"/api/v3/account?{q}", headers={"X-MBX-APIKEY": "a2"})
        assert err(r)[1] == -1022


def test_config_repr_hides_secrets() -> None:
    cfg = PaperConfig(faults=FaultConfig())
    assert "mmtrio-test-secret" not in repr(cfg)
    assert "mmtrio-test-key" in repr(cfg)


def test_rate_limiter_windows_aligned_to_the_clock() -> None:
    from mm_trio.apps.paper.ratelimit import RateLimiter

    lim = RateLimiter(RateLimitConfig(weight_limit=10))
    assert lim.check_weight("ip", 10, 119.5).status == 200
    d = lim.check_weight("ip", 1, 119.6)
    assert (d.status, d.retry_after) == (429, 1)  # the minute ends at 120 s
    assert lim.check_weight("ip", 1, 120.0).status == 200  # new minute: count reset
    assert lim.used_weight("ip", 120.1) == 1
    assert lim.weight_header == "X-MBX-USED-WEIGHT-1M"
    assert lim.order_short_header == "X-MBX-ORDER-COUNT-10S"


async def test_serve_venue_reports_bound_port() -> None:
    from mm_trio.apps.paper import serve_paper_venue

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_paper_venue, venue_config())
        assert isinstance(port, int) and port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.get("/api/v3/ping")
            assert r.status_code == 200
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
