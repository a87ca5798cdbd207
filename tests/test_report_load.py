"""The report reads replay output directories and state stores (real files)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest

from mm_trio.apps.replay import run_replay
from mm_trio.apps.report.command import report, run_metrics
from mm_trio.apps.report.load import TOTAL, ReportError, load_run
from mm_trio.apps.report.metrics import match_fills
from mm_trio.domain.config import Config
from mm_trio.store.state import StateStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
S = 1_000_000_000
T0 = 1_767_225_600 * S

EQUITY_HEADER = (
    "ts,symbol,mid,position,realized_pnl,unrealized_pnl,fees,total_pnl,"
    "exposure,open_orders,state,reduce_only,breakers\n"
)


def _replay_dir(tmp_path: Path) -> Path:
    """A two-symbol replay directory written by hand, small enough to check every number."""
    d = tmp_path / "run1"
    d.mkdir()
    rows = [
        f"{T0},BTC/USDT,100,1,0,0,0.1,-0.1,200,2,RUNNING,0,",
        f"{T0},ETH/USDT,10,0,0,0,0,0,50,1,RUNNING,0,",
        f"{T0},TOTAL,,,,,,-0.1,250,3,,0,",
        f"{T0 + S},BTC/USDT,102,0,2,0,0.2,1.8,100,1,HALTED,1,jump",
        f"{T0 + S},ETH/USDT,10,0,0,0,0,0,50,1,RUNNING,0,",
        f"{T0 + S},TOTAL,,,,,,1.8,150,2,,0,",
        f"{T0 + 2 * S},BTC/USDT,101,0,2,0,0.2,1.8,100,1,RUNNING,0,",
        f"{T0 + 2 * S},ETH/USDT,10,0,0,0,0,0,50,1,RUNNING,0,",
        f"{T0 + 2 * S},TOTAL,,,,,,1.8,150,2,,0,",
        # the final sample falls on the periodic one: the later row wins
        f"{T0 + 2 * S},BTC/USDT,101,0,2,0,0.2,1.8,100,1,RUNNING,0,",
        f"{T0 + 2 * S},ETH/USDT,10,0,0,0,0,0,50,1,RUNNING,0,",
        f"{T0 + 2 * S},TOTAL,,,,,,1.8,150,2,,0,",
    ]
    (d / "equity.csv").write_text(EQUITY_HEADER + "\n".join(rows) + "\n")
    (d / "fills.csv").write_text(
        "ts,symbol,side,price,qty,fee,fee_asset,trade_id,client_id,liquidity\n"
        f"{T0 + 1},BTC/USDT,BUY,100,1,0.1,USDT,1,mmt_BTCUSDT_B0_1,maker\n"
        f"{T0 + S // 2},BTC/USDT,SELL,102,1,0.1,USDT,2,mmt_BTCUSDT_S0_3,taker\n"
    )
    log = [
        {"ts": T0, "kind": "place", "symbol": "BTC/USDT", "client_id": "mmt_BTCUSDT_B0_1",
         "side": "BUY", "price": "100", "qty": "1", "post_only": True},
        {"ts": T0, "kind": "place", "symbol": "BTC/USDT", "client_id": "mmt_BTCUSDT_B-1_2",
         "side": "BUY", "price": "99", "qty": "1", "post_only": True},
        {"ts": T0, "kind": "place", "symbol": "ETH/USDT", "client_id": "mmt_ETHUSDT_B0_1",
         "side": "BUY", "price": "9.9", "qty": "1", "post_only": True},
        {"ts": T0 + 1, "kind": "report", "type": "order", "client_id": "mmt_BTCUSDT_B0_1",
         "status": "FILLED", "symbol": "BTC/USDT"},
        {"ts": T0 + 1, "kind": "place", "symbol": "BTC/USDT", "client_id": "mmt_BTCUSDT_S0_3",
         "side": "SELL", "price": "102", "qty": "1", "post_only": False},
        {"ts": T0 + 2, "kind": "outcome", "type": "order", "client_id": "mmt_ETHUSDT_B0_1",
         "symbol": "ETH/USDT", "status": "REJECTED", "reason": "balance: insufficient"},
        {"ts": T0 + 3, "kind": "refused", "type": "order", "client_id": "mmt_BTCUSDT_B-2_4",
         "symbol": "BTC/USDT", "status": "REJECTED", "reason": "governor: total cap"},
        {"ts": T0 + S // 2, "kind": "report", "type": "order", "symbol": "BTC/USDT",
         "client_id": "mmt_BTCUSDT_S0_3", "status": "FILLED"},
    ]  # fmt: skip
    (d / "orders.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    (d / "summary.json").write_text(
        json.dumps({"symbols": {"BTC/USDT": {"breaker_trips": 1}, "ETH/USDT": {}}})
    )
    return d


def test_a_replay_directory_gives_its_numbers(tmp_path: Path) -> None:
    run = load_run(_replay_dir(tmp_path))
    assert run.kind == "replay" and sorted(run.symbols) == ["BTC/USDT", "ETH/USDT"]
    btc = run.symbols["BTC/USDT"]
    assert len(btc.samples) == 3 and len(run.total) == 3  # the repeated final row is one
    (b1, b0, tp) = sorted(btc.orders, key=lambda o: o.client_id)  # "B-1" < "B0"
    assert (b1.client_id, b1.opening, b1.end_ns) == ("mmt_BTCUSDT_B-1_2", True, None)
    assert (b0.opening, b0.end_ns, b0.status) == (True, T0 + 1, "FILLED")
    assert (tp.opening, tp.end_ns) == (False, T0 + S // 2)
    m = run_metrics(run)
    assert m["BTC/USDT"].round_trips == 1
    assert m["BTC/USDT"].avg_round_trip_net == D("1.8")  # (102 - 100) - 0.1 - 0.1
    assert m["BTC/USDT"].fill_rate == 0.5  # B0 filled, B-1 did not; the TP is not opening
    assert m["BTC/USDT"].time_halted_s == 1.0 and m["BTC/USDT"].time_reduce_only_s == 1.0
    assert m["BTC/USDT"].rejects == {"governor": 1}  # refused, never placed
    assert m["ETH/USDT"].rejects == {"balance": 1}
    assert m["BTC/USDT"].breaker_trips == 1
    total = m[TOTAL]
    assert total.net_pnl == D("1.8") and total.realized_pnl == D(2) and total.fees == D("0.2")
    assert total.capital_used == D(250) and total.max_drawdown == D("0.1")
    assert total.time_halted_s == 1.0  # while BTC/USDT was halted
    assert total.rejects == {"balance": 1, "governor": 1}


def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path) -> None:
    d = _replay_dir(tmp_path)
    text = (d / "fills.csv").read_text().replace(",102,1,", ",abc,1,")
    (d / "fills.csv").write_text(text)
    with pytest.raises(ReportError, match=r"fills\.csv:3: 'abc' is not a number"):
        load_run(d)


def test_neither_a_replay_directory_nor_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(ReportError, match="no equity.csv, fills.csv, orders.jsonl"):
        load_run(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReportError, match="neither a replay output directory nor a state store"):
        load_run(tmp_path / "notes.txt")
    with pytest.raises(ReportError, match="is a directory"):
        report([_replay_dir(tmp_path)], tmp_path)


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "account.sqlite"
    with StateStore.open(path) as st:
        st.put_symbol("BTC/USDT", json.dumps({"mode": "long"}), "running", T0)
        for cid, side, price, ts in [
            ("mmt_BTCUSDT_B0_1", "BUY", "100", T0),
            ("mmt_BTCUSDT_B-1_2", "BUY", "99", T0),
            ("mmt_BTCUSDT_S0_3", "SELL", "102", T0 + 5 * S),
            ("mmt_BTCUSDT_B-2_4", "BUY", "98", T0 + 6 * S),
        ]:
            level = int(cid.split("_")[2][1:])
            st.journal_intent(cid, "BTC/USDT", level, side, D(price), D(1), int(cid[-1]), ts)  # type: ignore[arg-type]
        st.journal_event("mmt_BTCUSDT_B-2_4", "report",
                         json.dumps({"status": "REJECTED", "reason": "filter: LOT_SIZE"}),
                         T0 + 6 * S)  # fmt: skip
        st.add_fill("BTC/USDT", "1", "11", "mmt_BTCUSDT_B0_1", "BUY", D(100), D(1), D("0.1"),
                    "USDT", T0 + 2 * S)  # fmt: skip
        st.add_fill("BTC/USDT", "2", "13", "mmt_BTCUSDT_S0_3", "SELL", D(102), D(1), D("0.1"),
                    "USDT", T0 + 10 * S)  # fmt: skip
    return path


def test_a_state_store_is_read_without_changing_it(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    run = load_run(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert run.kind == "store"
    btc = run.symbols["BTC/USDT"]
    # equity rebuilt every second from the first fill (T0+2s) to the last event (T0+10s)
    assert [s.ts_ns for s in btc.samples] == [T0 + k * S for k in range(2, 11)]
    # after the buy, marked at its own price: unrealized 0, fees 0.1
    assert btc.samples[0].total == D("-0.1") and btc.samples[0].position == D(1)
    assert btc.samples[-1].total == D("1.8") and btc.samples[-1].realized == D(2)
    m = run_metrics(run)["BTC/USDT"]
    assert (m.round_trips, m.avg_round_trip_net) == (1, D("1.8"))
    # opening: B0 (filled), B-1, B-2; the long grid's unfilled SELL would be a take-profit
    assert m.opening_orders == 3 and m.fill_rate == 1 / 3
    assert m.rejects == {"filter": 1}
    assert m.capital_used == D(100)  # 1 BTC at 100 was the largest inventory value


def test_a_newer_store_is_refused_by_name(tmp_path: Path) -> None:
    path = _store(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ReportError, match="schema version 99, newer than this mm-trio"):
        load_run(path)


@pytest.mark.slow
def test_a_real_replay_reports_what_its_summary_says(tmp_path: Path) -> None:
    out = tmp_path / "r"
    summary = run_replay([FIXTURES / "btcusdt-synth.gz"], Config(), out=out, progress=None)
    run = load_run(out)
    m = run_metrics(run)
    row = summary["symbols"]["BTC/USDT"]
    assert m["BTC/USDT"].fills == row["fills"] > 0
    net = D(row["realized_pnl"]) + D(row["unrealized_pnl"]) - D(row["fees"])
    assert abs(m["BTC/USDT"].net_pnl - net) < D("1e-9")
    assert m["BTC/USDT"].realized_pnl == D(row["realized_pnl"])
    # the realized PnL is the round trips' gross: the engine's FIFO and the report's agree
    trips = match_fills(run.symbols["BTC/USDT"].fills).round_trips
    assert len(trips) == m["BTC/USDT"].round_trips > 0
    assert sum((t.gross for t in trips), D(0)) == D(row["realized_pnl"])
    assert m[TOTAL].capital_used is not None and m[TOTAL].capital_used > 0


def test_an_older_replay_without_the_state_columns_still_reports(tmp_path: Path) -> None:
    d = _replay_dir(tmp_path)
    old = ["ts,symbol,mid,position,realized_pnl,unrealized_pnl,fees,total_pnl"]
    for line in (d / "equity.csv").read_text().splitlines()[1:]:
        old.append(",".join(line.split(",")[:8]))
    (d / "equity.csv").write_text("\n".join(old) + "\n")
    m = run_metrics(load_run(d))
    assert m[TOTAL].capital_used is None and m[TOTAL].return_on_capital is None
    assert m[TOTAL].net_pnl == D("1.8") and m["BTC/USDT"].time_halted_s == 0.0
