"""The paper venue's admin endpoints ``/_admin/*``: fault injection, limit reset, market events,
and the venue's stream counters (``/_admin/stats``).

Every request must come from loopback (else 403) and carry ``Authorization: Bearer <token>``,
the venue's :class:`~mm_trio.apps.paper.auth.AdminToken` (else 401), both checked before the body
is read. A body is read up to :data:`~mm_trio.apps.paper.config.MAX_BODY_BYTES` (413 beyond it),
parsed as strict JSON (no ``NaN`` / ``Infinity``, no duplicate keys, numbers kept exact) and
validated in full before anything changes: a bad field answers 400
``{"error": ..., "field": ..., "value": ...}`` and nothing is applied.

A market event is held to what the venue's own feed could publish and to what an order on the
symbol would have to satisfy: prices finite, > 0, within the symbol's price filter and on its
tick; sizes finite, > 0, within its lot size and on its step; a quote's bid below its ask.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mm_trio.apps.paper.config import MAX_BODY_BYTES
from mm_trio.apps.paper.faults import FaultFieldError
from mm_trio.apps.paper.params import json_bytes
from mm_trio.apps.paper.rest import JSON_TYPE
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.apps.web import BodyTooLarge, loads_strict, read_body
from mm_trio.domain.model import Quote, SymbolSpec, Trade

__all__ = [
    "AdminInputError",
    "admin_faults",
    "admin_market",
    "admin_reset_limits",
    "admin_stats",
    "parse_market_event",
]

log = logging.getLogger(__name__)

MAX_ECHO_CHARS = 64
"""A refused value is echoed in the error up to this many characters."""
MAX_TRADE_ID = 2**63 - 1
"""Largest ``trade_id`` (Binance trade ids are signed 64-bit)."""
_DECIMAL_RE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")  # Binance's decimal parameter format
_AUTH_CHALLENGE = 'Bearer realm="mm-trio venue admin"'
_QUOTE_FIELDS = ("bid", "bid_qty", "ask", "ask_qty")
_TRADE_FIELDS = ("price", "qty")
_TRADE_OPTIONAL = ("buyer_maker", "trade_id")
_EVENT_TYPES = ("quote", "trade")


class AdminInputError(ValueError):
    """A refused admin request: HTTP ``status``, why, and the field and value at fault."""

    def __init__(
        self, why: str, *, field: str | None = None, value: Any = None, status: int = 400
    ) -> None:
        self.field = field
        self.value = None if field is None else _echo(value)
        self.why = why
        self.status = status
        super().__init__(why if field is None else f"{field} = {self.value}: {why}")

    def response(self) -> Response:
        body: dict[str, Any] = {"error": str(self)}
        if self.field is not None:
            body["field"] = self.field
            body["value"] = self.value
        return Response(json_bytes(body), self.status, media_type=JSON_TYPE)


def _echo(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else (str(value) if isinstance(value, Decimal) else json.dumps(value, default=str))
    )
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "..."


def _error(msg: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json_bytes({"error": msg}), status, headers=headers, media_type=JSON_TYPE)


def _denied(request: Request) -> Response | None:
    """403 unless from loopback, 401 unless the bearer token matches; None if allowed."""
    host = request.client.host if request.client is not None else ""
    if not (host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")):
        return _error("admin is loopback only", 403)
    venue: PaperVenue = request.app.state.venue
    if not venue.admin_token.matches(request.headers.get("authorization")):
        log.warning("admin %s %s refused: no valid bearer token", request.method, request.url.path)
        return _error(
            "admin endpoints need 'Authorization: Bearer <token>' (the token "
            "from MM_TRIO_VENUE_ADMIN_TOKEN, or the one the venue logged at start)",
            401,
            {"WWW-Authenticate": _AUTH_CHALLENGE},
        )
    return None


# --------------------------------------------------------------------------- strict JSON


async def _json_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        raise AdminInputError(str(exc), status=413) from None
    if empty_ok and not body.strip():
        return {}
    try:
        data = loads_strict(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise AdminInputError(f"body must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise AdminInputError("body must be a JSON object")
    return data


# --------------------------------------------------------------------------- market events


def _decimal(field: str, value: Any) -> Decimal:
    """A decimal string in Binance's parameter format, or a JSON number; always finite."""
    if isinstance(value, str):
        if not _DECIMAL_RE.fullmatch(value):
            raise AdminInputError(
                "must be a decimal like '3000.01' (digits, an optional "
                "fraction; no sign or exponent)",
                field=field,
                value=value,
            )
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise AdminInputError("must be a decimal string or a number", field=field, value=value)
    number = Decimal(value)
    if not number.is_finite():  # not produced by loads_strict, but never let one through
        raise AdminInputError("must be finite", field=field, value=value)
    return number


def _price(field: str, value: Any, spec: SymbolSpec) -> Decimal:
    price = _decimal(field, value)
    if price <= 0:
        raise AdminInputError("must be > 0", field=field, value=value)
    if not spec.min_price <= price <= spec.max_price:
        raise AdminInputError(
            f"must be within the price filter {spec.min_price}..{spec.max_price}",
            field=field,
            value=value,
        )
    if price % spec.tick_size:  # exact: price is bounded, so the quotient fits the context
        raise AdminInputError(
            f"must be a multiple of the tick size {spec.tick_size}", field=field, value=value
        )
    return price


def _qty(field: str, value: Any, spec: SymbolSpec) -> Decimal:
    qty = _decimal(field, value)
    if qty <= 0:
        raise AdminInputError("must be > 0", field=field, value=value)
    if not spec.min_qty <= qty <= spec.max_qty:
        raise AdminInputError(
            f"must be within the lot size {spec.min_qty}..{spec.max_qty}", field=field, value=value
        )
    if qty % spec.step_size:
        raise AdminInputError(
            f"must be a multiple of the step size {spec.step_size}", field=field, value=value
        )
    return qty


