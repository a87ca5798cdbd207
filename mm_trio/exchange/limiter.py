"""The one rate limiter shared by everything that talks to the venue (SPEC §7).

Two layers:

* :class:`LimiterCore` is pure (no trio, no clock reads): every method takes ``now``. It
  holds one :class:`WindowBucket` per venue limit -- request weight per 60 s, orders per
  10 s and orders per day -- plus a pause deadline (429 Retry-After / 418 ban).
* :class:`Limiter` is the trio shell: ``await limiter.acquire(weight, orders, cancel=...)``
  waits until the request may be sent. Waiters are served in :class:`Priority` order --
  shutdown traffic (``with priority(Priority.SHUTDOWN):``), then cancels, then everything
  else; first come first served within one -- and every wait is cancellable. A request
  whose owner no longer wants it (``still_wanted``) leaves the queue without spending.

**Why a sliding-window log.** Each bucket is a token bucket whose refill is the *expiry of
past spends*: tokens spent at time ``t`` come back exactly ``window`` seconds later, never
earlier. Hence, for every take at time ``T``, everything spent in ``(T - window, T]`` is
still counted, so over ANY window of the bucket's length the amount sent never exceeds the
limit. A plain refill-rate bucket (capacity ``L``, refill ``L / window`` per second) does
not have that property: it can send ``L`` at once and, as it refills, almost ``L`` more
within the same window -- a burst of up to 2x the venue's limit.

Spends that happen within ``resolution`` seconds of the newest log entry are merged into
it and stamped with the later time. That only ever delays the return of tokens (it is
conservative, the any-window guarantee still holds) and it bounds the size of the log,
e.g. of the daily order bucket, to about ``window / resolution`` entries.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import ROUND_FLOOR, Decimal

import trio

from mm_trio.domain.config import LimiterConfig

__all__ = [
    "Limiter",
    "LimiterCore",
    "Priority",
    "RateLimits",
    "WindowBucket",
    "Withdrawn",
    "effective_limit",
    "priority",
]

log = logging.getLogger(__name__)

WEIGHT_WINDOW = 60.0
ORDERS_SHORT_WINDOW = 10.0
ORDERS_DAY_WINDOW = 86400.0


def effective_limit(limit: int, safety_margin: Decimal) -> int:
    """``floor(limit * (1 - safety_margin))``, but at least 1."""
    value = (Decimal(limit) * (1 - safety_margin)).to_integral_value(rounding=ROUND_FLOOR)
    return max(1, int(value))


class _Spend:
    __slots__ = ("at", "amount")

    def __init__(self, at: float, amount: int) -> None:
        self.at = at
        self.amount = amount


class WindowBucket:
    """At most ``limit`` units over any ``window`` seconds (sliding-window log)."""

    __slots__ = ("name", "limit", "window", "resolution", "_log", "_used")

    def __init__(
        self, name: str, limit: int, window: float, *, resolution: float | None = None
    ) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError(f"bucket {name}: limit and window must be > 0")
        self.name = name
        self.limit = limit
        self.window = window
        self.resolution = window / 10000 if resolution is None else resolution
        # spends, oldest first; amounts are > 0; stamps are non-decreasing
        self._log: deque[_Spend] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        """Drop the spends that have come back by ``now`` (only :meth:`take` does this:
        the queries below never change the bucket, so asking about a later time -- as
        :meth:`next_time`'s callers may -- cannot make an earlier answer wrong)."""
        log = self._log
        window = self.window
        while log and log[0].at + window <= now:
            self._used -= log.popleft().amount

    def _used_at(self, now: float) -> int:
        used = self._used
        window = self.window
        for spend in self._log:
            if spend.at + window > now:
                break
            used -= spend.amount
        return used

    def used(self, now: float) -> int:
        """Units spent in ``(now - window, now]``."""
        return self._used_at(now)

    def can_take(self, amount: int, now: float) -> bool:
        if amount <= 0:
            return True
        return self._used_at(now) + amount <= self.limit

    def take(self, amount: int, now: float) -> None:
        """Record a spend (callers check :meth:`can_take` first; ``observe`` may overdraw).

        A spend stamped earlier than the newest one is stamped with the newest time: its
        tokens then come back later, never earlier (time only moves forward for takes).
        """
        if amount <= 0:
            return
        log = self._log
        if log and now < log[-1].at:
            now = log[-1].at
        self._expire(now)
        if log and now - log[-1].at <= self.resolution:
            last = log[-1]
            last.at = max(last.at, now)
            last.amount += amount
        else:
            log.append(_Spend(now, amount))
        self._used += amount

    def next_time(self, amount: int, now: float) -> float:
        """Earliest time ``>= now`` at which ``amount`` fits (if nothing else is taken)."""
        if amount > self.limit:
            raise ValueError(f"{self.name}: request of {amount} exceeds the limit {self.limit}")
        if amount <= 0:
            return now  # nothing to take: fits even an overdrawn bucket (see can_take)
        used = self._used_at(now)
        if used + amount <= self.limit:
            return now
        excess = used + amount - self.limit
        freed = 0
        window = self.window
        for spend in self._log:
            if spend.at + window <= now:
                continue  # already back by now (counted out of ``used``)
            freed += spend.amount
            if freed >= excess:
                return spend.at + window
        raise AssertionError("unreachable: the whole log frees enough")  # pragma: no cover


class RateLimits:
    """The venue limits in force: effective (safety-margined) limit and window per bucket."""

    __slots__ = ("weight", "orders_short", "orders_day")

    def __init__(self, weight: int, orders_short: int, orders_day: int) -> None:
        self.weight = weight
        self.orders_short = orders_short
        self.orders_day = orders_day

    @classmethod
    def from_config(cls, config: LimiterConfig) -> RateLimits:
        m = config.safety_margin
        return cls(
            effective_limit(config.weight_per_minute, m),
            effective_limit(config.orders_per_10s, m),
            effective_limit(config.orders_per_day, m),
        )

    def __repr__(self) -> str:
        return (
            f"RateLimits(weight={self.weight}/60s, orders={self.orders_short}/10s, "
            f"{self.orders_day}/day)"
        )


class LimiterCore:
    """Pure limiter state: three window buckets and a pause deadline. Time is passed in."""

    def __init__(self, limits: RateLimits | LimiterConfig) -> None:
        if isinstance(limits, LimiterConfig):
            limits = RateLimits.from_config(limits)
        self.limits = limits
        self.weight = WindowBucket("weight", limits.weight, WEIGHT_WINDOW)
        self.orders_short = WindowBucket("orders/10s", limits.orders_short, ORDERS_SHORT_WINDOW)
        self.orders_day = WindowBucket("orders/day", limits.orders_day, ORDERS_DAY_WINDOW)
        self.paused_until = -math.inf
        self.banned = False

    def validate(self, weight: int, orders: int) -> None:
        """Raise ``ValueError`` for a request that could never be granted."""
        if weight < 0 or orders < 0:
            raise ValueError(f"weight ({weight}) and orders ({orders}) must be >= 0")
        if weight > self.weight.limit:
            raise ValueError(f"request weight {weight} exceeds the limit {self.weight.limit}/60s")
        for bucket in (self.orders_short, self.orders_day):
            if orders > bucket.limit:
                raise ValueError(
                    f"request of {orders} orders exceeds the limit {bucket.limit} ({bucket.name})"
                )

    def can_take(self, weight: int, orders: int, now: float) -> bool:
        self.validate(weight, orders)
        return (
            now >= self.paused_until
            and self.weight.can_take(weight, now)
            and self.orders_short.can_take(orders, now)
            and self.orders_day.can_take(orders, now)
        )

    def take(self, weight: int, orders: int, now: float) -> None:
        """Spend; raise ``RuntimeError`` if it does not fit now (check first)."""
        if not self.can_take(weight, orders, now):
            raise RuntimeError(f"limiter: weight {weight} / {orders} orders do not fit at {now}")
        self.weight.take(weight, now)
        self.orders_short.take(orders, now)
        self.orders_day.take(orders, now)

    def next_time(self, weight: int, orders: int, now: float) -> float:
        """Earliest time ``>= now`` the request could be taken (if nothing else is taken).

        Buckets only ever free up as time passes, so the latest of the per-bucket earliest
        times (and the pause deadline) is the joint earliest time.
        """
        self.validate(weight, orders)
        return max(
            now,
            self.paused_until,
            self.weight.next_time(weight, now),
            self.orders_short.next_time(orders, now),
            self.orders_day.next_time(orders, now),
        )

    def observe_used_weight(self, used: int, now: float) -> int:
        """The venue says ``used`` weight was spent in its current window.

        If that is more than we account for, the difference is booked now (so it returns
        a full window later) and we slow down accordingly. Returns the amount booked.
        """
        ours = self.weight.used(now)
        extra = used - ours
        if extra <= 0:
            return 0
        self.weight.take(extra, now)
        return extra

    def book_earlier_orders(self, times: Sequence[float]) -> None:
        """Orders an earlier process of ours sent at ``times`` (ascending, this clock): the
        venue still counts them in its order windows, so we do too (a restart must not
        start with a fresh order budget the venue does not give it)."""
        for t in times:
            self.orders_short.take(1, t)
            self.orders_day.take(1, t)

    def pause_until(self, t: float, banned: bool = False) -> None:
        """Stop all traffic until ``t`` (429 Retry-After; ``banned`` for a 418 ban)."""
        if t > self.paused_until:
            self.paused_until = t
        self.banned = self.banned or banned

    def paused(self, now: float) -> bool:
        if now >= self.paused_until:
            self.banned = False
            return False
        return True


PAUSE_MERGE_SECONDS = 1.0


class Priority(enum.IntEnum):
    """Which waiters are served first (highest first, first come first served within one).

    ``SHUTDOWN``: the exit sweep and other cancel-everything traffic (its open-orders reads
    too), which must never queue behind ordinary requests; ``CANCEL``: order cancels;
    ``OTHER``: everything else (placements, queries, balance reads).
    """

    OTHER = 0
    CANCEL = 1
    SHUTDOWN = 2


_PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "mm_trio_limiter_priority", default=Priority.OTHER
)


