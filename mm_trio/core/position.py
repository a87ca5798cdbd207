"""Per-symbol inventory, average cost, FIFO realized PnL per grid level, fees (SPEC §5).

Pure: fills in, state out; no trio, no clock, no I/O; all money is ``Decimal``.

**Lots.** Every grid level keeps a FIFO queue of signed lots (``+qty`` long, ``-qty``
short) at the price they were opened. A fill at level ``k`` first closes lots of the
opposite sign at level ``k`` (oldest first) -- realizing ``(exit - entry) * qty`` -- and
opens a lot with what remains. A take-profit for the buy at level ``k`` carries level ``k``
in its client id (the slot level) although it rests one level higher, so it closes level
``k``'s lots; a neutral grid's sell at level ``k`` opens a short lot that the buy-back at
level ``k`` closes. Fills whose client id is not ours (level ``None``) go to one
symbol-wide FIFO queue. The position is ``start_position`` plus all open lots; the start
position itself carries no cost basis and no PnL.

**Fees in the base asset** (e.g. a buy of 1 BTC that delivers 0.999 BTC) reduce the
position, and the lot they were charged on: the fee is treated as base sold at the fill
price and handed over as a fee. So a base fee realizes ``(fill price - lot price) * fee``
(zero on the buy that opened the lot) and costs ``fee * fill price`` in quote, which is
what :meth:`PositionManager.fees_in_quote` reports for it. With that convention the PnL is
exact: ``total_pnl(mid) == cash flow of all fills - quote fees - base fees at their
fill price + (position - start) * mid``. Fees in a third asset (e.g. BNB) are kept in
``fees`` but not converted.

Fills are keyed by trade id: a report applied twice changes nothing.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

import msgspec

from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import OrderUpdate, Side

__all__ = ["Fill", "Lot", "PositionManager", "PositionSnapshot"]

ZERO = Decimal(0)


class Fill(msgspec.Struct, frozen=True):
    """One execution of one of our orders (or an unknown order: ``level`` ``None``)."""

    trade_id: int
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    level: int | None
    ts: int


class PositionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the PositionManager knows, for status, metrics and persistence."""

    symbol: str
    position: Decimal
    start_position: Decimal
    avg_cost: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal | None  # None without a mid
    fees: dict[str, Decimal]
    fees_in_quote: Decimal
    total_pnl: Decimal | None  # None without a mid
    mid: Decimal | None
    buys: int
    sells: int
    fills: int
    bought_qty: Decimal
    sold_qty: Decimal
    max_inventory: Decimal
    level_inventory: dict[int, Decimal]


class Lot:
    """An open lot: signed quantity at its opening price (mutable, internal)."""

    __slots__ = ("qty", "price")

    def __init__(self, qty: Decimal, price: Decimal) -> None:
        self.qty = qty
        self.price = price

    def __repr__(self) -> str:
        return f"Lot({self.qty} @ {self.price})"


