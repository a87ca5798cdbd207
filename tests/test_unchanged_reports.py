"""Reports that change nothing (``GridStrategy.unchanged_reports``).

Every outcome of ours reaches a symbol twice on a venue without lossless reports: once on
the stream and once as the request's own answer. The second changes nothing, and the
symbol then skips the gates and the governor, which only the first one can have moved.
A report that carries a fill, or a reject, is never skipped; and once an overflow resync
ends, the next event recomputes the gates even if it changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from mm_trio.domain.config import config_from_dict
from mm_trio.engine.manager import SymbolManager
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from tests.fakes import QuotingFake, ours, report_again

D = Decimal
SYM = "AAA/USDT"


class _Spy:
    """Counts the gate and governor work one symbol does."""

    def __init__(self, m: SymbolManager) -> None:
        self.gates = 0
        self.updates = 0
        apply_gates, update = m.gate.apply_gates, m._host.governor.update

        def gates(*args: object, **kw: object) -> object:
            self.gates += 1
            return apply_gates(*args, **kw)  # type: ignore[arg-type]

        def governor(*args: object, **kw: object) -> object:
            self.updates += 1
            return update(*args, **kw)  # type: ignore[arg-type]

        m.gate.apply_gates = gates  # type: ignore[method-assign]
        m._host.governor.update = governor  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("name", "changes", "skipped"),
    [
        ("the same NEW again", {}, True),
        ("a partial fill", {"status": "PARTIALLY_FILLED", "cum_qty": "q/2"}, False),
        ("a reject of the cancel (a REJECTED for a live order)", {"status": "REJECTED"}, False),
    ],
)
async def test_a_report_that_changes_nothing_skips_gates_and_governor(
    autojump_clock: trio.abc.Clock, name: str, changes: dict[str, object], skipped: bool
) -> None:
    config = config_from_dict({})
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)  # the grid is placed and acknowledged
        order = ours(fake, SYM)[0]
        spy = _Spy(m)
        unchanged, events = m.strategy.unchanged_reports, m.events
        fields = dict(changes)
        if fields.get("cum_qty") == "q/2":
            fields["cum_qty"] = fields["last_qty"] = order.qty / 2
            fields["last_price"] = order.price
            fields["trade_id"] = 777
        fake.inject(report_again(fake, order.client_id, **fields))
        await trio.sleep(0.01)
        assert m.events == events + 1, name
        if skipped:
            assert m.strategy.unchanged_reports == unchanged + 1
            assert (spy.gates, spy.updates) == (0, 0)
        else:
            assert spy.gates == 1
        if "cum_qty" in fields:
            assert m.position.position > 0  # the fill counted
            assert spy.updates == 1  # and the governor heard of the exposure


async def test_both_reports_of_one_outcome_count_once(autojump_clock: trio.abc.Clock) -> None:
    """The stream's report and the request's own answer: the strategy applies one."""
    config = config_from_dict({})
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)
        placed = len(ours(fake, SYM))
        assert placed > 0
        # every place got two NEW reports (stream + answer): one changed the order
        assert m.strategy.unchanged_reports == placed
        assert m.event_counts["order"] == 2 * placed


async def test_after_an_overflow_resync_an_unchanged_report_recomputes_the_gates(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = config_from_dict({})
    fake = QuotingFake([SYM])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol(SYM)
        await trio.sleep(0.5)
        order = ours(fake, SYM)[0]
        spy = _Spy(m)
        m._regate = True  # what the end of an overflow resync leaves when GATES did not fit
        fake.inject(report_again(fake, order.client_id))
        await trio.sleep(0.01)
        assert spy.gates == 1
        assert m._regate is False
        fake.inject(report_again(fake, order.client_id))
        await trio.sleep(0.01)
        assert spy.gates == 1  # only the first one had to
