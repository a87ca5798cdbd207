"""End to end: the installed ``mm-trio`` command, run as a subprocess (real time)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # every test runs the mm-trio command in a subprocess


def mm_trio_cmd() -> list[str]:
    exe = shutil.which("mm-trio", path=str(Path(sys.executable).parent)) or shutil.which("mm-trio")
    return [exe] if exe else [sys.executable, "-m", "mm_trio.cli"]


def run(args: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mm_trio_cmd() + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw
    )  # type: ignore[call-overload]


LIVELY_TOML = """
[venue]
volatility = 0.002
latency_ms = 2
tick_interval_ms = 50

[grid]
step = "0.001"
levels_below = 4
"""


def test_run_two_symbols_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "lively.toml"
    cfg.write_text(LIVELY_TOML)
    summary_path = tmp_path / "s.json"
    started = time.monotonic()
    proc = run(
        [
            "run",
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--duration",
            "8",
            "--config",
            str(cfg),
            "--summary-json",
            str(summary_path),
            "--status-interval",
            "2",
        ]
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60
    summary = json.loads(summary_path.read_text())
    assert set(summary["symbols"]) == {"BTC/USDT", "ETH/USDT"}
    for sym, s in summary["symbols"].items():
        assert s["fills"] > 0, (sym, s)
        assert s["fills"] == s["buys"] + s["sells"]
        assert s["open_orders_at_exit"] == 0
        assert s["state"] == "REMOVED"
        for key in ("position", "realized_pnl", "fees"):
            assert isinstance(s[key], str)
    assert "total" in summary["exposure"]
    assert "BTC/USDT" in proc.stdout and "open_orders_at_exit" in proc.stdout
    assert proc.stdout.count("mid=") >= 2  # status lines while running


def test_sigint_cancels_orders_prints_summary_exits_zero(tmp_path: Path) -> None:
    summary_path = tmp_path / "s.json"
    proc = subprocess.Popen(
        mm_trio_cmd() + ["run", "--symbols", "BTC/USDT", "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        # wait for the start banner, let it trade a moment, then interrupt
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "trading BTC/USDT" in line
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "open_orders_at_exit" in out
    assert "STOPPED (SIGINT)" in out  # the exit table says why it stopped
    summary = json.loads(summary_path.read_text())
    assert summary["symbols"]["BTC/USDT"]["open_orders_at_exit"] == 0
    assert summary["symbols"]["BTC/USDT"]["stopped_by"] == "SIGINT"


def test_sigterm_exits_zero(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        mm_trio_cmd() + ["run", "--symbols", "ETH/USDT"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert "trading ETH/USDT" in proc.stdout.readline()
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "ETH/USDT" in out
    assert "STOPPED (SIGTERM)" in out


@pytest.mark.parametrize(
    ("symbols", "needle"),
    [("BTCUSDT", "BTCUSDT"), ("BTC/USDT,eth/usdt", "eth/usdt"), ("NOPE/USDT", "NOPE/USDT")],
)
def test_bad_symbol_exits_2_naming_it(symbols: str, needle: str) -> None:
    proc = run(["run", "--symbols", symbols, "--duration", "1"])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("[grid]\nlevels_below = -1\n", ["grid.levels_below", "-1"]),
        ('[grid]\nstep = "abc"\n', ["grid.step", "abc"]),
        ("[risk]\nstale_afterr = 3\n", ["risk.stale_afterr"]),
        ('[venue]\nqueue_model = "magic"\n', ["venue.queue_model", "magic"]),
        ('[symbols."BTC/USDT"]\nlevels_below = "many"\n', ["levels_below", "many"]),
        ("not toml at all [", ["not valid TOML"]),
    ],
)
def test_invalid_config_exits_2_naming_key_and_value(
    tmp_path: Path, toml: str, needles: list[str]
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    proc = run(["run", "--symbols", "BTC/USDT", "--duration", "1", "--config", str(cfg)])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    for needle in needles:
        assert needle in proc.stderr


def test_help_runs() -> None:
    proc = run(["--help"], env={**os.environ})
    assert proc.returncode == 0
    assert "run" in proc.stdout
