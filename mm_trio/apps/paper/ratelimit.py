"""Server-side Binance spot rate limits (pure: every call takes ``now`` in seconds).

* Request weight per IP over fixed windows aligned to the clock (a 1-minute window starts
  every minute), reported in ``X-MBX-USED-WEIGHT-1M`` on every response.
* Orders per account over 10 s and 1 day, reported in ``X-MBX-ORDER-COUNT-10S`` / ``-1D``.
* Over the weight limit: 429, ``-1003``, ``Retry-After`` = seconds to the window's end. A
  client that keeps sending while told to back off gets an IP ban: 418, ``-1003``,
  ``Retry-After`` = seconds until the ban ends; bans double on every repeat.
* Over an order limit: 429, ``-1015``, without ``Retry-After`` (as Binance documents).
"""

from __future__ import annotations

import math

import attrs

from mm_trio.apps.paper.config import RateLimitConfig
from mm_trio.exchange.binance.protocol import ErrorCode

__all__ = ["Decision", "RateLimiter", "interval_name"]


def interval_name(seconds: int) -> str:
    """Binance ``intervalNum``+``intervalLetter``: 60 -> ``1M``, 10 -> ``10S``, 86400 -> ``1D``."""
    for unit, letter in ((86400, "D"), (3600, "H"), (60, "M")):
        if seconds % unit == 0:
            return f"{seconds // unit}{letter}"
    return f"{seconds}S"


def interval_enum(seconds: int) -> tuple[str, int]:
    """``(interval, intervalNum)`` for exchangeInfo ``rateLimits``."""
    for unit, name in ((86400, "DAY"), (3600, "HOUR"), (60, "MINUTE")):
        if seconds % unit == 0:
            return name, seconds // unit
    return "SECOND", seconds


@attrs.define
class Decision:
    """Outcome of a rate-limit check: ``status`` 200 (go on), 429 or 418."""

    status: int = 200
    code: int = 0
    msg: str = ""
    retry_after: int | None = None


@attrs.define
class _Window:
    start: int = -1  # index of the current window
    used: int = 0
    origin: float | None = None  # None: aligned to the clock; else the first use

    def count(self, now: float, length: int) -> int:
        origin = self.origin if self.origin is not None else 0.0
        idx = math.floor((now - origin) / length)
        if idx != self.start:
            self.start = idx
            self.used = 0
        return self.used

    def ends_in(self, now: float, length: int) -> float:
        origin = self.origin if self.origin is not None else 0.0
        return origin + (self.start + 1) * length - now


@attrs.define
class _IpState:
    weight: _Window = attrs.field(factory=_Window)
    backoff_until: float = 0.0  # told to back off (429) until then
    strikes: int = 0  # requests sent while told to back off
    banned_until: float = 0.0
    bans: int = 0


@attrs.define
class _AccountState:
    short: _Window = attrs.field(factory=_Window)
    day: _Window = attrs.field(factory=_Window)


