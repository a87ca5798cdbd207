"""``mm-trio run``'s start checks: every symbol's grid fits the symbol (tick, levels at the
current price) and can pay for an order (see :mod:`mm_trio.core.grid.funding`), with the
price from the venue where a check needs one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
import trio

from mm_trio.core.grid.funding import buy_cost, funding_problem, sell_cost
from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.domain.config import GridConfig
from mm_trio.domain.model import SymbolSpec
from mm_trio.engine.orchestrator import Orchestrator

log = logging.getLogger(__name__)

PRICE_TIMEOUT = 10.0
"""Seconds to wait for the venue's price of one symbol before checking without it."""
DEPTH_LEVELS = 5


def _mid_of_depth(book: Any) -> Decimal | None:
    try:
        bid, ask = Decimal(book["bids"][0][0]), Decimal(book["asks"][0][0])
    except (KeyError, IndexError, TypeError, ArithmeticError, ValueError):
        return None
    return (bid + ask) / 2 if bid > 0 and ask > 0 else None


async def venue_price(orch: Orchestrator, symbol: str) -> Decimal | None:
    """A current price of ``symbol`` from the venue (``None`` if it cannot tell)."""
    exchange: Any = orch.exchange
    engine = getattr(exchange, "engine", None)  # the simulated venue: its own book
    if engine is not None:
        quote = engine.last_quote(symbol)
        price: Decimal | None = quote.mid if quote is not None else None
        return price if price is not None else engine.start_prices.get(symbol)
    depth = getattr(exchange, "depth", None)
    if depth is None:
        return None
    with trio.move_on_after(PRICE_TIMEOUT):
        try:
            return _mid_of_depth(await depth(symbol, DEPTH_LEVELS))
        except Exception as exc:  # the check is a courtesy: trading reports real rejects
            log.warning("%s: no price from the venue for the funding check: %s", symbol, exc)
    return None


def grid_problem(grid: GridConfig, spec: SymbolSpec, price: Decimal | None) -> str | None:
    """Why ``grid`` cannot trade ``spec`` (its levels at ``price`` collide, an anchor below
    one tick...), as the grid itself would refuse it once trading, or ``None``."""
    if grid.anchor is None and price is not None and price > 0:
        grid = attrs.evolve(grid, anchor=price)  # the levels the first quote would give
    try:
        GridStrategy(spec, grid)
    except ValueError as exc:
        return f"{spec.symbol}: {exc}"
    return None


async def funding_problems(orch: Orchestrator, grids: Mapping[str, GridConfig]) -> list[str]:
    """One line per symbol whose grid cannot trade: its levels do not fit the symbol (at
    the venue's price), or it cannot pay for a single opening order."""
    problems = []
    for symbol, grid in grids.items():
        spec = orch.specs[symbol]
        price = grid.anchor
        if price is None and (grid.spacing == "geometric" or _needs_price(grid)):
            price = await venue_price(orch, symbol)
        key = (
            f"symbols.{symbol!r}.order_size"
            if "order_size" in orch.config.symbols.get(symbol, {})
            else "grid.order_size"
        )
        problem = grid_problem(grid, spec, price) or funding_problem(
            grid, spec, orch.balances, price, key
        )
        if problem is not None:
            problems.append(problem)
    return problems


def _needs_price(grid: GridConfig) -> bool:
    """Whether the funding check needs a price (an order sized in the other asset)."""
    sell_unknown = grid.mode == "neutral" and sell_cost(grid, None) is None
    return buy_cost(grid, None) is None or sell_unknown
