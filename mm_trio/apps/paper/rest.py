"""REST ``/api/v3`` endpoints of the venue, with Binance's parameters, errors, weights, headers.

Every request, in order: the body is read up to :data:`~mm_trio.apps.paper.config.MAX_BODY_BYTES`
(413 ``-1101`` beyond it, before any other work), parameters are read from the query string and
the form body (the query string wins; a parameter twice in one of them is ``-1101``), forced
418/429 faults, the request weight is charged to the client IP (429/418 per
:mod:`mm_trio.apps.paper.ratelimit`), the configured delay, injected 5xx failures, then for SIGNED
endpoints the API key, ``timestamp`` / ``recvWindow`` and signature over the raw query string +
body. Every response carries ``X-MBX-USED-WEIGHT-1M``; successful new-order responses also
``X-MBX-ORDER-COUNT-10S`` and ``X-MBX-ORDER-COUNT-1D``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import attrs
import trio
from starlette.requests import Request
from starlette.responses import Response

from mm_trio.apps.paper.auth import split_signature
from mm_trio.apps.paper.config import MAX_BODY_BYTES
from mm_trio.apps.paper.ledger import Account
from mm_trio.apps.paper.params import ApiError, illegal, json_bytes, mandatory, param_int
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.apps.web import BodyTooLarge, read_body
from mm_trio.exchange.binance.protocol import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    REST_WEIGHTS,
    ErrorCode,
    ErrorMsg,
    WeightOf,
)

log = logging.getLogger(__name__)

JSON_TYPE = "application/json;charset=UTF-8"

Handler = Callable[[PaperVenue, dict[str, str], Account | None, dict[str, str]], Awaitable[Any]]


@attrs.frozen
class Endpoint:
    weight: WeightOf
    handler: Handler
    signed: bool = False
    params: frozenset[str] = frozenset()  # every parameter Binance reads (beyond signing)

    def unread(self, params: Mapping[str, str]) -> list[str]:
        """Parameters Binance would not read (it answers -1104 before doing anything)."""
        known = self.params | _SIGNING if self.signed else self.params
        return [name for name in params if name not in known]


_SIGNING = frozenset({"timestamp", "recvWindow", "signature"})
_ORDER_PARAMS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "strategyId",
        "strategyType",
        "stopPrice",
        "trailingDelta",
        "icebergQty",
        "newOrderRespType",
        "selfTradePreventionMode",
        "pegPriceType",
        "pegOffsetValue",
        "pegOffsetType",
    }
)


def parse_params(query: bytes, body: bytes) -> dict[str, str]:
    """Parameters of the query string and the body; the query string wins."""
    out: dict[str, str] = {}
    for source in (query, body):
        if not source:
            continue
        seen: set[str] = set()
        for key, value in parse_qsl(source.decode("utf-8", "replace"), keep_blank_values=True):
            if key in seen:
                raise ApiError(
                    ErrorCode.TOO_MANY_PARAMETERS, "Duplicate values for a parameter detected."
                )
            seen.add(key)
            out.setdefault(key, value)
    return out


def authenticate(
    venue: PaperVenue, request: Request, query: bytes, body: bytes, params: Mapping[str, str]
) -> Account:
    """The account of a SIGNED request, or the Binance error."""
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        raise ApiError(ErrorCode.BAD_API_KEY_FMT, "API-key format invalid.", 401)
    acct = venue.accounts.get(key)
    if acct is None:
        raise ApiError(ErrorCode.REJECTED_MBX_KEY, ErrorMsg.BAD_API_KEY, 401)
    return check_signed(venue, acct, params, lambda: split_signature(query, body))


def check_signed(
    venue: PaperVenue,
    acct: Account,
    params: Mapping[str, str],
    payload_of: Callable[[], tuple[bytes, str | None]],
) -> Account:
    """``timestamp``, ``recvWindow`` and signature checks shared by REST and WebSocket API."""
    ts = param_int(params, "timestamp", required=True)
    assert ts is not None
    recv_window = param_int(params, "recvWindow")
    if recv_window is None:
        recv_window = DEFAULT_RECV_WINDOW_MS
    if recv_window > venue.config.max_recv_window_ms:
        raise ApiError(
            ErrorCode.BAD_RECV_WINDOW,
            f"recvWindow must be less than {venue.config.max_recv_window_ms}.",
        )
    payload, signature = payload_of()
    if not signature:
        raise mandatory("signature")
    if not acct.credentials.verify(payload, signature):
        raise ApiError(ErrorCode.INVALID_SIGNATURE, "Signature for this request is not valid.")
    now = venue.now_ms()
    if ts >= now + venue.config.ahead_tolerance_ms:
        raise ApiError(
            ErrorCode.INVALID_TIMESTAMP,
            f"Timestamp for this request was "
            f"{venue.config.ahead_tolerance_ms}ms ahead of the server's time.",
        )
    if now - ts > recv_window:
        raise ApiError(
            ErrorCode.INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow."
        )
    return acct


# --------------------------------------------------------------------------- handlers


async def _ping(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    return {}


async def _time(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    return {"serverTime": venue.now_ms()}


async def _exchange_info(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    return venue.exchange_info(params)


async def _depth(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    return await venue.depth(params)


async def _book_ticker(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    one = venue.symbol(params, required=False)
    if one is not None:
        if params.get("symbols"):
            raise ApiError(
                ErrorCode.OPTIONAL_PARAMS_BAD_COMBO, "Combination of optional parameters invalid."
            )
        await venue.ensure_market(one)
        return venue.book_ticker(one)
    many = venue.symbols_param(params)
    return [venue.book_ticker(s) for s in (many if many is not None else venue.engine_specs)]


async def _price_ticker(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    one = venue.symbol(params, required=False)
    if one is not None:
        return venue.price_ticker(one)
    many = venue.symbols_param(params)
    return [venue.price_ticker(s) for s in (many if many is not None else venue.engine_specs)]


async def _account(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    return venue.account_info(acct, params)


async def _my_trades(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    return venue.my_trades(acct, params)


async def _open_orders(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    return venue.open_orders(acct, params)


async def _cancel_open_orders(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    result = await venue.cancel_open_orders(acct, params)
    await _maybe_hang(venue, "timeout_next_cancels")
    return result


async def _get_order(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    return venue.query_order(acct, params)


async def _cancel_order(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    result = await venue.cancel_order(acct, params)
    await _maybe_hang(venue, "timeout_next_cancels")
    return result


async def _maybe_hang(venue: PaperVenue, fault: str) -> None:
    """The "applied but never answered" fault: hang, then answer 503 ``-1007``."""
    if venue.faults.take(fault):
        await trio.sleep(venue.faults.timeout_hang_s)
        raise ApiError(ErrorCode.TIMEOUT, ErrorMsg.TIMEOUT, 503)


def order_count_headers(venue: PaperVenue, acct: Account, headers: dict[str, str]) -> None:
    short, day = venue.limiter.order_counts(acct.api_key, venue.now_s())
    headers[venue.limiter.order_short_header] = str(short)
    headers[venue.limiter.order_day_header] = str(day)


async def _new_order(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    assert acct is not None
    order = venue.validate_order(params)
    decision = venue.limiter.check_order(acct.api_key, venue.now_s())
    if decision.status != 200:
        raise ApiError(decision.code, decision.msg, decision.status)
    rec = await venue.place_order(acct, order)
    order_count_headers(venue, acct, headers)
    await _maybe_hang(venue, "timeout_next_orders")
    return rec.reply(order.resp)


async def _test_order(
    venue: PaperVenue, params: dict[str, str], acct: Account | None, headers: dict[str, str]
) -> Any:
    venue.validate_order(params)
    return {}


def _p(*names: str) -> frozenset[str]:
    return frozenset(names)


_ROUTES: dict[tuple[str, str], tuple[Handler, bool, frozenset[str]]] = {
    ("GET", "/api/v3/ping"): (_ping, False, _p()),
    ("GET", "/api/v3/time"): (_time, False, _p()),
    ("GET", "/api/v3/exchangeInfo"): (
        _exchange_info,
        False,
        _p("symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"),
    ),
    ("GET", "/api/v3/depth"): (_depth, False, _p("symbol", "limit")),
    ("GET", "/api/v3/ticker/bookTicker"): (
        _book_ticker,
        False,
        _p("symbol", "symbols", "symbolStatus"),
    ),
    ("GET", "/api/v3/ticker/price"): (
        _price_ticker,
        False,
        _p("symbol", "symbols", "symbolStatus"),
    ),
    ("GET", "/api/v3/account"): (_account, True, _p("omitZeroBalances")),
    ("GET", "/api/v3/myTrades"): (
        _my_trades,
        True,
        _p("symbol", "orderId", "startTime", "endTime", "fromId", "limit"),
    ),
    ("GET", "/api/v3/openOrders"): (_open_orders, True, _p("symbol")),
    ("DELETE", "/api/v3/openOrders"): (_cancel_open_orders, True, _p("symbol")),
    ("POST", "/api/v3/order"): (_new_order, True, _ORDER_PARAMS),
    ("POST", "/api/v3/order/test"): (_test_order, True, _ORDER_PARAMS | {"computeCommissionRates"}),
    ("GET", "/api/v3/order"): (_get_order, True, _p("symbol", "orderId", "origClientOrderId")),
    ("DELETE", "/api/v3/order"): (
        _cancel_order,
        True,
        _p("symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"),
    ),
}
"""(method, path) -> (handler, SIGNED, the parameters Binance reads)."""

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    key: Endpoint(REST_WEIGHTS[key], handler, signed=signed, params=params)
    for key, (handler, signed, params) in _ROUTES.items()
}
"""Every REST endpoint, its weight from :data:`~mm_trio.exchange.binance.protocol.REST_WEIGHTS`."""


def _fail_body(status: int) -> ApiError:
    if status == 503:
        return ApiError(
            ErrorCode.SERVER_BUSY,
            "Server is currently overloaded with other "
            "requests. Please try again in a few minutes.",
            503,
        )
    return ApiError(
        ErrorCode.DISCONNECTED,
        "Internal error; unable to process your request. Please try again.",
        status,
    )


async def api_endpoint(request: Request) -> Response:
    """The one starlette route behind ``/api/v3/*``."""
    venue: PaperVenue = request.app.state.venue
    endpoint = ENDPOINTS.get((request.method, request.url.path))
    ip = request.client.host if request.client is not None else "unknown"
    headers: dict[str, str] = {}
    limiter = venue.limiter
    status = 200
    result: Any
    if endpoint is None:
        known = any(path == request.url.path for _m, path in ENDPOINTS)
        return Response(
            json_bytes({"code": ErrorCode.UNKNOWN, "msg": "Unknown endpoint."}),
            405 if known else 404,
            media_type=JSON_TYPE,
        )
    try:
        query: bytes = request.scope.get("query_string", b"")
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            raise ApiError(
                ErrorCode.TOO_MANY_PARAMETERS, f"Too many parameters; {exc}.", 413
            ) from None
        faults = venue.faults
        if faults.take("force_418"):
            raise ApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"Way too much request weight used; "
                f"IP banned until {venue.now_ms() + faults.forced_retry_after * 1000}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                418,
                faults.forced_retry_after,
            )
        if faults.take("force_429"):
            raise ApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"Too much request weight used; "
                f"current limit is {limiter.config.weight_limit} request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                "polling the API.",
                429,
                faults.forced_retry_after,
            )
        params = parse_params(query, body)
        decision = limiter.check_weight(ip, endpoint.weight(params), venue.now_s())
        if decision.status != 200:
            raise ApiError(decision.code, decision.msg, decision.status, decision.retry_after)
        if faults.rest_delay_ms > 0:
            await trio.sleep(faults.rest_delay_ms / 1000)
        if faults.take("fail_next"):
            raise _fail_body(faults.fail_status)
        acct = authenticate(venue, request, query, body, params) if endpoint.signed else None
        unread = endpoint.unread(params)
        if unread:
            raise ApiError(
                ErrorCode.UNREAD_PARAMETERS,
                f"Not all sent parameters were read; "
                f"read '{len(params) - len(unread)}' parameter(s) but was sent "
                f"'{len(params)}'.",
            )
        result = await endpoint.handler(venue, params, acct, headers)
    except ApiError as exc:
        status = exc.status
        result = exc.body()
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    headers[limiter.weight_header] = str(limiter.used_weight(ip, venue.now_s()))
    return Response(json_bytes(result), status, headers=headers, media_type=JSON_TYPE)


__all__ = [
    "ENDPOINTS",
    "BodyTooLarge",
    "api_endpoint",
    "authenticate",
    "check_signed",
    "illegal",
    "parse_params",
    "read_body",
]
