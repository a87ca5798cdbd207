"""The one trio-native ``Exchange`` interface every venue implements, and its error kinds.

Venue errors are classified (SPEC §12) so callers never parse messages:
``FilterRejected``, ``InsufficientBalance``, ``DuplicateOrder``, ``WouldTake`` (post-only
would cross), ``UnknownOrder``, ``RateLimited``; ``OutcomeUnknown`` means the request may or
may not have reached the venue (timeout, 5xx) and must be resolved by querying;
``PlaceWithdrawn`` means a placement was never sent because its owner withdrew it while it
waited for the rate limiter.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence

import trio

from mm_trio.domain.model import Balance, Event, OpenOrder, OrderRequest, OrderUpdate, SymbolSpec


class ExchangeError(Exception):
    """Base of every classified venue error. ``kind`` is a short stable name."""

    kind = "unknown"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OrderRejected(ExchangeError):
    """The venue refused the order; nothing was created."""

    kind = "rejected"


class FilterRejected(OrderRejected):
    kind = "filter"


class InsufficientBalance(OrderRejected):
    kind = "balance"


class DuplicateOrder(OrderRejected):
    kind = "duplicate"


class WouldTake(OrderRejected):
    """A post-only order would have crossed the book."""

    kind = "post_only"


class TooManyOrders(OrderRejected):
    kind = "max_orders"


class UnknownOrder(ExchangeError):
    """Cancel/query of an order the venue does not know (it may have filled)."""

    kind = "unknown_order"


class RateLimited(ExchangeError):
    """429/418: the venue wants us to stop until ``retry_after`` seconds have passed."""

    kind = "rate_limit"

    def __init__(
        self, message: str, *, retry_after: float, banned: bool = False, code: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.banned = banned


class OutcomeUnknown(ExchangeError):
    """Timeout or 5xx: the request may or may not have been applied."""

    kind = "outcome_unknown"


class UnknownSymbol(ExchangeError):
    kind = "unknown_symbol"


class PlaceWithdrawn(ExchangeError):
    """The placement was not sent: ``still_wanted`` said no (its cancel was requested while it
    waited for the rate limiter). Its outcome is known: no order exists."""

    kind = "withdrawn"


StillWanted = Callable[[], bool]
"""Asked right before a placement goes out; ``False`` withdraws it (see ``Exchange.place``)."""


def check_wanted(request: OrderRequest, still_wanted: StillWanted | None) -> None:
    """Raise :class:`PlaceWithdrawn` if the caller no longer wants ``request`` sent."""
    if still_wanted is not None and not still_wanted():
        raise PlaceWithdrawn(f"{request.client_id}: withdrawn before it was sent")


def withdrawn_while_queued(request: OrderRequest) -> PlaceWithdrawn:
    """The error for a placement withdrawn while it waited in the rate limiter's queue."""
    return PlaceWithdrawn(f"{request.client_id}: withdrawn while it waited for the rate limiter")


class Exchange(abc.ABC):
    """A venue connection shared by every symbol.

    Use as ``async with exchange.connect():`` — or call :meth:`run` inside a nursery via
    ``await nursery.start(exchange.run)``, which keeps the connection (and any feed tasks)
    alive until cancelled. ``events`` is one receive channel carrying decoded events for every
    subscribed symbol plus our order and balance updates.
    """

    name: str = "exchange"
    # True when every order outcome reaches the event stream (the simulated venue): the
    # answers of place/cancel then add nothing and are not applied a second time
    lossless_reports: bool = False
    # how long after we sent it a request of ours may still be executed by the venue (ns):
    # a restart waits this long past the last journalled order before it concludes that an
    # order the venue does not know never reached it (in-process venues: nothing in flight)
    request_lifetime_ns: int = 0

    @abc.abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, call ``task_status.started()``, then keep the connection until cancelled."""

    def now_ns(self) -> int:
        """The venue's clock, in ns since the Unix epoch (the wall clock unless a venue keeps
        its own): it stamps the first generation of each symbol's client ids."""
        return time.time_ns()

    def attach(self, sink: Callable[[Event], None]) -> bool:
        """Deliver every event by calling ``sink`` (it never blocks) instead of through
        :attr:`events`; ``False`` if this venue cannot (its events come from I/O tasks that
        must never run the consumer's code: use the channel)."""
        return False

    @property
    @abc.abstractmethod
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """The single event stream (all symbols, market data and our orders)."""

    @abc.abstractmethod
    async def load_specs(self) -> dict[str, SymbolSpec]:
        """Specs of every symbol the venue lists, keyed by unified symbol."""

    @abc.abstractmethod
    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Start market data for ``symbols`` (idempotent)."""

    @abc.abstractmethod
    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        """Stop market data for ``symbols`` (idempotent)."""

    @abc.abstractmethod
    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        """Place a limit order; returns the venue's acknowledgement or raises an ExchangeError.

        ``still_wanted`` is called right before the request is sent (and before the wait);
        venues with the shared limiter pass it on, so a placement waiting there leaves the
        queue without spending anything once it says no (its owner then calls
        ``Limiter.recheck(still_wanted)`` for it to happen at once). If it returns ``False``
        nothing is sent and :class:`PlaceWithdrawn` is raised.
        """

    @abc.abstractmethod
    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        """Cancel by client id; raises :class:`UnknownOrder` if the venue has no such open order."""

    @abc.abstractmethod
    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        """Current state of an order by client id; raises :class:`UnknownOrder` if none."""

    @abc.abstractmethod
    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Open orders, for one symbol or all."""

    @abc.abstractmethod
    async def balances(self) -> dict[str, Balance]:
        """Balances keyed by asset."""

    async def order_fills(self, order: OpenOrder) -> list[OrderUpdate]:
        """The fills of ``order`` as fill reports with trade ids, for recovering fills whose
        reports were missed (e.g. while a stream was down). Venues that never drop reports
        (the simulated one) return ``[]``."""
        return []

    async def cancel_all(self, symbol: str, prefix: str) -> list[OpenOrder]:
        """Cancel every open order of ``symbol`` whose client id starts with ``prefix + '_'``.

        Orders without our prefix are never touched. Returns the cancelled orders.
        """
        cancelled: list[OpenOrder] = []
        for order in await self.open_orders(symbol):
            if order.client_id.startswith(prefix + "_"):
                try:
                    cancelled.append(await self.cancel(symbol, order.client_id))
                except UnknownOrder:
                    pass  # filled or cancelled meanwhile: its report arrives on the stream
        return cancelled
