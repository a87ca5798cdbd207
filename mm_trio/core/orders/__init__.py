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

from mm_trio.core.orders.cancellation import Cancellation
from mm_trio.core.orders.messages import (
    CANCEL_BACKOFF_BASE,
    CANCEL_SENDS,
    MAX_BACKOFF,
    PLACE_SENDS,
    PRESUMED_GONE_MEMORY,
    RESOLVE_FIRST_DELAY,
    RESOLVE_MISSES,
    Action,
    Adopt,
    Answer,
    AwaitPlace,
    CountWithdrawn,
    Done,
    Effect,
    Feed,
    ImpossibleAnswer,
    Note,
    NotFound,
    Ok,
    OrderFacts,
    OrderPathError,
    Paused,
    PlaceSettled,
    PresumeGone,
    Query,
    Refused,
    Request,
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
    request_outcome,
    shell_outcome,
)
from mm_trio.core.orders.placement import Placement
from mm_trio.core.orders.resolution import Resolution
from mm_trio.core.orders.watch import PresumedGone, resync_outcome

__all__ = [
    "Action",
    "Adopt",
    "Answer",
    "AwaitPlace",
    "CANCEL_BACKOFF_BASE",
    "CANCEL_SENDS",
    "Cancellation",
    "CountWithdrawn",
    "Done",
    "Effect",
    "Feed",
    "ImpossibleAnswer",
    "MAX_BACKOFF",
    "NotFound",
    "Note",
    "Ok",
    "OrderFacts",
    "OrderPathError",
    "PLACE_SENDS",
    "PRESUMED_GONE_MEMORY",
    "Paused",
    "PlaceSettled",
    "Placement",
    "PresumeGone",
    "PresumedGone",
    "Query",
    "RESOLVE_FIRST_DELAY",
    "RESOLVE_MISSES",
    "Refused",
    "Request",
    "Resolution",
    "Resolved",
    "Resync",
    "SendCancel",
    "SendPlace",
    "Unknown",
    "Wait",
    "Waited",
    "Withdrawn",
    "from_open_order",
    "missed_fills",
    "request_outcome",
    "resync_outcome",
    "shell_outcome",
]
