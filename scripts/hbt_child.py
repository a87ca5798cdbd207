"""Child side of benchmark (e): hftbacktest 2.4.4's compiled grid loop over Binance spot lines.

Run by the Python of the separate hftbacktest venv that ``bench_hftbacktest.py`` creates
(never by the project's own interpreter, which has neither hftbacktest nor numba):

    <venv>/bin/python scripts/hbt_child.py OUT.json RECORDING.gz [RECORDING.gz ...]

It converts each recording to hftbacktest's event array, JIT-compiles the grid loop on a
warm-up slice, then times only the loop (best of ``--repeats``) per recording, one
single-asset backtest per recording, and writes the numbers as JSON.

:func:`convert_lines` needs only numpy, so the project's tests import it from here.

Conversion (hftbacktest ships a converter for Binance *futures* only,
``hftbacktest.data.utils.binancefutures.convert``; the spot streams lack some of its fields):

* ``trade`` -> one ``TRADE_EVENT | SELL_EVENT`` (buyer is maker, ``m``) or ``| BUY_EVENT``,
  ``exch_ts = T`` ms, as the futures converter does. Spot has no ``X`` (the futures converter
  keeps only ``X == "MARKET"``), so every trade is kept.
* ``depthUpdate`` -> one ``DEPTH_EVENT`` per bid / ask level; spot has no ``T``, so
  ``exch_ts = E`` (what hftbacktest's own spot connector uses).
* REST snapshot (``lastUpdateId``/``bids``/``asks``) -> ``DEPTH_CLEAR_EVENT`` up to the last
  level, then one ``DEPTH_SNAPSHOT_EVENT`` per level, per side, as the futures converter does.
* ``bookTicker`` -> the futures converter's ``opt='t'`` custom events ``103`` (best bid) and
  ``104`` (best ask).

Spot snapshots and bookTicker carry no exchange time: theirs is the receive time less the
feed latency (``local - exch``) of the latest timed line before it in the same file (the
first timed line's for lines before any). Then, as ``convert`` does,
``correct_local_timestamp(data, 0)``, ``correct_event_order`` and ``validate_event_order``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
BOOK_TICKER_BID = 103  # the futures converter's opt='t' custom event ids
BOOK_TICKER_ASK = 104
MS_TO_NS = 1_000_000

EVENT_DTYPE = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)
"""hftbacktest 2.4.4's ``event_dtype`` (checked against it in :func:`_check_constants`)."""

Row = tuple[int, int, int, float, float, int, int, float]


def _exch_ms(data: dict[str, Any]) -> int | None:
    """The exchange time (ms) a spot stream message carries, if any: trade ``T``, else ``E``."""
    if data.get("e") == "trade":
        return int(data["T"])
    if "E" in data:
        return int(data["E"])
    return None


def _first_latency(parsed: Sequence[tuple[int, dict[str, Any]]]) -> int:
    for local_ts, msg in parsed:
        data = msg.get("data")
        ms = _exch_ms(data) if isinstance(data, dict) else None
        if ms is not None:
            return local_ts - ms * MS_TO_NS
    return 0


def _levels(ev: int, exch: int, local: int, levels: list[list[str]]) -> list[Row]:
    return [(ev, exch, local, float(px), float(qty), 0, 0, 0.0) for px, qty in levels]


def _snapshot_rows(msg: dict[str, Any], exch: int, local: int) -> list[Row]:
    rows: list[Row] = []
    for side, key in ((BUY_EVENT, "bids"), (SELL_EVENT, "asks")):
        levels = msg[key]
        if levels:
            clear_upto = float(levels[-1][0])
            rows.append((DEPTH_CLEAR_EVENT | side, exch, local, clear_upto, 0.0, 0, 0, 0.0))
            rows += _levels(DEPTH_SNAPSHOT_EVENT | side, exch, local, levels)
    return rows


def _stream_rows(data: dict[str, Any], exch: int, local: int) -> tuple[str, list[Row]]:
    kind = data.get("e")
    if kind == "trade":
        side = SELL_EVENT if data["m"] else BUY_EVENT
        row = (TRADE_EVENT | side, exch, local, float(data["p"]), float(data["q"]), 0, 0, 0.0)
        return "trade", [row]
    if kind == "depthUpdate":
        rows = _levels(DEPTH_EVENT | BUY_EVENT, exch, local, data["b"])
        rows += _levels(DEPTH_EVENT | SELL_EVENT, exch, local, data["a"])
        return "depth", rows
    if kind is None and "b" in data and "a" in data and "u" in data:
        return "bookTicker", [
            (BOOK_TICKER_BID, exch, local, float(data["b"]), float(data["B"]), 0, 0, 0.0),
            (BOOK_TICKER_ASK, exch, local, float(data["a"]), float(data["A"]), 0, 0, 0.0),
        ]
    return "other", []


