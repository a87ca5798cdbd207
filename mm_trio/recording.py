"""Reading, merging and writing market-data recordings (SPEC §10).

A recording is text, gzip-compressed or plain, one message per line::

    <receive time, integer ns since epoch> <space> <combined-stream JSON exactly as received>

(the format of hftbacktest's collector). Readers detect gzip by its magic bytes, not the file
name. Bad lines (empty, no space, non-integer time, empty payload) and a truncated gzip tail
are counted in :class:`RecordingStats` and skipped: reading never fails on content.

:func:`merge_recordings` k-way merges files by receive time with a stable tie-break (file
order, then line order), so a replay of the same files is deterministic.
:func:`infer_specs` guesses each symbol's tick and step sizes from the decimals it sees.
Everything here is pure except file access.
"""

from __future__ import annotations

import gzip
import heapq
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from os import PathLike
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from mm_trio.model import Quote, SymbolSpec, Trade, parse_symbol

__all__ = [
    "DEFAULT_MIN_NOTIONAL",
    "RecordingStats",
    "infer_specs",
    "iter_recording",
    "merge_recordings",
    "parse_line",
    "recording_paths",
    "write_raw_lines",
    "write_recording",
]

StrPath = str | PathLike[str]
GZIP_MAGIC = b"\x1f\x8b"
_MAX_ERRORS_KEPT = 20

#: min notional used by :func:`infer_specs` per quote asset (Binance spot's usual 5 USD).
DEFAULT_MIN_NOTIONAL: dict[str, Decimal] = {
    q: Decimal(5) for q in ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI")
}


class RecordingStats(msgspec.Struct, kw_only=True):
    """Counters of what the readers saw (mutable, cumulative across files)."""

    files: int = 0
    lines: int = 0  # lines read, good or bad
    records: int = 0  # lines yielded
    malformed: int = 0
    truncated: int = 0  # files whose gzip stream ended early (the tail is lost)
    errors: list[str] = msgspec.field(default_factory=list)  # first few problems

    def note(self, problem: str) -> None:
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(problem)


_CHUNK = 1 << 20  # decompressed bytes read at a time


def parse_line(line: bytes) -> tuple[int, bytes] | None:
    """``b"<ns> <json>"`` -> ``(ns, b"<json>")``; ``None`` if the line is malformed."""
    line = line.rstrip(b"\r\n")
    ts_raw, sep, payload = line.partition(b" ")
    if not sep or not payload.strip() or not ts_raw.isdigit():
        return None
    return int(ts_raw), payload


def _lines(raw: IO[bytes]) -> IO[bytes]:
    """The decompressed view of ``raw`` if it starts with the gzip magic, else ``raw``."""
    magic = raw.read(2)
    raw.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def iter_recording(
    path: StrPath, stats: RecordingStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(receive_ns, payload)`` for every good line of one recording, in file order."""
    st = stats if stats is not None else RecordingStats()
    st.files += 1
    name = str(path)
    lineno = 0
    bad = 0
    with open(path, "rb") as raw, _lines(raw) as fh:
        carry = b""
        try:
            while True:
                chunk = fh.read1(_CHUNK) if hasattr(fh, "read1") else fh.read(_CHUNK)
                if not chunk:
                    break
                lines = (carry + chunk).split(b"\n")
                carry = lines.pop()  # an incomplete last line waits for the next chunk
                for line in lines:
                    lineno += 1
                    # fast path of parse_line: "<digits> <payload>"
                    ts_raw, sep, payload = line.partition(b" ")
                    if sep and ts_raw.isdigit() and payload.strip():
                        yield int(ts_raw), payload.rstrip(b"\r")
                        continue
                    bad += 1
                    st.malformed += 1
                    st.note(f"{name}:{lineno}: malformed line {line[:60]!r}")
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            st.truncated += 1
            st.note(f"{name}: stopped after line {lineno}: {type(exc).__name__}: {exc}")
        if carry.strip():
            lineno += 1
            rec = parse_line(carry)
            if rec is None:
                bad += 1
                st.malformed += 1
                st.note(f"{name}:{lineno}: malformed line {carry[:60]!r}")
            else:
                yield rec
        st.lines += lineno
        st.records += lineno - bad


def merge_recordings(
    paths: Sequence[StrPath], stats: RecordingStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Merge recordings by receive time; ties go to the earlier file, then the earlier line.

    Each file is assumed sorted by time (collectors write in receive order); an out-of-order
    line is passed through where it stands, so the output is still deterministic.
    """
    st = stats if stats is not None else RecordingStats()
    if len(paths) == 1:
        yield from iter_recording(paths[0], st)
        return
    # heapq.merge breaks ties by iterable index and preserves each iterable's order.
    yield from heapq.merge(*(iter_recording(p, st) for p in paths), key=itemgetter(0))


def write_recording(
    path: StrPath,
    lines: Iterable[tuple[int, bytes | str]],
    *,
    compresslevel: int = 9,
) -> int:
    """Write ``(receive_ns, payload)`` lines as a byte-deterministic gzip recording.

    The gzip header carries no file name and mtime 0, so equal input gives equal bytes.
    Returns the number of lines written. A payload containing a newline is refused.
    """

    def render() -> Iterator[bytes]:
        for n, (ts, payload) in enumerate(lines, 1):
            data = payload.encode() if isinstance(payload, str) else payload
            if b"\n" in data or b"\r" in data:
                raise ValueError(f"line {n}: payload contains a newline")
            if ts < 0:
                raise ValueError(f"line {n}: negative receive time {ts}")
            yield b"%d %s" % (ts, data)

    return write_raw_lines(path, render(), compresslevel=compresslevel)


def write_raw_lines(path: StrPath, lines: Iterable[bytes], *, compresslevel: int = 9) -> int:
    """Gzip ``lines`` verbatim (a newline is appended to each), deterministically.

    For tests and fixtures that need lines :func:`write_recording` would refuse.
    """
    count = 0
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
        ) as gz,
    ):
        chunk: list[bytes] = []
        for line in lines:
            chunk.append(line)
            count += 1
            if len(chunk) >= 1024:
                gz.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            gz.write(b"\n".join(chunk) + b"\n")
    return count


