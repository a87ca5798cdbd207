"""WebSocket API ``/ws-api/v3``: requests ``{"id","method","params"}``, responses
``{"id","status","result"|"error","rateLimits"}``.

Methods: ``ping``, ``time``, ``exchangeInfo``, ``depth``, ``ticker.book``, ``session.logon``
/ ``session.status`` / ``session.logout``, ``userDataStream.subscribe`` (logged-on session),
``userDataStream.subscribe.signature`` (any session; signed), ``userDataStream.unsubscribe``,
``session.subscriptions``, ``order.place``, ``order.cancel``, ``order.status``,
``openOrders.status``, ``openOrders.cancelAll``, ``account.status``, ``myTrades``.

SIGNED methods carry ``apiKey``, ``timestamp``, ``signature`` (and ``recvWindow``) in
``params``; the payload is every other param sorted by name (``key=value&...``). On a
logged-on session (``session.logon``) they may omit them. User data events arrive as
``{"subscriptionId": n, "event": {...executionReport / outboundAccountPosition...}}``.
Rate limits: the same per-IP weight as REST (weights as Binance lists them).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from mm_trio.apps.paper.auth import ws_payload
from mm_trio.apps.paper.ledger import Account
from mm_trio.apps.paper.params import ApiError, json_bytes, mandatory
from mm_trio.apps.paper.rest import check_signed, order_count_headers
from mm_trio.apps.paper.streams import Connection, run_connection
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.exchange.binance.protocol import WS_API_WEIGHTS, ErrorCode, ErrorMsg, WeightOf

_INVALID_JSON = "Invalid JSON Request"
_Method = Callable[["WsApiSession", dict[str, str], dict[str, Any]], Awaitable[Any]]


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class WsApiSession(Connection):
    """One WebSocket API connection: its logged-on account and user-data subscriptions."""

    def __init__(self, venue: PaperVenue, ip: str) -> None:
        super().__init__(venue)
        self.ip = ip
        self.account: Account | None = None
        self.connected_ms = venue.now_ms()
        self.authorized_ms: int | None = None
        self.subscriptions: dict[int, tuple[Account, Callable[[bytes], None]]] = {}
        self._next_sub = 0

    def close(self) -> None:
        for acct, listener in self.subscriptions.values():
            acct.listeners.discard(listener)
        self.subscriptions.clear()

    # ------------------------------------------------------------------ auth
    def signed(self, raw: dict[str, Any], params: dict[str, str]) -> Account:
        """The account of a SIGNED request (its own signature, or the logged-on session)."""
        if "signature" not in raw and self.account is not None and "apiKey" not in raw:
            return self.account
        key = params.get("apiKey")
        if not key:
            raise mandatory("apiKey")
        acct = self.venue.accounts.get(key)
        if acct is None:
            raise ApiError(ErrorCode.REJECTED_MBX_KEY, ErrorMsg.BAD_API_KEY, 401)
        signature = raw.get("signature")
        return check_signed(
            self.venue,
            acct,
            params,
            lambda: (ws_payload(raw), None if signature is None else str(signature)),
        )

    def subscribe(self, acct: Account) -> int:
        for other, _ in self.subscriptions.values():
            if other is acct:
                raise ApiError(
                    ErrorCode.SUBSCRIPTION_ACTIVE, "User Data Stream subscription already active."
                )
        sub_id = self._next_sub
        self._next_sub += 1
        prefix = b'{"subscriptionId":' + str(sub_id).encode() + b',"event":'

        def listener(payload: bytes) -> None:
            self.send_nowait(prefix + payload + b"}")

        acct.listeners.add(listener)
        self.subscriptions[sub_id] = (acct, listener)
        return sub_id

    def session_info(self) -> dict[str, Any]:
        return {
            "apiKey": None if self.account is None else self.account.api_key,
            "authorizedSince": self.authorized_ms,
            "connectedSince": self.connected_ms,
            "returnRateLimits": True,
            "serverTime": self.venue.now_ms(),
            "userDataStream": any(a is self.account for a, _ in self.subscriptions.values()),
        }

    # ------------------------------------------------------------------ dispatch
    async def on_text(self, text: str) -> None:
        venue = self.venue
        req_id: Any = None
        acct: Account | None = None
        orders = False
        try:
            try:
                req = json.loads(text)
            except ValueError:
                raise ApiError(ErrorCode.INVALID_JSON, _INVALID_JSON) from None
            if not isinstance(req, dict):
                raise ApiError(ErrorCode.INVALID_JSON, _INVALID_JSON)
            req_id = req.get("id")
            method = req.get("method")
            raw = req.get("params", {})
            if not isinstance(raw, dict):
                raise ApiError(
                    ErrorCode.INVALID_JSON, "Invalid 'params' in JSON request; expected an object."
                )
            entry = METHODS.get(method) if isinstance(method, str) else None
            if entry is None:
                raise ApiError(ErrorCode.UNSUPPORTED_OPERATION, "This operation is not supported.")
            weight, handler, orders = entry
            params = {k: _str(v) for k, v in raw.items() if v is not None}
            decision = venue.limiter.check_weight(self.ip, weight(params), venue.now_s())
            if decision.status != 200:
                raise ApiError(decision.code, decision.msg, decision.status, decision.retry_after)
            result = await handler(self, params, raw)
            acct = self.account if not isinstance(result, _WithAccount) else result.account
            if isinstance(result, _WithAccount):
                result = result.value
            body: dict[str, Any] = {"id": req_id, "status": 200, "result": result}
        except ApiError as exc:
            body = {"id": req_id, "status": exc.status, "error": exc.body()}
            if exc.retry_after is not None:
                body["error"]["data"] = {"retryAfter": venue.now_ms() + exc.retry_after * 1000}
        body["rateLimits"] = venue.limiter.ws_rate_limits(
            self.ip, None if acct is None else acct.api_key, venue.now_s(), orders
        )
        self.send_nowait(json_bytes(body))


class _WithAccount:
    """A result plus the account it concerns (for the ORDERS rate-limit counts)."""

    __slots__ = ("value", "account")

    def __init__(self, value: Any, account: Account) -> None:
        self.value = value
        self.account = account


async def _ping(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return {}


async def _time(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return {"serverTime": s.venue.now_ms()}


async def _exchange_info(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return s.venue.exchange_info(p)


async def _depth(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return await s.venue.depth(p)


async def _ticker_book(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    venue = s.venue
    one = venue.symbol(p, required=False)
    if one is not None:
        return venue.book_ticker(one)
    many = venue.symbols_param(p)
    return [venue.book_ticker(x) for x in (many if many is not None else venue.engine_specs)]


async def _logon(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p) if "signature" in raw else None
    if acct is None:
        raise mandatory("signature")
    s.account = acct
    s.authorized_ms = s.venue.now_ms()
    return s.session_info()


async def _status(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return s.session_info()


async def _logout(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    s.account = None
    s.authorized_ms = None
    return s.session_info()


async def _uds_subscribe(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    if s.account is None:
        raise ApiError(ErrorCode.REJECTED_MBX_KEY, ErrorMsg.BAD_API_KEY, 401)
    return {"subscriptionId": s.subscribe(s.account)}


async def _uds_subscribe_signature(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    if "signature" not in raw:
        raise mandatory("signature")
    acct = s.signed(raw, p)
    return _WithAccount({"subscriptionId": s.subscribe(acct)}, acct)


async def _uds_unsubscribe(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    sub = raw.get("subscriptionId")
    ids = list(s.subscriptions) if sub is None else [sub]
    for sub_id in ids:
        entry = s.subscriptions.pop(sub_id, None) if isinstance(sub_id, int) else None
        if entry is None:
            raise ApiError(
                ErrorCode.SUBSCRIPTION_NOT_FOUND, "Subscription with the given id does not exist."
            )
        entry[0].listeners.discard(entry[1])
    return {}


async def _subscriptions(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    return [{"subscriptionId": i} for i in s.subscriptions]


async def _order_place(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    venue = s.venue
    order = venue.validate_order(p)
    decision = venue.limiter.check_order(acct.api_key, venue.now_s())
    if decision.status != 200:
        raise ApiError(decision.code, decision.msg, decision.status)
    rec = await venue.place_order(acct, order)
    order_count_headers(venue, acct, {})
    return _WithAccount(rec.reply(order.resp), acct)


async def _order_cancel(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(await s.venue.cancel_order(acct, p), acct)


async def _order_status(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(s.venue.query_order(acct, p), acct)


async def _open_orders(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(s.venue.open_orders(acct, p), acct)


async def _cancel_all(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(await s.venue.cancel_open_orders(acct, p), acct)


async def _account(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(s.venue.account_info(acct, p), acct)


async def _my_trades(s: WsApiSession, p: dict[str, str], raw: dict[str, Any]) -> Any:
    acct = s.signed(raw, p)
    return _WithAccount(s.venue.my_trades(acct, p), acct)


_HANDLERS: dict[str, tuple[_Method, bool]] = {
    "ping": (_ping, False),
    "time": (_time, False),
    "exchangeInfo": (_exchange_info, False),
    "depth": (_depth, False),
    "ticker.book": (_ticker_book, False),
    "session.logon": (_logon, False),
    "session.status": (_status, False),
    "session.logout": (_logout, False),
    "userDataStream.subscribe": (_uds_subscribe, False),
    "userDataStream.subscribe.signature": (_uds_subscribe_signature, False),
    "userDataStream.unsubscribe": (_uds_unsubscribe, False),
    "session.subscriptions": (_subscriptions, False),
    "order.place": (_order_place, True),
    "order.cancel": (_order_cancel, False),
    "order.status": (_order_status, False),
    "openOrders.status": (_open_orders, False),
    "openOrders.cancelAll": (_cancel_all, False),
    "account.status": (_account, False),
    "myTrades": (_my_trades, False),
}
"""Method -> (handler, counts as an order for the ORDERS rate limits)."""

METHODS: dict[str, tuple[WeightOf, _Method, bool]] = {
    name: (WS_API_WEIGHTS[name], handler, orders) for name, (handler, orders) in _HANDLERS.items()
}
"""Every method: weight (:data:`~mm_trio.exchange.binance.protocol.WS_API_WEIGHTS`), handler,
whether it counts as an order."""


async def ws_api(websocket: WebSocket) -> None:
    """Starlette websocket endpoint for ``/ws-api/v3``."""
    venue: PaperVenue = websocket.app.state.venue
    await websocket.accept()
    ip = websocket.client.host if websocket.client is not None else "unknown"
    session = WsApiSession(venue, ip)
    try:
        await run_connection(websocket, session, session.on_text)
    finally:
        session.close()
