"""Benchmark (f): live ingest -- market events/s one ``mm-trio run --venue binance`` takes from
the paper venue's combined stream over a real websocket, with no event lost or delayed past
100 ms (issue 12 (f)).

Each step of the ramp starts two real processes on loopback: ``mm-trio venue --replay
<shared recordings> --replay-speed X --replay-repeat N`` and ``mm-trio run --venue binance
--base-url <venue>`` trading BTC/USDT and ETH/USDT. The venue plays the recordings X times
faster than recorded (N passes, enough to outlast the trader's start-up and the window); the
trader subscribes to ``bookTicker`` + ``trade`` of both. When the replay has ended and the
venue's send queue is empty, the step compares:

* the venue's count of market messages queued on the trader's connection (``GET
  /_admin/stats``) with the trader's count of market events decoded
  (``mm_trio_market_events_received_total`` on its ``/metrics``): lost = venue - trader;
* the trader's ``mm_trio_market_event_lag_seconds`` histogram: every trade's venue event time
  ``E`` (stamped by the venue when it publishes, ms) to its local receipt; delayed = trades
  over 0.1 s; quotes share the connection's order, so a quote cannot wait behind a backlog a
  trade does not see;
* the rate: messages on the connection / (last - first message's venue time);
* the CPU% of each process over the step's streaming window (``/proc/<pid>/stat``).

The result is the highest rate of a step with zero loss and zero delayed trades. ``--profile``
reruns the top step with the trader under pyinstrument and prints its profile.

A "venue only" step first measures what the venue alone can send: the same replay, faster
than the venue can publish, to a lean client in this process that only counts frames (a
trio socket read 64 KiB at a time, frame headers walked by hand, pings answered); lost =
the venue's count for the connection - frames counted.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# bench_common first: it puts the checkout's mm_trio on sys.path
from bench_common import DATA_DIR, REPO, Results, fmt_rate

SPEEDS = (25.0, 75.0, 110.0, 150.0)  # the two recordings' bookTicker + trade: ~196 events/s at x1
SPEEDS_QUICK = (110.0,)
WINDOW_S = 4.0  # seconds of streaming wanted on the trader's connection
VENUE_SPEED = 300.0  # venue only: beyond what the venue can publish, so it runs flat out
VENUE_WINDOW_S = 6.0  # seconds of replay the venue-only client is offered
VENUE_WINDOW_QUICK_S = 3.0
VENUE_TARGET_RATE = 25_000.0
READ_BYTES = 64 * 1024
IDLE_S = 1.0  # the venue-only client asks whether the replay ended after this long idle
CPU_BOUND_PCT = 85.0  # a process this busy is the bottleneck
STREAMS = "btcusdt@bookTicker/btcusdt@trade/ethusdt@bookTicker/ethusdt@trade"
STARTUP_S = 6.0  # allowance for the trader to start and subscribe
MIN_WINDOW_S = 1.0  # a step that streamed less than this says so
TARGET_RATE = 20_000.0
LAG_BOUND = 0.1  # seconds: "no event delayed past 100 ms"
STEP_TIMEOUT_S = 20.0  # after the replay's end: a trader that has not drained by then failed
READY_TIMEOUT_S = 30.0
POLL_S = 0.25
SETTLE_S = 0.5  # after the venue's queue drained: let the trader decode the last bytes
ADMIN_TOKEN = "bench-ingest-admin-token-0123456789"
CONTROL_TOKEN = "bench-ingest-control-token-0123456789"
SYMBOLS = "BTC/USDT,ETH/USDT"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_BANNER = re.compile(r"on (http://127\.0\.0\.1:\d+)")
_CONTROL = re.compile(r"control API on (http://127\.0\.0\.1:\d+)")
TRADER_TOML = """\
[grid]
step = "0.0005"
levels_below = 4
levels_above = 0
order_size = "50"

[risk]
jump_pct = "50"
volume_spike_factor = "100000"
reject_storm_count = 100000
stale_after = 60.0

[limiter]
orders_per_10s = 1000
weight_per_minute = 60000

