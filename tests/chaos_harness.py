"""The chaos run: ``mm-trio run`` against ``mm-trio venue``, killed with SIGKILL at random and
at observed moments, restarted with the same command each time, stopped with SIGINT.

Both are real subprocesses on loopback. The venue outlives every trader process and is the
judge: the harness reads its own records over its REST API (signed ``openOrders``,
``GET /order``, ``myTrades``) and keeps its user-data stream (``userDataStream.subscribe
.signature`` on the WebSocket API) open for the whole run, so it sees every order the venue
accepts (NEW), cancels and fills, as the venue sees them.

**When a process is killed** (:data:`KINDS`), chosen by a seeded ``random.Random`` (the seed
is in every failure message):

* ``timed``: at a random delay from the spawn, 0.2 s (still starting) to a few seconds;
* ``recovering``: right after the trader's k-th REST call logged before its recovery line (its
  stderr at ``--log-level INFO`` has one line per call): inside recovery;
* ``placing/journalled``: right after a new intent appears in the store (journalled, the
  order not yet answered, maybe not yet sent);
* ``placing/venue-ack``: right after the venue reports one of our orders NEW;
* ``cancelling/journalled``: right after a ``cancel`` event appears in the store;
* ``cancelling/venue-ack``: right after the venue reports one of our orders CANCELED;
* ``fill``: right after the venue reports a trade on one of our orders (the trader is then
  writing the fill to the store and placing its take-profit).

A kill is counted under what it really hit: a ``timed`` kill before the process was ready is
``timed/starting``; an observed kind whose event did not come in :data:`OBSERVE_TIMEOUT_S` is
``timed/<kind> not seen``. Without a store (``--state`` unknown to the binary), the journal
kinds fall back to the venue's.

**Between kills** the trader is stopped with SIGSTOP while the harness reads the venue and
then the journal: a consistent cut, with no race between the two reads (see
:func:`tests.chaos_checks.unmanaged`). That happens once a process is ready (its
``mm-trio: trading`` line; continued with SIGCONT after the check), and at the very moment a
ready process is to be killed (stopped instead of killed, checked, then killed): so the
checks see the trader mid-placing, mid-cancel and right after a fill.

**At the end** a last process trades for :data:`FINAL_SETTLE_S`, its take-profit coverage is
read (stopped again, :func:`tests.chaos_checks.coverage`, up to :data:`COVERAGE_ATTEMPTS`
readings), it is stopped with SIGINT, and the venue's records are compared with the ledger.
The seed replays the schedule (kinds, delays, downtimes, the market's path), not the exact
interleaving of two processes' scheduling.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from mm_trio.apps.paper import DEFAULT_API_KEY, DEFAULT_API_SECRET
from mm_trio.domain.model import native_symbol
from mm_trio.exchange.binance.signing import HmacSigner, encode_params, signed_query, ws_payload
from mm_trio.exchange.binance.specs import parse_exchange_info
from tests import chaos_checks as cc
from tests.test_cli_e2e import ROOT, mm_trio_cmd

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
PREFIX = "mmt"

# A market that keeps filling: 0.1 %/sqrt(s) volatility, a quote every 50 ms, fills at the
# touch, against a grid 0.05 % apart: 2-3 fills per second per symbol, ~15 orders per second.
# The rate limits are raised tenfold on both sides (kept out of this test: it is about state,
# not rate limits): every restart starts with an empty limiter while the venue still counts
# the last process's orders (a 429 then pauses all trading for 10 s), and a start with its
# recovery costs ~300 weight, so ~15 restarts a minute use up Binance's 6000 per minute (the
# next start then waits for the window, up to a minute).
VENUE_TOML = """\
[venue]
seed = {seed}
volatility = 0.001
tick_interval_ms = 50
queue_model = "touch"
latency_ms = 1.0

[server.rate_limits]
orders_limit_short = {orders}
weight_limit = {weight}
"""
# breakers that a volatile synthetic market must not trip (they would pause the grid)
TRADER_TOML = """\
[grid]
step = "0.0005"
levels_below = 4
levels_above = 0
order_size = "50"
client_id_prefix = "{prefix}"

[risk]
jump_pct = "0.5"
volume_spike_factor = "100000"
reject_storm_count = 100000
stale_after = 60.0

[limiter]
orders_per_10s = {orders}
weight_per_minute = {weight}

