"""The limiter's queue: withdrawn requests leave without spending, shutdown traffic goes
first, and every venue pause is logged once (issue 7, items 5 and 8). On trio's MockClock.

The module is imported as a whole (``lim.Priority``, ...) so that, against a limiter without
these features, each test fails on its own rather than the file failing to import.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
import trio
import trio.testing

import mm_trio.exchange.limiter as lim
from mm_trio.domain.config import LimiterConfig
from tests.test_limiter import Grant, assert_any_window

# effective limits (10% margin): weight 90/60 s, orders 9/10 s, 54/day
SMALL = LimiterConfig(
    weight_per_minute=100, orders_per_10s=10, orders_per_day=60, safety_margin=Decimal("0.1")
)
ORDERS_FREE_AT = 10.0  # when orders spent at t=0 come back
WEIGHT_FREE_AT = 60.0  # when weight spent at t=0 comes back

Outcome = tuple[str, str, float]  # (name, "granted" | "withdrawn", trio time)


class Wanted:
    """A placement's ``still_wanted``: true until its cancel is requested."""

    def __init__(self) -> None:
        self.wanted = True

    def __call__(self) -> bool:
        return self.wanted


async def place(limiter: lim.Limiter, name: str, wanted: Wanted, outcomes: list[Outcome]) -> None:
    try:
        await limiter.acquire(1, 1, still_wanted=wanted)
    except lim.Withdrawn:
        outcomes.append((name, "withdrawn", trio.current_time()))
    else:
        outcomes.append((name, "granted", trio.current_time()))


async def start_queued(
    nursery: trio.Nursery, fn: Callable[..., Awaitable[None]], *args: object
) -> None:
    """Start ``fn`` and let it reach its wait (so queue order is start order)."""
    nursery.start_soon(fn, *args)
    await trio.testing.wait_all_tasks_blocked()


# --------------------------------------------------------------------------- withdrawal


async def test_withdrawn_waiter_leaves_at_once_without_spending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = lim.Limiter(SMALL)
    await limiter.acquire(1, 9)  # the order bucket is full until t=10
    wanted = {name: Wanted() for name in ("head", "middle", "last")}
    outcomes: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        for name, w in wanted.items():
            await start_queued(nursery, place, limiter, name, w, outcomes)
        assert limiter.queued == 3
        # a waiter in the middle of the queue: it leaves now, not when it would be served
        wanted["middle"].wanted = False
        assert limiter.recheck(wanted["middle"]) == 1
        assert limiter.queued == 2
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == [("middle", "withdrawn", 0.0)]
        # the head, sleeping on the clock: the same, and the next one becomes the head
        wanted["head"].wanted = False
        assert limiter.recheck(wanted["head"]) == 1
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes[-1] == ("head", "withdrawn", 0.0)
        assert limiter.recheck(wanted["last"]) == 0  # still wanted: stays queued
        assert limiter.queued == 1
    # the withdrawn ones spent nothing: the last one gets the first order token back
    assert outcomes[-1] == ("last", "granted", ORDERS_FREE_AT)
    assert limiter.sent_orders == 9 + 1 and limiter.sent_weight == 1 + 1
    assert limiter.withdrawn == 2 and limiter.queued == 0


