"""The orchestrator's ticker visits every symbol once a second, in slices.

Up to ``TICK_SLICE`` symbols are ticked at the same instant (the second's start), followed
by the governor's tick and the tick hooks; more symbols are ticked in slices of that size
spread evenly over the second, so many symbols' deferred work is no stall once a second.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.engine.manager import SymbolManager
from mm_trio.engine.orchestrator import (
    TICK_PHASE,
    TICK_SECONDS,
    TICK_SLICE,
    open_orchestrator,
)
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange

SECONDS = 3


async def _ticks(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, list[float]], list[float], float]:
    """Tick times per symbol and of the tick hooks over :data:`SECONDS` seconds."""
    symbols = [f"S{i:03d}/USDT" for i in range(n)]
    fake = FakeExchange(symbols)
    config = config_from_dict({})
    at: dict[str, list[float]] = defaultdict(list)
    tick = SymbolManager.tick

    def noting(self: SymbolManager) -> None:
        at[self.symbol].append(trio.current_time())
        tick(self)

    monkeypatch.setattr(SymbolManager, "tick", noting)
    hooks: list[float] = []
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        start = trio.current_time()
        orch.tick_hooks.append(lambda: hooks.append(trio.current_time()))
        for s in symbols:
            await orch.add_symbol(s)
        await trio.sleep(SECONDS + 0.95)  # the last slice of the last second included
    return at, hooks, start


async def test_a_few_symbols_are_ticked_together_once_a_second(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    at, hooks, start = await _ticks(TICK_SLICE, monkeypatch)
    times = {tuple(v) for v in at.values()}
    assert len(times) == 1  # every symbol at the same instants
    (seconds,) = times
    assert len(seconds) == SECONDS
    assert seconds[0] == pytest.approx(start + TICK_SECONDS + TICK_PHASE)
    assert [b - a for a, b in zip(seconds, seconds[1:], strict=False)] == pytest.approx(
        [TICK_SECONDS] * (SECONDS - 1)
    )
    assert hooks == pytest.approx(list(seconds))  # the hooks right after the symbols


async def test_many_symbols_are_ticked_in_slices_spread_over_the_second(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 4 * TICK_SLICE + 3  # five slices, the last one short
    at, hooks, start = await _ticks(n, monkeypatch)
    assert len(at) == n
    assert all(len(v) == SECONDS for v in at.values())  # each symbol once a second
    for times in at.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps == pytest.approx([TICK_SECONDS] * (SECONDS - 1))
    first = start + TICK_SECONDS + TICK_PHASE
    instants = sorted({v[0] for v in at.values()})
    slices = 5
    assert instants == pytest.approx([first + j * TICK_SECONDS / slices for j in range(slices)])
    per_instant = [sum(1 for v in at.values() if v[0] == t) for t in instants]
    assert per_instant == [TICK_SLICE] * 4 + [3]
    assert hooks[0] == pytest.approx(first)  # the governor and hooks keep the second's start
    assert len(hooks) == SECONDS


async def test_a_symbol_removed_mid_second_is_not_ticked_again(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbols = [f"S{i:03d}/USDT" for i in range(3 * TICK_SLICE)]
    fake = FakeExchange(symbols)
    config = config_from_dict({})
    ticked: list[str] = []
    tick = SymbolManager.tick

    def noting(self: SymbolManager) -> None:
        ticked.append(self.symbol)
        tick(self)

    monkeypatch.setattr(SymbolManager, "tick", noting)
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        start = trio.current_time()
        for s in symbols:
            await orch.add_symbol(s)
        last = symbols[-1]  # in the last slice, two thirds into the second
        await trio.sleep_until(start + TICK_SECONDS + TICK_PHASE + 0.1)
        assert last not in ticked and symbols[0] in ticked
        await orch.remove_symbol(last)
        await trio.sleep(2 * TICK_SECONDS)
        assert last not in ticked