[run]
status_interval = 1.0
shutdown_timeout = 5.0
"""
ORDERS_PER_10S = 1000
WEIGHT_PER_MINUTE = 60_000

KIND_TIMED = "timed"
KIND_RECOVERING = "recovering"
KIND_PLACING_JOURNAL = "placing/journalled"
KIND_PLACING_VENUE = "placing/venue-ack"
KIND_CANCELLING_JOURNAL = "cancelling/journalled"
KIND_CANCELLING_VENUE = "cancelling/venue-ack"
KIND_FILL = "fill"
KINDS = (
    KIND_TIMED,
    KIND_RECOVERING,
    KIND_PLACING_JOURNAL,
    KIND_PLACING_VENUE,
    KIND_CANCELLING_JOURNAL,
    KIND_CANCELLING_VENUE,
    KIND_FILL,
)

MIN_KILL_DELAY_S = 0.2
MAX_KILL_DELAY_S = 4.0
MAX_ARM_DELAY_S = 1.5
"""An observed kill waits up to this long after the check before it watches (so it is not
always the first order after a restart)."""
OBSERVE_TIMEOUT_S = 5.0
MAX_DOWNTIME_S = 1.0
"""A killed trader stays down up to this long (the market fills its orders meanwhile)."""
READY_TIMEOUT_S = 30.0
FINAL_SETTLE_S = 3.0
COVERAGE_ATTEMPTS = 4
COVERAGE_RETRY_S = 1.0
STOP_TIMEOUT_S = 40.0
STORE_POLL_S = 0.002
CHECK_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 60.0
DEFAULT_START_CALLS = 3
"""REST calls before ready assumed for a recovery kill before any start was seen."""
MAX_SELF_EXITS = 3
"""Consecutive processes exiting on their own before the harness stops restarting."""
RECV_WINDOW_MS = 10_000
REST_RETRIES = 5
TAIL_LINES = 15
GAP_PROBES = 5
"""Order ids probed beyond the highest seen (an order the stream might have missed)."""

READY_LINE = "mm-trio: trading"
RECOVERY_LINE = "mm-trio: recovery:"
_REST_LOG = re.compile(r"HTTP Request: (GET|POST|DELETE|PUT) \S*(/api/v3/\S+)")
_BANNER = re.compile(r"Binance spot API on (http://127\.0\.0\.1:\d+) ")
_NATIVE = {native_symbol(s): s for s in SYMBOLS}


def _dec(text: Any) -> Decimal:
    return Decimal(str(text))


# --------------------------------------------------------------------------- venue access


class VenueApi:
    """Signed REST calls to the paper venue (the harness's own view of its records)."""

    def __init__(self, base_url: str, api_key: str, api_secret: str) -> None:
        self.base_url = base_url
        self._key = api_key
        self._signer = HmacSigner(api_secret)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10.0)
        self._offset_ms = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def sync_clock(self) -> None:
        _, body = await self.call("GET", "/api/v3/time", {}, signed=False)
        self._offset_ms = int(body["serverTime"]) - int(time.time() * 1000)

    def venue_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    async def call(
        self, method: str, path: str, params: dict[str, Any], *, signed: bool = True
    ) -> Any:
        for _ in range(REST_RETRIES):
            query = encode_params(params)
            headers = {}
            if signed:
                query = encode_params(
                    {**params, "recvWindow": RECV_WINDOW_MS, "timestamp": self.venue_ms()}
                )
                query = signed_query(query, self._signer)
                headers["X-MBX-APIKEY"] = self._key
            r = await self._http.request(method, f"{path}?{query}", headers=headers)
            if r.status_code == 429:  # shares the IP's weight with the trader: wait
                await trio.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            return r.status_code, r.json()
        raise RuntimeError(f"{method} {path}: still 429 after {REST_RETRIES} tries")

    async def ok(self, method: str, path: str, params: dict[str, Any]) -> Any:
        status, body = await self.call(method, path, params)
        if status != 200:
            raise RuntimeError(f"{method} {path} {params}: HTTP {status} {body}")
        return body

    async def rules(self) -> dict[str, cc.SymbolRules]:
        _, body = await self.call("GET", "/api/v3/exchangeInfo", {}, signed=False)
        specs, _names = parse_exchange_info(body)
        return {
            s: cc.SymbolRules(
                specs[s].base, specs[s].step_size, specs[s].min_qty, specs[s].min_notional
            )
            for s in SYMBOLS
        }

    async def mids(self) -> dict[str, Decimal]:
        out = {}
        for s in SYMBOLS:
            _, b = await self.call(
                "GET", "/api/v3/ticker/bookTicker", {"symbol": native_symbol(s)}, signed=False
            )
            out[s] = (_dec(b["bidPrice"]) + _dec(b["askPrice"])) / 2
        return out

    async def open_orders(self) -> list[cc.VenueOrder]:
        out: list[cc.VenueOrder] = []
        for s in SYMBOLS:  # per symbol: weight 6 each rather than 80 for all at once
            body = await self.ok("GET", "/api/v3/openOrders", {"symbol": native_symbol(s)})
            out.extend(_order(item) for item in body)
        return out

    async def order(self, symbol: str, order_id: int) -> cc.VenueOrder | None:
        status, body = await self.call(
            "GET", "/api/v3/order", {"symbol": native_symbol(symbol), "orderId": order_id}
        )
        return _order(body) if status == 200 else None

    async def trades(self, symbol: str) -> list[cc.Trade]:
        out: list[cc.Trade] = []
        from_id = 0
        while True:
            body = await self.ok(
                "GET",
                "/api/v3/myTrades",
                {"symbol": native_symbol(symbol), "fromId": from_id, "limit": 1000},
            )
            for t in body:
                out.append(
                    cc.Trade(
                        symbol=symbol,
                        trade_id=str(t["id"]),
                        order_id=str(t["orderId"]),
                        client_id="",
                        side="BUY" if t["isBuyer"] else "SELL",
                        price=_dec(t["price"]),
                        qty=_dec(t["qty"]),
                        fee=_dec(t["commission"]),
                        fee_asset=t["commissionAsset"],
                        time_ms=int(t["time"]),
                    )
                )
            if len(body) < 1000:
                return out
            from_id = int(body[-1]["id"]) + 1


def _order(item: dict[str, Any]) -> cc.VenueOrder:
    return cc.VenueOrder(
        symbol=_NATIVE.get(item["symbol"], item["symbol"]),
        order_id=int(item["orderId"]),
        client_id=item["clientOrderId"],
        side=item["side"],
        price=_dec(item["price"]),
        qty=_dec(item["origQty"]),
        executed=_dec(item["executedQty"]),
        status=item["status"],
    )


