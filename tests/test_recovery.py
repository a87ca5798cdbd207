"""Recovery on start, case by case (issue 9, SPEC §9): a run "crashes" (its scope ends with
no cancel, as ``kill -9`` at an await point leaves it), the venue moves on, and the next run
on the same SQLite store recovers before it trades.

The venue is the shipped test double (it remembers ended orders and every trade, as a real
venue does); time is trio's MockClock. Each test asserts against the venue's own records:
what is open, what traded, and what the ledger holds.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from mm_trio.apps.run import recover_account
from mm_trio.domain.config import Config, config_from_dict
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import Balance, OpenOrder, OrderRequest
from mm_trio.engine.manager import SymbolManager, SymbolState
from mm_trio.engine.orchestrator import Orchestrator, open_orchestrator
from mm_trio.engine.persistence import KILL_LATCH, Persistence
from mm_trio.engine.recovery import Recovery, RecoveryError
from mm_trio.exchange.base import StillWanted
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange
from mm_trio.store import StateStore
from tests.fakes import symbol_quote

D = Decimal
SYM = "AAA/USDT"
BALANCES = {
    "USDT": Balance(asset="USDT", free=D(100000), locked=D(0)),
    "AAA": Balance(asset="AAA", free=D(1000), locked=D(0)),
}


def make_config(**run: Any) -> Config:
    return config_from_dict(
        {
            "grid": {
                "spacing": "arithmetic",
                "step": "0.10",
                "levels_below": 3,
                "order_size": "1",
                "order_size_in": "base",
            },
            "risk": {"jump_pct": "0.5", "volume_spike_factor": "100000", "stale_after": 1e6},
            # a crash leaves everything as it is on the venue
            "run": {"cancel_on_exit": False, **run},
        }
    )


def drain(fake: FakeExchange) -> None:
    """A restarted process gets a new stream: what the old one carried is gone."""
    while True:
        try:
            fake.events.receive_nowait()
        except trio.WouldBlock:
            return


@asynccontextmanager
async def session(
    fake: FakeExchange, path: Path, config: Config | None = None, *, override: bool = False
) -> AsyncIterator[tuple[Orchestrator, Recovery, StateStore]]:
    """One run of the trader on ``path``: recovery, then trading ``SYM`` (until the block
    ends: the crash)."""
    config = config or make_config()
    drain(fake)
    store = StateStore.open(path)
    try:
        async with open_orchestrator(
            fake,
            config,
            limiter=Limiter(config.limiter),
            persistence=Persistence(store, fake.now_ns),
        ) as orch:
            grids = {SYM: config.grid_for(SYM)}
            recovery = await recover_account(orch, store, grids, override, io.StringIO())
            await orch.add_symbols(list(grids), configs=grids)
            yield orch, recovery, store
    finally:
        store.close()


def refused(match: str) -> pytest.RaisesGroup[RecoveryError]:
    """Recovery refused (out of the orchestrator's nursery) with a message matching."""
    return pytest.RaisesGroup(pytest.RaisesExc(RecoveryError, match=match), flatten_subgroups=True)


async def wait_for(predicate: Callable[[], bool], limit: float = 60.0) -> None:
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling state the pure core owns
            await trio.sleep(0.05)


def quote(fake: FakeExchange, bid: str, ask: str) -> None:
    fake.inject(symbol_quote(SYM, bid, ask))


def open_by_role(fake: FakeExchange) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for o in fake.orders.values():
        parsed = parse_client_id(o.client_id)
        assert parsed is not None
        out.setdefault((o.side, parsed.level), []).append(o.client_id)
    return out


def assert_no_duplicates(fake: FakeExchange) -> None:
    dupes = {k: v for k, v in open_by_role(fake).items() if len(v) > 1}
    assert not dupes, f"two open orders of ours on one level and side: {dupes}"


def assert_ledger_is_the_venue(fake: FakeExchange, store: StateStore) -> None:
    venue = {(str(t.trade_id), t.client_id, t.last_qty) for ts in fake.trades.values() for t in ts}
    ledger = {(f.trade_id, f.client_id, f.qty) for f in store.fills(SYM)}
    assert ledger == venue


def buys(fake: FakeExchange) -> list[OpenOrder]:
    return sorted((o for o in fake.orders.values() if o.side == "BUY"), key=lambda o: -o.price)


async def test_fills_while_down_are_applied_and_every_lot_gets_its_take_profit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db) as (orch, _, _store):
        m = orch.manager(SYM)
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        top = buys(fake)[0]
        fake.fill(top.client_id, top.qty)
        await wait_for(lambda: any(o.side == "SELL" for o in fake.orders.values()))
        assert m.strategy.position == top.qty
    # the crash: while the trader is down, the next buy fills and the take-profit half fills
    second = buys(fake)[0]
    fake.fill(second.client_id, second.qty)
    tp = next(o for o in fake.orders.values() if o.side == "SELL")
    fake.fill(tp.client_id, D("0.5"))
    resting_before = set(fake.orders)
    async with session(fake, db) as (orch, recovery, store):
        r = recovery.symbols[SYM]
        assert r.missed_fills == 2  # the buy and the half take-profit, from the venue's trades
        assert r.adopted == len(resting_before)  # every resting order is taken over
        assert r.orphans_cancelled == r.unfit_cancelled == 0
        assert r.position == top.qty + second.qty - D("0.5")
        m = orch.manager(SYM)
        assert m.strategy.position == r.position
        assert m.position.position == r.position
        quote(fake, "9.90", "9.92")
        # the second lot gets its take-profit one level up; the adopted one stays
        await wait_for(lambda: len([o for o in fake.orders.values() if o.side == "SELL"]) == 2)
        assert tp.client_id in fake.orders
        assert resting_before <= set(fake.orders)  # nothing taken over was cancelled
        assert_no_duplicates(fake)
        held = m.strategy.level_inventory()
        covered = {
            parse_client_id(o.client_id).level: o.qty - o.cum_qty  # type: ignore[union-attr]
            for o in fake.orders.values()
            if o.side == "SELL"
        }
        assert covered == {k: v for k, v in held.items() if v}  # every lot, exactly covered
        assert_ledger_is_the_venue(fake, store)


