"""Benchmark part (p): where the remaining time goes, measured in the same run.

Two profiles (``cProfile``, the standard library's deterministic profiler), each grouped by
area of the code and with its most expensive functions:

* the full in-process replay of the shared recordings (what (a) and (e) time), and
* one grid-window move on one symbol, the unit of order work behind (b) and (c): a quote
  that moves the window, the cancel it sends, the placement its acknowledgement brings, and
  every report of both (``FakeExchange``, limiter, orchestrator), repeated
  :data:`MOVES` times, with its CPU time per move measured first without the profiler.
  After each move the harness waits until every task is blocked
  (``trio.testing.wait_all_tasks_blocked``), a few scheduler passes of its own that count
  in trio's share.

``cProfile`` adds a fixed cost to every Python call, so it inflates call-heavy code: the
shares say where the time goes, the unprofiled wall or CPU time says how much there is.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import trio
import trio.testing

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import Results
from bench_decode import recordings
from bench_latency import _REGIONS, BALANCES, latency_config

from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import run_replay
from mm_trio.domain.model import Quote
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import UNBOUNDED, FakeExchange

MOVES = 2000
MOVES_QUICK = 300
TOP_FUNCTIONS = 8

# (area, path fragments of the code it holds); the first match wins
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input: read, gunzip, split, time guard, merge", (
        "mm_trio/exchange/recording/", "/gzip.py", "/_compression.py", "zlib",
    )),
    ("decode (StreamDecoder, msgspec)", ("mm_trio/exchange/binance/decode.py", "msgspec")),
    ("venue: clock, matching, requests", ("mm_trio/exchange/sim/", "mm_trio/exchange/testing.py")),
    ("demux and inbox", ("mm_trio/engine/demux.py", "mm_trio/engine/inbox.py")),
    ("symbol: manager, gates, exposure", (
        "mm_trio/engine/manager.py", "mm_trio/engine/gate.py", "mm_trio/engine/exposure.py",
        "mm_trio/engine/snapshot.py",
    )),
    ("order path: request tasks, machines, limiter", (
        "mm_trio/engine/orderflow.py", "mm_trio/core/orders", "mm_trio/exchange/limiter.py",
    )),
    ("strategy, risk, position, governor (pure)", ("mm_trio/core/",)),
    ("replay outputs and orchestration", ("mm_trio/apps/", "mm_trio/engine/", "csv")),
    ("trio's scheduler and channels", ("/trio/", "outcome", "sortedcontainers", "epoll")),
)  # fmt: skip


def _area(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for area, fragments in AREAS:
        if any(f in where for f in fragments):
            return area
    return "other (interpreter, stdlib)"


def _grouped(stats: pstats.Stats) -> tuple[dict[str, float], list[tuple[float, int, str]]]:
    """Own time by area, and the functions with the most own time (seconds, calls, name)."""
    by_area: dict[str, float] = {}
    funcs: list[tuple[float, int, str]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, calls, tottime, _ct, _callers) in raw.items():
        area = _area(filename, name)
        by_area[area] = by_area.get(area, 0.0) + tottime
        short = filename.split("site-packages/")[-1].split("/work/")[-1]
        if "mm_trio/" in short:
            short = "mm_trio/" + short.split("mm_trio/", 1)[1]
        funcs.append((tottime, calls, f"{short}:{line}({name})" if line else name))
    funcs.sort(reverse=True)
    return by_area, funcs[:TOP_FUNCTIONS]


def _table(title: str, total: str, by_area: dict[str, float], top: Sequence[Any]) -> str:
    profiled = sum(by_area.values()) or 1.0
    rows = [f"**{title}**", "", "| area | share of profiled time |", "| --- | ---: |"]
    rows += [
        f"| {area} | {t / profiled:.0%} |"
        for area, t in sorted(by_area.items(), key=lambda kv: -kv[1])
        if t / profiled >= 0.005
    ]
    rows += ["", "| function (own time) | share | calls |", "| --- | ---: | ---: |"]
    rows += [f"| `{name}` | {t / profiled:.1%} | {calls:,} |" for t, calls, name in top]
    rows += ["", f"Unprofiled: {total}."]
    return "\n".join(rows)


def _profile(fn: Callable[[], object]) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    return pstats.Stats(profiler)


async def _moves(n: int, profiler: cProfile.Profile | None = None) -> float:
    """CPU seconds per window move on one symbol (see the module docstring)."""
    config = latency_config()
    limiter = Limiter(config.limiter)
    sym = "L0000/USDT"
    fake = FakeExchange([sym], limiter=limiter, balances=BALANCES, buffer=UNBOUNDED)

    def quote(region: int, ts: int) -> Quote:
        bid, ask = _REGIONS[region]
        return Quote(symbol=sym, bid=bid, bid_qty=Decimal(1), ask=ask, ask_qty=Decimal(1), ts=ts)

    async with open_orchestrator(fake, config, limiter=limiter) as orch:
        await orch.add_symbol(sym)
        fake.inject(quote(0, 0))  # builds the grid
        await trio.testing.wait_all_tasks_blocked()
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time()
        for i in range(n):
            fake.inject(quote((i + 1) % 2, i + 1))  # the other region: the window moves
            await trio.testing.wait_all_tasks_blocked()
        cpu = time.process_time() - t0
        if profiler is not None:
            profiler.disable()
        if len(fake.placed) < n:
            raise SystemExit(f"bench: (p) {n} moves placed only {len(fake.placed)} orders")
    return cpu / n


def bench_profile(res: Results) -> None:
    paths, real = recordings()
    config = load_config(None)  # the defaults, as `mm-trio replay` runs them
    t0 = time.perf_counter()
    run_replay(paths, config, progress=None)
    wall = time.perf_counter() - t0
    stats = _profile(lambda: run_replay(paths, config, progress=None))
    by_area, top = _grouped(stats)
    source = "the shared recordings" if real else "the test fixtures"
    res.profiles.append(
        _table(
            f"The full replay of {source}, in-process (what (a) and (e) time, less the "
            "interpreter's start and the imports)",
            f"{wall:.3f} s wall",
            by_area,
            top,
        )
    )
    n = MOVES_QUICK if res.quick else MOVES
    per_move = trio.run(_moves, n)
    profiler = cProfile.Profile()
    trio.run(_moves, n, profiler)
    by_area, top = _grouped(pstats.Stats(profiler))
    res.profiles.append(
        _table(
            f"One grid-window move on one symbol ({n:,} moves: a cancel, the placement that "
            "follows, and every report of both; the unit of order work behind (b) and (c))",
            f"{per_move * 1e6:,.0f} µs of CPU per move",
            by_area,
            top,
        )
    )
    res.add("(p) CPU per grid-window move (cancel + place, 1 symbol)", f"{per_move * 1e6:,.0f} µs")
