"""One reconcile of a grid strategy: the intents that bring its orders in line with its state.

:class:`Reconcile` is what ``GridStrategy._reconcile`` runs after every event that changed
something. It runs these phases in order, each written once for a side:

1. **cancels**: everything when stopped; opening orders on ``halt_opening`` or out of the
   window (``reduce_only`` keeps resting BUYs: the governor trims only its excess, see
   :meth:`~mm_trio.core.grid.strategy.GridStrategy.trim_buys`);
2. **closing orders** due (``HOLDING`` slots, by level): placed unless blocked: a closing
   order that opening orders of the other side would cross cancels them and is *deferred*;
   one without room under the venue's max is counted;
3. **venue-max room**: if closing orders had no room, the opening orders farthest from the
   price are cancelled for them and no opening order is placed;
4. **opening orders**, BUYs then SELLs: on the window's levels from its edge, strictly
   inside the window's bound and behind every live or deferred order of the other side, on
   ``EMPTY`` slots only, while the side has fewer than its window size.

The pass keeps the no-self-cross bounds as it goes (the best live price of each side, the
best deferred closing price of each side), so orders placed early in it bound later ones.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

from mm_trio.core.grid.book import OrderBook
from mm_trio.core.grid.inventory import Inventory
from mm_trio.core.grid.levels import LevelGrid, snap_down
from mm_trio.core.grid.sides import OPPOSITE, most_aggressive, reaches
from mm_trio.core.grid.sizing import Sizing
from mm_trio.core.grid.slots import OrderState, Slot, SlotState
from mm_trio.core.grid.window import TrailingWindow
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import ZERO, Side, SymbolSpec

Place = Callable[[int, Side, Decimal, Decimal, bool], PlaceOrder]
"""``place(level, side, price, qty, opening)``: record a new order, return its intent."""
Cancel = Callable[[OrderState], CancelOrder]
"""``cancel(order)``: mark ``order`` cancel-requested, return its intent."""

_SIDES: tuple[Side, Side] = ("BUY", "SELL")


class Gates(NamedTuple):
    """What the strategy may do: :meth:`GridStrategy.set_gates`, ``stop`` / ``resume``."""

    halt_opening: bool = False
    reduce_only: bool = False
    stopped: bool = False


class Reconcile:
    """One pass: construct it with the strategy's state, :meth:`run` it once."""

    __slots__ = (
        "book",
        "inventory",
        "window",
        "sizing",
        "grid",
        "spec",
        "gates",
        "position",
        "rejected",
        "place",
        "cancel",
        "out",
        "live",
        "best",
        "deferred",
        "sell_committed",
        "uncovered_long",
        "reserve",
        "n_live",
        "room_needed",
    )

    def __init__(
        self,
        *,
        book: OrderBook,
        inventory: Inventory,
        window: TrailingWindow,
        sizing: Sizing,
        grid: LevelGrid | None,
        spec: SymbolSpec,
        gates: Gates,
        position: Decimal,
        rejected: set[tuple[Side, int]],
        place: Place,
        cancel: Cancel,
    ) -> None:
        self.book = book
        self.inventory = inventory
        self.window = window
        self.sizing = sizing
        self.grid = grid
        self.spec = spec
        self.gates = gates
        self.position = position
        self.rejected = rejected
        self.place = place
        self.cancel = cancel
        self.out: list[Intent] = []
        self.live = book.by_level()  # the live orders as the pass began
        # most aggressive live price per side (orders placed by this pass included)
        self.best: dict[Side, Decimal | None] = {"BUY": None, "SELL": None}
        # most aggressive due closing price per side that was not placed
        self.deferred: dict[Side, Decimal | None] = {"BUY": None, "SELL": None}
        self.sell_committed = ZERO  # base quantity live SELLs still commit
        self.uncovered_long = ZERO
        self.reserve = ZERO
        self.n_live = len(book)
        self.room_needed = 0  # closing orders due that had no room under the venue max

    def run(self) -> list[Intent]:
        self._cancel_gated()
        if self.grid is None:
            return self.out
        self._scan_live()
        for slot in self.inventory.holding():
            self._close(self.grid, slot)
        if self.room_needed:
            self._make_room()
            return self.out
        if not (self.gates.stopped or self.gates.halt_opening):
            for side in _SIDES:
                self._open(self.grid, side)
        return self.out

    # ------------------------------------------------------------------ 1. cancels
    def _cancel_gated(self) -> None:
        stopped, halt = self.gates.stopped, self.gates.halt_opening
        window = self.window
        for o in self.live:
            if o.cancel_requested:
                continue
            if stopped or (o.opening and (halt or not window.contains(o.side, o.level))):
                self.out.append(self.cancel(o))

    # ------------------------------------------------------------------ 2. closing orders
    def _scan_live(self) -> None:
        best = self.best
        for o in self.live:
            if o.side == "SELL":
                self.sell_committed += o.remaining
            best[o.side] = most_aggressive(o.side, best[o.side], o.price)
        self.reserve = self.inventory.fee_reserve()
        self.uncovered_long = self.inventory.uncovered_long()

    def _close(self, grid: LevelGrid, slot: Slot) -> None:
        """Place the closing order of a ``HOLDING`` slot, or defer it."""
        level, lot = slot.level, slot.lot
        side: Side = "SELL" if lot > 0 else "BUY"
        price = self.sizing.closing_price(grid, level, lot)
        qty = slot.closing_qty
        if side == "SELL":  # spot: never sell more than the position not yet committed
            avail = snap_down(
                self.position - self.sell_committed - self.reserve, self.spec.step_size
            )
            if avail < qty:
                qty = avail
            placeable = qty > 0 and self.spec.filter_error(price, qty) is None
        else:
            placeable = qty > 0 and not self.gates.reduce_only
        self.deferred[side] = most_aggressive(side, self.deferred[side], price)
        if self.gates.stopped or not placeable or (side, level) in self.rejected:
            return
        bound = self.best[OPPOSITE[side]]
        if bound is not None and reaches(side, price, bound):
            self._cancel_crossed(side, price)  # and wait for the cancels to be confirmed
            return
        if self.n_live >= self.spec.max_orders:
            self.room_needed += 1
            return
        self._emit(level, side, price, qty, opening=False)
        if side == "SELL":
            self.uncovered_long -= lot

    def _cancel_crossed(self, side: Side, price: Decimal) -> None:
        """Cancel the opening orders of the other side that a ``side`` order at ``price``
        would cross."""
        other = OPPOSITE[side]
        for o in self.live:
            if (
                o.side == other
                and o.opening
                and reaches(side, price, o.price)
                and not o.cancel_requested
                and o.live
            ):
                self.out.append(self.cancel(o))

    # ------------------------------------------------------------------ 3. venue-max room
    def _make_room(self) -> None:
        live = self.book.live
        pending = sum(1 for o in live.values() if o.opening and o.cancel_requested)
        need = self.room_needed - pending
        if need <= 0:
            return
        window = self.window

        def farthest_first(o: OrderState) -> tuple[int, str, int]:
            return (-window.distance(o.side, o.level), o.side, o.level)

        victims = sorted(
            (o for o in live.values() if o.opening and not o.cancel_requested), key=farthest_first
        )
        for o in victims[:need]:
            self.out.append(self.cancel(o))

    # ------------------------------------------------------------------ 4. opening orders
    def _open(self, grid: LevelGrid, side: Side) -> None:
        """Place the opening orders of ``side`` its window is missing."""
        window = self.window
        if window.edge(side) is None or (side == "BUY" and self.gates.reduce_only):
            return
        size = window.size(side)
        n_open = self.book.opening_count(side)
        other = OPPOSITE[side]
        # behind every live and every deferred closing order of the other side
        limit = most_aggressive(other, self.best[other], self.deferred[other])
        bound = window.bound(side)
        # spot: opening SELLs leave the uncovered long lots for their take-profits
        free = (
            self.position - self.sell_committed - self.uncovered_long - self.reserve
            if side == "SELL"
            else None
        )
        inventory, rejected, max_orders = self.inventory, self.rejected, self.spec.max_orders
        for level in window.levels(side):
            if n_open >= size or self.n_live >= max_orders:
                break
            price = grid.price(level)
            if limit is not None and reaches(side, price, limit):
                continue
            if bound is None or reaches(side, price, bound):
                continue  # a kept edge level the price has reached (hysteresis)
            slot = inventory.get(level)
            if slot is not None and slot.state is not SlotState.EMPTY:
                continue
            if (side, level) in rejected:
                continue
            qty = self.sizing.opening_qty(grid, level, side)
            if not qty or (free is not None and qty > free):
                continue
            self._emit(level, side, price, qty, opening=True)
            n_open += 1
            if free is not None:
                free -= qty

    def _emit(self, level: int, side: Side, price: Decimal, qty: Decimal, *, opening: bool) -> None:
        self.out.append(self.place(level, side, price, qty, opening))
        self.n_live += 1
        self.best[side] = most_aggressive(side, self.best[side], price)
        if side == "SELL" and not opening:
            self.sell_committed += qty
