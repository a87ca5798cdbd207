"""Benchmark (a): bare decode rate vs full replay rate over the real recordings.

``StreamDecoder.decode`` over the lines of the recordings (read into memory first), against
``run_replay`` (decode -> demux -> strategy -> simulated matching) over the same files; both
as market events (Quote + Trade) per second of wall time, and their ratio. Also: the same
replay with other ``replay.quantum_ms`` batching, and the ceiling any per-record pipeline
has (the replay's trio skeleton with no application logic). Without the real recordings the
synthetic ones in ``fixtures/`` are used, and the note says so.
"""

from __future__ import annotations

import gc
import gzip
import math
import sys
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import trio
import trio.testing

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import DATA_DIR, FIXTURES_DIR, REPO, Results, fmt_rate

from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import run_replay
from mm_trio.domain.config import Config, config_from_dict
from mm_trio.domain.model import Event, Quote, Trade
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import merge_recordings, write_raw_lines
from mm_trio.exchange.sim.recorded import RecordedMarket, discover_symbols

TARGET_RATIO = 0.40
QUICK_LINES = 5000  # --quick: the first lines of each recording
DECODE_REPEATS = 3  # bare decode: best of
QUANTA_MS = (0.0, 100.0)  # the extra replay.quantum_ms rows


def recordings() -> tuple[list[Path], bool]:
    """The real recordings if present (True), else the fixtures (False)."""
    real = sorted(DATA_DIR.glob("*.gz"))
    if real:
        return real, True
    return sorted(FIXTURES_DIR.glob("*.gz")), False


def _truncated_copies(paths: Sequence[Path], lines: int, out: Path) -> list[Path]:
    """The first ``lines`` raw lines of each recording, as temporary gzip files."""
    copies = []
    for p in paths:
        with gzip.open(p, "rb") as fh:
            head = [ln.rstrip(b"\r\n") for ln in islice(fh, lines)]
        q = out / p.name
        write_raw_lines(q, head, compresslevel=1)
        copies.append(q)
    return copies


def bench_decode_vs_replay(res: Results, tmp: Path, profile: bool) -> None:
    paths, real = recordings()
    source = "real recordings" if real else "fixtures/ (real recordings absent: FALLBACK)"
    if res.quick:
        paths = _truncated_copies(paths, QUICK_LINES, tmp)
        source += f", first {QUICK_LINES:,} lines per file (--quick)"
    config = load_config(None)

    # bare decode: every line in memory first, then only StreamDecoder.decode is timed
    lines = list(merge_recordings(paths))
    native_map = discover_symbols(paths, dict(config.replay.symbols))
    best = math.inf
    events = 0
    for _ in range(DECODE_REPEATS):
        decoder = StreamDecoder(native_map, clock="recv")
        decode = decoder.decode
        n = 0
        t0 = time.perf_counter()
        for ts, raw in lines:
            for ev in decode(raw, ts):
                if type(ev) is Quote or type(ev) is Trade:
                    n += 1
        best = min(best, time.perf_counter() - t0)
        events = n
    decode_rate = events / best

    # the replay's input side (its one read of the files, decoded), timed apart for the note
    t0 = time.perf_counter()
    sum(1 for _ in RecordedMarket(paths, config).records())
    read = time.perf_counter() - t0

    # the floor: the replay's trio skeleton with no application logic at all
    floor_wall = _skeleton_wall(lines, native_map)

    gc.collect()
    t0 = time.perf_counter()
    summary = run_replay(paths, config, progress=None)
    wall = time.perf_counter() - t0
    replay_events = summary["replay"]["market_events"]
    replay_rate = replay_events / wall
    ratio = replay_rate / decode_rate

    res.add("(a) bare decode", fmt_rate(decode_rate))
    res.add("(a) full replay", fmt_rate(replay_rate))
    res.add("(a) replay / decode", f"{ratio:.1%}", f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO)
    for quantum in QUANTA_MS:  # the same replay with other batching of the recording
        cfg = config_from_dict({"replay": {"quantum_ms": quantum}})
        gc.collect()
        t0 = time.perf_counter()
        alt = run_replay(paths, cfg, progress=None)
        rate = alt["replay"]["market_events"] / (time.perf_counter() - t0)
        res.add(
            f"(a) full replay, replay.quantum_ms = {quantum:g}",
            f"{fmt_rate(rate)} ({rate / decode_rate:.1%})",
        )
    floor_rate = events / floor_wall
    res.add(
        "(a) the old shape's ceiling: a trio pass per record, two task hops per event",
        f"{fmt_rate(floor_rate)} ({floor_rate / decode_rate:.0%})",
    )
    res.notes["a"] = (
        f"Input: {source}; {len(lines):,} records, {events:,} market events (Quote + Trade; "
        f"depth diffs and snapshots are decoded and skipped by both). Numerator for both "
        f"rates: market events (decode: {events:,}, replay's `market_events`: "
        f"{replay_events:,}). Bare decode: the lines are read into memory first, "
        f"then `StreamDecoder.decode` is timed over them (best of {DECODE_REPEATS}): {best:.3f} s. "
        f"Full replay: wall time of `run_replay(paths, default config, progress=None)` "
        f"(default `replay.quantum_ms` = {config.replay.quantum_ms:g}: the venue takes the "
        f"recording in batches on a {config.replay.quantum_ms:g} ms grid, each event up to "
        f"that late, never early; rows for 0 ms, every event at its own time, and 100 ms) "
        f"in-process after imports: {wall:.3f} s. That wall time includes the replay's input "
        f"side (one read of the files: gunzip, lines, time guard and decode, the first lines "
        f"looked at for symbols, specs and first prices included), which alone takes about "
        f"{read:.2f} s ({read / wall:.0%} of it); the rest is the trio pipeline. "
        f"The old shape's ceiling: the same decode inside the replay's former trio "
        f"skeleton with no logic (MockClock autojump, one `sleep_until` per record as the "
        f"venue clock did, each market event through a channel to a demux task and on to a "
        f"per-symbol task that drops it): {floor_wall:.3f} s, i.e. what a pipeline that "
        f"wakes per record and hops two tasks per event cannot beat; the replay now runs "
        f"above it because quiet events wake no task and the venue takes its batches."
    )
    _whole_process(res, paths, tmp, events)
    _store_cost(res, paths, tmp)
    if profile:
        _profile_replay(paths, config)


