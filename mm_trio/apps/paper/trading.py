"""Account and order operations of the paper venue (REST and WebSocket API alike):
``account``, ``myTrades``, ``openOrders``, query / cancel / cancel-all, and placing a
validated :class:`~mm_trio.apps.paper.orders.NewOrder`.

Functions of the :class:`~mm_trio.apps.paper.venue.PaperVenue`, the
:class:`~mm_trio.apps.paper.ledger.Account` and the request parameters; they return the
JSON-ready body (or the :class:`~mm_trio.apps.paper.ledger.OrderRecord`) or raise
:class:`~mm_trio.apps.paper.params.ApiError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mm_trio.apps.paper.ledger import Account, OrderRecord
from mm_trio.apps.paper.orders import (
    ENGINE_REJECTIONS,
    NewOrder,
    market_order_price,
    rejection_error,
    timeout_error,
)
from mm_trio.apps.paper.params import (
    ApiError,
    param_client_id,
    param_int,
    random_client_id,
)
from mm_trio.domain.model import ZERO, OrderRequest, native_symbol
from mm_trio.exchange.base import OutcomeUnknown, UnknownOrder
from mm_trio.exchange.binance.protocol import ErrorCode, ErrorMsg
from mm_trio.exchange.binance.protocol import fmt_fixed as fmt

if TYPE_CHECKING:
    from mm_trio.apps.paper.venue import PaperVenue

__all__ = [
    "account_info",
    "cancel_open_orders",
    "cancel_order",
    "lookup",
    "my_trades",
    "open_orders",
    "place_order",
    "query_order",
]

BASIS_POINTS = 10000  # commissions in exchangeInfo-style integers: 0.001 -> 10
FIRST_UID = 1000
MY_TRADES_DEFAULT_LIMIT = 500
MY_TRADES_MAX_LIMIT = 1000


def account_info(venue: PaperVenue, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
    omit = params.get("omitZeroBalances", "false").lower() == "true"
    cfg = venue.config.venue
    balances = [
        {"asset": b.asset, "free": fmt(b.free), "locked": fmt(b.locked)}
        for b in acct.engine.balances().values()
        if not (omit and b.free == 0 and b.locked == 0)
    ]
    return {
        "makerCommission": int(cfg.maker_fee * BASIS_POINTS),
        "takerCommission": int(cfg.taker_fee * BASIS_POINTS),
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": fmt(Decimal(cfg.maker_fee)),
            "taker": fmt(Decimal(cfg.taker_fee)),
            "buyer": fmt(ZERO),
            "seller": fmt(ZERO),
        },
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": False,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": acct.last_update_ms,
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": FIRST_UID + list(venue.accounts).index(acct.api_key),
    }


def my_trades(venue: PaperVenue, acct: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
    symbol = venue.symbol(params)
    assert symbol is not None
    order_id = param_int(params, "orderId")
    start = param_int(params, "startTime")
    end = param_int(params, "endTime")
    from_id = param_int(params, "fromId")
    limit = param_int(params, "limit")
    limit = MY_TRADES_DEFAULT_LIMIT if limit is None else min(max(limit, 1), MY_TRADES_MAX_LIMIT)
    if from_id is not None and (start is not None or end is not None):
        raise ApiError(
            ErrorCode.OPTIONAL_PARAMS_BAD_COMBO, "Combination of optional parameters invalid."
        )
    out = []
    for t in acct.trades.get(symbol, ()):
        if order_id is not None and t["orderId"] != order_id:
            continue
        if from_id is not None and t["id"] < from_id:
            continue
        if start is not None and t["time"] < start:
            continue
        if end is not None and t["time"] > end:
            continue
        out.append(t)
    if from_id is not None or start is not None:
        return out[:limit]
    return out[-limit:]


def open_orders(
    venue: PaperVenue, acct: Account, params: Mapping[str, str]
) -> list[dict[str, Any]]:
    symbol = venue.symbol(params, required=False)
    return [rec.query() for rec in acct.open_records(symbol)]


def lookup(
    venue: PaperVenue, acct: Account, params: Mapping[str, str], *, cancel: bool
) -> tuple[str, OrderRecord]:
    """The order ``params`` name (``orderId`` and/or ``origClientOrderId``); to cancel, it
    must still be open."""
    symbol = venue.symbol(params)
    assert symbol is not None
    order_id = param_int(params, "orderId")
    client_id = params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise ApiError(
            ErrorCode.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        )
    rec = acct.find(symbol, order_id, client_id)
    if rec is None or (cancel and not rec.is_open):
        if cancel:
            raise ApiError(ErrorCode.CANCEL_REJECTED, ErrorMsg.UNKNOWN_ORDER)
        raise ApiError(ErrorCode.NO_SUCH_ORDER, ErrorMsg.NO_SUCH_ORDER)
    return symbol, rec


def query_order(venue: PaperVenue, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
    return lookup(venue, acct, params, cancel=False)[1].query()


async def cancel_order(
    venue: PaperVenue, acct: Account, params: Mapping[str, str]
) -> dict[str, Any]:
    symbol, rec = lookup(venue, acct, params, cancel=True)
    rec.cancel_client_id = param_client_id(params, "newClientOrderId") or random_client_id()
    await _cancel(acct, symbol, rec)
    return rec.cancel_reply()


async def _cancel(acct: Account, symbol: str, rec: OrderRecord) -> None:
    try:
        await acct.sim.cancel(symbol, rec.client_id)
    except UnknownOrder:
        raise ApiError(ErrorCode.CANCEL_REJECTED, ErrorMsg.UNKNOWN_ORDER) from None
    except OutcomeUnknown:
        raise timeout_error() from None


async def cancel_open_orders(
    venue: PaperVenue, acct: Account, params: Mapping[str, str]
) -> list[dict[str, Any]]:
    symbol = venue.symbol(params)
    recs = acct.open_records(symbol)
    if not recs:
        raise ApiError(ErrorCode.CANCEL_REJECTED, ErrorMsg.UNKNOWN_ORDER)
    out = []
    for rec in recs:
        rec.cancel_client_id = random_client_id()
        try:
            await _cancel(acct, rec.symbol, rec)
        except ApiError:
            continue  # filled meanwhile
        out.append(rec.cancel_reply())
    return out


async def place_order(venue: PaperVenue, acct: Account, order: NewOrder) -> OrderRecord:
    """Place a validated order; returns its record (after any immediate fills).

    A MARKET order goes to the engine as a limit through the touch
    (:func:`~mm_trio.apps.paper.orders.market_order_price`); a MARKET or IOC remainder is
    cancelled at once and reported ``EXPIRED``.
    """
    symbol = order.symbol
    spec = venue.engine_specs[symbol]
    await venue.ensure_market(symbol)
    price, qty = order.price, order.qty
    quote_qty = order.quote_qty or ZERO
    market = order.type == "MARKET"
    if market:
        price, qty = market_order_price(
            venue.hub.book(symbol).last_quote, order.side, qty, quote_qty, spec
        )
    assert price is not None and qty is not None
    cid = order.client_id
    rec = OrderRecord(
        symbol=symbol,
        native=native_symbol(symbol),
        order_id=0,
        client_id=cid,
        side=order.side,
        type=order.type,
        tif=order.tif,
        price=ZERO if market else price,
        orig_qty=qty,
        time_ms=venue.now_ms(),
        orig_quote_qty=quote_qty,
        expire_on_cancel=market or order.tif == "IOC",
    )
    request = OrderRequest(
        symbol=symbol,
        client_id=cid,
        side=order.side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        post_only=order.type == "LIMIT_MAKER",
    )
    acct.pending[(symbol, cid)] = rec
    try:
        await acct.sim.place(request)
    except ENGINE_REJECTIONS as exc:
        raise rejection_error(exc) from None
    finally:
        acct.pending.pop((symbol, cid), None)
    if rec.expire_on_cancel and rec.is_open:
        try:
            await acct.sim.cancel(symbol, cid)
        except (UnknownOrder, OutcomeUnknown):
            pass  # filled meanwhile
    return rec
