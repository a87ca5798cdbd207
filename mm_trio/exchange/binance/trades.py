"""Our fills from ``GET /api/v3/myTrades``: :class:`MyTrade` and fill recovery (pure).

:func:`fills_from_trades` turns an order's trades into fill reports with trade ids, so fills
missed while the user-data stream was down are recovered over REST (the shell dedupes them by
trade id).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from mm_trio.domain.model import OpenOrder, OrderUpdate
from mm_trio.exchange.binance.wire import MyTradeJson

__all__ = ["MyTrade", "fills_from_trades", "my_trades_from_json", "my_trades_params"]

_MS = 1_000_000  # ms -> ns


class MyTrade(msgspec.Struct, frozen=True, kw_only=True):
    """One of our fills from ``GET /api/v3/myTrades`` (unified symbol)."""

    symbol: str
    trade_id: int
    order_id: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    is_buyer: bool
    is_maker: bool
    ts: int


def my_trades_params(
    native: str, *, from_id: int | None, start_time_ms: int | None, limit: int
) -> dict[str, object]:
    """``GET /api/v3/myTrades`` parameters (before signing)."""
    params: dict[str, object] = {"symbol": native, "limit": limit}
    if from_id is not None:
        params["fromId"] = from_id
    if start_time_ms is not None:
        params["startTime"] = start_time_ms
    return params


def my_trades_from_json(body: Any, symbol: str) -> list[MyTrade]:
    """A ``myTrades`` body -> our trades on ``symbol`` (the unified name)."""
    return [
        MyTrade(
            symbol=symbol,
            trade_id=t.id,
            order_id=str(t.orderId),
            price=t.price,
            qty=t.qty,
            fee=t.commission,
            fee_asset=t.commissionAsset,
            is_buyer=t.isBuyer,
            is_maker=t.isMaker,
            ts=t.time * _MS,
        )
        for t in msgspec.convert(body, list[MyTradeJson])
    ]


def fills_from_trades(order: OpenOrder, body: Any) -> list[OrderUpdate]:
    """A ``myTrades?orderId=`` body -> ``order``'s fills in trade-id order, as fill reports
    (``FILLED`` once the cumulative quantity reaches the order's)."""
    trades = sorted(msgspec.convert(body, list[MyTradeJson]), key=lambda t: t.id)
    updates: list[OrderUpdate] = []
    cum = Decimal(0)
    for t in trades:
        cum += t.qty
        updates.append(
            OrderUpdate(
                symbol=order.symbol,
                client_id=order.client_id,
                side=order.side,
                price=order.price,
                qty=order.qty,
                status="FILLED" if cum >= order.qty else "PARTIALLY_FILLED",
                cum_qty=cum,
                last_qty=t.qty,
                last_price=t.price,
                fee=t.commission,
                fee_asset=t.commissionAsset,
                trade_id=t.id,
                order_id=order.order_id,
                maker=t.isMaker,
                ts=t.time * _MS,
            )
        )
    return updates
