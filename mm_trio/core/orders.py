"""The order path of one symbol (SPEC §3), as pure state machines: placing, cancelling,
resolving an unknown outcome, adopting, and watching orders presumed gone.

Theory of operation
-------------------
The trio shell (:mod:`mm_trio.engine.manager`) talks to the venue; these machines decide what
to say next. A machine starts with :meth:`start` and is then fed each venue answer, as data
(:data:`Answer`), through :meth:`on`. Both return a list of :data:`Action`: *effects* the shell
performs at once and in order (:class:`Feed` a report to the strategy, :class:`Adopt` the
venue's view of an order, :class:`PresumeGone`, :class:`Note` a log line, :class:`Resync`,
:class:`CountWithdrawn`), then exactly one of

* a *request* (:class:`SendPlace`, :class:`SendCancel`, :class:`Query`, :class:`Wait`,
  :class:`AwaitPlace`) whose answer the shell feeds back with :meth:`on`, or
* an *end* (:class:`Done` for placements and cancels, :class:`Resolved` for a resolution).

Nothing here does I/O, reads a clock or awaits: the same answers always give the same
actions, so every (state, answer) pair is tested synchronously, table-driven. What a machine
needs to know of the strategy (is the order acknowledged, live, still being placed) it asks
an :class:`OrderFacts` -- plain reads of pure state. An answer a machine cannot take in its
state is a bug of the shell (:class:`OrderPathError`); an answer no venue may give to that
request (:class:`ImpossibleAnswer`) is the venue's.

The rules (the limits are the named constants below):

* **Unknown outcome** (timeout, 5xx) of a place: the order is queried by client id until the
  venue confirms it exists or twice that it does not (:class:`Resolution`); only then is the
  same id sent again, at most :data:`PLACE_SENDS` sends in all, after which it is given up on
  and watched (:class:`PresumedGone`). An answer that is some other order under our id
  (:func:`~mm_trio.domain.model.order_mismatch`) counts as "does not exist".
* **Duplicate** refusal: an earlier send landed after all; learn its state by query.
* **Withdrawn** (its cancel was requested while it waited for the limiter): never sent.
* **Rate limited**: the same request again (the adapter that saw the answer pauses the
  limiter: it is the one owner of pauses).
* **Cancel**: waits for its own in-flight placement first (a cancel sent before it would only
  earn "unknown order"); "unknown order" is queried (it may have filled); a timeout backs off
  and tries again, at most :data:`CANCEL_SENDS` sends, then the whole symbol is resynced.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from decimal import Decimal
from typing import Protocol

import msgspec

from mm_trio.domain.intents import CancelOrder
from mm_trio.domain.model import (
    TERMINAL_STATUSES,
    ZERO,
    OpenOrder,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    order_mismatch,
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
    """"Unknown order": the venue has no such (open) order."""


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


def shell_outcome(symbol: str, client_id: str, side: Side, price: Decimal, qty: Decimal,
                  status: OrderStatus, reason: str, cum: Decimal = ZERO) -> OrderUpdate:
    """A report made by the shell, not the venue, carrying a venue outcome for our order."""
    return OrderUpdate(symbol=symbol, client_id=client_id, side=side, price=price, qty=qty,
                       status=status, cum_qty=cum, reason=reason)


def request_outcome(r: OrderRequest, status: OrderStatus, reason: str) -> OrderUpdate:
    """The shell's verdict on a place request (refused, withdrawn, given up on)."""
    return shell_outcome(r.symbol, r.client_id, r.side, r.price, r.qty, status, reason)


def from_open_order(order: OpenOrder) -> OrderUpdate:
    """The venue's view of an order (an ack, a query answer) as a report."""
    return OrderUpdate(symbol=order.symbol, client_id=order.client_id, side=order.side,
                       price=order.price, qty=order.qty, status=order.status,
                       cum_qty=order.cum_qty, order_id=order.order_id, ts=order.ts)


def missed_fills(found: OpenOrder, filled: Decimal | None) -> bool:
    """The venue's order has filled more than we know (``filled``; ``None``: not live for
    us): its fills must be fetched before it is adopted."""
    return found.cum_qty > (filled if filled is not None else ZERO)


def _backoff(sends: int) -> float:
    return min(MAX_BACKOFF, CANCEL_BACKOFF_BASE * 2**sends)


