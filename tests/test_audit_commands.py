"""``mm-trio trades`` / ``mm-trio orders``: the state store read back exactly, read-only, on
real SQLite files (also while a trader writes to them)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.apps.audit import ORDER_COLUMNS, TRADE_COLUMNS, iso_time, trades_command
from mm_trio.cli import main
from mm_trio.domain.ids import make_client_id
from mm_trio.store import StateStore
from mm_trio.store.reader import StoreReader
from tests.test_cli_e2e import ROOT, mm_trio_cmd

D = Decimal
T0 = 1_796_124_153_456_789_123  # 2026-12-01T11:22:33.456789123Z
MS = 1_000_000
BTC, ETH = "BTC/USDT", "ETH/USDT"


def cid(symbol: str, side: str, level: int, gen: int) -> str:
    tag = symbol.replace("/", "")
    return make_client_id("mmt", tag, "BUY" if side == "BUY" else "SELL", level, gen)


FILLS = [
    # symbol, trade_id, order_id, client_id, side, price, qty, fee, fee_asset, ts
    (BTC, "10", "501", cid(BTC, "BUY", -1, 7), "BUY", "65000.10", "0.00100", "0.0650", "USDT", 5),
    (BTC, "9", "501", cid(BTC, "BUY", -1, 7), "BUY", "65000.10", "0.00050", "1E-8", "USDT", 5),
    (ETH, "3", "77", cid(ETH, "SELL", 2, 7), "SELL", "3000.5", "0.0100", "0", "USDT", 2),
    (BTC, "11", "502", "manual-order", "SELL", "65100.00", "0.00020", "0.00", "BNB", 9),
]
"""Written out of time order, with trailing zeros, an exponent and ids that sort as numbers."""


def write_fills(store: StateStore, fills: list[tuple[str, ...]] = FILLS) -> None:
    for symbol, trade_id, oid, client_id, side, price, qty, fee, asset, ts in fills:
        store.add_fill(
            symbol,
            trade_id,
            oid,
            client_id,
            "BUY" if side == "BUY" else "SELL",
            D(price),
            D(qty),
            D(fee),
            asset,
            T0 + int(ts) * MS,
        )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def file_state(path: Path) -> tuple[str, int, list[str]]:
    """The file's bytes (hash), mtime and what lies next to it."""
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime_ns,
        sorted(p.name for p in path.parent.iterdir()),
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        write_fills(store)
    return path


