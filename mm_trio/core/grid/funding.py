"""Can the account pay for a grid's orders? Checked once at start (``mm-trio run``), so a
config that cannot trade is refused with the amounts instead of trading into rejects.

A long grid needs the quote asset for one opening BUY; a neutral grid trades if it can pay
for either side (a BUY in the quote asset, or a SELL of the base asset it holds). Orders sized
in the other asset than the one paid need a price: the grid's anchor, else the venue's.
"""

from __future__ import annotations

from decimal import Decimal

from mm_trio.domain.config import GridConfig
from mm_trio.domain.model import ZERO, Balance, SymbolSpec


def _held(balances: dict[str, Balance], asset: str) -> Decimal:
    """Free plus locked: what is locked may be in our own resting orders (a restarted run
    takes them over), so only an account that holds too little in all is refused."""
    b = balances.get(asset)
    return ZERO if b is None else b.total


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("0", "-0") else text


def buy_cost(grid: GridConfig, price: Decimal | None) -> Decimal | None:
    """Quote asset one opening BUY needs (``None``: base-sized and no price known)."""
    if grid.order_size_in == "quote":
        return grid.order_size
    return None if price is None else grid.order_size * price


def sell_cost(grid: GridConfig, price: Decimal | None) -> Decimal | None:
    """Base asset one opening SELL needs (``None``: quote-sized and no price known)."""
    if grid.order_size_in == "base":
        return grid.order_size
    return None if price is None or price <= 0 else grid.order_size / price


def funding_problem(
    grid: GridConfig,
    spec: SymbolSpec,
    balances: dict[str, Balance],
    price: Decimal | None,
    key: str = "order_size",
) -> str | None:
    """Why ``grid`` cannot place a single opening order with ``balances`` (free plus locked
    amounts), or ``None`` if it can (or it cannot be told without a price). ``key``: the
    config key named."""
    size = f"{key} = {_plain(grid.order_size)} {grid.order_size_in}"
    problems: list[str] = []
    need = buy_cost(grid, price)
    have = _held(balances, spec.quote)
    if need is not None and need > have:
        problems.append(
            f"one opening BUY ({size}) needs {_plain(need)} {spec.quote}, "
            f"the account holds {_plain(have)} {spec.quote}"
        )
    else:
        return None  # a BUY can be paid (or it cannot be told): the grid trades
    if grid.mode == "neutral":
        need_base = sell_cost(grid, price)
        have_base = _held(balances, spec.base)
        if need_base is None or need_base <= have_base:
            return None  # the SELL side can trade
        problems.append(
            f"one opening SELL needs {_plain(need_base)} {spec.base}, "
            f"the account holds {_plain(have_base)} {spec.base}"
        )
    return f"{spec.symbol}: the account cannot pay for an order: " + "; ".join(problems)
