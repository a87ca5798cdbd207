"""Public market-data replies of the paper venue (REST and WebSocket API alike):
``exchangeInfo``, ``depth``, ``ticker/bookTicker`` and ``ticker/price``.

Functions of the :class:`~mm_trio.apps.paper.venue.PaperVenue` and the request parameters;
they return the JSON-ready body or raise :class:`~mm_trio.apps.paper.params.ApiError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mm_trio.apps.paper.orders import ORDER_TYPES
from mm_trio.apps.paper.params import param_int
from mm_trio.domain.model import ZERO, SymbolSpec, native_symbol
from mm_trio.exchange.binance.protocol import fmt_fixed as fmt

if TYPE_CHECKING:
    from mm_trio.apps.paper.venue import PaperVenue

__all__ = ["book_ticker", "depth", "exchange_info", "price_ticker", "symbol_info"]

MAX_NOTIONAL = Decimal("9000000")
"""``NOTIONAL`` filter ``maxNotional`` of every symbol (not enforced on orders)."""
ASSET_PRECISION = 8
AVG_PRICE_MINS = 5
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000


def exchange_info(venue: PaperVenue, params: Mapping[str, str]) -> dict[str, Any]:
    one = venue.symbol(params, required=False)
    many = venue.symbols_param(params)
    symbols = [one] if one else (many if many is not None else list(venue.engine_specs))
    return {
        "timezone": "UTC",
        "serverTime": venue.now_ms(),
        "rateLimits": venue.limiter.rate_limits_info(),
        "exchangeFilters": [],
        "symbols": [symbol_info(venue.engine_specs[s]) for s in symbols],
        "sors": [],
    }


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One ``exchangeInfo`` symbol: status, assets, order types and filters."""
    return {
        "symbol": native_symbol(spec.symbol),
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": ASSET_PRECISION,
        "quoteAsset": spec.quote,
        "quotePrecision": ASSET_PRECISION,
        "quoteAssetPrecision": ASSET_PRECISION,
        "baseCommissionPrecision": ASSET_PRECISION,
        "quoteCommissionPrecision": ASSET_PRECISION,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(spec.min_price),
                "maxPrice": fmt(spec.max_price),
                "tickSize": fmt(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(spec.min_qty),
                "maxQty": fmt(spec.max_qty),
                "stepSize": fmt(spec.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(ZERO),
                "maxQty": fmt(spec.max_qty),
                "stepSize": fmt(ZERO),
            },
            {
                "filterType": "MIN_NOTIONAL",
                "minNotional": fmt(spec.min_notional),
                "applyToMarket": True,
                "avgPriceMins": AVG_PRICE_MINS,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(spec.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt(MAX_NOTIONAL),
                "applyMaxToMarket": False,
                "avgPriceMins": AVG_PRICE_MINS,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": spec.max_orders},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


async def depth(venue: PaperVenue, params: Mapping[str, str]) -> dict[str, Any]:
    symbol = venue.symbol(params)
    assert symbol is not None
    limit = param_int(params, "limit")
    limit = DEPTH_DEFAULT_LIMIT if limit is None else min(max(limit, 1), DEPTH_MAX_LIMIT)
    await venue.ensure_market(symbol)
    return venue.hub.book(symbol).snapshot(limit)


def book_ticker(venue: PaperVenue, symbol: str) -> dict[str, Any]:
    q = venue.hub.book(symbol).last_quote
    native = native_symbol(symbol)
    if q is None:
        return {
            "symbol": native,
            "bidPrice": fmt(ZERO),
            "bidQty": fmt(ZERO),
            "askPrice": fmt(ZERO),
            "askQty": fmt(ZERO),
        }
    return {
        "symbol": native,
        "bidPrice": fmt(q.bid),
        "bidQty": fmt(q.bid_qty),
        "askPrice": fmt(q.ask),
        "askQty": fmt(q.ask_qty),
    }


def price_ticker(venue: PaperVenue, symbol: str) -> dict[str, Any]:
    book = venue.hub.book(symbol)
    trade = venue.primary.engine.last_trade(symbol)
    price = (
        trade.price
        if trade is not None
        else (book.last_quote.mid if book.last_quote is not None else ZERO)
    )
    return {"symbol": native_symbol(symbol), "price": fmt(price)}
