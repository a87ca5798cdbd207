"""``GridStrategy.note_quote``: the ticker's cheap hand-over of a quote kept inside the quiet
band (issue 12 (b)) leaves the strategy exactly as ``on_quote`` would, and ``on_quote``
would have emitted nothing.

Hypothesis drives the random markets of :mod:`tests.grid_harness`; after every call a quote
strictly inside ``quiet_band()`` goes to two copies of the strategy, one through
``on_quote`` and one through ``note_quote``, and the two copies must agree attribute by
attribute (orders, slots, gates, window edges and bounds, the latest quote).
"""

from __future__ import annotations

import copy
import enum
from decimal import Decimal
from typing import Any

from hypothesis import given, settings

from mm_trio.domain.intents import Intent
from mm_trio.domain.model import Quote
from tests.grid_harness import Run, Scenario, scenarios
from tests.test_quiet_band import _quote_inside, quiet_quote

D = Decimal
MAX_DEPTH = 12  # the strategy's objects nest a few levels; deeper means a cycle


def dump(obj: Any, depth: int = 0) -> Any:
    """Everything an object holds, as comparable plain data (attributes and slots)."""
    if isinstance(obj, (str, int, float, bool, Decimal, type(None))):
        return obj
    if isinstance(obj, enum.Enum):
        return repr(obj)
    assert depth < MAX_DEPTH, "unexpectedly deep object graph"
    if isinstance(obj, (list, tuple)):
        return [dump(x, depth + 1) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(x) for x in obj)
    if isinstance(obj, dict):
        return {repr(k): dump(v, depth + 1) for k, v in obj.items()}
    if callable(obj) and not isinstance(obj, type):  # a function or method held as a hook
        return getattr(obj, "__qualname__", repr(type(obj)))
    fields: dict[str, Any] = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                fields[name] = dump(getattr(obj, name), depth + 1)
    for name, value in getattr(obj, "__dict__", {}).items():
        fields[name] = dump(value, depth + 1)
    return (type(obj).__name__, fields)


probed = {"quiet": 0}


def _check_note(run: Run, kind: str, intents: list[Intent]) -> None:
    quote = quiet_quote(run)
    if quote is None:
        return
    handled, noted = copy.deepcopy(run.strategy), copy.deepcopy(run.strategy)
    assert handled.on_quote(quote) == [], quote
    noted.note_quote(quote)
    assert dump(noted) == dump(handled)
    assert noted.quiet_band() == handled.quiet_band()
    probed["quiet"] += 1


def test_note_quote_inside_the_band_is_on_quote_without_intents() -> None:
    probed["quiet"] = 0

    @settings(max_examples=60, deadline=None)
    @given(scenarios(steps=60))
    def holds(scn: Scenario) -> None:
        run = Run(scn, checks=[_check_note])
        run.run()

    holds()
    assert probed["quiet"] > 100  # not vacuous: that many quiet quotes were probed


def test_dump_sees_a_difference_in_the_latest_quote() -> None:
    """The comparison is not vacuous: two strategies one tick apart differ in it."""
    scn_run = Run(_one_scenario())
    scn_run.run()
    strategy = scn_run.strategy
    band = strategy.quiet_band()
    assert band is not None
    a, b = copy.deepcopy(strategy), copy.deepcopy(strategy)
    quote = _quote_inside(*band, scn_run.scn.spec.tick_size)
    assert quote is not None
    a.note_quote(quote)
    b.note_quote(_shifted(quote, scn_run.scn.spec.tick_size))
    assert dump(a) != dump(b)


def _shifted(q: Quote, tick: Decimal) -> Quote:
    return Quote(
        symbol=q.symbol, bid=q.bid, bid_qty=q.bid_qty, ask=q.ask + tick, ask_qty=D(1), ts=0
    )


def _one_scenario() -> Scenario:
    found: list[Scenario] = []

    @settings(max_examples=50, deadline=None, database=None)
    @given(scenarios(steps=20))
    def pick(scn: Scenario) -> None:
        run = Run(scn)
        run.run()
        if run.strategy.quiet_band() is not None and not found:
            found.append(scn)

    pick()
    assert found
    return found[0]
