"""Property tests: one test per SPEC §4 grid invariant, over random markets and venues.

Each test drives :class:`GridStrategy` through :mod:`tests.grid_harness` (random price
paths; random specs and grid configs, arithmetic and geometric, long and neutral; acks,
rejects, partial and full fills, cancels racing fills, duplicated and reordered reports,
random gates and stop/resume) and checks its invariant after every call.
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

from hypothesis import given, settings

from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import OrderUpdate
from tests.grid_harness import Run, Scenario, replay, scenarios

EXAMPLES = settings(max_examples=400)
D = Decimal


def _places(intents: list[Intent]) -> list[PlaceOrder]:
    return [i for i in intents if isinstance(i, PlaceOrder)]


def _run(scn: Scenario, *checks: object) -> Run:
    run = Run(scn, checks=list(checks))  # type: ignore[arg-type]
    run.run()
    run.drain()
    return run


# --------------------------------------------------------------------------- 1
def _check_inv01(run: Run, kind: str, intents: list[Intent]) -> None:
    counts = Counter((o.level, o.side) for o in run.strategy.live_orders())
    assert max(counts.values(), default=0) <= 1, counts
    venue_live = Counter(
        (o.level, o.side) for o in run.venue.values() if o.status in ("NEW", "PARTIALLY_FILLED")
    )
    assert max(venue_live.values(), default=0) <= 1, venue_live


@EXAMPLES
@given(scenarios())
def test_inv01_one_live_order_per_level_and_side(scn: Scenario) -> None:
    _run(scn, _check_inv01)


# --------------------------------------------------------------------------- 2
def _check_inv02(run: Run, kind: str, intents: list[Intent]) -> None:
    live = run.strategy.live_orders()
    buys = [o.price for o in live if o.side == "BUY"]
    sells = [o.price for o in live if o.side == "SELL"]
    if buys and sells:
        assert max(buys) < min(sells), (buys, sells)
    vb = [
        o.price
        for o in run.venue.values()
        if o.side == "BUY" and o.status in ("NEW", "PARTIALLY_FILLED")
    ]
    vs = [
        o.price
        for o in run.venue.values()
        if o.side == "SELL" and o.status in ("NEW", "PARTIALLY_FILLED")
    ]
    if vb and vs:
        assert max(vb) < min(vs)


@EXAMPLES
@given(scenarios())
def test_inv02_no_self_cross(scn: Scenario) -> None:
    _run(scn, _check_inv02)


# --------------------------------------------------------------------------- 3
def _check_inv03(run: Run, kind: str, intents: list[Intent]) -> None:
    q = run.quote
    for p in _places(intents):
        assert q is not None
        r = p.request
        assert r.post_only == p.opening
        if p.opening:
            if r.side == "BUY":
                assert r.price < q.ask, (r, q)
            else:
                assert r.price > q.bid, (r, q)


@EXAMPLES
@given(scenarios())
def test_inv03_opening_orders_post_only_safe(scn: Scenario) -> None:
    _run(scn, _check_inv03)


# --------------------------------------------------------------------------- 4
def _check_inv04(run: Run, kind: str, intents: list[Intent]) -> None:
    spec = run.scn.spec
    cfg = run.scn.config
    for p in _places(intents):
        r = p.request
        assert spec.filter_error(r.price, r.qty) is None, (r, spec)
        assert r.price % spec.tick_size == 0 and r.qty % spec.step_size == 0
        assert r.qty >= spec.min_qty and r.price * r.qty >= spec.min_notional
        if p.opening:
            assert cfg.lower is None or r.price >= cfg.lower
            assert cfg.upper is None or r.price <= cfg.upper


@EXAMPLES
@given(scenarios())
def test_inv04_prices_and_quantities_obey_filters(scn: Scenario) -> None:
    _run(scn, _check_inv04)


# --------------------------------------------------------------------------- 5
def _check_inv05(run: Run, kind: str, intents: list[Intent]) -> None:
    s = run.strategy
    side_of = {}
    for o in run.venue.values():
        side_of[o.client_id] = o.side
    fills = sum((c if side_of[cid] == "BUY" else -c for cid, c in run.seen_cum.items()), D(0))
    fees = sum(run.seen_fee.values(), D(0))
    assert s.position == run.scn.start_position + fills - fees
    assert s.position == run.scn.start_position + sum(s.level_inventory().values(), D(0))


@EXAMPLES
@given(scenarios())
def test_inv05_position_equals_fills_and_sum_of_levels(scn: Scenario) -> None:
    run = _run(scn, _check_inv05)
    # once every report is in, the strategy agrees with the venue exactly
    assert run.strategy.position == run.true_position


# --------------------------------------------------------------------------- 6
def _check_inv06(run: Run, kind: str, intents: list[Intent]) -> None:
    s = run.strategy
    committed = sum((o.qty - o.filled for o in s.live_orders() if o.side == "SELL"), D(0))
    assert s.position - committed >= 0, (s.position, committed)
    assert run.true_position >= 0
    if run.scn.config.mode == "long":
        assert all(not (p.opening and p.request.side == "SELL") for p in _places(intents))


@EXAMPLES
@given(scenarios(mode="long"))
def test_inv06_long_never_sells_more_than_held(scn: Scenario) -> None:
    _run(scn, _check_inv06)


@settings(max_examples=200)
@given(scenarios(mode="neutral"))
def test_inv06_neutral_never_sells_more_than_held(scn: Scenario) -> None:
    _run(scn, _check_inv06)


# --------------------------------------------------------------------------- 7
def _check_inv07(run: Run, kind: str, intents: list[Intent]) -> None:
    grid = run.strategy.grid
    for p in _places(intents):
        if p.opening:
            continue
        assert grid is not None
        r = p.request
        k = int(r.client_id.split("_")[-2][1:])
        fill_price = grid.price(k)
        # every fill on slot k's opening orders happened at price(k) (or better)
        opened = [f for f in run.fills if f[1] == k and f[2] != r.side and run.venue[f[0]].opening]
        if r.side == "SELL":
            assert r.price == grid.price(k + 1)
            # one step (floored to tick), and at least one tick where a step is below a tick
            assert r.price - fill_price >= max(grid.min_gap(k), grid.tick)
            assert all(r.price > f[3] for f in opened)
        else:
            assert r.price == grid.price(k - 1)
            assert fill_price - r.price >= max(grid.min_gap(k - 1), grid.tick)
            assert all(r.price < f[3] for f in opened)


@EXAMPLES
@given(scenarios())
def test_inv07_take_profit_at_least_one_step_above_fill(scn: Scenario) -> None:
    _run(scn, _check_inv07)


# --------------------------------------------------------------------------- 8
def _check_inv08(run: Run, kind: str, intents: list[Intent]) -> None:
    s = run.strategy
    if kind == "report":
        # applying the same report again changes nothing
        report = run.events[-1]
        assert isinstance(report, OrderUpdate)
        before = run.snapshot()
        assert s.on_order_update(report) == []
        assert run.snapshot() == before
    # cumulative filled quantity never decreases
    filled = getattr(run, "_filled", {})
    for o in s.live_orders():
        assert o.filled >= filled.get(o.client_id, D(0))
        filled[o.client_id] = o.filled
    run._filled = filled  # type: ignore[attr-defined]
    # reordering the pending reports converges to the same state
    if run.outbox and len(run.events) % 7 == 0:
        base = s.generation
        rnd = random.Random(len(run.events))
        a, b = run.clone_strategy(), run.clone_strategy()
        batch = list(run.outbox)
        for r in batch:
            a.on_order_update(r)
        rnd.shuffle(batch)
        for r in batch:
            b.on_order_update(r)
        assert a.position == b.position
        assert a.level_inventory() == b.level_inventory()

        def old_orders(x: object) -> dict[str, tuple[object, ...]]:
            orders = {**x._orders, **x._done}  # type: ignore[attr-defined]
            return {
                cid: (o.status, o.filled)
                for cid, o in orders.items()
                if int(cid.rsplit("_", 1)[1]) <= base
            }

        assert old_orders(a) == old_orders(b)


@EXAMPLES
@given(scenarios())
def test_inv08_reports_idempotent_monotonic_and_order_independent(scn: Scenario) -> None:
    _run(scn, _check_inv08)


# --------------------------------------------------------------------------- 9
def _check_fixpoint(run: Run, kind: str, intents: list[Intent]) -> None:
    assert run.strategy._reconcile() == []  # every call leaves a fixpoint


@settings(max_examples=150)
@given(scenarios())
def test_inv09_deterministic(scn: Scenario) -> None:
    first = _run(scn, _check_fixpoint)
    second = _run(scn)
    assert first.intents == second.intents
    assert first.events == second.events
    # the same events into a fresh strategy give the same intents, call by call
    assert replay(scn, first.events) == first.intents
    ids = [p.request.client_id for batch in first.intents for p in _places(batch)]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- 10
def _check_inv10(run: Run, kind: str, intents: list[Intent]) -> None:
    s = run.strategy
    cfg = run.scn.config
    live = s.live_orders()
    la = cfg.levels_above if cfg.mode == "neutral" else 0
    assert len(live) <= cfg.levels_below + la + s.held_levels()
    assert len(live) <= run.scn.spec.max_orders
    assert sum(1 for o in live if o.opening and o.side == "BUY") <= cfg.levels_below
    assert sum(1 for o in live if o.opening and o.side == "SELL") <= la


@EXAMPLES
@given(scenarios())
def test_inv10_live_order_count_bounded(scn: Scenario) -> None:
    _run(scn, _check_inv10)


# --------------------------------------------------------------------------- 11
def _check_inv11(run: Run, kind: str, intents: list[Intent]) -> None:
    s = run.strategy
    prev = getattr(run, "_buy_notional", None)
    now = s.open_buy_notional
    if run.reduce_only:
        for p in _places(intents):
            assert p.request.side == "SELL", p
        committed = sum((o.qty - o.filled for o in s.live_orders() if o.side == "SELL"), D(0))
        assert s.position - committed >= 0
        if prev is not None:
            assert now <= prev
        if kind == "gates" and not run.halt:
            # entering reduce-only keeps resting buys (the governor trims only the excess)
            assert not any(isinstance(i, CancelOrder) for i in intents), intents
    run._buy_notional = now  # type: ignore[attr-defined]


@EXAMPLES
@given(scenarios())
def test_inv11_reduce_only_never_increases_exposure(scn: Scenario) -> None:
    _run(scn, _check_inv11)


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# whole trading sessions under hypothesis, seconds each: left out of the fast unit pass,
# pytest -m "not slow"
import pytest  # noqa: E402

pytestmark = pytest.mark.slow