class RateLimiter:
    """Weight per IP, orders per account; see the module docstring."""

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._ips: dict[str, _IpState] = {}
        self._accounts: dict[str, _AccountState] = {}
        self._clock_hint = 0.0  # "now" of the current call (origin of unaligned windows)
        self.weight_header = f"X-MBX-USED-WEIGHT-{interval_name(config.weight_window_s)}"
        self.order_short_header = f"X-MBX-ORDER-COUNT-{interval_name(config.orders_window_short_s)}"
        self.order_day_header = "X-MBX-ORDER-COUNT-1D"

    def reset(self) -> None:
        self._ips.clear()
        self._accounts.clear()

    def _ip(self, ip: str) -> _IpState:
        st = self._ips.get(ip)
        if st is None:
            st = self._ips[ip] = _IpState(weight=self._window())
        return st

    def _account(self, api_key: str) -> _AccountState:
        st = self._accounts.get(api_key)
        if st is None:
            st = self._accounts[api_key] = _AccountState(short=self._window(), day=self._window())
        return st

    def _window(self) -> _Window:
        if self.config.aligned_windows:
            return _Window()
        return _Window(origin=self._clock_hint)

    def used_weight(self, ip: str, now: float) -> int:
        self._clock_hint = now
        return self._ip(ip).weight.count(now, self.config.weight_window_s)

    def check_weight(self, ip: str, weight: int, now: float) -> Decision:
        """Charge ``weight`` to ``ip`` or refuse (429 / 418)."""
        self._clock_hint = now
        cfg = self.config
        st = self._ip(ip)
        if now < st.banned_until:
            return self._ban_decision(st, now)
        used = st.weight.count(now, cfg.weight_window_s)
        if not cfg.enabled:
            st.weight.used += weight
            return Decision()
        if now < st.backoff_until:
            st.strikes += 1
            if st.strikes > cfg.ban_after_429s:
                duration = min(cfg.ban_base_seconds * 2**st.bans, cfg.ban_max_seconds)
                st.bans += 1
                st.banned_until = now + duration
                st.backoff_until = 0.0
                st.strikes = 0
                return self._ban_decision(st, now)
        if used + weight > cfg.weight_limit:
            wait = st.weight.ends_in(now, cfg.weight_window_s)
            if now >= st.backoff_until:
                st.strikes = 0
            st.backoff_until = max(st.backoff_until, now + wait)
            per = interval_name(cfg.weight_window_s)
            per_text = {"1M": "1 MINUTE"}.get(per, per)
            return Decision(
                429,
                ErrorCode.TOO_MANY_REQUESTS,
                f"Too much request weight used; current limit is {cfg.weight_limit} request "
                f"weight per {per_text}. Please use WebSocket Streams for live updates to "
                "avoid polling the API.",
                max(1, math.ceil(wait)),
            )
        st.weight.used = used + weight
        return Decision()

    def _ban_decision(self, st: _IpState, now: float) -> Decision:
        until_ms = int(st.banned_until * 1000)
        return Decision(
            418,
            ErrorCode.TOO_MANY_REQUESTS,
            f"Way too much request weight used; IP banned until {until_ms}. Please use "
            "WebSocket Streams for live updates to avoid bans.",
            max(1, math.ceil(st.banned_until - now)),
        )

    def order_counts(self, api_key: str, now: float) -> tuple[int, int]:
        self._clock_hint = now
        st = self._account(api_key)
        return (st.short.count(now, self.config.orders_window_short_s), st.day.count(now, 86400))

    def check_order(self, api_key: str, now: float) -> Decision:
        """Count one new order for ``api_key`` or refuse it (429 ``-1015``)."""
        self._clock_hint = now
        cfg = self.config
        st = self._account(api_key)
        short = st.short.count(now, cfg.orders_window_short_s)
        day = st.day.count(now, 86400)
        if cfg.enabled:
            if short + 1 > cfg.orders_limit_short:
                per = interval_name(cfg.orders_window_short_s)
                text = {"10S": "10 SECOND"}.get(per, per)
                return Decision(
                    429,
                    ErrorCode.TOO_MANY_ORDERS,
                    f"Too many new orders; "
                    f"current limit is {cfg.orders_limit_short} orders per {text}.",
                )
            if day + 1 > cfg.orders_limit_day:
                return Decision(
                    429,
                    ErrorCode.TOO_MANY_ORDERS,
                    f"Too many new orders; current limit is {cfg.orders_limit_day} orders per DAY.",
                )
        st.short.used = short + 1
        st.day.used = day + 1
        return Decision()

    def rate_limits_info(self) -> list[dict[str, object]]:
        """The ``rateLimits`` array of exchangeInfo."""
        cfg = self.config
        out: list[dict[str, object]] = []
        for kind, seconds, limit in (
            ("REQUEST_WEIGHT", cfg.weight_window_s, cfg.weight_limit),
            ("ORDERS", cfg.orders_window_short_s, cfg.orders_limit_short),
            ("ORDERS", 86400, cfg.orders_limit_day),
            ("RAW_REQUESTS", 300, cfg.raw_requests_limit),
        ):
            interval, num = interval_enum(seconds)
            out.append(
                {"rateLimitType": kind, "interval": interval, "intervalNum": num, "limit": limit}
            )
        return out

    def ws_rate_limits(
        self, ip: str, api_key: str | None, now: float, orders: bool = False
    ) -> list[dict[str, object]]:
        """The ``rateLimits`` array of a WebSocket API response (current counts)."""
        cfg = self.config
        interval, num = interval_enum(cfg.weight_window_s)
        out: list[dict[str, object]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": interval,
                "intervalNum": num,
                "limit": cfg.weight_limit,
                "count": self.used_weight(ip, now),
            }
        ]
        if orders and api_key is not None:
            short, day = self.order_counts(api_key, now)
            i2, n2 = interval_enum(cfg.orders_window_short_s)
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": i2,
                    "intervalNum": n2,
                    "limit": cfg.orders_limit_short,
                    "count": short,
                }
            )
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": "DAY",
                    "intervalNum": 1,
                    "limit": cfg.orders_limit_day,
                    "count": day,
                }
            )
        return out
