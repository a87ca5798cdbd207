"""Runtime fault injection for tests (set via config or ``POST /_admin/faults``).

:class:`Faults` is the mutable state; the REST layer asks it, per request, what to do. The
admin endpoint takes JSON with any of the :class:`~mm_trio.venue.config.FaultConfig` fields
(counts are *added*... no: set, see :meth:`Faults.update`) plus ``"drop_websockets": true``
(close every websocket connection now).
"""

from __future__ import annotations

from typing import Any

from mm_trio.venue.config import FaultConfig

__all__ = ["Faults"]

_INT_FIELDS = ("fail_next", "fail_status", "timeout_next_orders", "timeout_next_cancels",
               "force_429", "force_418", "forced_retry_after")
_FLOAT_FIELDS = ("rest_delay_ms", "timeout_hang_s")


class Faults:
    """Mutable fault state; each ``take_*`` consumes one unit of a "next N" fault."""

    def __init__(self, config: FaultConfig) -> None:
        self.rest_delay_ms = config.rest_delay_ms
        self.fail_next = config.fail_next
        self.fail_status = config.fail_status
        self.timeout_next_orders = config.timeout_next_orders
        self.timeout_next_cancels = config.timeout_next_cancels
        self.timeout_hang_s = config.timeout_hang_s
        self.force_429 = config.force_429
        self.force_418 = config.force_418
        self.forced_retry_after = config.forced_retry_after
        self.ws_drops = 0  # how many times websockets were dropped

    def update(self, data: dict[str, Any]) -> None:
        """Set the given fields (validated; unknown keys raise ``ValueError``)."""
        known = set(_INT_FIELDS) | set(_FLOAT_FIELDS) | {"drop_websockets"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        for key in _INT_FIELDS:
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
                if key == "fail_status" and value not in (500, 502, 503, 504):
                    raise ValueError(f"fail_status must be 500, 502, 503 or 504, got {value}")
                setattr(self, key, value)
        for key in _FLOAT_FIELDS:
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{key} must be a number >= 0, got {value!r}")
                setattr(self, key, float(value))

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in (*_INT_FIELDS, *_FLOAT_FIELDS)}
        out["ws_drops"] = self.ws_drops
        return out

    def take(self, name: str) -> bool:
        """Consume one unit of the counter ``name``; True if there was one."""
        value = getattr(self, name)
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False
