"""A bucket histogram of observed durations (seconds), cumulative-ready for Prometheus.

Pure: the hot path only bumps plain ints; a metrics scrape reads :meth:`Histogram.cumulative`.
"""

from __future__ import annotations

import bisect

__all__ = ["Histogram", "steps_1_25_5"]

_STEPS = ("1", "2.5", "5")


def steps_1_25_5(lowest: int, highest: int) -> tuple[float, ...]:
    """Bucket bounds 1, 2.5, 5 per decade, from ``10**lowest`` to ``10**highest`` seconds
    (the usual latency buckets): ``steps_1_25_5(-3, 1)`` is 0.001, 0.0025, 0.005, ..., 10.
    Parsed from text, so every bound is the float its literal would be."""
    out = [float(f"{step}e{e}") for e in range(lowest, highest) for step in _STEPS]
    return (*out, float(f"1e{highest}"))


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
