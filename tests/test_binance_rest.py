"""Binance REST client and adapter over httpx.MockTransport: signing of the exact query sent,
error classification, 429/418 pauses, used-weight feedback, weights, retries, secrets."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest
import trio

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import OrderRequest
from mm_trio.exchange.base import (
    DuplicateOrder,
    ExchangeError,
    FilterRejected,
    InsufficientBalance,
    OrderRejected,
    OutcomeUnknown,
    PlaceWithdrawn,
    RateLimited,
    TooManyOrders,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.adapter import BinanceExchange, derive_ws_urls
from mm_trio.exchange.binance.protocol import depth_weight
from mm_trio.exchange.binance.rest import BinanceRest, classify
from mm_trio.exchange.binance.signing import HmacSigner
from mm_trio.exchange.limiter import Limiter
from tests.test_binance_signing import EXCHANGE_INFO

D = Decimal
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


class RecordingLimiter:
    """Records acquire/pause/observe calls."""

    def __init__(self) -> None:
        self.acquired: list[tuple[int, int, bool]] = []
        self.pauses: list[tuple[float, bool]] = []
        self.used: list[int] = []

    async def acquire(
        self,
        weight: int = 1,
        orders: int = 0,
        *,
        cancel: bool = False,
        still_wanted: Callable[[], bool] | None = None,
    ) -> None:
        self.acquired.append((weight, orders, cancel))
        await trio.lowlevel.checkpoint()

    def pause(self, seconds: float, *, banned: bool = False, reason: str = "") -> None:
        self.pauses.append((seconds, banned))

    def observe_used_weight(self, used: int) -> None:
        self.used.append(used)


Handler = Callable[[httpx.Request], httpx.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=msgspec.json.encode(body), headers=headers)


def rest(handler: Handler, limiter: Any = None, **kw: Any) -> BinanceRest:
    return BinanceRest(
        "https://api.test",
        api_key=KEY,
        signer=HmacSigner(SECRET),
        limiter=limiter or RecordingLimiter(),
        transport=httpx.MockTransport(handler),
        retry_base=0.01,
        **kw,
    )


def check_signature(request: httpx.Request) -> dict[str, str]:
    """Verify the HMAC over exactly the query string sent; return the params."""
    query = request.url.query.decode()
    payload, _, sig = query.rpartition("&signature=")
    expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert sig == expected, "signature must cover exactly the query string sent"
    assert request.headers["X-MBX-APIKEY"] == KEY
    return dict(parse_qsl(payload))


async def test_signed_request_and_used_weight() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(check_signature(request))
        return json_response(200, {"ok": 1}, {"X-MBX-USED-WEIGHT-1M": "42"})

    limiter = RecordingLimiter()
    client = rest(handler, limiter, recv_window_ms=3000)
    assert await client.request("GET", "/api/v3/account", {"a": "x y"}, weight=20, signed=True) == {
        "ok": 1
    }
    assert seen[0]["a"] == "x y" and seen[0]["recvWindow"] == "3000"
    assert int(seen[0]["timestamp"]) > 1_600_000_000_000
    assert limiter.acquired == [(20, 0, False)]
    assert limiter.used == [42] and client.last_used_weight == 42
    await client.aclose()


@pytest.mark.parametrize(
    ("status", "code", "msg", "cls"),
    [
        (400, -2010, "Account has insufficient balance for requested action.", InsufficientBalance),
        (400, -2010, "Duplicate order sent.", DuplicateOrder),
        (400, -2010, "Order would immediately match and take.", WouldTake),
        (400, -2010, "Filter failure: PRICE_FILTER", FilterRejected),
        (400, -2010, "Filter failure: MAX_NUM_ORDERS", TooManyOrders),
        (400, -2010, "This action is disabled on this account.", OrderRejected),
        (400, -1013, "Filter failure: LOT_SIZE", FilterRejected),
        (400, -1013, "Invalid quantity.", FilterRejected),
        (400, -1111, "Precision is over the maximum defined for this asset.", FilterRejected),
        (400, -1112, "No orders on book for symbol.", FilterRejected),
        (400, -2011, "Unknown order sent.", UnknownOrder),
        (400, -2013, "Order does not exist.", UnknownOrder),
        (400, -1121, "Invalid symbol.", UnknownSymbol),
        (400, -1007, "Timeout waiting for response from backend server.", OutcomeUnknown),
        (500, -1000, "An unknown error occurred.", OutcomeUnknown),
        (503, None, "Service Unavailable.", OutcomeUnknown),
        (429, -1003, "Too many requests.", RateLimited),
        (429, -1015, "Too many new orders.", RateLimited),
        (418, -1003, "Way too many requests; IP banned.", RateLimited),
    ],
)
def test_classify(status: int, code: int | None, msg: str, cls: type) -> None:
    exc = classify(status, code, msg, where="POST /api/v3/order", order=True)
    assert type(exc) is cls
    assert exc.code == code
    assert msg in str(exc)


def test_classify_non_order_and_rate_limit_details() -> None:
    assert type(classify(400, -1102, "Mandatory parameter missing")) is ExchangeError
    assert type(classify(400, -1102, "Mandatory parameter missing", order=True)) is OrderRejected
    rl = classify(418, -1003, "banned", retry_after=120)
    assert isinstance(rl, RateLimited) and rl.banned and rl.retry_after == 120
    rl = classify(429, -1015, "Too many new orders")
    assert isinstance(rl, RateLimited) and not rl.banned and rl.retry_after == 10


@pytest.mark.parametrize(("status", "banned"), [(429, False), (418, True)])
async def test_429_418_pause_the_real_limiter(
    status: int, banned: bool, autojump_clock: trio.testing.MockClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return json_response(
            status, {"code": -1003, "msg": "Too much request weight used"}, {"Retry-After": "7"}
        )

    limiter = Limiter(LimiterConfig())
    client = rest(handler, limiter)
    t0 = trio.current_time()
    with pytest.raises(RateLimited) as err:
        await client.request("GET", "/api/v3/openOrders", weight=6, signed=True)
    assert err.value.retry_after == 7 and err.value.banned is banned
    assert calls == 1  # a rate limit is not retried blindly
    assert limiter.paused_until == pytest.approx(t0 + 7)
    assert limiter.bans == (1 if banned else 0)
    # ALL traffic now waits until Retry-After has passed
    ok = httpx.MockTransport(lambda r: json_response(200, {}))
    client2 = BinanceRest(
        "https://api.test", api_key=None, signer=None, limiter=limiter, transport=ok
    )
    await client2.request("GET", "/api/v3/time", weight=1)
    assert trio.current_time() >= t0 + 7
    await client.aclose()
    await client2.aclose()


async def test_get_is_retried_with_backoff_post_is_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "GET" and calls.count("GET") < 3:
            return httpx.Response(503, text="Service Unavailable")
        if request.method == "POST":
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return json_response(200, {"serverTime": 1})

    limiter = RecordingLimiter()
    client = rest(handler, limiter)
    assert await client.request("GET", "/api/v3/time", weight=1) == {"serverTime": 1}
    assert calls == ["GET", "GET", "GET"]
    assert len(limiter.acquired) == 3  # every attempt takes its weight again
    with pytest.raises(OutcomeUnknown, match="HTTP 502"):
        await client.request(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT"},
            weight=1,
            orders=1,
            signed=True,
            order=True,
        )
    assert calls.count("POST") == 1
    await client.aclose()


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof")],
)
async def test_transport_errors_are_outcome_unknown(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client = rest(handler, get_retries=0)
    with pytest.raises(OutcomeUnknown) as err:
        await client.request(
            "DELETE",
            "/api/v3/order",
            {"symbol": "BTCUSDT"},
            weight=1,
            cancel=True,
            signed=True,
            order=True,
        )
    text = str(err.value)
    assert "DELETE /api/v3/order" in text
    assert KEY not in text and SECRET not in text and "signature" not in text
    await client.aclose()


def test_depth_weights() -> None:
    assert [depth_weight(n) for n in (5, 100, 101, 500, 1000, 5000)] == [5, 5, 25, 25, 50, 250]


# --------------------------------------------------------------------------- adapter


class FakeBinance:
    """A minimal REST venue for the adapter: verifies signatures, keeps one order book."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.next_id = 1
        self.fail: dict[tuple[str, str], httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        method = request.method
        if path == "/api/v3/time":
            return json_response(200, {"serverTime": time.time_ns() // 1_000_000})
        if path == "/api/v3/exchangeInfo":
            self.requests.append((method, path, {}))
            return json_response(200, EXCHANGE_INFO)
        params = check_signature(request)
        self.requests.append((method, path, params))
        if (method, path) in self.fail:
            return self.fail[(method, path)]
        if path == "/api/v3/order" and method == "POST":
            cid = params["newClientOrderId"]
            if cid in self.orders:
                return json_response(400, {"code": -2010, "msg": "Duplicate order sent."})
            order = {
                "symbol": params["symbol"],
                "orderId": self.next_id,
                "orderListId": -1,
                "clientOrderId": cid,
                "transactTime": 1700000000123,
                "price": params["price"],
                "origQty": params["quantity"],
                "executedQty": "0.00000000",
                "cummulativeQuoteQty": "0",
                "status": "NEW",
                "timeInForce": params.get("timeInForce", "GTC"),
                "type": params["type"],
                "side": params["side"],
            }
            self.next_id += 1
            self.orders[cid] = order
            return json_response(200, order)
        if path == "/api/v3/order":
            order = self.orders.get(params["origClientOrderId"])
            if order is None:
                return json_response(
                    400,
                    {
                        "code": -2011 if method == "DELETE" else -2013,
                        "msg": "Unknown order sent."
                        if method == "DELETE"
                        else "Order does not exist.",
                    },
                )
            if method == "GET":
                return json_response(200, {**order, "time": 1, "updateTime": 2})
            order["status"] = "CANCELED"
            del self.orders[params["origClientOrderId"]]
            return json_response(
                200,
                {
                    **order,
                    "origClientOrderId": order["clientOrderId"],
                    "clientOrderId": "cancel123",
                },
            )
        if path == "/api/v3/openOrders":
            sym = params.get("symbol")
            return json_response(
                200, [o for o in self.orders.values() if sym is None or o["symbol"] == sym]
            )
        if path == "/api/v3/account":
            return json_response(
                200,
                {
                    "balances": [
                        {"asset": "BTC", "free": "1.5", "locked": "0.25"},
                        {"asset": "USDT", "free": "1000.00000000", "locked": "0"},
                    ]
                },
            )
        if path == "/api/v3/myTrades":
            return json_response(
                200,
                [
                    {
                        "symbol": "BTCUSDT",
                        "id": 7,
                        "orderId": 1,
                        "price": "100.5",
                        "qty": "0.1",
                        "quoteQty": "10.05",
                        "commission": "0.0001",
                        "commissionAsset": "BTC",
                        "time": 1700000000000,
                        "isBuyer": True,
                        "isMaker": True,
                        "isBestMatch": True,
                    }
                ],
            )
        return json_response(404, {"code": -1, "msg": "not found"})


def exchange(fake: FakeBinance, limiter: Any = None) -> BinanceExchange:
    return BinanceExchange(
        base_url="https://api.test",
        ws_url="wss://stream.test",
        ws_api_url="wss://wsapi.test/ws-api/v3",
        api_key=KEY,
        api_secret=SECRET,
        limiter=limiter or RecordingLimiter(),
        transport=httpx.MockTransport(fake),
    )


async def test_adapter_orders_end_to_end_over_mock() -> None:
    fake = FakeBinance()
    limiter = RecordingLimiter()
    ex = exchange(fake, limiter)
    specs = await ex.load_specs()
    assert set(specs) == {"BTC/USDT", "SHIB/USDT"}
    assert limiter.acquired[-1] == (20, 0, False)

    req = OrderRequest(
        symbol="BTC/USDT",
        client_id="mm_BTCUSDT_L3_B_1",
        side="BUY",
        price=D("25000.10"),
        qty=D("1E-3"),
        post_only=True,
    )
    placed = await ex.place(req)
    assert limiter.acquired[-1] == (1, 1, False)
    method, path, params = fake.requests[-1]
    assert (method, path) == ("POST", "/api/v3/order")
    assert params["symbol"] == "BTCUSDT" and params["type"] == "LIMIT_MAKER"
    assert "timeInForce" not in params
    assert params["price"] == "25000.1" and params["quantity"] == "0.001"
    assert params["newClientOrderId"] == "mm_BTCUSDT_L3_B_1"
    assert params["newOrderRespType"] == "RESULT"
    assert (placed.symbol, placed.client_id, placed.status) == (
        "BTC/USDT",
        "mm_BTCUSDT_L3_B_1",
        "NEW",
    )
    assert placed.price == D("25000.1") and placed.qty == D("0.001")

    gtc = OrderRequest(
        symbol="BTC/USDT",
        client_id="mm_x_2",
        side="SELL",
        price=D("26000"),
        qty=D("0.002"),
        post_only=False,
    )
    await ex.place(gtc)
    assert fake.requests[-1][2]["type"] == "LIMIT"
    assert fake.requests[-1][2]["timeInForce"] == "GTC"
    with pytest.raises(DuplicateOrder):
        await ex.place(gtc)

    q = await ex.query("BTC/USDT", "mm_BTCUSDT_L3_B_1")
    assert limiter.acquired[-1] == (4, 0, False)
    assert fake.requests[-1][2]["origClientOrderId"] == "mm_BTCUSDT_L3_B_1"
    assert q.client_id == "mm_BTCUSDT_L3_B_1" and q.order_id == placed.order_id

    opens = await ex.open_orders("BTC/USDT")
    assert limiter.acquired[-1] == (6, 0, False)
    assert {o.client_id for o in opens} == {"mm_BTCUSDT_L3_B_1", "mm_x_2"}
    opens = await ex.open_orders()
    assert limiter.acquired[-1] == (80, 0, False)
    assert all(o.symbol == "BTC/USDT" for o in opens) and len(opens) == 2

    cancelled = await ex.cancel("BTC/USDT", "mm_BTCUSDT_L3_B_1")
    assert limiter.acquired[-1] == (1, 0, True)
    assert cancelled.client_id == "mm_BTCUSDT_L3_B_1" and cancelled.status == "CANCELED"
    with pytest.raises(UnknownOrder):
        await ex.cancel("BTC/USDT", "mm_BTCUSDT_L3_B_1")
    with pytest.raises(UnknownOrder):
        await ex.query("BTC/USDT", "mm_BTCUSDT_L3_B_1")

    # cancel_all (base class) only touches our prefix
    fake.orders["foreign"] = {**fake.orders["mm_x_2"], "clientOrderId": "foreign"}
    done = await ex.cancel_all("BTC/USDT", "mm")
    assert [o.client_id for o in done] == ["mm_x_2"] and list(fake.orders) == ["foreign"]

    bal = await ex.balances()
    assert limiter.acquired[-1] == (20, 0, False)
    assert fake.requests[-1][2]["omitZeroBalances"] == "true"
    assert bal["BTC"].free == D("1.5") and bal["BTC"].locked == D("0.25")

    trades = await ex.my_trades("BTC/USDT", from_id=5)
    assert limiter.acquired[-1] == (20, 0, False)
    assert trades[0].price == D("100.5") and trades[0].fee_asset == "BTC"
    assert fake.requests[-1][2]["fromId"] == "5"
    await ex.aclose()


async def test_placement_withdrawn_during_the_limiter_wait_is_never_sent() -> None:
    """``still_wanted`` is asked after the limiter grant: False -> PlaceWithdrawn, no POST."""
    fake = FakeBinance()
    wanted = {"yes": True}

    class WithdrawingLimiter(RecordingLimiter):
        async def acquire(
            self,
            weight: int = 1,
            orders: int = 0,
            *,
            cancel: bool = False,
            still_wanted: Callable[[], bool] | None = None,
        ) -> None:
            await super().acquire(weight, orders, cancel=cancel, still_wanted=still_wanted)
            if orders:
                wanted["yes"] = False  # its cancel was requested while it waited

    ex = exchange(fake, WithdrawingLimiter())
    await ex.load_specs()
    req = OrderRequest(
        symbol="BTC/USDT",
        client_id="mm_BTCUSDT_B0_1",
        side="BUY",
        price=D("25000.10"),
        qty=D("0.001"),
        post_only=True,
    )
    before = len(fake.requests)
    with pytest.raises(PlaceWithdrawn, match="mm_BTCUSDT_B0_1"):
        await ex.place(req, still_wanted=lambda: wanted["yes"])
    assert fake.requests[before:] == [] and fake.orders == {}
    # not wanted before the wait either: not even the limiter is asked
    with pytest.raises(PlaceWithdrawn):
        await ex.place(req, still_wanted=lambda: False)
    assert fake.requests[before:] == []
    await ex.aclose()


async def test_adapter_unknown_symbols_and_errors() -> None:
    fake = FakeBinance()
    ex = exchange(fake)
    await ex.load_specs()
    req = OrderRequest(symbol="DOGE/USDT", client_id="c1", side="BUY", price=D("1"), qty=D("1"))
    with pytest.raises(UnknownSymbol, match="DOGE/USDT"):
        await ex.place(req)
    with pytest.raises(UnknownSymbol):
        await ex.subscribe(["BTC/USDT", "btc-usdt"])
    assert ex.subscribed == []  # validated all before changing anything
    fake.fail[("POST", "/api/v3/order")] = json_response(
        400, {"code": -2010, "msg": "Account has insufficient balance for requested action."}
    )
    with pytest.raises(InsufficientBalance):
        await ex.place(
            OrderRequest(symbol="BTC/USDT", client_id="c2", side="BUY", price=D("1"), qty=D("1"))
        )
    fake.fail[("POST", "/api/v3/order")] = httpx.Response(504, text="Gateway Timeout")
    n = len(fake.requests)
    with pytest.raises(OutcomeUnknown):
        await ex.place(
            OrderRequest(symbol="BTC/USDT", client_id="c3", side="BUY", price=D("1"), qty=D("1"))
        )
    assert len(fake.requests) == n + 1  # never retried blindly
    await ex.aclose()


def test_secrets_masked(tmp_path: Any) -> None:
    fake = FakeBinance()
    ex = exchange(fake)
    for text in (repr(ex), str(ex), repr(ex.rest), repr(ex.user)):
        assert KEY not in text and SECRET not in text
    assert "***" in repr(ex)


def test_from_env_defaults_and_local_base_url(tmp_path: Any) -> None:
    env = {"MM_TRIO_API_KEY": KEY, "MM_TRIO_API_SECRET": SECRET}
    ex = BinanceExchange.from_env("binance", env=env)
    assert ex.base_url == "https://api.binance.com"
    assert ex.ws_url == "wss://stream.binance.com:9443"
    assert ex.ws_api_url == "wss://ws-api.binance.com:443/ws-api/v3"
    assert ex.user is not None and ex.rest.can_sign
    t = BinanceExchange.from_env("binance-testnet", env=env)
    assert t.base_url == "https://testnet.binance.vision"
    assert t.ws_url == "wss://stream.testnet.binance.vision"
    assert t.ws_api_url == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    assert t.name == "binance-testnet"
    local = BinanceExchange.from_env("binance", base_url="http://127.0.0.1:8123", env={})
    assert (local.ws_url, local.ws_api_url) == (
        "ws://127.0.0.1:8123",
        "ws://127.0.0.1:8123/ws-api/v3",
    )
    assert local.user is None and not local.rest.can_sign
    assert derive_ws_urls("https://h.example/") == ("wss://h.example", "wss://h.example/ws-api/v3")
    with pytest.raises(ValueError):
        BinanceExchange.from_env("kraken", env={})
    # Ed25519 from a PEM path
    from tests.test_binance_signing import ed_key

    path, _ = ed_key(tmp_path)
    ed = BinanceExchange.from_env(
        "binance", env={"MM_TRIO_API_KEY": KEY, "MM_TRIO_ED25519_KEY": str(path)}
    )
    assert ed.rest.can_sign and "Ed25519Signer" in repr(ed)
    with pytest.raises(ValueError):
        BinanceExchange.from_env("binance", env={**env, "MM_TRIO_ED25519_KEY": str(path)})


async def test_signed_call_without_keys_is_a_clear_error() -> None:
    fake = FakeBinance()
    ex = BinanceExchange(
        base_url="https://api.test",
        ws_url="wss://s",
        ws_api_url="wss://w",
        api_key=None,
        limiter=RecordingLimiter(),
        transport=httpx.MockTransport(fake),
    )
    with pytest.raises(ExchangeError, match="no API key"):
        await ex.balances()
    await ex.aclose()
