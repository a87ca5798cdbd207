"""Review of 4734602..HEAD (hysteresis, withdrawn placements, shared-base neutral start).

Each test pins one bug found in review (now fixed): a duplicate refusal of a re-sent
placement must not skip the cancel waiting on it; a neutral symbol must not claim coins of
another symbol's sells that are not locked yet.
"""

from __future__ import annotations

from decimal import Decimal

import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import Balance, BalanceUpdate, OpenOrder, OrderRequest, Quote
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.base import (
    DuplicateOrder,
    OutcomeUnknown,
    StillWanted,
    check_wanted,
)
from mm_trio.exchange.limiter import Limiter
from tests.fakes import FakeExchange

D = Decimal


def quote(symbol: str, bid: str, ask: str) -> Quote:
    return Quote(symbol=symbol, bid=D(bid), bid_qty=D(5), ask=D(ask), ask_qty=D(5), ts=1)


# --------------------------------------------------------------------------- manager


class LateLandingExchange(FakeExchange):
    """The first placement times out but lands on the venue 0.5 s later (after the two
    "does not exist" queries); its re-send under the same id is on the wire for 1 s and is
    refused as a duplicate -- the venue does hold that order."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__(["AAA/USDT"])
        self.nursery = nursery
        self.target: str | None = None

    async def place(self, request: OrderRequest, *,
                    still_wanted: StillWanted | None = None) -> OpenOrder:
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
        autojump_clock: trio.abc.Clock) -> None:
    config = config_from_dict({"grid": {"levels_below": 3, "levels_above": 0, "step": "0.01",
                                        "order_size": "20"},
                               "risk": {"jump_pct": "0.5"}})
    async with trio.open_nursery() as nursery:
        fake = LateLandingExchange(nursery)
        async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
            manager = await orch.add_symbol("AAA/USDT")
            fake.inject(quote("AAA/USDT", "10.00", "10.02"))
            await trio.sleep(0.7)  # first try timed out, queried absent twice, re-sent
            target = fake.target
            assert target is not None and target in fake.orders  # it did land
            # the price runs away while the re-send is on the wire: the strategy cancels it
            fake.inject(quote("AAA/USDT", "11.00", "11.02"))
            await trio.sleep(10)
            for cid in fake.orders:  # every order on the venue is one the strategy wants
                lo = manager.strategy.live_order(cid)
                assert lo is not None and not lo.cancel_requested, (cid, lo)
            assert target not in fake.orders, "the order whose cancel was skipped is still live"
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- orchestrator


class LockingExchange(FakeExchange):
    """Two symbols on base AAA; a SELL locks its AAA only once the venue has it (after
    ``sell_delay`` seconds on the wire / in the limiter queue), as a real venue does."""

    def __init__(self) -> None:
        super().__init__(["AAA/USDT", "AAA/USDC"])
        self.free = D("1")
        self.locked = D("0")
        self.sell_delay = 2.0

    async def balances(self) -> dict[str, Balance]:
        return {"AAA": Balance(asset="AAA", free=self.free, locked=self.locked),
                "USDT": Balance(asset="USDT", free=D(100000), locked=D(0)),
                "USDC": Balance(asset="USDC", free=D(100000), locked=D(0))}

    async def place(self, request: OrderRequest, *,
                    still_wanted: StillWanted | None = None) -> OpenOrder:
        check_wanted(request, still_wanted)
        if request.side == "SELL":
            with trio.CancelScope(shield=True):
                await trio.sleep(self.sell_delay)
            self.free -= request.qty
            self.locked += request.qty
            self.inject(BalanceUpdate(asset="AAA", free=self.free, locked=self.locked, ts=1))
        return await FakeExchange.place(self, request)


async def test_second_neutral_symbol_does_not_claim_coins_of_pending_sells(
        autojump_clock: trio.abc.Clock) -> None:
    config = config_from_dict({"grid": {"mode": "neutral", "levels_below": 2,
                                        "levels_above": 3, "step": "0.01",
                                        "order_size": "0.2", "order_size_in": "base"},
                               "risk": {"jump_pct": "0.5"}})
    fake = LockingExchange()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        first = await orch.add_symbol("AAA/USDT")
        assert first.strategy.position == D("1")
        fake.inject(quote("AAA/USDT", "10.00", "10.02"))
        await trio.sleep(0.5)
        pending = [o for o in first.strategy.live_orders() if o.side == "SELL"]
        assert len(pending) == 3 and fake.locked == 0  # on their way, nothing locked yet
        second = await orch.add_symbol("AAA/USDC")
        # the first symbol holds all of the account's AAA: nothing is left to claim
        assert first.strategy.position + second.strategy.position <= fake.free + fake.locked
        assert second.strategy.position == 0
