"""Binance spot protocol facts that the adapter (client) and the paper venue (server) share.

What both sides must agree on, written once: the request weight of every REST endpoint and
WebSocket API method (:class:`Weights`, :data:`REST_WEIGHTS`, :data:`WS_API_WEIGHTS`), the
error codes (:class:`ErrorCode`) and the reply messages a client reads meaning from
(:class:`ErrorMsg`), order statuses and sides, how Binance writes a decimal in a reply
(:func:`fmt_fixed`), the ``recvWindow`` bounds, the API-key header and the stream limit.

The adapter (:mod:`mm_trio.exchange.binance`) and the paper venue (:mod:`mm_trio.apps.paper`)
both import this module; it imports neither. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from mm_trio.domain.model import OrderStatus, Side

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_RECV_WINDOW_MS",
    "EXECUTION_TYPES",
    "MAX_RECV_WINDOW_MS",
    "MAX_STREAMS",
    "OPEN_STATUSES",
    "ORDER_STATUS",
    "REST_WEIGHTS",
    "SIDES",
    "WS_API_WEIGHTS",
    "ErrorCode",
    "ErrorMsg",
    "WeightOf",
    "Weights",
    "depth_weight",
    "depth_weight_of",
    "fmt_fixed",
]

# --------------------------------------------------------------------------- requests

API_KEY_HEADER = "X-MBX-APIKEY"
"""Header carrying the API key of a SIGNED REST request."""
DEFAULT_RECV_WINDOW_MS = 5000
"""``recvWindow`` when a signed request does not send one."""
MAX_RECV_WINDOW_MS = 60_000
"""Largest ``recvWindow`` Binance accepts."""
MAX_STREAMS = 1024
"""Binance's limit of streams on one websocket connection."""


class Weights:
    """Request weights as Binance documents them (REST and WebSocket API)."""

    PING = 1
    TIME = 1
    EXCHANGE_INFO = 20
    BOOK_TICKER_SYMBOL = 2
    BOOK_TICKER_ALL = 4
    PRICE_TICKER_SYMBOL = 2
    PRICE_TICKER_ALL = 4
    ACCOUNT = 20
    MY_TRADES = 20
    MY_TRADES_BY_ORDER = 5
    OPEN_ORDERS_SYMBOL = 6
    OPEN_ORDERS_ALL = 80
    CANCEL_OPEN_ORDERS = 1
    PLACE = 1
    TEST_ORDER = 1
    QUERY = 4
    CANCEL = 1
    WS_DEPTH = 5  # the paper venue charges the WebSocket API depth flat
    WS_SESSION = 2  # session.logon / status / logout, subscriptions
    WS_USER_STREAM_SUBSCRIBE = 2


# depth limit bands: (largest limit of the band, weight); beyond the last band the top weight
_DEPTH_BANDS = ((100, 5), (500, 25), (1000, 50))
_DEPTH_TOP_WEIGHT = 250
_DEPTH_DEFAULT_LIMIT = 100

WeightOf = Callable[[Mapping[str, str]], int]
"""A request's weight from its parameters."""


def depth_weight(limit: int) -> int:
    """``GET /api/v3/depth`` weight by ``limit``: 1-100: 5, 101-500: 25, 501-1000: 50,
    1001-5000: 250."""
    for largest, weight in _DEPTH_BANDS:
        if limit <= largest:
            return weight
    return _DEPTH_TOP_WEIGHT


def depth_weight_of(params: Mapping[str, str]) -> int:
    """The depth weight of a request's ``limit`` parameter (default 100)."""
    raw = params.get("limit", str(_DEPTH_DEFAULT_LIMIT))
    return depth_weight(int(raw) if raw.isdigit() else _DEPTH_DEFAULT_LIMIT)


def _fixed(weight: int) -> WeightOf:
    return lambda _params: weight


