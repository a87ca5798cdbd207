"""The seeded synthetic market-data feed."""

from __future__ import annotations

from decimal import Decimal

import attrs

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import Event, Quote, Trade
from mm_trio.exchange.sim.feed import SyntheticFeed, symbol_seed
from mm_trio.exchange.sim.matching import build_registry

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def make_feed(
    seed: int = 1, symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT"), **kw: object
) -> SyntheticFeed:
    config = attrs.evolve(SimVenueConfig(), seed=seed, **kw)
    specs, prices = build_registry(config)
    feed = SyntheticFeed(config, specs)
    for s in symbols:
        feed.add(s, prices[s])
    return feed


def run(feed: SyntheticFeed, seconds: int, step: int = SEC) -> list[Event]:
    out: list[Event] = []
    for t in range(0, seconds * SEC + 1, step):
        out += feed.advance(T0 + t)
    return out


def test_symbol_seed_is_stable() -> None:
    assert symbol_seed(1, "BTC/USDT") == symbol_seed(1, "BTC/USDT")
    assert symbol_seed(1, "BTC/USDT") != symbol_seed(2, "BTC/USDT")
    assert symbol_seed(1, "BTC/USDT") != symbol_seed(1, "ETH/USDT")
    # a fixed value: must not depend on PYTHONHASHSEED or the process
    assert symbol_seed(1, "BTC/USDT") == 0xEB8B493BCA805E04


def test_same_seed_identical_different_seed_different() -> None:
    a = run(make_feed(1), 60)
    b = run(make_feed(1), 60)
    c = run(make_feed(2), 60)
    assert a == b
    assert a != c
    assert len(a) > 1000


def test_advance_granularity_does_not_matter() -> None:
    a = run(make_feed(5), 30, step=SEC // 10)
    b = run(make_feed(5), 30, step=7 * SEC)
    c_feed = make_feed(5)
    c = c_feed.advance(T0) + c_feed.advance(T0 + 30 * SEC)
    assert a == c
    assert [e for e in b if e.ts <= T0 + 28 * SEC] == [e for e in a if e.ts <= T0 + 28 * SEC]


def test_ticks_on_interval_in_time_order_and_in_window() -> None:
    feed = make_feed(3, tick_interval_ms=250.0)
    first = feed.advance(T0 + 10)
    assert {e.ts for e in first} == {T0}  # first call: the tick at or before to_ts only
    events = feed.advance(T0 + 2 * SEC)
    quotes = [e for e in events if isinstance(e, Quote)]
    assert [q.ts for q in quotes if q.symbol == "BTC/USDT"] == [
        T0 + k * SEC // 4 for k in range(1, 9)
    ]
    assert all(T0 < e.ts <= T0 + 2 * SEC for e in events)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert feed.advance(T0 + 2 * SEC) == []
    assert feed.advance(T0 + SEC) == []


def test_prices_plausible_positive_on_grid_near_start() -> None:
    symbols = ("BTC/USDT", "DOGE/USDT", "ETH/BTC", "XRP/USDT")
    config = SimVenueConfig(seed=9)
    specs, prices = build_registry(config)
    feed = SyntheticFeed(config, specs)
    for s in symbols:
        feed.add(s, prices[s])
    events = feed.advance(T0) + feed.advance(T0 + 3600 * SEC)
    for s in symbols:
        spec, start = specs[s], prices[s]
        quotes = [e for e in events if isinstance(e, Quote) and e.symbol == s]
        trades = [e for e in events if isinstance(e, Trade) and e.symbol == s]
        assert len(quotes) == 36001
        assert 3600 < len(trades) < 3 * 3 * 3600  # about 3 per second
        for q in quotes:
            assert 0 < q.bid < q.ask <= q.bid + 3 * spec.tick_size
            assert q.bid % spec.tick_size == 0 and q.ask % spec.tick_size == 0
            assert q.bid_qty > 0 and q.ask_qty > 0 and q.bid_qty % spec.step_size == 0
            assert abs(q.mid / start - 1) < Decimal("0.2")
        mids = [q.mid for q in quotes]
        assert max(mids) != min(mids)  # it moves
        for t in trades:
            assert t.qty > 0 and t.qty % spec.step_size == 0
        assert [t.trade_id for t in trades] == list(range(1, len(trades) + 1))
    # trades print at the quote of their tick, on the right side
    by_tick = {(e.symbol, e.ts): e for e in events if isinstance(e, Quote)}
    for t in (e for e in events if isinstance(e, Trade)):
        q = by_tick[(t.symbol, t.ts)]
        assert t.price == (q.bid if t.buyer_maker else q.ask)
        assert t.qty <= (q.bid_qty if t.buyer_maker else q.ask_qty)


def test_symbols_are_independent_and_add_remove() -> None:
    both = make_feed(4, ("BTC/USDT", "ETH/USDT"))
    alone = make_feed(4, ("ETH/USDT",))
    a = [e for e in run(both, 20) if e.symbol == "ETH/USDT"]  # type: ignore[union-attr]
    b = run(alone, 20)
    assert a == b
    feed = make_feed(4, ("BTC/USDT",))
    feed.advance(T0)
    feed.remove("BTC/USDT")
    feed.remove("BTC/USDT")
    assert feed.advance(T0 + 5 * SEC) == []
    feed.add("ETH/USDT", Decimal(3000))
    events = feed.advance(T0 + 6 * SEC)
    assert {e.symbol for e in events} == {"ETH/USDT"}  # type: ignore[union-attr]
    assert min(e.ts for e in events) == T0 + 5 * SEC + SEC // 10


def test_zero_volatility_is_flat() -> None:
    feed = make_feed(1, ("ETH/USDT",), volatility=0.0)
    mids = {e.mid for e in run(feed, 10) if isinstance(e, Quote)}
    assert all(abs(m - 3000) <= Decimal("0.02") for m in mids)


def test_drift_moves_the_market_and_its_centre() -> None:
    """A negative drift makes a steadily falling market (mean reversion follows the drift)."""
    config = attrs.evolve(SimVenueConfig(), volatility=0.0002, drift=-0.001)
    specs, prices = build_registry(config)
    feed = SyntheticFeed(config, specs)
    feed.add("BTC/USDT", prices["BTC/USDT"])
    start = float(prices["BTC/USDT"])
    mids = []
    for minute in range(1, 6):
        feed.advance(minute * 60 * 10**9)
        mids.append(feed.mid("BTC/USDT"))
    assert all(b < a for a, b in zip(mids, mids[1:], strict=False))
    # about -0.1 %/s for 300 s: e^-0.3 ≈ 0.74 of the start (reversion lags a little)
    assert 0.70 * start < mids[-1] < 0.80 * start


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# about a second each or more: left out of the fast unit pass, pytest -m "not slow"
import pytest  # noqa: E402

pytest.mark.slow(test_prices_plausible_positive_on_grid_near_start)
