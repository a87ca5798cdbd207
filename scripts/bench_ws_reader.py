"""The trader's own market-stream ceiling: messages/s the REAL ``BinanceExchange`` market stream
takes from a websocket sender that is never the bottleneck, and the trader's CPU per message.

The sender is a separate process (``--serve``, :mod:`tests.wsproto_server` on trio + wsproto):
it loads the real recordings (``../shared/data``; the ``bookTicker`` + ``trade`` lines a
trader subscribed to both symbols gets), pre-encodes every message as one combined-stream
text frame (Binance's framing: one JSON message per frame) and writes them ``SEND_BYTES`` at
a time, as fast as the client reads (TCP back-pressure paces it). The client is this process:
``BinanceExchange.market`` -> ``_on_frame`` -> the event channel, drained by a consumer shaped
like the orchestrator's demux (one ``receive`` then ``receive_nowait`` until empty).

Measured from the first market event to the last: messages/s, events/s, and the client
process's CPU time (``time.process_time``) per message. Every message sent must arrive as one
event (none lost). Run: ``python scripts/bench_ws_reader.py [--passes N]``.

Measured on the 2-core development machine (shared, so runs vary), ``--passes 2``
(135,960 messages): trio-websocket (before) 14,800-16,400 messages/s at 59-61 us CPU per
message; the wsproto-over-trio client of :mod:`mm_trio.exchange.binance.wsclient` (after)
38,000-54,000 messages/s at 18-22 us. What is left is wsproto's frame parsing (~12 us a
message) and the decode (~5 us).
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import DATA_DIR, REPO

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import Quote, Trade
from mm_trio.exchange.binance.adapter import BinanceExchange
from mm_trio.exchange.limiter import Limiter
from tests.wsproto_server import ServerConn, WsServer, encode_frames

SYMBOLS = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"}
KINDS = ("bookTicker", "trade")
SEND_BYTES = 256 * 1024
"""Bytes per socket write of the sender (~1,500 market messages)."""
DEFAULT_PASSES = 2
"""Passes over the recordings (~65,000 messages each)."""
TARGET_RATE = 25_000.0
TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0


def market_messages(data_dir: Path = DATA_DIR) -> list[str]:
    """The recordings' bookTicker + trade messages, merged by receive time."""
    lines: list[tuple[int, str]] = []
    wanted = tuple(f'"{n.lower()}@{k}"' for n in SYMBOLS for k in KINDS)
    for path in sorted(data_dir.glob("binance-spot-*.gz")):
        with gzip.open(path, "rt") as fh:
            for line in fh:
                ts, _, msg = line.rstrip("\n").partition(" ")
                if any(w in msg[:40] for w in wanted):
                    lines.append((int(ts), msg))
    lines.sort(key=lambda t: t[0])
    return [m for _, m in lines]


# --------------------------------------------------------------------------- sender
async def serve(passes: int) -> None:
    messages = market_messages()
    chunk = encode_frames(messages)
    writes = [chunk[i : i + SEND_BYTES] for i in range(0, len(chunk), SEND_BYTES)]

    async def script(conn: ServerConn) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.drain)  # the client's pings and control messages
            for _ in range(passes):
                for w in writes:
                    await conn.send_raw(w)
            await trio.sleep_forever()

    server = WsServer(script)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        print(f"port {port} messages {len(messages) * passes}", flush=True)


# --------------------------------------------------------------------------- reader
@dataclass
class Result:
    messages: int
    events: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu_s / self.messages * 1e6


async def read(port: int, total: int) -> Result:
    ex = BinanceExchange(
        base_url="http://127.0.0.1:9",  # no REST: the market stream is run on its own
        ws_url=f"ws://127.0.0.1:{port}",
        ws_api_url="ws://unused",
        api_key=None,
        limiter=Limiter(LimiterConfig()),
    )
    for native, unified in SYMBOLS.items():
        ex.decoder.add_symbol(native, unified)
    await ex.market.subscribe([s for n in SYMBOLS for s in ex.streams_for(n)])
    events = 0
    receive, receive_nowait = ex.events.receive, ex.events.receive_nowait
    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ex.market.run)
            t0 = c0 = 0.0
            while True:
                ev = await receive()
                batch = [ev]
                while True:
                    try:
                        batch.append(receive_nowait())
                    except trio.WouldBlock:
                        break
                if not events:
                    t0, c0 = time.perf_counter(), time.process_time()
                events += sum(1 for e in batch if type(e) is Quote or type(e) is Trade)
                if events >= total:
                    break
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            nursery.cancel_scope.cancel()
    ingest = ex.market_ingest
    if ingest.quotes + ingest.trades != total or events != total:
        raise SystemExit(
            f"lost: sent {total}, decoded {ingest.quotes + ingest.trades}, got {events}"
        )
    # the clock started at the first event: the rate is over the ones after it
    return Result(messages=total - 1, events=events, wall_s=wall, cpu_s=cpu)


def run(passes: int) -> Result:
    cmd = [sys.executable, str(Path(__file__)), "--serve", "--passes", str(passes)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if len(line) != 4 or line[0] != "port":
                raise SystemExit(f"sender did not start: {line!r}")
            port, total = int(line[1]), int(line[3])
            return trio.run(read, port, total)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=DEFAULT_PASSES)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        trio.run(serve, args.passes)
        return
    if not DATA_DIR.is_dir():
        raise SystemExit(f"no recordings at {DATA_DIR}")
    r = run(args.passes)
    verdict = "pass" if r.rate >= TARGET_RATE else "FAIL"
    print(
        f"market stream: {r.messages:,} messages in {r.wall_s:.2f} s = {r.rate:,.0f} msg/s "
        f"({verdict}, target {TARGET_RATE:,.0f}); {r.events:,} events received; "
        f"CPU {r.cpu_s:.2f} s = {r.cpu_us_per_msg:.1f} us/message"
    )


if __name__ == "__main__":
    main()
