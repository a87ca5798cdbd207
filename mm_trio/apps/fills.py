"""Fills as they happen, one short line each, for ``mm-trio run``'s terminal::

    14:03:05.120  BTC/USDT  BUY   0.00166 @ 59950.01  level -1  opening

The time is the local wall clock when the fill is printed (a simulated venue's clock is not
the wall's). It reads the orchestrator's journal (every execution report, and every outcome
the shell learnt by querying the venue), so the engine needs no hook of its own. A fill is
printed once (by symbol and trade id: a resync may deliver a report twice), and only for
orders of ours.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import OrderUpdate
from mm_trio.engine.orchestrator import Orchestrator

SEEN_FILLS = 10_000
"""How many (symbol, trade id) pairs are remembered to print each fill once."""
_FILL_KINDS = frozenset({"report", "outcome"})


def clock_text(now: float) -> str:
    """``HH:MM:SS.mmm`` (local time) of a Unix time in seconds."""
    return datetime.fromtimestamp(now).strftime("%H:%M:%S.%f")[:-3]


def fill_line(update: OrderUpdate, opening: bool | None, now: float) -> str:
    """One fill at ``now``: time, symbol, side, qty @ price, the grid level and its role."""
    parsed = parse_client_id(update.client_id)
    level = f"level {parsed.level}" if parsed is not None else "level ?"
    role = "" if opening is None else ("opening" if opening else "take-profit")
    partial = " (partial)" if update.status == "PARTIALLY_FILLED" else ""
    qty = f"{update.last_qty.normalize():f}"
    price = f"{update.last_price.normalize():f}"
    return (
        f"{clock_text(now)}  {update.symbol}  {update.side:<4}  {qty} @ {price}  "
        f"{level}  {role}{partial}"
    ).rstrip()


class FillPrinter:
    """Prints our fills to ``out`` as they arrive; :meth:`journal` is the orchestrator's
    journal callback, ``orch`` is set once the orchestrator exists."""

    def __init__(
        self, out: TextIO, *, enabled: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self.out = out
        self.clock = clock
        self.enabled = enabled
        self.orch: Orchestrator | None = None
        self.printed = 0
        self._seen: set[tuple[str, int]] = set()
        self._order: deque[tuple[str, int]] = deque()

    def journal(self, kind: str, payload: Any) -> None:
        if not self.enabled or kind not in _FILL_KINDS or type(payload) is not OrderUpdate:
            return
        update = payload
        if update.last_qty <= 0 or update.trade_id is None or self.orch is None:
            return
        try:
            manager = self.orch.manager(update.symbol)
        except Exception:  # not running (any more): nothing of ours to show
            return
        if not manager.strategy.knows(update.client_id):
            return  # not our order (hand-placed, another program's)
        key = (update.symbol, update.trade_id)
        if key in self._seen:
            return
        self._remember(key)
        # reports are journaled before the symbol handles them: the order is still live
        view = manager.strategy.live_order(update.client_id)
        opening = None if view is None else view.opening
        print(fill_line(update, opening, self.clock()), file=self.out, flush=True)
        self.printed += 1

    def _remember(self, key: tuple[str, int]) -> None:
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > SEEN_FILLS:
            self._seen.discard(self._order.popleft())
