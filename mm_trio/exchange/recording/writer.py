"""Writing recordings: byte-deterministic gzip (no file name, mtime 0)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator

from mm_trio.exchange.recording.reader import StrPath


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
