"""Tests of the shared rate limiter: the pure core and the trio shell (on trio's MockClock)."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.domain.config import LimiterConfig
from mm_trio.exchange.limiter import (
    Limiter,
    LimiterCore,
    RateLimits,
    WindowBucket,
    effective_limit,
)

Grant = tuple[float, int, int]  # (time, weight, orders)


def max_window_sum(times: list[float], amounts: list[int], window: float) -> int:
    """Largest sum of ``amounts`` over any half-open window ``[t, t + window)``.

    The maximum over all windows is reached by a window starting at some grant time.
    ``times`` must be sorted.
    """
    prefix = [0]
    for a in amounts:
        prefix.append(prefix[-1] + a)
    best = 0
    for i, t in enumerate(times):
        j = bisect_left(times, t + window)
        best = max(best, prefix[j] - prefix[i])
    return best


def assert_any_window(grants: list[Grant], limits: RateLimits) -> None:
    grants = sorted(grants, key=lambda g: g[0])
    times = [g[0] for g in grants]
    weights = [g[1] for g in grants]
    orders = [g[2] for g in grants]
    assert max_window_sum(times, weights, 60.0) <= limits.weight
    assert max_window_sum(times, orders, 10.0) <= limits.orders_short
    assert max_window_sum(times, orders, 86400.0) <= limits.orders_day


SMALL = LimiterConfig(
    weight_per_minute=100, orders_per_10s=10, orders_per_day=60, safety_margin=Decimal("0.1")
)


# --------------------------------------------------------------------------- pure core


def test_effective_limit_applies_safety_margin() -> None:
    assert effective_limit(6000, Decimal("0.1")) == 5400
    assert effective_limit(100, Decimal("0.15")) == 85
    assert effective_limit(7, Decimal("0.1")) == 6  # floor(6.3)
    assert effective_limit(1, Decimal("0.5")) == 1
    limits = RateLimits.from_config(SMALL)
    assert (limits.weight, limits.orders_short, limits.orders_day) == (90, 9, 54)


def test_bucket_tokens_return_exactly_one_window_later() -> None:
    b = WindowBucket("w", 10, 60.0, resolution=0.0)
    b.take(6, 0.0)
    b.take(4, 30.0)
    assert not b.can_take(1, 59.999)
    assert b.next_time(1, 10.0) == 60.0
    assert b.next_time(7, 10.0) == 90.0  # needs both spends back
    assert b.can_take(6, 60.0)
    assert not b.can_take(7, 60.0)
    assert b.can_take(10, 90.0)


def test_core_rejects_oversized_requests() -> None:
    core = LimiterCore(SMALL)
    with pytest.raises(ValueError, match="weight 91 exceeds"):
        core.can_take(91, 0, 0.0)
    with pytest.raises(ValueError, match="orders"):
        core.next_time(1, 10, 0.0)
    with pytest.raises(ValueError):
        core.can_take(-1, 0, 0.0)


def test_core_pause_and_observed_weight() -> None:
    core = LimiterCore(SMALL)
    core.pause_until(5.0, banned=True)
    assert not core.can_take(1, 0, 4.9)
    assert core.next_time(1, 0, 1.0) == 5.0
    assert core.can_take(1, 0, 5.0)
    core.take(10, 0, 5.0)
    assert core.observe_used_weight(90, 6.0) == 80  # venue saw 90, we booked 10
    assert not core.can_take(1, 0, 6.0)
    assert core.next_time(1, 0, 6.0) == 65.0  # our own 10 from t=5 come back first
    assert core.observe_used_weight(10, 7.0) == 0  # less than we think: ignored


def test_core_orders_need_both_order_buckets() -> None:
    core = LimiterCore(SMALL)
    for i in range(9):
        core.take(1, 1, float(i) * 0.01)
    assert not core.can_take(0, 1, 1.0)
    assert core.can_take(5, 0, 1.0)  # weight-only requests are not held by order buckets
    assert core.next_time(0, 1, 1.0) == pytest.approx(10.0)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=20, allow_nan=False),  # time step
            st.integers(min_value=0, max_value=90),  # weight
            st.integers(min_value=0, max_value=3),  # orders
            st.booleans(),  # wait for next_time if refused (else skip)
            st.one_of(st.none(), st.integers(min_value=0, max_value=200)),  # header
        ),
        max_size=150,
    ),
    st.sampled_from([0.0, 0.001, 0.5]),
)
def test_core_any_window_property(
    steps: list[tuple[float, int, int, bool, int | None]], resolution: float
) -> None:
    limits = RateLimits(weight=90, orders_short=9, orders_day=40)
    core = LimiterCore(limits)
    for bucket in (core.weight, core.orders_short, core.orders_day):
        bucket.resolution = resolution
    now = 0.0
    grants: list[Grant] = []
    for dt, weight, orders, wait, header in steps:
        now += dt
        if header is not None:
            core.observe_used_weight(header, now)
        if core.can_take(weight, orders, now):
            core.take(weight, orders, now)
            grants.append((now, weight, orders))
            continue
        t = core.next_time(weight, orders, now)
        assert t > now
        assert not core.can_take(weight, orders, (now + t) / 2) or (now + t) / 2 in (now, t)
        if wait:
            now = t
            assert core.can_take(weight, orders, now)
            core.take(weight, orders, now)
            grants.append((now, weight, orders))
    assert_any_window(grants, limits)


# --------------------------------------------------------------------------- trio shell


def test_checker_catches_a_refill_rate_bucket_burst() -> None:
    """A plain refill-rate bucket sends ~2x its limit within one window; ours never does."""
    limit, window = 90, 60.0
    tokens, t, last = float(limit), 0.0, 0.0
    naive: list[float] = []
    while t < 120.0:
        tokens = min(limit, tokens + (t - last) * limit / window)
        last = t
        while tokens >= 1:
            tokens -= 1
            naive.append(t)
        t += 0.25
    assert max_window_sum(naive, [1] * len(naive), window) > 1.9 * limit

    core = LimiterCore(RateLimits(weight=limit, orders_short=9, orders_day=100))
    ours: list[float] = []
    t = 0.0
    while t < 120.0:
        while core.can_take(1, 0, t):
            core.take(1, 0, t)
            ours.append(t)
        t += 0.25
    assert max_window_sum(ours, [1] * len(ours), window) == limit


@pytest.mark.parametrize("seed", [7, 8, 9])
async def test_hammer_never_exceeds_any_window(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    limiter = Limiter(SMALL)
    limits = limiter.limits
    grants: list[Grant] = []
    rng = random.Random(seed)

    async def worker(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(25):
            weight = r.choice([0, 1, 1, 2, 5, 10, 20, 40])
            orders = r.choice([0, 0, 1, 1, 2])
            cancel = r.random() < 0.2
            await limiter.acquire(weight, orders, cancel=cancel)
            grants.append((trio.current_time(), weight, orders))
            if r.random() < 0.5:
                await trio.sleep(r.random() * 3)

    async with trio.open_nursery() as nursery:
        for _i in range(20):
            nursery.start_soon(worker, rng.randrange(1 << 30))
        nursery.start_soon(header_feed, limiter)
    assert len(grants) == 20 * 25
    assert_any_window(grants, limits)
    assert limiter.sent_weight == sum(g[1] for g in grants)
    assert limiter.sent_orders == sum(g[2] for g in grants)
    assert limiter.waits > 0 and limiter.queued == 0
    # the buckets were the binding constraint: the order/day bucket (54) forced a day wait
    assert max(g[0] for g in grants) > 86400
    # ... and the test is tight: some window is filled to the weight limit exactly
    times = sorted(grants)
    assert max_window_sum([g[0] for g in times], [g[1] for g in times], 60.0) >= limits.weight - 5


async def header_feed(limiter: Limiter) -> None:
    for _ in range(10):
        await trio.sleep(7)
        limiter.observe_used_weight(70)


async def test_cancels_jump_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    order: list[str] = []
    await limiter.acquire(90)  # bucket empty until t=60

    async def one(name: str, cancel: bool) -> None:
        await limiter.acquire(10, 0 if cancel else 1, cancel=cancel)
        order.append(name)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(one, f"new{i}", False)
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, "cancel0", True)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, "cancel1", True)
    assert order == ["cancel0", "cancel1", "new0", "new1", "new2"]
    assert trio.current_time() == pytest.approx(60.0)


async def test_cancel_fits_while_big_request_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(80)
    done: list[str] = []

    async def big() -> None:
        await limiter.acquire(50)
        done.append("big")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(big)
        await trio.testing.wait_all_tasks_blocked()
        await limiter.acquire(1, cancel=True)  # fits now: not blocked behind "big"
        done.append("cancel")
        assert trio.current_time() == 0.0
    assert done == ["cancel", "big"]


async def test_fifo_among_new_orders(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(85)
    order: list[int] = []

    async def one(i: int, weight: int) -> None:
        await limiter.acquire(weight)
        order.append(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0, 30)  # must wait for t=60
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, 1, 1)  # would fit now, but must not overtake
        await trio.testing.wait_all_tasks_blocked()
    assert order == [0, 1]


async def test_pause_blocks_everyone_then_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alerts: list[str] = []
    limiter = Limiter(SMALL, on_alert=alerts.append)
    times: list[float] = []

    async def one(cancel: bool) -> None:
        await limiter.acquire(1, cancel=cancel)
        times.append(trio.current_time())

    limiter.pause(30.0, reason="429 Retry-After")
    assert limiter.paused_until == pytest.approx(30.0)
    assert alerts == []  # a 429 is not an alert
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(one, i % 2 == 0)
    assert times == [pytest.approx(30.0)] * 4
    await limiter.acquire(1)
    assert trio.current_time() == pytest.approx(30.0)


async def test_pause_extends_for_a_sleeping_head(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(90)
    done: list[float] = []

    async def one() -> None:
        await limiter.acquire(1)
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await trio.sleep(10)
        limiter.pause(100.0, banned=True, reason="IP banned")
    assert done == [pytest.approx(110.0)]


async def test_ban_418_alerts(autojump_clock: trio.testing.MockClock) -> None:
    alerts: list[str] = []
    limiter = Limiter(SMALL, on_alert=alerts.append)
    limiter.pause(120.0, banned=True, reason="way too much request weight")
    assert len(alerts) == 1
    assert "418" in alerts[0] and "120" in alerts[0] and "way too much" in alerts[0]
    await limiter.acquire(1)
    assert trio.current_time() == pytest.approx(120.0)
    assert limiter.bans == 1


async def test_observe_used_weight_slows_down(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(10)
    await trio.sleep(1)
    limiter.observe_used_weight(85)  # venue: 85 used (we think 10) -> 75 more booked at t=1
    await limiter.acquire(5)  # 10 + 75 + 5 = 90: fits
    assert trio.current_time() == pytest.approx(1.0)
    await limiter.acquire(5)  # waits until our own 10 from t=0 expire
    assert trio.current_time() == pytest.approx(60.0)
    await limiter.acquire(80)  # needs the 75 booked at t=1
    assert trio.current_time() == pytest.approx(61.0)


async def test_cancelled_waiter_does_not_block_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(60)
    got: list[str] = []

    async def one(name: str, weight: int) -> None:
        await limiter.acquire(weight)
        got.append(name)

    async with trio.open_nursery() as nursery:
        head_scope = trio.CancelScope()
        nursery.start_soon(_in_scope, head_scope, one, "head", 90)  # needs t=60
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, "next", 20)  # fits now, but queued behind head
        await trio.testing.wait_all_tasks_blocked()
        assert got == [] and limiter.queued == 2
        head_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["next"]
        assert trio.current_time() == 0.0
    assert limiter.queued == 0
    assert limiter.sent_weight == 80


async def _in_scope(
    scope: trio.CancelScope, fn: Callable[..., Awaitable[None]], *args: object
) -> None:
    with scope:
        await fn(*args)


async def test_cancellation_propagates_from_wait(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    await limiter.acquire(90)
    with trio.move_on_after(5) as scope:
        await limiter.acquire(1)
    assert scope.cancelled_caught
    assert limiter.queued == 0
    assert limiter.sent_weight == 90
    await limiter.acquire(1)
    assert trio.current_time() == pytest.approx(60.0)


async def test_weight_over_limit_raises(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    with pytest.raises(ValueError, match="exceeds"):
        await limiter.acquire(91)
    with pytest.raises(ValueError, match="orders"):
        await limiter.acquire(1, 10)
    assert limiter.queued == 0


async def test_acquire_is_a_checkpoint(autojump_clock: trio.testing.MockClock) -> None:
    limiter = Limiter(SMALL)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await limiter.acquire(1)
    assert limiter.sent_weight == 0


def test_asking_about_a_later_time_changes_no_later_answer() -> None:
    """Queries never change a bucket: probing a later time (as a caller may, to find when
    a request fits) and then asking about now gives the answer now had before. Found by
    the any-window property: the probe used to drop spends still in the window."""
    core = LimiterCore(RateLimits(weight=90, orders_short=9, orders_day=40))
    for t, w in ((0.0, 17), (17.0, 24), (30.0, 47)):
        core.take(w, 0, t)
    assert not core.can_take(44, 0, 30.0)
    assert core.next_time(44, 0, 30.0) == 90.0
    assert core.can_take(19, 0, 60.0)  # a probe of a later time ...
    assert core.weight.used(60.0) == 71
    assert not core.can_take(3, 0, 30.0)  # ... leaves the window at 30 s full
    assert core.weight.used(30.0) == 88
    core.take(2, 0, 30.0)
    assert core.weight.used(30.0) == 90


def test_a_restart_books_the_orders_its_last_process_sent() -> None:
    """The venue counts orders per 10 s and per day across our restarts; a new process
    that started with a fresh budget would earn 'Too many new orders' (429)."""
    core = LimiterCore(LimiterConfig(orders_per_10s=10, safety_margin=Decimal(0)))
    now = 1000.0
    core.book_earlier_orders([now - 6.0 + i * 0.1 for i in range(10)])  # 10 orders, 6 s ago
    assert not core.can_take(1, 1, now)
    assert core.next_time(1, 1, now) == pytest.approx(now + 4.0)  # the oldest is back at +4 s
    assert core.orders_day.used(now) == 10


async def test_recovery_books_the_journalled_orders_of_the_last_process(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    from mm_trio.exchange.testing import FakeExchange
    from tests.test_recovery import BALANCES, SYM, buys, quote, session, wait_for

    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
    async with session(fake, db) as (orch, _, _):
        assert orch.limiter.core.orders_day.used(trio.current_time()) >= 3
        assert len(buys(fake)) == 3
