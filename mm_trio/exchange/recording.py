"""Reading, merging and writing market-data recordings (SPEC §10).

A recording is text, gzip-compressed or plain, one message per line::

    <receive time, integer ns since epoch> <space> <combined-stream JSON exactly as received>

(the format of hftbacktest's collector). Readers detect gzip by its magic bytes, not the file
name. Reading never fails on content; everything below is counted in :class:`RecordingStats`:

* bad lines (empty, no space, non-integer time, empty payload) are skipped (``malformed``);
* damaged gzip: every line before the damage is read, then reading stops and the file is
  reported in ``damage`` with the line and compressed byte where it stopped (``truncated``:
  the data ends inside the stream; ``corrupt``: the data cannot be decompressed, or its
  checksum fails, from that byte on);
* receive times are checked per file by :class:`TimeGuard`, so one absurd time can neither
  stall nor jump the replay's clock: a line far from its neighbours' times, or a jump of more
  than :data:`MAX_TIME_GAP_NS` ahead of the file's previous good line, is skipped
  (``time_jumps``); a line earlier than the previous good line by more than
  :data:`MAX_TIME_JITTER_NS` is skipped (``out_of_order``); by less, it is kept and replayed
  at the previous good line's time (``late``), so every file yields non-decreasing times.

:func:`merge_recordings` k-way merges files by receive time with a stable tie-break (file
order, then line order), so a replay of the same files is deterministic.
:func:`infer_specs` guesses each symbol's tick and step sizes from the decimals it sees.
Everything here is pure except file access.
"""

from __future__ import annotations

import gzip
import heapq
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from os import PathLike
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import msgspec

from mm_trio.domain.model import Quote, SymbolSpec, Trade, parse_symbol

__all__ = [
    "DEFAULT_MIN_NOTIONAL",
    "MAX_TIME_GAP_NS",
    "MAX_TIME_JITTER_NS",
    "TIME_WINDOW_HALF",
    "FileDamage",
    "RecordingStats",
    "TimeGuard",
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


#: A line more than this after its file's previous good line is a jump in time and is skipped,
#: never followed (a replay would otherwise idle through it, sampling equity all the way).
#: Generous: real recorders pause for seconds when they reconnect, a quiet symbol's streams
#: can be silent for minutes; a jump past it that the following lines confirm (the recording
#: really resumes later) is still not followed: those lines are skipped and counted too.
MAX_TIME_GAP_NS = 300 * 1_000_000_000
#: How much earlier than its file's previous good line a line may be and still be kept: normal
#: jitter between streams merged into one file. It is replayed at the previous line's time.
#: Also how far a line may stray from the median time of its neighbours.
MAX_TIME_JITTER_NS = 1_000_000_000
#: Lines on each side of a line whose median time it is checked against: up to half as many
#: lines with absurd times among them (one after another or not) are recognised as such,
#: even at the start or the end of a file.
TIME_WINDOW_HALF = 8


class FileDamage(msgspec.Struct, frozen=True, kw_only=True):
    """Where reading one damaged (gzip) file stopped; the lines before it were read."""

    file: str
    problem: Literal["truncated", "corrupt"]
    after_line: int  # the last complete line read
    at_byte: int  # offset in the (compressed) file where the damage was found
    detail: str


class RecordingStats(msgspec.Struct, kw_only=True):
    """Counters of what the readers saw (mutable, cumulative across files)."""

    files: int = 0
    lines: int = 0  # lines read, good or bad
    records: int = 0  # lines yielded
    malformed: int = 0
    truncated: int = 0  # files whose gzip stream ended early (the tail is lost)
    corrupt: int = 0  # files whose gzip data is unreadable from some byte on
    time_jumps: int = 0  # lines skipped: time far from the neighbours' or jumping ahead
    out_of_order: int = 0  # lines skipped: earlier than the previous good line, by a lot
    late: int = 0  # lines kept at the previous good line's time (a little earlier than it)
    damage: list[FileDamage] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)  # first few problems

    def note(self, problem: str) -> None:
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(problem)


_CHUNK = 1 << 20  # bytes read at a time from a plain file
_GZ_CHUNK = 1 << 16  # compressed bytes fed to the decompressor at a time
_SALVAGE_PIECE = 1024  # a chunk that failed is fed again in pieces, the bad piece bytewise
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect (and check) a gzip header and trailer
_NS = 1_000_000_000


