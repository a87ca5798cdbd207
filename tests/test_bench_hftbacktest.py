"""Benchmark (e)'s parts that need no hftbacktest: the spot line -> event conversion
(``scripts/hbt_child.py``) and the skip paths of ``scripts/bench_hftbacktest.py``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

SCRIPTS = ROOT / "scripts"
LATENCY_NS = 1_250_000_000  # receive clock ahead of the exchange's, as in the real files
T0_MS = 1_723_161_255_000


def _line(local_ns: int, payload: dict[str, object]) -> bytes:
    return b"%d %s" % (local_ns, json.dumps(payload).encode())


def _at(ms: int, extra_ns: int = 0) -> int:
    return ms * 1_000_000 + LATENCY_NS + extra_ns


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    pytest.importorskip("numpy")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("hbt_child")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("bench_hftbacktest")


def test_spot_lines_map_to_hftbacktest_events(child: ModuleType) -> None:
    ticker = {"u": 1, "s": "BTCUSDT", "b": "100.01", "B": "2.5", "a": "100.02", "A": "0.75"}
    depth = {
        "e": "depthUpdate",
        "E": T0_MS + 100,
        "s": "BTCUSDT",
        "U": 2,
        "u": 3,
        "b": [["99.50", "1.0"], ["99.40", "0.0"]],
        "a": [["100.50", "3.0"]],
    }
    trade = {
        "e": "trade",
        "E": T0_MS + 201,
        "s": "BTCUSDT",
        "t": 9,
        "p": "100.02",
        "q": "0.125",
        "T": T0_MS + 200,
        "m": True,
        "M": True,
    }
    snapshot = {"lastUpdateId": 3, "bids": [["100.01", "2.5"], ["99.5", "1"]], "asks": []}
    lines = [
        _line(_at(T0_MS), {"stream": "btcusdt@bookTicker", "data": ticker}),  # before any time
        _line(_at(T0_MS + 100), {"stream": "btcusdt@depth@100ms", "data": depth}),
        _line(_at(T0_MS + 200, 7), {"stream": "btcusdt@trade", "data": trade}),
        _line(_at(T0_MS + 250, 7), snapshot),
    ]
    rows, line_kinds, row_kinds = child.convert_lines(lines)

    assert dict(line_kinds) == {"bookTicker": 1, "depth": 1, "trade": 1, "snapshot": 1}
    assert dict(row_kinds) == {"bookTicker": 2, "depth": 3, "trade": 1, "snapshot": 3}
    buy, sell = child.BUY_EVENT, child.SELL_EVENT
    assert [int(e) for e in rows["ev"]] == [
        103,
        104,
        child.DEPTH_EVENT | buy,
        child.DEPTH_EVENT | buy,
        child.DEPTH_EVENT | sell,
        child.TRADE_EVENT | sell,  # m: the buyer is the maker, the seller took
        child.DEPTH_CLEAR_EVENT | buy,
        child.DEPTH_SNAPSHOT_EVENT | buy,
        child.DEPTH_SNAPSHOT_EVENT | buy,
    ]
    assert list(rows["px"]) == [100.01, 100.02, 99.5, 99.4, 100.5, 100.02, 99.5, 100.01, 99.5]
    assert list(rows["qty"]) == [2.5, 0.75, 1.0, 0.0, 3.0, 0.125, 0.0, 2.5, 1.0]
    ms = 1_000_000
    # the ticker has no exchange time: the first timed line's feed latency gives it one;
    # the snapshot gets the latest one (the trade's, timed by T)
    assert list(rows["exch_ts"]) == [
        T0_MS * ms,
        T0_MS * ms,
        *[(T0_MS + 100) * ms] * 3,
        (T0_MS + 200) * ms,
        *[(T0_MS + 250) * ms] * 3,
    ]
    assert list(rows["local_ts"][:2]) == [_at(T0_MS)] * 2
    assert list(rows["local_ts"][-3:]) == [_at(T0_MS + 250, 7)] * 3


def test_unknown_and_blank_lines_make_no_events(child: ModuleType) -> None:
    rows, line_kinds, row_kinds = child.convert_lines(
        [b"", b'5 {"result":null,"id":1}', b"  ", _line(6, {"stream": "x@kline", "data": {}})]
    )
    assert len(rows) == 0
    assert dict(line_kinds) == {"other": 2} and sum(row_kinds.values()) == 0


def test_no_recordings_skips_with_the_reason(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_common import Results

    monkeypatch.setattr(bench, "DATA_DIR", tmp_path / "absent")
    res = Results(quick=True)
    bench.bench_hftbacktest(res, tmp_path)
    assert [r.value for r in res.rows] == [
        f"skipped: no binance-spot-*.gz recordings in {tmp_path / 'absent'}"
    ]
    assert res.rows[0].ok is None and res.notes["e"].startswith("Skipped: no binance-spot")


@pytest.mark.slow
def test_a_failing_step_is_one_line_not_a_traceback(bench: ModuleType) -> None:
    cmd = [sys.executable, "-c", "import sys; print('noise', file=sys.stderr); sys.exit('no net')"]
    with pytest.raises(bench.Skip, match=r"^pip install failed: no net$"):
        bench._run(cmd, "pip install", 60)