def convert_lines(lines: Iterable[bytes]) -> tuple[np.ndarray, Counter[str], Counter[str]]:
    """``<recv ns> <combined-stream JSON>`` lines of one symbol -> (event rows in file order,
    lines per kind, rows per kind). Timestamps are as recorded (no correction yet)."""
    parsed: list[tuple[int, dict[str, Any]]] = []
    for line in lines:
        ts, _, js = line.strip().partition(b" ")
        if js:
            parsed.append((int(ts), json.loads(js)))
    latency = _first_latency(parsed)
    rows: list[Row] = []
    line_kinds: Counter[str] = Counter()
    row_kinds: Counter[str] = Counter()
    for local, msg in parsed:
        data = msg.get("data")
        if isinstance(data, dict):
            ms = _exch_ms(data)
            if ms is not None:
                latency = local - ms * MS_TO_NS
            exch = local - latency if ms is None else ms * MS_TO_NS
            kind, new = _stream_rows(data, exch, local)
        elif "lastUpdateId" in msg:
            kind, new = "snapshot", _snapshot_rows(msg, local - latency, local)
        else:
            kind, new = "other", []
        line_kinds[kind] += 1
        row_kinds[kind] += len(new)
        rows += new
    return np.array(rows, dtype=EVENT_DTYPE), line_kinds, row_kinds


# ---- below: only in the hftbacktest venv ------------------------------------------------

# mm-trio's default grid (mm_trio/domain/config.py GridConfig, SimVenueConfig), long mode
GRID_STEP = 0.001  # geometric: level k at anchor * (1 + step) ** k, snapped down to tick
GRID_LEVELS = 5  # levels_below: opening BUYs on the 5 highest levels under the mid
ORDER_NOTIONAL = 100.0  # order_size in quote currency
LATENCY_NS = 5_000_000  # venue.latency_ms = 5, one way: entry and response each
FEE_MAKER = 0.001  # Binance spot default (VIP 0), maker and taker
FEE_TAKER = 0.001
# Binance spot exchangeInfo (2024): tickSize, stepSize of each recorded symbol
SPECS = {"BTCUSDT": (0.01, 0.00001), "ETHUSDT": (0.01, 0.0001)}
FEED_TIMEOUT_NS = 60 * 1_000_000_000  # longer than any gap in the recordings
WARMUP_LINES = 2_000  # JIT warm-up on the first lines of the first recording


def _check_constants() -> None:
    import hftbacktest.types as t

    ours = (DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, BUY_EVENT)
    theirs = (t.DEPTH_EVENT, t.TRADE_EVENT, t.DEPTH_CLEAR_EVENT, t.DEPTH_SNAPSHOT_EVENT)
    if ours != (*theirs, t.BUY_EVENT) or SELL_EVENT != t.SELL_EVENT:
        raise SystemExit("hbt_child: event codes differ from hftbacktest's")
    if EVENT_DTYPE != t.event_dtype:
        raise SystemExit("hbt_child: event dtype differs from hftbacktest's")


def _prepare(raw: np.ndarray) -> np.ndarray:
    """What ``binancefutures.convert`` does after parsing: latency and order correction."""
    from hftbacktest.data import (
        correct_event_order,
        correct_local_timestamp,
        validate_event_order,
    )

    raw = correct_local_timestamp(raw, 0)
    data = correct_event_order(
        raw,
        np.argsort(raw["exch_ts"], kind="mergesort"),
        np.argsort(raw["local_ts"], kind="mergesort"),
    )
    validate_event_order(data)
    return data


