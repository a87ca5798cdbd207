"""A small pub/sub of what an operator watches: fills, state changes, breaker and governor
changes (the control plane's event stream).

Publishing never blocks and never fails the trading code that calls it: every subscriber
has its own bounded memory channel; one that is full (a slow reader) is dropped — its
channel is closed, so it reads what is buffered and then ``EndOfChannel`` — and counted.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import trio

__all__ = ["ControlEvent", "EventHub", "SUBSCRIBER_BUFFER", "RECENT_EVENTS"]

SUBSCRIBER_BUFFER = 1_000
"""Events one subscriber may have unread before it is dropped."""
RECENT_EVENTS = 200
"""Events kept for a subscriber that connects later (``recent``)."""


class ControlEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One published event. ``kind``: ``fill``, ``state``, ``breaker``, ``governor``,
    ``symbol`` (added / removed), ``control`` (pause, resume, kill); ``ts_ns`` is the venue's
    clock; ``data`` is JSON-ready (decimals as strings)."""

    seq: int
    kind: str
    symbol: str
    ts_ns: int
    data: dict[str, Any]


class EventHub:
    """Fan-out of :class:`ControlEvent` to any number of bounded subscribers."""

    def __init__(self, buffer: int = SUBSCRIBER_BUFFER, recent: int = RECENT_EVENTS) -> None:
        self._buffer = buffer
        self._subscribers: list[trio.MemorySendChannel[ControlEvent]] = []
        self._seq = itertools.count(1)
        self.recent: deque[ControlEvent] = deque(maxlen=recent)
        self.published = 0
        self.dropped_subscribers = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, symbol: str, ts_ns: int, data: dict[str, Any]) -> ControlEvent:
        """Hand the event to every subscriber now; drop (close) those that are full."""
        event = ControlEvent(seq=next(self._seq), kind=kind, symbol=symbol, ts_ns=ts_ns, data=data)
        self.published += 1
        self.recent.append(event)
        if not self._subscribers:
            return event
        keep: list[trio.MemorySendChannel[ControlEvent]] = []
        for send in self._subscribers:
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                send.close()  # the reader sees EndOfChannel after what it has buffered
                self.dropped_subscribers += 1
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                continue  # the reader went away
            keep.append(send)
        self._subscribers = keep
        return event

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[ControlEvent]]:
        """``with hub.subscribe() as events: async for event in events: ...``"""
        send, receive = trio.open_memory_channel[ControlEvent](self._buffer)
        self._subscribers.append(send)
        try:
            with receive:
                yield receive
        finally:
            send.close()
            if send in self._subscribers:
                self._subscribers.remove(send)