[run]
status_interval = 3600.0
"""
VENUE_TOML = """\
[server.rate_limits]
orders_limit_short = 1000
weight_limit = 60000
"""


@dataclass
class Step:
    speed: float
    messages: int  # market messages the venue queued on the trader's connection
    received: int  # market events the trader decoded
    trades_timed: int
    delayed: int  # trades over LAG_BOUND
    max_lag_s: float
    window_s: float
    venue_cpu: float  # % of one core
    trader_cpu: float
    venue_behind_ms: float  # how far the venue's publication ran behind its schedule
    overflowed: bool
    trader_cpu_s: float
    drained: bool = True  # the venue's queue emptied before the step's timeout

    @property
    def us_per_event(self) -> float:
        """The trader's CPU per market event received (µs), start-up excluded."""
        return 1e6 * self.trader_cpu_s / self.received if self.received else 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.window_s if self.window_s > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.messages - self.received

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.delayed == 0 and not self.overflowed and self.drained


def recordings() -> list[Path]:
    files = sorted(DATA_DIR.glob("*.gz"))
    if not files:
        raise SystemExit(f"bench (f): no recordings in {DATA_DIR}")
    return files


def recording_span_s(files: list[Path]) -> float:
    """Seconds the merged recordings span (first to last receive time)."""
    sys.path.insert(0, str(REPO))
    from mm_trio.exchange.recording import merge_recordings

    first = last = None
    for ts, _raw in merge_recordings(files):
        first = ts if first is None else first
        last = ts
    assert first is not None and last is not None
    return (last - first) / 1e9


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MM_TRIO_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _mm_trio() -> list[str]:
    return [sys.executable, "-c", "import sys; from mm_trio.cli import main; sys.exit(main())"]


def _wait_line(proc: subprocess.Popen[str], pattern: re.Pattern[str], what: str) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} exited before it was ready (rc {proc.poll()})")
        match = pattern.search(line)
        if match:
            return match.group(1)
    raise RuntimeError(f"{what} not ready within {READY_TIMEOUT_S:g}s")


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_step(
    speed: float, files: list[Path], span_s: float, tmp: Path, profile: Path | None
) -> Step:
    repeat = max(1, math.ceil((STARTUP_S + WINDOW_S) * speed / span_s))
    (tmp / "venue.toml").write_text(VENUE_TOML)
    (tmp / "trader.toml").write_text(TRADER_TOML)
    venue = subprocess.Popen(
        [*_mm_trio(), "--log-level", "WARNING", "venue", "--port", "0",
         "--config", str(tmp / "venue.toml"), "--replay", *map(str, files),
         "--replay-speed", f"{speed:g}", "--replay-repeat", str(repeat)],
        stdout=subprocess.PIPE, stderr=(tmp / "venue.err").open("w"), text=True,
        env=_env({"MM_TRIO_VENUE_ADMIN_TOKEN": ADMIN_TOKEN}),
    )  # fmt: skip
    trader: subprocess.Popen[str] | None = None
    try:
        base = _wait_line(venue, _BANNER, "the venue")
        trader_cmd = [
            "--log-level", "WARNING", "run", "--venue", "binance", "--base-url", base,
            "--symbols", SYMBOLS, "--config", str(tmp / "trader.toml"), "--no-state",
            "--quiet", "--control", "127.0.0.1:0",
        ]  # fmt: skip
        prefix = _mm_trio()
        if profile is not None:
            prefix = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(profile),
                      "-c", _mm_trio()[-1]]  # fmt: skip
        trader = subprocess.Popen(
            [*prefix, *trader_cmd],
            stdout=subprocess.PIPE, stderr=(tmp / "trader.err").open("w"), text=True,
            env=_env({"MM_TRIO_API_KEY": "mmtrio-test-key",
                      "MM_TRIO_API_SECRET": "mmtrio-test-secret",
                      "MM_TRIO_CONTROL_TOKEN": CONTROL_TOKEN, "XDG_DATA_HOME": str(tmp)}),
        )  # fmt: skip
        control = _wait_line(trader, _CONTROL, "the trader")
        timeout = repeat * span_s / speed + STEP_TIMEOUT_S
        return _measure(speed, base, control, venue.pid, trader.pid, timeout)
    finally:
        if trader is not None:
            _stop(trader)
        _stop(venue)