async def test_an_order_cancelled_while_down_is_resolved_and_replaced(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
    gone = fake.expire(buys(fake)[0].client_id)  # the venue ended it meanwhile
    async with session(fake, db) as (orch, recovery, store):
        r = recovery.symbols[SYM]
        assert (r.resolved, r.adopted, r.never_reached) == (1, 2, 0)
        assert not store.open_intents(SYM) or all(
            i.client_id != gone.client_id for i in store.open_intents(SYM)
        )
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)  # its level is bought again, new id
        assert gone.client_id not in fake.orders
        assert_no_duplicates(fake)


async def test_an_intent_journalled_but_never_sent_is_ended(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db) as (orch, _, store):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        m = orch.manager(SYM)
        # the crash came between the journal write and the request
        cid = f"mmt_AAAUSDT_B-9_{m.strategy.generation + 1}"
        Persistence(store, fake.now_ns).intent(
            OrderRequest(symbol=SYM, client_id=cid, side="BUY", price=D("9.1"), qty=D(1))
        )
    async with session(fake, db) as (orch, recovery, store):
        assert recovery.symbols[SYM].never_reached == 1
        assert all(i.client_id != cid for i in store.open_intents())
        assert [e.kind for e in store.events(cid)] == ["ended"]
        assert orch.manager(SYM).strategy.generation > parse_client_id(cid).generation  # type: ignore[union-attr]


class LostAnswers(FakeExchange):
    """Places land on the venue, but neither the answer nor the report ever reaches us."""

    lose = False

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        if not self.lose:
            return await super().place(request, still_wanted=still_wanted)
        inject, self.inject = self.inject, lambda event: None  # type: ignore[method-assign]
        try:
            await super().place(request, still_wanted=still_wanted)
        finally:
            self.inject = inject  # type: ignore[method-assign]
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_orders_sent_but_unanswered_are_found_and_adopted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = LostAnswers([SYM], balances=BALANCES)
    fake.lose = True
    db = tmp_path / "s.db"
    async with session(fake, db) as (_, _, store):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        assert len(store.open_intents(SYM)) == 3  # journalled, no answer
    fake.lose = False
    async with session(fake, db) as (orch, recovery, store):
        r = recovery.symbols[SYM]
        assert (r.adopted, r.orphans_cancelled, r.never_reached) == (3, 0, 0)
        quote(fake, "10.00", "10.02")
        await trio.sleep(1)
        assert len(fake.orders) == 3 and len(fake.placed) == 3  # nothing sent twice
        assert {o.client_id for o in orch.manager(SYM).strategy.live_orders()} == set(fake.orders)


async def test_orphans_of_ours_are_cancelled_foreign_orders_left_alone(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    # a run without a store left one of "our" orders; a human placed another by hand
    await fake.place(
        OrderRequest(
            symbol=SYM, client_id="mmt_AAAUSDT_B-1_5", side="BUY", price=D("9.5"), qty=D(1)
        )
    )
    await fake.place(
        OrderRequest(symbol=SYM, client_id="by-hand-1", side="BUY", price=D("9.0"), qty=D(1))
    )
    async with session(fake, tmp_path / "s.db") as (_, recovery, _):
        assert recovery.symbols[SYM].orphans_cancelled == 1
        assert "mmt_AAAUSDT_B-1_5" not in fake.orders
        assert "by-hand-1" in fake.orders


async def test_a_ledger_the_account_cannot_hold_is_refused_unless_overridden(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        top = buys(fake)[0]
        fake.fill(top.client_id, top.qty)
        await trio.sleep(1)
    fake._balances["AAA"] = Balance(asset="AAA", free=D("0.2"), locked=D(0))  # sold elsewhere
    with refused(r"hold 1 AAA, but the account holds only 0\.2 AAA"):
        async with session(fake, db):
            pass
    placed = len(fake.placed)
    async with session(fake, db, override=True) as (_, recovery, _):
        assert recovery.overridden and recovery.problems
    assert len(fake.placed) >= placed


async def test_the_kill_switch_survives_a_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db, make_config(cancel_on_exit=True)) as (orch, _, store):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        await orch.kill("operator test")
        await wait_for(lambda: not fake.orders)
        assert KILL_LATCH in store.latches()
    placed = len(fake.placed)
    async with session(fake, db) as (orch, recovery, store):
        assert recovery.kill_reason == "operator test"
        quote(fake, "10.00", "10.02")
        await trio.sleep(2)
        assert len(fake.placed) == placed  # still killed: nothing new
        await orch.resume()
        assert KILL_LATCH not in store.latches()
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)