@contextmanager
def priority(level: Priority) -> Iterator[None]:
    """Serve every ``acquire`` of this task inside the block at ``level`` or higher.

    A context variable, so it reaches the requests made deep inside an ``Exchange`` call
    (e.g. ``cancel_all`` reading open orders, then cancelling) without every venue
    interface growing a parameter; tasks started inside the block inherit it.
    """
    token = _PRIORITY.set(max(level, _PRIORITY.get()))
    try:
        yield
    finally:
        _PRIORITY.reset(token)


class Withdrawn(Exception):
    """``acquire(still_wanted=...)`` gave up: the request is no longer wanted. Nothing was
    spent and nothing may be sent."""


class _Waiter:
    __slots__ = ("weight", "orders", "still_wanted", "withdrawn", "wake", "queue")

    def __init__(self, weight: int, orders: int, still_wanted: Callable[[], bool] | None) -> None:
        self.weight = weight
        self.orders = orders
        self.still_wanted = still_wanted
        self.withdrawn = False
        self.wake = trio.Event()
        self.queue: deque[_Waiter] | None = None  # the queue it waits in, while it does

    def unwanted(self) -> bool:
        if not self.withdrawn and self.still_wanted is not None and not self.still_wanted():
            self.withdrawn = True
        return self.withdrawn


