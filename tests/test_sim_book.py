"""Unit tests of the simulated venue's per-symbol book (exchange/sim/book.py) and account
balances (exchange/sim/balances.py)."""

from __future__ import annotations

from decimal import Decimal

from mm_trio.domain.config import SimVenueConfig
from mm_trio.exchange.sim.balances import Balances
from mm_trio.exchange.sim.book import RestingOrder, SymbolBook
from mm_trio.exchange.sim.registry import build_registry

D = Decimal
SPEC = build_registry(SimVenueConfig())[0]["BTC/USDT"]


def order(cid: str, side: str, price: str, seq: int) -> RestingOrder:
    return RestingOrder("BTC/USDT", cid, str(seq), side, D(price), D(1), 0, seq)  # type: ignore[arg-type]


def test_orders_rest_in_price_time_priority_per_side() -> None:
    book = SymbolBook(SPEC)
    for o in (
        order("b1", "BUY", "100", 1),
        order("b2", "BUY", "101", 2),
        order("b3", "BUY", "100", 3),
        order("s1", "SELL", "103", 4),
        order("s2", "SELL", "102", 5),
    ):
        book.rest(o)
    assert [o.client_id for o in book.bids] == ["b2", "b1", "b3"]
    assert [o.client_id for o in book.asks] == ["s2", "s1"]
    removed = book.remove("b1")
    assert removed is not None and removed.client_id == "b1"
    assert [o.client_id for o in book.bids] == ["b2", "b3"] and "b1" not in book.by_cid
    assert book.remove("b1") is None


def test_a_taker_uses_up_the_displayed_quantity() -> None:
    book = SymbolBook(SPEC)
    book.ask_avail, book.bid_avail = D(2), D(1)
    assert book.take_displayed(True, D("1.5")) == D("1.5")
    assert book.take_displayed(True, D(1)) == D("0.5")  # only what is left
    assert book.take_displayed(True, D(1)) == 0 and book.ask_avail == 0
    assert book.take_displayed(False, D(3)) == 1 and book.bid_avail == 0


def test_locks_release_and_fill_settlement() -> None:
    bal = Balances({"USDT": D(1000), "BTC": D(1)})
    assert not bal.lock("USDT", D(1001)) and bal.get("USDT").free == 1000  # nothing moved
    assert not bal.lock("ETH", D(1))  # unknown asset
    assert bal.lock("USDT", D(500))
    bal.settle_buy("BTC", "USDT", D("0.5"), D(250), D(249), D("0.1"))  # filled a bit better
    assert (bal.get("BTC").free, bal.get("USDT").free, bal.get("USDT").locked) == (
        D("1.5"),
        D(500) + D(250) - D(249) - D("0.1"),
        D(250),
    )
    bal.release("USDT", D(250))
    assert bal.get("USDT").locked == 0
    assert bal.lock("BTC", D(1))
    bal.settle_sell("BTC", "USDT", D(1), D(100), D("0.05"))
    assert bal.get("BTC").locked == 0 and bal.get("BTC").free == D("0.5")
    bal.open("ETH")
    bal.open("BTC")  # known already: unchanged
    assert bal.all()["ETH"].free == 0 and bal.get("BTC").free == D("0.5")
    event = bal.event("USDT", 7)
    assert (event.asset, event.free, event.locked, event.ts) == (
        "USDT",
        bal.get("USDT").free,
        D(0),
        7,
    )
