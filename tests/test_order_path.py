"""The pure order path (mm_trio.core.orders): every answer the venue can give, in every state
of every machine, synchronously and table-driven. No trio, no venue."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from mm_trio.core.orders import (
    CANCEL_SENDS,
    MAX_BACKOFF,
    PLACE_SENDS,
    RESOLVE_FIRST_DELAY,
    Action,
    Adopt,
    Answer,
    AwaitPlace,
    Cancellation,
    CountWithdrawn,
    Done,
    Feed,
    ImpossibleAnswer,
    Note,
    NotFound,
    Ok,
    OrderPathError,
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
    missed_fills,
    resync_outcome,
)
from mm_trio.domain.intents import CancelOrder
from mm_trio.domain.model import OpenOrder, OrderRequest, OrderUpdate, Side

D = Decimal
SYM = "BTC/USDT"
CID = "mmt_BTCUSDT_B-1_5"
START_NS = 10**18
REQ = OrderRequest(symbol=SYM, client_id=CID, side="BUY", price=D("100.00"), qty=D("0.5"))


def venue_order(status: Any = "NEW", cum: str = "0", **kw: Any) -> OpenOrder:
    fields: dict[str, Any] = dict(
        symbol=SYM,
        client_id=CID,
        order_id="9",
        side="BUY",
        price=D("100.00"),
        qty=D("0.5"),
        cum_qty=D(cum),
        status=status,
        ts=START_NS,
    )
    fields.update(kw)
    return OpenOrder(**fields)


NEW = venue_order()
FILLED = venue_order("FILLED", "0.5")
OTHER_RUNS = venue_order("FILLED", "0.5", ts=START_NS - 3600 * 10**9)  # same id, older
WRONG_PRICE = venue_order(price=D("99.00"))


class Facts:
    """A scripted :class:`~mm_trio.core.orders.OrderFacts`."""

    def __init__(
        self,
        *,
        acknowledged: bool = False,
        live: bool = True,
        placing: bool = False,
        filled: str = "0",
    ) -> None:
        self.ack = acknowledged
        self.is_live = live
        self.is_placing = placing
        self.filled = D(filled)

    def acknowledged(self, client_id: str) -> bool:
        return self.ack

    def live(self, client_id: str) -> tuple[Side, Decimal, Decimal, Decimal] | None:
        return ("BUY", D("100.00"), D("0.5"), self.filled) if self.is_live else None

    def placing(self, client_id: str) -> bool:
        return self.is_placing


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def feed_all(machine: Any, answers: list[Answer]) -> list[list[Action]]:
    out = [machine.start()]
    for answer in answers:
        out.append(machine.on(answer))
    return out


# --------------------------------------------------------------------------- resolution

RESOLUTION_TABLE: list[tuple[str, list[Answer], list[str]]] = [
    ("found at once", [Ok(NEW)], ["Resolved"]),
    ("absent twice", [NotFound(), Waited(), NotFound()], ["Wait", "Query", "Resolved"]),
    ("absent, then found", [NotFound(), Waited(), Ok(FILLED)], ["Wait", "Query", "Resolved"]),
    ("unknown, then found", [Unknown("503"), Waited(), Ok(NEW)], ["Wait", "Query", "Resolved"]),
    ("paused, then found", [Paused("429"), Waited(), Ok(NEW)], ["Wait", "Query", "Resolved"]),
    (
        "an earlier run's order twice",
        [Ok(OTHER_RUNS), Waited(), Ok(OTHER_RUNS)],
        ["Note,Wait", "Query", "Note,Resolved"],
    ),
    (
        "another price, then absent",
        [Ok(WRONG_PRICE), Waited(), NotFound()],
        ["Note,Wait", "Query", "Resolved"],
    ),
]


@pytest.mark.parametrize(
    ("case", "answers", "want"), RESOLUTION_TABLE, ids=[c[0] for c in RESOLUTION_TABLE]
)
def test_resolution(case: str, answers: list[Answer], want: list[str]) -> None:
    r = Resolution(SYM, CID, "BUY", D("100.00"), D("0.5"), START_NS)
    steps = feed_all(r, answers)
    assert kinds(steps[0]) == ["Query"]
    assert [",".join(kinds(s)) for s in steps[1:]] == want
    end = steps[-1][-1]
    assert type(end) is Resolved
    last = answers[-1]
    expected = last.order if type(last) is Ok and last.order in (NEW, FILLED) else None
    assert end.order == expected


def test_resolution_backs_off_doubling_up_to_the_limit() -> None:
    r = Resolution(SYM, CID, "BUY", D("100.00"), D("0.5"), START_NS)
    r.start()
    delays = []
    for _ in range(10):
        actions = r.on(Unknown("timeout"))
        delays.append(actions[-1].seconds)  # type: ignore[union-attr]
        r.on(Waited())
    assert delays[0] == RESOLVE_FIRST_DELAY
    assert delays == sorted(delays) and delays[-1] == MAX_BACKOFF


def test_mismatch_is_logged_as_an_error() -> None:
    r = Resolution(SYM, CID, "BUY", D("100.00"), D("0.5"), START_NS)
    r.start()
    note = r.on(Ok(OTHER_RUNS))[0]
    assert type(note) is Note and note.level == logging.ERROR and "not adopting" in note.message


@pytest.mark.parametrize("answer", [Waited(), PlaceSettled(True), Withdrawn()])
def test_resolution_refuses_answers_it_cannot_take(answer: Answer) -> None:
    r = Resolution(SYM, CID, "BUY", D("100.00"), D("0.5"), START_NS)
    r.start()
    with pytest.raises(OrderPathError):
        r.on(answer)


def test_a_refused_query_is_impossible() -> None:
    r = Resolution(SYM, CID, "BUY", D("100.00"), D("0.5"), START_NS)
    r.start()
    with pytest.raises(ImpossibleAnswer):
        r.on(Refused("filter", "bad"))


# --------------------------------------------------------------------------- placement

# (case, facts, lossless, answers, the actions of each step, Done.exists)
PLACEMENT_TABLE: list[tuple[str, dict[str, Any], bool, list[Answer], list[str], bool]] = [
    ("accepted, lossless stream", {}, True, [Ok(NEW)], ["Done"], True),
    ("accepted, lossy stream: adopt the answer", {}, False, [Ok(NEW)], ["Adopt,Done"], True),
    ("refused (filter)", {}, True, [Refused("filter", "PRICE_FILTER")], ["Feed,Done"], False),
    (
        "refused (post-only would take)",
        {},
        True,
        [Refused("post_only", "would take")],
        ["Feed,Done"],
        False,
    ),
    ("withdrawn while queued", {}, True, [Withdrawn()], ["CountWithdrawn,Feed,Done"], False),
    (
        "rate limited, then accepted",
        {},
        True,
        [Paused("429"), Ok(NEW)],
        ["SendPlace", "Done"],
        True,
    ),
    (
        "unknown, then found by query",
        {},
        True,
        [Unknown("timeout"), Ok(NEW)],
        ["Note,Query", "Adopt,Done"],
        True,
    ),
    (
        "unknown, absent twice, sent again, accepted",
        {},
        True,
        [Unknown("timeout"), NotFound(), Waited(), NotFound(), Ok(NEW)],
        ["Note,Query", "Wait", "Query", "SendPlace", "Done"],
        True,
    ),
    (
        "unknown, absent, but the stream acknowledged it",
        {"acknowledged": True},
        True,
        [Unknown("timeout"), NotFound(), Waited(), NotFound()],
        ["Note,Query", "Wait", "Query", "Done"],
        True,
    ),
    (
        "unknown, then withdrawn: it may still land, watch it",
        {},
        True,
        [Unknown("timeout"), NotFound(), Waited(), NotFound(), Withdrawn()],
        ["Note,Query", "Wait", "Query", "SendPlace", "CountWithdrawn,PresumeGone,Done"],
        True,
    ),
    (
        "duplicate, found by query",
        {},
        True,
        [Refused("duplicate", "Duplicate order"), Ok(NEW)],
        ["Note,Query", "Adopt,Done"],
        True,
    ),
    (
        "duplicate, unknown to queries: presumed gone",
        {},
        True,
        [Refused("duplicate", "Duplicate order"), NotFound(), Waited(), NotFound()],
        ["Note,Query", "Wait", "Query", "PresumeGone,Done"],
        True,
    ),
    (
        "unknown, an earlier run's order under our id is not adopted",
        {},
        True,
        [Unknown("503"), Ok(OTHER_RUNS), Waited(), Ok(OTHER_RUNS), Ok(NEW)],
        ["Note,Query", "Note,Wait", "Query", "Note,SendPlace", "Done"],
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "facts", "lossless", "answers", "want", "exists"),
    PLACEMENT_TABLE,
    ids=[c[0] for c in PLACEMENT_TABLE],
)
def test_placement(
    case: str,
    facts: dict[str, Any],
    lossless: bool,
    answers: list[Answer],
    want: list[str],
    exists: bool,
) -> None:
    p = Placement(REQ, Facts(**facts), lossless=lossless, not_before_ns=START_NS)
    steps = feed_all(p, answers)
    assert kinds(steps[0]) == ["SendPlace"]
    assert [",".join(kinds(s)) for s in steps[1:]] == want
    end = steps[-1][-1]
    assert type(end) is Done and end.exists is exists


def test_placement_gives_up_after_the_named_number_of_sends() -> None:
    p = Placement(REQ, Facts(), lossless=True, not_before_ns=START_NS)
    p.start()
    last: list[Action] = []
    for _ in range(PLACE_SENDS):
        p.on(Unknown("timeout"))
        p.on(NotFound())
        p.on(Waited())
        last = p.on(NotFound())
    assert kinds(last) == ["PresumeGone", "Done"]
    gone = last[0]
    assert type(gone) is PresumeGone and gone.update.status == "REJECTED"
    assert "gave up" in gone.update.reason and p.sends == PLACE_SENDS
    assert last[-1] == Done(False)


def test_refusals_reach_the_strategy_with_their_kind() -> None:
    p = Placement(REQ, Facts(), lossless=True, not_before_ns=START_NS)
    p.start()
    feed = p.on(Refused("balance", "insufficient balance"))[0]
    assert type(feed) is Feed
    assert (feed.update.status, feed.update.reason) == ("REJECTED", "balance: insufficient balance")
    assert (feed.update.client_id, feed.update.price) == (CID, REQ.price)


@pytest.mark.parametrize("answer", [Waited(), PlaceSettled(True)])
def test_placement_refuses_answers_it_cannot_take(answer: Answer) -> None:
    p = Placement(REQ, Facts(), lossless=True, not_before_ns=START_NS)
    p.start()
    with pytest.raises(OrderPathError):
        p.on(answer)


def test_unknown_order_to_a_placement_is_impossible() -> None:
    p = Placement(REQ, Facts(), lossless=True, not_before_ns=START_NS)
    p.start()
    with pytest.raises(ImpossibleAnswer):
        p.on(NotFound())


def test_a_finished_placement_takes_nothing_more() -> None:
    p = Placement(REQ, Facts(), lossless=True, not_before_ns=START_NS)
    p.start()
    p.on(Ok(NEW))
    with pytest.raises(OrderPathError):
        p.on(Ok(NEW))


# --------------------------------------------------------------------------- cancellation

CANCEL = CancelOrder(SYM, CID)
CANCELED = venue_order("CANCELED")

CANCEL_TABLE: list[tuple[str, dict[str, Any], bool, list[Answer], str, list[str]]] = [
    ("cancelled, lossless", {}, True, [Ok(CANCELED)], "SendCancel", ["Done"]),
    ("cancelled, lossy: adopt the answer", {}, False, [Ok(CANCELED)], "SendCancel", ["Adopt,Done"]),
    (
        "its placement still on its way, then settled",
        {"placing": True},
        True,
        [PlaceSettled(True), Ok(CANCELED)],
        "AwaitPlace",
        ["SendCancel", "Done"],
    ),
    (
        "its placement was refused: nothing to cancel",
        {"placing": True},
        True,
        [PlaceSettled(False)],
        "AwaitPlace",
        ["Done"],
    ),
    (
        "rate limited, then cancelled",
        {},
        True,
        [Paused("429"), Ok(CANCELED)],
        "SendCancel",
        ["SendCancel", "Done"],
    ),
    (
        "timeout: back off and send again",
        {},
        True,
        [Unknown("timeout"), Waited(), Ok(CANCELED)],
        "SendCancel",
        ["Wait", "SendCancel", "Done"],
    ),
    (
        "unknown order, it had filled",
        {},
        True,
        [NotFound(), Ok(FILLED)],
        "SendCancel",
        ["Query", "Adopt,Done"],
    ),
    (
        "unknown order, still open by query: send again",
        {},
        True,
        [NotFound(), Ok(NEW), Ok(CANCELED)],
        "SendCancel",
        ["Query", "Adopt,SendCancel", "Done"],
    ),
    (
        "unknown order, unknown to queries: presumed gone",
        {},
        True,
        [NotFound(), NotFound(), Waited(), NotFound()],
        "SendCancel",
        ["Query", "Wait", "Query", "PresumeGone,Done"],
    ),
    ("unknown order, ended meanwhile", {"live": False}, True, [NotFound()], "SendCancel", ["Done"]),
    (
        "unknown order while its placement is on its way",
        {"placing": True},
        True,
        [PlaceSettled(True), NotFound(), PlaceSettled(True), Ok(CANCELED)],
        "AwaitPlace",
        ["SendCancel", "AwaitPlace", "SendCancel", "Done"],
    ),
    (
        "rejected (not unknown): learn its state, it had filled",
        {},
        True,
        [Refused("rejected", "timestamp outside recvWindow"), Ok(FILLED)],
        "SendCancel",
        ["Note,Query", "Adopt,Done"],
    ),
    (
        "rejected, still open: back off and send again",
        {},
        True,
        [Refused("rejected", "clock"), Ok(NEW), Waited(), Ok(CANCELED)],
        "SendCancel",
        ["Note,Query", "Adopt,Wait", "SendCancel", "Done"],
    ),
]


@pytest.mark.parametrize(
    ("case", "facts", "lossless", "answers", "first", "want"),
    CANCEL_TABLE,
    ids=[c[0] for c in CANCEL_TABLE],
)
def test_cancellation(
    case: str,
    facts: dict[str, Any],
    lossless: bool,
    answers: list[Answer],
    first: str,
    want: list[str],
) -> None:
    c = Cancellation(CANCEL, Facts(**facts), lossless=lossless, not_before_ns=START_NS)
    steps = feed_all(c, answers)
    assert kinds(steps[0]) == [first]
    assert [",".join(kinds(s)) for s in steps[1:]] == want
    assert type(steps[-1][-1]) is Done


def test_first_wait_for_the_placement_withdraws_a_queued_one() -> None:
    c = Cancellation(CANCEL, Facts(placing=True), lossless=True, not_before_ns=START_NS)
    assert c.start() == [AwaitPlace(CID, recheck=True)]


def test_cancel_that_keeps_timing_out_asks_for_a_resync() -> None:
    c = Cancellation(CANCEL, Facts(), lossless=True, not_before_ns=START_NS)
    c.start()
    waits = []
    for _ in range(CANCEL_SENDS - 1):
        wait = c.on(Unknown("timeout"))
        waits.append(wait[0].seconds)  # type: ignore[union-attr]
        assert kinds(c.on(Waited())) == ["SendCancel"]
    assert kinds(c.on(Unknown("timeout"))) == ["Resync", "Done"]
    assert waits == sorted(waits) and max(waits) <= MAX_BACKOFF


def test_presumed_gone_cancel_carries_what_was_filled() -> None:
    c = Cancellation(CANCEL, Facts(filled="0.2"), lossless=True, not_before_ns=START_NS)
    c.start()
    c.on(NotFound())
    c.on(NotFound())
    c.on(Waited())
    gone = c.on(NotFound())[0]
    assert type(gone) is PresumeGone
    assert (gone.update.status, gone.update.cum_qty) == ("CANCELED", D("0.2"))


@pytest.mark.parametrize("answer", [Waited(), PlaceSettled(True), Withdrawn()])
def test_cancellation_refuses_answers_it_cannot_take(answer: Answer) -> None:
    c = Cancellation(CANCEL, Facts(), lossless=True, not_before_ns=START_NS)
    c.start()
    with pytest.raises(OrderPathError):
        c.on(answer)


# --------------------------------------------------------------------------- the rest


def test_resync_adopts_or_presumes_gone() -> None:
    live = ("BUY", D("100.00"), D("0.5"), D("0.1"))
    assert resync_outcome(SYM, CID, live, NEW) == Adopt(NEW)  # type: ignore[arg-type]
    gone = resync_outcome(SYM, CID, live, None)  # type: ignore[arg-type]
    assert type(gone) is PresumeGone and gone.update.cum_qty == D("0.1")
    assert "resync" in gone.update.reason


def test_missed_fills() -> None:
    assert missed_fills(FILLED, D("0.2"))
    assert missed_fills(FILLED, None)
    assert not missed_fills(FILLED, D("0.5"))
    assert not missed_fills(NEW, None)


def _report(status: Any) -> OrderUpdate:
    return OrderUpdate(
        symbol=SYM, client_id=CID, side="BUY", price=D("100.00"), qty=D("0.5"), status=status
    )


def test_presumed_gone_watch() -> None:
    watch = PresumedGone(memory=2)
    ended = _report("CANCELED")
    watch.add(ended)
    assert not watch.on_report(ended)  # our own presumption reaching the strategy
    assert watch.on_report(_report("NEW"))  # live after all: cancel it
    assert not watch.on_report(_report("PARTIALLY_FILLED"))  # its cancel is on its way
    watch.cancel_ended(CID)
    assert watch.on_report(_report("NEW"))  # the cancel failed: try again
    assert not watch.on_report(_report("CANCELED"))  # the venue's own final word
    assert CID not in watch
    for i in range(3):
        watch.add(
            OrderUpdate(
                symbol=SYM, client_id=f"c{i}", side="BUY", price=D(1), qty=D(1), status="CANCELED"
            )
        )
    assert len(watch) == 2 and "c0" not in watch


def test_every_action_type_is_one_the_shell_knows() -> None:
    """The shell's driver dispatches on these exact types."""
    requests = {SendPlace, SendCancel, Query, Wait, AwaitPlace}
    effects = {Feed, PresumeGone, Adopt, Note, Resync, CountWithdrawn}
    ends = {Done, Resolved}
    assert not requests & effects and not (requests | effects) & ends
