"""The paper venue's pure seams: new-order checks (apps/paper/orders.py), MARKET pricing, and
the market hub without a venue (apps/paper/hub.py)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from mm_trio.apps.paper.hub import MarketHub, parse_stream
from mm_trio.apps.paper.orders import (
    MARKET_PROTECTION,
    NewOrder,
    market_order_price,
    validate_order,
)
from mm_trio.apps.paper.params import ApiError
from mm_trio.domain.model import Quote, SymbolSpec, Trade

D = Decimal
SPEC = SymbolSpec(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.0001"),
    min_qty=D("0.0001"),
    min_notional=D("5"),
)
BTC = "BTC/USDT"


def _refusal(params: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        validate_order(params, BTC, SPEC)
    return info.value.code, info.value.msg


def test_a_valid_limit_order() -> None:
    order = validate_order(
        {
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "price": "100.01",
            "quantity": "0.5",
            "newClientOrderId": "mine-1",
        },
        BTC,
        SPEC,
    )
    assert order == NewOrder(
        symbol=BTC,
        side="BUY",
        type="LIMIT",
        tif="GTC",
        qty=D("0.5"),
        quote_qty=None,
        price=D("100.01"),
        client_id="mine-1",
        resp="FULL",
    )


def test_limit_maker_and_market_resolve_gtc_and_their_response_type() -> None:
    maker = validate_order(
        {"side": "SELL", "type": "LIMIT_MAKER", "price": "100", "quantity": "0.1"}, BTC, SPEC
    )
    assert (maker.tif, maker.resp, len(maker.client_id)) == ("GTC", "ACK", 22)
    market = validate_order({"side": "BUY", "type": "MARKET", "quoteOrderQty": "50"}, BTC, SPEC)
    assert (market.tif, market.resp, market.qty, market.quote_qty) == ("GTC", "FULL", None, D("50"))


@pytest.mark.parametrize(
    ("params", "code", "msg_part"),
    [
        ({}, -1102, "'side'"),
        ({"side": "HOLD", "type": "NOPE"}, -1117, "Invalid side."),  # side before type
        ({"side": "BUY"}, -1102, "'type'"),
        ({"side": "BUY", "type": "STOP_LOSS"}, -2010, "Stop loss orders"),
        ({"side": "BUY", "type": "OCO"}, -1116, "Invalid orderType."),
        # the decimals are read before the type's own checks
        ({"side": "BUY", "type": "LIMIT", "price": "1e5"}, -1100, "'price'"),
        ({"side": "BUY", "type": "LIMIT"}, -1102, "'timeInForce'"),
        ({"side": "BUY", "type": "LIMIT", "timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
        ({"side": "BUY", "type": "LIMIT", "timeInForce": "FOK"}, -1014, "Unsupported order"),
        ({"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1"}, -1102, "'price'"),
        ({"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "1"}, -1102, "'quantity'"),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "price": "1",
                "quantity": "1",
                "quoteOrderQty": "1",
            },
            -1106,
            "'quoteOrderQty'",
        ),
        ({"side": "BUY", "type": "LIMIT_MAKER", "timeInForce": "GTC"}, -1106, "'timeInForce'"),
        ({"side": "BUY", "type": "MARKET", "price": "1"}, -1106, "'price'"),
        ({"side": "BUY", "type": "MARKET", "timeInForce": "IOC"}, -1106, "'timeInForce'"),
        ({"side": "BUY", "type": "MARKET"}, -1102, "but both were empty/null!"),
        (
            {"side": "BUY", "type": "MARKET", "quantity": "1", "quoteOrderQty": "1"},
            -1102,
            "but not both!",
        ),
        # client id and response type come before the filters
        (
            {"side": "BUY", "type": "MARKET", "quantity": "0.00001", "newClientOrderId": "a b"},
            -1100,
            "'newClientOrderId'",
        ),
        (
            {"side": "BUY", "type": "MARKET", "quantity": "0.00001", "newOrderRespType": "ALL"},
            -1130,
            "'newOrderRespType'",
        ),
        (
            {"side": "BUY", "type": "MARKET", "quantity": "0.00001"},
            -1013,
            "Filter failure: LOT_SIZE",
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "price": "100.001",
                "quantity": "1",
            },
            -1013,
            "Filter failure: PRICE_FILTER",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "1", "quantity": "1"},
            -1013,
            "Filter failure: NOTIONAL",
        ),
    ],
)
def test_each_check_in_binance_order(params: dict[str, str], code: int, msg_part: str) -> None:
    got_code, msg = _refusal(params)
    assert (got_code, msg_part in msg) == (code, True), msg


def _quote(bid: str, ask: str) -> Quote:
    return Quote(symbol=BTC, bid=D(bid), bid_qty=D(1), ask=D(ask), ask_qty=D(1), ts=0)


def test_market_order_price_goes_through_the_touch() -> None:
    q = _quote("100.00", "100.02")
    price, qty = market_order_price(q, "BUY", D("0.1"), D(0), SPEC)
    assert (price, qty) == (D("100.53"), D("0.1"))  # ceil(100.02 * 1.005) on the tick
    assert price == (D("100.02") * (1 + MARKET_PROTECTION)).quantize(D("0.01"), "ROUND_UP")
    price, qty = market_order_price(q, "SELL", None, D("50"), SPEC)
    assert (price, qty) == (D("99.50"), D("0.5"))  # quote qty at the bid, floored on the step


@pytest.mark.parametrize(
    ("quote", "qty", "quote_qty", "msg"),
    [
        (None, D("1"), D(0), "Market is closed."),
        (_quote("100", "101"), None, D("0.001"), "Filter failure: LOT_SIZE"),
        (_quote("100", "101"), D("0.001"), D(0), "Filter failure: NOTIONAL"),
    ],
)
def test_market_order_price_refusals(
    quote: Quote | None, qty: Decimal | None, quote_qty: Decimal, msg: str
) -> None:
    with pytest.raises(ApiError) as info:
        market_order_price(quote, "BUY", qty, quote_qty, SPEC)
    assert info.value.msg == msg


def test_market_hub_publishes_without_a_venue() -> None:
    hub = MarketHub({BTC: SPEC}, depth_levels=3)
    got: list[tuple[str, dict[str, object]]] = []

    def sink(stream: str, payload: bytes) -> None:
        got.append((stream, msgspec.json.decode(payload)))

    streams = [
        parse_stream(n, {"BTCUSDT": BTC})
        for n in ("BTCUSDT@bookTicker", "btcusdt@aggTrade", "btcusdt@depth5@100ms")
    ]
    assert streams == ["btcusdt@bookTicker", "btcusdt@aggTrade", "btcusdt@depth5@100ms"]
    hub.subscribe(sink, [s for s in streams if s is not None])
    hub.on_market(_quote("100.00", "100.02"))
    for trade_id in (5, 6):
        hub.on_market(
            Trade(
                symbol=BTC,
                price=D("100.01"),
                qty=D("0.2"),
                buyer_maker=True,
                trade_id=trade_id,
                ts=1_000_000,
            )
        )
    hub.flush_depth("100ms", 0)
    assert [s for s, _ in got] == [
        "btcusdt@bookTicker",
        "btcusdt@aggTrade",
        "btcusdt@aggTrade",
        "btcusdt@depth5@100ms",
    ]
    assert got[0][1]["u"] == 1 and got[0][1]["b"] == "100.00000000"
    assert [body["a"] for s, body in got if s.endswith("aggTrade")] == [1, 2]
    depth = got[3][1]
    assert depth["lastUpdateId"] == 1 and len(depth["bids"]) == len(depth["asks"]) == 3  # type: ignore[arg-type]
