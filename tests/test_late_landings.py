"""Orders whose outcome the venue hides for a while (SPEC §3, §12): a placement that times
out but lands later, a re-send refused as a duplicate, an order the manager gave up on that
shows up live after all.

* a re-send refused as a duplicate (the first send did land) does not skip the cancel that
  waits on it: every order left on the venue is one the strategy wants;
* a duplicate refusal that the query after it cannot confirm ends the order as presumed
  gone, so when it shows up live it is cancelled on sight;
* a presumed-gone order stays watched until its cancel lands: one failed cancel does not
  stop later live reports from cancelling it, and its fills still count;
* an order the strategy holds live (the stream reported it while its outcome was being
  queried) is neither re-sent nor given up on, so a later fill does not cancel it.
"""

from __future__ import annotations

from decimal import Decimal

import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import OpenOrder, OrderRequest, OrderUpdate, Quote
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.base import (
    DuplicateOrder,
    OutcomeUnknown,
    StillWanted,
    UnknownOrder,
    check_wanted,
)
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange

D = Decimal
CONFIG = config_from_dict(
    {"grid": {"levels_below": 3, "levels_above": 0, "step": "0.01", "order_size": "20"}}
)


def quote(bid: str, ask: str) -> Quote:
    return Quote(symbol="AAA/USDT", bid=D(bid), bid_qty=D(5), ask=D(ask), ask_qty=D(5), ts=1)


# ------------------------------------------------------------- a re-send refused as a duplicate


