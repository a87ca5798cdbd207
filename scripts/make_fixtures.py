"""Generate the synthetic market-data recordings in ``fixtures/`` (deterministic, seeded).

Each file is a recording in the SPEC §10 format (gzip text, ``<receive ns> <combined-stream
JSON>`` per line) for one symbol: Binance spot ``bookTicker``, ``trade`` and ``depth@100ms``
messages, or (``btcusdt-usdm-synth.gz``) Binance USDⓈ-M futures ``bookTicker``, ``aggTrade``
and ``depth@100ms`` messages laid out exactly as fstream sends them. The market follows the
same script in every file:

====================  ===========================================================
market time (s)       segment
====================  ===========================================================
0 - 45                ranging (mean-reverting around the start price)
45 - 90               trending up (about +0.9 %)
90 - 97               gap: no data at all
97 - 142              trending down (about -1.2 %)
142 - 180             ranging
====================  ===========================================================

``btcusdt`` additionally holds one line with a non-integer receive time (recording-level
malformed), one truncated JSON line (message-level malformed) and one ``@kline_1m`` line (an
unknown stream). ``ethbtc`` is a short, sparse third file (30 s - 150 s).

The USDⓈ-M file uses futures conventions: fstream field order, ``E`` (event) and ``T``
(transaction) times on every message, aggregate trades (``a``/``f``/``l``; the classic
futures API documents no raw ``@trade`` stream), 13-digit order-book update ids, depth diffs
chained by ``pu`` (= the previous diff's ``u``; broken once, across the gap, where the
recorder missed messages), BTCUSDT-perpetual precision (price 2 decimals on a 0.10 tick,
quantity 3 decimals) and no malformed lines.

Only ``random.Random.random`` and integer arithmetic feed the output, and gzip is written with
mtime 0 and no file name, so the same seed gives the same bytes::

    python scripts/make_fixtures.py [--out fixtures] [--seed 7] [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import random
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec

from mm_trio.domain.model import Quote, Trade, native_symbol
from mm_trio.exchange.binance.decode import DepthUpdate
from mm_trio.exchange.binance.encode import (
    encode_book_ticker,
    encode_depth_update,
    encode_trade,
)
from mm_trio.exchange.recording import write_raw_lines

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SEC = 1_000_000_000
MS = 1_000_000
DEFAULT_SEED = 7

# (start s, end s, drift per second as a fraction of price, ranging?)
SEGMENTS: tuple[tuple[int, int, float, bool], ...] = (
    (0, 45, 0.0, True),
    (45, 90, 0.0002, False),
    (97, 142, -0.00027, False),
    (142, 180, 0.0, True),
)


@dataclass(frozen=True)
class FixtureSymbol:
    symbol: str
    file: str
    price: Decimal  # start price
    tick: Decimal
    step: Decimal
    typical_qty: Decimal  # order-of-magnitude of quote/trade sizes
    step_ms: int  # market time between book updates
    vol: float  # per-step noise, fraction of price
    start_s: int = 0
    end_s: int = 180
    venue: Literal["spot", "usdm"] = "spot"


SYMBOLS: tuple[FixtureSymbol, ...] = (
    FixtureSymbol(
        "BTC/USDT", "btcusdt-synth.gz", Decimal("60000.00"), Decimal("0.01"),
        Decimal("0.00001"), Decimal("0.5"), step_ms=200, vol=0.00025,
    ),
    FixtureSymbol(
        "ETH/USDT", "ethusdt-synth.gz", Decimal("2600.00"), Decimal("0.01"),
        Decimal("0.0001"), Decimal("5"), step_ms=200, vol=0.0003,
    ),
    FixtureSymbol(
        "ETH/BTC", "ethbtc-synth.gz", Decimal("0.04330"), Decimal("0.00001"),
        Decimal("0.0001"), Decimal("2"), step_ms=500, vol=0.0003, start_s=30, end_s=150,
    ),
    # USDⓈ-M perpetual: a small premium over spot, 0.10 tick, 0.001 step, deeper book
    FixtureSymbol(
        "BTC/USDT", "btcusdt-usdm-synth.gz", Decimal("60030.00"), Decimal("0.1"),
        Decimal("0.001"), Decimal("1.5"), step_ms=250, vol=0.00025, venue="usdm",
    ),
)  # fmt: skip

# USDⓈ-M number formats (BTCUSDT perpetual: pricePrecision 2, quantityPrecision 3)
USDM_PRICE_DP = 2
USDM_QTY_DP = 3
USDM_FIRST_UPDATE_ID = 7_910_000_000_000  # fstream order-book ids are 13-digit
USDM_ID_SCALE = 37  # fstream ids advance by hundreds per 100 ms
USDM_FIRST_AGG_ID = 2_950_000_000
USDM_FIRST_TRADE_ID = 6_100_000_000
USDM_GAP_IDS = 250_000  # ids consumed by the book while the recorder saw nothing

_JSON = msgspec.json.Encoder()


def _segment(t_s: float) -> tuple[float, bool] | None:
    for start, end, drift, ranging in SEGMENTS:
        if start <= t_s < end:
            return drift, ranging
    return None  # the gap


def _qty(rng: random.Random, fs: FixtureSymbol) -> Decimal:
    """A positive quantity on the step grid, roughly ``typical_qty`` * U(0.02, 2)."""
    units = int(fs.typical_qty / fs.step)
    n = max(1, int(units * (0.02 + 1.98 * rng.random() ** 2)))
    return fs.step * n


def generate(fs: FixtureSymbol, seed: int) -> Iterator[tuple[int, bytes]]:
    """``(receive ns, payload)`` lines for one symbol, in receive order."""
    rng = random.Random(seed * 1_000 + SYMBOLS.index(fs))
    usdm = fs.venue == "usdm"
    native = native_symbol(fs.symbol)
    tick = fs.tick
    anchor = float(fs.price)
    mid = anchor
    update_id = USDM_FIRST_UPDATE_ID if usdm else 10_000_000
    id_scale = USDM_ID_SCALE if usdm else 1
    trade_id = USDM_FIRST_AGG_ID if usdm else 1_000_000
    first_trade = USDM_FIRST_TRADE_ID  # usdm: raw trade ids behind each aggTrade (f..l)
    prev_u = update_id  # usdm: the previous depth diff's u (pu of the next one)
    step_ns = fs.step_ms * MS
    t = fs.start_s * SEC
    prev_bid: Decimal | None = None
    prev_ask: Decimal | None = None
    while t < fs.end_s * SEC:
        seg = _segment(t / SEC)
        if seg is None:
            if usdm:  # the book moved on unseen: the next diff's pu is not the last seen u
                update_id += USDM_GAP_IDS * fs.step_ms // 1000
                prev_u = update_id
            t += step_ns
            continue
        drift, ranging = seg
        dt = fs.step_ms / 1000
        shock = (rng.random() - 0.5) * 2 * fs.vol * 1.7
        if ranging:
            mid += (anchor - mid) * 0.03 + mid * shock
        else:
            mid += mid * (drift * dt + shock)
            anchor = mid
        bid = (Decimal(round(mid / float(tick))) - 1) * tick
        spread = 1 if rng.random() < 0.8 else 1 + int(rng.random() * 3)
        ask = bid + spread * tick
        # 1-2 book tickers, 0-3 trades and one depth diff per step, at sorted offsets
        offsets = sorted(int(rng.random() * step_ns) for _ in range(6))
        out: list[tuple[int, bytes]] = []
        latency = 2 * MS + int(rng.random() * 3 * MS)
        for k in range(1 + (rng.random() < 0.3)):
            update_id += (1 + int(rng.random() * 4)) * id_scale
            q = Quote(
                symbol=fs.symbol, bid=bid, bid_qty=_qty(rng, fs), ask=ask,
                ask_qty=_qty(rng, fs), ts=0,
            )  # fmt: skip
            recv = t + offsets[k]
            if usdm:
                event_ms = (START_NS + recv - latency) // MS
                trans_ms = event_ms - int(rng.random() * 2)
                payload = _usdm_book_ticker(native, q, update_id, trans_ms, event_ms)
            else:
                payload = encode_book_ticker(q, update_id=update_id)
            out.append((recv, payload))
        up = drift > 0 or (ranging and mid < anchor)
        for k in range(int(rng.random() * 4)):
            at_ask = rng.random() < (0.65 if up else 0.35)
            trade_id += 1
            recv = t + offsets[2 + k]
            tr = Trade(
                symbol=fs.symbol, price=ask if at_ask else bid, qty=_qty(rng, fs),
                buyer_maker=not at_ask, trade_id=trade_id,
                ts=(START_NS + recv - latency) // MS * MS,
            )  # fmt: skip
            if usdm:
                fills = 1 + int(rng.random() ** 2 * 6)  # raw trades folded into this one
                trans_ms = tr.ts // MS - 1 - int(rng.random() * 8)
                payload = _usdm_agg_trade(
                    native, tr, first_trade, first_trade + fills - 1, trans_ms
                )
                first_trade += fills
            else:
                payload = encode_trade(tr)
            out.append((recv, payload))
        if usdm:  # fstream: U jumps past ids already shown by bookTicker; pu chains diffs
            first = update_id + 1 + int(rng.random() * 2) * id_scale
        else:
            first = update_id + 1
        update_id += (2 + int(rng.random() * 6)) * id_scale
        bids = [(bid, _qty(rng, fs))]
        asks = [(ask, _qty(rng, fs))]
        if prev_bid is not None and prev_bid > bid:
            bids.append((prev_bid, Decimal(0)))
        if prev_ask is not None and prev_ask < ask:
            asks.append((prev_ask, Decimal(0)))
        for _ in range(int(rng.random() * 3)):
            bids.append((bid - tick * (1 + int(rng.random() * 50)), _qty(rng, fs)))
            asks.append((ask + tick * (1 + int(rng.random() * 50)), _qty(rng, fs)))
        recv = t + offsets[5]
        depth = DepthUpdate(
            symbol=fs.symbol, first_id=first, last_id=update_id,
            bids=tuple(bids), asks=tuple(asks), ts=(START_NS + recv - latency) // MS * MS,
            prev_last_id=prev_u if usdm else None,
        )  # fmt: skip
        if usdm:
            trans_ms = depth.ts // MS - 1 - int(rng.random() * 10)
            payload = _usdm_depth_update(native, depth, trans_ms)
            prev_u = update_id
        else:
            payload = encode_depth_update(depth)
        out.append((recv, payload))
        out.sort(key=lambda item: item[0])
        for ts, payload in out:
            yield START_NS + ts, payload
        prev_bid, prev_ask = bid, ask
        t += step_ns


def _usdm_price(value: Decimal) -> str:
    return f"{value:.{USDM_PRICE_DP}f}"


def _usdm_qty(value: Decimal) -> str:
    return f"{value:.{USDM_QTY_DP}f}"


def _combined(stream: str, data: dict[str, Any]) -> bytes:
    return _JSON.encode({"stream": stream, "data": data})


def _usdm_book_ticker(native: str, q: Quote, update_id: int, trans_ms: int, event_ms: int) -> bytes:
    """USDⓈ-M ``<symbol>@bookTicker``, in fstream's field order (``T``/``E`` last)."""
    return _combined(f"{native.lower()}@bookTicker", {
        "e": "bookTicker", "u": update_id, "s": native,
        "b": _usdm_price(q.bid), "B": _usdm_qty(q.bid_qty),
        "a": _usdm_price(q.ask), "A": _usdm_qty(q.ask_qty),
        "T": trans_ms, "E": event_ms,
    })  # fmt: skip


