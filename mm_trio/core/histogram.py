"""A bucket histogram of observed durations (seconds), cumulative-ready for Prometheus.

Pure: the hot path only bumps plain ints; a metrics scrape reads :meth:`Histogram.cumulative`.
"""

from __future__ import annotations

import bisect

__all__ = ["Histogram"]


class Histogram:
    """Counts of observations per bucket (upper bounds ``bounds``, then ``+Inf``), their sum
    and their number."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` for every bucket, ``inf`` last."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def above(self, bound: float) -> int:
        """Observations greater than ``bound`` (which must be one of :attr:`bounds`)."""
        return self.count - sum(self.counts[: self.bounds.index(bound) + 1])
