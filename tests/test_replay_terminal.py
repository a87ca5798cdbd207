"""``mm-trio replay`` at a terminal: Ctrl-C / SIGTERM stop it cleanly, with what was replayed
written (``"partial": true``) and exit 130 / 143, no traceback; the progress bar draws only on
a terminal and counts the bytes read, not the records of a first pass."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mm_trio.apps import replay as replay_app
from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import run_replay
from mm_trio.exchange import recording
from tests.test_cli_e2e import ROOT, mm_trio_cmd
from tests.test_replay import BTC, ETH

STARTED = "Ctrl-C (or SIGTERM) stops early"
REPLAY_SPEED = "20"  # the fixtures' 3 minutes of market time in about 9 s


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_replay_and_writes_what_it_has(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        mm_trio_cmd()
        + ["replay", str(BTC), str(ETH), "--speed", REPLAY_SPEED, "--out", str(out_dir)]
        + ["--log-level", "INFO"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # wait until the replay listens for the signal
            seen.append(line)
            if STARTED in line:
                break
        assert any(STARTED in line for line in seen), seen
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped by {signum.name}" in err and "partial" in err
    assert "TOTAL" in out and "BTC/USDT" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["interrupted_by"] == signum.name
    full = run_replay([BTC, ETH], load_config(None), progress=None)
    assert full["partial"] is False and "interrupted_by" not in full
    # it stopped before the end of the data, and wrote what it had replayed
    assert 0 < summary["replay"]["records"] < full["replay"]["records"]
    fills = (out_dir / "fills.csv").read_text().splitlines()
    assert len(fills) - 1 == sum(s["fills"] for s in summary["symbols"].values())
    for s in summary["symbols"].values():
        assert s["open_orders_at_exit"] == 0  # stopped in order: our orders cancelled


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_by_bytes_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = recording.merge_recordings

    def counting(*args: object, **kw: object) -> object:
        reads.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    # the replay's own reader is the one ReplayFeed uses; a count first would be another
    monkeypatch.setattr(replay_app, "merge_recordings", counting, raising=False)
    term = FakeTerminal()
    summary = run_replay([BTC, ETH], load_config(None), progress=term)
    text = term.getvalue()
    assert "replay:" in text and "100%" in text  # tqdm's bar, to its end
    size = BTC.stat().st_size + ETH.stat().st_size
    assert f"{size / 1000:.0f}k" in text or f"{size / 1e6:.2f}M" in text  # bytes, not records
    assert f"{summary['replay']['records']:,} records" in text
    assert reads == []  # nothing read to count the records first


def test_progress_does_not_draw_when_not_a_terminal() -> None:
    pipe = io.StringIO()  # isatty() is False, as for a pipe or a file
    run_replay([BTC], load_config(None), progress=pipe)
    assert pipe.getvalue() == ""


def test_bytes_read_reach_the_file_sizes() -> None:
    stats = recording.RecordingStats()
    n = sum(1 for _ in recording.merge_recordings([BTC, ETH], stats))
    assert n > 0
    assert stats.bytes_read == BTC.stat().st_size + ETH.stat().st_size