class TimeGuard:
    """Receive-time sanity for the lines of ONE file (pure: no I/O, no clock).

    :meth:`push` each parseable line, then :meth:`finish`; good lines come out (returned by
    ``push``, or left in :attr:`ready`) in file order, ``half`` lines behind the input.

    A line is judged against the median time of a window of 2 * ``half`` + 1 neighbouring
    lines (centred, or the file's first / last lines at its ends), so a single absurd line,
    or up to ``half // 2`` in a window, are found even when one is the file's first line,
    and a real pause in the recording is not mistaken for one. It is skipped
    (``time_jumps``) when it is more than ``jitter`` outside the band of the times
    ``half // 2`` places either side of the median in sorted order, or, as the window's
    first lines are earlier than its median by design, more than ``gap`` before that band
    (at the file's start) or after it (at its end).

    A line that passes is then compared with the file's previous good line: more than
    ``gap`` after it, skipped (``time_jumps``: a jump that later lines confirm is still never
    followed); more than ``jitter`` before it, skipped (``out_of_order``); a little before
    it, kept at its time (``late``). So the times that come out never decrease.
    """

    def __init__(self, name: str, stats: RecordingStats, *, half: int = TIME_WINDOW_HALF,
                 jitter: int = MAX_TIME_JITTER_NS, gap: int = MAX_TIME_GAP_NS) -> None:
        self._name = name
        self._stats = stats
        self._half = half
        self._jitter = jitter
        self._gap = gap
        # the last 2 * half + 1 lines read: (time, payload, line number)
        self._buf: deque[tuple[int, bytes, int]] = deque(maxlen=2 * half + 1)
        self._read = 0  # lines pushed
        self._judged = 0  # lines judged
        self._descent = -1  # index of the last line earlier than the one before it
        self._anchor: int | None = None  # time of the previous good line
        self._anchor_line = 0
        self.skipped = 0
        self.ready: list[tuple[int, bytes]] = []
        # consecutive lines skipped for the same reason make one note
        self._run: _SkipRun | None = None

    def push(self, ts: int, payload: bytes, lineno: int) -> tuple[int, bytes] | None:
        """Take one line; return the line judged good because of it, if that is the only
        one (the usual case), else leave the good lines in :attr:`ready`."""
        buf = self._buf
        hi = self._read
        if buf and ts < buf[-1][0]:
            self._descent = hi
        buf.append((ts, payload, lineno))
        self._read = hi + 1
        half = self._half
        j = self._judged
        # fast path: the middle line of a full window whose times never fall is its median,
        # so it only has to follow the previous good line
        if j == hi - half and j >= half and self._descent <= j - half and self._run is None:
            mts, mpayload, mline = buf[half]
            anchor = self._anchor
            if anchor is not None and anchor <= mts <= anchor + self._gap:
                self._judged = j + 1
                self._anchor = mts
                self._anchor_line = mline
                return mts, mpayload
        # line j is judged once line max(j + half, 2 * half) is in: its window is complete
        while self._judged <= hi - half and hi >= 2 * half:
            self._judge(self._judged, hi)
        return None

    def finish(self) -> None:
        hi = self._read - 1
        while self._judged <= hi:
            self._judge(self._judged, hi)
        self._end_run()

    def _judge(self, j: int, hi: int) -> None:
        self._judged += 1
        half = self._half
        lo = max(0, min(j - half, hi - 2 * half))
        first = self._read - len(self._buf)  # index of buf[0]
        ts, payload, lineno = self._buf[j - first]
        size = hi - lo + 1
        m = size // 2
        mid = lo + m  # the index whose time is the median if times never fall
        # the band around the median a good line's time lies in: the times d places either
        # side of it in sorted order (an absurd line or d of them shift a good line's place
        # by at most d), widened by jitter, and by gap on the side where the window reaches
        # further than the line because it is one of the file's first or last lines
        d = min(self._half // 2, (size - 1) // 4)
        if self._descent > lo:  # times fall somewhere in the window: sort them
            times = sorted(self._buf[i - first][0] for i in range(lo, hi + 1))
            median, low, high = times[m], times[m - d], times[m + d]
        else:
            median = self._buf[mid - first][0]
            low = self._buf[mid - d - first][0]
            high = self._buf[mid + d - first][0]
        if (ts > high + (self._gap if j > mid else self._jitter)
                or ts < low - (self._gap if j < mid else self._jitter)):
            self._skip("time_jumps", lineno, f"receive time {ts} is {(ts - median) / _NS:+.3f} "
                       f"s from the median of its {size} neighbouring lines")
            return
        anchor = self._anchor
        if anchor is None or anchor <= ts <= anchor + self._gap:
            if self._run is not None:
                self._end_run()
            self._anchor = ts
            self._anchor_line = lineno
            self.ready.append((ts, payload))
        elif ts > anchor:
            self._skip("time_jumps", lineno, f"receive time jumps {(ts - anchor) / _NS:+.3f} s "
                       f"after line {self._anchor_line} (more than {self._gap / _NS:g} s)")
        elif ts >= anchor - self._jitter:
            if self._run is not None:
                self._end_run()
            self._stats.late += 1
            self.ready.append((anchor, payload))
        else:
            self._skip("out_of_order", lineno, f"receive time {(anchor - ts) / _NS:.3f} s "
                       f"before line {self._anchor_line} (more than {self._jitter / _NS:g} s)")

    def _skip(self, counter: Literal["time_jumps", "out_of_order"], lineno: int,
              why: str) -> None:
        st = self._stats
        setattr(st, counter, getattr(st, counter) + 1)
        self.skipped += 1
        run = self._run
        if run is not None and run.counter == counter:
            run.last = lineno
            run.count += 1
            return
        self._end_run()
        self._run = _SkipRun(counter=counter, first=lineno, last=lineno, why=why)

    def _end_run(self) -> None:
        run = self._run
        if run is None:
            return
        self._run = None
        if run.count == 1:
            self._stats.note(f"{self._name}:{run.first}: {run.why}: skipped")
        else:
            self._stats.note(f"{self._name}:{run.first}-{run.last}: {run.count} lines skipped "
                             f"(line {run.first}: {run.why})")


class _SkipRun(msgspec.Struct, kw_only=True):
    counter: str
    first: int
    last: int
    why: str
    count: int = 1


def parse_line(line: bytes) -> tuple[int, bytes] | None:
    """``b"<ns> <json>"`` -> ``(ns, b"<json>")``; ``None`` if the line is malformed."""
    line = line.rstrip(b"\r\n")
    ts_raw, sep, payload = line.partition(b" ")
    if not sep or not payload.strip() or not ts_raw.isdigit():
        return None
    return int(ts_raw), payload


class _Chunks:
    """The decompressed bytes of a plain or gzip file, in chunks, and where they stopped.

    gzip is detected by its magic bytes and decompressed with :mod:`zlib` (every member of a
    multi-member file; zero padding between members is ignored, as :mod:`gzip` does). On
    damage, the output up to the damaged byte is still yielded, then iteration ends with
    :attr:`damage` set to ``(problem, byte offset, detail)``.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.damage: tuple[Literal["truncated", "corrupt"], int, str] | None = None

    def __iter__(self) -> Iterator[bytes]:
        raw = self._raw
        magic = raw.read(2)
        raw.seek(0)
        if magic != GZIP_MAGIC:
            while chunk := raw.read(_CHUNK):
                yield chunk
            return
        yield from self._gunzip()

    def _gunzip(self) -> Iterator[bytes]:
        raw = self._raw
        d = zlib.decompressobj(_GZIP_WBITS)
        pos = 0  # file offset of the next byte to feed
        in_member = False  # bytes of a member fed, its end not yet seen
        while data := raw.read(_GZ_CHUNK):
            while data:
                if not in_member:
                    stripped = data.lstrip(b"\0")
                    pos += len(data) - len(stripped)
                    data = stripped
                    if not data:
                        break
                saved = d.copy()
                try:
                    out = d.decompress(data)
                except zlib.error as exc:
                    good, at = _salvage(saved, data)
                    if good:
                        yield good
                    self.damage = ("corrupt", pos + at, f"{exc}")
                    return
                if out:
                    yield out
                if d.eof:  # end of a member: what follows may be another one
                    rest = d.unused_data
                    pos += len(data) - len(rest)
                    data = rest
                    d = zlib.decompressobj(_GZIP_WBITS)
                    in_member = False
                else:
                    pos += len(data)
                    data = b""
                    in_member = True
        if in_member:
            self.damage = ("truncated", pos, "the gzip data ends before its end-of-stream "
                           "marker: the file was cut short")


def _salvage(d: Any, data: bytes) -> tuple[bytes, int]:
    """Decompress ``data`` up to the byte ``d`` (a copy taken before it) fails on: the output
    before that byte, and the byte's offset in ``data``."""
    out: list[bytes] = []
    for start in range(0, len(data), _SALVAGE_PIECE):
        piece = data[start:start + _SALVAGE_PIECE]
        before = d.copy()
        try:
            out.append(d.decompress(piece))
            continue
        except zlib.error:
            pass
        for i in range(len(piece)):  # the piece that fails, byte by byte
            try:
                out.append(before.decompress(piece[i:i + 1]))
            except zlib.error:
                return b"".join(out), start + i
        return b"".join(out), start + len(piece)  # pragma: no cover - the piece failed
    return b"".join(out), len(data)  # pragma: no cover - the whole chunk failed


def iter_recording(
    path: StrPath, stats: RecordingStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(receive_ns, payload)`` for every good line of one recording, in file order.

    Times never decrease (see :class:`TimeGuard`); problems are counted in ``stats``.
    """
    st = stats if stats is not None else RecordingStats()
    st.files += 1
    name = str(path)
    lineno = 0
    bad = 0
    guard = TimeGuard(name, st)
    ready = guard.ready
    push = guard.push
    with open(path, "rb") as raw:
        chunks = _Chunks(raw)
        carry = b""
        for chunk in chunks:
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()  # an incomplete last line waits for the next chunk
            for line in lines:
                lineno += 1
                # fast path of parse_line: "<digits> <payload>"
                ts_raw, sep, payload = line.partition(b" ")
                if sep and ts_raw.isdigit() and payload.strip():
                    rec = push(int(ts_raw), payload.rstrip(b"\r"), lineno)
                    if rec is not None:
                        yield rec
                    elif ready:
                        yield from ready
                        ready.clear()
                    continue
                bad += 1
                st.malformed += 1
                st.note(f"{name}:{lineno}: malformed line {line[:60]!r}")
        damage = chunks.damage
        if carry.strip():
            lineno += 1
            rec = parse_line(carry)
            if rec is None or damage is not None:  # a line cut by the damage is not trusted
                bad += 1
                st.malformed += 1
                st.note(f"{name}:{lineno}: malformed line {carry[:60]!r}"
                        + (" (cut short by the damage)" if damage is not None else ""))
            else:
                last_rec = push(rec[0], rec[1], lineno)
                if last_rec is not None:
                    ready.insert(0, last_rec)
        guard.finish()
        yield from ready
        ready.clear()
        if damage is not None:
            problem, at, detail = damage
            if problem == "truncated":
                st.truncated += 1
            else:
                st.corrupt += 1
            last = lineno - 1 if carry.strip() else lineno
            # recorded in full (not in the capped notes): the user must hear of every one
            st.damage.append(FileDamage(file=name, problem=problem, after_line=last,
                                        at_byte=at, detail=detail))
        st.lines += lineno
        st.records += lineno - bad - guard.skipped


def merge_recordings(
    paths: Sequence[StrPath], stats: RecordingStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Merge recordings by receive time; ties go to the earlier file, then the earlier line.

    Each file's times never decrease (:func:`iter_recording` sees to it), so the merged times
    never decrease either. Files that do not meet in time are not bridged: a merged line more
    than :data:`MAX_TIME_GAP_NS` after the previous one (another file's) is skipped and
    counted in ``time_jumps``, like a jump inside one file.
    """
    st = stats if stats is not None else RecordingStats()
    if len(paths) == 1:
        yield from iter_recording(paths[0], st)
        return
    # heapq.merge breaks ties by iterable index and preserves each iterable's order.
    merged = heapq.merge(*(iter_recording(p, st) for p in paths), key=itemgetter(0))
    first = next(merged, None)
    if first is None:
        return
    yield first
    prev = first[0]
    for rec in merged:
        ts = rec[0]
        if ts - prev > MAX_TIME_GAP_NS:
            st.time_jumps += 1
            st.records -= 1
            st.note(f"merged recordings: a line at {ts} jumps {(ts - prev) / _NS:+.3f} s after "
                    f"the previous line, another file's (more than {MAX_TIME_GAP_NS / _NS:g} "
                    "s): the files do not meet in time: skipped")
            continue
        prev = ts
        yield rec


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
