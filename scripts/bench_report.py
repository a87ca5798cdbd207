"""The report of a benchmark run: the machine it ran on and ``BENCHMARKS.md`` (the table,
the method note of each benchmark, and the analysis of where the time goes)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path

from bench_common import Results


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("trio", "msgspec"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "trio": versions["trio"],
        "msgspec": versions["msgspec"],
        "os": f"{platform.system()} {platform.release()}",
    }


METHOD_TITLES = {
    "a": "(a) decode vs full replay",
    "b": "(b) scaling over symbols",
    "c": "(c) latency, event to limiter",
    "d": "(d) memory per idle symbol",
    "e": "(e) mm-trio replay vs hftbacktest's grid loop",
    "f": "(f) live ingest over the paper venue's websocket",
}


def render_markdown(res: Results, started: dt.datetime, elapsed: float, load: float) -> str:
    m = machine()
    out = [
        "# Benchmarks",
        "",
        "Latest run of `python scripts/bench.py"
        + (" --quick" if res.quick else "")
        + " --write` (this file is rewritten by it).",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC ({elapsed:.0f} s)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['os']}",
        f"- Python {m['python']}, trio {m['trio']}, msgspec {m['msgspec']}",
        f"- 1-minute load average at the start: {load:.2f} (other processes share the cores; "
        "wall-clock numbers, (c) most of all, move with it)",
        "",
        res.table(),
        "",
        "## Method",
        "",
    ]
    for key, title in METHOD_TITLES.items():
        if key in res.notes:
            out += [f"**{title}.** {res.notes[key]}", ""]
    out += ["## Where the time goes, and why (a) and (b) miss", "", ANALYSIS, ""]
    return "\n".join(out)


ANALYSIS = """\
Profiles (cProfile and py-spy of `run_replay` on the real recordings; `--profile` reruns
pyinstrument) give the same picture for every configuration:

* **The fast path (issue 12, first part).** A quote inside the symbol's quiet band (where
  neither the grid nor a breaker can react; `GridStrategy.quiet_band`,
  `RiskMonitor.quiet_band`) is absorbed by the inbox and does not wake the symbol's task: on
  the two shared recordings ~40 % fewer symbol wake-ups, byte-identical fills. The simulated
  venue hands its events straight to the demux (`Exchange.attach`), so the demux is no task
  of its own for it any more. What is left per record is the venue clock's pass (one per
  10 ms tick with events), decode (~3.2 µs a line against bare msgspec's ~1.7 µs), gzip and
  the merge (~2 µs a line), and the symbol tasks trades still wake (a trade always reaches
  the risk monitor's volume breaker). The whole-process row adds interpreter start-up and
  imports (~0.25 s). The analysis below predates that change; its shape still holds.
* **The trio scheduler is the floor.** Replaying with every event at its own recorded time
  (`replay.quantum_ms = 0`) needs one clock jump per record: the venue's clock task wakes
  (a `move_on_at` deadline: a cancel scope raised and caught), posts the event, the demux
  task wakes, the symbol's task wakes. One pass of trio's run loop with the MockClock costs
  about 20 µs, and the bare skeleton of that path -- decode, jump, two channel hops, no
  application logic -- tops out at about 23k events/s, ~7 % of bare decode (the
  "ceiling" row). No application code can make the per-event path beat it, so (a) at
  0 ms cannot reach 40 %; the full pipeline reaches ~4.5 %.
* **Batching is the lever.** With `replay.quantum_ms` the venue takes all events of a
  10 ms (default) or 100 ms window at once, and the demux and the symbol tasks drain what is
  queued without yielding between events: 13-14 % and ~23-25 % of bare decode. The rest of
  the time is then spread thinly: decoding (the same msgspec work as the bare loop), gzip
  reading and the k-way merge, the risk monitor and grid on each quote, the governor's
  exposure bookkeeping and the order path (each intent is a task, a limiter grant and a
  venue request). Reaching 40 % would need either windows of several hundred ms (events
  that late change what a market maker would have done) or a replay that bypasses the trio
  tasks, which would no longer be the live code path the replay exists to exercise.
* **(b) scaling** is measured with every event handled on its own so that conflation does
  not flatter small symbol counts, on symbols that are alike (one price band), so that each
  symbol count gets the same kind of market. The gap is in the per-event path, not in the
  orders: the "no orders" row (every grid level out of bounds, so no order at all) loses as
  much between 10 and 1,000 symbols as the full run does. What grows is the cost of the same
  calls, not their number:
  - cProfile, 100,000 events, no orders, 10 vs 1,000 symbols: the same call counts (100,010
    vs 101,000 manager `_handle` calls, 75,217 vs 75,076 quote handlers, 200,001 vs 200,001
    venue clock passes), yet each takes longer: trio's `reschedule` 0.49 -> 0.81 s,
    `RiskMonitor.on_quote` 0.35 -> 0.56 s, `dict.get` 0.08 -> 0.28 s.
  - Not the garbage collector: with `gc.disable()` both runs get ~10 % faster and the ratio
    between them stays the same (0.75).
  - What is left is memory locality. With 1,000 symbols each event touches a different
    symbol's task, channel, manager, strategy, risk monitor and book: ~18 KiB per symbol,
    ~18 MB in all, against 1 MiB of L2 per core and a 32 MiB L3 shared with everything
    else on this machine, so most of those objects come from L3 or main memory; with 10
    symbols (~180 KiB) they stay in L1/L2. That is the price of the one-task-and-one-
    channel-per-symbol design (SPEC §2); CPython offers no way to pack those objects closer.
  Nothing in the per-event path grows with the symbol count: the demux is one dict lookup,
  and one ticker per second (not per event) runs the time-driven checks of all symbols.
  The first quote of every symbol builds its grid (two buys placed and acknowledged, the one
  at the touch usually filled at once and followed by its take-profit); that order work is
  real but small next to the above.
* **(c)** is about three scheduler passes (demux, symbol task, the intent's task reaching
  the limiter): p50 ~250 µs, p99 ~600 µs at 10,000 events/s.
* **(d)** an idle symbol is its channel, its pure objects and its child nursery: ~18 KiB.
"""
