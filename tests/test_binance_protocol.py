"""The Binance protocol facts the adapter and the paper venue share (exchange/binance/protocol.py):
both sides read the same weights, and what the paper venue answers is what the adapter's
classifier expects; plus the pure helpers split out of the adapter (trades.py, encode.py)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm_trio.apps.paper.orders import ENGINE_REJECTIONS, rejection_error
from mm_trio.apps.paper.rest import ENDPOINTS
from mm_trio.apps.paper.wsapi import METHODS
from mm_trio.domain.model import OpenOrder, OrderUpdate, Trade
from mm_trio.exchange.base import (
    DuplicateOrder,
    ExchangeError,
    FilterRejected,
    InsufficientBalance,
    OutcomeUnknown,
    TooManyOrders,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.binance.encode import encode_agg_trade, encode_execution_report
from mm_trio.exchange.binance.protocol import (
    REST_WEIGHTS,
    WS_API_WEIGHTS,
    Weights,
    depth_weight,
    depth_weight_of,
    fmt_fixed,
)
from mm_trio.exchange.binance.rest import classify
from mm_trio.exchange.binance.trades import fills_from_trades, my_trades_from_json

D = Decimal


def test_the_paper_venue_serves_exactly_the_endpoints_and_methods_protocol_weighs() -> None:
    assert set(ENDPOINTS) == set(REST_WEIGHTS)
    assert set(METHODS) == set(WS_API_WEIGHTS)
    for key, endpoint in ENDPOINTS.items():
        assert endpoint.weight is REST_WEIGHTS[key]
    for name, (weight, _handler, _orders) in METHODS.items():
        assert weight is WS_API_WEIGHTS[name]


@pytest.mark.parametrize(
    ("method", "path", "params", "client_weight"),
    [
        ("POST", "/api/v3/order", {}, Weights.PLACE),
        ("DELETE", "/api/v3/order", {}, Weights.CANCEL),
        ("GET", "/api/v3/order", {}, Weights.QUERY),
        ("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, Weights.OPEN_ORDERS_SYMBOL),
        ("GET", "/api/v3/openOrders", {}, Weights.OPEN_ORDERS_ALL),
        ("GET", "/api/v3/account", {}, Weights.ACCOUNT),
        ("GET", "/api/v3/exchangeInfo", {}, Weights.EXCHANGE_INFO),
        ("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, Weights.MY_TRADES),
        (
            "GET",
            "/api/v3/myTrades",
            {"symbol": "BTCUSDT", "orderId": "7"},
            Weights.MY_TRADES_BY_ORDER,
        ),
        ("GET", "/api/v3/time", {}, Weights.TIME),
    ],
)
def test_the_server_charges_what_the_client_books(
    method: str, path: str, params: dict[str, str], client_weight: int
) -> None:
    assert REST_WEIGHTS[(method, path)](params) == client_weight


def test_the_user_stream_subscription_weight_is_the_same_on_both_sides() -> None:
    assert (
        WS_API_WEIGHTS["userDataStream.subscribe.signature"]({}) == Weights.WS_USER_STREAM_SUBSCRIBE
    )


@given(st.integers(min_value=0, max_value=10_000))
def test_depth_weight_of_a_request_is_the_clients_depth_weight(limit: int) -> None:
    assert depth_weight_of({"limit": str(limit)}) == depth_weight(limit)


def test_depth_weight_bands_and_default() -> None:
    assert [depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == [
        5,
        5,
        25,
        25,
        50,
        50,
        250,
        250,
    ]
    assert depth_weight_of({}) == depth_weight_of({"limit": "x"}) == 5


@pytest.mark.parametrize(
    "engine_error",
    [
        DuplicateOrder("duplicate client id"),
        InsufficientBalance("not enough USDT"),
        WouldTake("post-only would take"),
        TooManyOrders("200 open orders"),
        FilterRejected("Filter failure: PRICE_FILTER: price 1.234 not on tick 0.01"),
        UnknownSymbol("no such symbol"),
        OutcomeUnknown("engine timeout"),
    ],
)
def test_the_clients_classifier_reads_every_paper_rejection_as_the_engines_error(
    engine_error: ExchangeError,
) -> None:
    assert isinstance(engine_error, ENGINE_REJECTIONS)
    reply = rejection_error(engine_error)
    seen = classify(reply.status, reply.code, reply.msg, order=True)
    assert type(seen) is type(engine_error), (reply.body(), seen)


def test_filter_rejection_names_only_the_filter() -> None:
    reply = rejection_error(FilterRejected("Filter failure: LOT_SIZE: qty 0.00001 < 0.0001"))
    assert reply.body() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("1.5"), "1.50000000"),
        (D(0), "0.00000000"),
        (D("61837.63"), "61837.63000000"),
        (D("0.000000001"), "0.000000001"),
        (D("1E+3"), "1000.00000000"),
    ],
)
def test_fmt_fixed_writes_decimals_as_binance_does(value: Decimal, text: str) -> None:
    assert fmt_fixed(value) == text


def test_agg_trade_encoding_round_trips_with_the_aggregate_id() -> None:
    trade = Trade(
        symbol="BTC/USDT",
        price=D("100.5"),
        qty=D("0.25"),
        buyer_maker=False,
        trade_id=42,
        ts=1_700_000_000_123_000_000,
    )
    raw = encode_agg_trade(trade, agg_id=7, combined=False)
    body = msgspec.json.decode(raw)
    assert (body["e"], body["a"], body["f"], body["l"], body["T"]) == (
        "aggTrade",
        7,
        42,
        42,
        1_700_000_000_123,
    )
    decoded = StreamDecoder({"BTCUSDT": "BTC/USDT"}).decode(encode_agg_trade(trade, agg_id=7))
    assert decoded == [msgspec.structs.replace(trade, trade_id=7)]


def _update(**kw: object) -> OrderUpdate:
    base: dict[str, object] = dict(
        symbol="BTC/USDT",
        client_id="c1",
        side="BUY",
        price=D("100.7"),
        qty=D("0.3"),
        status="PARTIALLY_FILLED",
        cum_qty=D("0.1"),
        last_qty=D("0.1"),
        last_price=D("100.5"),
        fee=D(0),
        fee_asset="USDT",
        trade_id=9,
        order_id="5",
        maker=False,
        ts=1_700_000_000_000_000_000,
    )
    base.update(kw)
    return OrderUpdate(**base)  # type: ignore[arg-type]


def test_execution_report_takes_the_ledgers_order_facts() -> None:
    """A MARKET order's engine limit price is not its Binance price (0): the ledger's facts
    replace the update's in p, q, Z, O/W, f, Q and V; the rest stays the update's."""
    u = _update()
    plain = msgspec.json.decode(encode_execution_report(u))
    ledger = msgspec.json.decode(
        encode_execution_report(
            u,
            order_type="MARKET",
            time_in_force="IOC",
            order_price=D(0),
            order_qty=D("0.3"),
            cum_quote_qty=D("10.07"),
            order_time_ms=1_699_999_999_000,
            quote_order_qty=D("30"),
            stp_mode="NONE",
        )
    )
    changed = {k for k in plain if plain[k] != ledger[k]}
    assert changed == {"o", "f", "p", "Z", "O", "W", "Q", "V"}
    assert (
        ledger["p"],
        ledger["q"],
        ledger["Z"],
        ledger["O"],
        ledger["W"],
        ledger["Q"],
        ledger["f"],
        ledger["V"],
    ) == (
        "0.00000000",
        "0.30000000",
        "10.07000000",
        1_699_999_999_000,
        1_699_999_999_000,
        "30.00000000",
        "IOC",
        "NONE",
    )
    assert (plain["f"], plain["V"], plain["Z"]) == ("GTC", "EXPIRE_MAKER", "10.05000000")


def test_fills_from_trades_sorts_by_trade_id_and_accumulates() -> None:
    order = OpenOrder(
        symbol="BTC/USDT",
        client_id="mmt_1",
        order_id="5",
        side="SELL",
        price=D("101"),
        qty=D("0.3"),
        cum_qty=D("0.3"),
        status="FILLED",
        ts=0,
    )
    body = [
        {
            "id": 12,
            "orderId": 5,
            "price": "101",
            "qty": "0.2",
            "commission": "0.0202",
            "commissionAsset": "USDT",
            "time": 2000,
            "isBuyer": False,
            "isMaker": True,
        },
        {
            "id": 11,
            "orderId": 5,
            "price": "101",
            "qty": "0.1",
            "commission": "0.0101",
            "commissionAsset": "USDT",
            "time": 1000,
            "isBuyer": False,
            "isMaker": True,
        },
    ]
    fills = fills_from_trades(order, body)
    assert [(f.trade_id, f.cum_qty, f.status, f.ts) for f in fills] == [
        (11, D("0.1"), "PARTIALLY_FILLED", 1000 * 1_000_000),
        (12, D("0.3"), "FILLED", 2000 * 1_000_000),
    ]
    assert all(f.client_id == "mmt_1" and f.maker for f in fills)
    trades = my_trades_from_json(body, "BTC/USDT")
    assert [(t.trade_id, t.order_id, t.fee) for t in trades] == [
        (12, "5", D("0.0202")),
        (11, "5", D("0.0101")),
    ]
