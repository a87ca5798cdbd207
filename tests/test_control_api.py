"""The control plane: engine methods on the simulated venue (MockClock), then the real server
on loopback with httpx (real clock): the token, the Host check, bad input naming the field
and changing nothing, add / remove / pause / resume / kill, fills and the event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
import trio

from mm_trio.apps.control.api import ControlContext
from mm_trio.apps.control.server import serve_control
from mm_trio.apps.web import BearerToken
from mm_trio.domain.config import ConfigError, grid_with_overrides
from mm_trio.domain.model import SymbolError
from mm_trio.engine.events import EventHub
from mm_trio.engine.orchestrator import Orchestrator, open_orchestrator
from tests.test_orchestrator import make_config, our_open_orders, sim, wait_for

D = Decimal
TOKEN = "control-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def _buys(orch: Orchestrator, symbol: str) -> int:
    return sum(1 for o in orch.manager(symbol).strategy.live_orders() if o.side == "BUY")


# --------------------------------------------------------------------------- engine (MockClock)


async def test_pause_stops_opening_keeps_take_profits_and_resume_reopens(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = make_config()
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbols([BTC, ETH])
        m = orch.manager(BTC)
        await wait_for(lambda: m.position.sells > 0 and m.position.position > 0)
        assert orch.pause(BTC) == [BTC]
        await wait_for(lambda: _buys(orch, BTC) == 0)
        snap = orch.snapshot().symbols[BTC]
        assert (snap.state, snap.paused) == ("HALTED", True)
        assert "paused by operator" in snap.reason
        # the held inventory keeps its take-profit sells; ETH is untouched
        assert any(o.side == "SELL" for o in m.strategy.live_orders())
        assert orch.snapshot().symbols[ETH].state == "RUNNING"
        await trio.sleep(30)
        assert _buys(orch, BTC) == 0  # still no opening order after a while
        assert await orch.resume(BTC) == [BTC]
        await wait_for(lambda: _buys(orch, BTC) > 0)
        snap = orch.snapshot().symbols[BTC]
        assert (snap.state, snap.paused, snap.reason) == ("RUNNING", False, "")


async def test_pause_all_and_kill_then_resume_all(autojump_clock: trio.abc.Clock) -> None:
    config = make_config()
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbols([BTC, ETH])
        await wait_for(lambda: _buys(orch, BTC) > 0 and _buys(orch, ETH) > 0)
        assert orch.pause() == [BTC, ETH]
        await orch.kill("test kill")
        await wait_for(lambda: all(not orch.manager(s).strategy.live_orders() for s in (BTC, ETH)))
        assert await our_open_orders(exchange, BTC) == 0
        assert await our_open_orders(exchange, ETH) == 0
        assert orch.snapshot().killed
        with pytest.raises(SymbolError, match="XRP/USDT"):
            await orch.resume("XRP/USDT")
        await orch.resume()
        await wait_for(lambda: _buys(orch, BTC) > 0 and _buys(orch, ETH) > 0)
        snap = orch.snapshot()
        assert not snap.killed
        assert [snap.symbols[s].state for s in (BTC, ETH)] == ["RUNNING", "RUNNING"]


async def test_events_published_for_state_fills_and_control(autojump_clock: trio.abc.Clock) -> None:
    config = make_config()
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        with orch.events.subscribe() as events:
            await orch.add_symbol(BTC)
            await wait_for(lambda: orch.manager(BTC).position.fills > 0)
            orch.pause(BTC)
            await wait_for(lambda: orch.snapshot().symbols[BTC].state == "HALTED")
            seen: list[Any] = []
            while True:
                try:
                    seen.append(events.receive_nowait())
                except trio.WouldBlock:
                    break
        kinds = [e.kind for e in seen]
        assert kinds[:2] == ["state", "symbol"]  # RUNNING, then "added"
        fills = [e for e in seen if e.kind == "fill"]
        assert fills and fills[0].data["trade_id"] == orch.recent_fills[0].data["trade_id"]
        assert D(fills[0].data["qty"]) > 0
        assert [e.seq for e in seen] == sorted(e.seq for e in seen)
        halted = [e for e in seen if e.kind == "state" and e.data["state"] == "HALTED"]
        assert halted and "paused by operator" in halted[-1].data["reason"]
        assert any(e.kind == "control" and e.data["action"] == "pause" for e in seen)


async def test_slow_subscriber_is_dropped_and_others_keep_everything() -> None:
    hub = EventHub(buffer=3)
    with hub.subscribe() as slow, hub.subscribe() as fast:
        got: list[int] = []
        for i in range(10):
            hub.publish("fill", BTC, i, {"n": i})
            got.append((await fast.receive()).data["n"])
        assert got == list(range(10))
        assert hub.dropped_subscribers == 1 and hub.subscribers == 1
        buffered = [(await slow.receive()).data["n"] for _ in range(3)]
        assert buffered == [0, 1, 2]
        with pytest.raises(trio.EndOfChannel):
            await slow.receive()
    assert hub.subscribers == 0


def test_grid_overrides_validated_like_the_config_file() -> None:
    config = make_config({"symbols": {SOL: {"levels_below": 2}}})
    grid = grid_with_overrides(config, SOL, {"step": "0.002"})
    assert (grid.step, grid.levels_below) == (D("0.002"), 2)  # on top of the file's
    for overrides, key in (
        ({"step": "-1"}, "symbols.'SOL/USDT'.step"),
        ({"levels_below": "1.5"}, "symbols.'SOL/USDT'.levels_below"),
        ({"mode": "sideways"}, "symbols.'SOL/USDT'.mode"),
        ({"nope": 1}, "symbols.'SOL/USDT'.nope"),
    ):
        with pytest.raises(ConfigError) as info:
            grid_with_overrides(config, SOL, overrides)
        assert info.value.key == key, overrides


# --------------------------------------------------------------------------- real server


@attrs.frozen
class Served:
    orch: Orchestrator
    exchange: Any
    url: str
    port: int

    def client(self, **kw: Any) -> httpx.AsyncClient:
        kw.setdefault("headers", AUTH)
        return httpx.AsyncClient(base_url=self.url, timeout=20, **kw)


@asynccontextmanager
async def served(symbols: list[str]) -> AsyncIterator[Served]:
    config = make_config({"run": {"shutdown_timeout": 5.0}})
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbols(symbols)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                serve_control,
                ControlContext(orch, exchange.name),
                BearerToken(TOKEN),
                "127.0.0.1",
                0,
            )
            yield Served(orch, exchange, f"http://127.0.0.1:{port}", port)
            nursery.cancel_scope.cancel()


async def poll(predicate: Any, limit: float = 20.0) -> None:
    """Wait (real clock) until ``predicate()`` (sync or async) holds."""
    with trio.fail_after(limit):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await trio.sleep(0.05)


def _state(s: Served) -> tuple[Any, ...]:
    snap = s.orch.snapshot()
    return (
        tuple(s.orch.symbols()),
        tuple((k, v.paused) for k, v in snap.symbols.items()),
        snap.killed,
    )


MUTATIONS: list[tuple[str, str, Any]] = [
    ("POST", "/api/symbols", {"symbol": SOL}),
    ("DELETE", "/api/symbols/BTC/USDT", None),
    ("POST", "/api/pause", {}),
    ("POST", "/api/pause", {"symbol": BTC}),
    ("POST", "/api/resume", {}),
    ("POST", "/api/kill", {"reason": "x"}),
]
READS = ["/api/status", "/api/symbols", "/api/fills", "/metrics", "/api/events"]


@pytest.mark.slow
async def test_missing_or_wrong_token_gets_401_and_changes_nothing() -> None:
    async with served([BTC]) as s:
        before = _state(s)
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):  # fmt: skip
            async with s.client(headers=headers) as c:
                for method, path, body in MUTATIONS:
                    r = await c.request(method, path, json=body)
                    assert r.status_code == 401, (method, path, headers)
                    assert r.headers["www-authenticate"].startswith("Bearer")
                for path in READS:
                    assert (await c.get(path)).status_code == 401, path
        assert _state(s) == before
        assert s.orch.events.subscribers == 0


@pytest.mark.slow
async def test_host_header_checked_and_no_cors() -> None:
    async with served([BTC]) as s:
        before = _state(s)
        async with s.client() as c:
            for host in ("evil.example", f"evil.example:{s.port}", "127.0.0.1.nip.io"):
                r = await c.post("/api/kill", json={}, headers={"Host": host})
                assert r.status_code == 421 and r.json()["field"] == "Host", host
            assert _state(s) == before
            for host in (f"localhost:{s.port}", f"127.0.0.1:{s.port}", "localhost"):
                assert (await c.get("/api/status", headers={"Host": host})).status_code == 200
            r = await c.get("/api/status", headers={"Origin": "http://evil.example"})
            assert r.status_code == 200
            assert not any(k.lower().startswith("access-control-") for k in r.headers)
            pre = await c.options(
                "/api/kill",
                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert pre.status_code == 405
            assert not any(k.lower().startswith("access-control-") for k in pre.headers)


@pytest.mark.slow
async def test_bad_input_is_4xx_naming_the_field_and_changes_nothing() -> None:
    async with served([BTC]) as s:
        before = _state(s)
        cases: list[tuple[str, str, Any, int, str | None]] = [
            ("POST", "/api/symbols", {}, 400, "symbol"),
            ("POST", "/api/symbols", {"symbol": "SOLUSDT"}, 400, "symbol"),
            ("POST", "/api/symbols", {"symbol": 7}, 400, "symbol"),
            ("POST", "/api/symbols", {"symbol": "QQQ/USDT"}, 400, "symbol"),
            ("POST", "/api/symbols", {"symbol": BTC}, 409, "symbol"),
            ("POST", "/api/symbols", {"symbol": SOL, "extra": 1}, 400, "extra"),
            ("POST", "/api/symbols", {"symbol": SOL, "grid": {"bogus": 1}}, 400, "grid.bogus"),
            ("POST", "/api/symbols", {"symbol": SOL, "grid": {"step": "-1"}}, 400, "grid.step"),
            ("POST", "/api/symbols", {"symbol": SOL, "grid": {"step": "abc"}}, 400, "grid.step"),
            (
                "POST",
                "/api/symbols",
                {"symbol": SOL, "grid": {"levels_below": 1.5}},
                400,
                "grid.levels_below",
            ),  # fmt: skip
            ("POST", "/api/symbols", {"symbol": SOL, "grid": {"mode": "up"}}, 400, "grid.mode"),
            ("POST", "/api/symbols", {"symbol": SOL, "grid": [1]}, 400, "grid"),
            # the start checks of `mm-trio run` hold at runtime too: a step below one tick,
            # an order the account cannot pay
            (
                "POST",
                "/api/symbols",
                {"symbol": SOL, "grid": {"spacing": "geometric", "step": "0.0000001"}},
                400,
                "grid",
            ),  # fmt: skip
            (
                "POST",
                "/api/symbols",
                {"symbol": SOL, "grid": {"order_size": "100000000"}},
                400,
                "grid",
            ),  # fmt: skip
            ("DELETE", "/api/symbols/ETH/USDT", None, 404, "symbol"),
            ("DELETE", "/api/symbols/ETHUSDT", None, 400, "symbol"),
            ("POST", "/api/pause", {"symbol": "XRP/USDT"}, 404, "symbol"),
            ("POST", "/api/pause", {"symbol": "xrp"}, 400, "symbol"),
            ("POST", "/api/resume", {"symbol": "XRP/USDT"}, 404, "symbol"),
            ("POST", "/api/kill", {"reason": ""}, 400, "reason"),
            ("POST", "/api/kill", {"reason": "x" * 500}, 400, "reason"),
            ("POST", "/api/kill", {"why": "x"}, 400, "why"),
        ]
        async with s.client() as c:
            for method, path, body, status, field in cases:
                r = await c.request(method, path, json=body)
                assert r.status_code == status, (path, body, r.text)
                assert r.json().get("field") == field, (path, body, r.text)
                assert r.json()["error"]
            for raw in (b"{not json", b"[1, 2]", b'{"symbol": "SOL/USDT", "symbol": "X"}'):
                r = await c.post("/api/symbols", content=raw)
                assert r.status_code == 400 and "JSON object" in r.json()["error"], raw
            r = await c.post("/api/symbols", content=b"{" + b" " * (70 * 1024) + b"}")
            assert r.status_code == 413
            for query in ("limit=0", "limit=abc", "symbol=BTCUSDT", "nope=1"):
                assert (await c.get("/api/fills?" + query)).status_code == 400, query
            assert (await c.get("/api/events?since=x")).status_code == 400
            assert (await c.get("/api/nothing")).status_code == 404
        assert _state(s) == before
        assert s.orch.manager(BTC).paused is False


@pytest.mark.slow
async def test_add_with_overrides_trades_then_remove_cancels_on_the_venue() -> None:
    async with served([BTC]) as s:
        async with s.client() as c:
            r = await c.post(
                "/api/symbols", json={"symbol": SOL, "grid": {"step": "0.002", "levels_below": 3}}
            )
            assert r.status_code == 201, r.text
            assert r.json()["symbol"] == SOL
            grid = s.orch.manager(SOL).grid_config
            assert (grid.step, grid.levels_below) == (D("0.002"), 3)
            await poll(lambda: our_open_orders(s.exchange, SOL))
            listed = (await c.get("/api/symbols")).json()
            assert [x["symbol"] for x in listed["symbols"]] == [BTC, SOL]
            status = (await c.get("/api/status")).json()
            assert status["symbols"][SOL]["open_orders"] > 0
            assert status["symbols"][SOL]["state"] == "RUNNING"
            r = await c.delete("/api/symbols/SOL%2FUSDT")  # an encoded slash works too
            assert r.status_code == 200, r.text
            assert r.json()["open_orders"] == 0
            assert await our_open_orders(s.exchange, SOL) == 0
            status = (await c.get("/api/status")).json()
            assert list(status["symbols"]) == [BTC]
            assert (await c.get("/api/symbols")).json()["removed"] == [SOL]


@pytest.mark.slow
async def test_pause_resume_kill_resume_over_http() -> None:
    async with served([BTC, ETH]) as s:
        await poll(lambda: _buys(s.orch, BTC) > 0)
        async with s.client() as c:
            r = await c.post("/api/pause", json={"symbol": BTC})
            assert r.json() == {"paused": [BTC]}
            await poll(lambda: _buys(s.orch, BTC) == 0)
            sym = (await c.get("/api/status")).json()["symbols"][BTC]
            assert sym["paused"] and sym["state"] == "HALTED" and "paused" in sym["reason"]
            r = await c.post("/api/resume", json={"symbol": BTC})
            assert r.json() == {"resumed": [BTC], "kill_lifted": False}
            await poll(lambda: _buys(s.orch, BTC) > 0)
            r = await c.post("/api/kill", json={"reason": "test kill"})
            assert r.json() == {"killed": True, "reason": "test kill"}
            await poll(
                lambda: all(not s.orch.manager(x).strategy.live_orders() for x in (BTC, ETH))
            )
            assert await our_open_orders(s.exchange, BTC) == 0
            assert await our_open_orders(s.exchange, ETH) == 0
            status = (await c.get("/api/status")).json()
            assert status["killed"] and status["kill_reason"] == "operator: test kill"
            r = await c.post("/api/resume", json={"symbol": BTC})
            assert r.status_code == 409  # the kill switch is lifted for all, not per symbol
            r = await c.post("/api/resume", json={})
            assert r.json() == {"resumed": [BTC, ETH], "kill_lifted": True}
            await poll(lambda: our_open_orders(s.exchange, BTC))
            assert not (await c.get("/api/status")).json()["killed"]


async def _sse_events(response: httpx.Response, want: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with trio.fail_after(20):
        await _read_sse(response, want, out, current)
    return out


async def _read_sse(
    response: httpx.Response, want: int, out: list[dict[str, Any]], current: dict[str, Any]
) -> None:
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "event" in current:
            out.append(current)
            current = {}
            if len(out) >= want:
                return


@pytest.mark.slow
async def test_event_stream_carries_fills_state_changes_and_replays_since() -> None:
    async with served([BTC]) as s:
        async with s.client() as c:
            async with c.stream("GET", "/api/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                await poll(lambda: s.orch.events.subscribers == 1)
                await c.post("/api/pause", json={"symbol": BTC})
                events = await _sse_events(r, 2)
            kinds = {e["event"] for e in events}
            assert {"control", "state"} <= kinds, events
            state = next(e for e in events if e["event"] == "state")
            assert state["data"]["symbol"] == BTC and state["data"]["data"]["state"] == "HALTED"
            await c.post("/api/resume", json={})
            await poll(lambda: s.orch.recent_fills)
            # a reconnecting reader gets what it missed, from the id it last saw
            async with c.stream("GET", "/api/events", headers={"Last-Event-ID": "0"}) as r:
                replay = await _sse_events(r, 4)
            assert [e["id"] for e in replay] == sorted(e["id"] for e in replay)
            assert replay[0]["id"] == 1 and replay[0]["event"] == "state"
            fills = (await c.get("/api/fills", params={"symbol": BTC, "limit": 5})).json()
            assert fills["fills"] and all(f["symbol"] == BTC for f in fills["fills"])
            assert D(fills["fills"][0]["price"]) > 0
