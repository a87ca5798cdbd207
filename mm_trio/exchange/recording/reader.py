"""Reading one recording: plain or gzip (damage tolerated), line by line, time-guarded."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import IO, Any, Literal

from mm_trio.exchange.recording.stats import FileDamage, RecordingStats
from mm_trio.exchange.recording.timeguard import TimeGuard

StrPath = str | PathLike[str]
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes read at a time from a plain file
_GZ_CHUNK = 1 << 16  # compressed bytes fed to the decompressor at a time
_SALVAGE_PIECE = 1024  # a chunk that failed is fed again in pieces, the bad piece bytewise
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect (and check) a gzip header and trailer


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
            self.damage = (
                "truncated",
                pos,
                "the gzip data ends before its end-of-stream marker: the file was cut short",
            )


def _salvage(d: Any, data: bytes) -> tuple[bytes, int]:
    """Decompress ``data`` up to the byte ``d`` (a copy taken before it) fails on: the output
    before that byte, and the byte's offset in ``data``."""
    out: list[bytes] = []
    for start in range(0, len(data), _SALVAGE_PIECE):
        piece = data[start : start + _SALVAGE_PIECE]
        before = d.copy()
        try:
            out.append(d.decompress(piece))
            continue
        except zlib.error:
            pass
        for i in range(len(piece)):  # the piece that fails, byte by byte
            try:
                out.append(before.decompress(piece[i : i + 1]))
            except zlib.error:
                return b"".join(out), start + i
        return b"".join(out), start + len(piece)  # pragma: no cover - the piece failed
    return b"".join(out), len(data)  # pragma: no cover - the whole chunk failed


def iter_recording(
    path: StrPath,
    stats: RecordingStats | None = None,
    *,
    note: Callable[[str], None] | None = None,
    on_damage: Callable[[FileDamage], None] | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(receive_ns, payload)`` for every good line of one recording, in file order.

    Times never decrease (see :class:`TimeGuard`); problems are counted in ``stats``. The
    problems noted, and the file's damage, go to ``stats.errors`` and ``stats.damage``, or
    to ``note`` and ``on_damage`` when given (a reader running ahead of the merge holds them
    back until the merge reaches the lines they came with).
    """
    st = stats if stats is not None else RecordingStats()
    note_problem = st.note if note is None else note
    add_damage = st.damage.append if on_damage is None else on_damage
    st.files += 1
    name = str(path)
    lineno = 0
    bad = 0
    guard = TimeGuard(name, st, note=note_problem)
    ready = guard.ready
    push = guard.push
    with open(path, "rb") as raw:
        chunks = _Chunks(raw)
        carry = b""
        at = 0
        for chunk in chunks:
            now_at = raw.tell()
            st.bytes_read += now_at - at
            at = now_at
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
                note_problem(f"{name}:{lineno}: malformed line {line[:60]!r}")
        damage = chunks.damage
        if carry.strip():
            lineno += 1
            rec = parse_line(carry)
            if rec is None or damage is not None:  # a line cut by the damage is not trusted
                bad += 1
                st.malformed += 1
                note_problem(
                    f"{name}:{lineno}: malformed line {carry[:60]!r}"
                    + (" (cut short by the damage)" if damage is not None else "")
                )
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
            add_damage(
                FileDamage(file=name, problem=problem, after_line=last, at_byte=at, detail=detail)
            )
        st.lines += lineno
        st.records += lineno - bad - guard.skipped


def recording_paths(folder: StrPath, pattern: str = "*.gz") -> list[Path]:
    """Sorted recording files in ``folder`` (a stable file order for merging)."""
    return sorted(Path(folder).glob(pattern))
