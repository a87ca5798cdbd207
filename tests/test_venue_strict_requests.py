"""The paper venue is as strict about requests as Binance: it refuses a unified symbol, a
parameter the endpoint does not read and an Ed25519 signature that is not percent-encoded,
with Binance's error codes."""

from __future__ import annotations

import base64
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mm_trio.apps.paper import open_paper_venue
from mm_trio.apps.paper.config import AccountConfig
from mm_trio.apps.paper.testing import now_ms
from tests.test_venue_rest import limit_order, signed, venue_config, wait_quotes

D = Decimal
pytestmark = pytest.mark.slow  # each test starts the paper venue (a real server on loopback)


async def test_venue_rejects_unified_symbol_param() -> None:
    """``BTC/USDT`` is not a Binance symbol: -1100 (illegal characters)."""
    async with (
        open_paper_venue(venue_config()) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as c,
    ):
        await wait_quotes(srv)
        r = await c.get("/api/v3/depth", params={"symbol": "BTC/USDT", "limit": "5"})
        assert r.status_code == 400 and r.json()["code"] == -1100, r.text


async def test_venue_rejects_unread_parameters() -> None:
    """A parameter the endpoint does not read (a misspelt ``recvWindow``): -1104."""
    async with (
        open_paper_venue(venue_config()) as srv,
        httpx.AsyncClient(base_url=srv.http_url) as c,
    ):
        await wait_quotes(srv)
        bid = D(srv.venue.hub.book("BTC/USDT").last_quote.bid)  # type: ignore[union-attr]
        params = limit_order(str(bid - 100), recvwindow="5000")  # misspelt recvWindow
        r = await signed(c, "POST", "/api/v3/order", params)
        assert r.status_code == 400 and r.json()["code"] == -1104, r.text


async def test_venue_rejects_unencoded_ed25519_signature() -> None:
    """An Ed25519 signature sent without percent-encoding (its '+' read as a space): -1022."""
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    cfg = venue_config(accounts=(AccountConfig(api_key="ed-key", ed25519_public_key=pem.decode()),))
    async with open_paper_venue(cfg) as srv, httpx.AsyncClient(base_url=srv.http_url) as c:
        base = now_ms()
        for i in range(200):  # find a timestamp whose signature contains '+'
            q = f"timestamp={base + i}"
            sig = base64.b64encode(key.sign(q.encode())).decode()
            if "+" in sig:
                break
        else:  # pragma: no cover
            pytest.skip("no signature with '+'")
        r = await c.get(
            f"/api/v3/account?{q}&signature={sig}",  # NOT percent-encoded
            headers={"X-MBX-APIKEY": "ed-key"},
        )
        assert r.status_code == 400 and r.json()["code"] == -1022, r.text
