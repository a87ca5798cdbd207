"""The paper venue's admin endpoints: bearer token, strict inputs, no partial apply, market
events that cannot corrupt the ledger, and request bodies / websocket messages capped."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

from mm_trio.apps.paper import PaperConfig, PaperServer, open_paper_venue
from mm_trio.apps.paper.account_exchange import market_event_error
from mm_trio.apps.paper.admin import AdminInputError, parse_market_event
from mm_trio.apps.paper.app import build_app
from mm_trio.apps.paper.auth import AdminToken
from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV, MAX_BODY_BYTES, FaultConfig
from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import Quote, native_symbol
from mm_trio.exchange.sim.matching import build_registry
from tests.test_cli_e2e import ROOT, mm_trio_cmd
from tests.test_venue_rest import signed, venue_config, wait_quotes

D = Decimal
JSON = {"Content-Type": "application/json"}
ETH = "ETH/USDT"


@pytest.fixture(autouse=True)
def no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without a token in the environment (each sets its own)."""
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[PaperServer]:
    async with open_paper_venue(venue_config()) as srv:
        await wait_quotes(srv)
        await wait_quotes(srv, ETH)
        yield srv


@pytest.fixture
async def client(server: PaperServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as c:
        yield c


def error_of(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body


# --------------------------------------------------------------------------- the token

ADMIN_CALLS = [
    ("GET", "/_admin/faults", None),
    ("POST", "/_admin/faults", {"fail_next": 3}),
    ("POST", "/_admin/reset-limits", None),
    (
        "POST",
        "/_admin/market",
        {
            "type": "trade",
            "symbol": "BTCUSDT",
            "price": "50000.00",
            "qty": "0.001",
            "trade_id": 987654321,
        },
    ),
]
MARKER = b'"t":987654321'  # the injected trade on the trade stream


async def test_every_admin_endpoint_requires_the_bearer_token(
    server: PaperServer, client: httpx.AsyncClient
) -> None:
    token = server.admin_token
    trades: list[bytes] = []
    server.venue.hub.subscribe(lambda _s, payload: trades.append(payload), ["btcusdt@trade"])
    wrong = [
        {},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {token[:-1]}"},
    ]
    for method, path, body in ADMIN_CALLS:
        for headers in wrong:
            r = await client.request(method, path, json=body, headers=headers)
            out = error_of(r, 401)
            assert "Authorization: Bearer" in out["error"]
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert token not in r.text
    # nothing a refused request carried was applied
    assert server.venue.faults.fail_next == 0
    assert not any(MARKER in t for t in trades)
    for method, path, body in ADMIN_CALLS:
        r = await client.request(method, path, json=body, headers=server.admin_headers)
        assert r.status_code == 200, (path, r.text)
        # the scheme is case-insensitive (RFC 6750)
        r = await client.request(
            method, path, json=body, headers={"Authorization": f"bearer {token}"}
        )
        assert r.status_code == 200, (path, r.text)
    assert server.venue.faults.fail_next == 3
    assert sum(MARKER in t for t in trades) == 2


async def test_token_from_the_environment_is_used_and_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token = "env-admin-token-0123456789"
    monkeypatch.setenv(ADMIN_TOKEN_ENV, token)
    caplog.set_level(logging.DEBUG)
    async with (
        open_paper_venue(venue_config()) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as c,
    ):
        assert srv.admin_token == token
        r = await c.get("/_admin/faults", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        error_of(await c.get("/_admin/faults"), 401)
        assert token not in repr(srv) + repr(srv.venue.admin_token) + repr(srv.venue.config)
    assert token not in caplog.text


async def test_generated_token_is_logged_once_and_kept_out_of_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        open_paper_venue(venue_config()) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as c,
    ):
        token = srv.admin_token
        assert len(token) >= 40 and srv.venue.admin_token.generated
        error_of(await c.get("/_admin/faults"), 401)
        assert (await c.get("/_admin/faults", headers=srv.admin_headers)).status_code == 200
        assert token not in repr(srv) + repr(srv.venue.admin_token) + repr(srv.venue.config)
    lines = [rec.getMessage() for rec in caplog.records if token in rec.getMessage()]
    assert len(lines) == 1 and ADMIN_TOKEN_ENV in lines[0], lines
    # two venues generate two different tokens
    async with open_paper_venue(venue_config()) as other:
        assert other.admin_token != token


def test_unusable_tokens_are_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "short")
    with pytest.raises(ValueError, match=ADMIN_TOKEN_ENV) as info:
        AdminToken.resolve(None, {ADMIN_TOKEN_ENV: "short"})
    assert "short" not in str(info.value).replace(ADMIN_TOKEN_ENV, "")
    with pytest.raises(ValueError, match="admin_token"):
        PaperConfig(admin_token="has a space in it!")
    cfg = PaperConfig(admin_token="configured-token-0123456789")
    assert "configured-token" not in repr(cfg)
    # an explicitly configured token wins over the environment
    assert (
        AdminToken.resolve(cfg.admin_token, {ADMIN_TOKEN_ENV: "x" * 20}).reveal()
        == "configured-token-0123456789"
    )


# --------------------------------------------------------------------------- faults

BAD_FAULTS = [
    (b'{"rest_delay_ms": Infinity}', "rest_delay_ms", "Infinity"),
    (b'{"rest_delay_ms": NaN}', "rest_delay_ms", "NaN"),
    (b'{"rest_delay_ms": 1e999999}', "rest_delay_ms", "1E+999999"),
    (b'{"rest_delay_ms": 60001}', "rest_delay_ms", "60001"),
    (b'{"rest_delay_ms": -1}', "rest_delay_ms", "-1"),
    (b'{"timeout_hang_s": 61}', "timeout_hang_s", "61"),
    (
        b'{"fail_next": 1000000000000000000000000000000}',
        "fail_next",
        "1000000000000000000000000000000",
    ),
    (b'{"fail_next": 100001}', "fail_next", "100001"),
    (b'{"fail_next": 1.5}', "fail_next", "1.5"),
    (b'{"fail_next": true}', "fail_next", "true"),
    (b'{"force_429": -1}', "force_429", "-1"),
    (b'{"fail_status": 418}', "fail_status", "418"),
    (b'{"forced_retry_after": 259201}', "forced_retry_after", "259201"),
    (b'{"drop_websockets": "yes"}', "drop_websockets", "yes"),
    (b'{"bogus": 1}', "bogus", "1"),
    # a valid field first does not get applied when a later one is bad
    (b'{"fail_next": 5, "fail_status": 418}', "fail_status", "418"),
    (b'{"force_418": 2, "rest_delay_ms": 60001}', "rest_delay_ms", "60001"),
]


@pytest.mark.parametrize(("body", "field", "value"), BAD_FAULTS)
async def test_bad_fault_input_is_refused_naming_it_and_changes_nothing(
    server: PaperServer, client: httpx.AsyncClient, body: bytes, field: str, value: str
) -> None:
    before = server.venue.faults.snapshot()
    r = await client.post("/_admin/faults", content=body, headers={**JSON, **server.admin_headers})
    out = error_of(r)
    assert out["field"] == field and out["value"] == value
    assert field in out["error"] and value in out["error"]
    assert server.venue.faults.snapshot() == before
    # the venue still answers REST at once
    with trio.fail_after(5):
        assert (await client.get("/api/v3/ping")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"", b"[1]", b'"x"', b"{", b'{"fail_next": 1, "fail_next": 2}', b"\xff\xfe", b"[" * 5000],
)
async def test_fault_body_must_be_one_json_object(
    server: PaperServer, client: httpx.AsyncClient, body: bytes
) -> None:
    r = await client.post("/_admin/faults", content=body, headers={**JSON, **server.admin_headers})
    error_of(r)
    assert server.venue.faults.fail_next == 0


