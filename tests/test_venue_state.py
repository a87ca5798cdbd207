"""``mm-trio venue --state PATH``: a paper account survives a venue restart (also SIGKILL):
balances, open orders resting again, myTrades, order queries by client id, ids never reused.
Real venue servers on loopback, a real SQLite file, a real subprocess killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import msgspec
import pytest
import trio

from mm_trio.apps.paper import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    AccountConfig,
    PaperServer,
    open_paper_venue,
)
from mm_trio.apps.paper import state as state_module
from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV
from mm_trio.apps.paper.state import (
    SCHEMA_VERSION,
    VenueState,
    VenueStateError,
    VenueStateWriteError,
)
from mm_trio.apps.paper.testing import signed_query
from mm_trio.cli import load_server_config, main
from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import OpenOrder, OrderUpdate, Trade
from mm_trio.exchange.base import UnknownSymbol
from mm_trio.exchange.sim.matching import MatchingEngine
from mm_trio.store import StateStore
from tests.test_cli_e2e import ROOT, mm_trio_cmd
from tests.test_venue_rest import limit_order, signed, venue_config, wait_quotes

D = Decimal
BTC = "BTCUSDT"
TICK = D("0.01")
ADMIN_TOKEN = "test-admin-token-0123456789"


@asynccontextmanager
async def venue(path: Path) -> AsyncIterator[tuple[PaperServer, httpx.AsyncClient]]:
    async with open_paper_venue(venue_config(state=str(path))) as srv:
        await wait_quotes(srv)
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            yield srv, client


async def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


async def place(
    client: httpx.AsyncClient, cid: str, price: Decimal, qty: str = "0.001", side: str = "BUY"
) -> dict[str, Any]:
    params = limit_order(str(price), qty, side, newClientOrderId=cid, newOrderRespType="FULL")
    return await ok(await signed(client, "POST", "/api/v3/order", params))  # type: ignore[no-any-return]


async def trade(
    client: httpx.AsyncClient, headers: dict[str, str], price: Decimal, qty: str
) -> None:
    """A public trade printed at ``price``: it fills our buys above it (trade-through)."""
    body = {"type": "trade", "symbol": BTC, "price": str(price), "qty": qty}
    await ok(await client.post("/_admin/market", json=body, headers=headers))


async def mid(client: httpx.AsyncClient) -> Decimal:
    t = await ok(await client.get("/api/v3/ticker/bookTicker", params={"symbol": BTC}))
    return ((D(t["bidPrice"]) + D(t["askPrice"])) / 2).quantize(TICK)


async def account_view(client: httpx.AsyncClient, cids: list[str]) -> dict[str, Any]:
    """Everything a client can learn about the account over REST."""
    acct = await ok(await signed(client, "GET", "/api/v3/account", []))
    opened = await ok(await signed(client, "GET", "/api/v3/openOrders", [("symbol", BTC)]))
    trades = await ok(await signed(client, "GET", "/api/v3/myTrades", [("symbol", BTC)]))
    orders = {
        cid: await ok(
            await signed(
                client, "GET", "/api/v3/order", [("symbol", BTC), ("origClientOrderId", cid)]
            )
        )
        for cid in cids
    }
    return {
        "balances": {b["asset"]: (b["free"], b["locked"]) for b in acct["balances"]},
        "open": sorted(opened, key=lambda o: o["orderId"]),
        "trades": trades,
        "orders": orders,
    }


async def make_history(client: httpx.AsyncClient, admin: dict[str, str]) -> list[str]:
    """Resting, filled, partly filled, cancelled and MARKET orders, with their trades."""
    m = await mid(client)
    far = (m * D("0.5")).quantize(TICK)
    await place(client, "rest-buy", far)
    await place(client, "rest-sell", (m * D("1.5")).quantize(TICK), side="SELL")
    await place(client, "filled", (m * D("0.8")).quantize(TICK))
    await place(client, "partial", (m * D("0.7")).quantize(TICK), qty="0.002")
    await place(client, "cancelled", (m * D("0.6")).quantize(TICK))
    # the first print fills "filled" (best bid, exactly its size), the second half of "partial"
    await trade(client, admin, (m * D("0.79")).quantize(TICK), "0.001")
    await trade(client, admin, (m * D("0.69")).quantize(TICK), "0.001")
    await ok(
        await signed(
            client, "DELETE", "/api/v3/order", [("symbol", BTC), ("origClientOrderId", "cancelled")]
        )
    )
    market = [
        ("symbol", BTC),
        ("side", "BUY"),
        ("type", "MARKET"),
        ("quantity", "0.001"),
        ("newClientOrderId", "market"),
    ]
    await ok(await signed(client, "POST", "/api/v3/order", market))
    return ["rest-buy", "rest-sell", "filled", "partial", "cancelled", "market"]


def statuses(view: dict[str, Any]) -> dict[str, str]:
    return {cid: o["status"] for cid, o in view["orders"].items()}


async def test_a_restarted_venue_serves_the_same_account(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    async with venue(path) as (srv, client):
        cids = await make_history(client, srv.admin_headers)
        before = await account_view(client, cids)
    assert statuses(before) == {
        "rest-buy": "NEW",
        "rest-sell": "NEW",
        "filled": "FILLED",
        "partial": "PARTIALLY_FILLED",
        "cancelled": "CANCELED",
        "market": before["orders"]["market"]["status"],
    }
    assert before["orders"]["market"]["status"] in ("FILLED", "EXPIRED")
    assert len(before["trades"]) >= 3 and len(before["open"]) == 3
    old_order_ids = {o["orderId"] for o in before["orders"].values()}
    old_trade_ids = {t["id"] for t in before["trades"]}

    async with venue(path) as (srv, client):
        after = await account_view(client, cids)
        assert after == before  # balances, open orders, myTrades, every order by client id
        # the open orders rest in the matching engine again: the rest of "partial" fills
        m = D(before["orders"]["partial"]["price"])
        await trade(client, srv.admin_headers, m - 100 * TICK, "0.001")
        filled = await ok(
            await signed(
                client, "GET", "/api/v3/order", [("symbol", BTC), ("origClientOrderId", "partial")]
            )
        )
        assert (filled["status"], filled["executedQty"]) == ("FILLED", "0.00200000")
        new = await place(client, "after-restart", D(before["orders"]["rest-buy"]["price"]))
        trades = await ok(await signed(client, "GET", "/api/v3/myTrades", [("symbol", BTC)]))
        assert trades[: len(before["trades"])] == before["trades"]
        (fresh,) = trades[len(before["trades"]) :]
        # ids continue above the old ones, never reused
        assert new["orderId"] > max(old_order_ids)
        assert fresh["id"] > max(old_trade_ids) and fresh["orderId"] == filled["orderId"]
        btc = D(after["balances"]["BTC"][0]) + D("0.001")
        later = await account_view(client, [*cids, "after-restart"])
        assert D(later["balances"]["BTC"][0]) == btc

    async with venue(path) as (srv, client):  # and the second run's changes are kept too
        assert await account_view(client, [*cids, "after-restart"]) == later


async def test_without_state_a_restart_starts_afresh() -> None:
    cfg = venue_config()
    async with open_paper_venue(cfg) as srv:
        await wait_quotes(srv)
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            await place(client, "gone", D("10000.00"))
            first = await ok(await signed(client, "GET", "/api/v3/account", []))
        assert srv.venue.state is None
    async with open_paper_venue(cfg) as srv:
        await wait_quotes(srv)
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            again = await ok(await signed(client, "GET", "/api/v3/account", []))
            opened = await ok(await signed(client, "GET", "/api/v3/openOrders", []))
            r = await signed(
                client, "GET", "/api/v3/order", [("symbol", BTC), ("origClientOrderId", "gone")]
            )
    usdt = {b["asset"]: b for b in first["balances"]}["USDT"]
    assert D(usdt["locked"]) == D("10.00000000")
    assert {b["asset"]: b for b in again["balances"]}["USDT"]["locked"] == "0.00000000"
    assert opened == [] and r.status_code == 400 and r.json()["code"] == -2013


SHORT_WAIT_S = 0.1
"""Lock wait of the refused openers (the lock is held for the whole test: any wait fails)."""


async def test_a_second_venue_on_the_same_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "venue.sqlite"
    monkeypatch.setattr(state_module, "LOCK_WAIT_S", SHORT_WAIT_S)
    async with venue(path) as (_srv, client):
        await place(client, "mine", D("10000.00"))
        before = path.read_bytes()
        with pytest.raises(BaseException) as info:
            async with open_paper_venue(venue_config(state=str(path))):
                pass  # pragma: no cover - must not start
        assert isinstance(leaf(info.value), VenueStateError)
        assert "is locked by another process" in str(leaf(info.value))
        assert path.read_bytes() == before
        r = await signed(client, "GET", "/api/v3/openOrders", [("symbol", BTC)])
        assert [o["clientOrderId"] for o in await ok(r)] == ["mine"]  # the first one serves on


def first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def test_accounts_are_kept_apart(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    accounts = (
        AccountConfig(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET),
        AccountConfig(api_key="second", api_secret="s2", balances={"USDT": D("500")}),
    )
    cfg = venue_config(state=str(path), accounts=accounts)

    async def second_open(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        q = signed_query([("symbol", BTC)], "s2")
        r = await client.get(f"/api/v3/openOrders?{q}", headers={"X-MBX-APIKEY": "second"})
        return await ok(r)  # type: ignore[no-any-return]

    async with open_paper_venue(cfg) as srv:
        await wait_quotes(srv)
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            q = signed_query(limit_order("10000.00", newClientOrderId="theirs"), "s2")
            r = await client.post(f"/api/v3/order?{q}", headers={"X-MBX-APIKEY": "second"})
            await ok(r)
            mine = await place(client, "mine", D("10000.00"))
            theirs = await second_open(client)
    async with open_paper_venue(cfg) as srv:
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            assert await second_open(client) == theirs
            mine_now = await ok(await signed(client, "GET", "/api/v3/openOrders", []))
            assert [o["clientOrderId"] for o in mine_now] == ["mine"]
            assert mine_now[0]["orderId"] == mine["orderId"]
            usdt = srv.venue.accounts["second"].engine.balance("USDT")
            assert (usdt.free, usdt.locked) == (D("490"), D("10"))


async def test_an_interrupted_market_order_is_expired_on_restart(tmp_path: Path) -> None:
    """A MARKET / IOC order the venue was killed between placing and expiring (the file
    holds it open) must not rest after the restart: it is expired and its lock released."""
    path = tmp_path / "venue.sqlite"
    async with venue(path) as (_srv, client):
        rec = await place(client, "ioc", D("10000.00"))
        usdt = await ok(await signed(client, "GET", "/api/v3/account", []))
    locked_before = {b["asset"]: b for b in usdt["balances"]}["USDT"]["locked"]
    assert D(locked_before) == D("10")
    raw = sqlite3.connect(path)  # the state the kill left: placed, not yet expired
    with raw:
        raw.execute(
            "UPDATE orders SET record = json_set(record, '$.expire_on_cancel', json('true'), "
            "'$.tif', 'IOC') WHERE order_id = ?",
            (rec["orderId"],),
        )
    raw.close()
    async with venue(path) as (_srv, client):
        opened = await ok(await signed(client, "GET", "/api/v3/openOrders", []))
        q = [("symbol", BTC), ("origClientOrderId", "ioc")]
        order = await ok(await signed(client, "GET", "/api/v3/order", q))
        acct = await ok(await signed(client, "GET", "/api/v3/account", []))
    assert opened == [] and (order["status"], order["timeInForce"]) == ("EXPIRED", "IOC")
    assert {b["asset"]: b for b in acct["balances"]}["USDT"]["locked"] == "0.00000000"
    async with venue(path) as (_srv, client):  # and that outcome was saved
        order = await ok(await signed(client, "GET", "/api/v3/order", q))
        assert order["status"] == "EXPIRED"


async def test_an_open_order_on_a_symbol_no_longer_listed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    listed = venue_config(state=str(path))
    listed = attrs.evolve(
        listed, venue=attrs.evolve(listed.venue, extra_symbols={"FOO/USDT": D("2.5")})
    )
    async with open_paper_venue(listed) as srv:
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as client:
            params = limit_order("2.00", "10", newClientOrderId="foo")
            params[0] = ("symbol", "FOOUSDT")
            await ok(await signed(client, "POST", "/api/v3/order", params))
    before = path.read_bytes()
    with pytest.raises(BaseException) as info:
        async with open_paper_venue(venue_config(state=str(path))):
            pass  # pragma: no cover - must not start
    error = leaf(info.value)
    assert isinstance(error, VenueStateError)
    assert "FOO/USDT" in str(error) and "cannot rest again" in str(error)
    assert path.read_bytes() == before
    async with open_paper_venue(listed) as srv:  # the listing back: the order is there
        assert [o.client_id for o in srv.venue.primary.engine.open_orders()] == ["foo"]


async def test_a_failed_write_stops_the_venue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "venue.sqlite"

    def full_disk(*args: object, **kw: object) -> None:
        raise VenueStateWriteError(f"venue state {path}: write failed: database or disk is full")

    answers: list[int] = []
    with pytest.raises(BaseExceptionGroup) as info:
        async with venue(path) as (_srv, client):
            monkeypatch.setattr(VenueState, "commit", full_disk)
            try:
                r = await signed(client, "POST", "/api/v3/order", limit_order("10000.00"))
                answers.append(r.status_code)
            except httpx.HTTPError:
                pass  # the venue went down before it answered
            await trio.sleep_forever()  # the venue stops by itself
    assert all(code >= 500 for code in answers)  # never a success the venue could not keep
    failures, others = info.value.split(VenueStateWriteError)
    assert failures is not None and others is None, info.value
    assert "disk is full" in str(first_leaf(failures))


def test_the_engine_restores_books_balances_and_counters() -> None:
    engine = MatchingEngine(SimVenueConfig(queue_model="trade_through"))
    usdt, btc = engine.balance("USDT"), engine.balance("BTC")
    saved = [
        OpenOrder(
            symbol="BTC/USDT",
            client_id=f"b{n}",
            order_id=str(40 + n),
            side="BUY",
            price=D("100.00"),
            qty=D("0.010"),
            cum_qty=D("0.004") if n == 0 else D(0),
            status="PARTIALLY_FILLED" if n == 0 else "NEW",
            ts=n,
        )
        for n in range(2)
    ]
    unlisted = msgspec.structs.replace(saved[0], symbol="NOPE/USDT", client_id="x")
    with pytest.raises(UnknownSymbol):
        engine.restore(
            balances={"USDT": (D(1), D(2))}, next_order_id=1, next_trade_id=1, resting=[unlisted]
        )
    assert (engine.balance("USDT"), engine.open_orders()) == (usdt, [])  # nothing changed
    engine.restore(
        balances={"USDT": (D("500.5"), D("1.6")), "BTC": (D("0.3"), D(0))},
        next_order_id=7,  # below an id in use: ids still continue above it
        next_trade_id=900,
        resting=saved,
    )
    assert [o.client_id for o in engine.open_orders()] == ["b0", "b1"]
    assert engine.next_ids() == (42, 900)
    assert (engine.balance("USDT").free, engine.balance("USDT").locked) == (D("500.5"), D("1.6"))
    assert engine.balance("BTC").free == D("0.3") and btc.free != D("0.3")
    # time priority kept: the first restored order fills first, its remaining 0.006 only
    events = engine.on_trade(
        Trade(
            symbol="BTC/USDT", price=D("99.00"), qty=D("0.007"), buyer_maker=True, trade_id=1, ts=9
        )
    )
    filled = [(e.client_id, e.last_qty, e.trade_id) for e in events if isinstance(e, OrderUpdate)]
    assert filled == [("b0", D("0.006"), 900), ("b1", D("0.001"), 901)]
    assert engine.balance("USDT").locked == D("1.6") - D("100.00") * D("0.007")
    with pytest.raises(ValueError, match="resting twice"):
        engine.restore(balances={}, next_order_id=1, next_trade_id=1, resting=[saved[1]])


# ---------------------------------------------------------------------- bad files


def file_state(path: Path) -> tuple[str, int, list[str]]:
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime_ns,
        sorted(p.name for p in path.parent.iterdir()),
    )


def _text(path: Path) -> None:
    path.write_text("not a database\n")


def _trader_store(path: Path) -> None:
    with StateStore.open(path) as store:
        store.set_latch("kill", "x", 1)


def _newer(path: Path) -> None:
    VenueState.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()


def _corrupt(path: Path) -> None:
    with VenueState.open(path) as state:
        balances = {f"A{n}": (D(n), D(0)) for n in range(400)}
        state.create_account("k", next_ids=(1, 1), update_ms=0, balances=balances)
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = b"\xa5" * page
    path.write_bytes(bytes(data))


BAD_FILES = {
    "not sqlite": (_text, "is not an SQLite database"),
    "a trader's state store": (_trader_store, "not a paper venue state"),
    "newer": (_newer, f"schema version {SCHEMA_VERSION + 1}, newer than this mm-trio"),
    "corrupt": (_corrupt, "corrupt"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_state_file_is_refused_and_not_overwritten(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "venue.sqlite"
    make, message = BAD_FILES[case]
    make(path)
    before = file_state(path)
    assert main(["venue", "--port", "0", "--state", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mm-trio: error: venue state ") and err.count("\n") == 1, err
    assert str(path) in err and message in err, err
    assert file_state(path) == before


def test_a_locked_state_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "venue.sqlite"
    monkeypatch.setattr(state_module, "LOCK_WAIT_S", SHORT_WAIT_S)
    with VenueState.open(path) as holder:
        holder.create_account("k", next_ids=(5, 9), update_ms=0, balances={})
        assert main(["venue", "--port", "0", "--state", str(path)]) == 2
        err = capsys.readouterr().err
        assert "is locked by another process" in err and str(path) in err
    with VenueState.open(path) as again:  # untouched by the refused venue
        assert again.load()["k"].next_order_id == 5


def test_a_missing_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "no" / "such" / "venue.sqlite"
    assert main(["venue", "--port", "0", "--state", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"mm-trio: error: venue state {path} cannot be opened: unable to open database file\n"
    )
    assert not path.parent.exists()  # nothing created on the way


def test_the_config_key_and_the_flag(tmp_path: Path) -> None:
    toml = tmp_path / "venue.toml"
    toml.write_text('[server]\nstate = "from-config.sqlite"\n')
    assert load_server_config(toml, None).state == "from-config.sqlite"
    assert load_server_config(None, None).state is None


# ---------------------------------------------------------------------- SIGKILL


def start_venue(path: Path, config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*mm_trio_cmd(), "venue", "--port", "0", "--config", str(config), "--state", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), ADMIN_TOKEN_ENV: ADMIN_TOKEN},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    match = re.match(r"mm-trio venue: Binance spot API on (http://127\.0\.0\.1:\d+) ", banner)
    assert match, banner
    return proc, match.group(1)


async def first_quote(client: httpx.AsyncClient, attempts: int = 200) -> None:
    for _ in range(attempts):
        if await mid(client) > 0:
            return
        await trio.sleep(0.05)
    raise AssertionError("the venue never quoted BTCUSDT")


@pytest.mark.slow
async def test_a_venue_killed_with_sigkill_keeps_every_answered_change(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    config = tmp_path / "venue.toml"
    config.write_text(
        '[venue]\ntick_interval_ms = 20\nlatency_ms = 1\nqueue_model = "trade_through"\n'
        '[server]\nmarket_symbols = ["BTC/USDT"]\n'
    )
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    proc, url = start_venue(path, config)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await first_quote(client)
            cids = await make_history(client, admin)
            m = await mid(client)
            for n in range(20):  # a burst; the kill comes right after the last answer
                await place(client, f"burst-{n}", (m * D("0.4")).quantize(TICK) - n * TICK)
            cids += [f"burst-{n}" for n in range(20)]
            before = await account_view(client, cids)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(before["open"]) == 3 + 20
    proc, url = start_venue(path, config)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            after = await account_view(client, cids)
            assert after == before
            new = await place(client, "after-kill", (m * D("0.3")).quantize(TICK))
            assert new["orderId"] > max(o["orderId"] for o in before["orders"].values())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
