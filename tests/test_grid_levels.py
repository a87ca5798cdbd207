"""Grid level maths: anchored prices snapped to tick, index lookups, validation."""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.grid.levels import LevelGrid, snap_down

D = Decimal


def arith(anchor: str = "100", step: str = "0.5", tick: str = "0.01") -> LevelGrid:
    return LevelGrid(spacing="arithmetic", step=D(step), anchor=D(anchor), tick=D(tick))


def geo(anchor: str = "100", step: str = "0.01", tick: str = "0.01") -> LevelGrid:
    return LevelGrid(spacing="geometric", step=D(step), anchor=D(anchor), tick=D(tick))


def test_snap_down() -> None:
    assert snap_down(D("100.019"), D("0.01")) == D("100.01")
    assert snap_down(D("-0.001"), D("0.01")) == D("-0.01")
    assert snap_down(D("7"), D("0.5")) == D("7")


def test_arithmetic_prices() -> None:
    g = arith()
    assert g.price(0) == D("100")
    assert g.price(2) == D("101")
    assert g.price(-3) == D("98.5")
    assert g.step_at(D("123")) == D("0.5")


def test_anchor_is_snapped_to_tick() -> None:
    g = arith(anchor="100.009")
    assert g.anchor == D("100.00")
    assert g.price(1) == D("100.5")


def test_arithmetic_step_not_a_tick_multiple_snaps_down() -> None:
    g = arith(step="0.015")
    assert [g.price(k) for k in range(4)] == [D("100"), D("100.01"), D("100.03"), D("100.04")]
    assert g.price(-1) == D("99.98")  # 99.985 floored


def test_geometric_prices_exact() -> None:
    g = geo()
    assert g.price(1) == D("101.00")
    assert g.price(2) == D("102.01")
    assert g.price(3) == D("103.03")  # 103.0301 floored
    assert g.price(-1) == D("99.00")  # 99.0099.. floored
    for k in range(-60, 60):
        exact = Fraction(100) * Fraction(101, 100) ** k
        assert g.price(k) == D(math.floor(exact * 100)) / 100, k
        assert g.price(k) % D("0.01") == 0


def test_geometric_ignores_callers_decimal_context() -> None:
    expected = [geo().price(k) for k in range(-20, 20)]
    with decimal.localcontext() as ctx:
        ctx.prec = 4
        assert [geo().price(k) for k in range(-20, 20)] == expected


def test_step_smaller_than_tick_rejected() -> None:
    with pytest.raises(ValueError, match="grid.step"):
        arith(step="0.005")
    with pytest.raises(ValueError, match="grid.step"):
        geo(step="0.00001")  # 100 * 0.00001 = 0.001 < tick 0.01
    with pytest.raises(ValueError, match="grid.step"):
        geo(step="1.5")
    with pytest.raises(ValueError, match="grid.anchor"):
        arith(anchor="0.001")


def test_geometric_levels_may_collide_far_below_anchor() -> None:
    g = geo(anchor="1", step="0.01", tick="0.01")  # one step at the anchor = one tick
    prices = [g.price(k) for k in range(-120, 5)]
    assert prices == sorted(prices)
    assert any(not g.distinct_above(k) for k in range(-120, 0))
    assert g.distinct_above(0)


def test_min_gap() -> None:
    assert arith(step="0.015").min_gap(0) == D("0.01")
    g = geo()
    for k in range(-30, 30):
        assert g.price(k + 1) - g.price(k) >= g.min_gap(k) > 0


def test_lookups_simple() -> None:
    g = arith()
    assert g.level_below(D("100")) == -1
    assert g.level_below(D("100.01")) == 0
    assert g.level_at_or_below(D("100")) == 0
    assert g.level_above(D("100")) == 1
    assert g.level_above(D("99.99")) == 0
    assert g.level_below(D("-3")) < 0


grids = st.one_of(
    st.builds(
        arith,
        anchor=st.sampled_from(["100", "2.37", "31000.5"]),
        step=st.sampled_from(["0.5", "0.015", "1", "0.01"]),
        tick=st.just("0.01"),
    ),
    st.builds(
        geo,
        anchor=st.sampled_from(["100", "2.37", "31000.5"]),
        step=st.sampled_from(["0.01", "0.005", "0.0123"]),
        tick=st.just("0.01"),
    ),
)


@settings(max_examples=300)
@given(grids, st.integers(-5000, 5000), st.integers(0, 99))
def test_lookups_match_definitions(g: LevelGrid, k0: int, frac: int) -> None:
    # a price between two levels (or exactly on one)
    lo, hi = g.price(k0), g.price(k0 + 1)
    x = lo + (hi - lo) * frac / 100
    if g.spacing == "geometric" and x <= 0:
        return
    k = g.level_below(x)
    assert g.price(k) < x <= g.price(k + 1)
    k = g.level_at_or_below(x)
    assert g.price(k) <= x < g.price(k + 1)
    k = g.level_above(x)
    assert g.price(k - 1) <= x < g.price(k)


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# about a second each or more: left out of the fast unit pass, pytest -m "not slow"
pytest.mark.slow(test_lookups_match_definitions)
