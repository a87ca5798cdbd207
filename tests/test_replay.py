"""Replay: recordings through the live pipeline, deterministic to the byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import ReplayError, run_replay
from mm_trio.domain.config import config_from_dict
from mm_trio.exchange.sim.recorded import discover_symbols, split_native
from tests.conftest import ROOT, SHARED_DATA

FIXTURES = ROOT / "fixtures"
BTC = FIXTURES / "btcusdt-synth.gz"
ETH = FIXTURES / "ethusdt-synth.gz"
ETHBTC = FIXTURES / "ethbtc-synth.gz"
REAL = [
    SHARED_DATA / "binance-spot-btcusdt-20240808.gz",
    SHARED_DATA / "binance-spot-ethusdt-20240808.gz",
]
OUTPUTS = ["orders.jsonl", "fills.csv", "equity.csv", "summary.json"]


def test_split_native() -> None:
    assert split_native("BTCUSDT") == "BTC/USDT"
    assert split_native("ETHBTC") == "ETH/BTC"
    assert split_native("SOLFDUSD") == "SOL/FDUSD"
    assert split_native("XYZ", {"XYZ": "X/YZ"}) == "X/YZ"
    with pytest.raises(ReplayError, match="QQQQQ"):
        split_native("QQQQQ")


def test_discover_symbols_in_fixtures() -> None:
    assert discover_symbols([BTC, ETH, ETHBTC]) == {
        "BTCUSDT": "BTC/USDT",
        "ETHBTC": "ETH/BTC",
        "ETHUSDT": "ETH/USDT",
    }


@pytest.mark.slow
def test_replay_fixtures_trades_both_symbols(tmp_path: Path) -> None:
    summary = run_replay([BTC, ETH], load_config(None), out=tmp_path, progress=None)
    for sym in ("BTC/USDT", "ETH/USDT"):
        s = summary["symbols"][sym]
        assert s["fills"] > 0 and s["buys"] > 0 and s["sells"] > 0, s
        assert s["open_orders_at_exit"] == 0
        assert s["events"] > 1000
    rp = summary["replay"]
    assert rp["malformed_lines"] >= 1 and rp["unknown_streams"] >= 1  # counted, not fatal
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0
    # the order log has one line per intent and per venue response
    kinds = {
        json.loads(line)["kind"] for line in (tmp_path / "orders.jsonl").read_text().splitlines()
    }
    assert {"place", "cancel", "report"} <= kinds
    fills = (tmp_path / "fills.csv").read_text().splitlines()
    assert len(fills) - 1 == sum(s["fills"] for s in summary["symbols"].values())
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["symbols"] == summary["symbols"]


@pytest.mark.slow
def test_replay_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Separate processes (different hash seeds, so different memory layouts and set orders)
    produce byte-identical outputs."""
    outs = []
    for i, hashseed in enumerate(("1", "2")):
        out = tmp_path / f"r{i}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mm_trio.cli",
                "replay",
                str(BTC),
                str(ETH),
                str(ETHBTC),
                "--out",
                str(out),
                "--no-progress",
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
            timeout=300,
            env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"},
        )
        outs.append(out)
    for name in OUTPUTS:
        for other in outs[1:]:
            assert (outs[0] / name).read_bytes() == (other / name).read_bytes(), name


@pytest.mark.slow
def test_replay_config_changes_the_result(tmp_path: Path) -> None:
    base = run_replay([BTC], load_config(None), progress=None)
    wider = run_replay([BTC], config_from_dict({"grid": {"step": "0.004"}}), progress=None)
    assert wider["symbols"]["BTC/USDT"]["fills"] < base["symbols"]["BTC/USDT"]["fills"]


@pytest.mark.slow
def test_replay_spec_overrides_apply() -> None:
    cfg = config_from_dict(
        {"replay": {"specs": {"BTC/USDT": {"step_size": "0.001", "min_qty": "0.001"}}}}
    )
    summary = run_replay([BTC], cfg, progress=None)
    pos = summary["symbols"]["BTC/USDT"]["position"]
    assert (len(pos.split(".")[1]) if "." in pos else 0) <= 3


@pytest.mark.slow
def test_replay_bad_inputs_exit_2(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "mm_trio.cli", "replay", str(tmp_path / "nope.gz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert missing.returncode == 2 and "nope.gz" in missing.stderr
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mm_trio.cli", "replay", str(junk)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "junk.txt" in proc.stderr
    speed = subprocess.run(
        [sys.executable, "-m", "mm_trio.cli", "replay", str(BTC), "--speed", "fast"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert speed.returncode == 2 and "fast" in speed.stderr


@pytest.mark.slow
@pytest.mark.skipif(not all(p.exists() for p in REAL), reason="../shared/data not present")
def test_replay_real_recordings_twice_identical(tmp_path: Path) -> None:
    cfg = load_config(None)
    a = run_replay(REAL, cfg, out=tmp_path / "a", progress=None)
    b = run_replay(REAL, cfg, out=tmp_path / "b", progress=None)
    for sym in ("BTC/USDT", "ETH/USDT"):
        assert a["symbols"][sym]["fills"] > 0, a["symbols"][sym]
    assert a["replay"]["records"] == 74867 and a["replay"]["malformed_lines"] == 0
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a == b


@pytest.mark.slow
def test_phases_are_timed_without_changing_the_outputs(tmp_path: Path) -> None:
    """``run_replay(phases=...)`` (the benchmarks' seam) reports the wall time of adding the
    symbols and of the shutdown; the outputs are the same bytes as without it."""
    phases: dict[str, float] = {}
    run_replay([BTC, ETH], load_config(None), out=tmp_path / "timed", progress=None, phases=phases)
    run_replay([BTC, ETH], load_config(None), out=tmp_path / "plain", progress=None)
    assert set(phases) == {"add", "shutdown"} and all(v >= 0 for v in phases.values())
    for name in OUTPUTS:
        assert (tmp_path / "timed" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