def _measure(
    speed: float, base: str, control: str, venue_pid: int, trader_pid: int, timeout: float
) -> Step:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(timeout=10) as http:
        deadline = time.monotonic() + timeout
        drained = True
        cpu0: tuple[float, float, float] | None = None
        conns: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            stats = http.get(f"{base}/_admin/stats", headers=admin).json()
            # the trader's connections (more than one if it was dropped and reconnected)
            conns = [c for c in stats["connections"] if c["combined"]]
            streaming = any(c["market_messages"] for c in conns)
            if streaming and cpu0 is None:
                cpu0 = (time.monotonic(), cpu_seconds(venue_pid), cpu_seconds(trader_pid))
            if stats["replay"]["exhausted"] and conns and not any(c["queued"] for c in conns):
                break
            time.sleep(POLL_S)
        else:
            drained = False  # measured as it stands: not clean
        t1, v1, r1 = time.monotonic(), cpu_seconds(venue_pid), cpu_seconds(trader_pid)
        time.sleep(SETTLE_S)
        metrics = http.get(
            f"{control}/metrics", headers={"Authorization": f"Bearer {CONTROL_TOKEN}"}
        ).text
    if cpu0 is None:
        raise RuntimeError(f"speed {speed:g}: the trader's connection got no market data")
    t0, v0, r0 = cpu0
    lag = "mm_trio_market_event_lag_seconds"
    timed = int(_metric(metrics, lag + "_count"))
    within = int(_metric(metrics, lag + "_bucket", f'{{le="{LAG_BOUND!r}"}}'))
    received = sum(
        int(_metric(metrics, "mm_trio_market_events_received_total", f'{{kind="{k}"}}'))
        for k in ("quote", "trade")
    )
    sent = [c for c in conns if c["market_messages"]]
    return Step(
        speed=speed,
        messages=sum(c["market_messages"] for c in sent),
        received=received,
        trades_timed=timed,
        delayed=timed - within,
        max_lag_s=_metric(metrics, "mm_trio_market_event_lag_max_seconds"),
        window_s=(sent[-1]["last_market_ns"] - sent[0]["first_market_ns"]) / 1e9,
        venue_cpu=100 * (v1 - v0) / (t1 - t0),
        trader_cpu=100 * (r1 - r0) / (t1 - t0),
        venue_behind_ms=stats["replay"]["max_lag_ms"],
        overflowed=any(c["overflowed"] for c in conns),
        trader_cpu_s=r1 - r0,
        drained=drained,
    )


@dataclass
class VenueStep:
    speed: float
    counted: int  # frames the lean client counted
    messages: int  # market messages the venue queued on its connection
    window_s: float  # first to last frame, client side
    venue_cpu: float
    venue_cpu_s: float
    behind_ms: float
    overflowed: bool

    @property
    def rate(self) -> float:
        return self.counted / self.window_s if self.window_s > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.messages - self.counted

    @property
    def us_per_message(self) -> float:
        return 1e6 * self.venue_cpu_s / self.counted if self.counted else 0.0


def _frames(buf: bytearray) -> tuple[int, int, list[bytes], bool]:
    """Walk the whole server frames at the start of ``buf``: (bytes used, data frames ended,
    ping payloads, close seen)."""
    pos = count = 0
    pings: list[bytes] = []
    end = len(buf)
    while end - pos >= 2:  # noqa: PLR2004 -- the shortest frame header
        b0, n = buf[pos], buf[pos + 1] & 0x7F
        head = 2
        if n == 126:  # noqa: PLR2004 -- RFC 6455 16-bit length
            head, n = 4, int.from_bytes(buf[pos + 2 : pos + 4], "big")
        elif n == 127:  # noqa: PLR2004 -- 64-bit length
            head, n = 10, int.from_bytes(buf[pos + 2 : pos + 10], "big")
        if end - pos < head + n:
            break
        opcode = b0 & 0x0F
        if opcode == 0x9:  # noqa: PLR2004 -- ping
            pings.append(bytes(buf[pos + head : pos + head + n]))
        elif opcode == 0x8:  # noqa: PLR2004 -- close
            return pos + head + n, count, pings, True
        elif b0 & 0x80:  # the final frame of a text/binary message
            count += 1
        pos += head + n
    return pos, count, pings, False


async def _count_frames(base: str, admin: dict[str, str]) -> tuple[int, float, float]:
    """Count the frames of a combined-stream connection until the replay ended and the
    venue's queue is empty: (frames, first frame time, last frame time) (monotonic s)."""
    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Ping, Request

    host, port = base.removeprefix("http://").rsplit(":", 1)
    sock = await trio.open_tcp_stream(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)  # writes the request and the pongs
    await sock.send_all(
        ws.send(Request(host=f"{host}:{port}", target=f"/stream?streams={STREAMS}"))
    )
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = await sock.receive_some(READ_BYTES)
        if not data:
            raise RuntimeError("venue only: the venue closed the stream before accepting it")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"venue only: the stream was refused: {head[:80]!r}")
    ws.receive_data(head + b"\r\n\r\n")  # wsproto takes the handshake; frames are ours
    if not any(isinstance(ev, AcceptConnection) for ev in ws.events()):
        raise RuntimeError("venue only: bad handshake reply")
    buf = bytearray(rest)
    count, first, last = 0, 0.0, 0.0
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=10) as http:
        while True:
            with trio.move_on_after(IDLE_S) as idle:
                data = await sock.receive_some(READ_BYTES)
            if idle.cancelled_caught:
                stats = (await http.get("/_admin/stats")).json()
                conn = stats["connections"][-1]
                if stats["replay"]["exhausted"] and not conn["queued"]:
                    break
                continue
            if not data:
                break
            buf += data
            used, n, pings, closed = _frames(buf)
            del buf[:used]
            if n:
                last = time.monotonic()
                first = first or last
                count += n
            for payload in pings:
                await sock.send_all(ws.send(Ping(payload=payload).response()))
            if closed:
                break
    await sock.aclose()
    return count, first, last