BUSY_GRID = {"step": "0.0001", "levels_below": 8, "order_size": "50"}
"""A grid that trades the recordings often (many orders, reports and fills to persist)."""
CALM_RISK = {"jump_pct": "0.5", "volume_spike_factor": "100000", "reject_storm_count": 100000}
WHOLE_REPEATS = 3


def _bare_msgspec(paths: Sequence[Path]) -> tuple[float, int]:
    """Issue 12's bare decode: ``msgspec.json.Decoder().decode`` of every line's JSON plus
    ``int()`` of its timestamp, lines already in memory, best of 3: (seconds, lines)."""
    import msgspec

    raw = []
    for p in paths:
        with gzip.open(p, "rb") as fh:
            raw.extend(ln for ln in fh.read().splitlines() if ln.strip())
    decode = msgspec.json.Decoder().decode
    best = math.inf
    for _ in range(DECODE_REPEATS):
        t0 = time.perf_counter()
        for line in raw:
            ts, _, js = line.partition(b" ")
            int(ts)
            decode(js)
        best = min(best, time.perf_counter() - t0)
    return best, len(raw)


_FLOOR = (
    "import sys, zlib\n"
    "import msgspec, trio\n"
    "decode = msgspec.json.Decoder().decode\n"
    "for path in sys.argv[1:]:\n"
    "    with open(path, 'rb') as fh:\n"
    "        data = zlib.decompress(fh.read(), 31)\n"
    "    for line in data.splitlines():\n"
    "        if line.strip():\n"
    "            ts, _, js = line.partition(b' ')\n"
    "            int(ts)\n"
    "            decode(js)\n"
)
"""The least a process replaying these files through any trio pipeline must do: start the
interpreter, import trio and msgspec, read and gunzip the files, and decode every line (the
bare decode) -- with no pipeline, no venue, no strategy and no output at all."""


def floor_seconds(paths: Sequence[Path]) -> float:
    """Wall time of the :data:`_FLOOR` process over ``paths``, best of ``WHOLE_REPEATS``."""
    import subprocess

    best = math.inf
    for _ in range(WHOLE_REPEATS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _FLOOR, *map(str, paths)], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


PEAK_RSS_KIB: dict[str, int] = {}
"""The peak resident memory (KiB) of a :func:`whole_process_seconds` run, by tag."""

_HWM = (
    "import atexit, runpy, sys\n"
    "def _hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('VmHWM ' + line.split()[1] + '\\n')\n"
    "atexit.register(_hwm)\n"
    "sys.argv[0] = 'mm-trio'\n"
    "runpy.run_module('mm_trio.cli', run_name='__main__')\n"
)
"""``python -m mm_trio.cli`` that prints its own peak RSS (``VmHWM``, KiB) when it exits: the
kernel's ``ru_maxrss`` of a child also counts the parent's pages it held until ``exec``."""


