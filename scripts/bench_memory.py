"""Benchmark (d): the resident memory per idle symbol with 1,000 symbols added, measured in
a subprocess of its own (``python scripts/bench_memory.py --child N``) so that nothing else
the benchmarks did is counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import REPO, UNTHROTTLED, Results

from mm_trio.domain.config import config_from_dict
from mm_trio.domain.model import Balance
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.testing import UNBOUNDED, FakeExchange

MEMORY_SYMBOLS = 1000
TARGET_KIB = 200.0
BALANCES = {"USDT": Balance(asset="USDT", free=Decimal(10**9), locked=Decimal(0))}


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(n: int) -> None:
    trio.run(_memory_session, n)
    raise SystemExit("bench: memory session ended without a measurement")


async def _memory_session(n: int) -> dict[str, Any]:
    config = config_from_dict(UNTHROTTLED)
    symbols = [f"M{i:04d}/USDT" for i in range(n)] + ["WARM/USDT"]
    limiter = Limiter(config.limiter)
    exchange = FakeExchange(symbols, limiter=limiter, balances=BALANCES, buffer=UNBOUNDED)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        # one symbol added and removed first: lazy imports and caches are not counted
        await orch.add_symbol("WARM/USDT")
        await trio.sleep(0.05)
        await orch.remove_symbol("WARM/USDT")
        gc.collect()
        await trio.sleep(0.05)
        before = _rss_kib()
        for sym in symbols[:n]:
            await orch.add_symbol(sym)
        await trio.sleep(0.5)  # idle: no market data
        gc.collect()
        after = _rss_kib()
        result = {"before": before, "after": after, "symbols": len(orch.symbols())}
        # leave at once: the orderly shutdown of 1,000 symbols is not what is measured here
        print(json.dumps(result), flush=True)
        os._exit(0)


def bench_memory(res: Results) -> None:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(MEMORY_SYMBOLS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: memory subprocess failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # (the child exits without the orderly shutdown of 1,000 symbols: not measured here)
    per = (out["after"] - out["before"]) / out["symbols"]
    res.add(
        f"(d) RSS per idle symbol ({out['symbols']:,})",
        f"{per:,.1f} KiB",
        f"<= {TARGET_KIB:.0f} KiB",
        per <= TARGET_KIB,
    )
    res.notes["d"] = (
        f"A fresh subprocess starts the Orchestrator on an in-memory exchange (the shipped "
        f"test double, `mm_trio.exchange.testing.FakeExchange`) listing "
        f"{out['symbols']:,} symbols (specs loaded before the baseline; one warm-up symbol "
        f"added and removed), reads VmRSS from /proc/self/status, adds every symbol (no "
        f"market data, so no orders), idles 0.5 s, collects garbage and reads VmRSS again: "
        f"{out['before']:,} KiB -> {out['after']:,} KiB, difference / symbols."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the measuring child of benchmark (d)")
    parser.add_argument("--child", type=int, required=True, metavar="SYMBOLS")
    memory_child(parser.parse_args(argv).child)


if __name__ == "__main__":
    main()
