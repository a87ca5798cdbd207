"""Client order ids (SPEC §3): never reused on an account, and a query answer that is not
the order we sent is never adopted.

A venue remembers an account's past orders by client id, so an id a later run reuses can
make a query (after a 5xx or a timeout) find an EARLIER run's filled order and take its
fills for ours. Generations start at the venue clock in milliseconds (``run_generation``),
so ids of later runs never repeat earlier ones.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.domain.config import GridConfig
from mm_trio.domain.ids import (
    GENERATION_EPOCH_NS,
    MAX_ID_LEN,
    make_client_id,
    parse_client_id,
    run_generation,
    symbol_tag,
)
from mm_trio.domain.intents import PlaceOrder
from mm_trio.domain.model import OpenOrder, OrderRequest, OrderUpdate, Quote, order_mismatch
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.base import OutcomeUnknown, StillWanted
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import FakeExchange, spec
from tests.test_orchestrator import make_config, wait_for

D = Decimal
MS = 1_000_000


# --------------------------------------------------------------------------- the id format


@pytest.mark.slow
@given(
    prefix=st.from_regex(r"[A-Za-z0-9-]{1,8}", fullmatch=True),
    base=st.from_regex(r"[A-Z][A-Z0-9]{0,11}", fullmatch=True),
    quote=st.sampled_from(["USDT", "BTC", "FDUSD", "TRY"]),
    side=st.sampled_from(["BUY", "SELL"]),
    level=st.integers(-99999, 999999),
    generation=st.integers(0, 10**13 - 1),
)
def test_every_id_fits_and_parses_back(
    prefix: str, base: str, quote: str, side: Any, level: int, generation: int
) -> None:
    tag = symbol_tag(f"{base}/{quote}", prefix)
    cid = make_client_id(prefix, tag, side, level, generation)
    assert len(cid) <= MAX_ID_LEN
    parsed = parse_client_id(cid)
    assert parsed is not None
    assert (parsed.prefix, parsed.side, parsed.level, parsed.generation) == (
        prefix,
        side,
        level,
        generation,
    )


def test_run_generation_counts_milliseconds_of_venue_time() -> None:
    assert run_generation(GENERATION_EPOCH_NS) == 0
    assert run_generation(GENERATION_EPOCH_NS - 5 * MS) == 0  # never negative
    assert run_generation(GENERATION_EPOCH_NS + 1234 * MS + 999_999) == 1234


def _quote(mid: Decimal) -> Quote:
    return Quote(
        symbol="BTC/USDT",
        bid=mid - D("0.01"),
        bid_qty=D(1),
        ask=mid + D("0.01"),
        ask_qty=D(1),
        ts=0,
    )


def _ids_of_a_run(start_ns: int, orders: int) -> list[str]:
    """The client ids a strategy started at venue time ``start_ns`` emits for ``orders``
    orders: the venue acknowledges every order and confirms every cancel while the price
    walks up, so the trailing window keeps placing new buys."""
    s = GridStrategy(
        spec("BTC/USDT"),
        GridConfig(step=D("0.001"), levels_below=3),
        generation_start=run_generation(start_ns),
    )
    ids: list[str] = []
    placed: dict[str, OrderRequest] = {}
    mid = D(100)
    while len(ids) < orders:
        todo = s.on_quote(_quote(mid))
        while todo:
            intent = todo.pop(0)
            if type(intent) is PlaceOrder:
                r = intent.request
                ids.append(r.client_id)
                placed[r.client_id] = r
                status = "NEW"
            else:
                r = placed[intent.client_id]
                status = "CANCELED"
            todo += s.on_order_update(
                OrderUpdate(
                    symbol=r.symbol,
                    client_id=r.client_id,
                    side=r.side,
                    price=r.price,
                    qty=r.qty,
                    status=status,
                )
            )
        mid = (mid * D("1.005")).quantize(D("0.01"))
    return ids[:orders]


@pytest.mark.slow
@given(
    start=st.integers(GENERATION_EPOCH_NS, GENERATION_EPOCH_NS + 10**18),
    orders=st.integers(1, 60),
    gap_ms=st.integers(0, 5000),
)
def test_a_later_run_never_reuses_an_earlier_runs_ids(start: int, orders: int, gap_ms: int) -> None:
    """A run that placed ``orders`` orders is followed by one that starts at least that
    many milliseconds later (the venue's order-rate limits allow a few per second): no id
    of the second run was used by the first."""
    first = _ids_of_a_run(start, orders)
    second = _ids_of_a_run(start + (orders + gap_ms) * MS, orders)
    assert not set(first) & set(second)
    assert len(set(first)) == len(first)


async def test_a_symbol_added_again_never_reuses_its_ids(autojump_clock: trio.abc.Clock) -> None:
    """Removed and added again within one process (even at the same venue time): the new
    manager's generations start above the old one's."""
    fake = FakeExchange(["AAA/USDT"])
    fake.now_ns = lambda: GENERATION_EPOCH_NS + 10**12  # type: ignore[method-assign]
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        for _ in range(2):
            m = await orch.add_symbol("AAA/USDT")
            fake.inject(
                Quote(
                    symbol="AAA/USDT",
                    bid=D("10.00"),
                    bid_qty=D(1),
                    ask=D("10.01"),
                    ask_qty=D(1),
                    ts=1,
                )
            )
            await wait_for(lambda m=m: len(m.strategy.live_orders()) == 4)
            await orch.remove_symbol("AAA/USDT")
    ids = [r.client_id for r in fake.placed]
    assert len(ids) == 8
    assert len(set(ids)) == 8, ids
    gens = [p.generation for p in map(parse_client_id, ids) if p is not None]
    assert min(gens) > run_generation(fake.now_ns())


# --------------------------------------------------------------------------- adoption


def _order(**kw: Any) -> OpenOrder:
    fields: dict[str, Any] = dict(
        symbol="BTC/USDT",
        client_id="mmt_BTCUSDT_B-1_1",
        order_id="7",
        side="BUY",
        price=D("100.00"),
        qty=D("0.5"),
        cum_qty=D("0.5"),
        status="FILLED",
        ts=0,
    )
    fields.update(kw)
    return OpenOrder(**fields)


def test_order_mismatch_table() -> None:
    sent = dict(side="BUY", price=D("100.00"), qty=D("0.5"), not_before_ns=10**18)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({}, None),  # no time known: the fields match
        ({"price": D("100.0000")}, None),  # the venue's decimals: the same number
        ({"ts": 10**18}, None),
        ({"ts": 10**18 - 10**8}, None),  # within the clock tolerance
        ({"side": "SELL"}, "side"),
        ({"price": D("99.99")}, "price"),
        ({"qty": D("0.4")}, "quantity"),
        ({"ts": 10**18 - 60 * 10**9}, "before this symbol started"),
    ]
    for changes, want in cases:
        got = order_mismatch(_order(**changes), **sent)  # type: ignore[arg-type]
        if want is None:
            assert got is None, changes
        else:
            assert got is not None and want in got, (changes, got)


class EarlierRunVenue(FakeExchange):
    """Every placement answers 503 (outcome unknown) and a query by id finds an order an
    earlier run placed under the same id, FILLED long before this run started."""

    def __init__(self, symbols: list[str], now_ns: int) -> None:
        super().__init__(symbols)
        self._now = now_ns
        self.queries = 0

    def now_ns(self) -> int:
        return self._now

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        await trio.sleep(0.01)
        raise OutcomeUnknown("503 Service Unavailable")

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        self.queries += 1
        parsed = parse_client_id(client_id)
        assert parsed is not None
        # same id, same level and side -- but the earlier run's price and time
        return OpenOrder(
            symbol=symbol,
            client_id=client_id,
            order_id="1",
            side=parsed.side,
            price=D("9.50"),
            qty=D("1"),
            cum_qty=D("1"),
            status="FILLED",
            ts=self._now - 3600 * 10**9,
        )

    async def order_fills(self, order: OpenOrder) -> list[Any]:
        raise AssertionError("the earlier run's fills must never be fetched")


async def test_a_query_answer_that_is_not_our_order_is_never_adopted(
    autojump_clock: trio.abc.Clock,
) -> None:
    venue = EarlierRunVenue(["AAA/USDT"], GENERATION_EPOCH_NS + 10**12)
    config = make_config()
    async with open_orchestrator(venue, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol("AAA/USDT")
        venue.inject(
            Quote(
                symbol="AAA/USDT", bid=D("10.00"), bid_qty=D(1), ask=D("10.01"), ask_qty=D(1), ts=1
            )
        )
        await wait_for(lambda: venue.queries >= 8)
        await trio.sleep(5)
        snap = m.snapshot()
        assert snap.fills == 0
        assert snap.position == 0 and m.strategy.position == 0
        # the placements were given up on, not adopted as FILLED
        assert not [o for o in m.strategy.live_orders() if o.filled]