class UserStream:
    """The account's user-data stream: every order the venue accepts, cancels and fills.

    ``wait(kind)`` returns at the next such event of one of our orders (``"new"``,
    ``"canceled"``, ``"trade"``), which is how the harness kills "right after the venue saw
    it".
    """

    def __init__(self, ws_api_url: str, api_key: str, api_secret: str, prefix: str) -> None:
        self.url = ws_api_url
        self._key = api_key
        self._signer = HmacSigner(api_secret)
        self._prefix = prefix
        self.orders: dict[int, cc.VenueOrder] = {}
        self.trades: dict[tuple[str, str], cc.Trade] = {}
        self.counts: Counter[str] = Counter()
        self._waiters: dict[str, list[trio.Event]] = {}
        self.closed: str | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(self.url, max_message_size=16 * 1024 * 1024) as ws:
            params: dict[str, Any] = {"apiKey": self._key, "timestamp": int(time.time() * 1000)}
            params["signature"] = self._signer.sign(ws_payload(params))
            await ws.send_message(
                json.dumps(
                    {
                        "id": "chaos",
                        "method": "userDataStream.subscribe.signature",
                        "params": params,
                    }
                )
            )
            reply = json.loads(await ws.get_message())
            if reply.get("status") != 200:
                raise RuntimeError(f"user-data subscription refused: {reply}")
            task_status.started()
            try:
                while True:
                    msg = json.loads(await ws.get_message())
                    event = msg.get("event")
                    if isinstance(event, dict) and event.get("e") == "executionReport":
                        self._on_report(event)
            except Exception as exc:  # the venue went away: the run reports it
                self.closed = f"{type(exc).__name__}: {exc}"

    def _on_report(self, e: dict[str, Any]) -> None:
        status = e["X"]
        cid = e["C"] if status == "CANCELED" and e.get("C") else e["c"]
        if not cc.is_ours(cid, self._prefix):
            return
        symbol = _NATIVE.get(e["s"], e["s"])
        oid = int(e["i"])
        # every report carries the order's state: the last one is its final state
        self.orders[oid] = cc.VenueOrder(
            symbol, oid, cid, e["S"], _dec(e["p"]), _dec(e["q"]), _dec(e["z"]), status
        )
        if e["x"] == "NEW":
            self._notify("new")
        elif e["x"] == "TRADE":
            key = (symbol, str(e["t"]))
            self.trades[key] = cc.Trade(
                symbol,
                str(e["t"]),
                str(oid),
                cid,
                e["S"],
                _dec(e["L"]),
                _dec(e["l"]),
                _dec(e["n"]),
                e.get("N") or "",
                int(e["T"]),
            )
            self._notify("trade")
        elif status == "CANCELED":
            self._notify("canceled")

    def _notify(self, kind: str) -> None:
        self.counts[kind] += 1
        for ev in self._waiters.pop(kind, []):
            ev.set()

    async def wait(self, kind: str) -> None:
        """Until the next ``kind`` event of one of our orders."""
        ev = trio.Event()
        self._waiters.setdefault(kind, []).append(ev)
        await ev.wait()


# --------------------------------------------------------------------------- the store


