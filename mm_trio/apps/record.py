"""Record live Binance combined streams into a SPEC §10 recording.

:func:`record` opens ONE combined-stream websocket for ``bookTicker``, ``trade`` and
``depth@100ms`` of every symbol and writes each frame as one gzip text line::

    <time.time_ns() at receive> <combined-stream JSON exactly as received>

(hftbacktest's collector format, readable by :func:`mm_trio.exchange.recording.iter_recording`). The
gzip stream is sync-flushed every ``flush_interval`` seconds, so a crash loses at most that
much and the readers (which tolerate a truncated tail) still get every flushed line. Drops
are reconnected with jittered exponential back-off (through
:class:`~mm_trio.exchange.binance.streams.MarketStream`); nothing is written for them.
"""

from __future__ import annotations

import gzip
import logging
import signal
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import IO, Any, TextIO

import msgspec
import trio
from tqdm import tqdm

from mm_trio.domain.config import LimiterConfig
from mm_trio.domain.model import native_symbol
from mm_trio.exchange.base import ExchangeError
from mm_trio.exchange.binance.protocol import Weights
from mm_trio.exchange.binance.rest import BinanceRest
from mm_trio.exchange.binance.streams import MarketStream
from mm_trio.exchange.limiter import Limiter

__all__ = [
    "RECORD_STREAMS",
    "GzipLineWriter",
    "listing_problems",
    "record",
    "record_command",
    "record_streams",
    "venue_listing",
]

log = logging.getLogger(__name__)

RECORD_STREAMS = ("bookTicker", "trade", "depth@100ms")
LISTING_RETRIES = 0  # exchangeInfo: no retry; an unreachable venue is told at once


class _StreamName(msgspec.Struct):
    stream: str = "?"


_STREAM_NAME = msgspec.json.Decoder(_StreamName)


def stream_of(payload: bytes) -> str:
    """The combined stream a frame belongs to (``"?"`` if it names none)."""
    try:
        return _STREAM_NAME.decode(payload).stream
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "?"


async def venue_listing(rest_url: str) -> dict[str, str]:
    """Every symbol the venue lists (native name -> status, e.g. ``TRADING``), from its
    public ``exchangeInfo``; :class:`~mm_trio.exchange.base.ExchangeError` if unreachable."""
    rest = BinanceRest(
        rest_url,
        api_key=None,
        signer=None,
        limiter=Limiter(LimiterConfig()),
        get_retries=LISTING_RETRIES,
    )
    try:
        body = await rest.request("GET", "/api/v3/exchangeInfo", weight=Weights.EXCHANGE_INFO)
    finally:
        await rest.aclose()
    symbols = body.get("symbols", []) if isinstance(body, Mapping) else []
    return {
        str(s.get("symbol")): str(s.get("status", "TRADING"))
        for s in symbols
        if isinstance(s, Mapping)
    }


def listing_problems(symbols: Sequence[str], listing: Mapping[str, str], venue: str) -> list[str]:
    """Why some ``symbols`` cannot be recorded from ``venue`` (unlisted, or not trading)."""
    problems = []
    for symbol in symbols:
        native = native_symbol(symbol) if "/" in symbol else symbol.strip().upper()
        status = listing.get(native)
        if status is None:
            problems.append(f"symbol {symbol!r} is not listed by {venue}")
        elif status != "TRADING":
            problems.append(f"symbol {symbol!r} is not trading on {venue} (status {status})")
    return problems


def record_streams(symbols: Sequence[str], kinds: Sequence[str] = RECORD_STREAMS) -> list[str]:
    """Stream names for ``symbols`` (unified ``BTC/USDT`` or native ``BTCUSDT``)."""
    out: list[str] = []
    for symbol in symbols:
        native = native_symbol(symbol) if "/" in symbol else symbol.strip().upper()
        if not native.isalnum():
            raise ValueError(f"malformed symbol {symbol!r}")
        out += [f"{native.lower()}@{kind}" for kind in kinds]
    return out


class GzipLineWriter:
    """Appends ``<ns> <payload>`` lines to a gzip file; :meth:`flush` makes them readable."""

    def __init__(self, path: str | PathLike[str], *, compresslevel: int = 6) -> None:
        # "xb": an earlier recording is never overwritten (FileExistsError instead)
        self._raw: IO[bytes] = open(path, "xb")  # noqa: SIM115 (closed in close())
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel
        )
        self.lines = 0
        self.bytes = 0

    def write(self, recv_ns: int, payload: bytes) -> None:
        if b"\n" in payload or b"\r" in payload:
            payload = payload.replace(b"\r", b"").replace(b"\n", b"")
        line = b"%d %s\n" % (recv_ns, payload)
        self._gz.write(line)
        self.lines += 1
        self.bytes += len(line)

    def flush(self) -> None:
        self._gz.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()

    def close(self) -> None:
        try:
            self._gz.close()
        finally:
            self._raw.close()

    def __enter__(self) -> GzipLineWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