def _usdm_agg_trade(native: str, tr: Trade, first: int, last: int, trans_ms: int) -> bytes:
    """USDⓈ-M ``<symbol>@aggTrade`` (``a`` = ``tr.trade_id``, raw trades ``f``..``l``)."""
    return _combined(f"{native.lower()}@aggTrade", {
        "e": "aggTrade", "E": tr.ts // MS, "a": tr.trade_id, "s": native,
        "p": _usdm_price(tr.price), "q": _usdm_qty(tr.qty), "f": first, "l": last,
        "T": trans_ms, "m": tr.buyer_maker,
    })  # fmt: skip


def _usdm_depth_update(native: str, d: DepthUpdate, trans_ms: int) -> bytes:
    """USDⓈ-M ``<symbol>@depth@100ms`` diff (``E``, ``T``, ``U``, ``u``, ``pu``)."""
    return _combined(f"{native.lower()}@depth@100ms", {
        "e": "depthUpdate", "E": d.ts // MS, "T": trans_ms, "s": native,
        "U": d.first_id, "u": d.last_id, "pu": d.prev_last_id,
        "b": [[_usdm_price(p), _usdm_qty(q)] for p, q in d.bids],
        "a": [[_usdm_price(p), _usdm_qty(q)] for p, q in d.asks],
    })  # fmt: skip


