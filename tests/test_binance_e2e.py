"""End to end over the wire: `mm-trio venue` served locally, `mm-trio run --venue binance
--base-url` trading it, and `mm-trio record` recording it for `mm-trio replay`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli_e2e import ROOT, mm_trio_cmd

VENUE_TOML = """
[venue]
volatility = 0.002
tick_interval_ms = 50
latency_ms = 2
"""


@pytest.fixture
def venue_url(tmp_path: Path) -> Iterator[str]:
    cfg = tmp_path / "venue.toml"
    cfg.write_text(VENUE_TOML)
    proc = subprocess.Popen(
        mm_trio_cmd() + ["venue", "--port", "0", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "MM_TRIO_API_KEY": "mmtrio-test-key",
        "MM_TRIO_API_SECRET": "mmtrio-test-secret",
    }


def test_run_against_local_binance_venue(venue_url: str, tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nstep = "0.001"\nlevels_below = 4\n')
    summary_path = tmp_path / "s.json"
    proc = subprocess.run(
        mm_trio_cmd()
        + [
            "run",
            "--venue",
            "binance",
            "--base-url",
            venue_url,
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--duration",
            "10",
            "--config",
            str(grid),
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(summary_path.read_text())
    for sym in ("BTC/USDT", "ETH/USDT"):
        s = summary["symbols"][sym]
        assert s["fills"] > 0, (sym, s)
        assert s["open_orders_at_exit"] == 0
    assert "mmtrio-test-secret" not in proc.stdout + proc.stderr


def test_run_binance_without_keys_or_with_bad_keys_fails_cleanly(venue_url: str) -> None:
    env = {**_env(), "MM_TRIO_API_SECRET": "wrong-secret"}
    proc = subprocess.run(
        mm_trio_cmd()
        + [
            "run",
            "--venue",
            "binance",
            "--base-url",
            venue_url,
            "--symbols",
            "BTC/USDT",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode != 0
    assert "wrong-secret" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_unlisted_symbol_on_binance_venue_exits_2(venue_url: str) -> None:
    proc = subprocess.run(
        mm_trio_cmd()
        + [
            "run",
            "--venue",
            "binance",
            "--base-url",
            venue_url,
            "--symbols",
            "NOPE/USDT",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "NOPE/USDT" in proc.stderr


def test_record_then_replay(venue_url: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.gz"
    proc = subprocess.run(
        mm_trio_cmd()
        + [
            "record",
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--out",
            str(out),
            "--base-url",
            venue_url,
            "--duration",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
    replay = subprocess.run(
        [sys.executable, "-m", "mm_trio.cli", "replay", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert replay.returncode == 0, replay.stderr
    assert "BTC/USDT" in replay.stdout and "ETH/USDT" in replay.stdout
    assert "malformed lines 0" in replay.stdout


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