def parse_market_event(
    data: Mapping[str, Any], specs: Mapping[str, SymbolSpec], natives: Mapping[str, str], ts: int
) -> Quote | Trade:
    """The market event an admin body describes, or :class:`AdminInputError` (pure).

    quote: ``symbol``, ``bid``, ``bid_qty``, ``ask``, ``ask_qty``; trade: ``symbol``,
    ``price``, ``qty``, optional ``buyer_maker`` (default true) and ``trade_id`` (default 0).
    ``symbol`` is the native name (``BTCUSDT``); decimals are strings or JSON numbers.
    """
    kind = data.get("type")
    if kind not in _EVENT_TYPES:
        raise AdminInputError("must be 'quote' or 'trade'", field="type", value=kind)
    fields = _QUOTE_FIELDS if kind == "quote" else _TRADE_FIELDS
    optional = () if kind == "quote" else _TRADE_OPTIONAL
    known = ("type", "symbol", *fields, *optional)
    for key in sorted(data):
        if key not in known:
            raise AdminInputError(
                f"unknown field of a {kind} (known: {', '.join(known)})", field=key, value=data[key]
            )
    for key in ("symbol", *fields):
        if key not in data or data[key] is None:
            raise AdminInputError(f"mandatory for a {kind}", field=key, value=None)
    raw_symbol = data["symbol"]
    symbol = natives.get(raw_symbol) if isinstance(raw_symbol, str) else None
    if symbol is None:
        raise AdminInputError(
            "not a listed symbol (give its native name, e.g. BTCUSDT)",
            field="symbol",
            value=raw_symbol,
        )
    spec = specs[symbol]
    if kind == "quote":
        bid = _price("bid", data["bid"], spec)
        bid_qty = _qty("bid_qty", data["bid_qty"], spec)
        ask = _price("ask", data["ask"], spec)
        ask_qty = _qty("ask_qty", data["ask_qty"], spec)
        if ask <= bid:
            raise AdminInputError(
                f"must be above the bid {bid} (a quote is never crossed)",
                field="ask",
                value=data["ask"],
            )
        return Quote(symbol=symbol, bid=bid, bid_qty=bid_qty, ask=ask, ask_qty=ask_qty, ts=ts)
    price = _price("price", data["price"], spec)
    qty = _qty("qty", data["qty"], spec)
    buyer_maker = data.get("buyer_maker", True)
    if not isinstance(buyer_maker, bool):
        raise AdminInputError("must be true or false", field="buyer_maker", value=buyer_maker)
    trade_id = data.get("trade_id", 0)
    if (
        isinstance(trade_id, bool)
        or not isinstance(trade_id, int)
        or not 0 <= trade_id <= MAX_TRADE_ID
    ):
        raise AdminInputError(
            f"must be an integer 0..{MAX_TRADE_ID}", field="trade_id", value=trade_id
        )
    return Trade(
        symbol=symbol, price=price, qty=qty, buyer_maker=buyer_maker, trade_id=trade_id, ts=ts
    )


# --------------------------------------------------------------------------- endpoints


async def admin_faults(request: Request) -> Response:
    """``GET``: current faults. ``POST`` JSON: set faults, ``drop_websockets``."""
    denied = _denied(request)
    if denied is not None:
        return denied
    venue: PaperVenue = request.app.state.venue
    dropped = 0
    if request.method == "POST":
        try:
            data = await _json_object(request)
            venue.faults.update(data)  # validates every field before it sets any
        except AdminInputError as exc:
            return exc.response()
        except FaultFieldError as exc:
            return AdminInputError(exc.why, field=exc.field, value=exc.value).response()
        if data.get("drop_websockets"):
            dropped = venue.drop_websockets()
            log.warning("fault injection: dropped %d websocket connection(s)", dropped)
    out = venue.faults.snapshot()
    out["dropped"] = dropped
    return Response(json_bytes(out), media_type=JSON_TYPE)


async def admin_reset_limits(request: Request) -> Response:
    """``POST`` (no body, or ``{}``): forget every rate-limit count and ban."""
    denied = _denied(request)
    if denied is not None:
        return denied
    try:
        data = await _json_object(request, empty_ok=True)
        if data:
            key = sorted(data)[0]
            raise AdminInputError("reset-limits takes no fields", field=key, value=data[key])
    except AdminInputError as exc:
        return exc.response()
    request.app.state.venue.limiter.reset()
    return Response(json_bytes({}), media_type=JSON_TYPE)


async def admin_stats(request: Request) -> Response:
    """``GET``: what the venue published and sent (:meth:`PaperVenue.stats`)."""
    denied = _denied(request)
    if denied is not None:
        return denied
    venue: PaperVenue = request.app.state.venue
    return Response(json_bytes(venue.stats()), media_type=JSON_TYPE)


async def admin_market(request: Request) -> Response:
    """Inject a market event (see :func:`parse_market_event`).

    It goes through every account's engine (fills) and out on the market streams like feed
    data. Nothing reaches the engines unless the whole event is valid.
    """
    denied = _denied(request)
    if denied is not None:
        return denied
    venue: PaperVenue = request.app.state.venue
    try:
        data = await _json_object(request)
        event = parse_market_event(
            data, venue.engine_specs, venue.natives, venue.primary.sim.now_ns()
        )
    except AdminInputError as exc:
        return exc.response()
    await venue.ensure_market(event.symbol)
    await venue.primary.sim.push_market([event])
    return Response(json_bytes({}), media_type=JSON_TYPE)