def run_venue_only(files: list[Path], span_s: float, tmp: Path, window_s: float) -> VenueStep:
    """The venue alone, flat out, to the lean counting client."""
    import trio

    speed = VENUE_SPEED
    repeat = max(1, math.ceil(window_s * speed / span_s))
    venue = subprocess.Popen(
        [*_mm_trio(), "--log-level", "WARNING", "venue", "--port", "0", "--replay",
         *map(str, files), "--replay-speed", f"{speed:g}", "--replay-repeat", str(repeat)],
        stdout=subprocess.PIPE, stderr=(tmp / "venue-only.err").open("w"), text=True,
        env=_env({"MM_TRIO_VENUE_ADMIN_TOKEN": ADMIN_TOKEN}),
    )  # fmt: skip
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        base = _wait_line(venue, _BANNER, "the venue")
        cpu0 = cpu_seconds(venue.pid)
        count, first, last = trio.run(_count_frames, base, admin)
        cpu1 = cpu_seconds(venue.pid)
        stats = httpx.get(f"{base}/_admin/stats", headers=admin, timeout=10).json()
    finally:
        _stop(venue)
    conn = stats["connections"][-1]
    window = last - first
    return VenueStep(
        speed=speed,
        counted=count,
        messages=conn["market_messages"],
        window_s=window,
        # the client connected as the replay began: the venue's CPU is the window's
        venue_cpu=100 * (cpu1 - cpu0) / window if window > 0 else 0.0,
        venue_cpu_s=cpu1 - cpu0,
        behind_ms=stats["replay"]["max_lag_ms"],
        overflowed=conn["overflowed"],
    )


def bottleneck(v: VenueStep | None, s: Step | None) -> str:
    """Which process limits the rate, from the CPU each used."""
    parts = []
    if v is not None:
        limit = (
            f"publishing is the limit: {v.behind_ms:.0f} ms behind its schedule"
            if v.behind_ms > LAG_BOUND * 1000
            else "kept its schedule"
        )
        parts.append(
            f"venue alone {fmt_rate(v.rate)} at {v.venue_cpu:.0f} % CPU, {limit} "
            f"({v.us_per_message:.0f} µs/message: replay decode + JSON encode + send)"
        )
    if s is not None:
        busy = [
            n for n, c in (("venue", s.venue_cpu), ("trader", s.trader_cpu)) if c >= CPU_BOUND_PCT
        ]
        parts.append(
            f"top trader step x{s.speed:g}: "
            + (f"{' and '.join(busy)} CPU-bound" if busy else "neither process CPU-bound")
            + f" (venue {s.venue_cpu:.0f} %, trader {s.trader_cpu:.0f} %, "
            f"{s.us_per_event:.0f} µs/event in the trader)"
        )
    return "; ".join(parts)


def describe(s: Step) -> str:
    return (
        f"x{s.speed:g}: {fmt_rate(s.rate)} over {s.window_s:.1f} s, {s.messages:,} sent, "
        f"lost {s.lost}, {s.delayed}/{s.trades_timed} trades > 100 ms (max "
        f"{s.max_lag_s * 1000:.0f} ms), CPU venue {s.venue_cpu:.0f} % / trader "
        f"{s.trader_cpu:.0f} % ({s.us_per_event:.0f} µs/event)"
        f"{', OVERFLOWED' if s.overflowed else ''}{'' if s.drained else ', NOT DRAINED'}"
    )