class LateLandingExchange(FakeExchange):
    """The first placement times out but lands on the venue 0.5 s later (after the two
    "does not exist" queries); its re-send under the same id is on the wire for 1 s and is
    refused as a duplicate -- the venue does hold that order."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__(["AAA/USDT"])
        self.nursery = nursery
        self.target: str | None = None

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        check_wanted(request, still_wanted)  # right before it goes on the wire
        cid = request.client_id
        if self.target is None:
            self.target = cid

            async def land_late() -> None:
                await trio.sleep(0.5)
                await FakeExchange.place(self, request)  # acked on the stream (NEW)

            self.nursery.start_soon(land_late)
            raise OutcomeUnknown("timed out")
        if cid == self.target:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)
            if cid in self.orders:
                raise DuplicateOrder("Duplicate order sent.")
        return await FakeExchange.place(self, request)


async def test_duplicate_on_resend_does_not_skip_the_waiting_cancel(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = config_from_dict(
        {
            "grid": {"levels_below": 3, "levels_above": 0, "step": "0.01", "order_size": "20"},
            "risk": {"jump_pct": "0.5"},
        }
    )
    async with trio.open_nursery() as nursery:
        fake = LateLandingExchange(nursery)
        async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
            manager = await orch.add_symbol("AAA/USDT")
            fake.inject(quote("10.00", "10.02"))
            await trio.sleep(0.7)  # first try timed out, queried absent twice, re-sent
            target = fake.target
            assert target is not None and target in fake.orders  # it did land
            # the price runs away while the re-send is on the wire: the strategy cancels it
            fake.inject(quote("11.00", "11.02"))
            await trio.sleep(10)
            for cid in fake.orders:  # every order on the venue is one the strategy wants
                lo = manager.strategy.live_order(cid)
                assert lo is not None and not lo.cancel_requested, (cid, lo)
            assert target not in fake.orders, "the order whose cancel was skipped is still live"
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- presumed gone, live after all


class ScriptedExchange(FakeExchange):
    """The first placement (the *target*) has its outcome hidden: its sends time out or are
    refused as duplicates (``target_faults``, then timeouts), and queries do not see it until
    :meth:`land` (a venue whose query view lags its matching engine). Cancels of the target
    time out ``cancel_timeouts`` times before they go through."""

    def __init__(self) -> None:
        super().__init__(["AAA/USDT"])
        self.target: OrderRequest | None = None
        self.target_faults: list[str] = []
        self.visible = False  # queries see the target
        self.ack_on_stream = False  # the first send of the target reaches the venue at once
        self.cancel_timeouts = 0
        self.place_calls: list[str] = []
        self.cancel_calls: list[str] = []

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        check_wanted(request, still_wanted)
        self.place_calls.append(request.client_id)
        if self.target is None:
            self.target = request
            if self.ack_on_stream:
                await FakeExchange.place(self, request)  # on the venue, NEW on the stream
        if request.client_id == self.target.client_id:
            fault = self.target_faults.pop(0) if self.target_faults else "timeout"
            if fault == "duplicate":
                raise DuplicateOrder("Duplicate order sent.")
            raise OutcomeUnknown("timed out")
        return await FakeExchange.place(self, request)

    def land(self) -> None:
        """The target shows up on the venue after all (NEW on the stream)."""
        r = self.target
        assert r is not None
        self.visible = True
        self.orders[r.client_id] = OpenOrder(
            symbol=r.symbol,
            client_id=r.client_id,
            order_id="late",
            side=r.side,
            price=r.price,
            qty=r.qty,
            cum_qty=D(0),
            status="NEW",
        )
        self.inject(
            OrderUpdate(
                symbol=r.symbol,
                client_id=r.client_id,
                side=r.side,
                price=r.price,
                qty=r.qty,
                status="NEW",
            )
        )

    def fill_target(self, qty: Decimal) -> None:
        """A partial fill of the (live) target."""
        r = self.target
        assert r is not None
        self.orders[r.client_id] = OpenOrder(
            symbol=r.symbol,
            client_id=r.client_id,
            order_id="late",
            side=r.side,
            price=r.price,
            qty=r.qty,
            cum_qty=qty,
            status="PARTIALLY_FILLED",
        )
        self.inject(
            OrderUpdate(
                symbol=r.symbol,
                client_id=r.client_id,
                side=r.side,
                price=r.price,
                qty=r.qty,
                status="PARTIALLY_FILLED",
                cum_qty=qty,
                last_qty=qty,
                last_price=r.price,
                trade_id=77,
            )
        )

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        self.cancel_calls.append(client_id)
        if (
            self.target is not None
            and client_id == self.target.client_id
            and self.cancel_timeouts > 0
        ):
            self.cancel_timeouts -= 1
            raise OutcomeUnknown("timed out")  # never reached the venue
        return await FakeExchange.cancel(self, symbol, client_id)

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        if self.target is not None and client_id == self.target.client_id and not self.visible:
            raise UnknownOrder("Order does not exist.")
        return await FakeExchange.query(self, symbol, client_id)


async def test_duplicate_unknown_to_query_that_shows_up_live_is_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = ScriptedExchange()
    # first send times out, queries find nothing; the re-send is refused as a duplicate
    # (the first send did land) but the query still lags
    fake.target_faults = ["timeout", "duplicate"]
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(3.0)
        assert fake.target is not None
        cid = fake.target.client_id
        assert fake.place_calls.count(cid) == 2  # timed out, then refused as a duplicate
        assert manager.strategy.live_order(cid) is None  # ended as REJECTED
        fake.land()  # the order the venue said it holds: live, NEW on the stream
        await trio.sleep(2.0)
        assert manager.strategy.live_order(cid) is None  # the strategy does not manage it
        assert cid in fake.cancel_calls, "a live order nobody manages was not cancelled"
        assert cid not in fake.orders


async def test_presumed_gone_order_stays_watched_until_its_cancel_lands(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = ScriptedExchange()
    fake.cancel_timeouts = 5  # the cancel sent on sight never reaches the venue
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(3.0)
        assert fake.target is not None
        cid = fake.target.client_id
        assert fake.place_calls.count(cid) == 3  # given up on
        assert manager.strategy.live_order(cid) is None
        fake.land()
        await trio.sleep(10.0)  # cancelled on sight: five timeouts, then a resync
        assert fake.cancel_calls.count(cid) == 5
        assert cid in fake.orders  # still live on the venue, not managed by the strategy
        fake.fill_target(D("0.5"))  # and it trades: a live report of the presumed-gone order
        await trio.sleep(2.0)
        # the fill itself is not lost
        assert manager.strategy.position == D("0.5")
        assert manager.position.position == D("0.5")
        assert fake.cancel_calls.count(cid) > 5, "a live report of it no longer cancels it"
        assert cid not in fake.orders


async def test_gave_up_on_an_order_the_strategy_holds_live_does_not_cancel_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = ScriptedExchange()
    fake.ack_on_stream = True  # the first send lands (NEW on the stream); queries lag
    async with open_orchestrator(fake, CONFIG, limiter=Limiter(CONFIG.limiter)) as orch:
        manager = await orch.add_symbol("AAA/USDT")
        fake.inject(quote("10.00", "10.02"))
        await trio.sleep(3.0)
        assert fake.target is not None
        cid = fake.target.client_id
        # the stream reported it while its outcome was being queried: known to exist, so
        # neither sent again nor given up on
        assert fake.place_calls.count(cid) == 1
        lo = manager.strategy.live_order(cid)
        assert lo is not None and lo.status == "NEW" and not lo.cancel_requested
        assert cid in fake.orders and cid not in fake.cancel_calls
        fake.visible = True
        fake.fill_target(D("0.5"))
        await trio.sleep(2.0)
        assert manager.strategy.position == D("0.5")
        lo = manager.strategy.live_order(cid)
        assert cid not in fake.cancel_calls, "cancelled an order the strategy holds live"
        assert lo is not None and lo.status == "PARTIALLY_FILLED"
