"""Signed Binance spot REST client on httpx (trio via anyio) and venue-error classification.

:class:`BinanceRest` sends every parameter in the query string and signs exactly that string
(see :mod:`~mm_trio.exchange.binance.signing`). Before each request it takes the endpoint's
weight (and order count) from the shared :class:`~mm_trio.exchange.limiter.Limiter`; after
each response it feeds ``X-MBX-USED-WEIGHT-1M`` back into it.

Outcomes (SPEC §3, §12):

* HTTP 429 / 418 -> :class:`RateLimited` (``retry_after`` from ``Retry-After``,
  ``banned`` for 418) and the limiter is paused, so ALL traffic stops until then;
* timeouts, connection errors, HTTP 5xx and the "execution status unknown" codes
  (-1000, -1001, -1006, -1007) -> :class:`OutcomeUnknown`. Idempotent GETs are retried
  here with jittered exponential back-off; order POST/DELETE never are (the shell queries);
* a 4xx with a Binance ``{"code", "msg"}`` body -> the class chosen by :func:`classify`.

Secrets never appear in errors or logs: messages name the method, path and venue message,
never the query string, headers or key.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
import msgspec
import trio

from mm_trio.exchange.base import (
    DuplicateOrder,
    ExchangeError,
    FilterRejected,
    InsufficientBalance,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TooManyOrders,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.binance.protocol import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    MAX_RECV_WINDOW_MS,
    ErrorCode,
    Weights,
)
from mm_trio.exchange.binance.signing import MASK, Signer, encode_params, signed_query
from mm_trio.exchange.binance.wire import ErrorJson

__all__ = [
    "BinanceRest",
    "LimiterLike",
    "classify",
]

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0
"""Seconds to pause on a 429/418 without a usable ``Retry-After`` header."""
ORDER_RATE_RETRY_AFTER = 10.0
"""Seconds to pause on an order-count 429 (-1015), which carries no ``Retry-After``."""

_UNKNOWN_OUTCOME_CODES = frozenset(
    {ErrorCode.UNKNOWN, ErrorCode.DISCONNECTED, ErrorCode.UNEXPECTED_RESP, ErrorCode.TIMEOUT}
)
_FILTER_CODES = frozenset({ErrorCode.INVALID_MESSAGE, ErrorCode.BAD_PRECISION, ErrorCode.NO_DEPTH})
_UNKNOWN_ORDER_CODES = frozenset({ErrorCode.CANCEL_REJECTED, ErrorCode.NO_SUCH_ORDER})
_RATE_LIMIT_CODES = frozenset({ErrorCode.TOO_MANY_REQUESTS, ErrorCode.TOO_MANY_ORDERS})


class LimiterLike(Protocol):
    """What the client needs of the shared limiter."""

    async def acquire(
        self,
        weight: int = 1,
        orders: int = 0,
        *,
        cancel: bool = False,
        still_wanted: Callable[[], bool] | None = None,
    ) -> None: ...

    def pause(self, seconds: float, *, banned: bool = False, reason: str = "") -> None: ...

    def observe_used_weight(self, used: int) -> None: ...


_ERROR_DECODER = msgspec.json.Decoder(ErrorJson)


def classify(
    status: int,
    code: int | None,
    msg: str,
    *,
    where: str = "",
    order: bool = False,
    retry_after: float | None = None,
) -> ExchangeError:
    """The classified error for a Binance error response (pure; SPEC §12).

    ``order`` marks an order-entry request: an unrecognised 4xx there becomes a plain
    :class:`OrderRejected` (nothing was created), elsewhere an :class:`ExchangeError`.
    """
    text = f"{where}: " if where else ""
    text += f"HTTP {status}" + (f" code {code}" if code is not None else "")
    if msg:
        text += f": {msg}"
    low = msg.lower()
    if status in (418, 429) or code in _RATE_LIMIT_CODES:
        if retry_after is None:
            retry_after = (
                ORDER_RATE_RETRY_AFTER if code == ErrorCode.TOO_MANY_ORDERS else DEFAULT_RETRY_AFTER
            )
        return RateLimited(text, retry_after=retry_after, banned=status == 418, code=code)
    if status >= 500 or code in _UNKNOWN_OUTCOME_CODES:
        return OutcomeUnknown(text, code=code)
    if code == ErrorCode.BAD_SYMBOL:
        return UnknownSymbol(text, code=code)
    if code in _UNKNOWN_ORDER_CODES:
        return UnknownOrder(text, code=code)
    if code == ErrorCode.NEW_ORDER_REJECTED or code in _FILTER_CODES:
        if "insufficient balance" in low:
            return InsufficientBalance(text, code=code)
        if "duplicate order" in low:
            return DuplicateOrder(text, code=code)
        if "immediately match and take" in low:
            return WouldTake(text, code=code)
        if "max_num_orders" in low or "too many open orders" in low:
            return TooManyOrders(text, code=code)
        if code in _FILTER_CODES or "filter failure" in low:
            return FilterRejected(text, code=code)
        return OrderRejected(text, code=code)
    if order and 400 <= status < 500:
        return OrderRejected(text, code=code)
    return ExchangeError(text, code=code)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class BinanceRest:
    """One httpx client for the Binance REST API, shared by every symbol.

    ``signer`` may be ``None`` (public endpoints only). ``transport`` is for tests
    (``httpx.MockTransport``). ``now_ms`` is the wall clock used for ``timestamp``
    (plus :attr:`time_offset_ms`, set by :meth:`sync_time`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        signer: Signer | None,
        limiter: LimiterLike,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        get_retries: int = 3,
        retry_base: float = 0.2,
        retry_max: float = 5.0,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ValueError(
                f"recv_window_ms must be in (0, {MAX_RECV_WINDOW_MS}], not {recv_window_ms}"
            )
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._signer = signer
        self.limiter = limiter
        self.recv_window_ms = recv_window_ms
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.get_retries = get_retries
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.time_offset_ms = 0
        self._rng = random.Random()
        self.requests = 0
        self.errors = 0
        self.last_used_weight: int | None = None

    def __repr__(self) -> str:
        key = MASK if self._api_key else None
        return f"BinanceRest(base_url={self.base_url!r}, api_key={key!r}, signer={self._signer!r})"

    @property
    def can_sign(self) -> bool:
        return self._signer is not None and bool(self._api_key)

    # ------------------------------------------------------------------ lifecycle
    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                headers={"Accept": "application/json"},
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await client.aclose()

    def timestamp_ms(self) -> int:
        return self._now_ms() + self.time_offset_ms

    def sign_query(self, params: Mapping[str, object]) -> str:
        """Query string with ``recvWindow``, ``timestamp`` and ``signature`` appended."""
        if self._signer is None or not self._api_key:
            raise ExchangeError("no API key/secret configured for a signed request")
        items = [
            *params.items(),
            ("recvWindow", self.recv_window_ms),
            ("timestamp", self.timestamp_ms()),
        ]
        return signed_query(encode_params(items), self._signer)

    # ------------------------------------------------------------------ requests
    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None = None,
        *,
        weight: int,
        orders: int = 0,
        cancel: bool = False,
        signed: bool = False,
        order: bool = False,
        retry: bool | None = None,
        before_send: Callable[[], None] | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON body, or raise a classified error.

        ``retry`` (default: ``method == "GET"``) retries :class:`OutcomeUnknown` with
        jittered exponential back-off, re-taking the limiter each time. ``before_send`` runs
        after every limiter grant, right before the request goes out; whatever it raises
        propagates and nothing is sent. ``still_wanted`` goes to the limiter: once it says
        no, the wait ends with :class:`~mm_trio.exchange.limiter.Withdrawn`, nothing spent.
        """
        if retry is None:
            retry = method == "GET"
        attempts = self.get_retries + 1 if retry else 1
        delay = self.retry_base
        attempt = 0
        resynced = False
        while True:
            attempt += 1
            try:
                return await self._once(
                    method,
                    path,
                    params or {},
                    weight=weight,
                    orders=orders,
                    cancel=cancel,
                    signed=signed,
                    order=order,
                    before_send=before_send,
                    still_wanted=still_wanted,
                )
            except OutcomeUnknown as exc:
                if attempt >= attempts:
                    raise
                log.warning("%s %s: %s; retry %d/%d", method, path, exc, attempt, attempts - 1)
                await trio.sleep(self._rng.uniform(0.5, 1.0) * delay)
                delay = min(delay * 2, self.retry_max)
            except ExchangeError as exc:
                # -1021: our clock drifted out of recvWindow. Nothing was executed, so
                # re-sync with the server's clock and send it again, once.
                if exc.code != ErrorCode.INVALID_TIMESTAMP or not signed or resynced:
                    raise
                resynced = True
                attempt -= 1
                log.warning(
                    "%s %s: timestamp outside recvWindow; re-syncing the clock", method, path
                )
                await self.sync_time()

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, object],
        *,
        weight: int,
        orders: int,
        cancel: bool,
        signed: bool,
        order: bool,
        before_send: Callable[[], None] | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> Any:
        if signed and not self.can_sign:
            raise ExchangeError("no API key/secret configured for a signed request")
        await self.limiter.acquire(weight, orders, cancel=cancel, still_wanted=still_wanted)
        if before_send is not None:
            before_send()
        # signed after the limiter wait, so the timestamp is fresh (recvWindow)
        query = self.sign_query(params) if signed else encode_params(params)
        url = f"{path}?{query}" if query else path
        headers = {API_KEY_HEADER: self._api_key} if (signed and self._api_key) else None
        where = f"{method} {path}"
        self.requests += 1
        try:
            response = await self._http().request(method, url, headers=headers)
        except httpx.TimeoutException as exc:
            self.errors += 1
            raise OutcomeUnknown(f"{where}: timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            self.errors += 1
            raise OutcomeUnknown(f"{where}: connection error ({type(exc).__name__})") from None
        self._observe(response)
        status = response.status_code
        body = response.content
        if 200 <= status < 300:
            try:
                return msgspec.json.decode(body)
            except msgspec.DecodeError:
                self.errors += 1
                raise OutcomeUnknown(f"{where}: HTTP {status} with an undecodable body") from None
        self.errors += 1
        code: int | None = None
        msg = ""
        try:
            err = _ERROR_DECODER.decode(body)
            code, msg = err.code, err.msg
        except msgspec.DecodeError:
            msg = body[:200].decode("utf-8", "replace").strip()
        retry_after = _retry_after(response.headers)
        error = classify(status, code, msg, where=where, order=order, retry_after=retry_after)
        if isinstance(error, RateLimited):  # the adapter that sees the answer owns the pause
            self.limiter.pause(error.retry_after, banned=error.banned, reason=str(error))
        raise error

    def _observe(self, response: httpx.Response) -> None:
        used = response.headers.get("x-mbx-used-weight-1m")
        if used is None:
            return
        try:
            value = int(used)
        except ValueError:
            return
        self.last_used_weight = value
        self.limiter.observe_used_weight(value)

    # ------------------------------------------------------------------ helpers
    async def sync_time(self) -> int:
        """Set :attr:`time_offset_ms` from ``GET /api/v3/time``; returns the offset."""
        before = self._now_ms()
        body = await self.request("GET", "/api/v3/time", weight=Weights.TIME)
        after = self._now_ms()
        server = int(body["serverTime"])
        self.time_offset_ms = server - (before + after) // 2
        return self.time_offset_ms
