"""Reporting one symbol's exposure and PnL to the aggregate governor, without a report per
quote: a report is sent when the position, the open or cancelling buys or the fills changed,
and otherwise (while holding) when the mid moved :data:`MARK_TO_MARKET_MOVE` or
:data:`MARK_TO_MARKET_INTERVAL` seconds passed."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.core.position import PositionManager
from mm_trio.core.risk.governor import GovernorChange, RiskGovernor
from mm_trio.domain.model import ZERO

MARK_TO_MARKET_MOVE = Decimal("0.0002")
"""A holding symbol re-reports its exposure once the mid moved this fraction (2 bp) ..."""
MARK_TO_MARKET_INTERVAL = 0.5
"""... or this many seconds passed since its last report (the governor's view of held
inventory is at most this stale between reports)."""


class ExposureReporter:
    """Tells the governor one symbol's exposure and PnL; ``on_changes`` gets what changed."""

    def __init__(
        self,
        symbol: str,
        strategy: GridStrategy,
        position: PositionManager,
        governor: RiskGovernor,
        on_changes: Callable[[list[GovernorChange]], None],
    ) -> None:
        self._symbol = symbol
        self._strategy = strategy
        self._position = position
        self._governor = governor
        self._on_changes = on_changes
        self._key: tuple[Decimal, Decimal, Decimal, int] | None = None
        self._open_buys: Decimal | None = None  # cached strategy.open_buy_notional
        self._cancelling_buys = ZERO  # cached strategy.cancelling_buy_notional
        self._orders_changed = True  # our order set may have changed since it was cached
        self._reported_mid: Decimal | None = None
        self._reported_at = 0.0

    def orders_changed(self) -> None:
        """Our order set may have changed: recompute the open buy notional next time."""
        self._orders_changed = True

    def force(self) -> None:
        """Send the next report whatever it holds (it replaces a reservation the governor
        made for a buy it just admitted)."""
        self._key = None

    def report(self, mid: Decimal | None, now: float, exclude_buy_notional: Decimal = ZERO) -> None:
        """Report (unless nothing moved); ``exclude_buy_notional``: buys of the batch the
        governor is about to admit one by one."""
        strategy = self._strategy
        position = strategy.position
        if self._orders_changed or self._open_buys is None:
            self._open_buys = strategy.open_buy_notional
            self._cancelling_buys = strategy.cancelling_buy_notional
            self._orders_changed = False
        open_buys = self._open_buys - exclude_buy_notional
        cancelling = self._cancelling_buys
        key = (position, open_buys, cancelling, self._position.fills)
        if key == self._key:
            if not position:
                return  # flat and unchanged: exposure and PnL cannot have moved
            # holding: mark to market when the mid moved enough or enough time passed
            last_mid = self._reported_mid
            if (
                mid is not None
                and last_mid is not None
                and abs(mid - last_mid) < last_mid * MARK_TO_MARKET_MOVE
                and now - self._reported_at < MARK_TO_MARKET_INTERVAL
            ):
                return
        self._key = key
        self._reported_mid = mid
        self._reported_at = now
        changes = self._governor.update(
            self._symbol,
            position=position,
            mid=mid,
            open_buy_notional=open_buys,
            cancelling_buy_notional=cancelling,
            pnl=self._position.total_pnl(mid) if mid is not None else ZERO,
            now=now,
        )
        if changes:
            self._on_changes(changes)
