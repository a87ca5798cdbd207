"""What the status line, the control plane and the summary show for one symbol."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from mm_trio.domain.model import ZERO

if TYPE_CHECKING:
    from mm_trio.engine.manager import SymbolManager


class SymbolSnapshot(msgspec.Struct, kw_only=True):
    """What the status line, the control plane and the summary show for one symbol."""

    symbol: str
    state: str
    reason: str
    mid: Decimal | None
    position: Decimal
    open_orders: int
    fills: int
    buys: int
    sells: int
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: dict[str, Decimal]
    fees_quote: Decimal
    total_pnl: Decimal
    max_inventory: Decimal
    breakers: list[str]
    breaker_trips: int
    events: int
    quotes_skipped: int
    trades_dropped: int
    rejects: int
    withdrawn: int = 0  # placements cancelled while queued for the limiter: never sent
    foreign_reports: int = 0  # execution reports of orders not ours: ignored
    quotes_absorbed: int = 0  # quotes in the quiet band: they did not wake the symbol
    trades_absorbed: int = 0  # trades in the trade band: kept for later, no wake-up
    paused: bool = False  # an operator's pause (state HALTED, reason says so)


class EquityRow(NamedTuple):
    """The part of a :class:`SymbolSnapshot` an equity-curve sample records: read once a
    sample for every symbol, so only what it needs is computed."""

    mid: Decimal | None
    position: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_quote: Decimal
    total_pnl: Decimal
    open_orders: int
    state: str
    breakers: list[str]


def _marked(m: SymbolManager) -> tuple[Decimal | None, Decimal, Decimal, Decimal]:
    """``(mid, unrealized PnL, fees in quote, total PnL)`` at the latest mid."""
    mid = m.market_mid
    pos = m.position
    fees_quote = pos.fees_in_quote(mid) if mid is not None else pos.fees.get(m.spec.quote, ZERO)
    if mid is None:
        return mid, ZERO, fees_quote, pos.realized_pnl - fees_quote
    return mid, pos.unrealized_pnl(mid), fees_quote, pos.total_pnl(mid)


def equity_row(m: SymbolManager) -> EquityRow:
    """What an equity sample records of one running symbol (the same values as in
    :func:`symbol_snapshot`)."""
    mid, unrealized, fees_quote, total = _marked(m)
    return EquityRow(
        mid,
        m.strategy.position,
        m.position.realized_pnl,
        unrealized,
        fees_quote,
        total,
        m.strategy.live_count,
        str(m.state),
        sorted(m.risk.tripped()),
    )


def symbol_snapshot(m: SymbolManager) -> SymbolSnapshot:
    """What one running symbol shows (status line, control plane, summary)."""
    pos = m.position
    mid, unrealized, fees_quote, total = _marked(m)
    return SymbolSnapshot(
        symbol=m.symbol,
        state=str(m.state),
        reason=m.reason,
        mid=mid,
        position=m.strategy.position,
        open_orders=m.strategy.live_count,
        fills=pos.fills,
        buys=pos.buys,
        sells=pos.sells,
        realized_pnl=pos.realized_pnl,
        unrealized_pnl=unrealized,
        fees=dict(pos.fees),
        fees_quote=fees_quote,
        total_pnl=total,
        max_inventory=pos.max_inventory,
        breakers=sorted(m.risk.tripped()),
        breaker_trips=m.risk.trips,
        events=m.events,
        quotes_skipped=m.quotes_skipped,
        trades_dropped=m.trades_dropped,
        rejects=m.rejects,
        withdrawn=m.withdrawn,
        foreign_reports=m.foreign_reports,
        quotes_absorbed=m.inbox.quotes_absorbed,
        trades_absorbed=m.inbox.trades_absorbed,
        paused=m.paused,
    )
