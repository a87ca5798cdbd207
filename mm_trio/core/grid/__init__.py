"""Pure grid strategy (SPEC §4): level maths, slot/order state machines, the strategy."""

from mm_trio.core.grid.levels import LevelGrid, snap_down
from mm_trio.core.grid.slots import (
    ORDER_TRANSITIONS,
    SLOT_TRANSITIONS,
    LiveOrder,
    OrderReportError,
    SlotBookkeepingError,
    SlotState,
    SlotStateError,
)
from mm_trio.core.grid.strategy import GridStrategy

__all__ = [
    "ORDER_TRANSITIONS",
    "SLOT_TRANSITIONS",
    "GridStrategy",
    "LevelGrid",
    "LiveOrder",
    "OrderReportError",
    "SlotBookkeepingError",
    "SlotState",
    "SlotStateError",
    "snap_down",
]
