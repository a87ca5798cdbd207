"""Replay recorded markets through the unchanged live pipeline (SPEC §10).

Recordings (``<recv ns> <combined-stream JSON>`` lines, gzip or plain) are merged by receive
time into one multi-symbol stream by :class:`ReplayFeed`, which the SimulatedExchange advances
exactly at each recorded event. The venue clock is trio's clock, a ``MockClock``: with
``speed="max"`` it jumps straight to the next event whenever every task is idle, otherwise it
runs ``speed`` times faster than the wall clock. Orchestrator, demux, SymbolManagers, grid,
risk, governor, limiter and matching engine are the same objects ``mm-trio run`` uses.

Bad input (malformed lines, unknown streams or symbols, absurd or disordered receive times,
damaged gzip) is counted and skipped by the readers and the decoder, never followed or fatal;
:func:`replay_counts` puts the counts in the summary's ``replay`` section.

Determinism: the same files and config give byte-identical outputs. Venue requests are applied
in (due time, call order) by the venue's clock task; trio's scheduler shuffles tasks woken at
the same instant with a module-level RNG, which replay seeds (it is the RNG trio itself
registers with Hypothesis for the same purpose).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import msgspec
import trio

# trio.testing re-exports MockClock, but importing that package also imports pytest when it
# is installed (~0.1 s of every replay's start-up): take the class from where it lives
from trio._core._mock_clock import MockClock

from mm_trio.apps.summary import summary_dict
from mm_trio.domain.config import Config
from mm_trio.domain.model import ZERO, OrderUpdate
from mm_trio.engine.orchestrator import Orchestrator, open_orchestrator
from mm_trio.engine.persistence import Persistence
from mm_trio.engine.snapshot import equity_row
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.recording import RecordingStats
from mm_trio.exchange.sim.exchange import SimulatedExchange
from mm_trio.exchange.sim.matching import MatchingEngine
from mm_trio.exchange.sim.recorded import (
    RecordedMarket,
    ReplayError,
    ReplayFeed,
)
from mm_trio.store import StateStore, StoreError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- outputs


class ReplayRecorder:
    """Collects the order log, the fills and the equity curve of one replay, in memory."""

    def __init__(self, exchange: SimulatedExchange) -> None:
        self._exchange = exchange
        self._encoder = msgspec.json.Encoder(decimal_format="string")
        self.order_log: list[bytes] = []
        self.fills: list[list[str]] = []
        self.equity: list[list[str]] = []

    def journal(self, kind: str, payload: Any) -> None:
        line = {"ts": self._exchange.now_ns(), "kind": kind}
        line.update(msgspec.to_builtins(payload, builtin_types=(Decimal,)))
        self.order_log.append(self._encoder.encode(line))
        if kind == "report" and type(payload) is OrderUpdate and payload.last_qty > 0:
            u = payload
            self.fills.append(
                [
                    str(u.ts),
                    u.symbol,
                    u.side,
                    str(u.last_price),
                    str(u.last_qty),
                    str(u.fee),
                    u.fee_asset,
                    str(u.trade_id),
                    u.client_id,
                    "maker" if u.maker else "taker",
                ]
            )

    def sample(self, orch: Orchestrator) -> None:
        ts = str(self._exchange.now_ns())
        total = ZERO
        exposure = orch.governor.exposure()
        reduce_only = set(exposure.reduce_only_symbols)
        open_total = 0
        for sym in orch.symbols():  # the running ones, by name (as in orch.snapshot())
            s = equity_row(orch.manager(sym))  # only what a sample records
            total += s.total_pnl
            open_total += s.open_orders
            # the report's capital used, time halted / reduce-only come from these columns
            self.equity.append(
                [
                    ts,
                    sym,
                    str(s.mid),
                    str(s.position),
                    str(s.realized_pnl),
                    str(s.unrealized_pnl),
                    str(s.fees_quote),
                    str(s.total_pnl),
                    str(exposure.per_symbol.get(sym, ZERO)),
                    str(s.open_orders),
                    s.state,
                    _flag(exposure.reduce_only_total or sym in reduce_only),
                    "+".join(s.breakers),
                ]
            )
        self.equity.append(
            [
                ts,
                "TOTAL",
                "",
                "",
                "",
                "",
                "",
                str(total),
                str(exposure.total),
                str(open_total),
                "KILLED" if exposure.killed else "",
                _flag(exposure.reduce_only_total),
                "",
            ]
        )

    def write(self, out: Path, summary: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "orders.jsonl").write_bytes(b"".join(line + b"\n" for line in self.order_log))
        _write_csv(
            out / "fills.csv",
            [
                "ts",
                "symbol",
                "side",
                "price",
                "qty",
                "fee",
                "fee_asset",
                "trade_id",
                "client_id",
                "liquidity",
            ],
            self.fills,
        )
        _write_csv(
            out / "equity.csv",
            [
                "ts",
                "symbol",
                "mid",
                "position",
                "realized_pnl",
                "unrealized_pnl",
                "fees",
                "total_pnl",
                *EQUITY_STATE_COLUMNS,
            ],
            self.equity,
        )
        (out / "summary.json").write_bytes(
            msgspec.json.format(msgspec.json.encode(summary)) + b"\n"
        )


EQUITY_STATE_COLUMNS = ("exposure", "open_orders", "state", "reduce_only", "breakers")
"""equity.csv's columns after the PnL: the governor's exposure (|position| x mid + open buy
notional, quote), our live orders, the symbol's lifecycle state, ``1`` while the governor
holds it reduce-only, and its tripped breakers joined by ``+``."""


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


class Progress:
    """The replay's progress bar (tqdm), drawn only when ``out`` is a terminal. Progress is
    the share of the recordings' bytes (as stored) read so far: nothing is read twice to
    count records first."""

    def __init__(self, out: TextIO | None, paths: Sequence[Path], stats: RecordingStats) -> None:
        self._stats = stats
        self._total = total = sum(p.stat().st_size for p in paths)
        self._bar: Any = None
        if out is not None and out.isatty():
            from tqdm import tqdm  # only for a terminal: its import is ~25 ms of a replay

            self._bar = tqdm(
                total=total, file=out, desc="replay", unit="B", unit_scale=True, leave=True
            )

    def update(self, records: int) -> None:
        bar = self._bar
        if bar is None:
            return
        bar.set_postfix_str(f"{records:,} records", refresh=False)
        bar.update(min(self._stats.bytes_read, self._total) - bar.n)

    def close(self, records: int) -> None:
        if self._bar is not None:
            self.update(records)
            self._bar.close()


# --------------------------------------------------------------------------- session


class ReplayResult(msgspec.Struct, kw_only=True):
    summary: dict[str, Any]
    records: int
    events: int


async def replay_session(
    paths: Sequence[Path],
    config: Config,
    *,
    progress: TextIO | None = None,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    phases: dict[str, float] | None = None,
    store: StateStore | None = None,
    interrupted: list[str] | None = None,
) -> tuple[ReplayRecorder, dict[str, Any]]:
    """Replay ``paths`` through the live pipeline; return the recorder and the summary.

    ``interrupted``: stop early on SIGINT / SIGTERM (their name is appended to it): the
    replay shuts down as at the end of the data, and the summary says ``"partial": true``.

    ``store``: journal the replay's orders and fills into it exactly as a live run does
    (the replay of a fresh venue recovers nothing: the store must be new).

    ``phases``, if given, receives the wall time in seconds spent adding the symbols
    (``"add"``) and in the orderly shutdown (``"shutdown"``): set-up that a benchmark leaves
    out of a rate. Reading the wall clock changes nothing in the replay.
    """

    # one read of the files: what they hold first, then the feed reads on from there
    market = RecordedMarket(paths, config)
    specs, mids, decoder, stats = market.specs, market.mids, market.decoder, market.stats
    symbols = [s for s in market.native_map.values() if s in specs]
    feed = ReplayFeed(market)
    bar = Progress(progress, paths, stats)
    engine = MatchingEngine(config.venue)
    for sym in symbols:
        engine.add_symbol(specs[sym], mids.get(sym, Decimal(1)), replace=True)
    limiter = Limiter(config.limiter)
    exchange = SimulatedExchange(
        config.venue,
        limiter=limiter,
        feed=feed,
        engine=engine,
        epoch_ns=feed.first_ts,
        feed_quantum=config.replay.quantum_ms / 1000.0,
        advance_clock=_idle_jump(),
    )
    recorder = ReplayRecorder(exchange)
    persistence = None if store is None else Persistence(store, exchange.now_ns)
    async with open_orchestrator(
        exchange, config, limiter=limiter, journal=recorder.journal, persistence=persistence
    ) as orch:
        started = time.perf_counter()
        for sym in symbols:
            await orch.add_symbol(sym)
        timed = {} if phases is None else phases
        timed["add"] = time.perf_counter() - started
        interval = config.replay.equity_interval
        next_sample = trio.current_time()
        ticks_after_end = 0
        finished = trio.Event()

        def on_tick() -> None:
            # runs in the orchestrator's ticker, so it never races a timer of its own
            nonlocal next_sample, ticks_after_end
            if trio.current_time() >= next_sample:
                recorder.sample(orch)
                next_sample += interval
            bar.update(feed.records)
            if feed.exhausted:
                ticks_after_end += 1
                if ticks_after_end >= 2:  # the last reports have landed
                    finished.set()

        orch.tick_hooks.append(on_tick)
        async with trio.open_nursery() as waiting:
            # the same task either way: the seeded scheduler then draws the same shuffles,
            # so a replay that listens for signals gives the same bytes as one that does not
            watch = _stop_on_signal if interrupted is not None else _no_signals
            waiting.start_soon(watch, finished, interrupted)
            await finished.wait()
            waiting.cancel_scope.cancel()
        recorder.sample(orch)
        at_stop = orch.snapshot()
        started = time.perf_counter()
        await orch.shutdown()
        timed["shutdown"] = time.perf_counter() - started
        open_at_exit: dict[str, int] = {}
        for order in await exchange.open_orders():
            if order.client_id.startswith(config.grid_for(order.symbol).client_id_prefix + "_"):
                open_at_exit[order.symbol] = open_at_exit.get(order.symbol, 0) + 1
        snapshot = orch.snapshot()
    bar.close(feed.records)
    summary = summary_dict(snapshot, {s: open_at_exit.get(s, 0) for s in snapshot.symbols}, at_stop)
    summary["partial"] = bool(interrupted)
    if interrupted:
        summary["interrupted_by"] = interrupted[0]
    events_per_symbol = {s: m.events for s, m in snapshot.symbols.items()}
    for sym, row in summary["symbols"].items():
        row["events"] = events_per_symbol.get(sym, 0)
    summary["replay"] = replay_counts(paths, feed, stats, decoder)
    if on_summary is not None:
        on_summary(summary)
    return recorder, summary


def replay_counts(
    paths: Sequence[Path], feed: ReplayFeed, stats: RecordingStats, decoder: StreamDecoder
) -> dict[str, Any]:
    """The summary's ``replay`` section: what was replayed, and every kind of input that was
    counted and skipped (or kept with a change), with the first problems by file and line."""
    dstats = decoder.stats
    return {
        "files": [p.name for p in paths],
        "records": feed.records,
        "market_events": feed.events,
        "malformed_lines": stats.malformed + dstats.malformed,
        "unknown_streams": dstats.unknown_stream,
        "unknown_symbols": dstats.unrouted,
        "unknown_symbol_names": dict(sorted(dstats.unrouted_names.items())),
        "time_jumps_skipped": stats.time_jumps,
        "out_of_order_skipped": stats.out_of_order,
        "late_lines_kept": stats.late,
        "truncated_files": stats.truncated,
        "corrupt_files": stats.corrupt,
        "damage": [msgspec.to_builtins(d) for d in stats.damage],
        "problems": list(stats.errors),
        "duration_s": round((feed.last_ts - feed.first_ts) / 1e9, 3),
    }


def run_replay(
    paths: Sequence[Path],
    config: Config,
    *,
    speed: str = "max",
    out: Path | None = None,
    progress: TextIO | None = sys.stderr,
    phases: dict[str, float] | None = None,
    state: Path | None = None,
    interrupted: list[str] | None = None,
) -> dict[str, Any]:
    """Run one replay in a fresh trio run on a MockClock; write outputs to ``out``.
    ``phases``: see :func:`replay_session`; ``state``: a NEW state store to journal into;
    ``interrupted``: stop early on SIGINT / SIGTERM, writing what was replayed (see
    :func:`replay_session`)."""
    for p in paths:
        if not p.is_file():
            raise ReplayError(f"recording {str(p)!r} does not exist")
    if state is not None and state.exists():
        raise ReplayError(f"--state {str(state)!r} exists: a replay journals into a new store only")
    if speed == "max":
        clock = MockClock(autojump_threshold=0)
    else:
        try:
            rate = float(speed)
        except ValueError:
            raise ReplayError(
                f"--speed must be 'max' or a positive number, got {speed!r}"
            ) from None
        if not (rate > 0 and math.isfinite(rate)):
            raise ReplayError(f"--speed must be 'max' or a positive number, got {speed!r}")
        clock = MockClock(rate=rate)
    _seed_scheduler(config.venue.seed)
    store = None
    if state is not None:
        try:
            store = StateStore.open(state)
        except StoreError as exc:
            raise ReplayError(f"--state: {exc}") from None
    try:
        recorder, summary = trio.run(
            lambda: replay_session(
                paths,
                config,
                progress=progress,
                phases=phases,
                store=store,
                interrupted=interrupted,
            ),
            clock=clock,
        )
    finally:
        if store is not None:
            store.close()
    if out is not None:
        recorder.write(out, summary)
    return summary


def _idle_jump() -> Callable[[float], None] | None:
    """The clock's ``jump`` when the replay runs as fast as it can (a ``MockClock`` that
    autojumps at once): the venue may then move the clock itself while every other task
    waits (see :mod:`mm_trio.exchange.sim.exchange`). ``None`` on any other clock."""
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, MockClock) and clock.rate == 0 and clock.autojump_threshold == 0:
        return clock.jump
    return None


async def _no_signals(finished: trio.Event, received: list[str] | None) -> None:
    """The stand-in of :func:`_stop_on_signal` for a replay that does not listen."""
    await trio.sleep_forever()


async def _stop_on_signal(finished: trio.Event, received: list[str] | None) -> None:
    """The first SIGINT / SIGTERM ends the replay (as at the end of the data); later ones
    only wait for that orderly end, which is quick on the mock clock."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        log.info("replaying; Ctrl-C (or SIGTERM) stops early and writes what was replayed")
        async for signum in signals:
            assert received is not None
            received.append(signal.Signals(signum).name)
            finished.set()


def _seed_scheduler(seed: int) -> None:
    """Make trio's tie-breaking between tasks woken at the same instant reproducible."""
    rng = getattr(getattr(trio._core, "_run", None), "_r", None)  # noqa: SLF001
    if rng is None:  # pragma: no cover - a future trio without the hook
        raise RuntimeError("this trio version offers no deterministic scheduling hook")
    rng.seed(seed)
