"""The pure bucket histogram behind the latency metrics (:mod:`mm_trio.core.histogram`)."""

from __future__ import annotations

from mm_trio.core.histogram import Histogram, steps_1_25_5


def test_steps_are_the_floats_their_literals_are() -> None:
    assert steps_1_25_5(-3, 1) == (
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    )  # fmt: skip
    assert steps_1_25_5(-5, -4) == (0.00001, 0.000025, 0.00005, 0.0001)


def test_observations_fall_in_the_first_bucket_that_holds_them() -> None:
    h = Histogram(steps_1_25_5(-3, -1))  # 1 ms .. 100 ms
    for seconds in (0.0005, 0.001, 0.0011, 0.05, 0.3):
        h.observe(seconds)
    cumulative = dict(h.cumulative())
    assert cumulative[0.001] == 2  # an observation on a bound counts in that bucket
    assert cumulative[0.0025] == 3
    assert cumulative[0.05] == 4
    assert cumulative[float("inf")] == h.count == 5
    assert h.above(0.1) == 1
    assert abs(h.total - 0.3526) < 1e-12