class _Decoder(Protocol):
    def decode(self, raw: bytes, recv_ts: int | None = None) -> list[Any]: ...


def _exponent(value: Decimal) -> int | None:
    """Exponent of the last significant digit (``61837.630`` -> -2); None for zero/non-finite."""
    if not value or not value.is_finite():
        return None
    exp = value.normalize().as_tuple().exponent
    return exp if isinstance(exp, int) else None


def infer_specs(
    paths: Sequence[StrPath],
    decoder: _Decoder,
    *,
    max_lines: int = 20_000,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    min_notional: Mapping[str, Decimal] | None = None,
) -> dict[str, SymbolSpec]:
    """Guess a :class:`SymbolSpec` for every symbol in the first ``max_lines`` merged lines.

    ``tick_size`` is the largest power of ten dividing every price seen (bid, ask, trade),
    ``step_size`` the same over quantities; ``min_qty`` = step; ``min_notional`` from
    ``min_notional`` (default :data:`DEFAULT_MIN_NOTIONAL`) by quote asset, else 0.
    ``overrides`` maps a unified symbol (or ``"*"`` for all) to SymbolSpec field values that
    replace the inferred ones. Symbols come from ``decoder`` (its symbol map decides).
    """
    price_exp: dict[str, int] = {}
    qty_exp: dict[str, int] = {}

    def see(table: dict[str, int], symbol: str, *values: Decimal) -> None:
        for v in values:
            e = _exponent(v)
            if e is None:
                continue
            cur = table.get(symbol)
            if cur is None or e < cur:
                table[symbol] = e

    n = 0
    for ts, payload in merge_recordings(paths):
        if n >= max_lines:
            break
        n += 1
        for ev in decoder.decode(payload, ts):
            if isinstance(ev, Quote):
                see(price_exp, ev.symbol, ev.bid, ev.ask)
                see(qty_exp, ev.symbol, ev.bid_qty, ev.ask_qty)
            elif isinstance(ev, Trade):
                see(price_exp, ev.symbol, ev.price)
                see(qty_exp, ev.symbol, ev.qty)
            else:
                bids = getattr(ev, "bids", None)
                asks = getattr(ev, "asks", None)
                sym = getattr(ev, "symbol", None)
                if sym is not None and bids is not None and asks is not None:
                    for p, q in (*bids, *asks):
                        see(price_exp, sym, p)
                        see(qty_exp, sym, q)

    notional = DEFAULT_MIN_NOTIONAL if min_notional is None else min_notional
    over = overrides or {}
    specs: dict[str, SymbolSpec] = {}
    for symbol in sorted(set(price_exp) | set(qty_exp)):
        base, quote = parse_symbol(symbol)
        tick = Decimal(1).scaleb(price_exp.get(symbol, 0))
        step = Decimal(1).scaleb(qty_exp.get(symbol, 0))
        spec = SymbolSpec(
            symbol=symbol,
            base=base,
            quote=quote,
            tick_size=tick,
            step_size=step,
            min_price=tick,
            min_qty=step,
            min_notional=notional.get(quote, Decimal(0)),
        )
        changes = {**over.get("*", {}), **over.get(symbol, {})}
        if changes:
            spec = msgspec.structs.replace(spec, **changes)
        specs[symbol] = spec
    return specs


def recording_paths(folder: StrPath, pattern: str = "*.gz") -> list[Path]:
    """Sorted recording files in ``folder`` (a stable file order for merging)."""
    return sorted(Path(folder).glob(pattern))
