"""Per-symbol circuit breakers (SPEC §6): pure, time passed in, O(1) amortized per event.

Breakers (names are stable; metrics and status use them):

* ``stale`` -- no quote for ``stale_after`` s (since the last quote, or since the first
  call if no quote came yet) trips; the next quote clears.
* ``price_jump`` -- the mid moved more than ``jump_pct`` within ``jump_window`` s. Sliding
  window min/max (monotonic deques) compare every new mid with the extremes of the window,
  which detects every pair of mids that far apart. After a detection the window restarts
  from the current mid, so only a *new* move counts as a new jump. Clears after
  ``jump_cooldown`` s without a new jump.
* ``volume_spike`` -- traded volume over the last ``volume_window`` s exceeds
  ``volume_spike_factor`` x the average of the ``volume_baseline_windows`` windows before
  it, while the price fell more than ``volume_drop_pct`` over the window (reference: the
  last trade before the window, else its first trade). Needs a full baseline of history.
  Clears after ``volume_cooldown`` s without a new spike.
* ``reject_storm`` -- ``reject_storm_count`` rejects within ``reject_storm_window`` s.
  Clears after ``reject_cooldown`` s without the storm condition.
* ``loss_limit`` -- PnL <= ``-max_loss``: latched until :meth:`RiskMonitor.reset_loss_limit`.

Every method returns the :class:`BreakerChange` list it caused (trips and clears, each
with a human reason carrying the numbers). Cool-downs and staleness are checked at the
start of every call, so :meth:`RiskMonitor.tick` only has to run when no events arrive.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal

import msgspec

from mm_trio.domain.config import RiskConfig
from mm_trio.domain.model import Quote, Trade

__all__ = [
    "BREAKERS",
    "HALT_OPENING",
    "BreakerChange",
    "RiskMonitor",
]

STALE = "stale"
PRICE_JUMP = "price_jump"
VOLUME_SPIKE = "volume_spike"
REJECT_STORM = "reject_storm"
LOSS_LIMIT = "loss_limit"
BREAKERS: tuple[str, ...] = (STALE, PRICE_JUMP, VOLUME_SPIKE, REJECT_STORM, LOSS_LIMIT)
HALT_OPENING: frozenset[str] = frozenset({STALE, PRICE_JUMP, VOLUME_SPIKE, REJECT_STORM})

HISTORY_LEN = 500
_NEG_INF = Decimal("-Infinity")
_POS_INF = Decimal("Infinity")
ZERO = Decimal(0)
HUNDRED = Decimal(100)


class BreakerChange(msgspec.Struct, frozen=True):
    """A breaker tripped (``tripped=True``) or cleared, why, and when (caller's clock)."""

    breaker: str
    tripped: bool
    reason: str
    at: float


def _pct(x: Decimal) -> str:
    """A fraction as a percentage, trimmed: 0.034 -> '3.4', 0.03 -> '3'."""
    q = (x * HUNDRED).quantize(Decimal("0.01"))
    s = f"{q:f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _num(x: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 100.0 -> '100'."""
    return f"{x.normalize():f}"


def _secs(x: float) -> str:
    return f"{x:.1f}s"


class RiskMonitor:
    """The breakers of one symbol. Feed it events with their ``now``; read the flags."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self._tripped: dict[str, BreakerChange] = {}
        self._history: deque[BreakerChange] = deque(maxlen=HISTORY_LEN)
        self.trips = 0
        self._start: float | None = None  # first time we were called (stale baseline)
        self._last_quote: float | None = None
        self._last_mid: Decimal | None = None
        # price jump: monotonic deques of (time, mid) for window max (decreasing) / min
        self._maxq: deque[tuple[float, Decimal]] = deque()
        self._minq: deque[tuple[float, Decimal]] = deque()
        self._last_jump: float | None = None
        # volume: trades in the current window, and in the baseline windows before it
        self._recent: deque[tuple[float, Decimal, Decimal]] = deque()  # (t, qty, price)
        self._recent_vol = ZERO
        self._older: deque[tuple[float, Decimal, Decimal]] = deque()
        self._older_vol = ZERO
        # the highest trade price in both windows (monotonic deque of (t, price)): the
        # largest reference price a volume-spike drop can be measured from
        self._pmax: deque[tuple[float, Decimal]] = deque()
        self._first_trade: float | None = None
        self._baseline_at = math.inf  # from then on the baseline windows are full
        self._last_spike: float | None = None
        # rejects
        self._rejects: deque[float] = deque(maxlen=max(1, config.reject_storm_count))
        self._last_storm: float | None = None

    # ------------------------------------------------------------------ state
    @property
    def halt_opening(self) -> bool:
        """Opening orders must be cancelled / not placed (a market-condition breaker)."""
        return any(name in self._tripped for name in HALT_OPENING)

    @property
    def stopped(self) -> bool:
        """The loss limit tripped: the symbol stops until an operator resets it."""
        return LOSS_LIMIT in self._tripped

    def tripped(self) -> dict[str, BreakerChange]:
        """Currently tripped breakers, with the change that tripped each."""
        return dict(self._tripped)

    def history(self) -> list[BreakerChange]:
        """The last changes (bounded), oldest first."""
        return list(self._history)

    # ------------------------------------------------------------------ helpers
    def _trip(self, name: str, reason: str, now: float, out: list[BreakerChange]) -> None:
        if name in self._tripped:
            return
        change = BreakerChange(name, True, reason, now)
        self._tripped[name] = change
        self._history.append(change)
        self.trips += 1
        out.append(change)

    def _clear(self, name: str, reason: str, now: float, out: list[BreakerChange]) -> None:
        if name not in self._tripped:
            return
        del self._tripped[name]
        change = BreakerChange(name, False, reason, now)
        self._history.append(change)
        out.append(change)

    def _timers(self, now: float) -> list[BreakerChange]:
        out: list[BreakerChange] = []
        if self._start is None:
            self._start = now
        if not self._tripped and self._last_quote is not None:
            # fast path: nothing to clear; only staleness can trip
            if now - self._last_quote >= self.config.stale_after:
                self._check_stale(now, out)
            return out
        self._check_stale(now, out)
        c = self.config
        if (
            PRICE_JUMP in self._tripped
            and self._last_jump is not None
            and now - self._last_jump >= c.jump_cooldown
        ):
            self._clear(
                PRICE_JUMP,
                f"no new jump for {_secs(now - self._last_jump)} "
                f"(cool-down {_secs(c.jump_cooldown)})",
                now,
                out,
            )
        if (
            VOLUME_SPIKE in self._tripped
            and self._last_spike is not None
            and now - self._last_spike >= c.volume_cooldown
        ):
            self._clear(
                VOLUME_SPIKE,
                f"no new volume spike for {_secs(now - self._last_spike)} "
                f"(cool-down {_secs(c.volume_cooldown)})",
                now,
                out,
            )
        if (
            REJECT_STORM in self._tripped
            and self._last_storm is not None
            and now - self._last_storm >= c.reject_cooldown
        ):
            self._clear(
                REJECT_STORM,
                f"reject rate back below {c.reject_storm_count} in "
                f"{_secs(c.reject_storm_window)} for {_secs(now - self._last_storm)} "
                f"(cool-down {_secs(c.reject_cooldown)})",
                now,
                out,
            )
        return out

    def _check_stale(self, now: float, out: list[BreakerChange]) -> None:
        if STALE in self._tripped:
            return
        since = self._last_quote if self._last_quote is not None else self._start
        assert since is not None
        gap = now - since
        if gap >= self.config.stale_after:
            what = "no quote for" if self._last_quote is not None else "no quote at all for"
            self._trip(
                STALE, f"{what} {_secs(gap)} (limit {_secs(self.config.stale_after)})", now, out
            )

    # ------------------------------------------------------------------ events
    def tick(self, now: float) -> list[BreakerChange]:
        """Time-driven trips and clears (staleness, cool-downs). Call periodically."""
        return self._timers(now)

    def quiet_band(self) -> tuple[Decimal, Decimal] | None:
        """The open interval of mids no breaker reacts to: inside it a quote can neither
        trip the price-jump breaker (it stays within ``jump_pct`` of the window's extremes,
        and the extremes only narrow as they age) nor clear one (``None`` while any breaker
        is tripped). Such a quote may be handled late (see :meth:`quote_seen`)."""
        if self._tripped:
            return None
        if not self._maxq or not self._minq:
            return _NEG_INF, _POS_INF
        j = self.config.jump_pct
        lo, hi = self._maxq[0][1] * (1 - j), self._minq[0][1] * (1 + j)
        return (lo, hi) if lo < hi else None

    def quiet_at(self, now: float) -> bool:
        """A quote inside :meth:`quiet_band` handled at ``now`` changes no breaker: none is
        tripped (so none can clear) and staleness cannot trip before it (the band already
        rules out a jump)."""
        last = self._last_quote
        return not self._tripped and last is not None and now - last < self.config.stale_after

    def quote_seen(self, now: float) -> None:
        """A quote inside :meth:`quiet_band` arrived at ``now`` and will be handled later:
        it already counts against staleness."""
        if self._last_quote is None or now > self._last_quote:
            self._last_quote = now

    def trade_band(self) -> tuple[Decimal, Decimal, float] | None:
        """``(lo, hi, until)``: a trade priced in ``[lo, hi]`` that arrives before ``until``
        can trip nothing, nor can any number of them, whatever their size, so they may be
        handled late, in arrival order (``None``: every trade must be handled at once).

        Why: with no breaker tripped, a trade only feeds the volume windows and checks
        staleness (``until`` stays short of ``stale_after`` after the last quote). A volume
        spike also needs the price ``drop_pct`` under its reference, which is a trade
        still in the windows, so priced at most their highest price ``M``; a trade at or
        above ``M * (1 - drop_pct)`` and not above ``M`` leaves every possible reference
        within ``drop_pct`` of it. Before the baseline is full nothing can trip at all.
        """
        if self._tripped or self._last_quote is None or self._first_trade is None:
            return None
        c = self.config
        until = self._last_quote + c.stale_after
        if until <= self._baseline_at:
            return _NEG_INF, _POS_INF, until
        if not self._pmax:
            return None
        top = self._pmax[0][1]
        return top * (1 - c.volume_drop_pct), top, until

    def on_quote(self, quote: Quote, now: float) -> list[BreakerChange]:
        out = self._timers(now)
        c = self.config
        if STALE in self._tripped:
            gap = now - (self._last_quote if self._last_quote is not None else now)
            self._clear(
                STALE, f"quote received after {_secs(gap)} (limit {_secs(c.stale_after)})", now, out
            )
        self._last_quote = now
        mid = quote.mid
        if mid <= 0:
            return out
        self._last_mid = mid
        horizon = now - c.jump_window
        maxq, minq = self._maxq, self._minq
        while maxq and maxq[0][0] < horizon:
            maxq.popleft()
        while minq and minq[0][0] < horizon:
            minq.popleft()
        jump: tuple[Decimal, float, Decimal] | None = None  # (move, seconds, from)
        if minq:
            t_lo, lo = minq[0]
            if lo > 0 and (mid - lo) / lo > c.jump_pct:
                jump = ((mid - lo) / lo, now - t_lo, lo)
        if maxq and jump is None:
            t_hi, hi = maxq[0]
            if (hi - mid) / hi > c.jump_pct:
                jump = ((mid - hi) / hi, now - t_hi, hi)
        if jump is not None:
            move, dt, ref = jump
            self._last_jump = now
            maxq.clear()
            minq.clear()
            self._trip(
                PRICE_JUMP,
                f"mid moved {_pct(move)}% in {_secs(dt)} "
                f"({_num(ref)} -> {_num(mid)}; limit {_pct(c.jump_pct)}% in "
                f"{_secs(c.jump_window)})",
                now,
                out,
            )
        while maxq and maxq[-1][1] <= mid:
            maxq.pop()
        maxq.append((now, mid))
        while minq and minq[-1][1] >= mid:
            minq.pop()
        minq.append((now, mid))
        return out

    def on_trade(self, trade: Trade, now: float) -> list[BreakerChange]:
        out = self._timers(now)
        c = self.config
        window = c.volume_window
        n = c.volume_baseline_windows
        if self._first_trade is None:
            self._first_trade = now
            self._baseline_at = now + (n + 1) * window
        recent, older = self._recent, self._older
        # age the windows: current window is (now - W, now], baseline (now - (n+1)W, now - W]
        cut = now - window
        while recent and recent[0][0] <= cut:
            item = recent.popleft()
            self._recent_vol -= item[1]
            older.append(item)
            self._older_vol += item[1]
        cut_old = now - (n + 1) * window
        while older and older[0][0] <= cut_old:
            self._older_vol -= older.popleft()[1]
        pmax, price = self._pmax, trade.price
        while pmax and pmax[0][0] <= cut_old:
            pmax.popleft()
        while pmax and pmax[-1][1] <= price:
            pmax.pop()
        pmax.append((now, price))
        recent.append((now, trade.qty, price))
        self._recent_vol += trade.qty
        if now < self._baseline_at:
            return out  # not enough history for a baseline yet
        volume = self._recent_vol
        baseline = self._older_vol / n
        if volume <= c.volume_spike_factor * baseline:
            return out
        ref = older[-1][2] if older else recent[0][2]
        if ref <= 0:
            return out
        drop = (ref - trade.price) / ref
        if drop <= c.volume_drop_pct:
            return out
        self._last_spike = now
        ratio = f"{volume / baseline:.1f}x" if baseline > 0 else "inf x"
        self._trip(
            VOLUME_SPIKE,
            f"volume {_num(volume)} in {_secs(window)} is {ratio} the "
            f"{n}-window average {_num(baseline)} (limit "
            f"{c.volume_spike_factor}x) while price fell {_pct(drop)}% "
            f"({_num(ref)} -> {_num(trade.price)}; "
            f"limit {_pct(c.volume_drop_pct)}%)",
            now,
            out,
        )
        return out

    def on_reject(self, reason: str, now: float) -> list[BreakerChange]:
        out = self._timers(now)
        c = self.config
        rejects = self._rejects
        rejects.append(now)  # maxlen = count: only the last `count` matter
        if len(rejects) >= c.reject_storm_count and now - rejects[0] <= c.reject_storm_window:
            self._last_storm = now
            self._trip(
                REJECT_STORM,
                f"{len(rejects)} rejects in {_secs(now - rejects[0])} "
                f"(limit {c.reject_storm_count} in {_secs(c.reject_storm_window)}); "
                f"last: {reason}",
                now,
                out,
            )
        return out

    def on_pnl(self, pnl: Decimal, now: float) -> list[BreakerChange]:
        out = self._timers(now)
        limit = self.config.max_loss
        if pnl <= -limit:
            self._trip(LOSS_LIMIT, f"PnL {pnl} reached the loss limit -{limit}", now, out)
        return out

    def reset_loss_limit(self, now: float | None = None) -> list[BreakerChange]:
        """Operator action: clear the latched loss limit."""
        out: list[BreakerChange] = []
        at = now if now is not None else (self._last_quote or self._start or 0.0)
        self._clear(LOSS_LIMIT, "loss limit reset by the operator", at, out)
        return out
