"""What the recording readers count: :class:`RecordingStats` and :class:`FileDamage`."""

from __future__ import annotations

from typing import Literal

import msgspec

_MAX_ERRORS_KEPT = 20  # problems noted in RecordingStats.errors; the counters count them all


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
    bytes_read: int = 0  # of the files as stored (compressed): progress, without a count first
    damage: list[FileDamage] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)  # first few problems

    def note(self, problem: str) -> None:
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(problem)