async def test_a_changed_grid_under_held_lots_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    db = tmp_path / "s.db"
    async with session(fake, db):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        top = buys(fake)[0]
        fake.fill(top.client_id, top.qty)
        await trio.sleep(1)
    wider = config_from_dict({"grid": {"spacing": "arithmetic", "step": "0.20"}})
    with refused(r"step = 0\.10, but the config now has step = 0\.20"):
        async with session(fake, db, attrs_evolve_run(wider)):
            pass


def attrs_evolve_run(config: Config) -> Config:
    import attrs

    return attrs.evolve(config, run=attrs.evolve(config.run, cancel_on_exit=False))


async def test_a_restarted_failed_symbol_takes_over_its_inventory(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    config = make_config(restart_failed=True, restart_backoff=1.0)
    async with session(fake, tmp_path / "s.db", config) as (orch, _, _):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        top = buys(fake)[0]
        fake.fill(top.client_id, top.qty)
        failed: SymbolManager = orch.manager(SYM)
        await wait_for(lambda: failed.strategy.position == top.qty)

        def boom(q: Any) -> list[Any]:
            raise RuntimeError("strategy bug")

        failed.strategy.on_quote = boom  # type: ignore[method-assign]
        # the same quote is inside the quiet band: the ticker hands it over in place
        failed.strategy.note_quote = boom  # type: ignore[method-assign,assignment]
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: failed.state is SymbolState.FAILED)
        await wait_for(lambda: orch.manager(SYM) is not failed)
        again = orch.manager(SYM)
        assert again.strategy.position == top.qty  # the lot bought before the failure
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: any(o.side == "SELL" for o in fake.orders.values()))
        sell = next(o for o in fake.orders.values() if o.side == "SELL")
        assert sell.qty == top.qty and sell.price > top.price  # its take-profit


async def test_a_failed_symbol_comes_back_paused_if_it_was(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakeExchange([SYM], balances=BALANCES)
    config = make_config(restart_failed=True, restart_backoff=1.0)
    async with session(fake, tmp_path / "s.db", config) as (orch, _, store):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        orch.pause(SYM)
        await wait_for(lambda: not fake.orders)  # opening buys cancelled
        failed: SymbolManager = orch.manager(SYM)

        def boom(q: Any) -> list[Any]:
            raise RuntimeError("strategy bug")

        failed.strategy.on_quote = boom  # type: ignore[method-assign]
        # the same quote is inside the quiet band: the ticker hands it over in place
        failed.strategy.note_quote = boom  # type: ignore[method-assign,assignment]
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: orch.manager(SYM) is not failed)
        again = orch.manager(SYM)
        assert again.paused
        quote(fake, "9.99", "10.01")
        await trio.sleep(2)
        assert not fake.orders  # still no opening order: the pause held
        assert {r.symbol: r.state for r in store.symbols()}[SYM] == "paused"


async def test_a_symbol_added_again_takes_over_what_it_holds(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Removed at runtime with a lot held, then added again: the ledger's lot is taken over
    on the stored anchor and gets its take-profit (not a fresh grid on top of it)."""
    fake = FakeExchange([SYM], balances=BALANCES)
    async with session(fake, tmp_path / "s.db") as (orch, _, _):
        quote(fake, "10.00", "10.02")
        await wait_for(lambda: len(fake.orders) == 3)
        top = buys(fake)[0]
        fake.fill(top.client_id, top.qty)
        await wait_for(lambda: any(o.side == "SELL" for o in fake.orders.values()))
        tp_price = next(o.price for o in fake.orders.values() if o.side == "SELL")
        await orch.remove_symbol(SYM)
        assert not fake.orders
        again = await orch.add_symbol(SYM)
        assert again.strategy.position == top.qty
        quote(fake, "9.95", "9.97")  # another price: the levels must not move with it
        await wait_for(lambda: any(o.side == "SELL" for o in fake.orders.values()))
        sells = [o for o in fake.orders.values() if o.side == "SELL"]
        assert [(o.price, o.qty) for o in sells] == [(tp_price, top.qty)]
