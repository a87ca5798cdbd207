"""New-order parameters: Binance's checks, in Binance's order, and how a MARKET order is
priced for the engine. Pure.

:func:`validate_order` runs one named check per concern (side, type, the type's own
parameters, response type, symbol filters) and returns a :class:`NewOrder`; the first check
that fails raises its :class:`~mm_trio.apps.paper.params.ApiError`. Nothing here counts
against a rate limit: validation happens before any counting, as on Binance.

:func:`market_order_price` turns a MARKET order into the limit order the engine takes: at
:data:`MARKET_PROTECTION` through the touch, so it fills at the engine's book price even if
the quote moves a few ticks meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

import attrs

from mm_trio.apps.paper.params import (
    ApiError,
    mandatory,
    not_required,
    param_client_id,
    param_decimal,
    random_client_id,
)
from mm_trio.domain.model import Quote, SymbolSpec, ceil_to, floor_to
from mm_trio.exchange.base import (
    DuplicateOrder,
    FilterRejected,
    InsufficientBalance,
    OutcomeUnknown,
    TooManyOrders,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.protocol import ErrorCode, ErrorMsg

__all__ = [
    "ENGINE_REJECTIONS",
    "MARKET_PROTECTION",
    "ORDER_TYPES",
    "NewOrder",
    "market_order_price",
    "rejection_error",
    "validate_order",
]

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
MARKET_PROTECTION = Decimal("0.005")
"""A MARKET order goes to the engine as a limit this far through the touch it was priced at,
so a quote moving a few ticks during the request latency does not leave it unfilled (it
still fills at the engine's book price, never at this limit)."""
_UNSUPPORTED_TYPES = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}


@attrs.frozen(kw_only=True)
class NewOrder:
    """A new order whose parameters passed every check (``tif`` resolved: ``GTC`` for
    LIMIT_MAKER and MARKET; ``client_id`` generated if none was sent)."""

    symbol: str  # unified
    side: str
    type: str
    tif: str
    qty: Decimal | None
    quote_qty: Decimal | None
    price: Decimal | None
    client_id: str
    resp: str


# --------------------------------------------------------------------------- the checks


def _check_side(params: Mapping[str, str]) -> str:
    side = params.get("side")
    if not side:
        raise mandatory("side")
    if side not in ("BUY", "SELL"):
        raise ApiError(ErrorCode.INVALID_SIDE, "Invalid side.")
    return side


def _check_type(params: Mapping[str, str]) -> str:
    otype = params.get("type")
    if not otype:
        raise mandatory("type")
    if otype in _UNSUPPORTED_TYPES:
        raise ApiError(ErrorCode.NEW_ORDER_REJECTED, _UNSUPPORTED_TYPES[otype])
    if otype not in ORDER_TYPES:
        raise ApiError(ErrorCode.INVALID_ORDER_TYPE, "Invalid orderType.")
    return otype


def _check_price_and_qty(
    price: Decimal | None, qty: Decimal | None, quote_qty: Decimal | None
) -> None:
    """A limit order's price and base quantity (never a quote quantity)."""
    if price is None:
        raise mandatory("price")
    if qty is None:
        raise mandatory("quantity")
    if quote_qty is not None:
        raise not_required("quoteOrderQty")


def _check_limit(
    tif: str | None, price: Decimal | None, qty: Decimal | None, quote_qty: Decimal | None
) -> str:
    if tif is None:
        raise mandatory("timeInForce")
    if tif not in TIMES_IN_FORCE:
        raise ApiError(ErrorCode.INVALID_TIF, "Invalid timeInForce.")
    if tif == "FOK":
        raise ApiError(ErrorCode.UNKNOWN_ORDER_COMPOSITION, "Unsupported order combination.")
    _check_price_and_qty(price, qty, quote_qty)
    return tif


def _check_limit_maker(
    tif: str | None, price: Decimal | None, qty: Decimal | None, quote_qty: Decimal | None
) -> str:
    if tif is not None:
        raise not_required("timeInForce")
    _check_price_and_qty(price, qty, quote_qty)
    return "GTC"


def _check_market(
    tif: str | None, price: Decimal | None, qty: Decimal | None, quote_qty: Decimal | None
) -> str:
    if price is not None:
        raise not_required("price")
    if tif is not None:
        raise not_required("timeInForce")
    if (qty is None) == (quote_qty is None):
        which = "but both were empty/null!" if qty is None else "but not both!"
        raise ApiError(
            ErrorCode.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
            f"Param 'quantity' or 'quoteOrderQty' must be sent, {which}",
        )
    return "GTC"


_TYPE_CHECKS: dict[
    str, Callable[[str | None, Decimal | None, Decimal | None, Decimal | None], str]
] = {
    "LIMIT": _check_limit,
    "LIMIT_MAKER": _check_limit_maker,
    "MARKET": _check_market,
}
"""Order type -> the check of its own parameters (returns the resolved time in force)."""


def _check_response_type(params: Mapping[str, str], otype: str) -> str:
    resp = params.get("newOrderRespType") or ("ACK" if otype == "LIMIT_MAKER" else "FULL")
    if resp not in RESPONSE_TYPES:
        raise ApiError(
            ErrorCode.INVALID_PARAMETER, "Data sent for parameter 'newOrderRespType' is not valid."
        )
    return resp


