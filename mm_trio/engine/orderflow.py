"""The trio shell of one symbol's order path: it performs what the pure machines of
:mod:`mm_trio.core.orders` decide, and feeds the venue's answers back to them.

One short task per request (a place or a cancel), started in the symbol's nursery. The shell
turns each venue call's result or exception into an :data:`~mm_trio.core.orders.Answer`,
performs effects (reports go into the symbol's event channel, so the strategy learns every
outcome the same way it learns the venue's reports) and never decides anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import trio

from mm_trio.core.grid.slots import LiveOrder
from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.core.orders import (
    Action,
    Adopt,
    Answer,
    AwaitPlace,
    Cancellation,
    CountWithdrawn,
    Done,
    Feed,
    Note,
    NotFound,
    Ok,
    Paused,
    Placement,
    PlaceSettled,
    PresumedGone,
    PresumeGone,
    Query,
    Refused,
    Resolution,
    Resolved,
    Resync,
    SendCancel,
    SendPlace,
    Unknown,
    Wait,
    Waited,
    Withdrawn,
    from_open_order,
    missed_fills,
    resync_outcome,
)
from mm_trio.domain.intents import CancelOrder, PlaceOrder
from mm_trio.domain.model import OpenOrder, OrderUpdate, Side
from mm_trio.exchange.base import (
    Exchange,
    ExchangeError,
    OrderRejected,
    OutcomeUnknown,
    PlaceWithdrawn,
    RateLimited,
    UnknownOrder,
)

# the order path's log lines are the symbol's: one logger for the manager and its shell
log = logging.getLogger("mm_trio.engine.manager")


def _facts(order: LiveOrder) -> tuple[Side, Decimal, Decimal, Decimal]:
    """``(side, price, qty, filled)``: what the order path knows of a live order."""
    return order.side, order.price, order.qty, order.filled


class Recheck(Protocol):
    """The part of the limiter the order path uses: withdraw a queued placement at once."""

    def recheck(self, still_wanted: Callable[[], bool]) -> int: ...


class _Placing:
    """A place request on its way: ``done`` is set once its outcome is known; ``exists``
    says whether the venue may hold the order; ``still_wanted`` is what the venue (and its
    limiter queue) asks before sending it."""

    __slots__ = ("done", "exists", "still_wanted")

    def __init__(self, still_wanted: Callable[[], bool]) -> None:
        self.done = trio.Event()
        self.exists = True
        self.still_wanted = still_wanted


class OrderFlow:
    """Places and cancels one symbol's orders (see the module docstring).

    ``feedback`` puts a report into the symbol's event channel (journalled); ``journal``
    records a cancel this shell decides on by itself; ``start`` starts a task in the
    symbol's nursery (``False`` once it is closing); ``resync`` asks for a resync of every
    live order.
    """

    def __init__(
        self,
        symbol: str,
        exchange: Exchange,
        strategy: GridStrategy,
        limiter: Recheck,
        *,
        started_ns: int,
        feedback: Callable[[OrderUpdate], Awaitable[None]],
        journal: Callable[[str, Any], None],
        start: Callable[..., bool],
        resync: Callable[[], None],
    ) -> None:
        self.symbol = symbol
        self._exchange = exchange
        self._strategy = strategy
        self._limiter = limiter
        self._lossless = exchange.lossless_reports
        self.started_ns = started_ns  # venue time the symbol started: nothing of ours before
        # ... except the orders taken over from an earlier run: each is no older than its
        # journal entry (see :meth:`not_before`)
        self.taken_over: dict[str, int] = {}
        self._feedback = feedback
        self._journal = journal
        self._start = start
        self._resync = resync
        self.inflight: dict[str, _Placing] = {}  # place requests not yet answered
        self.presumed_gone = PresumedGone()
        self.withdrawn = 0

    # ------------------------------------------------------------------ OrderFacts
    def acknowledged(self, client_id: str) -> bool:
        order = self._strategy.live_order(client_id)
        return order is not None and order.status != "PENDING_NEW"

    def live(self, client_id: str) -> tuple[Side, Decimal, Decimal, Decimal] | None:
        order = self._strategy.live_order(client_id)
        return None if order is None else _facts(order)

    def placing(self, client_id: str) -> bool:
        return client_id in self.inflight

    def not_before(self, client_id: str) -> int:
        """The venue time before which no record of ``client_id`` can be this order's."""
        return self.taken_over.get(client_id, self.started_ns)

    def _still_wanted(self, client_id: str) -> bool:
        """A queued placement is still wanted unless its cancel was requested meanwhile."""
        order = self._strategy.live_order(client_id)
        return order is not None and not order.cancel_requested

    # ------------------------------------------------------------------ tasks
    async def place(self, intent: PlaceOrder) -> None:
        r = intent.request
        cid = r.client_id
        placing = self.inflight[cid] = _Placing(lambda: self._still_wanted(cid))
        try:
            machine = Placement(r, self, lossless=self._lossless, not_before_ns=self.started_ns)
            end = await self._drive(machine.start(), machine.on, placing.still_wanted)
            assert type(end) is Done
            placing.exists = end.exists
        finally:
            del self.inflight[cid]
            placing.done.set()

    async def cancel(self, intent: CancelOrder) -> None:
        machine = Cancellation(
            intent, self, lossless=self._lossless, not_before_ns=self.not_before(intent.client_id)
        )
        await self._drive(machine.start(), machine.on)

    async def resync(self) -> None:
        """Ask the venue about every live order and feed back what it says (reconnects)."""
        for order in self._strategy.live_orders():
            cid = order.client_id
            if cid in self.inflight:
                continue  # its place request is still in flight and resolves itself
            machine = Resolution(
                self.symbol, cid, order.side, order.price, order.qty, self.not_before(cid)
            )
            end = await self._drive(machine.start(), machine.on)
            assert type(end) is Resolved
            await self._effect(resync_outcome(self.symbol, cid, _facts(order), end.order))

    def on_report(self, report: OrderUpdate) -> None:
        """Every report of ours that reached the strategy: an order presumed gone that is
        live after all is cancelled on sight."""
        if self.presumed_gone.on_report(report):
            cid = report.client_id
            log.warning(
                "%s: order %s, presumed gone, is live on the venue after all (a late "
                "request); cancelling it",
                self.symbol,
                cid,
            )
            if not self._start(self._cancel_presumed_gone, cid):
                self.presumed_gone.cancel_ended(cid)

    async def _cancel_presumed_gone(self, client_id: str) -> None:
        intent = CancelOrder(self.symbol, client_id)
        self._journal("cancel", intent)
        try:
            await self.cancel(intent)
        finally:
            self.presumed_gone.cancel_ended(client_id)

    # ------------------------------------------------------------------ the driver
    async def _drive(
        self,
        actions: list[Action],
        on: Callable[[Answer], list[Action]],
        still_wanted: Callable[[], bool] | None = None,
    ) -> Action:
        """Perform ``actions`` (effects, then one request or an end); feed each request's
        answer back with ``on`` until the machine ends; return its end."""
        while True:
            request: Action | None = None
            for action in actions:
                kind = type(action)
                if kind is Done or kind is Resolved:
                    return action
                if kind in (SendPlace, SendCancel, Query, Wait, AwaitPlace):
                    request = action
                else:
                    await self._effect(action)
            if request is None:
                raise AssertionError(f"order path machine ended without a request: {actions}")
            actions = on(await self._perform(request, still_wanted))

    async def _perform(self, request: Action, still_wanted: Callable[[], bool] | None) -> Answer:
        if type(request) is Wait:
            await trio.sleep(request.seconds)
            return Waited()
        if type(request) is AwaitPlace:
            return await self._await_place(request)
        try:
            if type(request) is SendPlace:
                return Ok(await self._exchange.place(request.request, still_wanted=still_wanted))
            if type(request) is SendCancel:
                return Ok(await self._exchange.cancel(request.symbol, request.client_id))
            if type(request) is Query:
                return Ok(await self._exchange.query(request.symbol, request.client_id))
        except RateLimited as exc:  # the adapter has paused the limiter: it owns pauses
            return Paused(str(exc))
        except PlaceWithdrawn:
            return Withdrawn()
        except UnknownOrder:
            return NotFound()
        except OrderRejected as exc:
            return Refused(exc.kind, str(exc))
        except OutcomeUnknown as exc:
            return Unknown(str(exc))
        raise AssertionError(f"not a request: {request!r}")

    async def _await_place(self, request: AwaitPlace) -> Answer:
        placing = self.inflight.get(request.client_id)
        if placing is None:
            return PlaceSettled(True)  # settled since: the venue may hold it
        if request.recheck:
            self._limiter.recheck(placing.still_wanted)
        await placing.done.wait()
        return PlaceSettled(placing.exists)

    async def _effect(self, action: Action) -> None:
        if type(action) is Feed:
            await self._feedback(action.update)
        elif type(action) is PresumeGone:
            self.presumed_gone.add(action.update)
            await self._feedback(action.update)
        elif type(action) is Adopt:
            await self._adopt(action.order)
        elif type(action) is Note:
            log.log(action.level, "%s: %s", self.symbol, action.message)
        elif type(action) is Resync:
            self._resync()
        elif type(action) is CountWithdrawn:
            self.withdrawn += 1
        else:
            raise AssertionError(f"not an effect: {action!r}")

    async def _adopt(self, found: OpenOrder) -> None:
        """Apply what the venue says of an order; fetch its fills first if we missed some."""
        live = self._strategy.live_order(found.client_id)
        if missed_fills(found, live.filled if live is not None else None):
            try:
                for fill in await self._exchange.order_fills(found):
                    await self._feedback(fill)
            except ExchangeError as exc:  # the cum_qty below still gets the strategy right
                log.warning("%s: fills of %s unavailable: %s", self.symbol, found.client_id, exc)
        await self._feedback(from_open_order(found))