async def test_fault_bounds_are_accepted_up_to_their_limits(
    server: PaperServer, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        "/_admin/faults",
        headers=server.admin_headers,
        json={
            "rest_delay_ms": 0,
            "timeout_hang_s": 60,
            "fail_status": 502,
            "force_429": 0,
            "forced_retry_after": 259_200,
            "drop_websockets": False,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["timeout_hang_s"] == 60.0 and r.json()["fail_status"] == 502


def test_fault_config_is_held_to_the_same_bounds() -> None:
    with pytest.raises(ValueError, match="rest_delay_ms"):
        FaultConfig(rest_delay_ms=float("inf"))
    with pytest.raises(ValueError, match="fail_next"):
        FaultConfig(fail_next=10**30)
    with pytest.raises(ValueError, match="fail_status"):
        FaultConfig(fail_status=200)


async def test_reset_limits_takes_no_fields(server: PaperServer, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/_admin/reset-limits", json={"everything": True}, headers=server.admin_headers
    )
    assert error_of(r)["field"] == "everything"
    r = await client.post("/_admin/reset-limits", json={}, headers=server.admin_headers)
    assert r.status_code == 200


# --------------------------------------------------------------------------- market events

ETH_TRADE = {"type": "trade", "symbol": "ETHUSDT", "price": "3000.00", "qty": "0.1"}
ETH_QUOTE = {
    "type": "quote",
    "symbol": "ETHUSDT",
    "bid": "3000.00",
    "bid_qty": "1",
    "ask": "3000.01",
    "ask_qty": "1",
}


def raw(event: dict[str, Any], **override: str) -> bytes:
    """``event`` as JSON, with ``override`` values spliced in verbatim (JSON literals)."""
    text = json.dumps({k: v for k, v in event.items() if k not in override})
    extra = ", ".join(f'"{k}": {v}' for k, v in override.items())
    return (text[:-1] + (", " if extra else "") + extra + "}").encode()


BAD_MARKET = [
    (raw(ETH_TRADE, price='"-5"'), "price", "-5"),
    (raw(ETH_TRADE, price="-5"), "price", "-5"),
    (raw(ETH_TRADE, price="0"), "price", "0"),
    (raw(ETH_TRADE, price="1e999999"), "price", "1E+999999"),
    (raw(ETH_TRADE, price='"1e999999"'), "price", "1e999999"),
    (raw(ETH_TRADE, price="Infinity"), "price", "Infinity"),
    (raw(ETH_TRADE, price="NaN"), "price", "NaN"),
    (raw(ETH_TRADE, price='"3000.005"'), "price", "3000.005"),
    (raw(ETH_TRADE, price='"999999999"'), "price", "999999999"),  # over the price filter
    (raw(ETH_TRADE, price="true"), "price", "true"),
    (raw(ETH_TRADE, qty='"sNaN"'), "qty", "sNaN"),
    (raw(ETH_TRADE, qty='"NaN"'), "qty", "NaN"),
    (raw(ETH_TRADE, qty='"0.00001"'), "qty", "0.00001"),
    (raw(ETH_TRADE, qty='"0"'), "qty", "0"),
    (raw(ETH_TRADE, qty="1e-999999999"), "qty", "1E-999999999"),
    (raw(ETH_TRADE, buyer_maker='"yes"'), "buyer_maker", "yes"),
    (raw(ETH_TRADE, trade_id="-1"), "trade_id", "-1"),
    (raw(ETH_TRADE, trade_id="1.5"), "trade_id", "1.5"),
    (raw(ETH_TRADE, colour='"red"'), "colour", "red"),
    (raw(ETH_TRADE, symbol='"NOPEUSDT"'), "symbol", "NOPEUSDT"),
    (raw(ETH_TRADE, symbol='"ETH/USDT"'), "symbol", "ETH/USDT"),
    (raw(ETH_TRADE, type='"candle"'), "type", "candle"),
    (raw({k: v for k, v in ETH_TRADE.items() if k != "qty"}), "qty", "null"),
    (raw(ETH_QUOTE, bid="1e999999"), "bid", "1E+999999"),
    (raw(ETH_QUOTE, ask='"-5"'), "ask", "-5"),
    (raw(ETH_QUOTE, bid_qty='"sNaN"'), "bid_qty", "sNaN"),
    (raw(ETH_QUOTE, ask_qty="Infinity"), "ask_qty", "Infinity"),
    (raw(ETH_QUOTE, ask='"3000.00"'), "ask", "3000.00"),  # locked book
    (raw(ETH_QUOTE, ask='"2999.99"'), "ask", "2999.99"),  # crossed book
    (raw(ETH_QUOTE, price='"3000.00"'), "price", "3000.00"),  # a trade field on a quote
]


async def test_bad_market_events_are_refused_before_any_engine_or_stream() -> None:
    # ETH/USDT has no feed here, so anything it shows came from the admin endpoint
    async with (
        open_paper_venue(venue_config(market_symbols=("BTC/USDT",))) as srv,
        httpx.AsyncClient(base_url=srv.http_url, headers=srv.admin_headers) as c,
    ):
        seen: list[tuple[str, bytes]] = []

        def sink(stream: str, payload: bytes) -> None:
            seen.append((stream, payload))

        streams = ["ethusdt@trade", "ethusdt@aggTrade", "ethusdt@bookTicker"]
        srv.venue.hub.subscribe(sink, streams)
        try:
            for body, field, value in BAD_MARKET:
                r = await c.post("/_admin/market", content=body, headers=JSON)
                out = error_of(r)
                assert (out["field"], out["value"]) == (field, value), (body, out)
                assert field in out["error"] and value in out["error"]
            engine = srv.venue.primary.engine
            assert engine.last_trade(ETH) is None and engine.last_quote(ETH) is None
            assert ETH not in srv.venue.primary.sim.subscribed
            assert seen == []
            # the good ones go through, to the engine and the streams
            r = await c.post("/_admin/market", json=ETH_TRADE)
            assert r.status_code == 200, r.text
            r = await c.post("/_admin/market", json={**ETH_QUOTE, "bid": 3000, "ask": 3000.01})
            assert r.status_code == 200, r.text
            assert engine.last_trade(ETH) is not None
            assert engine.last_trade(ETH).price == D("3000.00")  # type: ignore[union-attr]
            assert {s for s, _ in seen} >= {"ethusdt@trade", "ethusdt@bookTicker"}
        finally:
            srv.venue.hub.unsubscribe(sink, streams)


_SPECS, _ = build_registry(SimVenueConfig())
_NATIVES = {native_symbol(s): s for s in _SPECS}
_ANY_VALUE = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.decimals(min_value=0, max_value=10**9, places=4).map(str),
    # values on the ticks and steps of the symbols below, so that many examples are accepted
    st.integers(0, 10**9).map(lambda n: str(Decimal(n).scaleb(-2))),
    st.integers(0, 10**7).map(lambda n: str(Decimal(n).scaleb(-4))),
    st.integers(0, 10**7).map(lambda n: Decimal(n).scaleb(-5)),
    st.text(alphabet="0123456789.-+eEinfNaINFs ", max_size=25),
    st.booleans(),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400)
@given(
    kind=st.sampled_from(["trade", "quote"]),
    a=_ANY_VALUE,
    b=_ANY_VALUE,
    c=_ANY_VALUE,
    d=_ANY_VALUE,
    symbol=st.sampled_from(["ETHUSDT", "BTCUSDT", "DOGEUSDT", "ETHBTC"]),
)
def test_market_event_parsing_lets_only_sound_values_through(
    kind: str, a: Any, b: Any, c: Any, d: Any, symbol: str
) -> None:
    """Whatever the values, the parser either refuses them naming a field (never another
    exception) or gives an event within the symbol's filters, on its tick and step."""
    data: dict[str, Any] = {"type": kind, "symbol": symbol}
    names = ("bid", "bid_qty", "ask", "ask_qty") if kind == "quote" else ("price", "qty")
    data.update(zip(names, (a, b, c, d), strict=False))
    try:
        ev = parse_market_event(data, _SPECS, _NATIVES, 0)
    except AdminInputError as exc:
        assert exc.status == 400 and exc.field in names
        return
    spec = _SPECS[_NATIVES[symbol]]
    assert market_event_error(ev, _SPECS) is None
    if isinstance(ev, Quote):
        prices, sizes = (ev.bid, ev.ask), (ev.bid_qty, ev.ask_qty)
        assert ev.bid < ev.ask
    else:
        prices, sizes = (ev.price,), (ev.qty,)
    for p in prices:
        assert spec.min_price <= p <= spec.max_price and p % spec.tick_size == 0
    for q in sizes:
        assert spec.min_qty <= q <= spec.max_qty and q % spec.step_size == 0


async def _resting_sell(client: httpx.AsyncClient, server: PaperServer, cid: str) -> Decimal:
    """A 0.1 ETH SELL resting far above the market; returns its price."""
    q = server.venue.hub.book(ETH).last_quote
    assert q is not None
    price = (q.ask + 500).quantize(D("0.01"))
    r = await signed(
        client,
        "POST",
        "/api/v3/order",
        [
            ("symbol", "ETHUSDT"),
            ("side", "SELL"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.1"),
            ("price", str(price)),
            ("newClientOrderId", cid),
        ],
    )
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
    return price


async def _assert_resting(
    client: httpx.AsyncClient, server: PaperServer, cid: str, eth_free: Decimal
) -> None:
    r = await signed(
        client, "GET", "/api/v3/order", [("symbol", "ETHUSDT"), ("origClientOrderId", cid)]
    )
    assert r.status_code == 200 and r.json()["status"] == "NEW", r.text
    r = await signed(client, "GET", "/api/v3/openOrders", [("symbol", "ETHUSDT")])
    assert [o["clientOrderId"] for o in r.json()] == [cid]
    r = await signed(client, "GET", "/api/v3/account", [])
    eth = next(b for b in r.json()["balances"] if b["asset"] == "ETH")
    assert (D(eth["free"]), D(eth["locked"])) == (eth_free, D("0.1"))
    assert [o.client_id for o in server.venue.primary.engine.open_orders(ETH)] == [cid]


@pytest.mark.parametrize(
    "bad",
    [
        raw({k: v for k, v in ETH_QUOTE.items() if k != "bid"}, bid="1e999999"),
        raw({k: v for k, v in ETH_QUOTE.items() if k != "bid"}, bid='"1e999999"'),
        raw(ETH_TRADE, price="1e999999"),
        raw(ETH_TRADE, price='"-5"'),
        raw(ETH_TRADE, qty='"sNaN"'),
    ],
    ids=[
        "quote-bid-1e999999",
        "quote-bid-1e999999-string",
        "trade-1e999999",
        "trade-minus-5",
        "trade-qty-sNaN",
    ],
)
async def test_a_bad_market_event_leaves_a_resting_order_whole(
    server: PaperServer, client: httpx.AsyncClient, bad: bytes
) -> None:
    """The reported case: a 1e999999 quote answered 500 and left the order NEW by
    ``GET order``, missing from ``openOrders``, its 0.1 ETH gone from the balance."""
    r = await signed(client, "GET", "/api/v3/account", [])
    eth_total = next(
        D(b["free"]) + D(b["locked"]) for b in r.json()["balances"] if b["asset"] == "ETH"
    )
    await _resting_sell(client, server, "resting1")
    await _assert_resting(client, server, "resting1", eth_total - D("0.1"))
    r = await client.post("/_admin/market", content=bad, headers={**JSON, **server.admin_headers})
    error_of(r)
    await _assert_resting(client, server, "resting1", eth_total - D("0.1"))
    # the venue still trades: the order can be cancelled and its 0.1 ETH comes back
    r = await signed(
        client,
        "DELETE",
        "/api/v3/order",
        [("symbol", "ETHUSDT"), ("origClientOrderId", "resting1")],
    )
    assert r.status_code == 200 and r.json()["status"] == "CANCELED", r.text
    r = await signed(client, "GET", "/api/v3/account", [])
    eth = next(b for b in r.json()["balances"] if b["asset"] == "ETH")
    assert (D(eth["free"]), D(eth["locked"])) == (eth_total, D(0))


async def test_a_fill_reaches_the_ledger_even_if_publishing_fails(
    server: PaperServer, client: httpx.AsyncClient
) -> None:
    """Matching is all or nothing for the ledger: a failure after the engine filled an order
    (here a stream subscriber raising) still leaves the fill, its trade and its balance
    changes in the ledger, never an order the engine finished but the ledger shows open."""
    price = await _resting_sell(client, server, "fillme")
    bid = price + D("0.01")
    venue = server.venue

    def failing_sink(stream: str, payload: bytes) -> None:
        if json.loads(payload).get("b") == f"{bid:.8f}":
            raise RuntimeError("publishing failed")

    venue.hub.subscribe(failing_sink, ["ethusdt@bookTicker"])
    try:
        event = Quote(
            symbol=ETH,
            bid=bid,
            bid_qty=D(1),
            ask=bid + D("0.01"),
            ask_qty=D(1),
            ts=venue.primary.sim.now_ns(),
        )
        with pytest.raises(RuntimeError, match="publishing failed"):
            await venue.primary.sim.push_market([event])
    finally:
        venue.hub.unsubscribe(failing_sink, ["ethusdt@bookTicker"])
    r = await signed(
        client, "GET", "/api/v3/order", [("symbol", "ETHUSDT"), ("origClientOrderId", "fillme")]
    )
    assert r.json()["status"] == "FILLED" and r.json()["executedQty"] == "0.10000000"
    r = await signed(client, "GET", "/api/v3/openOrders", [("symbol", "ETHUSDT")])
    assert r.json() == []
    r = await signed(client, "GET", "/api/v3/myTrades", [("symbol", "ETHUSDT")])
    assert [D(t["qty"]) for t in r.json()] == [D("0.1")]
    eth = venue.primary.engine.balance("ETH")
    assert eth.locked == 0


async def test_the_feed_guard_drops_non_finite_events_before_matching(
    server: PaperServer, client: httpx.AsyncClient
) -> None:
    """Whatever the source (feed, replay, a future caller), a non-finite or absurd value is
    dropped before the engine and the books see it."""
    await _resting_sell(client, server, "guarded")
    venue = server.venue
    ts = venue.primary.sim.now_ns()
    bad = [
        Quote(symbol=ETH, bid=D("Infinity"), bid_qty=D(1), ask=D("Infinity"), ask_qty=D(1), ts=ts),
        Quote(symbol=ETH, bid=D("1e999999"), bid_qty=D(1), ask=D("2e999999"), ask_qty=D(1), ts=ts),
        Quote(symbol=ETH, bid=D(3000), bid_qty=D("sNaN"), ask=D(3001), ask_qty=D(1), ts=ts),
        Quote(symbol=ETH, bid=D(-5), bid_qty=D(1), ask=D(3001), ask_qty=D(1), ts=ts),
    ]
    sim = venue.primary.sim
    before = getattr(sim, "rejected_market_events", 0)
    await sim.push_market(bad)
    assert sim.rejected_market_events == before + len(bad)
    await _assert_resting(client, server, "guarded", venue.primary.engine.balance("ETH").free)
    q = venue.primary.engine.last_quote(ETH)
    assert q is not None and q.bid.is_finite() and 0 < q.bid < 10**6


# --------------------------------------------------------------------------- body caps


async def asgi_post(
    server: PaperServer,
    path: str,
    chunks: Iterator[bytes],
    headers: dict[str, str],
    query: bytes = b"",
) -> tuple[int, Any, int]:
    """POST to the venue's ASGI app with a body streamed from ``chunks`` (no Content-Length
    unless given); returns (status, JSON body, bytes the app pulled)."""
    app = build_app(server.venue)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", server.port),
        "app": app,
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


CHUNK = 16 * 1024
ENDLESS = 4 * 1024 * 1024  # "endless": far more than any cap; the old code read all of it


def stream(total: int = ENDLESS, chunk: int = CHUNK) -> Iterator[bytes]:
    for _ in range(total // chunk):
        yield b"a" * chunk


async def test_rest_body_is_cut_off_at_the_cap(server: PaperServer) -> None:
    status, body, pulled = await asgi_post(server, "/api/v3/order", stream(), {})
    assert status == 413 and body["code"] == -1101
    assert str(MAX_BODY_BYTES) in body["msg"]
    assert pulled <= MAX_BODY_BYTES + CHUNK
    # a declared Content-Length over the cap is refused without reading at all
    status, body, pulled = await asgi_post(
        server, "/api/v3/order", stream(), {"content-length": str(50 * 1024 * 1024)}
    )
    assert (status, body["code"], pulled) == (413, -1101, 0)


async def test_rest_body_at_the_cap_is_still_read(server: PaperServer) -> None:
    status, body, _ = await asgi_post(server, "/api/v3/order", stream(MAX_BODY_BYTES, 1024), {})
    # read in full, then refused further on: no API key
    assert (status, body["code"]) == (401, -2014)


async def test_oversized_rest_body_over_the_wire_gets_413(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v3/order",
        content=b"a" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and r.json()["code"] == -1101
    assert "X-MBX-USED-WEIGHT-1M" in r.headers


async def test_admin_body_is_never_read_before_the_token_and_is_capped(server: PaperServer) -> None:
    status, body, pulled = await asgi_post(server, "/_admin/faults", stream(), {})
    assert (status, pulled) == (401, 0) and "error" in body
    status, body, pulled = await asgi_post(server, "/_admin/market", stream(), server.admin_headers)
    assert status == 413 and str(MAX_BODY_BYTES) in body["error"]
    assert pulled <= MAX_BODY_BYTES + CHUNK


async def test_websocket_messages_are_capped(server: PaperServer) -> None:
    for path in ("/ws-api/v3", "/ws"):
        async with open_websocket_url(f"{server.ws_url}{path}") as ws:
            big = json.dumps(
                {"id": 1, "method": "ping", "params": {}, "pad": "a" * (2 * MAX_BODY_BYTES)}
            )
            await ws.send_message(big)
            with pytest.raises(ConnectionClosed) as info, trio.fail_after(5):
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1009  # message too big
        # a normal-sized request still works on a new connection
        async with open_websocket_url(f"{server.ws_url}/ws-api/v3") as ws:
            await ws.send_message(json.dumps({"id": 2, "method": "ping", "params": {}}))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())["status"] == 200


# --------------------------------------------------------------------------- mm-trio venue

TOKEN_LINE = re.compile(r"admin token (\S+) \(generated")


def _venue_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@contextmanager
def _venue_cli(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``mm-trio venue --port 0`` running; yields the process and its base URL."""
    proc = subprocess.Popen(
        mm_trio_cmd() + ["venue", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        yield proc, f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stderr_until(
    proc: subprocess.Popen[str], pattern: re.Pattern[str], timeout: float = 10.0
) -> tuple[re.Match[str], str]:
    """Read stderr (unbuffered, straight from the pipe) until ``pattern`` matches; the match
    and all that was read."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = ""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no matching line on stderr; got {seen!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"stderr closed; got {seen!r}"
        seen += chunk.decode()
        match = pattern.search(seen)
        if match:
            return match, seen


def test_cli_prints_a_generated_token_once_and_it_opens_admin() -> None:
    with _venue_cli(_venue_env()) as (proc, url):
        match, seen = _stderr_until(proc, TOKEN_LINE)
        token = match.group(1)
        assert len(token) >= 40
        r = httpx.get(f"{url}/_admin/faults", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert httpx.get(f"{url}/_admin/faults").status_code == 401
    assert proc.stderr is not None and proc.stdout is not None
    everything = seen + proc.stderr.read() + proc.stdout.read()
    assert everything.count(token) == 1, everything
    assert "Traceback" not in everything


def test_cli_takes_the_token_from_the_environment_and_never_prints_it() -> None:
    token = "cli-env-admin-token-0123456789"
    with _venue_cli(_venue_env(**{ADMIN_TOKEN_ENV: token})) as (proc, url):
        r = httpx.get(f"{url}/_admin/faults", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        r = httpx.get(f"{url}/_admin/faults", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read() + proc.stderr.read()
    assert token not in out and "admin token" not in out


def test_cli_refuses_a_short_token_naming_the_variable() -> None:
    proc = subprocess.run(
        mm_trio_cmd() + ["venue", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=_venue_env(**{ADMIN_TOKEN_ENV: "tiny"}),
    )
    assert proc.returncode == 2
    assert ADMIN_TOKEN_ENV in proc.stderr and "at least 16" in proc.stderr
    assert "tiny" not in proc.stderr.replace(ADMIN_TOKEN_ENV, "")
    assert "Traceback" not in proc.stderr


def test_server_config_errors_never_show_the_token_or_secrets(tmp_path: Path) -> None:
    from mm_trio.cli import load_server_config
    from mm_trio.domain.config import ConfigError

    path = tmp_path / "venue.toml"
    path.write_text(
        '[server]\ndepth_levels = 0\nadmin_token = "configured-token-0123456789"\n'
        '[[server.accounts]]\napi_key = "k"\napi_secret = "very-secret"\n'
    )
    with pytest.raises(ConfigError, match="depth_levels") as info:
        load_server_config(path, None)
    assert "configured-token" not in str(info.value) and "very-secret" not in str(info.value)
    path.write_text('[server]\nadmin_token = "short"\n')
    with pytest.raises(ConfigError, match="admin_token must be at least 16") as info:
        load_server_config(path, None)
    assert "short'" not in str(info.value)


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
pytestmark = pytest.mark.slow