def _per_symbol(one: int, every: int) -> WeightOf:
    """``one`` with a ``symbol`` parameter, ``every`` without (all symbols)."""
    return lambda params: one if params.get("symbol") else every


def _my_trades_weight(params: Mapping[str, str]) -> int:
    return Weights.MY_TRADES_BY_ORDER if params.get("orderId") else Weights.MY_TRADES


REST_WEIGHTS: dict[tuple[str, str], WeightOf] = {
    ("GET", "/api/v3/ping"): _fixed(Weights.PING),
    ("GET", "/api/v3/time"): _fixed(Weights.TIME),
    ("GET", "/api/v3/exchangeInfo"): _fixed(Weights.EXCHANGE_INFO),
    ("GET", "/api/v3/depth"): depth_weight_of,
    ("GET", "/api/v3/ticker/bookTicker"): _per_symbol(
        Weights.BOOK_TICKER_SYMBOL, Weights.BOOK_TICKER_ALL
    ),
    ("GET", "/api/v3/ticker/price"): _per_symbol(
        Weights.PRICE_TICKER_SYMBOL, Weights.PRICE_TICKER_ALL
    ),
    ("GET", "/api/v3/account"): _fixed(Weights.ACCOUNT),
    ("GET", "/api/v3/myTrades"): _my_trades_weight,
    ("GET", "/api/v3/openOrders"): _per_symbol(Weights.OPEN_ORDERS_SYMBOL, Weights.OPEN_ORDERS_ALL),
    ("DELETE", "/api/v3/openOrders"): _fixed(Weights.CANCEL_OPEN_ORDERS),
    ("POST", "/api/v3/order"): _fixed(Weights.PLACE),
    ("POST", "/api/v3/order/test"): _fixed(Weights.TEST_ORDER),
    ("GET", "/api/v3/order"): _fixed(Weights.QUERY),
    ("DELETE", "/api/v3/order"): _fixed(Weights.CANCEL),
}
"""(method, path) -> weight of the request, for every REST endpoint the paper venue serves."""

WS_API_WEIGHTS: dict[str, WeightOf] = {
    "ping": _fixed(Weights.PING),
    "time": _fixed(Weights.TIME),
    "exchangeInfo": _fixed(Weights.EXCHANGE_INFO),
    "depth": _fixed(Weights.WS_DEPTH),
    "ticker.book": _per_symbol(Weights.BOOK_TICKER_SYMBOL, Weights.BOOK_TICKER_ALL),
    "session.logon": _fixed(Weights.WS_SESSION),
    "session.status": _fixed(Weights.WS_SESSION),
    "session.logout": _fixed(Weights.WS_SESSION),
    "userDataStream.subscribe": _fixed(Weights.WS_USER_STREAM_SUBSCRIBE),
    "userDataStream.subscribe.signature": _fixed(Weights.WS_USER_STREAM_SUBSCRIBE),
    "userDataStream.unsubscribe": _fixed(Weights.WS_USER_STREAM_SUBSCRIBE),
    "session.subscriptions": _fixed(Weights.WS_SESSION),
    "order.place": _fixed(Weights.PLACE),
    "order.cancel": _fixed(Weights.CANCEL),
    "order.status": _fixed(Weights.QUERY),
    "openOrders.status": _per_symbol(Weights.OPEN_ORDERS_SYMBOL, Weights.OPEN_ORDERS_ALL),
    "openOrders.cancelAll": _fixed(Weights.CANCEL_OPEN_ORDERS),
    "account.status": _fixed(Weights.ACCOUNT),
    "myTrades": _my_trades_weight,
}
"""WebSocket API method -> weight of the request."""


# --------------------------------------------------------------------------- errors


