"""Between one symbol's pure core and the venue: the risk gates pushed into the strategy,
and every intent checked by the aggregate governor before it is sent (SPEC §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.core.lifecycle import Lifecycle, LifecycleEvent
from mm_trio.core.orders import request_outcome
from mm_trio.core.risk.governor import RiskGovernor
from mm_trio.core.risk.monitor import RiskMonitor
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import ZERO, OrderUpdate
from mm_trio.engine.exposure import ExposureReporter

PAUSED_REASON = "paused by operator"


class IntentGate:
    """Gates one symbol's intents. ``send(intent)`` starts the request (``False`` once the
    symbol's nursery is closing); ``journal`` records what is sent or refused."""

    def __init__(
        self,
        symbol: str,
        strategy: GridStrategy,
        risk: RiskMonitor,
        governor: RiskGovernor,
        lifecycle: Lifecycle,
        exposure: ExposureReporter,
        journal: Callable[[str, Any], None],
        send: Callable[[PlaceOrder | CancelOrder], bool],
    ) -> None:
        self.symbol = symbol
        self.strategy = strategy
        self.risk = risk
        self._governor = governor
        self.lifecycle = lifecycle
        self.exposure = exposure
        self._journal = journal
        self._send = send
        self._gates: tuple[bool, bool, bool] = (False, False, False)

    def apply_gates(self, resyncing: bool, paused: bool = False) -> list[Intent]:
        """Push the current risk and governor state (and an operator's pause: the same gate
        as a breaker's) into the strategy when it changed."""
        if self.risk.stopped and not self.strategy.stopped:
            self.lifecycle.apply(
                LifecycleEvent.LOSS_LIMIT, "loss limit: " + self.risk.tripped()["loss_limit"].reason
            )
            return self.strategy.stop()
        halt = self.risk.halt_opening or resyncing or paused
        governor = self._governor
        reduce_only = governor.reduce_only(self.symbol)
        gates = (halt, reduce_only, paused)  # a pause changes the reason shown, too
        if gates == self._gates:
            return self.trim_buys(governor) if reduce_only else []
        self._gates = gates
        if halt or reduce_only:
            why = [b.reason for b in self.risk.tripped().values()]
            if paused:
                why.insert(0, PAUSED_REASON)
            if reduce_only:
                why.append("governor: reduce-only")
            self.lifecycle.apply(LifecycleEvent.HALT, "; ".join(why))
        else:
            self.lifecycle.apply(LifecycleEvent.CLEAR)
        intents = self.strategy.set_gates(halt_opening=halt, reduce_only=reduce_only)
        return (intents + self.trim_buys(governor)) if reduce_only else intents

    def trim_buys(self, governor: RiskGovernor) -> list[Intent]:
        """Reduce-only keeps the resting buys that fit the cap; cancel only the excess."""
        keep = governor.buy_allowance(self.symbol)
        return [] if keep is None else self.strategy.trim_buys(keep)

    def dispatch(self, intents: list[Intent], mid: Any, now: float) -> None:
        """Gate every intent through the governor, then send the admitted ones."""
        if intents:
            self.exposure.orders_changed()
        if not intents:
            self.exposure.report(mid, now)
            return
        governor = self._governor
        # the governor sees the exposure without this batch's new buys, then admits them one by one
        batch_buys = sum(
            (
                i.request.price * i.request.qty
                for i in intents
                if type(i) is PlaceOrder and i.request.side == "BUY"
            ),
            ZERO,
        )
        self.exposure.report(mid, now, exclude_buy_notional=batch_buys)
        refused: list[OrderUpdate] = []
        for intent in intents:
            reason = governor.check(self.symbol, intent)
            if reason is not None:
                assert isinstance(intent, PlaceOrder)  # only places are ever refused
                r = intent.request
                refused.append(request_outcome(r, "REJECTED", "governor: " + reason))
                self._journal("refused", refused[-1])
                continue
            if type(intent) is PlaceOrder and intent.request.side == "BUY":
                self.exposure.force()  # the next report replaces its reservation
            if type(intent) is PlaceOrder:
                self._journal("place", intent.request)
            else:
                self._journal("cancel", intent)
            self._send(intent)
        if refused:
            # every refusal reaches the strategy before the next report: until then its open
            # buy notional still holds the refused buys, which the governor never admitted
            # (reported, they looked like exposure above the cap and tripped reduce-only)
            self.exposure.orders_changed()
            follow: list[Intent] = []
            for update in refused:
                follow += self.strategy.on_order_update(update)
            self.dispatch(follow, mid, now)
