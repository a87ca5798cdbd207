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
import zlib
from collections.abc import Sequence
from os import PathLike
from typing import IO, Any

import trio

from mm_trio.domain.model import native_symbol
from mm_trio.exchange.binance.streams import MarketStream

__all__ = ["RECORD_STREAMS", "GzipLineWriter", "record", "record_streams"]

log = logging.getLogger(__name__)

RECORD_STREAMS = ("bookTicker", "trade", "depth@100ms")


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
) -> int:
    """Record until cancelled, ``stop_after`` seconds, or ``max_messages`` frames.

    ``ws_base_url`` is the market-stream host (``wss://stream.binance.com:9443``, or
    ``ws://127.0.0.1:P`` for a local server). Returns the number of lines written.
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
