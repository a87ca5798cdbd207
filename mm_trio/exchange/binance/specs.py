"""Sans-I/O conversion of Binance spot payloads: ``exchangeInfo`` -> :class:`SymbolSpec`,
order JSON -> :class:`OpenOrder`, account JSON -> :class:`Balance`, Decimal -> wire string,
:class:`OrderRequest` -> new-order parameters.

Binance sends every price, quantity and filter value as a decimal string; they are decoded
straight into ``Decimal`` (never through float). Filters used (SPEC §3):

* ``PRICE_FILTER``: ``minPrice``, ``maxPrice``, ``tickSize`` (``0`` disables that bound);
* ``LOT_SIZE``: ``minQty``, ``maxQty``, ``stepSize``;
* ``NOTIONAL`` (``minNotional``) or the older ``MIN_NOTIONAL`` (``minNotional``);
* ``MAX_NUM_ORDERS``: ``maxNumOrders`` (older payloads: ``limit``).

Only symbols with ``status == "TRADING"`` whose assets form a valid unified ``BASE/QUOTE``
are returned; native names (``BTCUSDT``) stay inside the adapter via :class:`SymbolMap`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from mm_trio.domain.model import (
    ZERO,
    Balance,
    OpenOrder,
    OrderRequest,
    SymbolError,
    SymbolSpec,
    parse_symbol,
)
from mm_trio.exchange.binance.protocol import ORDER_STATUS, SIDES
from mm_trio.exchange.binance.wire import (
    AccountJson,
    ExchangeInfoJson,
    OrderJson,
    SymbolInfoJson,
)

__all__ = [
    "SymbolMap",
    "balances_from_account",
    "fmt_decimal",
    "open_order_from_json",
    "order_params",
    "parse_exchange_info",
]

_MS = 1_000_000


def fmt_decimal(value: Decimal) -> str:
    """Plain decimal string for the wire: no exponent, no trailing zeros (``1E+1`` -> ``10``).

    Raises ``ValueError`` for NaN/infinity (a float never reaches an order, SPEC §3).
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"expected Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"non-finite decimal {value}")
    if value.is_zero():
        return "0"
    text = format(value.normalize(), "f")
    return text


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent form (``10.00`` -> ``10``)."""
    if value.is_zero():
        return ZERO
    norm = value.normalize()
    exp = norm.as_tuple().exponent
    if isinstance(exp, int) and exp > 0:
        return norm.quantize(Decimal(1))
    return norm


_INFO_DECODER = msgspec.json.Decoder(ExchangeInfoJson)


class SymbolMap:
    """Unified <-> native symbol names of the listed symbols."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.to_native: dict[str, str] = {}
        self.to_unified: dict[str, str] = {}
        for unified, native in pairs:
            self.add(unified, native)

    def add(self, unified: str, native: str) -> None:
        self.to_native[unified] = native
        self.to_unified[native] = unified

    def native(self, unified: str) -> str | None:
        return self.to_native.get(unified)

    def unified(self, native: str) -> str | None:
        return self.to_unified.get(native)

    def __len__(self) -> int:
        return len(self.to_native)


def _spec(info: SymbolInfoJson) -> SymbolSpec:
    kw: dict[str, Any] = {}
    tick: Decimal | None = None
    step: Decimal | None = None
    for f in info.filters:
        t = f.filterType
        if t == "PRICE_FILTER":
            tick = f.tickSize
            if f.minPrice is not None and f.minPrice > 0:
                kw["min_price"] = _plain(f.minPrice)
            if f.maxPrice is not None and f.maxPrice > 0:
                kw["max_price"] = _plain(f.maxPrice)
        elif t == "LOT_SIZE":
            step = f.stepSize
            if f.minQty is not None and f.minQty > 0:
                kw["min_qty"] = _plain(f.minQty)
            if f.maxQty is not None and f.maxQty > 0:
                kw["max_qty"] = _plain(f.maxQty)
        elif t in ("NOTIONAL", "MIN_NOTIONAL"):
            if f.minNotional is not None and f.minNotional > kw.get("min_notional", ZERO):
                kw["min_notional"] = _plain(f.minNotional)
        elif t == "MAX_NUM_ORDERS":
            n = f.maxNumOrders if f.maxNumOrders is not None else f.limit
            if n is not None and n > 0:
                kw["max_orders"] = n
    if tick is None or tick <= 0 or step is None or step <= 0:
        raise ValueError(f"{info.symbol}: no usable PRICE_FILTER tickSize / LOT_SIZE stepSize")
    unified = f"{info.baseAsset}/{info.quoteAsset}"
    parse_symbol(unified)
    return SymbolSpec(
        symbol=unified,
        base=info.baseAsset,
        quote=info.quoteAsset,
        tick_size=_plain(tick),
        step_size=_plain(step),
        **kw,
    )


