"""The state store (SPEC §9): real SQLite files, round trips, migrations, faults, kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.domain.ids import make_client_id
from mm_trio.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Fill,
    Intent,
    Latch,
    StateStore,
    StoreError,
    StoreVersionError,
    SymbolRecord,
)

ROOT = Path(__file__).resolve().parent.parent
SHORT_WAIT_S = 0.05
"""Busy timeout for the lock tests: the lock is held for the whole test, so any wait fails."""
V2_NOTE = "ALTER TABLE symbols ADD COLUMN note TEXT NOT NULL DEFAULT 'v2'"


def cid(level: int, gen: int, side: str = "BUY", tag: str = "BTCUSDT") -> str:
    return make_client_id("mmt", tag, "BUY" if side == "BUY" else "SELL", level, gen)


def exact(a: Decimal, b: Decimal) -> bool:
    """Same value *and* same digits (``1.50`` is not ``1.5`` here)."""
    return a.as_tuple() == b.as_tuple()


def add(store: StateStore, trade_id: str, client_id: str, side: str, qty: str) -> bool:
    return store.add_fill(
        "BTC/USDT",
        trade_id,
        "o" + trade_id,
        client_id,
        "BUY" if side == "BUY" else "SELL",
        Decimal("100.10"),
        Decimal(qty),
        Decimal("0.0010"),
        "BNB",
        1,
    )


# ---------------------------------------------------------------------- open / reopen


def test_create_sets_schema_wal_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        assert store.version() == SCHEMA_VERSION == len(MIGRATIONS)
        store.put_symbol("BTC/USDT", '{"levels": 5}', "running", 10)
    assert path.is_file()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        raw.close()
    with StateStore.open(path) as again:
        assert again.version() == SCHEMA_VERSION
        assert again.symbols() == [SymbolRecord("BTC/USDT", '{"levels": 5}', "running", 10)]


def test_symbol_registry_upserts_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        store.put_symbol("ETH/USDT", '{"step": "0.0100"}', "running", 1)
        store.put_symbol("BTC/USDT", "{}", "running", 2)
        store.put_symbol("ETH/USDT", '{"step": "0.0200"}', "removed", 3)
        with pytest.raises(ValueError, match="config of SOL/USDT is not valid JSON"):
            store.put_symbol("SOL/USDT", "{not json", "running", 4)
    with StateStore.open(path) as store:
        assert store.symbols() == [
            SymbolRecord("BTC/USDT", "{}", "running", 2),
            SymbolRecord("ETH/USDT", '{"step": "0.0200"}', "removed", 3),
        ]


# ---------------------------------------------------------------------- order journal


def test_intents_round_trip_exactly_with_negative_levels(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    written = [
        Intent(cid(-3, 7), "BTC/USDT", -3, "BUY", Decimal("100.500"), Decimal("0.0100"), 7, 11),
        Intent(cid(2, 8, "SELL"), "BTC/USDT", 2, "SELL", Decimal("1E+3"), Decimal("5"), 8, 12),
        Intent(
            cid(0, 1, tag="ETHUSDT"), "ETH/USDT", 0, "BUY", Decimal("-0.00"), Decimal("1.0"), 1, 13
        ),
    ]
    with StateStore.open(path) as store:
        for i in written:
            store.journal_intent(
                i.client_id, i.symbol, i.level, i.side, i.price, i.qty, i.generation, i.ts_ns
            )
    with StateStore.open(path) as store:
        everything = store.intents()
        btc = store.intents("BTC/USDT")
    assert everything == sorted(written, key=lambda i: (i.symbol, i.generation))
    assert btc == written[:2]
    for got, want in zip(btc, written[:2], strict=True):
        assert exact(got.price, want.price) and exact(got.qty, want.qty)
    assert str(btc[0].price) == "100.500" and str(btc[1].price) == "1E+3"


def test_a_client_id_is_journalled_once(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "acct.sqlite") as store:
        store.journal_intent(cid(1, 5), "BTC/USDT", 1, "BUY", Decimal("1"), Decimal("1"), 5, 1)
        with pytest.raises(StoreError, match="already journalled"):
            store.journal_intent(cid(1, 5), "BTC/USDT", 1, "BUY", Decimal("2"), Decimal("2"), 5, 2)
        (only,) = store.intents()
        assert only.price == Decimal("1") and only.ts_ns == 1


def test_bad_numbers_and_sides_are_refused_before_writing(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "acct.sqlite") as store:
        with pytest.raises(ValueError, match="price must be a finite Decimal"):
            store.journal_intent(cid(1, 5), "BTC/USDT", 1, "BUY", 1.5, Decimal("1"), 5, 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="qty must be a finite Decimal"):
            store.journal_intent(cid(1, 5), "BTC/USDT", 1, "BUY", Decimal(1), Decimal("NaN"), 5, 1)
        with pytest.raises(ValueError, match="side must be BUY or SELL"):
            store.journal_intent(cid(1, 5), "BTC/USDT", 1, "buy", Decimal(1), Decimal(1), 5, 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="payload of ack event is not valid JSON"):
            store.journal_event(cid(1, 5), "ack", "{", 1)
        assert store.intents() == [] and store.events(cid(1, 5)) == []


def test_events_round_trip_in_order(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    c = cid(-1, 9)
    payloads = [("sent", "{}"), ("ack", '{"status": "NEW"}'), ("report", '{"status": "FILLED"}')]
    with StateStore.open(path) as store:
        for ts, (kind, payload) in enumerate(payloads):
            store.journal_event(c, kind, payload, 100 + ts)
        store.journal_event("someone-else", "ack", "[]", 1)
    with StateStore.open(path) as store:
        events = store.events(c)
    assert [(e.kind, e.payload_json, e.ts_ns) for e in events] == [
        (k, p, 100 + i) for i, (k, p) in enumerate(payloads)
    ]
    assert [e.terminal for e in events] == [False, False, True]
    assert events[0].seq < events[1].seq < events[2].seq


def test_open_intents_are_those_with_no_terminal_event(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    ids = {name: cid(level, 10 + level) for level, name in enumerate("abcdefg")}
    with StateStore.open(path) as store:
        for level, c in enumerate(ids.values()):
            store.journal_intent(c, "BTC/USDT", level, "BUY", Decimal(1), Decimal(1), 10 + level, 0)
        store.journal_event(ids["a"], "ack", '{"status": "NEW"}', 1)
        store.journal_event(ids["b"], "report", '{"status": "FILLED"}', 1)
        store.journal_event(ids["c"], "ended", "{}", 1)  # resolved explicitly
        store.journal_event(ids["d"], "report", '{"status": "PARTIALLY_FILLED"}', 1)
        store.journal_event(ids["e"], "report", '{"status": "CANCELED"}', 1)
        store.journal_event(ids["f"], "answer", '{"status": "REJECTED"}', 1)
        store.journal_event(ids["g"], "report", '{"status": "EXPIRED"}', 1)
        store.journal_event(ids["a"], "answer", '["FILLED"]', 2)  # not an object: no status
    with StateStore.open(path) as store:
        assert [i.client_id for i in store.open_intents()] == [ids["a"], ids["d"]]
        store.journal_event(ids["d"], "report", '{"status": "FILLED"}', 3)
        assert [i.client_id for i in store.open_intents()] == [ids["a"]]


def test_last_generation_is_the_max_per_symbol(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        assert store.last_generation("BTC/USDT") == -1
        for gen in (92073600017, 92073600099, 92073600050):
            store.journal_intent(cid(1, gen), "BTC/USDT", 1, "BUY", Decimal(1), Decimal(1), gen, 0)
        store.journal_intent(
            cid(1, 5, tag="ETHUSDT"), "ETH/USDT", 1, "BUY", Decimal(1), Decimal(1), 5, 0
        )
    with StateStore.open(path) as store:
        assert store.last_generation("BTC/USDT") == 92073600099
        assert store.last_generation("ETH/USDT") == 5
        assert store.last_generation("SOL/USDT") == -1


# ---------------------------------------------------------------------- fill ledger


def test_fills_round_trip_exactly_and_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    want = Fill(
        "BTC/USDT", "7001", "o1", cid(-2, 3), "BUY",
        Decimal("100.10"), Decimal("0.500"), Decimal("0.00050"), "BNB", 42,
    )  # fmt: skip
    with StateStore.open(path) as store:
        assert store.add_fill(
            want.symbol, want.trade_id, want.order_id, want.client_id, want.side,
            want.price, want.qty, want.fee, want.fee_asset, want.ts_ns,
        )  # fmt: skip
        # the same trade reported again (e.g. by a REST catch-up) changes nothing
        assert not store.add_fill(
            "BTC/USDT", "7001", "o1", cid(-2, 3), "SELL",
            Decimal("1"), Decimal("9"), Decimal("0"), "", 43,
        )  # fmt: skip
        # trade ids are per symbol: the same number on another symbol is another trade
        assert store.add_fill(
            "ETH/USDT", "7001", "o2", cid(1, 1, "SELL", "ETHUSDT"), "SELL",
            Decimal("3"), Decimal("2"), Decimal("0"), "USDT", 44,
        )  # fmt: skip
    with StateStore.open(path) as store:
        (got,) = store.fills("BTC/USDT")
        assert got == want
        for a, b in ((got.price, want.price), (got.qty, want.qty), (got.fee, want.fee)):
            assert exact(a, b)
        assert [f.symbol for f in store.fills()] == ["BTC/USDT", "ETH/USDT"]
        assert store.position("BTC/USDT") == Decimal("0.500")
        assert store.position("ETH/USDT") == Decimal("-2")
        assert store.position("SOL/USDT") == 0


def test_position_and_level_inventory(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "acct.sqlite") as store:
        add(store, "1", cid(-1, 1), "BUY", "0.10")
        add(store, "2", cid(-2, 2), "BUY", "0.20")
        add(store, "3", cid(-1, 3, "SELL"), "SELL", "0.10")
        add(store, "4", cid(-2, 4, "SELL"), "SELL", "0.05")
        add(store, "5", "not-one-of-ours", "BUY", "1")
        assert store.position("BTC/USDT") == Decimal("1.15")
        inventory = store.level_inventory("BTC/USDT")
        assert inventory == {-1: Decimal("0"), -2: Decimal("0.15")}
        assert str(inventory[-2]) == "0.15"


def test_ledger_sums_never_round(tmp_path: Path) -> None:
    # 41 significant digits: the default 28-digit context would round this sum
    with StateStore.open(tmp_path / "acct.sqlite") as store:
        add(store, "1", cid(1, 1), "BUY", "1E+30")
        add(store, "2", cid(1, 2), "BUY", "0.0000000001")
        want = Decimal("1000000000000000000000000000000.0000000001")
        assert store.position("BTC/USDT") == want
        assert store.level_inventory("BTC/USDT") == {1: want}


# ---------------------------------------------------------------------- latches


def test_latches_survive_reopen_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        store.set_latch("kill_switch", "operator", 5)
        store.set_latch("loss:BTC/USDT", "daily loss 120 > 100", 6)
        store.set_latch("kill_switch", "operator again", 7)
    with StateStore.open(path) as store:
        assert store.latches() == {
            "kill_switch": Latch("operator again", 7),
            "loss:BTC/USDT": Latch("daily loss 120 > 100", 6),
        }
        assert store.clear_latch("kill_switch")
        assert not store.clear_latch("kill_switch")
    with StateStore.open(path) as store:
        assert store.latches() == {"loss:BTC/USDT": Latch("daily loss 120 > 100", 6)}


# ---------------------------------------------------------------------- schema versions


def test_an_older_file_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        store.put_symbol("BTC/USDT", "{}", "running", 1)
    v2 = (*MIGRATIONS, (V2_NOTE, "CREATE TABLE extra (x INTEGER)"))
    with StateStore.open(path, migrations=v2) as store:
        assert store.version() == 2
        assert store.symbols() == [SymbolRecord("BTC/USDT", "{}", "running", 1)]
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT note FROM symbols").fetchall() == [("v2",)]
        assert raw.execute("SELECT count(*) FROM extra").fetchone() == (0,)
    finally:
        raw.close()


def test_an_empty_sqlite_file_is_migrated_from_v0(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    sqlite3.connect(path).close()  # a file with no schema: version 0
    with StateStore.open(path) as store:
        assert store.version() == SCHEMA_VERSION
        store.set_latch("x", "y", 1)
        assert store.latches() == {"x": Latch("y", 1)}


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        store.put_symbol("BTC/USDT", "{}", "running", 1)
    broken = (*MIGRATIONS, (V2_NOTE, "THIS IS NOT SQL"))
    with pytest.raises(StoreError, match=f"{path}: migration to schema version 2 failed"):
        StateStore.open(path, migrations=broken)
    with StateStore.open(path) as store:  # still a usable v1 file, the ALTER rolled back
        assert store.version() == 1
        assert store.symbols() == [SymbolRecord("BTC/USDT", "{}", "running", 1)]
    raw = sqlite3.connect(path)
    try:
        columns = [row[1] for row in raw.execute("PRAGMA table_info(symbols)")]
    finally:
        raw.close()
    assert "note" not in columns


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)}


def test_a_newer_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    v2 = (*MIGRATIONS, (V2_NOTE,))
    with StateStore.open(path, migrations=v2) as store:  # written by a "newer mm-trio"
        store.put_symbol("BTC/USDT", "{}", "running", 1)
    before = snapshot(path)
    with pytest.raises(StoreVersionError) as err:
        StateStore.open(path)
    message = str(err.value)
    assert (
        str(path) in message and "version 2" in message and f"version {SCHEMA_VERSION}" in message
    )
    assert snapshot(path) == before  # not even a WAL or its index was created
    with StateStore.open(path, migrations=v2) as store:  # and the newer one still reads it
        assert store.symbols() == [SymbolRecord("BTC/USDT", "{}", "running", 1)]


def test_a_newer_version_still_in_the_wal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    StateStore.open(path).close()
    newer = sqlite3.connect(path, isolation_level=None)
    try:
        # a newer mm-trio migrated and is still running: the header on disk says v1, the
        # WAL (not checkpointed yet) says v2
        newer.execute("PRAGMA wal_autocheckpoint = 0")
        newer.execute("BEGIN IMMEDIATE")
        newer.execute(V2_NOTE)
        newer.execute("PRAGMA user_version = 2")
        newer.execute("COMMIT")
        main_before = path.read_bytes()
        with pytest.raises(StoreVersionError, match="schema version 2, newer"):
            StateStore.open(path)
        assert path.read_bytes() == main_before
        assert newer.execute("PRAGMA user_version").fetchone() == (2,)
    finally:
        newer.close()


# ---------------------------------------------------------------------- bad files


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    path.write_text("symbol,qty\nBTC/USDT,1\n")
    with pytest.raises(StoreError, match=f"{path}.*not an SQLite database"):
        StateStore.open(path)
    assert path.read_text() == "symbol,qty\nBTC/USDT,1\n"


def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path) as store:
        for i in range(50):
            store.put_symbol(f"S{i}/USDT", "{}", "x" * 500, i)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page : 2 * page] = b"\xa5" * page  # a table page overwritten with garbage
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{path}.*(corrupt|malformed)"):
        StateStore.open(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a file"):
        StateStore.open(tmp_path)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "acct.sqlite"
    with pytest.raises(StoreError, match=f"{path} cannot be opened"):
        StateStore.open(path)


# ---------------------------------------------------------------------- locks


def test_a_file_locked_by_another_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    StateStore.open(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        with pytest.raises(StoreError, match=f"{path} is locked by another writer"):
            StateStore.open(path, busy_timeout_s=SHORT_WAIT_S)
    finally:
        other.close()
    with StateStore.open(path) as store:  # once released it opens
        assert store.version() == SCHEMA_VERSION


def test_a_write_blocked_by_another_writer_fails_clearly_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "acct.sqlite"
    with StateStore.open(path, busy_timeout_s=SHORT_WAIT_S) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked by another writer"):
                store.set_latch("kill_switch", "operator", 1)
        finally:
            other.close()
        assert store.latches() == {}
        store.set_latch("kill_switch", "operator", 2)  # the store is still usable
        assert store.latches() == {"kill_switch": Latch("operator", 2)}


# ---------------------------------------------------------------------- kill -9

KILL_AFTER = 200
"""Committed writes the child reports before it is killed."""
CHILD_CAP = 1_000_000
"""The child stops by itself after this many writes if the kill never comes."""
CHILD = """
import sys
from decimal import Decimal
from mm_trio.domain.ids import make_client_id
from mm_trio.store import StateStore

