"""After a resync, and for orders ended without the venue's word: what to adopt, and which
orders to watch for a late landing."""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from mm_trio.core.orders.messages import (
    PRESUMED_GONE_MEMORY,
    Action,
    Adopt,
    PresumeGone,
    shell_outcome,
)
from mm_trio.domain.model import TERMINAL_STATUSES, OpenOrder, OrderUpdate, Side


def resync_outcome(
    symbol: str,
    client_id: str,
    live: tuple[Side, Decimal, Decimal, Decimal],
    found: OpenOrder | None,
) -> Action:
    """What a resync does with one live order once resolved: adopt what the venue says, or
    end it as unknown to the venue (and watch it)."""
    if found is not None:
        return Adopt(found)
    side, price, qty, filled = live
    return PresumeGone(
        shell_outcome(
            symbol, client_id, side, price, qty, "CANCELED", "resync: unknown to venue", cum=filled
        )
    )


# --------------------------------------------------------------------------- watching


class _Watch:
    __slots__ = ("ended", "cancelling")

    def __init__(self, ended: OrderUpdate) -> None:
        self.ended = ended  # the outcome we gave the strategy in the venue's place
        self.cancelling = False  # a cancel for it is on its way


class PresumedGone:
    """Orders ended without the venue's confirmation (queried absent, given up on, withdrawn
    after a timeout), watched until the venue's own final report: one that shows up live
    (a request that landed late) is cancelled on sight; a failed cancel is tried again on
    its next live report. The most recent :data:`PRESUMED_GONE_MEMORY` are kept."""

    def __init__(self, memory: int = PRESUMED_GONE_MEMORY) -> None:
        self._memory = memory
        self._watched: OrderedDict[str, _Watch] = OrderedDict()

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._watched

    def __len__(self) -> int:
        return len(self._watched)

    def add(self, ended: OrderUpdate) -> None:
        self._watched[ended.client_id] = _Watch(ended)
        while len(self._watched) > self._memory:
            self._watched.popitem(last=False)

    def on_report(self, report: OrderUpdate) -> bool:
        """A report reached the strategy; ``True``: the order is live after all and must
        be cancelled now (the caller calls :meth:`cancel_ended` when that cancel ends)."""
        watch = self._watched.get(report.client_id)
        if watch is None or report is watch.ended:
            return False  # not watched, or our own presumption reaching the strategy
        if report.status in TERMINAL_STATUSES:
            del self._watched[report.client_id]
            return False
        if watch.cancelling:
            return False
        watch.cancelling = True
        return True

    def cancel_ended(self, client_id: str) -> None:
        watch = self._watched.get(client_id)
        if watch is not None:
            watch.cancelling = False
