"""Reading recordings once: :class:`RecordingPass`, the heads of the files and then their merge.

A replay must look at the start of every file before it can replay any of it (which symbols
the files hold), and at the start of the merged stream (each symbol's rules and first price).
Reading those parts first and then the whole again would gunzip and split them twice; a
:class:`RecordingPass` reads the first lines of each file ahead, keeps them, and hands them
to the merge, which goes on reading each file where its head ended.

What the readers count is the same as for :func:`~.merge.merge_recordings` of the same files,
in the same order: the counters are summed as the files are read, and the problems noted and
the damage found (whose order shows in ``stats.errors`` and ``stats.damage``) are held back
until the merge reaches the line they came with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mm_trio.exchange.recording.merge import merge_streams
from mm_trio.exchange.recording.reader import StrPath, iter_recording
from mm_trio.exchange.recording.stats import FileDamage, RecordingStats

Record = tuple[int, bytes]
_Held = list[str | FileDamage]  # problems noted and damage found, in the order they came


class _ReadAhead:
    """One file whose first ``count`` records were read ahead of the merge."""

    def __init__(self, path: StrPath, stats: RecordingStats, count: int) -> None:
        self._stats = stats
        self._live = False  # past the head: problems go straight to the stats
        self._held: _Held = []
        self._it = iter_recording(path, stats, note=self._hold, on_damage=self._hold)
        self.head: list[Record] = []
        # the problems that came while the head's record i was read, keyed by i
        self._due: dict[int, _Held] = {}
        self._end: _Held | None = None  # what came after the file's last record (if read)
        head = self.head
        if count <= 0:
            return
        for rec in self._it:
            if self._held:
                self._due[len(head)] = self._held
                self._held = []
            head.append(rec)
            if len(head) >= count:
                break
        else:
            self._end = self._held
            self._held = []

    def _hold(self, item: str | FileDamage) -> None:
        if self._live:
            self._give([item])
        else:
            self._held.append(item)

    def _give(self, items: _Held) -> None:
        stats = self._stats
        for item in items:
            if isinstance(item, str):
                stats.note(item)
            else:
                stats.damage.append(item)

    def records(self) -> Iterator[Record]:
        """Every record of the file, the head first; a problem is given to the stats just
        before the record it came with, as if the file were read only now."""
        head, due = self.head, self._due
        self.head, self._due = [], {}  # the merge holds the head alone: freed as it goes
        start = 0
        for i in sorted(due):
            for j in range(start, i):
                yield head[j]
            self._give(due[i])
            start = i
        if start:
            del head[:start]
        yield from head
        del head
        if self._end is not None:
            self._give(self._end)
            return
        self._live = True
        yield from self._it


class RecordingPass:
    """Recordings read once: :attr:`heads` (each file's first ``head_lines`` records) are
    there at once; :meth:`records` then merges the files (as
    :func:`~.merge.merge_recordings` does), reading each one on where its head ended.

    ``heads`` is for looking at before the merge starts; :meth:`records` may be taken once.
    """

    def __init__(
        self, paths: Sequence[StrPath], stats: RecordingStats | None = None, *, head_lines: int
    ) -> None:
        self.stats = stats if stats is not None else RecordingStats()
        self._files = [_ReadAhead(p, self.stats, head_lines) for p in paths]
        self._taken = False

    @property
    def heads(self) -> list[list[Record]]:
        return [f.head for f in self._files]

    def records(self) -> Iterator[Record]:
        if self._taken:
            raise RuntimeError("a RecordingPass is read once: records() was already taken")
        self._taken = True
        return merge_streams([f.records() for f in self._files], self.stats)
