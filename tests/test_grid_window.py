"""Unit tests of the grid's trailing window (core/grid/window.py) and side helpers (sides.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.sides import AWAY, OPPOSITE, most_aggressive, reaches
from mm_trio.core.grid.window import TrailingWindow

D = Decimal
GRID = LevelGrid(spacing="arithmetic", step=D(1), anchor=D(100), tick=D("0.01"))


def window(h: str = "0", skew: str = "0", below: int = 3, above: int = 2) -> TrailingWindow:
    return TrailingWindow(
        levels_below=below, levels_above=above, inventory_skew=D(skew), hysteresis=D(h)
    )


def at(w: TrailingWindow, mid: str, half_spread: str = "0.10", net: int = 0) -> object:
    m, s = D(mid), D(half_spread)
    return w.track(GRID, m, m - s, m + s, net)


@pytest.mark.parametrize(
    ("side", "price", "bound", "expected"),
    [
        ("BUY", "100", "100", True),
        ("BUY", "101", "100", True),
        ("BUY", "99", "100", False),
        ("SELL", "100", "100", True),
        ("SELL", "99", "100", True),
        ("SELL", "101", "100", False),
    ],
)
def test_reaches_mirrors_the_sides(side: str, price: str, bound: str, expected: bool) -> None:
    assert reaches(side, D(price), D(bound)) is expected  # type: ignore[arg-type]


def test_most_aggressive_is_the_price_nearest_the_market() -> None:
    assert most_aggressive("BUY", D(1), D(2)) == 2
    assert most_aggressive("SELL", D(1), D(2)) == 1
    assert most_aggressive("BUY", None, D(2)) == 2
    assert most_aggressive("SELL", D(1), None) == 1
    assert most_aggressive("BUY", None, None) is None
    assert OPPOSITE["BUY"] == "SELL" and AWAY == {"BUY": -1, "SELL": 1}


def test_edges_levels_and_distances_mirror_each_other() -> None:
    w = window()
    assert at(w, "100.50") == (0, 1)  # x = y = the mid: 100 below it, 101 above
    assert w.commit() is True and w.key == (0, 1)
    assert list(w.levels("BUY")) == [0, -1, -2]
    assert list(w.levels("SELL")) == [1, 2]
    assert [w.contains("BUY", k) for k in (1, 0, -2, -3)] == [False, True, True, False]
    assert [w.contains("SELL", k) for k in (0, 1, 2, 3)] == [False, True, True, False]
    assert (w.distance("BUY", -2), w.distance("SELL", 2)) == (2, 1)
    assert w.bound("BUY") == D("100.50") and w.bound("SELL") == D("100.50")


def test_a_side_without_levels_has_no_window() -> None:
    w = window(above=0)
    assert at(w, "100.50") == (0, None)
    w.commit()
    assert w.edge("SELL") is None and list(w.levels("SELL")) == []
    assert not w.contains("SELL", 1) and w.distance("SELL", 5) == 0
    assert w.bound("SELL") is None and w.size("SELL") == 0


def test_settled_until_the_edges_move_then_commit_reports_the_move() -> None:
    w = window()
    at(w, "100.50")
    assert not w.settled  # nothing committed yet
    w.commit()
    at(w, "100.90")
    assert w.settled
    at(w, "101.30")
    assert not w.settled and w.commit() is True and w.key == (1, 2)


def test_hysteresis_keeps_the_edge_inside_its_band() -> None:
    # h = 0.25: the BUY top 0 (price 100) is kept while 99.75 < x <= 101.25
    w = window(h="0.25", above=0)
    at(w, "100.50", half_spread="0.01")
    w.commit()
    assert at(w, "101.20", half_spread="0.01") == (0, None)  # x = 101.20: kept
    assert w.settled
    assert at(w, "101.30", half_spread="0.01") == (1, None)  # past the band: moves
    w.commit()
    # back below price(1) = 101 but inside the band: kept, yet no new order fits on it
    assert at(w, "100.90", half_spread="0.01") == (1, None)
    assert not w.settled  # the edge stopped taking orders: a reconcile is due
    assert w.commit() is False  # ... though the levels did not move
    assert at(w, "101.05", half_spread="0.01") == (1, None) and not w.settled


def test_inventory_skew_shifts_the_window_against_held_levels() -> None:
    w = window(skew="1")
    assert at(w, "100.50", net=0) == (0, 1)
    # ref = 100.50 - 1 * 2 * 1 = 98.50: buys move down; sells stay above the bid (100.40)
    assert at(w, "100.50", net=2) == (-2, 1)
    # ref = 101.50: sells move up; buys stay below the ask (100.60)
    assert at(w, "100.50", net=-1) == (0, 2)


def test_no_market_no_window() -> None:
    w = window()
    assert w.track(None, None, None, None, 0) == (None, None)
    assert w.track(GRID, D(100), None, D(101), 0) == (None, None)