def _build_loop() -> Any:
    """The every-message grid loop, ``@njit`` in the style of hftbacktest's Grid Trading
    tutorial, but with mm-trio's default long grid: 5 post-only BUYs on the anchored
    geometric levels under the mid, a take-profit SELL one level up for each filled lot."""
    from hftbacktest import BUY, FILLED, GTC, GTX, LIMIT
    from numba import float64, int64, njit, uint64
    from numba.typed import Dict

    @njit
    def price_at(anchor: float, log_step: float, k: int, tick: float) -> float:
        return np.floor(anchor * np.exp(k * log_step) / tick + 1e-9) * tick

    @njit
    def grid_loop(hbt: Any, recorder: Any, step: float, levels: int, notional: float) -> Any:
        asset_no = 0
        tick = hbt.depth(asset_no).tick_size
        lot = hbt.depth(asset_no).lot_size
        log_step = np.log(1.0 + step)
        offset = 1 << 30  # order ids: 2 * (level + offset) (+ 1 for a take-profit)
        anchor = 0.0
        held = Dict.empty(int64, float64)  # slot level -> lot held (bought, not yet sold)
        wakes = fills = submitted = cancelled = 0
        while True:
            rc = hbt.wait_next_feed(False, FEED_TIMEOUT_NS)
            if rc == 1:
                break
            if rc != 0 and rc != 2:
                return -1, 0, 0, 0
            wakes += 1
            orders = hbt.orders(asset_no)
            values = orders.values()
            while values.has_next():  # fills since the last wake (no partial fills)
                order = values.get()
                if order.status == FILLED:
                    k = int64(order.order_id) // 2 - offset
                    fills += 1
                    held[k] = held.get(k, 0.0) + (
                        order.exec_qty if order.side == BUY else -order.exec_qty
                    )
            hbt.clear_inactive_orders(asset_no)

            depth = hbt.depth(asset_no)
            best_bid = depth.best_bid
            best_ask = depth.best_ask
            if not (np.isfinite(best_bid) and np.isfinite(best_ask) and best_bid < best_ask):
                recorder.record(hbt)
                continue
            mid = (best_bid + best_ask) / 2.0
            if anchor == 0.0:
                anchor = np.floor(mid / tick) * tick
            top = int64(np.floor(np.log(mid / anchor) / log_step))
            while price_at(anchor, log_step, top, tick) >= mid:
                top -= 1
            while price_at(anchor, log_step, top + 1, tick) < mid:
                top += 1

            wanted = Dict.empty(uint64, float64)  # order id -> price of every order we want
            for i in range(levels):
                k = top - i
                if held.get(k, 0.0) < lot:  # an opening BUY only on an empty slot
                    wanted[uint64(2 * (k + offset))] = price_at(anchor, log_step, k, tick)
            orders = hbt.orders(asset_no)
            values = orders.values()
            while values.has_next():  # opening BUYs that left the window
                order = values.get()
                if order.side == BUY and order.cancellable and order.order_id not in wanted:
                    hbt.cancel(asset_no, order.order_id, False)
                    cancelled += 1
            for oid, px in wanted.items():
                if oid not in orders:
                    qty = np.floor(notional / px / lot) * lot
                    hbt.submit_buy_order(asset_no, oid, px, qty, GTX, LIMIT, False)
                    submitted += 1
            for k, lot_held in held.items():  # take-profits: never cancelled by trailing
                oid = uint64(2 * (k + offset) + 1)
                qty = np.floor(lot_held / lot + 1e-9) * lot
                if qty > 0 and oid not in orders:
                    px = price_at(anchor, log_step, k + 1, tick)
                    hbt.submit_sell_order(asset_no, oid, px, qty, GTC, LIMIT, False)
                    submitted += 1
            recorder.record(hbt)
        return wakes, fills, submitted, cancelled

    return grid_loop


def _backtest(data: np.ndarray, symbol: str) -> Any:
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    tick, lot = SPECS[symbol]
    asset = (
        BacktestAsset()
        .data(data)
        .linear_asset(1.0)
        .constant_order_latency(LATENCY_NS, LATENCY_NS)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(FEE_MAKER, FEE_TAKER)
        .tick_size(tick)
        .lot_size(lot)
    )
    return HashMapMarketDepthBacktest([asset])


def _run_once(loop: Any, data: np.ndarray, symbol: str) -> tuple[float, tuple[int, ...]]:
    """One timed loop: the backtest (data loaded) and the recorder are built before the
    clock starts; closing is after it stops."""
    from hftbacktest import Recorder

    hbt = _backtest(data, symbol)
    recorder = Recorder(1, len(data) + 1)
    t0 = time.perf_counter()
    result = loop(hbt, recorder.recorder, GRID_STEP, GRID_LEVELS, ORDER_NOTIONAL)
    took = time.perf_counter() - t0
    hbt.close()
    if result[0] < 0:
        raise SystemExit(f"hbt_child: the backtest of {symbol} stopped with an error")
    return took, tuple(int(x) for x in result)


def _symbol(lines: Sequence[bytes]) -> str:
    for line in lines:
        msg = json.loads(line.partition(b" ")[2])
        data = msg.get("data")
        if isinstance(data, dict) and "s" in data:
            return str(data["s"])
    raise SystemExit("hbt_child: no symbol in the recording")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="the JSON report to write")
    parser.add_argument("paths", type=Path, nargs="+", help="one recording per symbol")
    parser.add_argument("--repeats", type=int, default=3, help="timed loops per recording")
    args = parser.parse_args(argv)
    out, paths, repeats = args.out, args.paths, args.repeats
    _check_constants()
    loop = _build_loop()
    assets = []
    t0 = time.perf_counter()
    for p in paths:
        with gzip.open(p, "rb") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        raw, line_kinds, row_kinds = convert_lines(lines)
        data = _prepare(raw)
        assets.append((p.name, _symbol(lines), data, line_kinds, row_kinds))
    convert_s = time.perf_counter() - t0

    t0 = time.perf_counter()  # warm-up: compile the loop on a small slice (not timed)
    warm = _prepare(convert_lines(lines[:WARMUP_LINES])[0])
    _run_once(loop, warm, assets[-1][1])
    jit_s = time.perf_counter() - t0

    report = []
    for name, symbol, data, line_kinds, row_kinds in assets:
        runs = [_run_once(loop, data, symbol) for _ in range(repeats)]
        wakes, fills, submitted, cancelled = runs[0][1]
        report.append(
            {
                "file": name,
                "symbol": symbol,
                "lines": dict(line_kinds),
                "rows": dict(row_kinds),
                "events": int(len(data)),
                "loop_s": min(t for t, _ in runs),
                "loop_runs_s": [t for t, _ in runs],
                "wakes": wakes,
                "fills": fills,
                "submitted": submitted,
                "cancelled": cancelled,
            }
        )
    out.write_text(
        json.dumps({"assets": report, "convert_s": convert_s, "jit_s": jit_s}), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
