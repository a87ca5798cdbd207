"""Benchmarks of mm-trio: decode vs replay, scaling, latency, memory, vs hftbacktest.

    python scripts/bench.py [--quick] [--write] [--profile] [--only abcdefp] [--strict]

Runs, in one process run (the memory measurement in a subprocess of its own):

(a) bare decode rate (``StreamDecoder.decode`` over the lines of the real recordings, read
    into memory first) and full replay rate (``run_replay``: decode -> demux -> strategy ->
    simulated matching) over the same files; both as market events (Quote + Trade) per
    second of wall time, and their ratio (``bench_decode.py``);
(b) the full replay of one synthetic recording with the same total event count spread over
    2, 10, 100 and 1,000 symbols (``bench_scaling.py``);
(c) the latency from an event entering the demux channel to the intent it causes reaching
    the orchestrator's limiter (``Limiter.acquire``), at an offered rate of 50,000 events/s
    across 1,000 symbols (and 10,000 across 10) on the real clock (``bench_latency.py``);
(d) the resident memory per idle symbol with 1,000 symbols added (``bench_memory.py``);
(e) the whole-process ``mm-trio replay`` of the real recordings against hftbacktest 2.4.4's
    compiled every-message grid loop over the same files, installed into a cached venv of
    its own (``bench_hftbacktest.py``; skipped, with the reason, when that cannot be done);
(f) live ingest: market events/s a ``mm-trio run --venue binance`` takes from the paper
    venue's combined stream (``--replay-speed`` ramp), with no loss and no trade later than
    100 ms, and each process's CPU (``bench_ingest.py``);
(p) where the remaining time goes: ``cProfile`` of the full replay and of one grid-window
    move, grouped by area of the code (``bench_profile.py``).

(c) and (d) run on the test double the package ships (``mm_trio.exchange.testing``). It
prints a markdown table (metric, value, target, pass/fail); ``--write`` records the run in
``BENCHMARKS.md`` with the machine it ran on (``bench_report.py``). ``--quick`` uses small
sizes (< 30 s). ``--profile`` additionally profiles the full replay of (a) with
pyinstrument, if installed. Real recordings are read from ``<repo>/../shared/data/*.gz``;
without them (a) falls back to the synthetic recordings in ``fixtures/`` and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import BENCHMARKS_MD, Results
from bench_decode import bench_decode_vs_replay
from bench_hftbacktest import bench_hftbacktest
from bench_ingest import bench_ingest
from bench_latency import bench_latency
from bench_memory import bench_memory
from bench_profile import bench_profile
from bench_report import render_markdown
from bench_scaling import bench_scaling

PARTS = "abcdefp"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 30 s)")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the full replay of (a) with pyinstrument (stderr)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument("--only", default=PARTS, help="run only these parts, e.g. 'ac'")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        parser.error(
            f"--only: no part {', '.join(map(repr, unknown))} (the parts are {', '.join(PARTS)})"
        )

    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = Results(quick=args.quick)
    took: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mm-trio-bench-") as tmpdir:
        tmp = Path(tmpdir)
        parts: dict[str, Callable[[], None]] = {
            "a": lambda: bench_decode_vs_replay(res, tmp, args.profile),
            "b": lambda: bench_scaling(res, tmp),
            "c": lambda: bench_latency(res),
            "d": lambda: bench_memory(res),
            "e": lambda: bench_hftbacktest(res, tmp),
            "f": lambda: bench_ingest(res, tmp, args.profile),
            "p": lambda: bench_profile(res),
        }
        for key, part in parts.items():
            if key in args.only:
                t1 = time.perf_counter()
                part()
                took[key] = time.perf_counter() - t1
    elapsed = time.perf_counter() - t0
    print(res.table())
    print(
        f"\n({elapsed:.1f} s{', quick' if args.quick else ''}: "
        + ", ".join(f"({k}) {v:.1f} s" for k, v in took.items())
        + ")"
    )
    if args.write:
        text = render_markdown(res, started, elapsed, load)
        BENCHMARKS_MD.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {BENCHMARKS_MD}")
    missed = [r.metric for r in res.rows if r.ok is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
