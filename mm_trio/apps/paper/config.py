"""Configuration of the paper venue (``mm-trio paper``): the simulated exchange served over a
Binance spot API.

Everything has a default, so ``PaperConfig()`` serves the default simulated exchange with
one account, the documented test pair :data:`DEFAULT_API_KEY` / :data:`DEFAULT_API_SECRET`.
Secrets (HMAC secrets) are excluded from ``repr`` and never logged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs

from mm_trio.apps.web import MIN_TOKEN_CHARS, token_error
from mm_trio.domain.config import SimVenueConfig
from mm_trio.exchange.binance.protocol import MAX_RECV_WINDOW_MS

DEFAULT_API_KEY = "mmtrio-test-key"
"""API key of the default test account (documented; for local paper trading only)."""
DEFAULT_API_SECRET = "mmtrio-test-secret"
"""HMAC secret of the default test account (documented; for local paper trading only)."""

ADMIN_TOKEN_ENV = "MM_TRIO_VENUE_ADMIN_TOKEN"
"""Environment variable holding the bearer token of ``/_admin/*`` (generated when unset)."""
MIN_ADMIN_TOKEN_CHARS = MIN_TOKEN_CHARS
"""Shortest admin token accepted: anything shorter is guessable by a local process."""

MAX_BODY_BYTES = 64 * 1024
"""Cap on a request body (REST and admin) and on one websocket message. Binance documents no
body limit, but its largest request (a signed order with every optional parameter) is well
under 1 KiB and a 1024-stream SUBSCRIBE about 30 KiB; a body over the cap is answered 413
before it is read further or any signature or token work is done."""

MAX_REPLAY_SPEED = 100_000.0
"""Fastest accepted ``replay_speed``: the two shared recordings (346 s) in about 3.5 ms."""


def replay_speed_error(speed: object) -> str | None:
    """Why ``speed`` is not a replay speed (None if it is): a finite number > 0 and at most
    :data:`MAX_REPLAY_SPEED`."""
    if isinstance(speed, bool) or not isinstance(speed, (int, float)):
        return "expected a number"
    if not math.isfinite(speed) or speed <= 0:
        return "must be a finite number > 0"
    if speed > MAX_REPLAY_SPEED:
        return f"must be at most {MAX_REPLAY_SPEED:g}"
    return None


# Bounds of the runtime faults: a fault that outlives a test run (a delay of hours, a count of
# 10^30) is a hung or dead venue, not a fault.
MAX_FAULT_DELAY_S = 60.0
"""Longest ``rest_delay_ms`` / ``timeout_hang_s`` (a minute: longer than any client timeout)."""
MAX_FAULT_COUNT = 100_000
"""Most "next N" REST calls a count fault (``fail_next``, ``force_429``...) can cover."""
MAX_FORCED_RETRY_AFTER_S = 259_200
"""Longest forced ``Retry-After``: Binance's longest IP ban (3 days)."""
FAIL_STATUSES = (500, 502, 503, 504)
"""HTTP statuses ``fail_status`` may take (the 5xx a Binance client must treat as unknown)."""
FAULT_COUNT_FIELDS = (
    "fail_next",
    "timeout_next_orders",
    "timeout_next_cancels",
    "force_429",
    "force_418",
)
FAULT_FIELDS = (
    *FAULT_COUNT_FIELDS,
    "fail_status",
    "forced_retry_after",
    "rest_delay_ms",
    "timeout_hang_s",
)


def fault_value_error(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid value of fault ``name`` (None if it is).

    Integers are required for counts, statuses and ``forced_retry_after``; the delays take any
    finite number (int, float or Decimal). Booleans are never numbers here.
    """
    if name not in FAULT_FIELDS:
        return "unknown fault field"
    if isinstance(value, bool):
        return "must be a number, not a boolean"
    if name in ("rest_delay_ms", "timeout_hang_s"):
        if not isinstance(value, (int, float, Decimal)):
            return "must be a number"
        try:
            seconds = float(value) / 1000 if name == "rest_delay_ms" else float(value)
        except OverflowError:  # an integer beyond any float
            seconds = math.inf
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_FAULT_DELAY_S:
            limit = (
                f"{MAX_FAULT_DELAY_S * 1000:g} ms"
                if name == "rest_delay_ms"
                else f"{MAX_FAULT_DELAY_S:g} s"
            )
            return f"must be a finite number from 0 to {limit}"
        return None
    if not isinstance(value, int):
        return "must be an integer"
    if name == "fail_status":
        if value not in FAIL_STATUSES:
            return "must be one of " + ", ".join(str(s) for s in FAIL_STATUSES)
    elif name == "forced_retry_after":
        if not 0 <= value <= MAX_FORCED_RETRY_AFTER_S:
            return f"must be 0..{MAX_FORCED_RETRY_AFTER_S} (seconds)"
    elif not 0 <= value <= MAX_FAULT_COUNT:
        return f"must be 0..{MAX_FAULT_COUNT}"
    return None


def admin_token_error(token: str) -> str | None:
    """Why ``token`` cannot be the admin bearer token (None if it can)."""
    return token_error(token)


@attrs.frozen(kw_only=True)
class AccountConfig:
    """One trading account: an API key with an HMAC secret and/or an Ed25519 public key.

    ``balances``: starting balances (``None``: the venue config's ``balances`` and defaults).
    Each account has its own matching engine (books of its own orders and its own balances);
    all accounts see the same market data.
    """

    api_key: str
    api_secret: str | None = attrs.field(default=None, repr=False)
    ed25519_public_key: str | None = attrs.field(default=None, repr=False)  # PEM
    balances: dict[str, Decimal] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("account api_key must not be empty")
        if self.api_secret is None and self.ed25519_public_key is None:
            raise ValueError(f"account {self.api_key!r} needs api_secret or ed25519_public_key")


def _account_tuple(accounts: Iterable[AccountConfig]) -> tuple[AccountConfig, ...]:
    return tuple(accounts)


def _default_accounts() -> tuple[AccountConfig, ...]:
    return (AccountConfig(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET),)


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    """Server-side Binance spot limits (defaults: Binance's published values).

    Windows are fixed intervals aligned to the clock, as on Binance. The header names are
    derived from the window lengths (60 s -> ``X-MBX-USED-WEIGHT-1M``). A client that keeps
    sending more than ``ban_after_429s`` requests while it has been told to back off (429 with
    ``Retry-After``) is banned (418); bans last ``ban_base_seconds`` and double with every
    repeat, up to ``ban_max_seconds`` (Binance: 2 minutes to 3 days). ``aligned_windows=False``
    starts each client's windows at its first request instead (deterministic counts in tests).
    """

    weight_limit: int = 6000
    weight_window_s: int = 60
    orders_limit_short: int = 100
    orders_window_short_s: int = 10
    orders_limit_day: int = 200_000
    raw_requests_limit: int = 61_000  # advertised in exchangeInfo only
    ban_after_429s: int = 3
    ban_base_seconds: float = 120.0
    ban_max_seconds: float = 259_200.0
    enabled: bool = True
    aligned_windows: bool = True  # False: windows start at a client's first request (tests)


@attrs.frozen(kw_only=True)
class FaultConfig:
    """Faults active from the start (they can also be set at runtime: ``POST /_admin/faults``).

    * ``rest_delay_ms``: every REST call is answered this much later;
    * ``fail_next`` / ``fail_status``: the next N REST calls fail with 500, 502, 503 or 504
      (not applied);
    * ``timeout_next_orders``: the next N order placements are APPLIED but not answered for
      ``timeout_hang_s`` seconds (then 503 ``-1007``): the "unknown outcome" case;
    * ``timeout_next_cancels``: the same for cancels;
    * ``force_429`` / ``force_418``: the next N REST calls get 429 / 418 with
      ``Retry-After: forced_retry_after``.
    """

    rest_delay_ms: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    timeout_next_orders: int = 0
    timeout_next_cancels: int = 0
    timeout_hang_s: float = 30.0
    force_429: int = 0
    force_418: int = 0
    forced_retry_after: int = 1

    def __attrs_post_init__(self) -> None:
        for name in FAULT_FIELDS:
            value = getattr(self, name)
            why = fault_value_error(name, value)
            if why is not None:
                raise ValueError(f"faults.{name} = {value!r}: {why}")


@attrs.frozen(kw_only=True)
class PaperConfig:
    """The paper venue: the Binance-compatible server (the ``[server]`` config section).

    ``market_symbols``: unified symbols whose market data runs from the start (``None``: every
    listed symbol); streaming or trading any other listed symbol starts its data on demand.
    ``depth_levels``: levels per side of the synthetic order book (REST depth, depth streams).
    ``ws_ping_interval``: seconds between server pings on every websocket (Binance: 20).
    ``state``: a file where every account's balances, orders, trades and ids are kept, so a
    restarted venue serves the same accounts (``None``: in memory only).
    ``admin``: serve ``/_admin/*`` (fault injection) to loopback clients that send
    ``Authorization: Bearer <admin_token>``. ``admin_token``: ``None`` takes it from
    :data:`ADMIN_TOKEN_ENV`, or generates one (logged once at start) when that is unset too.
    """

    venue: SimVenueConfig = attrs.field(factory=SimVenueConfig)
    accounts: tuple[AccountConfig, ...] = attrs.field(
        factory=_default_accounts, converter=_account_tuple
    )
    rate_limits: RateLimitConfig = attrs.field(factory=RateLimitConfig)
    faults: FaultConfig = attrs.field(factory=FaultConfig)
    market_symbols: tuple[str, ...] | None = None
    # recordings (SPEC §10) to serve as market data instead of the synthetic feed, played in
    # real time from start-up; only their symbols then have data
    replay: tuple[str, ...] = ()
    # ... that many times faster than recorded (issue 12 (f): a controlled, high event rate),
    # and that many times in a row (0: until the venue stops)
    replay_speed: float = 1.0
    replay_repeat: int = 1
    depth_levels: int = 20
    ws_ping_interval: float | None = 20.0
    max_recv_window_ms: int = MAX_RECV_WINDOW_MS
    ahead_tolerance_ms: int = 1000
    admin: bool = True
    admin_token: str | None = attrs.field(default=None, repr=False)
    max_orders_kept: int = 200_000  # per account, finished orders beyond this are forgotten
    # the venue's state file (balances, orders, trades, ids; see mm_trio.apps.paper.state):
    # None keeps everything in memory only
    state: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("at least one account is required")
        keys = [a.api_key for a in self.accounts]
        if len(set(keys)) != len(keys):
            raise ValueError("api keys must be unique")
        if self.depth_levels < 1:
            raise ValueError("depth_levels must be >= 1")
        why = replay_speed_error(self.replay_speed)
        if why is not None:
            raise ValueError(f"replay_speed = {self.replay_speed!r}: {why}")
        if isinstance(self.replay_repeat, bool) or self.replay_repeat < 0:
            raise ValueError(
                f"replay_repeat = {self.replay_repeat!r}: must be a whole number >= 0 "
                "(0: repeat until stopped)"
            )
        if self.admin_token is not None:
            why = admin_token_error(self.admin_token)
            if why is not None:  # never echo the token itself
                raise ValueError(f"admin_token {why}")


def with_credentials(
    config: PaperConfig, *, api_key: str | None = None, api_secret: str | None = None
) -> PaperConfig:
    """``--api-key KEY --api-secret SECRET``: replace the first account's credentials."""
    if api_key is None and api_secret is None:
        return config
    first = config.accounts[0]
    if api_key is not None:
        first = attrs.evolve(first, api_key=api_key)
    if api_secret is not None:
        first = attrs.evolve(first, api_secret=api_secret)
    accounts: tuple[AccountConfig, ...] = (first,) + config.accounts[1:]
    return attrs.evolve(config, accounts=accounts)
