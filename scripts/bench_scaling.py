"""Benchmark (b): the full replay of one synthetic recording with the same total event
count spread over 2, 10, 100 and 1,000 symbols (the per-symbol overhead), and the same
recordings with no order at all (the per-event path alone).
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import UNTHROTTLED, Results, fmt_rate

from mm_trio.apps.replay import run_replay
from mm_trio.domain.config import Config, config_from_dict
from mm_trio.domain.model import Quote, Trade
from mm_trio.exchange.binance.encode import encode_book_ticker, encode_trade
from mm_trio.exchange.recording import write_recording

SCALING_SYMBOLS = (2, 10, 100, 1000)
SCALING_SYMBOLS_QUICK = (2, 10, 100, 1000)  # --quick: a smoke run, not the benchmark
SCALING_RATE = 10_000  # market-time events/s of the synthetic recordings (all symbols)
SCALING_LINES = 200_000
SCALING_LINES_QUICK = 20_000
TARGET_SPREAD = 0.20
MIN_SEEN = 0.99  # a run whose replay saw fewer of the lines is not a measurement


def synthetic_lines(
    n_symbols: int, total: int, rate: int = SCALING_RATE, seed: int = 11
) -> Iterator[tuple[int, bytes]]:
    """``total`` bookTicker/trade lines spread over ``n_symbols`` symbols (SPEC §10 format).

    Symbols take turns in rounds (a fresh random order per round), so every symbol appears in
    the first ``n_symbols`` lines (the replay's discovery looks at the first lines only).
    Receive times are ``1e9 / rate`` ns apart. A quarter of the lines are trades.
    """
    rng = random.Random(seed)
    names = [f"S{i:04d}/USDT" for i in range(n_symbols)]
    tick = Decimal("0.01")
    step = Decimal("0.001")
    # every symbol is the same kind of market: prices within one band (200.00 .. 250.00), so
    # a one-tick move is about the same fraction of a grid level for all of them and the
    # order work per event does not depend on which prices the 2 or the 1,000 drew
    mids = [rng.randrange(20_000, 25_000) for _ in names]  # in ticks
    trade_ids = [0] * n_symbols
    ts = 1_767_225_600_000_000_000
    gap = 1_000_000_000 // rate
    order = list(range(n_symbols))
    done = 0
    update_id = 0
    while done < total:
        rng.shuffle(order)
        for i in order:
            if done >= total:
                return
            done += 1
            ts += gap
            sym = names[i]
            mids[i] = max(100, mids[i] + rng.choice((-2, -1, 0, 0, 1, 2)))
            bid = mids[i] * tick
            ask = (mids[i] + rng.choice((1, 1, 2))) * tick
            if rng.random() < 0.25:
                trade_ids[i] += 1
                seller = rng.random() < 0.5
                trade = Trade(
                    symbol=sym,
                    price=bid if seller else ask,
                    qty=rng.randrange(1, 2000) * step,
                    buyer_maker=seller,
                    trade_id=trade_ids[i],
                    ts=ts,
                )
                yield ts, encode_trade(trade)
            else:
                update_id += 1
                quote = Quote(
                    symbol=sym,
                    bid=bid,
                    bid_qty=rng.randrange(1, 50_000) * step,
                    ask=ask,
                    ask_qty=rng.randrange(1, 50_000) * step,
                    ts=ts,
                )
                yield ts, encode_book_ticker(quote, update_id=update_id)


def scaling_config(*, orders: bool = True) -> Config:
    # quantum 0: every event is delivered (and handled) on its own, so no symbol count gets
    # the benefit of conflating quotes in batches: only the per-symbol overhead differs
    grid: dict[str, Any] = {"levels_below": 2, "levels_above": 2}
    if not orders:
        grid["upper"] = "1"  # every level is above the bound: no opening order anywhere
    return config_from_dict(
        {
            **UNTHROTTLED,
            "grid": grid,
            "venue": {"balances": {"USDT": "1e12"}},
            "replay": {"quantum_ms": 0},
        }
    )


def _scaling_run(
    n: int, total: int, config: Config, tmp: Path
) -> tuple[float, float, dict[str, float], dict[str, Any]]:
    """Replay ``total`` synthetic lines over ``n`` symbols: (events/s of trading, wall time,
    the add/shutdown phases, the summary). Adding and removing the symbols is set-up, not
    load, so their time is left out of the rate."""
    path = tmp / f"synthetic-{n}.gz"
    write_recording(path, synthetic_lines(n, total), compresslevel=1)
    gc.collect()
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = run_replay([path], config, progress=None, phases=phases)
    wall = time.perf_counter() - t0
    path.unlink()
    events = summary["replay"]["market_events"]
    if events < total * MIN_SEEN:
        raise SystemExit(f"bench: {n} symbols: replay saw {events} events, not {total}")
    return events / (wall - phases["add"] - phases["shutdown"]), wall, phases, summary


def bench_scaling(res: Results, tmp: Path) -> None:
    total = SCALING_LINES_QUICK if res.quick else SCALING_LINES
    counts = SCALING_SYMBOLS_QUICK if res.quick else SCALING_SYMBOLS
    config = scaling_config()
    rates: dict[int, float] = {}
    walls: dict[int, float] = {}
    phases: dict[int, dict[str, float]] = {}
    for n in counts:
        rates[n], walls[n], phases[n], _ = _scaling_run(n, total, config, tmp)
    lo, hi = min(rates.values()), max(rates.values())
    spread = 1 - lo / hi
    for n in counts:
        res.add(f"(b) full replay, {n:,} symbols", fmt_rate(rates[n]))
    res.add(
        "(b) slowest vs fastest",
        f"-{spread:.0%}",
        f"within {TARGET_SPREAD:.0%}",
        spread <= TARGET_SPREAD,
    )
    # the same recordings with no order at all (every level above grid.upper): the per-event
    # path alone, so the order work the first quote of every symbol brings is taken out
    idle = scaling_config(orders=False)
    bare: dict[int, float] = {}
    for n in (counts[1], counts[-1]):
        bare[n], _, _, summary = _scaling_run(n, total, idle, tmp)
        if any(v["fills"] for v in summary["symbols"].values()):
            raise SystemExit("bench: the no-order scaling run traded")
    small, large = counts[1], counts[-1]
    res.add(
        f"(b) no orders, {small:,} -> {large:,} symbols",
        f"{fmt_rate(bare[small])} -> {fmt_rate(bare[large])} "
        f"(-{1 - bare[large] / bare[small]:.0%})",
    )
    res.notes["b"] = (
        f"One synthetic gzip recording per symbol count, {total:,} lines each (75 % "
        f"bookTicker, 25 % trade, generated with the decode.py encoders, symbols S0000/USDT.. "
        f"taking turns in random order, every symbol priced in the same band, 200-250 USDT, "
        f"so one tick is the same fraction of a grid level for all), {SCALING_RATE:,} "
        f"events/s of market time ({total / SCALING_RATE:.0f} s), replayed with `run_replay` "
        f"(MockClock, speed=max, `replay.quantum_ms` = 0 so every event is handled on its own "
        f"in every run): grid levels_below/above 2, limiter, governor and USDT balance set "
        f"high enough that no run is throttled or gated. events/s = market events / (wall - "
        f"adding the symbols - shutdown; the two phases as `run_replay(phases=...)` times "
        f"them). Wall times: "
        + "; ".join(
            f"{n} symbols {walls[n]:.2f} s (adding them {phases[n]['add']:.2f} s, "
            f"shutdown {phases[n]['shutdown']:.2f} s)"
            for n in counts
        )
        + f". The 'no orders' row replays the {small:,}- and {large:,}-symbol recordings again "
        f"with `grid.upper` = 1 (no level may open): the per-event path alone."
    )
