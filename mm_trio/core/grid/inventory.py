"""The slots of one grid: the inventory held per level, and how many levels hold some.

:class:`Inventory` owns the :class:`~mm_trio.core.grid.slots.Slot` of every level that has a
lot, pending quantity or a live order (others are pruned), and counts the long and short
slots holding a placeable lot (the inventory skew of the window shifts by their difference).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from mm_trio.core.grid.sizing import FEE_RESERVE
from mm_trio.core.grid.slots import Slot, SlotState
from mm_trio.domain.model import ZERO


class Inventory:
    """Slots by level, and the held-level counters."""

    __slots__ = ("slots", "held_long", "held_short")

    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.held_long = 0  # slots with a placeable long lot
        self.held_short = 0  # slots with a placeable short lot

    @property
    def net_held(self) -> int:
        return self.held_long - self.held_short

    def get(self, level: int) -> Slot | None:
        return self.slots.get(level)

    def slot(self, level: int) -> Slot:
        """The slot of ``level``, made (empty) if it has none."""
        slot = self.slots.get(level)
        if slot is None:
            slot = self.slots[level] = Slot(level)
        return slot

    def set_closing_qty(self, slot: Slot, qty: Decimal) -> None:
        """Record the slot's recomputed closing quantity (after its lot or pending changed)."""
        if slot.closing_qty > 0:
            if slot.lot_sign > 0:
                self.held_long -= 1
            else:
                self.held_short -= 1
        slot.closing_qty = qty
        slot.lot_sign = 1 if slot.lot > 0 else -1
        if slot.closing_qty > 0:
            if slot.lot_sign > 0:
                self.held_long += 1
            else:
                self.held_short += 1

    def prune(self, slot: Slot) -> None:
        """Forget ``slot`` if it holds nothing and has no live order."""
        if slot.lot == 0 and slot.pending == 0 and slot.opening is None and slot.closing is None:
            del self.slots[slot.level]

    def holding(self) -> Iterator[Slot]:
        """``HOLDING`` slots (a closing order is due), by level."""
        slots = self.slots
        for level in sorted(slots):
            slot = slots[level]
            if slot.state is SlotState.HOLDING:
                yield slot

    def fee_reserve(self) -> Decimal:
        """Base quantity kept back for fees still to come on unconfirmed buy fills."""
        reserve = ZERO
        for s in self.slots.values():
            reserve += s.pending * FEE_RESERVE
        return reserve

    def uncovered_long(self) -> Decimal:
        """Long lots without a live take-profit: spot inventory opening sells leave alone."""
        uncovered = ZERO
        for s in self.slots.values():
            if s.lot > 0 and s.closing is None:
                uncovered += s.lot
        return uncovered

    def held_levels(self) -> int:
        return sum(1 for s in self.slots.values() if s.holds)

    def level_inventory(self) -> dict[int, Decimal]:
        return {k: s.lot for k, s in sorted(self.slots.items()) if s.lot != 0}