async def test_unwanted_head_is_never_granted_even_without_recheck(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``still_wanted`` is asked again right before a grant: a waiter whose owner changed
    its mind without telling the limiter still spends nothing."""
    limiter = lim.Limiter(SMALL)
    await limiter.acquire(1, 9)
    first, second = Wanted(), Wanted()
    outcomes: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        await start_queued(nursery, place, limiter, "first", first, outcomes)
        await start_queued(nursery, place, limiter, "second", second, outcomes)
        first.wanted = False  # no recheck
    assert outcomes == [
        ("first", "withdrawn", ORDERS_FREE_AT),
        ("second", "granted", ORDERS_FREE_AT),
    ]
    assert limiter.sent_orders == 9 + 1


async def test_unwanted_on_arrival_is_refused_without_queueing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = lim.Limiter(SMALL)
    with pytest.raises(lim.Withdrawn):
        await limiter.acquire(1, 1, still_wanted=lambda: False)
    assert limiter.sent_weight == 0 and limiter.sent_orders == 0 and limiter.queued == 0


async def test_cancelled_waiter_with_still_wanted_leaves_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A waiter cancelled by trio leaves the queue and the recheck index: a later recheck
    of its callable finds nothing, and the queue keeps moving."""
    limiter = lim.Limiter(SMALL)
    await limiter.acquire(1, 9)
    wanted = Wanted()
    with trio.move_on_after(1):
        await limiter.acquire(1, 1, still_wanted=wanted)
    assert limiter.queued == 0
    wanted.wanted = False
    assert limiter.recheck(wanted) == 0
    await limiter.acquire(1, 1, still_wanted=Wanted())
    assert trio.current_time() == ORDERS_FREE_AT


# --------------------------------------------------------------------------- priority


async def test_shutdown_traffic_is_served_before_queued_cancels_and_places(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = lim.Limiter(SMALL)
    await limiter.acquire(90)  # the weight bucket is full until t=60
    served: list[str] = []

    async def one(name: str, weight: int, orders: int, cancel: bool) -> None:
        await limiter.acquire(weight, orders, cancel=cancel)
        served.append(name)

    async def sweep(name: str) -> None:
        # shutdown traffic: a read and a cancel, the cancel from a task started inside the
        # block (it inherits the priority)
        with lim.priority(lim.Priority.SHUTDOWN):
            async with trio.open_nursery() as inner:
                inner.start_soon(one, name + ":cancel", 1, 0, True)
                await limiter.acquire(6)
                served.append(name + ":read")

    async with trio.open_nursery() as nursery:
        for i in range(3):
            await start_queued(nursery, one, f"place{i}", 1, 1, False)
        await start_queued(nursery, one, "cancel", 1, 0, True)
        await start_queued(nursery, sweep, "sweepA")
        await start_queued(nursery, sweep, "sweepB")
    # (a sweep's read and its child's cancel reach the limiter in either order)
    assert set(served[:4]) == {"sweepA:read", "sweepA:cancel", "sweepB:read", "sweepB:cancel"}
    assert served[4:] == ["cancel", "place0", "place1", "place2"]
    assert trio.current_time() == WEIGHT_FREE_AT


async def test_shutdown_read_that_fits_is_not_queued_behind_placements(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The issue's starvation: placements wait for order tokens; the sweep's open-orders
    read needs none and must go at once, not after them."""
    limiter = lim.Limiter(SMALL)
    await limiter.acquire(1, 9)
    outcomes: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        for i in range(5):
            await start_queued(nursery, place, limiter, f"place{i}", Wanted(), outcomes)
        with lim.priority(lim.Priority.SHUTDOWN):
            await limiter.acquire(6)
        assert trio.current_time() == 0.0 and outcomes == []
        # the context is restored on exit: an ordinary read queues behind the placements
        read_done: list[float] = []

        async def read() -> None:
            await limiter.acquire(6)
            read_done.append(trio.current_time())

        await start_queued(nursery, read)
        assert read_done == []
    assert read_done == [ORDERS_FREE_AT]


# --------------------------------------------------------------------------- pauses


def limiter_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == lim.__name__]


async def test_each_pause_is_logged_once_with_cause_and_duration(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    alerts: list[str] = []
    limiter = lim.Limiter(SMALL, on_alert=alerts.append)
    limiter.pause(12.0, reason="POST /api/v3/order: HTTP 429 code -1003: too many requests")
    limiter.pause(12.0, reason="the same answer, reported again by the caller")
    (rate,) = limiter_records(caplog)
    assert rate.levelno == logging.WARNING
    assert "429" in rate.getMessage() and "12.0s" in rate.getMessage()
    assert "too many requests" in rate.getMessage()
    assert alerts == []  # a 429 is not an alert
    await trio.sleep(20)  # that pause is over: a new 429 is a new pause
    limiter.pause(3.0, reason="HTTP 429 again")
    assert len(limiter_records(caplog)) == 2
    limiter.pause(120.0, banned=True, reason="GET /api/v3/account: HTTP 418: IP banned")
    limiter.pause(120.0, banned=True, reason="the same ban, reported again")
    records = limiter_records(caplog)
    assert len(records) == 3
    ban = records[-1]
    assert ban.levelno == logging.ERROR
    assert "418" in ban.getMessage() and "120s" in ban.getMessage()
    assert "IP banned" in ban.getMessage()
    assert alerts == [ban.getMessage()]
    assert (limiter.pauses, limiter.bans) == (3, 1)
    assert limiter.stats()["bans"] == 1 and limiter.stats()["pauses"] == 3


async def test_ban_without_an_alert_hook_is_still_an_error(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = lim.Limiter(SMALL)
    limiter.pause(60.0, banned=True, reason="HTTP 418")
    assert [r.levelno for r in limiter_records(caplog)] == [logging.ERROR]
    assert limiter.bans == 1


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_hammer_with_withdrawals_and_priorities_keeps_every_window(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """Random placements (some withdrawn while queued, by recheck or silently), cancels and
    shutdown reads: every window holds, and only granted requests were ever counted."""
    limiter = lim.Limiter(SMALL)
    grants: list[Grant] = []
    withdrawn: list[int] = []
    rng = random.Random(seed)

    async def worker(r: random.Random, nursery: trio.Nursery) -> None:
        for _ in range(20):
            kind = r.choice(["place", "place", "place", "cancel", "shutdown"])
            if kind == "place":
                wanted = Wanted()
                if r.random() < 0.5:  # its cancel is requested a moment later
                    nursery.start_soon(
                        _withdraw_later, limiter, wanted, r.random() * 5, r.random() < 0.5
                    )
                try:
                    await limiter.acquire(1, 1, still_wanted=wanted)
                except lim.Withdrawn:
                    withdrawn.append(1)
                    continue
                assert wanted(), "granted after it was withdrawn"
                grants.append((trio.current_time(), 1, 1))
            elif kind == "cancel":
                await limiter.acquire(1, cancel=True)
                grants.append((trio.current_time(), 1, 0))
            else:
                with lim.priority(lim.Priority.SHUTDOWN):
                    await limiter.acquire(6)
                grants.append((trio.current_time(), 6, 0))
            if r.random() < 0.3:
                await trio.sleep(r.random() * 2)

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(worker, random.Random(rng.randrange(1 << 30)), nursery)
    assert_any_window(grants, limiter.limits)
    assert limiter.sent_weight == sum(g[1] for g in grants)
    assert limiter.sent_orders == sum(g[2] for g in grants)
    assert limiter.withdrawn == len(withdrawn) > 0
    assert limiter.waits > 0 and limiter.queued == 0


async def _withdraw_later(limiter: lim.Limiter, wanted: Wanted, delay: float, tell: bool) -> None:
    await trio.sleep(delay)
    wanted.wanted = False
    if tell:
        limiter.recheck(wanted)