class StoreView:
    """Read-only SQL on the trader's state store, safe while the trader writes it (WAL).

    Never :meth:`mm_trio.store.StateStore.open` during the run: it takes the write lock to
    check its migrations, which would make the trader wait.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.path.exists():
                return None
            try:
                self._conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=5.0,
                    isolation_level=None,
                )
            except sqlite3.Error:
                return None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def scalar(self, sql: str) -> int | None:
        """The value of ``sql`` (0 for SQL NULL); None if it cannot be read right now."""
        db = self._db()
        if db is None:
            return None
        try:
            (value,) = db.execute(sql).fetchone()
        except sqlite3.Error:  # no such table yet (the trader is creating the file), busy
            return None
        return int(value or 0)

    def last_intent(self) -> int | None:
        return self.scalar("SELECT MAX(rowid) FROM intents")

    def last_cancel(self) -> int | None:
        return self.scalar("SELECT MAX(seq) FROM events WHERE kind = 'cancel'")

    def intents(self) -> dict[str, cc.JournalIntent]:
        db = self._db()
        if db is None:
            return {}
        rows = db.execute(
            "SELECT rowid, client_id, symbol, level, side, price, qty, generation FROM intents"
        ).fetchall()
        return {
            r[1]: cc.JournalIntent(
                r[0], r[1], r[2], int(r[3]), r[4], _dec(r[5]), _dec(r[6]), int(r[7])
            )
            for r in rows
        }

    def ended(self) -> set[str]:
        db = self._db()
        if db is None:
            return set()
        return {r[0] for r in db.execute("SELECT DISTINCT client_id FROM events WHERE terminal")}

    def fill_keys(self) -> set[tuple[str, str]]:
        db = self._db()
        if db is None:
            return set()
        try:
            return {(r[0], r[1]) for r in db.execute("SELECT symbol, trade_id FROM fills")}
        except sqlite3.Error:
            return set()

    def level_inventory(self) -> dict[str, dict[int, Decimal]]:
        """Per symbol, per level: Σ bought − Σ sold of the ledger's fills (as
        ``StateStore.level_inventory``, without taking its write lock)."""
        db = self._db()
        out: dict[str, dict[int, Decimal]] = {}
        if db is None:
            return out
        try:
            rows = db.execute("SELECT symbol, client_id, side, qty FROM fills").fetchall()
        except sqlite3.Error:
            return out
        for symbol, cid, side, qty in rows:
            parsed = cc.parse_client_id(cid)
            if parsed is not None:
                levels = out.setdefault(symbol, {})
                signed_qty = _dec(qty) if side == "BUY" else -_dec(qty)
                levels[parsed.level] = levels.get(parsed.level, cc.ZERO) + signed_qty
        return out


# --------------------------------------------------------------------------- processes


async def _pump(stream: trio.abc.ReceiveStream, on_line: Callable[[str], None]) -> None:
    buf = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            on_line(line.decode(errors="replace"))
    if buf:
        on_line(buf.decode(errors="replace"))


@dataclass(frozen=True)
class Output:
    returncode: int
    stdout: str
    stderr: str


async def mm_trio(args: Sequence[str], env: dict[str, str]) -> Output:
    """Run a short ``mm-trio`` command (bounded) and take its output."""
    with trio.fail_after(COMMAND_TIMEOUT_S):
        r = await trio.run_process(
            [*mm_trio_cmd(), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=env,
        )
    return Output(r.returncode, r.stdout.decode(), r.stderr.decode())


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a subprocess: ours without any MM_TRIO_* / BINANCE_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MM_TRIO_", "BINANCE_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@dataclass
class Life:
    """One trader process, from spawn to its end."""

    index: int
    proc: trio.Process
    spawned: float  # trio time
    spawned_ms: int  # venue time
    intents_before: int  # the journal's last intent rowid when this process started
    stderr_path: Path
    ready: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    rest_call: trio.Event = field(default_factory=trio.Event)
    rest_calls_before_ready: int = 0
    ready_after_s: float | None = None
    recovery_lines: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    errors: int = 0
    rc: int | None = None
    ended_ms: int | None = None  # venue time
    killed: bool = False
    killed_after_s: float | None = None
    stopped: bool = False
    kind: str | None = None

    def on_stdout(self, line: str) -> None:
        self.stdout.append(line)
        if line.startswith(RECOVERY_LINE):
            self.recovery_lines.append(line[len(RECOVERY_LINE) :].strip())
        if line.startswith(READY_LINE) and not self.ready.is_set():
            self.ready_after_s = trio.current_time() - self.spawned
            self.ready.set()
            self.rest_call.set()  # wakes a recovery kill waiting for a call that won't come

    def on_stderr(self, line: str) -> None:
        self.stderr_tail = (self.stderr_tail + [line])[-TAIL_LINES:]
        if " ERROR " in line or line.startswith("Traceback"):
            self.errors += 1
        if _REST_LOG.search(line) and not self.ready.is_set():
            self.rest_calls_before_ready += 1
            self.rest_call.set()
            self.rest_call = trio.Event()

    def timeline(self) -> str:
        ready = "never" if self.ready_after_s is None else f"{self.ready_after_s:.2f} s"
        end = (
            f"killed ({self.kind}) after {self.killed_after_s:.2f} s"
            if self.killed_after_s is not None
            else f"exited {self.rc}"
        )
        return (
            f"process {self.index}: ready after {ready} ({self.rest_calls_before_ready} REST "
            f"calls before), {end}; recovery: {' | '.join(self.recovery_lines) or '-'}"
        )

    def describe(self) -> str:
        tail = "\n      ".join(self.stderr_tail[-TAIL_LINES:])
        return f"process {self.index} (rc {self.rc}); stderr tail:\n      {tail}"


class Trader:
    """Starts ``mm-trio run`` with the same command every time."""

    def __init__(
        self,
        workdir: Path,
        base_url: str,
        store: StoreView,
        clock: Callable[[], int],
        *,
        has_store: bool,
    ) -> None:
        self.workdir = workdir
        self.store = store
        self.clock = clock
        self.state = workdir / "s.db"
        self.has_store = has_store
        config = workdir / "grid.toml"
        config.write_text(
            TRADER_TOML.format(prefix=PREFIX, orders=ORDERS_PER_10S, weight=WEIGHT_PER_MINUTE)
        )
        self.command = [
            *mm_trio_cmd(),
            "--log-level",
            "INFO",
            "run",
            "--venue",
            "binance",
            "--base-url",
            base_url,
            "--symbols",
            ",".join(SYMBOLS),
            "--config",
            str(config),
        ]
        if self.has_store:
            self.command += ["--state", str(self.state)]
        self.env = clean_env(
            {
                "MM_TRIO_API_KEY": DEFAULT_API_KEY,
                "MM_TRIO_API_SECRET": DEFAULT_API_SECRET,
                "XDG_DATA_HOME": str(workdir),
            }
        )
        self.lives: list[Life] = []

    @classmethod
    async def create(
        cls, workdir: Path, base_url: str, store: StoreView, clock: Callable[[], int]
    ) -> Trader:
        """A trader for this mm-trio: with ``--state`` if it knows the option."""
        r = await mm_trio(["run", "--help"], clean_env({}))
        return cls(workdir, base_url, store, clock, has_store="--state" in r.stdout)

    async def spawn(self, nursery: trio.Nursery) -> Life:
        index = len(self.lives)
        summary = self.workdir / f"summary-{index}.json"
        stderr_path = self.workdir / f"trader-{index}.stderr"
        proc = await trio.lowlevel.open_process(
            [*self.command, "--summary-json", str(summary)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=self.env,
        )
        life = Life(
            index,
            proc,
            trio.current_time(),
            self.clock(),
            self.store.last_intent() or 0,
            stderr_path,
        )
        self.lives.append(life)
        nursery.start_soon(self._watch, life)
        return life

    async def _watch(self, life: Life) -> None:
        assert life.proc.stdout is not None and life.proc.stderr is not None
        with life.stderr_path.open("w") as err:

            def on_stderr(line: str) -> None:
                err.write(line + "\n")
                life.on_stderr(line)

            async with trio.open_nursery() as n:
                n.start_soon(_pump, life.proc.stdout, life.on_stdout)
                n.start_soon(_pump, life.proc.stderr, on_stderr)
                life.rc = await life.proc.wait()
        life.ended_ms = self.clock()
        life.exited.set()

    async def kill(self, life: Life) -> None:
        if life.proc.returncode is None:
            life.killed = True
            life.killed_after_s = trio.current_time() - life.spawned
            life.proc.kill()  # SIGKILL
        await life.exited.wait()

    async def stop(self, life: Life) -> bool:
        """SIGINT, then wait for the exit; ``False`` if it had to be killed."""
        life.stopped = True
        if life.proc.returncode is None:
            life.proc.send_signal(signal.SIGINT)
        with trio.move_on_after(STOP_TIMEOUT_S):
            await life.exited.wait()
            return True
        life.proc.kill()
        await life.exited.wait()
        return False

    def summary(self, life: Life) -> dict[str, Any] | None:
        path = self.workdir / f"summary-{life.index}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data


@dataclass
class Venue:
    proc: trio.Process
    base_url: str
    ws_api_url: str


async def start_venue(nursery: trio.Nursery, workdir: Path, seed: int) -> Venue:
    config = workdir / "venue.toml"
    config.write_text(VENUE_TOML.format(seed=seed, orders=ORDERS_PER_10S, weight=WEIGHT_PER_MINUTE))
    log = (workdir / "venue.stderr").open("w")
    proc = await trio.lowlevel.open_process(
        [*mm_trio_cmd(), "venue", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        env=clean_env({"MM_TRIO_VENUE_ADMIN_TOKEN": "chaos-admin-token-" + "x" * 16}),
    )
    assert proc.stdout is not None
    banner: list[str] = []
    got = trio.Event()

    def on_line(line: str) -> None:
        banner.append(line)
        got.set()

    nursery.start_soon(_pump, proc.stdout, on_line)  # drained until the venue exits
    with trio.fail_after(READY_TIMEOUT_S):
        await got.wait()
    match = _BANNER.search(banner[0])
    if match is None:
        raise RuntimeError(f"the venue did not start: {banner[0]!r}")
    base = match.group(1)
    return Venue(proc, base, base.replace("http://", "ws://") + "/ws-api/v3")


# --------------------------------------------------------------------------- the run


@dataclass
class ChaosRun:
    """One chaos run; :meth:`run` returns its :class:`~tests.chaos_checks.ChaosCounts`."""

    workdir: Path
    kills: int
    seed: int
    counts: cc.ChaosCounts = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.counts = cc.ChaosCounts(seed=self.seed)
        self.seen_orders: dict[int, cc.VenueOrder] = {}
        self._all_orders: list[cc.VenueOrder] = []
        self.sigint_ms: int | None = None
        self.rules: dict[str, cc.SymbolRules] = {}
        self._at_checks: dict[tuple[str, str], list[str]] = {}
        self._trader: Trader | None = None
        self.phase = "starting the venue"
        """What the run is doing (named in a failure that interrupts it)."""

    def violate(self, invariant: str, detail: str) -> None:
        self.counts.violations.append(cc.Violation(invariant, detail))

    async def run(self) -> cc.ChaosCounts:
        async with trio.open_nursery() as nursery:
            venue = await start_venue(nursery, self.workdir, self.seed)
            api = VenueApi(venue.base_url, DEFAULT_API_KEY, DEFAULT_API_SECRET)
            stream = UserStream(venue.ws_api_url, DEFAULT_API_KEY, DEFAULT_API_SECRET, PREFIX)
            store = StoreView(self.workdir / "s.db")
            try:
                await api.sync_clock()
                await nursery.start(stream.run)
                self.rules = await api.rules()
                trader = await Trader.create(self.workdir, venue.base_url, store, api.venue_ms)
                self._trader = trader
                if not trader.has_store:
                    self.counts.notes.append(
                        "this mm-trio has no --state: no journal, no ledger; the journal kinds "
                        "fall back to the venue's"
                    )
                await self._kill_loop(nursery, trader, api, stream)
                await self._finish(nursery, trader, api, stream, store)
            finally:
                where = self.phase
                for life in self._trader.lives if self._trader is not None else []:
                    if life.proc.returncode is None:  # the run was cancelled mid-way
                        life.proc.kill()
                store.close()
                await api.aclose()
                if venue.proc.returncode is None:
                    venue.proc.send_signal(signal.SIGINT)
                with trio.move_on_after(STOP_TIMEOUT_S):
                    await venue.proc.wait()
                if venue.proc.returncode is None:
                    venue.proc.kill()
                nursery.cancel_scope.cancel()
                self.phase = where
        return self.counts

    # ------------------------------------------------------------------ kills

    def _plan(self) -> list[str]:
        """Every kind at least once (given enough kills), in a seeded random order."""
        plan = [KINDS[i % len(KINDS)] for i in range(self.kills)]
        self.rng.shuffle(plan)
        return plan

    async def _kill_loop(
        self, nursery: trio.Nursery, trader: Trader, api: VenueApi, stream: UserStream
    ) -> None:
        self_exits = 0
        for kind in self._plan():
            self.phase = f"running process {len(trader.lives)} (to kill: {kind})"
            life = await trader.spawn(nursery)
            hit = await self._one_life(life, kind, trader, api, stream)
            if hit is None:  # exited on its own
                self_exits += 1
                self.violate(
                    cc.PROCESS, f"exited on its own before its kill ({kind}): " + life.describe()
                )
                if self_exits >= MAX_SELF_EXITS:
                    self.violate(
                        cc.PROCESS,
                        f"{self_exits} processes in a row exited on their own: stopped restarting",
                    )
                    return
            else:
                self_exits = 0
                life.kind = hit
                self.counts.kills[hit] += 1
            self.phase = f"down after process {life.index}"
            await trio.sleep(self.rng.uniform(0, MAX_DOWNTIME_S))

    async def _one_life(
        self, life: Life, kind: str, trader: Trader, api: VenueApi, stream: UserStream
    ) -> str | None:
        """Run ``life`` until its kill; the kind of moment it was killed at (None: it
        exited on its own first)."""
        hit = f"{kind}/never ready"
        async with trio.open_nursery() as n:

            async def exited() -> None:
                await life.exited.wait()
                n.cancel_scope.cancel()

            n.start_soon(exited)
            try:
                hit = await self._until_kill(life, kind, trader, api, stream)
            except trio.TooSlowError:
                self.violate(
                    cc.PROCESS,
                    f"process {life.index} was not ready within {READY_TIMEOUT_S:g} s: "
                    + life.describe(),
                )
            self.phase = f"killing process {life.index}"
            await trader.kill(life)
            n.cancel_scope.cancel()
        return hit if life.killed else None

    async def _until_kill(
        self, life: Life, kind: str, trader: Trader, api: VenueApi, stream: UserStream
    ) -> str:
        """Wait for the moment to kill ``life`` at (it is then stopped, or exited); what kind
        of moment it was."""
        self.phase = f"process {life.index}: waiting to be ready (to kill: {kind})"
        if kind == KIND_TIMED:
            deadline = life.spawned + self.rng.uniform(MIN_KILL_DELAY_S, MAX_KILL_DELAY_S)
            with trio.move_on_at(deadline):
                await life.ready.wait()
                await self._check(life, trader, api, moment="when ready")
            await trio.sleep_until(deadline)
            if not life.ready.is_set():
                return "timed/starting"
            await self._check(life, trader, api, moment="at its kill (timed)", then_kill=True)
            return "timed/trading"
        if kind == KIND_RECOVERING:
            return await self._kill_in_recovery(life, trader)
        with trio.fail_after(READY_TIMEOUT_S):
            await life.ready.wait()
        await self._check(life, trader, api, moment="when ready")
        self.phase = f"process {life.index}: waiting for a {kind} moment"
        await trio.sleep(self.rng.uniform(0, MAX_ARM_DELAY_S))
        seen = await self._observe(kind, trader, stream)
        hit = seen or f"timed/{kind} not seen"
        await self._check(life, trader, api, moment=f"at its kill ({hit})", then_kill=True)
        return hit

    async def _kill_in_recovery(self, life: Life, trader: Trader) -> str:
        # the k-th of the REST calls a start typically makes before it is ready
        earlier = [lf.rest_calls_before_ready for lf in trader.lives[:-1] if lf.ready.is_set()]
        typical = statistics.median_low(earlier) if earlier else DEFAULT_START_CALLS
        k = self.rng.randint(1, max(1, typical))
        with trio.fail_after(READY_TIMEOUT_S):
            while life.rest_calls_before_ready < k and not life.ready.is_set():
                await life.rest_call.wait()
        if life.ready.is_set():
            return "recovering/after-ready"
        return "recovering/after-summary" if life.recovery_lines else KIND_RECOVERING

    async def _observe(self, kind: str, trader: Trader, stream: UserStream) -> str | None:
        """Wait for the next ``kind`` moment; the kind really watched for (without a store the
        journal kinds fall back to the venue's), or None if it did not come in time."""
        if not trader.has_store:
            kind = {
                KIND_PLACING_JOURNAL: KIND_PLACING_VENUE,
                KIND_CANCELLING_JOURNAL: KIND_CANCELLING_VENUE,
            }.get(kind, kind)
        venue_kinds = {
            KIND_PLACING_VENUE: "new",
            KIND_CANCELLING_VENUE: "canceled",
            KIND_FILL: "trade",
        }
        with trio.move_on_after(OBSERVE_TIMEOUT_S):
            if kind in venue_kinds:
                await stream.wait(venue_kinds[kind])
                return kind
            probe = (
                trader.store.last_intent
                if kind == KIND_PLACING_JOURNAL
                else trader.store.last_cancel
            )
            base = probe()
            while base is None:  # not readable yet: the first value read is the baseline
                await trio.sleep(STORE_POLL_S)
                base = probe()
            while True:
                now = probe()
                if now is not None and now != base:
                    return kind
                await trio.sleep(STORE_POLL_S)
        return None

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _freeze(life: Life) -> bool:
        if life.proc.returncode is not None:
            return False
        life.proc.send_signal(signal.SIGSTOP)
        return True

    @staticmethod
    def _thaw(life: Life) -> None:
        if life.proc.returncode is None:
            life.proc.send_signal(signal.SIGCONT)

    async def _check(
        self, life: Life, trader: Trader, api: VenueApi, *, moment: str, then_kill: bool = False
    ) -> None:
        """With the trader stopped: none of ours open that the journal does not explain, and
        never two on one (symbol, level, side). ``then_kill``: it stays stopped for its kill
        (stopped at the very moment it was to be killed, so the check sees that moment)."""
        if not self._freeze(life):
            return
        self.phase = f"checking process {life.index} {moment}"
        try:
            # shielded: a cancellation must never leave the trader stopped
            with trio.CancelScope(shield=True), trio.fail_after(CHECK_TIMEOUT_S):
                open_orders = await api.open_orders()  # the venue first, then the journal
                intents = trader.store.intents()
                ended = trader.store.ended()
        finally:
            if not then_kill:
                self._thaw(life)
        self.counts.checks += 1
        for o in open_orders:
            self.seen_orders.setdefault(o.order_id, o)
        if trader.has_store:
            found = cc.unmanaged(open_orders, intents, ended, PREFIX)
        else:
            found = self._unmanaged_without_store(open_orders, life, trader)
        found += cc.duplicate_open(open_orders, PREFIX)
        for v in found:
            # one finding per order (or slot) however many checks see it
            self._at_checks.setdefault((v.invariant, v.detail), []).append(
                f"process {life.index} {moment}"
            )

    def _check_findings(self) -> None:
        for (invariant, detail), moments in self._at_checks.items():
            self.violate(invariant, f"{detail} (seen at: {', '.join(moments)})")
        self._at_checks.clear()

    def _unmanaged_without_store(
        self, open_orders: Sequence[cc.VenueOrder], life: Life, trader: Trader
    ) -> list[cc.Violation]:
        """No journal: an order placed before this process started can only be one it does
        not manage (nothing told it about it)."""
        mine = set(self._placed_by(life, trader))
        return [
            cc.Violation(
                cc.UNMANAGED,
                f"{o.symbol} {o.client_id} (order {o.order_id}) was placed by an "
                "earlier process and is still open (no store: nothing can adopt it)",
            )
            for o in open_orders
            if cc.is_ours(o.client_id, PREFIX) and o.client_id not in mine
        ]

    def _placed_by(self, life: Life, trader: Trader) -> list[str]:
        # without a journal: an id's generation is the venue clock (ms since 2024) when its
        # symbol started, counting up per order; this process started after every earlier one
        # had been killed
        start_gen = self._spawn_generation(life)
        out = []
        for o in self.seen_orders.values():
            parsed = cc.parse_client_id(o.client_id)
            if parsed is not None and parsed.generation >= start_gen:
                out.append(o.client_id)
        return out

    def _spawn_generation(self, life: Life) -> int:
        from mm_trio.domain.ids import GENERATION_EPOCH_NS

        wall_ns = time.time_ns() - int((trio.current_time() - life.spawned) * 1e9)
        return (wall_ns - GENERATION_EPOCH_NS) // 1_000_000

    async def _coverage(
        self, life: Life, trader: Trader, api: VenueApi, stream: UserStream
    ) -> list[cc.Coverage]:
        """One frozen reading of :func:`tests.chaos_checks.coverage` per symbol."""
        if not self._freeze(life):
            return []
        try:
            with trio.CancelScope(shield=True), trio.fail_after(CHECK_TIMEOUT_S):
                open_orders = await api.open_orders()
                trades = {s: await api.trades(s) for s in SYMBOLS}
                mids = await api.mids()
                intents = trader.store.intents()
                ended = trader.store.ended()
                ledger_keys = trader.store.fill_keys()
                levels = trader.store.level_inventory()
        finally:
            self._thaw(life)
        for o in open_orders:
            self.seen_orders.setdefault(o.order_id, o)
        await self._resolve(api, stream, trades)
        ours = self._our_order_ids()
        in_flight = [
            i
            for i in intents.values()
            if i.side == "SELL" and i.rowid > life.intents_before and i.client_id not in ended
        ]
        return [
            cc.coverage(
                s,
                self.rules[s],
                venue_trades=[t for t in trades[s] if int(t.order_id) in ours],
                ledger_keys=ledger_keys,
                open_orders=open_orders,
                in_flight_sells=in_flight,
                levels=levels.get(s, {}),
                mid=mids[s],
                prefix=PREFIX,
            )
            for s in SYMBOLS
        ]

    async def _resolve(
        self, api: VenueApi, stream: UserStream, trades: dict[str, list[cc.Trade]]
    ) -> None:
        """Know the client id of every order these trades are on: from the stream, else by
        asking the venue (a trade may be read before its order's NEW report arrives)."""
        for oid, o in stream.orders.items():  # only client ids matter here, not the status
            self.seen_orders.setdefault(oid, o)
        for symbol, ts in trades.items():
            for t in ts:
                oid = int(t.order_id)
                if oid not in self.seen_orders:
                    found = await api.order(symbol, oid)
                    if found is None:
                        self.violate(
                            cc.HARNESS,
                            f"{symbol} order {oid} of trade {t.trade_id} is unknown to the venue",
                        )
                    else:
                        self.seen_orders[oid] = found

    def _our_order_ids(self, extra: Sequence[cc.VenueOrder] = ()) -> set[int]:
        return {
            oid
            for oid, o in {**self.seen_orders, **{o.order_id: o for o in extra}}.items()
            if cc.is_ours(o.client_id, PREFIX)
        }

    # ------------------------------------------------------------------ the end

    async def _finish(
        self,
        nursery: trio.Nursery,
        trader: Trader,
        api: VenueApi,
        stream: UserStream,
        store: StoreView,
    ) -> None:
        self.phase = f"waiting for the last process ({len(trader.lives)}) to be ready"
        life = await trader.spawn(nursery)
        with trio.move_on_after(READY_TIMEOUT_S):
            await life.ready.wait()
        if not life.ready.is_set():
            self.violate(cc.PROCESS, "the last process never became ready: " + life.describe())
        else:
            await self._check(life, trader, api, moment="when ready")
            self.phase = "letting the last process trade"
            await trio.sleep(FINAL_SETTLE_S)
            self.phase = "reading the take-profit coverage"
            self.seen_orders.update(stream.orders)
            await self._final_coverage(life, trader, api, stream)
        self._check_findings()
        self.sigint_ms = api.venue_ms()
        self.phase = f"stopping process {life.index} with SIGINT"
        clean = await trader.stop(life)
        if not clean:
            self.violate(
                cc.PROCESS,
                f"SIGINT did not stop process {life.index} within "
                f"{STOP_TIMEOUT_S:g} s: " + life.describe(),
            )
        elif life.rc != 0:
            self.violate(
                cc.PROCESS,
                f"process {life.index} exited {life.rc} after SIGINT: " + life.describe(),
            )
        if stream.closed is not None:
            self.violate(cc.HARNESS, f"the venue's user-data stream ended: {stream.closed}")
        self.seen_orders.update(stream.orders)
        self.phase = "comparing the venue's records with the store"
        open_orders = await api.open_orders()
        self.counts.violations.extend(cc.orphans(open_orders, PREFIX))
        await self._complete_orders(api, stream)
        self.counts.violations.extend(cc.reused_client_ids(self._all_orders, PREFIX))
        all_trades = {s: await api.trades(s) for s in SYMBOLS}
        await self._resolve(api, stream, all_trades)
        self._all_orders = list(self.seen_orders.values())
        ours = self._our_order_ids()
        self.counts.orders_placed = len(ours)
        venue_trades = {s: [t for t in all_trades[s] if int(t.order_id) in ours] for s in SYMBOLS}
        self.counts.fills_checked = sum(len(v) for v in venue_trades.values())
        self._save_venue_records(venue_trades)
        ledger = await self._ledger(trader)
        client_of = {oid: o.client_id for oid, o in self.seen_orders.items()}
        self.counts.violations.extend(
            cc.fill_differences(
                [t for ts in venue_trades.values() for t in ts],
                ledger,
                client_of,
                describe=self._when_filled(trader, venue_trades),
            )
        )
        journal = await self._journal(trader)
        if journal is not None:
            self.counts.violations.extend(cc.journal_differences(self._all_orders, journal, PREFIX))
        if ledger or trader.has_store:
            levels = store.level_inventory()
            for s in SYMBOLS:
                mine = [f for f in ledger if f.symbol == s]
                self.counts.violations.extend(
                    cc.inventory(s, mine, levels.get(s, {}), venue_trades[s], self.rules[s].base)
                )
        self._carried(trader, life, venue_trades)
        for lf in trader.lives:
            if lf.errors:
                self.counts.notes.append(
                    f"process {lf.index}: {lf.errors} ERROR lines (see {lf.stderr_path.name})"
                )
        (self.workdir / "timeline.txt").write_text(  # noqa: ASYNC240 - once, at the end
            "\n".join(lf.timeline() for lf in trader.lives) + "\n"
        )
        recovered = [lf for lf in trader.lives if lf.recovery_lines]
        self.counts.notes.append(
            f"{len(recovered)} of {len(trader.lives)} processes printed a recovery summary"
        )

    async def _final_coverage(
        self, life: Life, trader: Trader, api: VenueApi, stream: UserStream
    ) -> None:
        if not trader.has_store:
            self.counts.notes.append("coverage not checked: no store, no journal")
            return
        readings: list[list[cc.Coverage]] = []
        for _ in range(COVERAGE_ATTEMPTS):
            reading = await self._coverage(life, trader, api, stream)
            readings.append(reading)
            if reading and all(c.ok for c in reading):
                self.counts.notes.append(
                    "coverage before the final stop: "
                    + "; ".join(
                        f"{c.symbol} held {c.held}, take-profits {c.open_tp}, in flight "
                        f"{c.in_flight}, unprocessed buys {c.unprocessed_buys}"
                        for c in reading
                    )
                )
                return
            await trio.sleep(COVERAGE_RETRY_S)
        for c in readings[-1]:
            if not c.ok:
                earlier = "; ".join(f"{x.gap}" for r in readings for x in r if x.symbol == c.symbol)
                self.violate(
                    cc.COVERAGE,
                    c.describe() + f" (gaps over {len(readings)} "
                    f"readings {COVERAGE_RETRY_S:g} s apart: {earlier})",
                )

    async def _complete_orders(self, api: VenueApi, stream: UserStream) -> None:
        """Every venue order of the account: ids count up from 1, so any id not seen on the
        stream or in a check is asked for (per symbol: a query names its symbol)."""
        known = {**self.seen_orders, **stream.orders}
        top = max(known, default=0)
        missing = [oid for oid in range(1, top + 1 + GAP_PROBES) if oid not in known]
        for oid in missing:
            for s in SYMBOLS:
                found = await api.order(s, oid)
                if found is not None:
                    known[oid] = found
                    break
        # the last thing heard of an order may be older than its end (a check's snapshot)
        for oid, o in list(known.items()):
            if o.status in cc.OPEN_STATUSES:
                final = await api.order(o.symbol, oid)
                if final is not None:
                    known[oid] = final
        self.seen_orders = known
        self._all_orders = list(known.values())
        unseen = [oid for oid in missing if oid in known]
        if unseen:
            self.counts.notes.append(f"{len(unseen)} orders were not on the stream, found by query")

    async def _ledger(self, trader: Trader) -> list[cc.Trade]:
        """The fill ledger as a user reads it: ``mm-trio trades --state s.db --csv``, or the
        store itself when this mm-trio has no such command."""
        if not trader.has_store or not trader.state.exists():
            self.counts.notes.append("no ledger: every fill counts as lost")
            return []
        r = await mm_trio(["trades", "--state", str(trader.state), "--csv"], trader.env)
        if r.returncode == 0:
            return [
                cc.Trade(
                    row["symbol"],
                    row["trade_id"],
                    row["order_id"],
                    row["client_id"],
                    row["side"],
                    _dec(row["price"]),
                    _dec(row["qty"]),
                    _dec(row["fee"]),
                    row["fee_asset"],
                )
                for row in csv.DictReader(io.StringIO(r.stdout))
            ]
        last = (r.stderr.strip().splitlines() or [""])[-1]
        self.counts.notes.append(
            f"`mm-trio trades --csv` failed ({r.returncode}: {last}); read the ledger with "
            "StateStore.fills()"
        )
        from mm_trio.store import StateStore

        with StateStore.open(trader.state) as st:
            return [
                cc.Trade(
                    f.symbol,
                    f.trade_id,
                    f.order_id,
                    f.client_id,
                    f.side,
                    f.price,
                    f.qty,
                    f.fee,
                    f.fee_asset,
                )
                for f in st.fills()
            ]

    def _save_venue_records(self, venue_trades: dict[str, list[cc.Trade]]) -> None:
        """The venue's records as the checks saw them, next to the processes' output."""
        with (self.workdir / "venue-orders.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["order_id", "symbol", "client_id", "side", "price", "qty", "executed", "status"]
            )
            for o in sorted(self._all_orders, key=lambda o: o.order_id):
                w.writerow(
                    [
                        o.order_id,
                        o.symbol,
                        o.client_id,
                        o.side,
                        o.price,
                        o.qty,
                        o.executed,
                        o.status,
                    ]
                )
        with (self.workdir / "venue-trades.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "symbol",
                    "trade_id",
                    "order_id",
                    "side",
                    "price",
                    "qty",
                    "fee",
                    "fee_asset",
                    "time_ms",
                ]
            )
            for ts in venue_trades.values():
                for t in ts:
                    w.writerow(
                        [
                            t.symbol,
                            t.trade_id,
                            t.order_id,
                            t.side,
                            t.price,
                            t.qty,
                            t.fee,
                            t.fee_asset,
                            t.time_ms,
                        ]
                    )

    async def _journal(self, trader: Trader) -> list[cc.JournalOrder] | None:
        """The journal's view of our orders, as ``mm-trio orders --state s.db --csv`` gives
        it (None: no store, or no such command)."""
        if not trader.has_store or not trader.state.exists():
            return None
        r = await mm_trio(["orders", "--state", str(trader.state), "--csv"], trader.env)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [""])[-1]
            self.counts.notes.append(f"journal not compared: `mm-trio orders --csv`: {last}")
            return None
        ended = trader.store.ended()
        return [
            cc.JournalOrder(
                row["symbol"],
                row["client_id"],
                row["side"],
                row["status"],
                row["reason"],
                _dec(row["filled"]) if row["filled"] else None,
                row["order_id"],
                row["client_id"] in ended,
            )
            for row in csv.DictReader(io.StringIO(r.stdout))
        ]

    def _when_filled(
        self, trader: Trader, venue_trades: dict[str, list[cc.Trade]]
    ) -> dict[tuple[str, str], str]:
        """For a lost fill: which process was up when it happened, or that none was."""
        out: dict[tuple[str, str], str] = {}
        lives = trader.lives
        for trades in venue_trades.values():
            for t in trades:
                up = [lf for lf in lives if lf.spawned_ms <= t.time_ms <= (lf.ended_ms or 2**62)]
                if up:
                    lf = up[-1]
                    when = f"while process {lf.index} was up"
                    if lf.stopped and self.sigint_ms is not None and t.time_ms >= self.sigint_ms:
                        when += ", after its SIGINT"
                else:
                    before = [lf.index for lf in lives if (lf.ended_ms or 0) < t.time_ms]
                    when = (
                        f"while the trader was down after process {before[-1]}"
                        if before
                        else "before the first process"
                    )
                out[t.key] = when
        return out

    def _carried(self, trader: Trader, life: Life, venue_trades: dict[str, list[cc.Trade]]) -> None:
        """The last process exits holding every lot bought on the account: what the venue's
        trades on our orders (of every process) add up to."""
        summary = trader.summary(life)
        if summary is None:
            self.violate(cc.PROCESS, f"process {life.index} wrote no --summary-json")
            return
        for s in SYMBOLS:
            got = summary.get("symbols", {}).get(s)
            if got is None:
                self.violate(cc.CARRIED, f"{s}: not in the last process's summary")
                continue
            held = cc.net_position(venue_trades[s], self.rules[s].base)
            theirs = _dec(got["position"])
            if theirs != held:
                self.violate(
                    cc.CARRIED,
                    f"{s}: the last process ended holding {theirs}, but the venue's trades on "
                    f"our orders add up to {held}",
                )