def _lines(fs: FixtureSymbol, seed: int) -> Iterator[bytes]:
    """Rendered recording lines, with the deliberate bad lines for spot BTC/USDT."""
    for ts, payload in generate(fs, seed):
        line = b"%d %s" % (ts, payload)
        if fs.file == "btcusdt-synth.gz":
            if ts == _first_after(fs, seed, 20):
                yield b'not-a-time {"stream":"btcusdt@trade","data":{}}'
            if ts == _first_after(fs, seed, 30):
                yield b'%d {"stream":"btcusdt@trade","data":{"e":"trade","E":17' % ts
            if ts == _first_after(fs, seed, 40):
                yield (
                    b'%d {"stream":"btcusdt@kline_1m","data":{"e":"kline","E":%d,'
                    b'"s":"BTCUSDT","k":{"i":"1m"}}}' % (ts, ts // MS)
                )
        yield line


_FIRST_CACHE: dict[tuple[str, int, int], int] = {}


def _first_after(fs: FixtureSymbol, seed: int, second: int) -> int:
    key = (fs.file, seed, second)
    if key not in _FIRST_CACHE:
        when = START_NS + second * SEC
        _FIRST_CACHE[key] = next(ts for ts, _ in generate(fs, seed) if ts >= when)
    return _FIRST_CACHE[key]


def make_fixtures(out: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write every fixture file into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fs in SYMBOLS:
        path = out / fs.file
        write_raw_lines(path, _lines(fs, seed))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "fixtures")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--check", action="store_true", help="regenerate into a temp dir; fail if out differs"
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = make_fixtures(Path(tmp), args.seed)
            bad = [
                p.name
                for p in fresh
                if not (args.out / p.name).is_file()
                or not filecmp.cmp(p, args.out / p.name, shallow=False)
            ]
        if bad:
            print(f"fixtures differ from the generator: {', '.join(bad)}", file=sys.stderr)
            return 1
        print("fixtures up to date")
        return 0
    for path in make_fixtures(args.out, args.seed):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