def whole_process_seconds(paths: Sequence[Path], tmp: Path, tag: str) -> float:
    """Wall time of ``mm-trio replay <paths> --no-progress --out <tmp>/<tag><i>`` as a user
    runs it (process start to exit; this checkout's ``mm_trio``), best of ``WHOLE_REPEATS``;
    then one more run, untimed, for its peak RSS (:data:`PEAK_RSS_KIB`)."""
    import os
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    best = math.inf
    args = ["replay", *map(str, paths), "--no-progress"]
    cmd = [sys.executable, "-m", "mm_trio.cli", *args]
    for i in range(WHOLE_REPEATS):
        out = ["--out", str(tmp / f"{tag}{i}")]
        t0 = time.perf_counter()
        subprocess.run([*cmd, *out], check=True, capture_output=True, env=env)
        best = min(best, time.perf_counter() - t0)
    done = subprocess.run(
        [sys.executable, "-c", _HWM, *args, "--out", str(tmp / f"{tag}-rss")],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    hwm = [ln for ln in done.stderr.splitlines() if ln.startswith("VmHWM ")]
    if hwm:
        PEAK_RSS_KIB[tag] = int(hwm[-1].split()[1])
    return best


def _whole_process(res: Results, paths: Sequence[Path], tmp: Path, events: int) -> None:
    """``mm-trio replay`` as a user runs it (process start to exit), best of 3."""
    bare, lines = _bare_msgspec(paths)
    best = whole_process_seconds(paths, tmp, "whole")
    ratio = bare / best
    res.add("(a) bare msgspec decode + int(ts) (issue 12)", f"{lines / bare:,.0f} lines/s")
    res.add("(a) whole-process `mm-trio replay`", f"{best:.2f} s ({events / best:,.0f} ev/s)")
    if "whole" in PEAK_RSS_KIB:
        peak = PEAK_RSS_KIB["whole"] / 1024
        res.add("(d) peak RSS of the whole-process replay (VmHWM)", f"{peak:,.1f} MiB")
    res.add(
        "(a) whole process / bare msgspec",
        f"{ratio:.1%}",
        f">= {TARGET_RATIO:.0%}",
        ratio >= TARGET_RATIO,
    )
    runs = [tmp / f"whole{i}" for i in range(WHOLE_REPEATS)]
    same = all(_same_tree(runs[0], other) for other in runs[1:])
    files = sorted(p.name for p in runs[0].iterdir())
    res.add(
        f"(a) the {WHOLE_REPEATS} whole-process replays' outputs byte-identical",
        f"{'yes' if same else 'NO'} ({', '.join(files)})",
    )
    floor = floor_seconds(paths)
    res.add(
        "(a) floor: start, import trio + msgspec, gunzip, bare decode; no pipeline",
        f"{floor:.3f} s (bare msgspec / floor {bare / floor:.1%}; "
        f"{(bare / TARGET_RATIO - floor) * 1e3:,.0f} ms left for the rest at {TARGET_RATIO:.0%})",
    )


def _same_tree(a: Path, b: Path) -> bool:
    """``a`` and ``b`` hold the same files with the same bytes."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _store_cost(res: Results, paths: Sequence[Path], tmp: Path) -> None:
    """The state store on the hot path: a busy replay with and without ``--state``."""
    config = config_from_dict({"grid": BUSY_GRID, "risk": CALM_RISK})
    rates: dict[bool, float] = {}
    writes = 0
    for with_store in (False, True, False, True):
        state = tmp / f"store{time.monotonic_ns()}.db" if with_store else None
        gc.collect()
        t0 = time.process_time()
        summary = run_replay(paths, config, progress=None, state=state)
        rate = summary["replay"]["market_events"] / (time.process_time() - t0)
        rates[with_store] = max(rates.get(with_store, 0.0), rate)
        if state is not None:
            import sqlite3

            with sqlite3.connect(state) as conn:
                writes = sum(
                    conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("intents", "events", "fills")
                )
    res.add("(g) busy replay, no store", f"{rates[False]:,.0f} ev/s (CPU)")
    res.add(
        "(g) busy replay, --state",
        f"{rates[True]:,.0f} ev/s (CPU; {rates[True] / rates[False] - 1:+.1%}; {writes:,} rows)",
    )


def _skeleton_wall(lines: Sequence[tuple[int, bytes]], native_map: dict[str, str]) -> float:
    """Wall time of decode + per-record clock jump + demux/manager hops, nothing else."""
    decoder = StreamDecoder(native_map, clock="recv")
    symbols = list(native_map.values())

    async def session() -> None:
        send, recv = trio.open_memory_channel[Event](math.inf)
        routes = {s: trio.open_memory_channel[Event](math.inf) for s in symbols}

        async def manager(channel: trio.MemoryReceiveChannel[Event]) -> None:
            async for _ in channel:
                pass

        async def demux() -> None:
            async for ev in recv:
                routes[ev.symbol][0].send_nowait(ev)

        async with trio.open_nursery() as nursery:
            for _, r in routes.values():
                nursery.start_soon(manager, r)
            nursery.start_soon(demux)
            decode = decoder.decode
            first = lines[0][0]
            for ts, raw in lines:
                await trio.sleep_until((ts - first) / 1e9)
                for ev in decode(raw, ts):
                    if type(ev) is Quote or type(ev) is Trade:
                        send.send_nowait(ev)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()

    gc.collect()
    t0 = time.perf_counter()
    trio.run(session, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - t0


def _profile_replay(paths: Sequence[Path], config: Config) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print(
            "--profile: pyinstrument is not installed (pip install pyinstrument)", file=sys.stderr
        )
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    run_replay(paths, config, progress=None)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
