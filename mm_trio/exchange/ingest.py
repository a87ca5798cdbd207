"""Market-data ingest counters of a network venue: events received and their lag.

``lag`` is the time from the venue's event time to our receipt, on the venue's clock: a
trade's ``E`` (ms) against the local receive time corrected by the venue's clock offset.
Binance spot's ``bookTicker`` carries no event time, so only trades are timed; quotes travel
the same ordered connection. ``E`` is whole milliseconds (floored), so a lag reads up to 1 ms
high, never low. A negative lag (a clock offset that is off) counts as 0. Pure: callers pass
the times in.
"""

from __future__ import annotations

from mm_trio.core.histogram import Histogram, steps_1_25_5

__all__ = ["LAG_BUCKETS", "IngestStats"]

LAG_BUCKETS: tuple[float, ...] = steps_1_25_5(-3, 1)
"""Upper bounds (seconds) of the lag buckets: 1 ms (``E``'s resolution) to 10 s; 0.1 s is
one of them, the bound issue 12 (f) holds an event to."""
_NS_PER_S = 1e9


class IngestStats:
    """Market events received (by kind) and the event-time lag of the timed ones."""

    __slots__ = ("quotes", "trades", "lag", "max_lag")

    def __init__(self, bounds: tuple[float, ...] = LAG_BUCKETS) -> None:
        self.quotes = 0
        self.trades = 0
        self.lag = Histogram(bounds)
        self.max_lag = 0.0  # seconds, the largest lag observed

    def observe_lag(self, recv_ns: int, event_ns: int) -> None:
        """One timed event: venue time ``event_ns``, received at venue time ``recv_ns``."""
        lag = (recv_ns - event_ns) / _NS_PER_S if recv_ns > event_ns else 0.0
        self.lag.observe(lag)
        if lag > self.max_lag:
            self.max_lag = lag