class ErrorCode:
    """Binance error codes (``{"code": ..., "msg": ...}``), named as Binance documents them."""

    UNKNOWN = -1000
    DISCONNECTED = -1001
    UNAUTHORIZED = -1002
    TOO_MANY_REQUESTS = -1003  # request weight: 429, or 418 once banned
    UNEXPECTED_RESP = -1006
    TIMEOUT = -1007  # sent, outcome unknown
    SERVER_BUSY = -1008
    INVALID_MESSAGE = -1013  # a filter failure on order entry
    UNKNOWN_ORDER_COMPOSITION = -1014
    TOO_MANY_ORDERS = -1015  # order count: 429 without Retry-After
    UNSUPPORTED_OPERATION = -1020
    INVALID_TIMESTAMP = -1021
    INVALID_SIGNATURE = -1022
    ILLEGAL_CHARS = -1100
    TOO_MANY_PARAMETERS = -1101
    MANDATORY_PARAM_EMPTY_OR_MALFORMED = -1102
    UNREAD_PARAMETERS = -1104
    PARAM_NOT_REQUIRED = -1106
    BAD_PRECISION = -1111
    NO_DEPTH = -1112
    INVALID_TIF = -1115
    INVALID_ORDER_TYPE = -1116
    INVALID_SIDE = -1117
    BAD_SYMBOL = -1121
    OPTIONAL_PARAMS_BAD_COMBO = -1128
    INVALID_PARAMETER = -1130
    BAD_RECV_WINDOW = -1131
    INVALID_JSON = -1135
    DUPLICATE_SYMBOLS = -1151
    NEW_ORDER_REJECTED = -2010
    CANCEL_REJECTED = -2011
    NO_SUCH_ORDER = -2013
    BAD_API_KEY_FMT = -2014
    REJECTED_MBX_KEY = -2015
    SUBSCRIPTION_ACTIVE = -2035
    SUBSCRIPTION_NOT_FOUND = -2036


class ErrorMsg:
    """Reply messages whose words carry meaning a client reads (``classify`` in
    :mod:`~mm_trio.exchange.binance.rest` tells these -2010 / -1013 rejections apart by them)."""

    TIMEOUT = (
        "Timeout waiting for response from backend server. Send status unknown; "
        "execution status unknown."
    )
    INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
    DUPLICATE_ORDER = "Duplicate order sent."
    WOULD_TAKE = "Order would immediately match and take."
    FILTER_FAILURE = "Filter failure: "  # + the filter's name, e.g. "Filter failure: LOT_SIZE"
    UNKNOWN_ORDER = "Unknown order sent."
    NO_SUCH_ORDER = "Order does not exist."
    INVALID_SYMBOL = "Invalid symbol."
    BAD_API_KEY = "Invalid API-key, IP, or permissions for action."


# --------------------------------------------------------------------------- orders

ORDER_STATUS: dict[str, OrderStatus] = {
    "PENDING_NEW": "PENDING_NEW",
    "NEW": "NEW",
    "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED",
    "CANCELED": "CANCELED",
    "PENDING_CANCEL": "NEW",  # unused by Binance; the order is still live
    "REJECTED": "REJECTED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",  # self-trade prevention
}
"""Binance order status -> ours."""
SIDES: dict[str, Side] = {"BUY": "BUY", "SELL": "SELL"}
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
"""Statuses of an order that can still fill (``isWorking``; open orders)."""
EXECUTION_TYPES: dict[str, str] = {
    "PARTIALLY_FILLED": "TRADE",
    "FILLED": "TRADE",
    "CANCELED": "CANCELED",
    "REJECTED": "REJECTED",
    "EXPIRED": "EXPIRED",
}
"""Order status -> ``executionReport`` execution type ``x`` (any other status: ``NEW``)."""


# --------------------------------------------------------------------------- replies

_FIXED_DECIMALS = 8


def fmt_fixed(value: Decimal) -> str:
    """A decimal as Binance writes one in a reply: fixed point, at least 8 decimals
    (``1.5`` -> ``1.50000000``), more only if the value has them; never an exponent."""
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and exp >= -_FIXED_DECIMALS:
        return f"{value:.{_FIXED_DECIMALS}f}"
    return format(value, "f")
