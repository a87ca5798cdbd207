"""ccxt (an independent Binance client) against the venue, in a worker thread.

ccxt's async layer is asyncio-only, so the SYNC ``ccxt.binance`` runs in
``trio.to_thread.run_sync`` while the venue serves from the trio loop.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio

from mm_trio.apps.paper import DEFAULT_API_KEY, DEFAULT_API_SECRET, PaperConfig, open_paper_venue
from mm_trio.domain.config import SimVenueConfig

ccxt = pytest.importorskip("ccxt")

D = Decimal


def make_exchange(http_url: str) -> Any:
    ex = ccxt.binance(
        {
            "apiKey": DEFAULT_API_KEY,
            "secret": DEFAULT_API_SECRET,
            "enableRateLimit": False,
            "timeout": 10_000,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
            },
        }
    )
    api = dict(ex.urls["api"])
    for key in api:  # every API family at the local server; only spot ones are used
        api[key] = f"{http_url}/api/v3"
    api["v1"] = f"{http_url}/api/v1"
    api["sapi"] = f"{http_url}/sapi/v1"
    ex.urls["api"] = api
    return ex


def scenario(http_url: str) -> dict[str, Any]:
    ex = make_exchange(http_url)
    out: dict[str, Any] = {}
    markets = ex.load_markets()
    out["market"] = markets["BTC/USDT"]
    out["spot_only"] = {m["type"] for m in markets.values()}
    ob = ex.fetch_order_book("BTC/USDT", limit=5)
    out["book"] = ob
    price = ob["bids"][0][0] - 1000
    out["price"] = price
    out["created"] = ex.create_limit_order("BTC/USDT", "buy", 0.002, price)
    oid = out["created"]["id"]
    out["fetched"] = ex.fetch_order(oid, "BTC/USDT")
    out["open"] = ex.fetch_open_orders("BTC/USDT")
    out["balance_open"] = ex.fetch_balance()
    out["canceled"] = ex.cancel_order(oid, "BTC/USDT")
    out["after_cancel"] = ex.fetch_order(oid, "BTC/USDT")
    out["open_after"] = ex.fetch_open_orders("BTC/USDT")
    out["balance"] = ex.fetch_balance()
    try:
        ex.create_limit_order("BTC/USDT", "buy", 1000, price)
    except ccxt.InsufficientFunds as exc:
        out["insufficient"] = str(exc)
    try:
        ex.fetch_order("424242", "BTC/USDT")
    except ccxt.OrderNotFound as exc:
        out["not_found"] = str(exc)
    return out


async def test_ccxt_binance_spot_client() -> None:
    sim = attrs.evolve(SimVenueConfig(), tick_interval_ms=20, latency_ms=1)
    cfg = PaperConfig(venue=sim, market_symbols=("BTC/USDT", "ETH/USDT"))
    async with open_paper_venue(cfg) as srv:
        with trio.fail_after(5):
            await srv.venue.hub.wait_quote("BTC/USDT")
        with trio.fail_after(30):
            out = await trio.to_thread.run_sync(scenario, srv.http_url)

    m = out["market"]
    assert out["spot_only"] == {"spot"}
    assert m["id"] == "BTCUSDT" and m["base"] == "BTC" and m["quote"] == "USDT"
    assert m["spot"] is True and m["active"] is True
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.00001
    assert m["limits"]["cost"]["min"] == 5.0
    assert m["limits"]["amount"]["min"] == 0.00001

    book = out["book"]
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
    assert book["nonce"] > 0

    price = out["price"]
    created = out["created"]
    assert created["symbol"] == "BTC/USDT" and created["type"] == "limit"
    assert created["side"] == "buy" and created["status"] == "open"
    assert created["price"] == price and created["amount"] == 0.002
    assert created["filled"] == 0.0 and created["remaining"] == 0.002
    assert created["timeInForce"] == "GTC"
    assert created["clientOrderId"]

    fetched = out["fetched"]
    for key in (
        "id",
        "clientOrderId",
        "symbol",
        "type",
        "side",
        "price",
        "amount",
        "status",
        "timestamp",
    ):
        assert fetched[key] == created[key], key
    assert [o["id"] for o in out["open"]] == [created["id"]]

    locked = D(str(price)) * D("0.002")
    usdt_open = out["balance_open"]["USDT"]
    assert D(str(usdt_open["used"])) == locked
    assert D(str(usdt_open["free"])) == D(100000) - locked
    assert D(str(usdt_open["total"])) == D(100000)

    canceled = out["canceled"]
    assert canceled["id"] == created["id"] and canceled["status"] == "canceled"
    assert out["after_cancel"]["status"] == "canceled"
    assert out["open_after"] == []
    usdt = out["balance"]["USDT"]
    assert usdt["free"] == 100000.0 and usdt["used"] == 0.0 and usdt["total"] == 100000.0
    assert out["balance"]["BTC"]["free"] == 1.0
    assert "insufficient balance" in out["insufficient"]
    assert "Order does not exist" in out["not_found"]


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
