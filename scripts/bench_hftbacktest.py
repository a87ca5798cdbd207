"""Benchmark (e): whole-process ``mm-trio replay`` against hftbacktest 2.4.4's compiled grid loop.

    python scripts/bench_hftbacktest.py [--quick]

(also part "e" of ``scripts/bench.py``). hftbacktest is no dependency of mm-trio: it is
installed (once, cached under ``~/.cache/mm-trio-bench/hftbacktest-2.4.4/``) into a venv of
its own, and ``hbt_child.py`` runs there: it converts the real Binance spot recordings to
hftbacktest's event arrays, compiles an every-message grid loop with mm-trio's default grid
and times only that loop. In the same run, the whole ``mm-trio replay`` process over the same
recordings is timed. Without the recordings, or without a way to install hftbacktest (no
network), the part is skipped with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import DATA_DIR, SCRIPTS, Results
from bench_decode import (
    QUICK_LINES,
    WHOLE_REPEATS,
    _truncated_copies,
    floor_seconds,
    whole_process_seconds,
)

HBT_VERSION = "2.4.4"
CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "mm-trio-bench"
    / f"hftbacktest-{HBT_VERSION}"
)
TARGET_RATIO = 1.0  # issue 12 (e): mm-trio's whole process no slower than hftbacktest's loop
LOOP_REPEATS = 3
VENV_TIMEOUT_S = 120
PIP_TIMEOUT_S = 900  # numba + llvmlite + numpy + pandas + holoviews wheels
CHILD_TIMEOUT_S = 900  # conversion + JIT + 2 x 3 loops take ~30 s here
RECORDINGS = "binance-spot-*.gz"


class Skip(Exception):
    """Part (e) cannot run here; the message is the one-line reason."""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _run(cmd: Sequence[str | Path], what: str, timeout: float, **kw: Any) -> str:
    try:
        done = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
        )
    except subprocess.TimeoutExpired:
        raise Skip(f"{what} took longer than {timeout:.0f} s") from None
    except OSError as exc:
        raise Skip(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise Skip(f"{what} failed: {_last_line(done.stderr or done.stdout)}")
    return done.stdout


def _child_env() -> dict[str, str]:
    # the project's PYTHONPATH (this checkout) must not leak into hftbacktest's interpreter
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def hbt_python(cache: Path = CACHE_DIR) -> Path:
    """The Python of a venv with hftbacktest ``HBT_VERSION`` (made on first use); raises
    :class:`Skip` with the reason when it cannot be made."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    check = [python, "-c", "import hftbacktest, numba; print(hftbacktest.__version__)"]
    env = _child_env()
    if python.exists():
        try:
            if _run(check, "hftbacktest venv", VENV_TIMEOUT_S, env=env).strip() == HBT_VERSION:
                return python
        except Skip:
            pass  # broken or partial: made anew below
    cache.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", "--clear", venv], "python -m venv", VENV_TIMEOUT_S)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, f"hftbacktest=={HBT_VERSION}"], "pip install", PIP_TIMEOUT_S, env=env)
    version = _run(check, "hftbacktest import", VENV_TIMEOUT_S, env=env).strip()
    if version != HBT_VERSION:
        raise Skip(f"pip installed hftbacktest {version}, not {HBT_VERSION}")
    return python


def run_child(python: Path, paths: Sequence[Path], tmp: Path) -> dict[str, Any]:
    """``hbt_child.py`` in hftbacktest's venv over ``paths``: its JSON report."""
    out = tmp / "hbt_child.json"
    cmd = [python, SCRIPTS / "hbt_child.py", out, *paths, "--repeats", str(LOOP_REPEATS)]
    _run(cmd, "hftbacktest run", CHILD_TIMEOUT_S, env=_child_env(), cwd=tmp)
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return report


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def bench_hftbacktest(res: Results, tmp: Path) -> None:
    paths = sorted(DATA_DIR.glob(RECORDINGS))
    try:
        if not paths:
            raise Skip(f"no {RECORDINGS} recordings in {DATA_DIR}")
        python = hbt_python()
        source = "real recordings"
        if res.quick:
            paths = _truncated_copies(paths, QUICK_LINES, tmp)
            source += f", first {QUICK_LINES:,} lines per file (--quick)"
        hbt = run_child(python, paths, tmp)
    except Skip as skip:
        res.add("(e) mm-trio replay vs hftbacktest loop", f"skipped: {skip}")
        res.notes["e"] = f"Skipped: {skip}."
        return
    replay_s = whole_process_seconds(paths, tmp, "hbt_replay")
    summary = json.loads((tmp / "hbt_replay0" / "summary.json").read_text(encoding="utf-8"))
    replay = summary["replay"]
    assets = hbt["assets"]
    loop_s = sum(a["loop_s"] for a in assets)
    ratio = replay_s / loop_s
    lines = sum(sum(a["lines"].values()) for a in assets)
    wakes = sum(a["wakes"] for a in assets)
    per_asset = " + ".join(f"{a['symbol']} {a['loop_s']:.3f} s" for a in assets)
    res.add(
        f"(e) hftbacktest {HBT_VERSION} grid loop, every message",
        f"{loop_s:.3f} s ({per_asset}; {wakes:,} wake-ups)",
    )
    res.add(
        "(e) whole-process `mm-trio replay`, same files",
        f"{replay_s:.2f} s ({replay['records']:,} records, {replay['market_events']:,} events)",
    )
    res.add(
        "(e) mm-trio replay / hftbacktest loop",
        f"{ratio:.2f}",
        f"<= {TARGET_RATIO:.1f}",
        ratio <= TARGET_RATIO,
    )
    floor = floor_seconds(paths)
    res.add(
        "(e) floor (see (a)) / hftbacktest loop",
        f"{floor / loop_s:.2f} ({floor:.3f} s: no pipeline at all is under the loop's time)"
        if floor > loop_s
        else f"{floor / loop_s:.2f} ({floor:.3f} s)",
    )
    res.add(
        "(e) hftbacktest conversion, JIT (untimed)",
        f"{hbt['convert_s']:.1f} s, {hbt['jit_s']:.1f} s",
    )
    res.notes["e"] = _method_note(source, assets, hbt, replay, lines)