# ---------------------------------------------------------------------- trades


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(T0) == "2026-12-01T11:22:33.456Z"
    assert iso_time(T0 + 543_210_876) == "2026-12-01T11:22:33.999Z"  # truncated, not rounded
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    parsed = datetime.strptime(iso_time(T0), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert int(parsed.timestamp() * 1000) == T0 // MS


def test_trades_csv_is_the_ledger_exactly(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["trades", "--state", str(store_path), "--csv"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == ",".join(TRADE_COLUMNS)
    rows = csv_rows(out)
    # by time, then trade id as a number (9 before 10)
    assert [(r["symbol"], r["trade_id"]) for r in rows] == [
        (ETH, "3"),
        (BTC, "9"),
        (BTC, "10"),
        (BTC, "11"),
    ]
    by_id = {(f[0], f[1]): f for f in FILLS}
    for row in rows:
        symbol, trade_id, oid, client_id, side, price, qty, fee, asset, ts = by_id[
            (row["symbol"], row["trade_id"])
        ]
        assert (row["order_id"], row["client_id"], row["side"], row["fee_asset"]) == (
            oid,
            client_id,
            side,
            asset,
        )
        for column, written in (("price", price), ("qty", qty), ("fee", fee)):
            # the same digits and exponent, not merely an equal value
            assert D(row[column]).as_tuple() == D(written).as_tuple(), (column, row)
        assert row["time"] == iso_time(T0 + int(ts) * MS)
    fee_of_9 = next(r["fee"] for r in rows if r["trade_id"] == "9")
    assert fee_of_9 == "0.00000001"  # fixed-point, never 1E-8 in a spreadsheet


def test_trades_table_has_a_total_line_per_symbol(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["trades", "--state", str(store_path)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == list(TRADE_COLUMNS)
    assert len(lines) == 1 + len(FILLS) + 1
    assert lines[-1] == (
        "total: 4 fills; BTC/USDT: 3 fills, bought 0.00150, sold 0.00020; "
        "ETH/USDT: 1 fill, bought 0, sold 0.0100"
    )
    # aligned: every column of every row starts where its header does
    header = lines[0]
    starts = [header.index(c) for c in ("client_id", "side", "fee_asset", "time")]
    for line in lines[1:-1]:
        for s in starts:
            assert line[s - 1] == " " and line[s] != " ", (line, s)


def test_trades_of_one_symbol(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["trades", "--state", str(store_path), "--symbol", ETH, "--csv"], capsys)
    assert code == 0
    assert [(r["symbol"], r["trade_id"]) for r in csv_rows(out)] == [(ETH, "3")]
    code, out, _ = run_cli(["trades", "--state", str(store_path), "--symbol", "SOL/USDT"], capsys)
    assert (code, out) == (0, "total: 0 fills\n")


@settings(max_examples=25)
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=D("1e-8"), max_value=D("1e7"), places=8),
            st.decimals(min_value=0, max_value=D("1e4"), places=8),
            st.integers(min_value=0, max_value=2**62),
            st.sampled_from(["BUY", "SELL"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_fill_round_trips_through_the_csv(
    fills: list[tuple[Decimal, Decimal, int, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acct.sqlite"
        with StateStore.open(path) as store:
            for n, (price, qty, ts, side) in enumerate(fills):
                store.add_fill(
                    BTC,
                    str(n),
                    "o",
                    "c",
                    "BUY" if side == "BUY" else "SELL",
                    price,
                    qty,
                    D(0),
                    "USDT",
                    ts,
                )
        out = io.StringIO()
        trades_command(path, None, as_csv=True, out=out)
    rows = csv_rows(out.getvalue())
    assert len(rows) == len(fills)
    for row in rows:
        price, qty, ts, side = fills[int(row["trade_id"])]
        assert D(row["price"]).as_tuple() == price.as_tuple()
        assert D(row["qty"]).as_tuple() == qty.as_tuple()
        assert (row["side"], row["time"]) == (side, iso_time(ts))
    times = [(fills[int(r["trade_id"])][2], int(r["trade_id"])) for r in rows]
    assert times == sorted(times)


# ---------------------------------------------------------------------- orders


def report(status: str, cum: str, oid: str = "", reason: str = "") -> str:
    return json.dumps({"status": status, "cum_qty": cum, "order_id": oid, "reason": reason})


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Six intents, one in each state the journal can put an order in."""
    path = tmp_path / "acct.sqlite"
    intents = {
        "sent": (BTC, "BUY", -2),
        "new": (BTC, "SELL", 1),
        "partial": (BTC, "BUY", -1),
        "filled": (ETH, "BUY", -1),
        "ended": (ETH, "SELL", 3),
        "canceled": (ETH, "SELL", 4),
    }
    ids = {name: cid(symbol, side, level, 9) for name, (symbol, side, level) in intents.items()}
    with StateStore.open(path) as store:
        for n, (name, (symbol, side, level)) in enumerate(intents.items()):
            store.journal_intent(
                ids[name],
                symbol,
                level,
                "BUY" if side == "BUY" else "SELL",
                D("100.10") + n,
                D("0.0100"),
                9,
                T0 + n * MS,
            )
        store.journal_event(ids["new"], "report", report("NEW", "0", "41"), T0 + 10 * MS)
        store.journal_event(ids["new"], "cancel", "{}", T0 + 11 * MS)
        store.journal_event(ids["partial"], "report", report("NEW", "0", "42"), T0 + 12 * MS)
        store.journal_event(
            ids["partial"], "report", report("PARTIALLY_FILLED", "0.0040", "42"), T0 + 13 * MS
        )
        store.journal_event(ids["filled"], "report", report("NEW", "0", "43"), T0 + 14 * MS)
        store.journal_event(ids["filled"], "report", report("FILLED", "0.0100", "43"), T0 + 15 * MS)
        store.journal_event(ids["ended"], "ended", '{"reason": "never reached the venue"}', T0)
        store.journal_event(
            ids["canceled"], "report", report("CANCELED", "0.0000", "45"), T0 + 16 * MS
        )
    return path


def test_orders_csv_is_one_row_per_client_id(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["orders", "--state", str(journal_path), "--csv"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == ",".join(ORDER_COLUMNS)
    rows = csv_rows(out)
    got = [
        (r["symbol"], r["level"], r["side"], r["status"], r["filled"], r["order_id"]) for r in rows
    ]
    assert got == [  # in the order the intents were journalled
        (BTC, "-2", "BUY", "SENT", "", ""),
        (BTC, "1", "SELL", "NEW", "0", "41"),
        (BTC, "-1", "BUY", "PARTIALLY_FILLED", "0.0040", "42"),
        (ETH, "-1", "BUY", "FILLED", "0.0100", "43"),
        (ETH, "3", "SELL", "ENDED", "", ""),
        (ETH, "4", "SELL", "CANCELED", "0.0000", "45"),
    ]
    ended = rows[4]
    assert ended["reason"] == "never reached the venue"
    assert [r["price"] for r in rows] == [str(D("100.10") + n) for n in range(6)]
    assert {(r["qty"], r["generation"]) for r in rows} == {("0.0100", "9")}
    assert [r["created"] for r in rows] == [iso_time(T0 + n * MS) for n in range(6)]
    assert rows[0]["updated"] == rows[0]["created"]  # nothing heard yet
    assert rows[1]["updated"] == iso_time(T0 + 11 * MS)  # the cancel request is the last event


def test_a_late_report_does_not_undo_an_order_s_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reports arrive out of order: a NEW after the CANCELED (seen in the chaos test) leaves
    the order CANCELED, as the venue has it; a later final report is the venue's word."""
    path = tmp_path / "late.sqlite"
    late, landed = cid(BTC, "BUY", -3, 9), cid(BTC, "BUY", -4, 9)
    with StateStore.open(path) as store:
        for n, c in enumerate((late, landed)):
            store.journal_intent(c, BTC, -3 - n, "BUY", D("99"), D("0.0100"), 9, T0 + n)
        store.journal_event(late, "cancel", "{}", T0 + 1 * MS)
        store.journal_event(late, "report", report("NEW", "0", "51"), T0 + 2 * MS)
        store.journal_event(late, "report", report("CANCELED", "0.0040", "51"), T0 + 3 * MS)
        store.journal_event(late, "report", report("NEW", "0", "51"), T0 + 4 * MS)
        # presumed gone by the shell, then the venue's own final word
        store.journal_event(landed, "report", report("REJECTED", "0", "", "gone"), T0 + 5 * MS)
        store.journal_event(landed, "report", report("NEW", "0", "52"), T0 + 6 * MS)
        store.journal_event(landed, "report", report("CANCELED", "0", "52"), T0 + 7 * MS)
    code, out, _ = run_cli(["orders", "--state", str(path), "--csv"], capsys)
    assert code == 0
    got = {r["client_id"]: (r["status"], r["filled"], r["order_id"]) for r in csv_rows(out)}
    assert got == {late: ("CANCELED", "0.0040", "51"), landed: ("CANCELED", "0", "52")}


def test_open_orders_are_those_a_restart_must_resolve(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["orders", "--state", str(journal_path), "--open", "--csv"], capsys)
    assert code == 0
    assert [r["status"] for r in csv_rows(out)] == ["SENT", "NEW", "PARTIALLY_FILLED"]
    with StateStore.open(journal_path) as store:  # the writer's own view agrees
        assert {i.client_id for i in store.open_intents()} == {
            r["client_id"] for r in csv_rows(out)
        }
    code, out, _ = run_cli(
        ["orders", "--state", str(journal_path), "--open", "--symbol", ETH, "--csv"], capsys
    )
    assert (code, csv_rows(out)) == (0, [])


def test_orders_table_and_total(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["orders", "--state", str(journal_path), "--symbol", BTC], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == list(ORDER_COLUMNS)
    assert len(lines) == 1 + 3 + 1
    assert lines[-1] == "total: 3 orders, 3 open; NEW 1, PARTIALLY_FILLED 1, SENT 1"


# ---------------------------------------------------------------------- read-only


def test_reading_leaves_the_file_and_its_directory_untouched(
    store_path: Path, journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (store_path, journal_path):
        before = file_state(path)
        assert not any(name.endswith(("-wal", "-shm")) for name in before[2])
        for args in (["trades"], ["trades", "--csv"], ["orders"], ["orders", "--open"]):
            assert run_cli([*args, "--state", str(path)], capsys)[0] == 0
        assert file_state(path) == before  # no byte, no mtime, no -wal / -shm created


def test_reads_while_a_trader_holds_a_write_transaction(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = StateStore.open(store_path)  # the trader runs: WAL mode, file held open
    writer = sqlite3.connect(store_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a write in progress, not committed
        writer.execute(
            "INSERT INTO fills VALUES ('BTC/USDT', '99', 'o', 'c', 'BUY', '1', '1', '0', 'U', 1)"
        )
        before = store_path.read_bytes(), store_path.stat().st_mtime_ns
        code, out, err = run_cli(["trades", "--state", str(store_path), "--csv"], capsys)
        assert (code, err) == (0, "")
        assert [r["trade_id"] for r in csv_rows(out)] == ["3", "9", "10", "11"]  # committed only
        assert (store_path.read_bytes(), store_path.stat().st_mtime_ns) == before
        other = sqlite3.connect(store_path, timeout=0, isolation_level=None)
        try:  # the writer's lock is intact: the reader never opened the file behind SQLite
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        writer.execute("COMMIT")
        write_fills(trader, [(ETH, "4", "78", "c", "BUY", "3001", "0.5", "0", "USDT", "99")])
        code, out, _ = run_cli(["trades", "--state", str(store_path), "--csv"], capsys)
        assert [r["trade_id"] for r in csv_rows(out)] == ["99", "3", "9", "10", "11", "4"]
    finally:
        writer.close()
        trader.close()


def test_a_checkpoint_during_an_immutable_read_is_read_again(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trader starting, writing and closing (checkpointing into the main file) while the
    reader had the file open without a lock: the read is redone the shared way."""
    reader = StoreReader.open(store_path)
    real = StoreReader._transaction
    calls: list[bool] = []

    def racing(self: StoreReader, queries: object) -> object:
        if not calls:
            with StateStore.open(store_path) as trader:
                write_fills(trader, [(BTC, "12", "9", "c", "BUY", "1.0", "2.0", "0", "U", "20")])
        calls.append(self._immutable)
        return real(self, queries)  # type: ignore[arg-type]

    monkeypatch.setattr(StoreReader, "_transaction", racing)
    with reader:
        fills = reader.fills(BTC)
    assert calls == [True, False]  # read once without a lock, then again through the WAL
    assert [f.trade_id for f in fills] == ["9", "10", "11", "12"]


@pytest.mark.slow
def test_reads_the_file_of_a_trader_process_mid_transaction(tmp_path: Path) -> None:
    """Another process holds the file open and a write transaction in progress; the command
    (a real subprocess) reads the committed ledger and changes nothing."""
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        write_fills(store)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "from mm_trio.store import StateStore\n"
            f"s = StateStore.open({str(path)!r})\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute(\"INSERT INTO latches VALUES ('kill', 'x', 1)\")\n"
            "print('holding', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        before = path.read_bytes(), path.stat().st_mtime_ns
        done = subprocess.run(
            [*mm_trio_cmd(), "trades", "--state", str(path), "--csv"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert [r["trade_id"] for r in csv_rows(done.stdout)] == ["3", "9", "10", "11"]
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------- bad input


def _newer(path: Path) -> None:
    StateStore.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()


def _not_ours(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE prices (symbol TEXT, price TEXT)")
    raw.close()


def _corrupt(path: Path) -> None:
    with StateStore.open(path) as store:
        for n in range(60):
            store.put_symbol(f"S{n}/USDT", "{}", "x" * 500, n)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page : 2 * page] = b"\xa5" * page  # a table page overwritten with garbage
    path.write_bytes(bytes(data))


def _crashed_mid_transaction(path: Path) -> None:
    """A writer in rollback-journal mode (a new store's first migration) killed mid-write."""
    script = (
        "import os, signal, sqlite3\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN')\n"
        "c.execute('CREATE TABLE fills (x)')\n"
        "c.executemany('INSERT INTO fills VALUES (?)', [('x' * 100,)] * 2000)\n"
        "c.execute('COMMIT')\n"
        "c.execute('PRAGMA cache_size = 1')\n"  # spill pages: the file is mid-change
        "c.execute('BEGIN')\n"
        "c.execute(\"UPDATE fills SET x = 'y'\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    assert Path(f"{path}-journal").exists()


BAD_FILES = {
    "missing": (lambda p: None, "does not exist"),
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "not sqlite": (lambda p: p.write_text("symbol,qty\nBTC/USDT,1\n"), "not an SQLite database"),
    "newer": (_newer, "schema version 7, newer than this mm-trio knows"),
    "another database": (_not_ours, "not an mm-trio state store"),
    "corrupt": (_corrupt, "corrupt"),
    "crashed mid-transaction": (_crashed_mid_transaction, "unfinished transaction"),
}


@pytest.mark.parametrize("command", ["trades", "orders"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_state_file_is_one_line_exit_2_and_left_alone(
    tmp_path: Path, case: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "acct.sqlite"
    make, message = BAD_FILES[case]
    make(path)
    before = file_state(path) if path.exists() else None
    code, out, err = run_cli([command, "--state", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("mm-trio: error: state store ")
    assert str(path) in err and message in err, err
    assert "Traceback" not in err
    if before is None:
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created
    else:
        assert file_state(path) == before


@pytest.mark.parametrize("command", ["trades", "orders"])
def test_a_malformed_symbol_is_exit_2(
    store_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli([command, "--state", str(store_path), "--symbol", "BTCUSDT"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "mm-trio: error: --symbol: malformed symbol 'BTCUSDT': expected BASE/QUOTE such as "
        "BTC/USDT\n"
    )


def test_a_directory_is_not_a_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["trades", "--state", str(tmp_path)], capsys)
    assert code == 2 and "is not a file" in err
