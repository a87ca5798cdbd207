"""Receive-time sanity for the lines of one recording: :class:`TimeGuard` (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

import msgspec

from mm_trio.exchange.recording.stats import RecordingStats

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

_NS = 1_000_000_000  # ns per second, for messages


class TimeGuard:
    """Receive-time sanity for the lines of ONE file (pure: no I/O, no clock).

    :meth:`push` each parseable line, then :meth:`finish`; good lines come out (returned by
    ``push``, or left in :attr:`ready`) in file order, ``half`` lines behind the input.
    Counters go to ``stats``, the problems it notes to ``note`` (default ``stats.note``).

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

    def __init__(
        self,
        name: str,
        stats: RecordingStats,
        *,
        half: int = TIME_WINDOW_HALF,
        jitter: int = MAX_TIME_JITTER_NS,
        gap: int = MAX_TIME_GAP_NS,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self._name = name
        self._stats = stats
        self._note = stats.note if note is None else note
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
        if ts > high + (self._gap if j > mid else self._jitter) or ts < low - (
            self._gap if j < mid else self._jitter
        ):
            self._skip(
                "time_jumps",
                lineno,
                f"receive time {ts} is {(ts - median) / _NS:+.3f} "
                f"s from the median of its {size} neighbouring lines",
            )
            return
        anchor = self._anchor
        if anchor is None or anchor <= ts <= anchor + self._gap:
            if self._run is not None:
                self._end_run()
            self._anchor = ts
            self._anchor_line = lineno
            self.ready.append((ts, payload))
        elif ts > anchor:
            self._skip(
                "time_jumps",
                lineno,
                f"receive time jumps {(ts - anchor) / _NS:+.3f} s "
                f"after line {self._anchor_line} (more than {self._gap / _NS:g} s)",
            )
        elif ts >= anchor - self._jitter:
            if self._run is not None:
                self._end_run()
            self._stats.late += 1
            self.ready.append((anchor, payload))
        else:
            self._skip(
                "out_of_order",
                lineno,
                f"receive time {(anchor - ts) / _NS:.3f} s "
                f"before line {self._anchor_line} (more than {self._jitter / _NS:g} s)",
            )

    def _skip(self, counter: Literal["time_jumps", "out_of_order"], lineno: int, why: str) -> None:
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
            self._note(f"{self._name}:{run.first}: {run.why}: skipped")
        else:
            self._note(
                f"{self._name}:{run.first}-{run.last}: {run.count} lines skipped "
                f"(line {run.first}: {run.why})"
            )


class _SkipRun(msgspec.Struct, kw_only=True):
    counter: str
    first: int
    last: int
    why: str
    count: int = 1