def _filter_failure(err: str) -> ApiError:
    """The -1013 reply naming the failed filter (``err`` is ``"NAME: why"``)."""
    return ApiError(ErrorCode.INVALID_MESSAGE, ErrorMsg.FILTER_FAILURE + err.split(":", 1)[0])


def _check_filters(spec: SymbolSpec, price: Decimal | None, qty: Decimal | None) -> None:
    """The symbol's price / lot filters on what was sent (a MARKET order's quantity alone;
    a limit order priced at the minimum quantity when it sent none)."""
    if price is not None:
        err = spec.filter_error(price, qty if qty is not None else spec.min_qty)
    elif qty is not None:
        err = spec.filter_error(None, qty)
    else:
        return
    if err is not None:
        raise _filter_failure(err)


def validate_order(params: Mapping[str, str], symbol: str, spec: SymbolSpec) -> NewOrder:
    """Parameter checks of a new order on ``symbol`` (already resolved from ``params``), in
    Binance's order: side, type, the decimals, the type's own parameters, client id,
    response type, filters."""
    side = _check_side(params)
    otype = _check_type(params)
    tif = params.get("timeInForce") or None
    qty = param_decimal(params, "quantity")
    quote_qty = param_decimal(params, "quoteOrderQty")
    price = param_decimal(params, "price")
    tif = _TYPE_CHECKS[otype](tif, price, qty, quote_qty)
    client_id = param_client_id(params, "newClientOrderId") or random_client_id()
    resp = _check_response_type(params, otype)
    _check_filters(spec, price, qty)
    return NewOrder(
        symbol=symbol,
        side=side,
        type=otype,
        tif=tif,
        qty=qty,
        quote_qty=quote_qty,
        price=price,
        client_id=client_id,
        resp=resp,
    )


# --------------------------------------------------------------------------- placing


def market_order_price(
    quote: Quote | None, side: str, qty: Decimal | None, quote_qty: Decimal, spec: SymbolSpec
) -> tuple[Decimal, Decimal]:
    """``(limit price, base quantity)`` of the engine order for a MARKET order priced at
    ``quote``: the quantity from ``quote_qty`` at the touch if none was sent, the price
    :data:`MARKET_PROTECTION` through the touch (kept within the price filter)."""
    if quote is None:
        raise ApiError(ErrorCode.NEW_ORDER_REJECTED, "Market is closed.")
    touch = quote.ask if side == "BUY" else quote.bid
    if qty is None:
        qty = floor_to(quote_qty / touch, spec.step_size)
        if qty < spec.min_qty or qty <= 0:
            raise ApiError(ErrorCode.INVALID_MESSAGE, ErrorMsg.FILTER_FAILURE + "LOT_SIZE")
    if touch * qty < spec.min_notional:
        raise ApiError(ErrorCode.INVALID_MESSAGE, ErrorMsg.FILTER_FAILURE + "NOTIONAL")
    if side == "BUY":
        price = min(
            ceil_to(touch * (1 + MARKET_PROTECTION), spec.tick_size), max(spec.max_price, touch)
        )
    else:
        price = max(
            floor_to(touch * (1 - MARKET_PROTECTION), spec.tick_size),
            min(spec.min_price, touch),
            spec.tick_size,
        )
    return price, qty


ENGINE_REJECTIONS = (
    DuplicateOrder,
    InsufficientBalance,
    WouldTake,
    TooManyOrders,
    FilterRejected,
    UnknownSymbol,
    OutcomeUnknown,
)
"""What the engine may raise on a placement that has a Binance reply (:func:`rejection_error`)."""

_REJECTION_REPLIES: tuple[tuple[type[Exception], int, str], ...] = (
    (DuplicateOrder, ErrorCode.NEW_ORDER_REJECTED, ErrorMsg.DUPLICATE_ORDER),
    (InsufficientBalance, ErrorCode.NEW_ORDER_REJECTED, ErrorMsg.INSUFFICIENT_BALANCE),
    (WouldTake, ErrorCode.NEW_ORDER_REJECTED, ErrorMsg.WOULD_TAKE),
    (TooManyOrders, ErrorCode.INVALID_MESSAGE, ErrorMsg.FILTER_FAILURE + "MAX_NUM_ORDERS"),
)


def timeout_error() -> ApiError:
    """503 -1007: the request was sent to the engine and its outcome is unknown."""
    return ApiError(ErrorCode.TIMEOUT, ErrorMsg.TIMEOUT, 503)


def rejection_error(exc: Exception) -> ApiError:
    """The Binance reply to an engine rejection (one of :data:`ENGINE_REJECTIONS`), checked
    in that order."""
    for kind, code, msg in _REJECTION_REPLIES:
        if isinstance(exc, kind):
            return ApiError(code, msg)
    if isinstance(exc, FilterRejected):
        name = str(exc).removeprefix(ErrorMsg.FILTER_FAILURE).split(":", 1)[0]
        return ApiError(ErrorCode.INVALID_MESSAGE, ErrorMsg.FILTER_FAILURE + name)
    if isinstance(exc, UnknownSymbol):
        return ApiError(ErrorCode.BAD_SYMBOL, ErrorMsg.INVALID_SYMBOL)
    assert isinstance(exc, OutcomeUnknown), exc
    return timeout_error()
