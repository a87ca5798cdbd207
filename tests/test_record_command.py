"""``mm-trio record`` as a user runs it: refused (exit 1, naming the cause) when the venue
cannot be reached or a symbol is not listed, an empty recording is not left behind, and the
progress (lines per stream) is drawn on a terminal. Against the paper venue on loopback."""

from __future__ import annotations

import io
import socket
from collections import Counter
from pathlib import Path

import pytest

from mm_trio import cli
from mm_trio.apps.record import record_command, stream_of
from mm_trio.exchange.recording import iter_recording
from tests.test_binance_e2e import venue_url  # noqa: F401 - the paper venue fixture

pytestmark = pytest.mark.slow  # the paper venue runs in a subprocess


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_unreachable_venue_exits_1_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rec.gz"
    url = f"http://127.0.0.1:{_closed_port()}"
    rc = cli.main(["record", "--symbols", "BTC/USDT", "--out", str(out), "--base-url", url])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert f"cannot reach {url}" in err and "Traceback" not in err
    assert not out.exists()


def test_an_unlisted_symbol_exits_1_naming_it(
    venue_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rec.gz"
    argv = ["record", "--symbols", "BTC/USDT,NOPE/USDT", "--out", str(out)]
    rc = cli.main([*argv, "--base-url", venue_url, "--duration", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip() == f"mm-trio: error: symbol 'NOPE/USDT' is not listed by {venue_url}"
    assert not out.exists()


async def test_no_data_exits_1_and_removes_the_empty_file(
    venue_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The venue lists the symbol, but its stream host sends nothing (here: is closed)."""
    out_path = tmp_path / "rec.gz"
    out, err = io.StringIO(), io.StringIO()
    rc = await record_command(
        ["BTC/USDT"],
        out_path,
        ws_base_url=f"ws://127.0.0.1:{_closed_port()}",
        rest_url=venue_url,
        venue=venue_url,
        stop_after=1.5,
        out=out,
        err=err,
    )
    assert rc == 1
    assert "no data from ws://127.0.0.1:" in err.getvalue()
    assert not out_path.exists()


async def test_progress_counts_lines_per_stream_on_a_terminal(
    venue_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    out_path = tmp_path / "rec.gz"
    out, term = io.StringIO(), FakeTerminal()
    rc = await record_command(
        ["BTC/USDT", "ETH/USDT"],
        out_path,
        ws_base_url=venue_url.replace("http://", "ws://"),
        rest_url=venue_url,
        venue=venue_url,
        stop_after=3.0,
        out=out,
        err=term,
        progress_interval=0.5,
    )
    assert rc == 0, term.getvalue()
    recorded = Counter(stream_of(payload) for _, payload in iter_recording(out_path))
    assert set(recorded) >= {"btcusdt@bookTicker", "ethusdt@bookTicker"}
    last = out.getvalue().strip().splitlines()[-1]
    assert f"recorded {sum(recorded.values()):,} lines" in last
    for stream, n in recorded.items():
        assert f"{stream} {n:,}" in last  # the summary's count per stream is the file's
    bar = term.getvalue()
    assert "record:" in bar and "btcusdt@bookTicker" in bar and " lines" in bar
