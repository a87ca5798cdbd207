"""``mm-trio run --state``: the store a user points at, its errors, and the recovery the
next run prints (issue 9; SPEC §9, §12). Runs the real command in-process on the embedded
simulated venue (real time, a few seconds)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mm_trio.apps.state_file import default_state_path, state_path
from mm_trio.cli import main
from mm_trio.store import SCHEMA_VERSION, StateStore, StoreLock

LIVELY = """
[venue]
volatility = 0.002
latency_ms = 2
tick_interval_ms = 50

[grid]
step = "0.001"
levels_below = 3
"""


def run(tmp_path: Path, *extra: str) -> list[str]:
    cfg = tmp_path / "lively.toml"
    cfg.write_text(LIVELY)
    return ["run", "--symbols", "BTC/USDT", "--config", str(cfg), "--duration", "2", *extra]


@pytest.mark.slow
def test_a_second_run_recovers_from_the_first_runs_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    assert main(run(tmp_path, "--state", str(db))) == 0
    first = capsys.readouterr().out
    assert "mm-trio: recovery: BTC/USDT: adopted 0" in first  # an empty store: nothing to do
    with StateStore.open(db) as store:
        intents = len(store.intents())
        assert intents > 0  # every order was journalled
        assert [r.state for r in store.symbols()] == ["stopped"]  # a clean stop
        assert not store.open_intents()  # ... that left nothing unresolved
    summary = tmp_path / "sum.json"
    assert main(run(tmp_path, "--state", str(db), "--summary-json", str(summary))) == 0
    out = capsys.readouterr().out
    assert "mm-trio: recovery: BTC/USDT: adopted 0, orphans cancelled 0" in out
    assert json.loads(summary.read_text())["recovery"]["symbols"]["BTC/USDT"]["adopted"] == 0
    with StateStore.open(db) as store:
        assert len(store.intents()) > intents
        gens = [i.generation for i in store.intents()]
        assert len(set(i.client_id for i in store.intents())) == len(gens)  # no id reused


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"my trading notes, not a database\n" * 10)
    before = db.read_bytes()
    assert main(run(tmp_path, "--state", str(db))) == 2
    err = capsys.readouterr().err
    assert f"--state: state store {db} is not an SQLite database" in err
    assert "Traceback" not in err
    assert db.read_bytes() == before


def test_a_store_of_a_newer_mm_trio_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    assert main(run(tmp_path, "--state", str(db))) == 2
    err = capsys.readouterr().err
    assert "newer than this mm-trio knows" in err and "upgrade mm-trio" in err
    assert db.read_bytes() == before


def test_a_store_in_use_by_another_trader_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    with StoreLock(db):  # another mm-trio holds it
        assert main(run(tmp_path, "--state", str(db))) == 2
    err = capsys.readouterr().err
    assert "is in use by another mm-trio process" in err
    assert not db.exists()  # nothing was created either


def test_state_and_no_state_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(tmp_path, "--state", str(tmp_path / "s.db"), "--no-state")) == 2
    assert "--state and --no-state exclude each other" in capsys.readouterr().err


def test_where_the_store_lives_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_state_path("sim", None, None) is None  # the quick start stays repeatable
    live = default_state_path("binance", None, "key-1")
    assert live is not None and live.parent == tmp_path / "mm-trio"
    assert "key-1" not in str(live)  # a digest of the key, never the key
    assert default_state_path("binance", None, "key-2") != live  # one file per account
    assert default_state_path("binance-testnet", None, "key-1") != live
    assert default_state_path("binance", "http://127.0.0.1:8765", "key-1") != live
    given = tmp_path / "x.db"
    pick = dict(venue="binance", base_url=None, api_key="k")
    assert state_path(given=given, configured="y.db", disabled=False, **pick) == given
    assert state_path(given=None, configured="y.db", disabled=False, **pick) == Path("y.db")
    assert state_path(given=None, configured="", disabled=True, **pick) is None
