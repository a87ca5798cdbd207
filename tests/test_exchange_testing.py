"""The shipped test double (:mod:`mm_trio.exchange.testing`): acks, cancels, injected events,
scripted answers, fills and the optional limiter behave as its docstring says."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import OrderRequest, OrderUpdate, Quote
from mm_trio.exchange.base import OutcomeUnknown, PlaceWithdrawn, RateLimited, UnknownOrder
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange, spec

D = Decimal
SYM = "AAA/USDT"


def buy(cid: str, price: str = "10.00", qty: str = "2") -> OrderRequest:
    return OrderRequest(symbol=SYM, client_id=cid, side="BUY", price=D(price), qty=D(qty))


def drain(fake: FakeExchange) -> list[object]:
    out: list[object] = []
    while True:
        try:
            out.append(fake.events.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_place_acks_on_the_stream_and_cancel_reports_canceled() -> None:
    fake = FakeExchange([SYM])
    assert (await fake.load_specs())[SYM] == spec(SYM)
    order = await fake.place(buy("c1"))
    assert order.status == "NEW" and fake.orders == {"c1": order}
    assert [r.client_id for r in fake.placed] == ["c1"]
    await fake.cancel(SYM, "c1")
    reports = drain(fake)
    assert [(type(e), e.status) for e in reports] == [
        (OrderUpdate, "NEW"),  # type: ignore[attr-defined]
        (OrderUpdate, "CANCELED"),
    ]
    assert fake.orders == {}
    with pytest.raises(UnknownOrder):
        await fake.cancel(SYM, "c1")
    # like a venue, it still answers queries of an ended order
    ended = await fake.query(SYM, "c1")
    assert (ended.status, ended.cum_qty) == ("CANCELED", 0)
    with pytest.raises(UnknownOrder):
        await fake.query(SYM, "never-placed")


async def test_injected_events_come_out_in_order() -> None:
    fake = FakeExchange([SYM])
    quotes = [
        Quote(symbol=SYM, bid=D(10 + i), bid_qty=D(1), ask=D(11 + i), ask_qty=D(1), ts=i)
        for i in range(3)
    ]
    for q in quotes:
        fake.inject(q)
    assert drain(fake) == quotes


async def test_scripted_answers_lost_or_applied() -> None:
    fake = FakeExchange([SYM])
    fake.fail_next("place", OutcomeUnknown("timed out"))
    fake.fail_next("place", OutcomeUnknown("answer lost"), applied=True)
    with pytest.raises(OutcomeUnknown, match="timed out"):
        await fake.place(buy("lost"))
    assert "lost" not in fake.orders and fake.placed == []
    with pytest.raises(OutcomeUnknown, match="answer lost"):
        await fake.place(buy("landed"))
    assert "landed" in fake.orders  # carried out; only its answer was lost
    order = await fake.place(buy("plain"))  # the script is used up: the default again
    assert order.client_id == "plain"
    fake.fail_next("query", UnknownOrder("lagging view"))
    with pytest.raises(UnknownOrder, match="lagging view"):
        await fake.query(SYM, "landed")
    assert (await fake.query(SYM, "landed")).client_id == "landed"
    fake.fail_next("cancel", OutcomeUnknown("cancel answer lost"), applied=True)
    with pytest.raises(OutcomeUnknown):
        await fake.cancel(SYM, "landed")
    assert "landed" not in fake.orders


def test_fail_next_refuses_what_it_cannot_script() -> None:
    fake = FakeExchange([SYM])
    with pytest.raises(ValueError, match="'balances' is not one of place, cancel, query"):
        fake.fail_next("balances", OutcomeUnknown("x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query"):
        fake.fail_next("query", UnknownOrder("x"), applied=True)


async def test_fill_reports_partial_then_full_and_closes_the_order() -> None:
    fake = FakeExchange([SYM])
    await fake.place(buy("c1", qty="2"))
    drain(fake)
    part = fake.fill("c1", D("0.5"), fee=D("0.01"), fee_asset="USDT")
    assert (part.status, part.cum_qty, part.last_qty, part.last_price) == (
        "PARTIALLY_FILLED",
        D("0.5"),
        D("0.5"),
        D("10.00"),
    )
    assert fake.orders["c1"].cum_qty == D("0.5")
    full = fake.fill("c1", D("1.5"), price=D("9.99"))
    assert (full.status, full.cum_qty, full.last_price) == ("FILLED", D(2), D("9.99"))
    assert full.trade_id != part.trade_id
    assert "c1" not in fake.orders and drain(fake) == [part, full]
    with pytest.raises(UnknownOrder):
        fake.fill("c1", D(1))


async def test_fill_refuses_an_impossible_quantity() -> None:
    fake = FakeExchange([SYM])
    await fake.place(buy("c1", qty="1"))
    for qty in (D(0), D("1.5")):
        with pytest.raises(ValueError, match="not a possible fill"):
            fake.fill("c1", qty)
    assert fake.orders["c1"].cum_qty == 0


async def test_with_a_limiter_a_scripted_429_pauses_it_and_withdrawn_places_are_not_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = Limiter(config_from_dict({}).limiter)
    fake = FakeExchange([SYM], limiter=limiter)
    fake.fail_next("place", RateLimited("Too many requests", retry_after=5.0))
    with pytest.raises(RateLimited):
        await fake.place(buy("c1"))
    start = trio.current_time()
    await fake.place(buy("c2"))  # waits out the pause, as every request would
    assert trio.current_time() - start >= 5.0
    with pytest.raises(PlaceWithdrawn):
        await fake.place(buy("c3"), still_wanted=lambda: False)
    assert [r.client_id for r in fake.placed] == ["c2"]
