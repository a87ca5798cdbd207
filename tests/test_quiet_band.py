"""The fast path's invariant (issue 12): a quote inside a symbol's quiet band changes
nothing but the latest quote, so it need not wake the symbol.

* Grid (hypothesis, the random markets of :mod:`tests.grid_harness`): after every call, a
  quote whose mid is strictly inside ``GridStrategy.quiet_band()`` makes ``on_quote`` return
  ``[]`` and leaves every order, slot, gate, the position and the window as they were.
* Risk (hypothesis): a quote inside ``RiskMonitor.quiet_band()`` trips and clears nothing.
* Inbox: a quiet quote is absorbed (no wake-up) and handed over first when anything else
  wakes the symbol, with the time it arrived.
* End to end: the replay of the real recordings makes exactly the same fills with and
  without absorbing quiet quotes, while waking the symbols far less often.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.apps.replay import run_replay
from mm_trio.core.grid.levels import snap_down
from mm_trio.core.risk.monitor import RiskMonitor
from mm_trio.domain.config import Config, RiskConfig
from mm_trio.domain.intents import Intent
from mm_trio.domain.model import Quote
from mm_trio.engine.inbox import Inbox, Marker
from tests.conftest import SHARED_DATA
from tests.grid_harness import SYMBOL, Run, Scenario, scenarios

D = Decimal


def _state(strategy: object) -> tuple[object, ...]:
    s = strategy
    w = s._window  # type: ignore[attr-defined]
    return (
        s.position,  # type: ignore[attr-defined]
        s.level_inventory(),  # type: ignore[attr-defined]
        s.live_orders(),  # type: ignore[attr-defined]
        s.gates,  # type: ignore[attr-defined]
        s.stopped,  # type: ignore[attr-defined]
        s.generation,  # type: ignore[attr-defined]
        w.key,
        w._takes,
        s.held_levels(),  # type: ignore[attr-defined]
        s.anchor,  # type: ignore[attr-defined]
    )


def _quote_inside(lo: Decimal, hi: Decimal, tick: Decimal) -> Quote | None:
    """An uncrossed quote on the tick grid whose mid is strictly inside ``(lo, hi)``."""
    if lo == D("-Infinity") or hi == D("Infinity"):
        return None
    mid = (lo + hi) / 2
    bid = snap_down(mid, tick)
    for ask in (bid + tick, bid + 2 * tick):
        m = (bid + ask) / 2
        if bid > 0 and lo < m < hi:
            return Quote(symbol=SYMBOL, bid=bid, bid_qty=D(1), ask=ask, ask_qty=D(1), ts=0)
    return None


def quiet_quote(run: Run) -> Quote | None:
    """A quote inside the run's strategy's quiet band now (``None`` if there is none)."""
    band = run.strategy.quiet_band()
    return None if band is None else _quote_inside(*band, run.scn.spec.tick_size)


checked = {"quiet": 0}


def _check_quiet(run: Run, kind: str, intents: list[Intent]) -> None:
    quote = quiet_quote(run)
    if quote is None:
        return
    probe = copy.deepcopy(run.strategy)
    before = _state(probe)
    assert probe.on_quote(quote) == [], quote
    assert _state(probe) == before
    checked["quiet"] += 1


@pytest.mark.slow
def test_a_quote_in_the_grids_quiet_band_changes_nothing() -> None:
    checked["quiet"] = 0

    @settings(max_examples=300, deadline=None)
    @given(scenarios(steps=150))
    def holds(scn: Scenario) -> None:
        run = Run(scn, checks=[_check_quiet])
        run.run()
        run.drain()

    holds()
    assert checked["quiet"] > 1000  # not vacuous: that many quiet quotes were probed


mids = st.lists(st.decimals("90", "110", places=2), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(mids, st.lists(st.floats(0.01, 3.0), min_size=60, max_size=60), st.data())
def test_a_quote_in_the_risk_quiet_band_trips_and_clears_nothing(
    path: list[Decimal], gaps: list[float], data: st.DataObject
) -> None:
    risk = RiskMonitor(RiskConfig(jump_pct=D("0.05"), jump_window=5.0, stale_after=1e6))
    now = 0.0
    for mid, gap in zip(path, gaps, strict=False):
        now += gap
        risk.on_quote(
            Quote(
                symbol="X",
                bid=mid - D("0.01"),
                bid_qty=D(1),
                ask=mid + D("0.01"),
                ask_qty=D(1),
                ts=0,
            ),
            now,
        )
        band = risk.quiet_band()
        if band is None:
            continue
        lo, hi = max(band[0], D(1)), min(band[1], D(1000))
        if not lo < hi:
            continue
        probe = copy.deepcopy(risk)
        inside = data.draw(st.decimals(lo, hi, places=4).filter(lambda m, a=lo, b=hi: a < m < b))
        later = now + data.draw(st.floats(0.0, 3.0))
        quote = Quote(
            symbol="X",
            bid=inside - D("0.0001"),
            bid_qty=D(1),
            ask=inside + D("0.0001"),
            ask_qty=D(1),
            ts=0,
        )
        assert probe.on_quote(quote, later) == []


def test_the_inbox_absorbs_quiet_quotes_and_hands_them_over_first() -> None:
    clock = iter([5.0, 6.0])
    inbox = Inbox(10, lambda: None, clock=lambda: next(clock))
    inbox.band = (D("99"), D("101"))
    quiet = Quote(symbol="X", bid=D("99.9"), bid_qty=D(1), ask=D("100.1"), ask_qty=D(1), ts=0)
    inbox.deliver(quiet)
    with pytest.raises(trio.WouldBlock):
        inbox.receive.receive_nowait()  # nothing woke the symbol
    assert (inbox.absorbed_at, inbox.quotes_absorbed) == (5.0, 1)
    loud = Quote(symbol="X", bid=D("101.9"), bid_qty=D(1), ask=D("102.1"), ask_qty=D(1), ts=0)
    inbox.deliver(loud)  # outside the band: it wakes the symbol, replacing the quiet one
    assert inbox.receive.receive_nowait() is Marker.QUOTE
    assert inbox.quotes_skipped == 1 and inbox.absorbed_at is None
    assert inbox.take_quote() is loud and inbox.taken_at is None
    inbox.band = (D("99"), D("101"))
    inbox.deliver(quiet)
    inbox.poke(Marker.GATES)  # a marker clears the band until the symbol has looked again
    assert inbox.band is None
    assert inbox.take_quote() is quiet and inbox.taken_at == 6.0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data recordings")
def test_the_replay_makes_the_same_fills_with_fewer_wakeups(tmp_path: Path) -> None:
    paths = sorted(SHARED_DATA.glob("*.gz"))
    config = Config()
    off = attrs.evolve(
        config,
        run=attrs.evolve(config.run, absorb_quiet_quotes=False, absorb_quiet_trades=False),
    )
    fast = run_replay(paths, config, out=tmp_path / "fast", progress=None)
    slow = run_replay(paths, off, out=tmp_path / "slow", progress=None)
    assert (tmp_path / "fast" / "fills.csv").read_bytes() == (
        tmp_path / "slow" / "fills.csv"
    ).read_bytes()
    # the equity curve too, but for the governor's exposure column: the governor hears of
    # an absorbed quote's mid when the symbol next wakes (within a second), not at once
    assert _without(tmp_path / "fast" / "equity.csv", "exposure") == _without(
        tmp_path / "slow" / "equity.csv", "exposure"
    )
    for sym in slow["symbols"]:
        assert fast["symbols"][sym]["events"] < 0.8 * slow["symbols"][sym]["events"]


def _without(path: Path, column: str) -> list[list[str]]:
    import csv

    with path.open() as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index(column)
    return [row[:drop] + row[drop + 1 :] for row in rows]
