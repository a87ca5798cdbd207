"""The recorder's gzip line writer (``mm-trio record``): it never destroys a recording that
is already on disk."""

from __future__ import annotations

from pathlib import Path

from mm_trio.apps.record import GzipLineWriter
from mm_trio.exchange.recording import iter_recording, write_recording


def test_recorder_does_not_destroy_an_existing_recording(tmp_path: Path) -> None:
    path = tmp_path / "btc.gz"
    write_recording(path, [(1, b'{"stream":"btcusdt@trade","data":{}}')])
    try:
        with GzipLineWriter(path) as w:
            w.write(2, b'{"stream":"btcusdt@trade","data":{}}')
    except (FileExistsError, ValueError):
        return  # refusing to overwrite is an acceptable fix
    assert [ts for ts, _ in iter_recording(path)][:1] == [1], "earlier recording lost"
