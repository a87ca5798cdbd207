"""Counters the shell keeps for the control plane and the metrics (read at scrape time, so
the hot path only adds to plain ints)."""

from __future__ import annotations

from mm_trio.core.histogram import Histogram, steps_1_25_5

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram", "reject_class"]

LATENCY_BUCKETS: tuple[float, ...] = steps_1_25_5(-5, 0)
"""Upper bounds (seconds) of the event-to-intent latency buckets: 10 µs to 1 s (the decision
itself takes tens of microseconds; queueing behind a burst can take milliseconds)."""

REJECT_CLASSES = frozenset(
    {"filter", "balance", "duplicate", "post_only", "max_orders", "rate_limit", "outcome_unknown"}
)
"""Reject reasons start with the venue error's kind (``"filter: ..."``); anything else is
``unknown``."""


def reject_class(reason: str) -> str:
    """The class of a rejected order's ``reason`` (SPEC §12: filter, balance, duplicate,
    rate limit, unknown...)."""
    head = reason.split(":", 1)[0].strip()
    return head if head in REJECT_CLASSES else "unknown"


class LatencyHistogram(Histogram):
    """A :class:`~mm_trio.core.histogram.Histogram` on :data:`LATENCY_BUCKETS` by default."""

    __slots__ = ()

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(bounds)
