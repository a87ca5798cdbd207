"""The order path's vocabulary: its limits, errors, the venue's answers and the actions the
machines ask for (see :mod:`mm_trio.core.orders`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import msgspec

from mm_trio.domain.model import (
    ZERO,
    OpenOrder,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
)

PLACE_SENDS = 3
"""Sends of one placement whose outcome stays unknown before it is given up on."""
CANCEL_SENDS = 5
"""Sends of one cancel before the symbol is resynced instead."""
CANCEL_BACKOFF_BASE = 0.1
"""Seconds before a cancel is sent again: ``base * 2**sends``, at most :data:`MAX_BACKOFF`."""
MAX_BACKOFF = 2.0
RESOLVE_MISSES = 2
""""Does not exist" answers that confirm an order is absent."""
RESOLVE_FIRST_DELAY = 0.05
"""Seconds between the first queries of a resolution (doubling up to :data:`MAX_BACKOFF`)."""
PRESUMED_GONE_MEMORY = 10_000
"""How many orders ended without the venue's confirmation are watched for a late landing."""


class OrderPathError(RuntimeError):
    """Our own bug: a machine was fed an answer its state cannot take (fatal for the
    symbol, like h11's ``LocalProtocolError``)."""


class ImpossibleAnswer(RuntimeError):
    """The venue answered a request in a way no venue may (e.g. "unknown order" to a
    placement): like h11's ``RemoteProtocolError``."""


# --------------------------------------------------------------------------- answers


class Ok(msgspec.Struct, frozen=True, tag="ok"):
    """The request succeeded: the venue's view of the order (ack, cancel, query result)."""

    order: OpenOrder


class Refused(msgspec.Struct, frozen=True, tag="refused"):
    """The venue refused (``kind``: filter, balance, duplicate, post_only, max_orders ...)."""

    kind: str
    message: str


class NotFound(msgspec.Struct, frozen=True, tag="not_found"):
    """ "Unknown order": the venue has no such (open) order."""


class Unknown(msgspec.Struct, frozen=True, tag="unknown"):
    """Timeout or 5xx: the request may or may not have been applied."""

    message: str


class Paused(msgspec.Struct, frozen=True, tag="paused"):
    """429/418: the venue wants a pause (its adapter has already paused the limiter)."""

    message: str


class Withdrawn(msgspec.Struct, frozen=True, tag="withdrawn"):
    """The placement was not sent: its cancel was requested while it waited."""


class Waited(msgspec.Struct, frozen=True, tag="waited"):
    """A :class:`Wait` is over."""


class PlaceSettled(msgspec.Struct, frozen=True, tag="settled"):
    """The order's own placement (see :class:`AwaitPlace`) knows its outcome; ``exists``:
    the venue may hold the order."""

    exists: bool


Answer = Ok | Refused | NotFound | Unknown | Paused | Withdrawn | Waited | PlaceSettled


# --------------------------------------------------------------------------- actions


class SendPlace(msgspec.Struct, frozen=True):
    request: OrderRequest


class SendCancel(msgspec.Struct, frozen=True):
    symbol: str
    client_id: str


class Query(msgspec.Struct, frozen=True):
    symbol: str
    client_id: str


class Wait(msgspec.Struct, frozen=True):
    seconds: float


class AwaitPlace(msgspec.Struct, frozen=True):
    """Wait until the order's own placement settles; ``recheck``: let a placement still
    queued for the limiter be withdrawn at once (its cancel was requested)."""

    client_id: str
    recheck: bool = False


class Feed(msgspec.Struct, frozen=True):
    """An outcome the shell learnt (a refusal, a withdrawal): give it to the strategy."""

    update: OrderUpdate


class PresumeGone(msgspec.Struct, frozen=True):
    """End an order the venue never confirmed (give the strategy ``update``) and watch it:
    should it turn up live after all (a request that landed late), it is cancelled."""

    update: OrderUpdate


class Adopt(msgspec.Struct, frozen=True):
    """Apply the venue's view of the order (fetching its fills first if we missed some:
    see :func:`missed_fills`)."""

    order: OpenOrder


class Note(msgspec.Struct, frozen=True):
    level: int
    message: str


class Resync(msgspec.Struct, frozen=True):
    """Reconcile every live order of the symbol with the venue."""


class CountWithdrawn(msgspec.Struct, frozen=True):
    pass


class Done(msgspec.Struct, frozen=True):
    """The request's outcome is known; ``exists``: the venue may hold the order."""

    exists: bool = True


class Resolved(msgspec.Struct, frozen=True):
    """A resolution's end: the venue's order, or ``None`` if it confirmed twice it has none."""

    order: OpenOrder | None


Request = SendPlace | SendCancel | Query | Wait | AwaitPlace
Effect = Feed | PresumeGone | Adopt | Note | Resync | CountWithdrawn
Action = Request | Effect | Done | Resolved


class OrderFacts(Protocol):
    """What the order path reads of the symbol's state (pure reads, no I/O)."""

    def acknowledged(self, client_id: str) -> bool:
        """The venue's stream already reported the order (it exists, whatever queries say)."""
        ...

    def live(self, client_id: str) -> tuple[Side, Decimal, Decimal, Decimal] | None:
        """``(side, price, qty, filled)`` of a live order of ours, else ``None``."""
        ...

    def placing(self, client_id: str) -> bool:
        """A placement of this order is still on its way."""
        ...


def shell_outcome(
    symbol: str,
    client_id: str,
    side: Side,
    price: Decimal,
    qty: Decimal,
    status: OrderStatus,
    reason: str,
    cum: Decimal = ZERO,
) -> OrderUpdate:
    """A report made by the shell, not the venue, carrying a venue outcome for our order."""
    return OrderUpdate(
        symbol=symbol,
        client_id=client_id,
        side=side,
        price=price,
        qty=qty,
        status=status,
        cum_qty=cum,
        reason=reason,
    )


def request_outcome(r: OrderRequest, status: OrderStatus, reason: str) -> OrderUpdate:
    """The shell's verdict on a place request (refused, withdrawn, given up on)."""
    return shell_outcome(r.symbol, r.client_id, r.side, r.price, r.qty, status, reason)


def from_open_order(order: OpenOrder) -> OrderUpdate:
    """The venue's view of an order (an ack, a query answer) as a report."""
    return OrderUpdate(
        symbol=order.symbol,
        client_id=order.client_id,
        side=order.side,
        price=order.price,
        qty=order.qty,
        status=order.status,
        cum_qty=order.cum_qty,
        order_id=order.order_id,
        ts=order.ts,
    )


def missed_fills(found: OpenOrder, filled: Decimal | None) -> bool:
    """The venue's order has filled more than we know (``filled``; ``None``: not live for
    us): its fills must be fetched before it is adopted."""
    return found.cum_qty > (filled if filled is not None else ZERO)


def backoff(sends: int) -> float:
    return min(MAX_BACKOFF, CANCEL_BACKOFF_BASE * 2**sends)


def bad_answer(machine: object, state: str, answer: Answer) -> OrderPathError:
    return OrderPathError(
        f"{type(machine).__name__} in state {state!r} cannot take {type(answer).__name__}"
    )
