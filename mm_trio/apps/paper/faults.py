"""Runtime fault injection for tests (set via config or ``POST /_admin/faults``).

:class:`Faults` is the mutable state; the REST layer asks it, per request, what to do. The
admin endpoint takes a JSON object with any of the :class:`~mm_trio.apps.paper.config.FaultConfig`
fields (each is *set* to the value given, within the bounds of
:func:`~mm_trio.apps.paper.config.fault_value_error`) plus ``"drop_websockets": true`` (close every
websocket connection now). :meth:`Faults.update` checks every field before it sets any.
"""

from __future__ import annotations

from typing import Any

from mm_trio.apps.paper.config import FAULT_FIELDS, FaultConfig, fault_value_error

__all__ = ["FaultFieldError", "Faults"]

_INT_FIELDS = (
    "fail_next",
    "fail_status",
    "timeout_next_orders",
    "timeout_next_cancels",
    "force_429",
    "force_418",
    "forced_retry_after",
)
_FLOAT_FIELDS = ("rest_delay_ms", "timeout_hang_s")
_ACTIONS = ("drop_websockets",)


class FaultFieldError(ValueError):
    """One bad field of a fault update: its name, the value sent and why it is refused."""

    def __init__(self, field: str, value: Any, why: str) -> None:
        super().__init__(f"{field} = {value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why


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

    @staticmethod
    def check(data: dict[str, Any]) -> dict[str, int | float]:
        """The fault values ``data`` sets, all validated; :class:`FaultFieldError` for the
        first bad field (unknown keys included). Actions (``drop_websockets``) must be
        booleans and are not part of the result."""
        out: dict[str, int | float] = {}
        for key in sorted(data):  # a stable order: the same body always names the same field
            value = data[key]
            if key in _ACTIONS:
                if not isinstance(value, bool):
                    raise FaultFieldError(key, value, "must be true or false")
                continue
            if key not in FAULT_FIELDS:
                raise FaultFieldError(
                    key,
                    value,
                    "unknown fault field (known: "
                    + ", ".join(sorted((*FAULT_FIELDS, *_ACTIONS)))
                    + ")",
                )
            why = fault_value_error(key, value)
            if why is not None:
                raise FaultFieldError(key, value, why)
            out[key] = float(value) if key in _FLOAT_FIELDS else int(value)
        return out

    def update(self, data: dict[str, Any]) -> None:
        """Set the given fields; nothing changes unless every field is valid."""
        for key, value in self.check(data).items():
            setattr(self, key, value)

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