def _bad(machine: object, state: str, answer: Answer) -> OrderPathError:
    return OrderPathError(f"{type(machine).__name__} in state {state!r} cannot take "
                          f"{type(answer).__name__}")


# --------------------------------------------------------------------------- resolution


class Resolution:
    """Query an order by client id until the venue confirms the order we sent (``side``,
    ``price``, ``qty``, not updated before ``not_before_ns``) exists, or
    :data:`RESOLVE_MISSES` times that it does not. Ends with :class:`Resolved`."""

    def __init__(self, symbol: str, client_id: str, side: Side, price: Decimal, qty: Decimal,
                 not_before_ns: int) -> None:
        self.symbol = symbol
        self.client_id = client_id
        self._expect = (side, price, qty)
        self._not_before = not_before_ns
        self.misses = 0
        self._delay = RESOLVE_FIRST_DELAY
        self._state = "query"

    def start(self) -> list[Action]:
        return [Query(self.symbol, self.client_id)]

    def _miss(self, actions: list[Action]) -> list[Action]:
        self.misses += 1
        if self.misses >= RESOLVE_MISSES:
            self._state = "done"
            actions.append(Resolved(None))
            return actions
        return self._later(actions)

    def _later(self, actions: list[Action]) -> list[Action]:
        actions.append(Wait(self._delay))
        self._delay = min(self._delay * 2, MAX_BACKOFF)
        self._state = "wait"
        return actions

    def on(self, answer: Answer) -> list[Action]:
        state = self._state
        if state == "wait":
            if type(answer) is not Waited:
                raise _bad(self, state, answer)
            self._state = "query"
            return [Query(self.symbol, self.client_id)]
        if state != "query":
            raise _bad(self, state, answer)
        if type(answer) is Ok:
            side, price, qty = self._expect
            found = answer.order
            mismatch = order_mismatch(found, side=side, price=price, qty=qty,
                                      not_before_ns=self._not_before)
            if mismatch is None:
                self._state = "done"
                return [Resolved(found)]
            return self._miss([Note(logging.ERROR, (
                f"the venue's order {self.client_id} (id {found.order_id}) is not the one we "
                f"sent ({mismatch}); not adopting it"))])
        if type(answer) is NotFound:
            return self._miss([])
        if type(answer) is Unknown or type(answer) is Paused:
            return self._later([])
        if type(answer) is Refused:
            raise ImpossibleAnswer(f"query of {self.client_id} refused: {answer.message}")
        raise _bad(self, state, answer)


def _expected(facts: OrderFacts, client_id: str) -> tuple[Side, Decimal, Decimal] | None:
    live = facts.live(client_id)
    return None if live is None else live[:3]


# --------------------------------------------------------------------------- placing