class PositionManager:
    """Inventory and PnL of one symbol. See the module docstring for the conventions."""

    def __init__(
        self,
        symbol: str,
        base: str,
        quote: str,
        *,
        start_position: Decimal = ZERO,
        prefix: str | None = None,
    ) -> None:
        self.symbol = symbol
        self.base = base
        self.quote = quote
        self.prefix = prefix  # if set, client ids with another prefix are not ours
        self.start_position = start_position
        self.position = start_position
        self.realized_pnl = ZERO
        self.fees: dict[str, Decimal] = {}
        self.buys = 0
        self.sells = 0
        self.fills = 0
        self.bought_qty = ZERO
        self.sold_qty = ZERO
        self.max_inventory = ZERO
        self._lots: dict[int | None, deque[Lot]] = {}
        self._applied: set[int] = set()
        # running aggregates over all open lots, so PnL queries are O(1)
        self._lot_qty = ZERO  # sum of signed qty
        self._lot_cost = ZERO  # sum of signed qty * price
        self._long_qty = ZERO  # sum of qty of long lots
        self._long_cost = ZERO  # sum of qty * price of long lots
        self._base_fee_cost = ZERO  # base fees valued at the fill price they were charged at

    # ------------------------------------------------------------------ input
    def applied(self, trade_id: int) -> bool:
        return trade_id in self._applied

    def on_fill(self, fill: Fill) -> bool:
        """Apply a fill; ``False`` (and no change) if its trade id was applied before."""
        if fill.trade_id in self._applied:
            return False
        if fill.qty <= 0:
            raise ValueError(f"fill {fill.trade_id}: quantity {fill.qty} must be > 0")
        if fill.symbol != self.symbol:
            raise ValueError(f"fill {fill.trade_id} for {fill.symbol} sent to {self.symbol}")
        self._applied.add(fill.trade_id)
        self.fills += 1
        if fill.side == "BUY":
            self.buys += 1
            self.bought_qty += fill.qty
            self._apply(fill.level, fill.qty, fill.price)
        else:
            self.sells += 1
            self.sold_qty += fill.qty
            self._apply(fill.level, -fill.qty, fill.price)
        if fill.fee:
            asset = fill.fee_asset or self.quote
            self.fees[asset] = self.fees.get(asset, ZERO) + fill.fee
            if asset == self.base:
                # the fee is base taken from us at the fill price
                self._apply(fill.level, -fill.fee, fill.price)
                self._base_fee_cost += fill.fee * fill.price
        inventory = abs(self.position - self.start_position)
        if inventory > self.max_inventory:
            self.max_inventory = inventory
        return True

    def on_order_update(self, update: OrderUpdate) -> bool:
        """Apply the fill an execution report carries, if any (idempotent by trade id)."""
        if update.last_qty <= 0 or update.trade_id is None:
            return False
        return self.on_fill(self.fill_from_update(update))

    def fill_from_update(self, update: OrderUpdate) -> Fill:
        if update.trade_id is None:
            raise ValueError("execution report carries no trade id")
        parsed = parse_client_id(update.client_id)
        level = None
        if parsed is not None and (self.prefix is None or parsed.prefix == self.prefix):
            level = parsed.level
        return Fill(
            trade_id=update.trade_id,
            symbol=update.symbol,
            side=update.side,
            price=update.last_price,
            qty=update.last_qty,
            fee=update.fee,
            fee_asset=update.fee_asset,
            level=level,
            ts=update.ts,
        )

    def _apply(self, level: int | None, signed: Decimal, price: Decimal) -> None:
        """Close opposite lots of ``level`` FIFO, open a lot with the rest."""
        self.position += signed
        queue = self._lots.get(level)
        if queue is None:
            queue = self._lots[level] = deque()
        remaining = signed
        while remaining and queue and (queue[0].qty > 0) != (remaining > 0):
            lot = queue[0]
            close = min(abs(remaining), abs(lot.qty))
            if lot.qty > 0:  # long lot closed by a sell
                self.realized_pnl += (price - lot.price) * close
                lot.qty -= close
                remaining += close
                self._lot_qty -= close
                self._lot_cost -= close * lot.price
                self._long_qty -= close
                self._long_cost -= close * lot.price
            else:  # short lot closed by a buy
                self.realized_pnl += (lot.price - price) * close
                lot.qty += close
                remaining -= close
                self._lot_qty += close
                self._lot_cost += close * lot.price
            if lot.qty == 0:
                queue.popleft()
        if remaining:
            queue.append(Lot(remaining, price))
            self._lot_qty += remaining
            self._lot_cost += remaining * price
            if remaining > 0:
                self._long_qty += remaining
                self._long_cost += remaining * price
        if not queue:
            del self._lots[level]

    # ------------------------------------------------------------------ output
    @property
    def avg_cost(self) -> Decimal | None:
        """Weighted average price of the open long lots; ``None`` if there are none."""
        if self._long_qty <= 0:
            return None
        return self._long_cost / self._long_qty

    def unrealized_pnl(self, mid: Decimal) -> Decimal:
        """Σ over open lots of ``(mid - lot price) * signed qty``."""
        return mid * self._lot_qty - self._lot_cost

    def fees_in_quote(self, mid: Decimal | None = None) -> Decimal:
        """Quote fees plus base fees valued at the fill price they were charged at.

        ``mid`` is accepted for API symmetry but unused: the base given up as a fee has
        already left the lots at its fill price (see the module docstring), so valuing it
        at today's mid would count its later price change twice.
        """
        return self.fees.get(self.quote, ZERO) + self._base_fee_cost

    def total_pnl(self, mid: Decimal) -> Decimal:
        """Realized + unrealized - fees in quote."""
        return self.realized_pnl + self.unrealized_pnl(mid) - self.fees_in_quote(mid)

    def level_inventory(self) -> dict[int, Decimal]:
        """Net open quantity per grid level (levels with open lots only)."""
        out: dict[int, Decimal] = {}
        for level, queue in self._lots.items():
            if level is None:
                continue
            out[level] = sum((lot.qty for lot in queue), ZERO)
        return out

    def unassigned_inventory(self) -> Decimal:
        """Net open quantity of fills that belong to no level (not our client ids)."""
        return sum((lot.qty for lot in self._lots.get(None, ())), ZERO)

    def lots(self, level: int | None) -> list[tuple[Decimal, Decimal]]:
        """Open lots of ``level`` as ``(signed qty, price)``, oldest first."""
        return [(lot.qty, lot.price) for lot in self._lots.get(level, ())]

    def snapshot(self, mid: Decimal | None) -> PositionSnapshot:
        return PositionSnapshot(
            symbol=self.symbol,
            position=self.position,
            start_position=self.start_position,
            avg_cost=self.avg_cost,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=None if mid is None else self.unrealized_pnl(mid),
            fees=dict(self.fees),
            fees_in_quote=self.fees_in_quote(mid),
            total_pnl=None if mid is None else self.total_pnl(mid),
            mid=mid,
            buys=self.buys,
            sells=self.sells,
            fills=self.fills,
            bought_qty=self.bought_qty,
            sold_qty=self.sold_qty,
            max_inventory=self.max_inventory,
            level_inventory=self.level_inventory(),
        )