def parse_exchange_info(
    raw: bytes | str | Mapping[str, Any], *, trading_only: bool = True
) -> tuple[dict[str, SymbolSpec], SymbolMap]:
    """``GET /api/v3/exchangeInfo`` body -> (specs by unified symbol, symbol map).

    Symbols that are not ``TRADING`` (unless ``trading_only=False``), have unusable filters
    or assets that do not form a valid unified symbol are skipped.
    """
    if isinstance(raw, Mapping):
        info = msgspec.convert(raw, ExchangeInfoJson, strict=False)
    else:
        info = _INFO_DECODER.decode(raw)
    specs: dict[str, SymbolSpec] = {}
    names = SymbolMap()
    for sym in info.symbols:
        if trading_only and sym.status != "TRADING":
            continue
        try:
            spec = _spec(sym)
        except (ValueError, SymbolError):
            continue
        specs[spec.symbol] = spec
        names.add(spec.symbol, sym.symbol)
    return specs, names


# --------------------------------------------------------------------------- orders


def order_params(request: OrderRequest, native: str) -> dict[str, str]:
    """``POST /api/v3/order`` parameters for ``request`` on ``native`` (before signing):
    ``LIMIT_MAKER`` when ``post_only``, else ``LIMIT`` + ``GTC``; ``newOrderRespType=RESULT``."""
    params = {
        "symbol": native,
        "side": request.side,
        "type": "LIMIT_MAKER" if request.post_only else "LIMIT",
    }
    if not request.post_only:
        params["timeInForce"] = "GTC"
    params.update(
        {
            "quantity": fmt_decimal(request.qty),
            "price": fmt_decimal(request.price),
            "newClientOrderId": request.client_id,
            "newOrderRespType": "RESULT",
        }
    )
    return params


def open_order_from_json(data: Any, symbol: str, *, client_id: str | None = None) -> OpenOrder:
    """An order/cancel/query/openOrders JSON object -> :class:`OpenOrder`.

    ``symbol`` is the unified name. A cancel response carries a fresh ``clientOrderId`` and
    ours in ``origClientOrderId``: that one is used (or ``client_id`` when given).
    """
    o = msgspec.convert(data, OrderJson, strict=False)
    status = ORDER_STATUS.get(o.status)
    side = SIDES.get(o.side)
    if status is None or side is None:
        raise ValueError(f"order JSON with status {o.status!r} side {o.side!r}")
    ms = next(
        (t for t in (o.transactTime, o.updateTime, o.time, o.workingTime) if t is not None), 0
    )
    cid = client_id or o.origClientOrderId or o.clientOrderId
    return OpenOrder(
        symbol=symbol,
        client_id=cid,
        order_id=str(o.orderId),
        side=side,
        price=o.price,
        qty=o.origQty,
        cum_qty=o.executedQty,
        status=status,
        ts=ms * _MS,
    )


def balances_from_account(data: Any) -> dict[str, Balance]:
    """``GET /api/v3/account`` body -> balances keyed by asset."""
    acct = msgspec.convert(data, AccountJson, strict=False)
    return {b.asset: Balance(asset=b.asset, free=b.free, locked=b.locked) for b in acct.balances}
