"""Binance spot stream JSON from domain events: what the paper venue sends (and the fixture
generator writes).

Decimal strings as Binance writes them (:func:`~mm_trio.exchange.binance.protocol.fmt_fixed`),
spot field names; every payload round-trips through
:class:`~mm_trio.exchange.binance.decode.StreamDecoder`. ``combined=True`` wraps a market
payload as a combined-stream message ``{"stream": name, "data": payload}``;
``ws_api_subscription`` wraps a user-data payload as a WebSocket-API event
``{"subscriptionId": n, "event": payload}``. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec

from mm_trio.domain.model import BalanceUpdate, OrderUpdate, Quote, Trade, native_symbol
from mm_trio.exchange.binance.decode import DepthUpdate
from mm_trio.exchange.binance.protocol import EXECUTION_TYPES, OPEN_STATUSES, fmt_fixed

__all__ = [
    "encode_account_position",
    "encode_agg_trade",
    "encode_book_ticker",
    "encode_depth_update",
    "encode_execution_report",
    "encode_trade",
]

_MS = 1_000_000  # ns -> ms
_ZERO = Decimal(0)
_ENCODER = msgspec.json.Encoder()


def _stream_name(native: str, suffix: str) -> str:
    return f"{native.lower()}@{suffix}"


def _wrap(native: str, suffix: str, data: dict[str, Any], combined: bool) -> bytes:
    if combined:
        return _ENCODER.encode({"stream": _stream_name(native, suffix), "data": data})
    return _ENCODER.encode(data)


def _event(data: dict[str, Any], ws_api_subscription: int | None) -> bytes:
    if ws_api_subscription is not None:
        return _ENCODER.encode({"subscriptionId": ws_api_subscription, "event": data})
    return _ENCODER.encode(data)


def encode_book_ticker(
    quote: Quote, *, update_id: int = 0, native: str | None = None, combined: bool = True
) -> bytes:
    """Spot ``bookTicker`` JSON (no event time: the decoder stamps it with the receive time)."""
    nat = native or native_symbol(quote.symbol)
    data = {
        "u": update_id,
        "s": nat,
        "b": fmt_fixed(quote.bid),
        "B": fmt_fixed(quote.bid_qty),
        "a": fmt_fixed(quote.ask),
        "A": fmt_fixed(quote.ask_qty),
    }
    return _wrap(nat, "bookTicker", data, combined)


def encode_trade(
    trade: Trade,
    *,
    native: str | None = None,
    combined: bool = True,
    trade_time_ms: int | None = None,
) -> bytes:
    """Spot ``trade`` JSON; ``E`` is ``trade.ts`` in ms, ``T`` defaults to the same."""
    nat = native or native_symbol(trade.symbol)
    event_ms = trade.ts // _MS
    data = {
        "e": "trade",
        "E": event_ms,
        "s": nat,
        "t": trade.trade_id,
        "p": fmt_fixed(trade.price),
        "q": fmt_fixed(trade.qty),
        "T": event_ms if trade_time_ms is None else trade_time_ms,
        "m": trade.buyer_maker,
        "M": True,
    }
    return _wrap(nat, "trade", data, combined)


def encode_agg_trade(
    trade: Trade, *, agg_id: int, native: str | None = None, combined: bool = True
) -> bytes:
    """Spot ``aggTrade`` JSON of one trade (first and last trade id are its own);
    ``E`` and ``T`` are ``trade.ts`` in ms."""
    nat = native or native_symbol(trade.symbol)
    ms = trade.ts // _MS
    data = {
        "e": "aggTrade",
        "E": ms,
        "s": nat,
        "a": agg_id,
        "p": fmt_fixed(trade.price),
        "q": fmt_fixed(trade.qty),
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": ms,
        "m": trade.buyer_maker,
        "M": True,
    }
    return _wrap(nat, "aggTrade", data, combined)


def encode_depth_update(
    depth: DepthUpdate,
    *,
    native: str | None = None,
    combined: bool = True,
    speed: str = "100ms",
) -> bytes:
    """Spot ``depthUpdate`` JSON on stream ``<symbol>@depth@<speed>`` (``speed=""``: 1000ms)."""
    nat = native or native_symbol(depth.symbol)
    data = {
        "e": "depthUpdate",
        "E": depth.ts // _MS,
        "s": nat,
        "U": depth.first_id,
        "u": depth.last_id,
        "b": [[fmt_fixed(p), fmt_fixed(q)] for p, q in depth.bids],
        "a": [[fmt_fixed(p), fmt_fixed(q)] for p, q in depth.asks],
    }
    return _wrap(nat, f"depth@{speed}" if speed else "depth", data, combined)


def encode_execution_report(
    update: OrderUpdate,
    *,
    native: str | None = None,
    order_type: str = "LIMIT_MAKER",
    cancel_client_id: str | None = None,
    ws_api_subscription: int | None = None,
    time_in_force: str = "GTC",
    order_price: Decimal | None = None,
    order_qty: Decimal | None = None,
    cum_quote_qty: Decimal | None = None,
    order_time_ms: int | None = None,
    quote_order_qty: Decimal = _ZERO,
    stp_mode: str = "EXPIRE_MAKER",
) -> bytes:
    """Spot ``executionReport`` JSON (``E``/``T`` = ``update.ts`` in ms).

    For a CANCELED report the original client id goes to ``C`` and ``c`` carries the cancel
    request's id (``cancel_client_id``, defaulting to the original), as Binance does.

    What an ``OrderUpdate`` does not carry, an order ledger may give: ``order_price`` /
    ``order_qty`` (``p`` / ``q``; default the update's), ``cum_quote_qty`` (``Z``; default
    ``cum_qty * last_price``), ``order_time_ms`` (``O`` / ``W``; default the update's time),
    ``time_in_force`` (``f``), ``quote_order_qty`` (``Q``) and ``stp_mode`` (``V``).
    """
    nat = native or native_symbol(update.symbol)
    canceled = update.status == "CANCELED"
    ms = update.ts // _MS
    if cum_quote_qty is None:
        cum_quote_qty = update.cum_qty * update.last_price if update.cum_qty else _ZERO
    created_ms = ms if order_time_ms is None else order_time_ms
    data = {
        "e": "executionReport",
        "E": ms,
        "s": nat,
        "c": (cancel_client_id or update.client_id) if canceled else update.client_id,
        "S": update.side,
        "o": order_type,
        "f": time_in_force,
        "q": fmt_fixed(update.qty if order_qty is None else order_qty),
        "p": fmt_fixed(update.price if order_price is None else order_price),
        "P": fmt_fixed(_ZERO),
        "F": fmt_fixed(_ZERO),
        "g": -1,
        "C": update.client_id if canceled else "",
        "x": EXECUTION_TYPES.get(update.status, "NEW"),
        "X": update.status,
        "r": update.reason or "NONE",
        "i": int(update.order_id) if update.order_id.isdigit() else update.order_id,
        "l": fmt_fixed(update.last_qty),
        "z": fmt_fixed(update.cum_qty),
        "L": fmt_fixed(update.last_price),
        "n": fmt_fixed(update.fee),
        "N": update.fee_asset or None,
        "T": ms,
        "t": -1 if update.trade_id is None else update.trade_id,
        "I": 0,
        "w": update.status in OPEN_STATUSES,
        "m": update.maker,
        "M": False,
        "O": created_ms,
        "Z": fmt_fixed(cum_quote_qty),
        "Y": fmt_fixed(update.last_qty * update.last_price),
        "Q": fmt_fixed(quote_order_qty),
        "W": created_ms,
        "V": stp_mode,
    }
    return _event(data, ws_api_subscription)


def encode_account_position(
    balances: Iterable[BalanceUpdate],
    *,
    ts: int | None = None,
    ws_api_subscription: int | None = None,
) -> bytes:
    """Spot ``outboundAccountPosition`` JSON; ``E``/``u`` = ``ts`` (default: first entry's)."""
    items = list(balances)
    when = ts if ts is not None else (items[0].ts if items else 0)
    ms = when // _MS
    data = {
        "e": "outboundAccountPosition",
        "E": ms,
        "u": ms,
        "B": [{"a": b.asset, "f": fmt_fixed(b.free), "l": fmt_fixed(b.locked)} for b in items],
    }
    return _event(data, ws_api_subscription)