def _method_note(
    source: str, assets: list[dict[str, Any]], hbt: dict[str, Any], replay: Any, lines: int
) -> str:
    files = "; ".join(
        f"{a['file']}: lines {_kinds(a['lines'])} -> rows {_kinds(a['rows'])} "
        f"({a['events']:,} events after order correction), {a['wakes']:,} wake-ups, "
        f"loop {', '.join(f'{t:.3f}' for t in a['loop_runs_s'])} s, {a['fills']} fills, "
        f"{a['submitted']} orders submitted, {a['cancelled']} cancelled"
        for a in assets
    )
    return (
        f"Input: {source}, {lines:,} lines. hftbacktest {HBT_VERSION} in a venv of its own "
        f"(`{CACHE_DIR}`), `scripts/hbt_child.py` run by its Python. Conversion, the way "
        "`hftbacktest.data.utils.binancefutures.convert` does it, adapted to the spot "
        "streams: trade -> TRADE_EVENT (side from `m`, exch_ts = `T`; spot has no `X`, so "
        "every trade is kept), depthUpdate -> one DEPTH_EVENT per level (exch_ts = `E`, spot "
        "has no `T`; hftbacktest's spot connector uses `E` too), the REST snapshot -> "
        "DEPTH_CLEAR_EVENT + DEPTH_SNAPSHOT_EVENTs per side, bookTicker -> the converter's "
        "`opt='t'` custom events 103/104 (best bid/ask; the book itself comes from depth). "
        "Snapshot and bookTicker carry no exchange time: receive time less the latest feed "
        "latency seen in the file. Then `correct_local_timestamp(data, 0)`, "
        "`correct_event_order`, `validate_event_order`, as `convert` does. Strategy: one "
        "single-asset `HashMapMarketDepthBacktest` per recording (two runs; the loop seconds "
        "are their sum), an `@njit` loop `while hbt.wait_next_feed(False, 60 s)` that wakes "
        "once per local timestamp, i.e. once per line (the last line's wake comes back as "
        "end of data), and on every wake clears inactive orders, books fills, and "
        "re-grids with mm-trio's default grid (long mode): geometric step 0.001 on a "
        "grid anchored at the first mid and snapped down to tick, post-only (GTX) BUYs of "
        "100 USDT on the 5 highest levels under the mid whose slot is empty, a GTC "
        "take-profit SELL one level up for each filled lot, BUYs that leave the window "
        "cancelled (mm-trio's trail hysteresis is not modelled), and `recorder.record`. "
        "Venue: constant order latency 5 ms entry + 5 ms response (mm-trio's "
        "`venue.latency_ms` = 5 one way), `risk_adverse_queue_model`, "
        "`no_partial_fill_exchange`, linear asset, fees 0.1 % maker and taker (Binance spot "
        "default), tick 0.01, lot 0.00001 BTC / 0.0001 ETH. Timed: only the loop function's "
        "call, after a JIT warm-up on the first lines and with the backtest (data loaded) and "
        "recorder built before the clock starts, best of "
        f"{LOOP_REPEATS} per recording. Per file: {files}. Conversion took "
        f"{hbt['convert_s']:.1f} s and the JIT warm-up {hbt['jit_s']:.1f} s, neither timed. "
        f"mm-trio: whole-process `mm-trio replay <both files> --no-progress --out <tmp>` "
        f"(process start to exit, default config, both symbols in one process), best of "
        f"{WHOLE_REPEATS}: {replay['records']:,} records, {replay['market_events']:,} market "
        "events (bookTicker quotes + trades; depth diffs and the snapshot are read and "
        "skipped). Ratio = mm-trio seconds / hftbacktest loop seconds."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="the first lines of each file")
    args = parser.parse_args(argv)
    res = Results(quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="mm-trio-bench-") as tmpdir:
        bench_hftbacktest(res, Path(tmpdir))
    print(res.table())
    print(f"\n{res.notes['e']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
