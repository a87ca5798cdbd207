"""The JSON shapes of Binance spot (and USDⓈ-M futures market data) as msgspec Structs.

Only the fields we read are declared; msgspec ignores the rest. Stream payloads
(``bookTicker``, ``trade``, ``aggTrade``, ``depthUpdate``, ``executionReport``,
``outboundAccountPosition`` and the envelopes around them) are decoded by
:mod:`~mm_trio.exchange.binance.decode`, WebSocket API responses by
:mod:`~mm_trio.exchange.binance.streams`; REST bodies (``exchangeInfo``, orders, account,
``myTrades``, errors) by :mod:`~mm_trio.exchange.binance.specs`,
:mod:`~mm_trio.exchange.binance.trades` and :mod:`~mm_trio.exchange.binance.rest`.

Stream prices and quantities are declared as strings (:data:`Num`), so that msgspec refuses a
JSON number there (it would accept one for a Decimal field); the decoder checks and converts
them. REST bodies are converted straight into ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from mm_trio.domain.model import ZERO

# --------------------------------------------------------------------------- streams

Num = str
WireLevel = tuple[Num, Num]


class BookTickerJson(msgspec.Struct):
    s: str
    b: Num
    B: Num
    a: Num
    A: Num
    u: int = 0
    E: int | None = None  # futures only
    T: int | None = None  # futures only


class TradeJson(msgspec.Struct):
    s: str
    p: Num
    q: Num
    t: int
    m: bool
    E: int | None = None
    T: int | None = None


class AggTradeJson(msgspec.Struct):
    s: str
    p: Num
    q: Num
    a: int
    m: bool
    E: int | None = None
    T: int | None = None


class DepthJson(msgspec.Struct):
    s: str
    U: int
    u: int
    b: list[WireLevel]
    a: list[WireLevel]
    E: int | None = None
    pu: int | None = None


class DepthSkipJson(msgspec.Struct):
    """Validates a depth message without materialising its levels."""

    s: str


class ExecutionReportJson(msgspec.Struct):
    s: str
    c: str
    S: str
    p: Num
    q: Num
    X: str
    i: int | str
    z: Num = "0"
    l: Num = "0"  # noqa: E741
    L: Num = "0"
    n: Num | None = None
    N: str | None = None
    t: int | None = None
    C: str | None = None
    r: str | None = None
    m: bool = False
    E: int | None = None
    T: int | None = None


class BalanceEntryJson(msgspec.Struct):
    a: str
    f: Num
    l: Num  # noqa: E741


class AccountPositionJson(msgspec.Struct):
    B: list[BalanceEntryJson]
    E: int | None = None


class EnvelopeJson(msgspec.Struct):
    """Generic envelope: combined stream, WS-API event, control reply or raw payload."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    event: msgspec.Raw = msgspec.Raw()
    e: str | None = None
    id: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    status: int | None = None
    lastUpdateId: int | None = None  # REST depth snapshot (hftbacktest records one)
    A: msgspec.Raw = msgspec.Raw()  # spot raw bookTicker has no "e"


class EventTypeJson(msgspec.Struct):
    e: str | None = None
    A: msgspec.Raw = msgspec.Raw()


class WsApiResponseJson(msgspec.Struct):
    """A WebSocket API response ``{"id", "status", "result" | "error"}``."""

    id: Any = None
    status: int | None = None
    error: dict[str, Any] | None = None
    result: Any = None


# --------------------------------------------------------------------------- REST


class FilterJson(msgspec.Struct, kw_only=True):
    filterType: str
    minPrice: Decimal | None = None
    maxPrice: Decimal | None = None
    tickSize: Decimal | None = None
    minQty: Decimal | None = None
    maxQty: Decimal | None = None
    stepSize: Decimal | None = None
    minNotional: Decimal | None = None
    maxNumOrders: int | None = None
    limit: int | None = None


class SymbolInfoJson(msgspec.Struct, kw_only=True):
    symbol: str
    status: str = "TRADING"
    baseAsset: str
    quoteAsset: str
    filters: list[FilterJson] = msgspec.field(default_factory=list)


class ExchangeInfoJson(msgspec.Struct, kw_only=True):
    symbols: list[SymbolInfoJson]


class OrderJson(msgspec.Struct, kw_only=True):
    symbol: str
    orderId: int | str
    clientOrderId: str
    origClientOrderId: str | None = None
    price: Decimal
    origQty: Decimal
    executedQty: Decimal = ZERO
    status: str
    side: str
    transactTime: int | None = None
    updateTime: int | None = None
    time: int | None = None
    workingTime: int | None = None


class BalanceJson(msgspec.Struct):
    asset: str
    free: Decimal
    locked: Decimal


class AccountJson(msgspec.Struct):
    balances: list[BalanceJson]


class MyTradeJson(msgspec.Struct):
    id: int
    orderId: int | str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    time: int
    isBuyer: bool
    isMaker: bool


class ErrorJson(msgspec.Struct):
    code: int
    msg: str = ""