class Limiter:
    """Trio shell around :class:`LimiterCore`; one instance shared by the whole process.

    Waiters are queued by :class:`Priority`. Only the head of the queue (the oldest waiter
    of the highest priority) sleeps on the clock; the others wait until they become the
    head. A new higher-priority waiter, a pause and a waiter leaving the queue wake the head
    so it re-evaluates.

    A request made with ``still_wanted`` leaves the queue, spending nothing, as soon as that
    says no: it is asked on arrival, whenever the waiter wakes, right before a grant, and at
    once when its owner calls :meth:`recheck` (e.g. because it requested the cancel of the
    order being placed).

    Every pause is logged once: a 429 at WARNING, a 418 ban at ERROR (and ``on_alert`` is
    called with the same message).
    """

    def __init__(
        self, config: LimiterConfig, *, on_alert: Callable[[str], None] | None = None
    ) -> None:
        self.core = LimiterCore(config)
        self.on_alert = on_alert
        self._queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        # queued waiters by id() of their still_wanted callable, for recheck()
        self._by_wanted: dict[int, list[_Waiter]] = {}
        self.sent_weight = 0
        self.sent_orders = 0
        self.waits = 0
        self.withdrawn = 0
        self.pauses = 0
        self.bans = 0
        self.last_pause_reason = ""
        self.paused_seconds = 0.0  # venue-ordered pause time, overlaps counted once

    # ------------------------------------------------------------------ metrics
    @property
    def paused_until(self) -> float:
        """Trio time until which all traffic is paused (0.0 if never paused: finite for
        metrics and JSON)."""
        return max(0.0, self.core.paused_until)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues)

    @property
    def limits(self) -> RateLimits:
        return self.core.limits

    def stats(self) -> dict[str, int]:
        """Counters for summaries: what was granted, how often a request waited, was
        withdrawn while queued, and how often the venue paused (or banned) us."""
        return {
            "sent_weight": self.sent_weight,
            "sent_orders": self.sent_orders,
            "waits": self.waits,
            "withdrawn": self.withdrawn,
            "pauses": self.pauses,
            "bans": self.bans,
        }

    # ------------------------------------------------------------------ queue
    def _head(self) -> _Waiter | None:
        for queue in reversed(self._queues):
            if queue:
                return queue[0]
        return None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.wake.set()

    def _grant(self, weight: int, orders: int, now: float) -> None:
        self.core.take(weight, orders, now)
        self.sent_weight += weight
        self.sent_orders += orders

    def _leave(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out of its queue (once) and let the next head look."""
        queue = waiter.queue
        if queue is None:
            return  # never queued, or already gone (withdrawn by recheck)
        was_head = self._head() is waiter
        queue.remove(waiter)
        waiter.queue = None
        if waiter.still_wanted is not None:
            key = id(waiter.still_wanted)
            same = self._by_wanted[key]
            same.remove(waiter)
            if not same:
                del self._by_wanted[key]
        if was_head:
            self._wake_head()

    async def acquire(
        self,
        weight: int = 1,
        orders: int = 0,
        *,
        cancel: bool = False,
        still_wanted: Callable[[], bool] | None = None,
    ) -> None:
        """Wait until ``weight`` request weight and ``orders`` new orders may be sent.

        ``cancel=True`` marks an order cancel: it is served before every ordinary waiter;
        inside ``with priority(Priority.SHUTDOWN)`` the request is served before both.
        ``still_wanted``: asked before the request is granted (see the class docstring);
        once it says no, :class:`Withdrawn` is raised and nothing is spent. Raises
        ``ValueError`` at once for a request larger than a limit. Cancellable.
        """
        self.core.validate(weight, orders)
        await trio.lowlevel.checkpoint()
        waiter = _Waiter(weight, orders, still_wanted)
        if waiter.unwanted():
            self.withdrawn += 1
            raise Withdrawn("no longer wanted")
        level = max(Priority.CANCEL if cancel else Priority.OTHER, _PRIORITY.get())
        now = trio.current_time()
        ahead = any(self._queues[p] for p in range(level, len(self._queues)))
        if not ahead and self.core.can_take(weight, orders, now):
            self._grant(weight, orders, now)
            return
        self.waits += 1
        old_head = self._head()
        waiter.queue = self._queues[level]
        waiter.queue.append(waiter)
        if still_wanted is not None:
            self._by_wanted.setdefault(id(still_wanted), []).append(waiter)
        if old_head is not None and self._head() is waiter:
            old_head.wake.set()  # displaced: let it go back to plain waiting
        try:
            while True:
                if waiter.unwanted():
                    self.withdrawn += 1
                    raise Withdrawn("no longer wanted")
                if self._head() is waiter:
                    now = trio.current_time()
                    if self.core.can_take(weight, orders, now):
                        self._grant(weight, orders, now)
                        return
                    deadline = self.core.next_time(weight, orders, now)
                    with trio.move_on_at(deadline):
                        await waiter.wake.wait()
                else:
                    await waiter.wake.wait()
                if waiter.wake.is_set():
                    waiter.wake = trio.Event()
        finally:
            # granted, withdrawn or cancelled: leave the queue and let the next waiter look
            self._leave(waiter)

    def recheck(self, still_wanted: Callable[[], bool]) -> int:
        """``still_wanted`` may have changed its answer: every request queued with it asks
        it now, and those no longer wanted leave the queue at once (their ``acquire``
        raises :class:`Withdrawn`) without spending anything. Returns how many left."""
        left = 0
        for waiter in list(self._by_wanted.get(id(still_wanted), ())):
            if waiter.unwanted():
                left += 1
                self._leave(waiter)
                waiter.wake.set()
        return left

    def pause(self, seconds: float, *, banned: bool = False, reason: str = "") -> None:
        """Stop ALL traffic for ``seconds`` (429 Retry-After, or a 418 ban with an alert).

        The same answer reported again (by the adapter, then by its caller) is one pause: a
        pause already in force that ends no more than a second earlier is kept as it is
        (and not logged again). Each pause is logged once with its cause and duration.
        """
        now = trio.current_time()
        until = now + max(0.0, seconds)
        core = self.core
        if (
            core.paused(now)
            and core.paused_until >= until - PAUSE_MERGE_SECONDS
            and (core.banned or not banned)
        ):
            return
        self.paused_seconds += max(0.0, until - max(now, core.paused_until))
        self.core.pause_until(until, banned)
        self.pauses += 1
        self.last_pause_reason = reason
        cause = f": {reason}" if reason else ""
        if banned:
            self.bans += 1
            message = f"venue ban (418): all traffic stopped for {seconds:.0f}s{cause}"
            log.error("%s", message)
            if self.on_alert is not None:
                self.on_alert(message)
        else:
            log.warning("venue rate limit (429): all traffic paused for %.1fs%s", seconds, cause)
        self._wake_head()

    def observe_used_weight(self, used: int) -> None:
        """Feed the venue's X-MBX-USED-WEIGHT(-1M) header value."""
        self.core.observe_used_weight(used, trio.current_time())

    def book_earlier_orders(self, ages: Sequence[float]) -> None:
        """Orders sent ``ages`` seconds ago by an earlier process (see
        :meth:`LimiterCore.book_earlier_orders`)."""
        now = trio.current_time()
        self.core.book_earlier_orders(sorted(now - age for age in ages))