class Placement:
    """One place request until its outcome is known (see the module docstring).

    Ends with ``Done(exists)``: ``exists`` is False when the venue never created the order
    (refused, withdrawn before any send, given up on), so a cancel waiting for it need not
    be sent.
    """

    def __init__(self, request: OrderRequest, facts: OrderFacts, *, lossless: bool,
                 not_before_ns: int) -> None:
        self.request = request
        self._facts = facts
        self._lossless = lossless
        self._not_before = not_before_ns
        self.sends = 0
        self._was_unknown = False  # an earlier send timed out: it may still land late
        self._duplicate = ""  # the refusal, while a duplicate is being resolved
        self._resolution: Resolution | None = None
        self._state = "send"

    def _send(self) -> list[Action]:
        self.sends += 1
        self._state = "send"
        return [SendPlace(self.request)]

    def start(self) -> list[Action]:
        return self._send()

    def _resolve(self, what: str, message: str) -> list[Action]:
        r = self.request
        self._resolution = Resolution(r.symbol, r.client_id, r.side, r.price, r.qty,
                                      self._not_before)
        self._state = "resolve"
        return [Note(logging.WARNING, f"place {r.client_id} {what} ({message}); querying"),
                *self._resolution.start()]

    def on(self, answer: Answer) -> list[Action]:
        if self._state == "send":
            return self._on_send(answer)
        if self._state == "resolve":
            assert self._resolution is not None
            actions = self._resolution.on(answer)
            end = actions[-1]
            if type(end) is Resolved:
                return actions[:-1] + self._on_resolved(end.order)
            return actions
        raise _bad(self, self._state, answer)

    def _on_send(self, answer: Answer) -> list[Action]:
        r = self.request
        kind = type(answer)
        if kind is Ok:
            self._state = "done"
            # the stream reports it too; the answer itself keeps the grid moving while a
            # user stream is down (applying both is harmless: reports are idempotent)
            return ([] if self._lossless else [Adopt(answer.order)]) + [Done(True)]
        if kind is Paused:
            return self._send()  # the same client id: a retry is not a new order
        if kind is Withdrawn:
            self._state = "done"
            ended = request_outcome(r, "CANCELED", "withdrawn before it was sent")
            # after a timeout the first send may still land: watch it, let a cancel go
            end = PresumeGone(ended) if self._was_unknown else Feed(ended)
            return [CountWithdrawn(), end, Done(self._was_unknown)]
        if kind is Refused:
            if answer.kind == "duplicate":
                # the venue already holds this id: an earlier send of ours landed after all
                self._duplicate = f"{answer.kind}: {answer.message}"
                return self._resolve("refused as a duplicate", answer.message)
            self._state = "done"
            return [Feed(request_outcome(r, "REJECTED", f"{answer.kind}: {answer.message}")),
                    Done(False)]
        if kind is Unknown:
            self._was_unknown = True
            return self._resolve("outcome unknown", answer.message)
        if kind is NotFound:
            raise ImpossibleAnswer(f"placement {r.client_id} answered 'unknown order'")
        raise _bad(self, "send", answer)

    def _on_resolved(self, found: OpenOrder | None) -> list[Action]:
        r = self.request
        if found is not None:
            self._state = "done"
            return [Adopt(found), Done(True)]
        if self._facts.acknowledged(r.client_id):
            self._state = "done"
            return [Done(True)]  # the stream reported it meanwhile: it exists
        if self._duplicate:
            # unknown to a query, yet a duplicate: end it, watch it, let a cancel still go
            self._state = "done"
            return [PresumeGone(request_outcome(r, "REJECTED", self._duplicate)), Done(True)]
        if self.sends >= PLACE_SENDS:
            self._state = "done"
            return [PresumeGone(request_outcome(r, "REJECTED", "outcome_unknown: gave up")),
                    Done(False)]
        return self._send()  # confirmed absent twice: safe to send again under the same id


# --------------------------------------------------------------------------- cancelling


class Cancellation:
    """One cancel until its outcome is known (see the module docstring). Ends with
    ``Done()``; a cancel that could not be confirmed asks for a :class:`Resync` first."""

    def __init__(self, intent: CancelOrder, facts: OrderFacts, *, lossless: bool,
                 not_before_ns: int) -> None:
        self.symbol = intent.symbol
        self.client_id = intent.client_id
        self._facts = facts
        self._lossless = lossless
        self._not_before = not_before_ns
        self.sends = 0
        self._resolution: Resolution | None = None
        self._after = ""  # what the resolution answers: "unknown_order" or "rejected"
        self._state = "start"

    def start(self) -> list[Action]:
        if self._facts.placing(self.client_id):
            # its place request is still on its way (cancels go first in the limiter);
            # one still queued for the limiter is withdrawn at once
            self._state = "await_place"
            return [AwaitPlace(self.client_id, recheck=True)]
        return self._send()

    def _send(self) -> list[Action]:
        self.sends += 1
        self._state = "send"
        return [SendCancel(self.symbol, self.client_id)]

    def _done(self, *effects: Action) -> list[Action]:
        self._state = "done"
        return [*effects, Done()]

    def _later(self) -> list[Action]:
        self._state = "backoff"
        return [Wait(_backoff(self.sends))]

    def on(self, answer: Answer) -> list[Action]:
        state = self._state
        if state == "await_place":
            if type(answer) is not PlaceSettled:
                raise _bad(self, state, answer)
            # refused or withdrawn: the venue never had it, nothing to cancel
            return self._send() if answer.exists else self._done()
        if state == "backoff":
            if type(answer) is not Waited:
                raise _bad(self, state, answer)
            return self._send()
        if state == "send":
            return self._on_send(answer)
        if state == "resolve":
            assert self._resolution is not None
            actions = self._resolution.on(answer)
            end = actions[-1]
            if type(end) is Resolved:
                return actions[:-1] + self._on_resolved(end.order)
            return actions
        raise _bad(self, state, answer)

    def _resolve(self, after: str, effects: list[Action]) -> list[Action]:
        expect = _expected(self._facts, self.client_id)
        self._after = after
        if expect is None:  # ended meanwhile: nothing left to learn about it
            return effects + self._on_resolved(None)
        side, price, qty = expect
        self._resolution = Resolution(self.symbol, self.client_id, side, price, qty,
                                      self._not_before)
        self._state = "resolve"
        return effects + self._resolution.start()

    def _on_send(self, answer: Answer) -> list[Action]:
        kind = type(answer)
        if kind is Ok:
            return self._done(*([] if self._lossless else [Adopt(answer.order)]))
        if kind is Paused:
            return self._send()
        if kind is NotFound:
            if self._facts.placing(self.client_id):
                # the cancel overtook its own place request: wait for that, then retry
                self._state = "await_place"
                return [AwaitPlace(self.client_id)]
            return self._resolve("unknown_order", [])  # it may have filled: ask
        if kind is Unknown:
            if self.sends >= CANCEL_SENDS:
                return self._done(Resync())
            return self._later()
        if kind is Refused:
            # not "unknown order" (e.g. a clock-skew refusal): learn the order's state and
            # try again, so it never lingers half-cancelled
            note = Note(logging.WARNING, f"cancel {self.client_id} rejected: {answer.message}")
            return self._resolve("rejected", [note])
        raise _bad(self, "send", answer)

    def _on_resolved(self, found: OpenOrder | None) -> list[Action]:
        if self._after == "unknown_order":
            if found is None:
                live = self._facts.live(self.client_id)
                if live is None:
                    return self._done()
                side, price, qty, filled = live
                return self._done(PresumeGone(shell_outcome(
                    self.symbol, self.client_id, side, price, qty, "CANCELED",
                    "unknown to venue", cum=filled)))
            if found.status in TERMINAL_STATUSES or self.sends >= CANCEL_SENDS:
                return self._done(Adopt(found))
            return [Adopt(found), *self._send()]
        effects: list[Action] = []
        if found is not None:
            effects.append(Adopt(found))
            if found.status in TERMINAL_STATUSES:
                return self._done(*effects)
        if self.sends >= CANCEL_SENDS:
            return self._done(*effects, Resync())
        return [*effects, *self._later()]