store = StateStore.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    side = "BUY" if i % 2 else "SELL"
    cid = make_client_id("mmt", "BTCUSDT", side, i % 7 - 3, 1000 + i)
    price, qty = Decimal("100.10"), Decimal("0.010")
    store.journal_intent(cid, "BTC/USDT", i % 7 - 3, side, price, qty, 1000 + i, i)
    store.add_fill("BTC/USDT", str(i), "o", cid, side, price, qty, Decimal("0"), "", i)
    print(cid, flush=True)
"""


@pytest.mark.slow
def test_every_reported_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "acct.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(CHILD_CAP)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    reported: list[str] = []
    try:
        while len(reported) < KILL_AFTER:
            line = child.stdout.readline()
            assert line, f"child ended early with {child.wait()}"
            reported.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    reported += rest.split()
    assert len(reported) < CHILD_CAP  # killed mid-way, not finished
    with StateStore.open(path) as store:
        journalled = {i.client_id for i in store.intents()}
        filled = {f.client_id for f in store.fills()}
    assert set(reported) <= journalled
    assert set(reported) <= filled


# ---------------------------------------------------------------------- property

fill_ops = st.lists(
    st.tuples(
        st.integers(0, 15),  # trade id: small, so repeats are common
        st.sampled_from(["BUY", "SELL"]),
        st.integers(-5, 5),  # level
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100"), places=3),
    ),
    max_size=30,
)


@settings(max_examples=40)
@given(ops=fill_ops)
def test_position_is_the_sum_over_unique_trades(
    ops: list[tuple[int, str, int, Decimal]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "s.sqlite") as store:
        first: dict[int, Decimal] = {}
        by_level: dict[int, Decimal] = {}
        for n, (trade, side, level, qty) in enumerate(ops):
            added = add(store, str(trade), cid(level, n, side), side, str(qty))
            assert added == (trade not in first)
            if added:
                signed = qty if side == "BUY" else -qty
                first[trade] = signed
                by_level[level] = by_level.get(level, Decimal(0)) + signed
        position = store.position("BTC/USDT")
        inventory = store.level_inventory("BTC/USDT")
        assert position == sum(first.values(), Decimal(0))
        assert position == sum(inventory.values(), Decimal(0))
        assert inventory == by_level
        assert len(store.fills()) == len(first)


def test_payloads_are_kept_verbatim(tmp_path: Path) -> None:
    payload = json.dumps({"status": "NEW", "price": "100.10", "note": "ünïcode"}, indent=1)
    with StateStore.open(tmp_path / "acct.sqlite") as store:
        store.journal_event(cid(1, 1), "ack", payload, 1)
        (event,) = store.events(cid(1, 1))
    assert event.payload_json == payload
