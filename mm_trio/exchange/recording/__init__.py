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
:func:`infer_specs` (or a :class:`SpecGuesser` fed decoded events) guesses each symbol's tick
and step sizes from the decimals it sees. :class:`RecordingPass` reads the files once: their
first lines ahead (to look at before replaying), then the merge, which reads on from there.
Everything here is pure except file access.

Modules: :mod:`~.reader` (files, gzip damage, lines), :mod:`~.timeguard` (receive times),
:mod:`~.stats` (the counters), :mod:`~.merge`, :mod:`~.onepass`, :mod:`~.writer` and
:mod:`~.specs`; every public name is importable from this package.
"""

from mm_trio.exchange.recording.merge import merge_recordings, merge_streams
from mm_trio.exchange.recording.onepass import RecordingPass
from mm_trio.exchange.recording.reader import iter_recording, parse_line, recording_paths
from mm_trio.exchange.recording.specs import DEFAULT_MIN_NOTIONAL, SpecGuesser, infer_specs
from mm_trio.exchange.recording.stats import FileDamage, RecordingStats
from mm_trio.exchange.recording.timeguard import (
    MAX_TIME_GAP_NS,
    MAX_TIME_JITTER_NS,
    TIME_WINDOW_HALF,
    TimeGuard,
)
from mm_trio.exchange.recording.writer import write_raw_lines, write_recording

__all__ = [
    "DEFAULT_MIN_NOTIONAL",
    "MAX_TIME_GAP_NS",
    "MAX_TIME_JITTER_NS",
    "TIME_WINDOW_HALF",
    "FileDamage",
    "RecordingPass",
    "RecordingStats",
    "SpecGuesser",
    "TimeGuard",
    "infer_specs",
    "iter_recording",
    "merge_recordings",
    "merge_streams",
    "parse_line",
    "recording_paths",
    "write_raw_lines",
    "write_recording",
]
