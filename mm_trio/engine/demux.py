"""The demux: one task that routes every decoded venue event to its symbol (SPEC §2, §8).

It never blocks on a slow symbol (each symbol's inbox conflates quotes and never waits);
events already queued are routed without yielding in between. Balance updates are kept
here (the orchestrator reads them); events of symbols nobody runs are counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import trio

from mm_trio.domain.model import Balance, BalanceUpdate, Event, OrderUpdate, StreamStatus
from mm_trio.engine.manager import SymbolManager


class Demux:
    """Routes events to ``managers`` (the orchestrator's live registry)."""

    def __init__(
        self,
        managers: Mapping[str, SymbolManager],
        journal: Callable[[str, Any], None] | None = None,
    ) -> None:
        self._managers = managers
        self._journal = journal
        self.balances: dict[str, Balance] = {}
        self.unrouted_events = 0
        # stream health for the control plane: the last status of each stream (by its
        # name, the status' reason) and how often each stream reported each status
        self.streams: dict[str, str] = {}
        self.stream_statuses: Counter[tuple[str, str]] = Counter()

    async def run(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        receive, receive_nowait, route = events.receive, events.receive_nowait, self.route
        while True:
            try:
                event = await receive()
            except trio.EndOfChannel:
                return
            route(event)
            while True:
                try:
                    event = receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                route(event)

    def route(self, event: Any) -> None:
        kind = type(event)
        if kind is BalanceUpdate:
            self.balances[event.asset] = Balance(
                asset=event.asset, free=event.free, locked=event.locked
            )
            return
        managers = self._managers
        if kind is StreamStatus:
            stream = event.reason.split(":", 1)[0] or "venue"  # "<stream>: <why>"
            self.streams[stream] = event.status
            self.stream_statuses[(stream, event.status)] += 1
            for symbol in event.symbols or tuple(managers):
                m = managers.get(symbol)
                if m is not None:
                    m.deliver(event)
            return
        manager = managers.get(event.symbol)
        if manager is None:
            self.unrouted_events += 1
            return
        if kind is OrderUpdate and self._journal is not None:
            self._journal("report", event)
        manager.deliver(event)
