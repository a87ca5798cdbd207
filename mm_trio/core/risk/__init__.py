"""Risk: per-symbol breakers (:class:`RiskMonitor`) and the aggregate :class:`RiskGovernor`."""

from mm_trio.core.risk.governor import ExposureSnapshot, GovernorChange, RiskGovernor
from mm_trio.core.risk.monitor import BREAKERS, HALT_OPENING, BreakerChange, RiskMonitor

__all__ = [
    "BREAKERS",
    "HALT_OPENING",
    "BreakerChange",
    "ExposureSnapshot",
    "GovernorChange",
    "RiskGovernor",
    "RiskMonitor",
]
