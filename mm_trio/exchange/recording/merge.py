"""Merging recordings into one stream by receive time: :func:`merge_recordings`."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from operator import itemgetter

from mm_trio.exchange.recording.reader import StrPath, iter_recording
from mm_trio.exchange.recording.stats import RecordingStats
from mm_trio.exchange.recording.timeguard import MAX_TIME_GAP_NS

_NS = 1_000_000_000  # ns per second, for messages


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
    return merge_streams([iter_recording(p, st) for p in paths], st)


def merge_streams(
    streams: Sequence[Iterator[tuple[int, bytes]]], stats: RecordingStats
) -> Iterator[tuple[int, bytes]]:
    """:func:`merge_recordings` of files already open as ``(receive_ns, payload)`` streams
    (one per file, in file order, each non-decreasing in time)."""
    st = stats
    if len(streams) == 1:
        yield from streams[0]
        return
    # heapq.merge breaks ties by iterable index and preserves each iterable's order.
    merged = heapq.merge(*streams, key=itemgetter(0))
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
            st.note(
                f"merged recordings: a line at {ts} jumps {(ts - prev) / _NS:+.3f} s after "
                f"the previous line, another file's (more than {MAX_TIME_GAP_NS / _NS:g} "
                "s): the files do not meet in time: skipped"
            )
            continue
        prev = ts
        yield rec