async def record(
    symbols: Sequence[str],
    out_path: str | PathLike[str],
    *,
    ws_base_url: str,
    stop_after: float | None = None,
    max_messages: int | None = None,
    flush_interval: float = 1.0,
    kinds: Sequence[str] = RECORD_STREAMS,
    reconnect_initial: float = 0.5,
    reconnect_max: float = 30.0,
    per_stream: Counter[str] | None = None,
) -> int:
    """Record until cancelled, ``stop_after`` seconds, or ``max_messages`` frames.

    ``ws_base_url`` is the market-stream host (``wss://stream.binance.com:9443``, or
    ``ws://127.0.0.1:P`` for a local server). Returns the number of lines written;
    ``per_stream`` (if given) counts them by stream name as they are written.
    """
    if not symbols:
        raise ValueError("record: no symbols")
    streams = record_streams(symbols, kinds)
    done = trio.Event()

    with GzipLineWriter(out_path) as writer:

        async def on_message(message: str | bytes, recv_ns: int) -> None:
            if done.is_set():
                return
            payload = message.encode() if isinstance(message, str) else bytes(message)
            writer.write(recv_ns, payload)
            if per_stream is not None:
                per_stream[stream_of(payload)] += 1
            if max_messages is not None and writer.lines >= max_messages:
                done.set()
            await trio.lowlevel.checkpoint()

        stream = MarketStream(
            ws_base_url,
            on_message=on_message,
            initial_backoff=reconnect_initial,
            max_backoff=reconnect_max,
        )

        async def flusher() -> None:
            while True:
                await trio.sleep(flush_interval)
                writer.flush()

        with trio.move_on_after(stop_after if stop_after is not None else float("inf")):
            async with trio.open_nursery() as nursery:
                await stream.subscribe(streams)
                nursery.start_soon(stream.run)
                nursery.start_soon(flusher)
                await done.wait()
                nursery.cancel_scope.cancel()
        log.info("recorded %d lines (%d bytes) to %s", writer.lines, writer.bytes, out_path)
        return writer.lines


EXIT_OK = 0
EXIT_VENUE = 1


def _counts_text(per_stream: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(per_stream.items()))


async def _show_progress(per_stream: Counter[str], bar: Any, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        bar.set_postfix_str(_counts_text(per_stream), refresh=False)
        bar.update(sum(per_stream.values()) - bar.n)


async def record_command(
    symbols: Sequence[str],
    out_path: Path,
    *,
    ws_base_url: str,
    rest_url: str,
    venue: str,
    stop_after: float | None,
    out: TextIO,
    err: TextIO,
    progress_interval: float = 1.0,
) -> int:
    """``mm-trio record``: check the venue lists every symbol (exit 1 naming it if not, or if
    the venue cannot be reached), record until ``stop_after`` or SIGINT/SIGTERM, with
    progress (lines per stream) on ``err`` when it is a terminal. A recording that got no
    line is removed (exit 1): an empty file is no recording."""
    try:
        listing = await venue_listing(rest_url)
    except (ExchangeError, OSError) as exc:
        print(f"mm-trio: error: cannot reach {venue} at {rest_url}: {exc}", file=err)
        return EXIT_VENUE
    problems = listing_problems(symbols, listing, venue)
    for problem in problems:
        print(f"mm-trio: error: {problem}", file=err)
    if problems:
        return EXIT_VENUE
    per_stream: Counter[str] = Counter()
    bar = tqdm(
        file=err,
        disable=not err.isatty(),
        desc="record",
        unit=" lines",
    )
    print(
        f"mm-trio: recording {', '.join(symbols)} from {ws_base_url} to {out_path}"
        + (f" for {stop_after:g}s" if stop_after else " (Ctrl-C to stop)"),
        file=out,
        flush=True,
    )
    started = trio.current_time()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                async def go() -> None:
                    await record(
                        symbols,
                        out_path,
                        ws_base_url=ws_base_url,
                        stop_after=stop_after,
                        per_stream=per_stream,
                    )
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_on_signal)
                if not bar.disable:
                    nursery.start_soon(_show_progress, per_stream, bar, progress_interval)
                nursery.start_soon(go)
    finally:
        if not bar.disable:
            bar.set_postfix_str(_counts_text(per_stream), refresh=False)
            bar.update(sum(per_stream.values()) - bar.n)
        bar.close()
    lines = sum(per_stream.values())
    seconds = trio.current_time() - started
    if lines == 0:
        out_path.unlink(missing_ok=True)  # noqa: ASYNC240 - one empty file, at exit
        print(
            f"mm-trio: error: no data from {ws_base_url} in {seconds:.0f}s: nothing recorded "
            f"({out_path} removed)",
            file=err,
        )
        return EXIT_VENUE
    print(
        f"mm-trio: recorded {lines:,} lines of {', '.join(symbols)} in {seconds:.0f}s to "
        f"{out_path} ({_counts_text(per_stream)})",
        file=out,
    )
    return EXIT_OK