# --------------------------------------------------------------------------- resync


def resync_outcome(symbol: str, client_id: str, live: tuple[Side, Decimal, Decimal, Decimal],
                   found: OpenOrder | None) -> Action:
    """What a resync does with one live order once resolved: adopt what the venue says, or
    end it as unknown to the venue (and watch it)."""
    if found is not None:
        return Adopt(found)
    side, price, qty, filled = live
    return PresumeGone(shell_outcome(symbol, client_id, side, price, qty, "CANCELED",
                                     "resync: unknown to venue", cum=filled))


# --------------------------------------------------------------------------- watching


class _Watch:
    __slots__ = ("ended", "cancelling")

    def __init__(self, ended: OrderUpdate) -> None:
        self.ended = ended  # the outcome we gave the strategy in the venue's place
        self.cancelling = False  # a cancel for it is on its way


class PresumedGone:
    """Orders ended without the venue's confirmation (queried absent, given up on, withdrawn
    after a timeout), watched until the venue's own final report: one that shows up live
    (a request that landed late) is cancelled on sight; a failed cancel is tried again on
    its next live report. The most recent :data:`PRESUMED_GONE_MEMORY` are kept."""

    def __init__(self, memory: int = PRESUMED_GONE_MEMORY) -> None:
        self._memory = memory
        self._watched: OrderedDict[str, _Watch] = OrderedDict()

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._watched

    def __len__(self) -> int:
        return len(self._watched)

    def add(self, ended: OrderUpdate) -> None:
        self._watched[ended.client_id] = _Watch(ended)
        while len(self._watched) > self._memory:
            self._watched.popitem(last=False)

    def on_report(self, report: OrderUpdate) -> bool:
        """A report reached the strategy; ``True``: the order is live after all and must
        be cancelled now (the caller calls :meth:`cancel_ended` when that cancel ends)."""
        watch = self._watched.get(report.client_id)
        if watch is None or report is watch.ended:
            return False  # not watched, or our own presumption reaching the strategy
        if report.status in TERMINAL_STATUSES:
            del self._watched[report.client_id]
            return False
        if watch.cancelling:
            return False
        watch.cancelling = True
        return True

    def cancel_ended(self, client_id: str) -> None:
        watch = self._watched.get(client_id)
        if watch is not None:
            watch.cancelling = False