def bench_ingest(res: Results, tmp: Path, profile: bool) -> None:
    files = recordings()
    span = recording_span_s(files)
    v = run_venue_only(files, span, tmp, VENUE_WINDOW_QUICK_S if res.quick else VENUE_WINDOW_S)
    print(
        f"(f) venue only x{v.speed:g}: {fmt_rate(v.rate)} over {v.window_s:.1f} s, "
        f"{v.counted:,} counted, lost {v.lost}, venue CPU {v.venue_cpu:.0f} % "
        f"({v.us_per_message:.0f} µs/message), behind schedule {v.behind_ms:.0f} ms"
        f"{', OVERFLOWED' if v.overflowed else ''}",
        file=sys.stderr,
        flush=True,
    )
    res.add(
        "(f) venue only: market messages/s to one lean client, zero loss",
        fmt_rate(v.rate) if v.lost == 0 and not v.overflowed else f"lost {v.lost}",
        f">= {fmt_rate(VENUE_TARGET_RATE)}",
        v.lost == 0 and not v.overflowed and v.rate >= VENUE_TARGET_RATE,
    )
    res.add(
        "(f) venue only: CPU (per message)",
        f"{v.venue_cpu:.0f} % ({v.us_per_message:.0f} µs)",
    )
    steps: list[Step] = []
    for speed in SPEEDS_QUICK if res.quick else SPEEDS:
        step = run_step(speed, files, span, tmp, None)
        print(f"(f) {describe(step)}", file=sys.stderr, flush=True)
        steps.append(step)
    clean = [s for s in steps if s.clean and s.window_s >= MIN_WINDOW_S]
    best = max(clean, key=lambda s: s.rate) if clean else None
    value = fmt_rate(best.rate) if best else "none clean"
    res.add(
        "(f) live ingest, zero loss, delay <= 100 ms",
        value,
        f">= {fmt_rate(TARGET_RATE)}",
        best is not None and best.rate >= TARGET_RATE,
    )
    for s in steps:
        res.add(f"(f) x{s.speed:g}: rate, lost, trades > 100 ms, max lag", (
            f"{fmt_rate(s.rate)}, {s.lost}, {s.delayed}, {s.max_lag_s * 1000:.0f} ms"
        ))  # fmt: skip
        res.add(
            f"(f) x{s.speed:g}: CPU venue / trader (trader CPU per event)",
            f"{s.venue_cpu:.0f} % / {s.trader_cpu:.0f} % ({s.us_per_event:.0f} µs)",
        )
    res.add("(f) bottleneck", bottleneck(v, best or (steps[-1] if steps else None)))
    if profile and steps:
        top = best or steps[0]
        out = tmp / "trader-profile.txt"
        step = run_step(top.speed, files, span, tmp, out)
        print(f"(f) profiled: {describe(step)}", file=sys.stderr)
        if out.exists():
            print(out.read_text(), file=sys.stderr)
    res.notes["f"] = (
        "Each step runs `mm-trio venue --replay <the two shared recordings> --replay-speed X "
        "--replay-repeat N` and `mm-trio run --venue binance --base-url <venue>` (BTC/USDT, "
        "ETH/USDT, a 4-level grid that trades) as real processes on loopback; N passes "
        f"outlast the trader's start-up, leaving ~{WINDOW_S:g} s of streaming. After the "
        "replay ends and the venue's send queue is empty, the venue's count of market "
        "messages queued on the trader's connection (`GET /_admin/stats`) is compared with "
        "the trader's `mm_trio_market_events_received_total` (lost = the difference), and "
        "the trader's `mm_trio_market_event_lag_seconds` histogram gives the trades received "
        "more than 100 ms after their `E` (which the venue stamps when it publishes, in "
        "whole ms, so a lag reads up to 1 ms high; quotes carry no event time on Binance "
        "spot but share the connection's order). Rate = messages / (last - first message's "
        "publication time) on that connection. CPU% = process CPU time (`/proc/<pid>/stat`) "
        "over the streaming window, 100 % = one core. The result is the highest rate with "
        "zero loss and zero late trades. The venue-only row: the same replay at "
        f"x{VENUE_SPEED:g} (faster than the venue can publish) to a lean client that only "
        "counts frames (raw socket, 64 KiB reads, headers walked by hand); rate = frames / "
        "(last - first frame's arrival), lost = the venue's count - frames counted."
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--speeds", help="comma-separated replay speeds (instead of the ramp)")
    args = parser.parse_args()
    results = Results(quick=args.quick)
    if args.speeds:
        SPEEDS = SPEEDS_QUICK = tuple(float(x) for x in args.speeds.split(","))
    with tempfile.TemporaryDirectory(prefix="mm-trio-ingest-") as d:
        bench_ingest(results, Path(d), args.profile)
    print(results.table())
