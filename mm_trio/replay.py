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
import math
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import msgspec
import trio
import trio.testing

from mm_trio.config import Config
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.sim.matching import MatchingEngine
from mm_trio.exchange.sim.venue import SimulatedExchange
from mm_trio.model import ZERO, Event, OrderUpdate, Quote, SymbolSpec, Trade
from mm_trio.orchestrator import Orchestrator, open_orchestrator
from mm_trio.recording import RecordingStats, infer_specs, merge_recordings
from mm_trio.replay_errors import ReplayInputError

# Quote assets recognised when splitting a native symbol (longest match wins).
KNOWN_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR",
                "TRY", "BRL", "JPY", "GBP", "AUD", "USD")


ReplayError = ReplayInputError


def split_native(native: str, overrides: dict[str, str] | None = None) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` using :data:`KNOWN_QUOTES` (or an explicit override)."""
    if overrides and native in overrides:
        return overrides[native]
    for quote in sorted(KNOWN_QUOTES, key=len, reverse=True):
        if native.endswith(quote) and len(native) > len(quote):
            return f"{native[: -len(quote)]}/{quote}"
    raise ReplayError(f"cannot tell base from quote in native symbol {native!r}: "
                      f"add it to [replay] symbols, e.g. {native} = \"BASE/QUOTE\"")


def discover_symbols(paths: Sequence[Path], overrides: dict[str, str] | None = None,
                     max_lines: int = 5000, unknown: dict[str, str] | None = None,
                     ) -> dict[str, str]:
    """Native -> unified symbol map from the stream names in the first lines of each file.

    A native name that cannot be split into base and quote is left out (its lines are then
    counted as unknown symbols and skipped); with ``unknown``, it is added there with why.
    """
    found: dict[str, str] = {}
    envelope = msgspec.json.Decoder(_Envelope)
    for path in paths:
        for n, (_ts, raw) in enumerate(merge_recordings([path])):
            if n >= max_lines:
                break
            try:
                stream = envelope.decode(raw).stream
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if not stream or "@" not in stream:
                continue
            native = stream.split("@", 1)[0].upper()
            if native and native not in found and native.isalnum():
                try:
                    found[native] = split_native(native, overrides)
                except ReplayError as exc:
                    if unknown is not None:
                        unknown.setdefault(native, str(exc))
    return dict(sorted(found.items()))


class _Envelope(msgspec.Struct):
    stream: str = ""


class ReplayFeed:
    """Recorded market data as a venue feed: ``next_ts`` drives the venue clock."""

    def __init__(self, paths: Sequence[Path], decoder: StreamDecoder,
                 stats: RecordingStats | None = None) -> None:
        self.stats = stats if stats is not None else RecordingStats()
        self._records = merge_recordings(paths, self.stats)
        self._decoder = decoder
        self._next = next(self._records, None)
        self.first_ts = self._next[0] if self._next is not None else 0
        self.last_ts = self.first_ts
        self._subscribed: set[str] = set()
        self.records = 0
        self.events = 0

    def next_ts(self) -> int | None:
        return self._next[0] if self._next is not None else None

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def add(self, symbol: str, start_price: Decimal) -> None:
        self._subscribed.add(symbol)

    def remove(self, symbol: str) -> None:
        self._subscribed.discard(symbol)

    def advance(self, to_ts: int) -> list[Event]:
        out: list[Event] = []
        rec = self._next
        decode = self._decoder.decode
        subscribed = self._subscribed
        records = self._records
        n = 0
        while rec is not None and rec[0] <= to_ts:
            n += 1
            for ev in decode(rec[1], rec[0]):
                kind = type(ev)
                if (kind is Quote or kind is Trade) and ev.symbol in subscribed:
                    out.append(ev)
            self.last_ts = rec[0]
            rec = next(records, None)
        self._next = rec
        self.records += n
        self.events += len(out)
        return out


class ShiftedReplayFeed(ReplayFeed):
    """A :class:`ReplayFeed` played on another clock: every time is moved by ``shift_ns``
    (the paper venue replays a recording in real time, stamped with today's time)."""

    def __init__(self, paths: Sequence[Path], decoder: StreamDecoder, shift_ns: int,
                 stats: RecordingStats | None = None) -> None:
        super().__init__(paths, decoder, stats)
        self.shift_ns = shift_ns

    def next_ts(self) -> int | None:
        ts = super().next_ts()
        return None if ts is None else ts + self.shift_ns

    def advance(self, to_ts: int) -> list[Event]:
        shift = self.shift_ns
        return [msgspec.structs.replace(ev, ts=ev.ts + shift)
                for ev in super().advance(to_ts - shift)]


def replay_market(paths: Sequence[Path], config: Config, start_ns: int,
                  ) -> tuple[ShiftedReplayFeed, dict[str, SymbolSpec], dict[str, Decimal]]:
    """A feed replaying ``paths`` from venue time ``start_ns``, with the recorded symbols'
    specs and first prices (for a venue serving recorded market data)."""
    for p in paths:
        if not p.is_file():
            raise ReplayError(f"recording {str(p)!r} does not exist")
    native_map, specs, mids = recorded_market(paths, config)
    feed = ShiftedReplayFeed(paths, StreamDecoder(native_map, clock="recv"), 0)
    feed.shift_ns = start_ns - feed.first_ts
    return feed, specs, mids


def recorded_market(paths: Sequence[Path], config: Config,
                    ) -> tuple[dict[str, str], dict[str, SymbolSpec], dict[str, Decimal]]:
    """What the recordings hold: native -> unified names, a spec per recorded symbol
    (inferred, then ``[replay.specs]`` overrides) and each symbol's first price."""
    unknown: dict[str, str] = {}
    native_map = discover_symbols(paths, dict(config.replay.symbols), unknown=unknown)
    if not native_map:
        why = "; ".join(unknown.values())
        raise ReplayError("no market-data streams found in " + ", ".join(map(str, paths))
                          + (f" ({why})" if why else ""))
    specs = build_specs(paths, config, native_map)
    mids = _first_mids(paths, StreamDecoder(native_map, clock="recv"), set(specs))
    return native_map, specs, mids


def _first_mids(paths: Sequence[Path], decoder: StreamDecoder, symbols: set[str],
                max_lines: int = 20000) -> dict[str, Decimal]:
    mids: dict[str, Decimal] = {}
    for n, (ts, raw) in enumerate(merge_recordings(paths)):
        if n >= max_lines or len(mids) == len(symbols):
            break
        for ev in decoder.decode(raw, ts):
            if type(ev) is Quote and ev.symbol not in mids:
                mids[ev.symbol] = ev.mid
            elif type(ev) is Trade and ev.symbol not in mids:
                mids[ev.symbol] = ev.price
    return mids


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
            self.fills.append([str(u.ts), u.symbol, u.side, str(u.last_price), str(u.last_qty),
                               str(u.fee), u.fee_asset, str(u.trade_id), u.client_id,
                               "maker" if u.maker else "taker"])

    def sample(self, orch: Orchestrator) -> None:
        ts = str(self._exchange.now_ns())
        total = ZERO
        trading = set(orch.symbols())
        for sym, s in orch.snapshot().symbols.items():
            if sym not in trading:
                continue
            total += s.total_pnl
            self.equity.append([ts, sym, str(s.mid), str(s.position), str(s.realized_pnl),
                                str(s.unrealized_pnl), str(s.fees_quote), str(s.total_pnl)])
        self.equity.append([ts, "TOTAL", "", "", "", "", "", str(total)])

    def write(self, out: Path, summary: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "orders.jsonl").write_bytes(b"".join(line + b"\n" for line in self.order_log))
        _write_csv(out / "fills.csv", ["ts", "symbol", "side", "price", "qty", "fee",
                                       "fee_asset", "trade_id", "client_id", "liquidity"],
                   self.fills)
        _write_csv(out / "equity.csv", ["ts", "symbol", "mid", "position", "realized_pnl",
                                        "unrealized_pnl", "fees", "total_pnl"], self.equity)
        (out / "summary.json").write_bytes(
            msgspec.json.format(msgspec.json.encode(summary)) + b"\n")


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _progress(done: int, total: int, out: TextIO, width: int = 30) -> None:
    frac = done / total if total else 1.0
    bar = "#" * int(frac * width)
    out.write(f"\rreplay [{bar:<{width}}] {frac:6.1%} {done:,}/{total:,} records")
    out.flush()


# --------------------------------------------------------------------------- session


class ReplayResult(msgspec.Struct, kw_only=True):
    summary: dict[str, Any]
    records: int
    events: int


def build_specs(paths: Sequence[Path], config: Config,
                native_map: dict[str, str]) -> dict[str, SymbolSpec]:
    """Specs for every recorded symbol: inferred from the data, then config overrides."""
    decoder = StreamDecoder(native_map, clock="recv")
    overrides: dict[str, dict[str, Any]] = {
        sym: dict(values) for sym, values in config.replay.specs.items()
    }
    return infer_specs(paths, decoder, overrides=overrides, max_lines=8000)


async def replay_session(paths: Sequence[Path], config: Config, *,
                         progress: TextIO | None = None,
                         on_summary: Callable[[dict[str, Any]], None] | None = None,
                         ) -> tuple[ReplayRecorder, dict[str, Any]]:
    """Replay ``paths`` through the live pipeline; return the recorder and the summary."""
    from mm_trio.cli import summary_dict  # the same summary shape as `run --summary-json`

    native_map, specs, mids = recorded_market(paths, config)
    symbols = [s for s in native_map.values() if s in specs]
    decoder = StreamDecoder(native_map, clock="recv")
    total_records = sum(1 for _ in merge_recordings(paths)) if progress is not None else 0
    stats = RecordingStats()
    feed = ReplayFeed(paths, decoder, stats)
    engine = MatchingEngine(config.venue)
    for sym in symbols:
        engine.add_symbol(specs[sym], mids.get(sym, Decimal(1)), replace=True)
    limiter = Limiter(config.limiter)
    exchange = SimulatedExchange(config.venue, limiter=limiter, feed=feed, engine=engine,
                                 epoch_ns=feed.first_ts,
                                 feed_quantum=config.replay.quantum_ms / 1000.0)
    recorder = ReplayRecorder(exchange)
    async with open_orchestrator(exchange, config, limiter=limiter,
                                 journal=recorder.journal) as orch:
        for sym in symbols:
            await orch.add_symbol(sym)
        interval = config.replay.equity_interval
        next_sample = trio.current_time()
        step_pct = 1 if progress is not None and progress.isatty() else 10
        last_pct = -1
        ticks_after_end = 0
        finished = trio.Event()

        def on_tick() -> None:
            # runs in the orchestrator's ticker, so it never races a timer of its own
            nonlocal next_sample, last_pct, ticks_after_end
            if trio.current_time() >= next_sample:
                recorder.sample(orch)
                next_sample += interval
            if progress is not None and total_records:
                pct = feed.records * 100 // total_records // step_pct * step_pct
                if pct != last_pct:
                    last_pct = pct
                    _progress(feed.records, total_records, progress)
            if feed.exhausted:
                ticks_after_end += 1
                if ticks_after_end >= 2:  # the last reports have landed
                    finished.set()

        orch.tick_hooks.append(on_tick)
        await finished.wait()
        recorder.sample(orch)
        at_stop = orch.snapshot()
        await orch.shutdown()
        open_at_exit: dict[str, int] = {}
        for order in await exchange.open_orders():
            if order.client_id.startswith(config.grid_for(order.symbol).client_id_prefix + "_"):
                open_at_exit[order.symbol] = open_at_exit.get(order.symbol, 0) + 1
        snapshot = orch.snapshot()
    if progress is not None:
        _progress(feed.records, total_records, progress)
        progress.write("\n")
    summary = summary_dict(snapshot, {s: open_at_exit.get(s, 0) for s in snapshot.symbols},
                           at_stop)
    events_per_symbol = {s: m.events for s, m in snapshot.symbols.items()}
    for sym, row in summary["symbols"].items():
        row["events"] = events_per_symbol.get(sym, 0)
    summary["replay"] = replay_counts(paths, feed, stats, decoder)
    if on_summary is not None:
        on_summary(summary)
    return recorder, summary


def replay_counts(paths: Sequence[Path], feed: ReplayFeed, stats: RecordingStats,
                  decoder: StreamDecoder) -> dict[str, Any]:
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


def run_replay(paths: Sequence[Path], config: Config, *, speed: str = "max",
               out: Path | None = None, progress: TextIO | None = sys.stderr,
               ) -> dict[str, Any]:
    """Run one replay in a fresh trio run on a MockClock; write outputs to ``out``."""
    for p in paths:
        if not p.is_file():
            raise ReplayError(f"recording {str(p)!r} does not exist")
    if speed == "max":
        clock = trio.testing.MockClock(autojump_threshold=0)
    else:
        try:
            rate = float(speed)
        except ValueError:
            raise ReplayError(f"--speed must be 'max' or a positive number, got {speed!r}") \
                from None
        if not (rate > 0 and math.isfinite(rate)):
            raise ReplayError(f"--speed must be 'max' or a positive number, got {speed!r}")
        clock = trio.testing.MockClock(rate=rate)
    _seed_scheduler(config.venue.seed)
    recorder, summary = trio.run(
        lambda: replay_session(paths, config, progress=progress), clock=clock)
    if out is not None:
        recorder.write(out, summary)
    return summary


def _seed_scheduler(seed: int) -> None:
    """Make trio's tie-breaking between tasks woken at the same instant reproducible."""
    rng = getattr(getattr(trio._core, "_run", None), "_r", None)  # noqa: SLF001
    if rng is None:  # pragma: no cover - a future trio without the hook
        raise RuntimeError("this trio version offers no deterministic scheduling hook")
    rng.seed(seed)
